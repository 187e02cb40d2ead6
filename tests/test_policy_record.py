"""The rotation policy's fingerprint, agreed across the processes writing one per-process log."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._doctor import diagnose
from safelog._sinks.lockfile import read_notes
from tests.faults_helpers import flock_waiters, wait_until

DEADLINE = 60
RECORD = ".app.log.policy"
FIRST = {"max_bytes": "1 MB", "backup_count": 3, "max_total_bytes": "5 MB"}
SECOND = {"max_bytes": "1 MB", "backup_count": 3, "max_total_bytes": "8 MB", "compress": "gzip"}


def _notes(path: Path) -> list[dict[str, Any]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_notes(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _handler(path: str, options: dict[str, Any], tag: str) -> tuple[logging.Handler, logging.Logger]:
    handler = safelog.SafeFileHandler(path, strategy="per-process", **options)
    log = logging.Logger(tag)
    log.addHandler(handler)
    return handler, log


def _writer(path: str, options: dict[str, Any], tag: str, n: int, wrote: Any, done: Any, out: Any) -> None:
    """Write ``n`` records through a per-process handler, report the warnings, wait for ``done``, write ``n`` more."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler, log = _handler(path, options, tag)
        for i in range(n):
            log.info("%s %d", tag, i)
    out.send([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
    wrote.set()
    done.wait(DEADLINE)
    for i in range(n, 2 * n):
        log.info("%s %d", tag, i)
    handler.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_per_process_writers_with_different_settings_are_reported(tmp_path: Path, method: str) -> None:
    """A second per-process writer with another max_total_bytes/compress warns once naming both settings,
    keeps logging (every record once in the merged log), and doctor flags the mismatch while both run."""
    ctx = multiprocessing.get_context(method)
    path = str(tmp_path / "app.log")
    procs, pipes, done = [], [], ctx.Event()
    try:
        for tag, options in (("a", FIRST), ("b", SECOND)):
            wrote = ctx.Event()
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_writer, args=(path, options, tag, 200, wrote, done, theirs))
            p.start()
            procs.append(p)
            pipes.append(mine)
            assert wrote.wait(DEADLINE), f"writer {tag} did not write"
        warned = [pipe.recv() for pipe in pipes]
        found = diagnose(path)
        done.set()
    finally:
        done.set()
        for p in procs:
            p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    assert warned[0] == []
    [message] = warned[1]
    assert "has compress='gzip', max_total_bytes=8000000" in message
    assert "recorded compress=None, max_total_bytes=5000000" in message and f"pid {procs[0].pid}" in message
    [mismatch] = [f for f in found.findings if f.code == "policy-mismatch"]
    assert f"(pid {procs[0].pid})" in mismatch.message and f"(pid {procs[1].pid})" in mismatch.message
    assert [n["pid"] for n in _notes(tmp_path / RECORD)] == [procs[0].pid, procs[1].pid]
    # The record file is a known side file: never merged, never an unknown name, left in place.
    report = safelog.merge(path)
    assert report.ok and report.records == 800
    lines = Path(path).read_text().splitlines()
    assert sorted(lines) == sorted(f"{t} {i}" for t in "ab" for i in range(400))
    assert sorted(os.listdir(tmp_path)) == [RECORD, "app.log", "app.log.merge-state", "app.log.merge.lock"]
    after = diagnose(path)
    assert not [f for f in after.findings if f.code == "unknown-name"]
    assert [f["kind"] for f in after.files if f["path"].endswith(RECORD)] == ["policy record"]


def _write_one(path: str, options: dict[str, Any]) -> None:
    handler, log = _handler(path, options, "one")
    log.info("one %d", os.getpid())
    handler.close()


def test_per_process_writers_that_agree_record_once(tmp_path: Path) -> None:
    """Spawned per-process writers with the same settings leave one record, and doctor finds no mismatch."""
    path = str(tmp_path / "app.log")
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        p = ctx.Process(target=_write_one, args=(path, FIRST))
        p.start()
        p.join(DEADLINE)
        assert p.exitcode == 0
    assert [n["settings"]["max_total_bytes"] for n in _notes(tmp_path / RECORD)] == [5_000_000]
    assert os.stat(tmp_path / RECORD).st_mode & 0o777 == 0o600
    found = diagnose(path)
    assert not [f for f in found.findings if f.code in ("policy-mismatch", "unknown-name")]
    assert [p.summary for p in found.policies] == ["backup_count=3, max_bytes=1000000, max_total_bytes=5000000"]


def _write_one_warned(path: str, options: dict[str, Any], out: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _write_one(path, options)
    out.send([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])


def test_two_processes_starting_together_are_caught(tmp_path: Path) -> None:
    """Two writers with different settings that reach the record at the same moment read, compare and append
    one after the other (under the record's flock), so the second of them warns."""
    path = str(tmp_path / "app.log")
    record = tmp_path / RECORD
    fd = os.open(record, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    # spawn: a forked child would share this descriptor, and with it the lock it waits for.
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # both writers find the record held, and wait for it
        for options in (FIRST, SECOND):
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_write_one_warned, args=(path, options, theirs))
            p.start()
            procs.append(p)
            pipes.append(mine)
        wait_until(lambda: flock_waiters(str(record)) >= {p.pid for p in procs}, DEADLINE, "both writers at the record")
    finally:
        os.close(fd)
        for p in procs:
            p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    warned = [pipe.recv() for pipe in pipes]
    assert sorted(len(w) for w in warned) == [0, 1]
    assert len(_notes(record)) == 2
    assert len({p.fingerprint for p in diagnose(path).policies}) == 1  # both ended: the one in force


class _Reporting(safelog.SafeFileHandler):
    """Keeps the messages handleError was given, instead of printing them."""

    reported: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(record.getMessage())


def _symlink_child(path: str) -> None:
    handler = _Reporting(path, strategy="per-process", **FIRST)
    log = logging.Logger("symlink")
    log.addHandler(handler)
    for i in range(50):
        log.info("r %d", i)
    handler.close()
    record = os.path.join(os.path.dirname(path), RECORD)
    assert handler.reported == [f"safelog: cannot record the rotation policy of {path} in {record}; logging goes on"]


def test_a_symlink_in_place_of_the_record_is_refused(tmp_path: Path) -> None:
    """A symlink planted as the policy record is not followed: the failure is reported once and every record
    is still written to the shard."""
    target = tmp_path / "target"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / RECORD)
    path = str(tmp_path / "app.log")
    p = multiprocessing.get_context("fork").Process(target=_symlink_child, args=(path,))
    p.start()
    p.join(DEADLINE)
    assert p.exitcode == 0
    assert target.read_bytes() == b"" and os.path.islink(tmp_path / RECORD)
    report = safelog.merge(path)
    assert report.ok and Path(path).read_text().splitlines() == [f"r {i}" for i in range(50)]


def test_retention_across_shards_keeps_the_record(tmp_path: Path) -> None:
    """max_total_bytes removes old shard backups but never the policy record, and the merge does not take it in."""
    path = str(tmp_path / "app.log")
    options = {"max_bytes": "2 KB", "backup_count": 50, "max_total_bytes": "8 KB"}
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(path, options, tag)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(_notes(tmp_path / RECORD)) == 1
    safelog.merge(path)
    assert RECORD in os.listdir(tmp_path)
    assert not any(line.startswith("#") for line in Path(path).read_text().splitlines())


def _write_many(path: str, options: dict[str, Any], tag: str) -> None:
    handler, log = _handler(path, options, tag)
    for i in range(500):
        log.info("%s %04d %s", tag, i, "x" * 40)
    handler.close()
