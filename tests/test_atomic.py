"""safelog.atomic_write: the target holds the old content or the complete new one, never a mix."""

from __future__ import annotations

import os
import signal
import stat
import threading
from typing import Any

import pytest

import safelog


def _entries(directory: Any) -> list[str]:
    return sorted(os.listdir(directory))


def test_creates_a_new_file_with_default_permissions(tmp_path: Any) -> None:
    """A new file gets its content and 0o666 minus the umask, and no temp file is left."""
    target = tmp_path / "out.txt"
    with safelog.atomic_write(target) as f:
        f.write("héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask
    assert _entries(tmp_path) == ["out.txt"]


def test_replaces_content_and_keeps_permissions(tmp_path: Any) -> None:
    """Replacing a file keeps its permission bits; file_mode applies to new files only."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with safelog.atomic_write(target, "wb", file_mode=0o600) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    fresh = tmp_path / "fresh.bin"
    with safelog.atomic_write(fresh, "wb", file_mode=0o600) as f:
        f.write(b"x")
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


def test_error_in_block_keeps_old_content_and_removes_temp(tmp_path: Any) -> None:
    """An exception inside the block leaves the target untouched and no temp file behind."""
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with safelog.atomic_write(target) as f:
            f.write("half of the new")
            raise RuntimeError("failed mid-write")
    assert target.read_text() == "old\n"
    assert _entries(tmp_path) == ["out.txt"]


def test_failing_replace_keeps_old_content(tmp_path: Any, monkeypatch: Any) -> None:
    """If the final rename fails, the target keeps the old content and the temp file is removed."""
    target = tmp_path / "out.txt"
    target.write_text("old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        with safelog.atomic_write(target) as f:
            f.write("new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert _entries(tmp_path) == ["out.txt"]


def test_fsyncs_file_and_directory(tmp_path: Any, monkeypatch: Any) -> None:
    """The data is fsynced before the rename and the directory after it."""
    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with safelog.atomic_write(tmp_path / "out.txt") as f:
        f.write("x")
    assert synced == [False, True]


def test_symlink_target_is_replaced_and_link_kept(tmp_path: Any) -> None:
    """Writing through a symlink replaces the file it points to; the link stays a link."""
    real = tmp_path / "real.conf"
    real.write_text("old")
    link = tmp_path / "link.conf"
    link.symlink_to(real)
    with safelog.atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_readers_never_see_a_mix(tmp_path: Any) -> None:
    """A reader racing repeated replacements always sees one whole version."""
    target = tmp_path / "data.txt"
    target.write_text("A" * 100_000)
    done = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not done.is_set():
            text = target.read_text()
            if len(text) != 100_000 or len(set(text)) != 1:
                bad.append(text[:20])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(100):
            with safelog.atomic_write(target, fsync=False) as f:
                for _ in range(10):
                    f.write("AB"[i % 2] * 10_000)
    finally:
        done.set()
        t.join()
    assert bad == []


def test_rejects_bad_mode(tmp_path: Any) -> None:
    """Only write modes make sense; anything else is refused before a file is created."""
    with pytest.raises(ValueError, match="mode must be"):
        with safelog.atomic_write(tmp_path / "x", "a"):
            pass
    assert _entries(tmp_path) == []


def test_process_killed_mid_write_leaves_old_content(tmp_path: Any) -> None:
    """SIGKILL while half the new content is written: the target still has the old content whole,
    and the only other file is the hidden temp file (never a partial target)."""
    target = tmp_path / "app.conf"
    target.write_text("old content\n")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            with safelog.atomic_write(target) as f:
                f.write("new content, first half\n" * 1000)
                f.flush()
                os.write(ready_w, b"x")
                signal.pause()  # killed here, mid-write
        finally:
            os._exit(1)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert target.read_text() == "old content\n"
    others = [e for e in _entries(tmp_path) if e != "app.conf"]
    assert len(others) == 1 and others[0].startswith(".app.conf.") and others[0].endswith(".tmp")
    assert os.path.getsize(tmp_path / others[0]) > 0
