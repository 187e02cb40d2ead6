"""compress="zstd": the stdlib's compression.zstd (3.14+) or the zstandard package, and .zst
backups recognised wherever compressed backups are."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._doctor import diagnose
from safelog._primitives import codec as codec_module
from safelog._primitives.codec import DECODE_ERRORS, open_read

PATTERN = r"id=(?P<id>\S+) x+"


def emit(handler: logging.Handler, rid: str) -> None:
    handler.handle(logging.makeLogRecord({"msg": f"id={rid} " + "x" * 60}))


@pytest.fixture
def no_zstd(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An interpreter with neither compression.zstd nor zstandard."""
    real = importlib.import_module

    def refuse(name: str, package: str | None = None) -> Any:
        if name in ("compression.zstd", "zstandard"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(codec_module.importlib, "import_module", refuse)
    codec_module._zstd.cache_clear()
    yield
    monkeypatch.undo()
    codec_module._zstd.cache_clear()


def test_zstd_without_a_codec_fails_at_configuration_naming_the_extra(tmp_path: Path, no_zstd: None) -> None:
    """Without either implementation, compress="zstd" is refused when the handler is built, and the
    message names the option, the value and the extra to install; reading a .zst says the same."""
    with pytest.raises(ValueError, match=r"compress='zstd': .*pip install 'safelog-handlers\[zstd\]'"):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), max_bytes=1000, backup_count=2, compress="zstd")
    (tmp_path / "app.log.1.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(OSError, match=r"safelog-handlers\[zstd\]"):
        open_read(str(tmp_path / "app.log.1.zst"))


def test_a_damaged_zst_backup_is_a_decode_error(tmp_path: Path) -> None:
    """A truncated or garbled .zst raises one of DECODE_ERRORS (what merge, follow and audit catch),
    not the library's own exception."""
    codec = codec_module.CODECS["zstd"]
    path = tmp_path / "app.log.1.zst"
    with open(path, "wb") as raw, codec.writer(raw, "app.log.1", 0.0) as out:
        out.write(os.urandom(200_000))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DECODE_ERRORS):
        with open_read(str(path)) as f:
            f.read()
    path.write_bytes(whole[:100] + b"\0" * 100 + whole[200:])
    with pytest.raises(DECODE_ERRORS):
        with open_read(str(path)) as f:
            f.read()


def test_retention_keeps_backup_count_zst_backups(tmp_path: Path, make_handler: Any) -> None:
    """Size rotation with backup_count=2 shifts and drops .zst backups like any other: two remain,
    compressed, holding the newest records."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", max_bytes=2000, backup_count=2, compress="zstd")
    for i in range(200):
        emit(h, f"{i:03d}")
    h.close()
    assert safelog.wait_for_compression(30)
    assert sorted(os.listdir(tmp_path)) == ["app.log", "app.log.1.zst", "app.log.2.zst", "app.log.lock"]
    report = audit(path, [f"{i:03d}" for i in range(200)], PATTERN)
    assert not report.duplicated and not report.malformed and report.lost == [f"{i:03d}" for i in range(len(report.lost))]


def _shard_writer(path: str, wid: int, n: int) -> None:
    h = safelog.SafeFileHandler(path, strategy="per-process", max_bytes=3000, backup_count=100, compress="zstd")
    for i in range(n):
        emit(h, f"{wid}-{i}")
    h.close()
    safelog.wait_for_compression(30)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_merge_reads_zst_shard_backups(tmp_path: Path, method: str) -> None:
    """Two per-process writers rotate into .zst shard backups; safelog merge reads them all: the
    merged log holds every record once."""
    path = str(tmp_path / "app.log")
    ctx: Any = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_shard_writer, args=(path, w, 300)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".shard.1.zst") or ".shard." in n and n.endswith(".zst")]) >= 4
    safelog.merge(path)
    assert [n for n in os.listdir(tmp_path) if ".shard" in n] == []
    assert audit(path, [f"{w}-{i}" for w in range(2) for i in range(300)], PATTERN).ok


def test_doctor_and_the_audit_see_zst_backups(tmp_path: Path) -> None:
    """doctor counts app.log.1.zst and a dated .zst as backups, and log_files hands them to the audit."""
    log = tmp_path / "app.log"
    log.write_text("x\n")
    for name in ("app.log.1.zst", "app.log.2026-12-07_13.1.zst"):
        (tmp_path / name).write_bytes(b"")
    kinds = {os.path.basename(f["path"]): f["kind"] for f in diagnose(str(log)).files}
    assert kinds == {"app.log": "log", "app.log.1.zst": "backup", "app.log.2026-12-07_13.1.zst": "backup"}
    assert [os.path.basename(f) for f in log_files(str(log))] == ["app.log", "app.log.1.zst", "app.log.2026-12-07_13.1.zst"]
