"""The public API the docs and examples use: exported, documented, and doing what they say."""

from __future__ import annotations

import gzip
import inspect
import logging
import os
from pathlib import Path

import safelog

PATTERN = r"rec (?P<id>\d+) x+"


def test_every_public_name_is_exported_and_documented() -> None:
    """Every name of safelog.__all__ exists and has a docstring; the helpers the docs use are among them."""
    for name in safelog.__all__:
        obj = getattr(safelog, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"safelog.{name} has no docstring"
    assert {"wait_for_compression", "audit", "AuditReport", "log_files"} <= set(safelog.__all__)


def log_records(path: Path, n: int, strategy: str) -> None:
    """``n`` records "rec <i> xxx…" through a handler rotating every 400 bytes with gzip; closed after."""
    h = safelog.SafeFileHandler(str(path), strategy=strategy, max_bytes=400, backup_count=50, compress="gzip")
    h.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger(f"public-api-{strategy}")
    log.addHandler(h)
    try:
        for i in range(n):
            log.info("rec %d %s", i, "x" * 20)
    finally:
        h.close()


def test_wait_for_compression_returns_once_the_backup_is_compressed(tmp_path: Path) -> None:
    """After a rotation with compress='gzip', wait_for_compression() returns True with the .gz complete and the plain backup gone."""
    log_records(tmp_path / "app.log", 20, "thread")
    assert safelog.wait_for_compression(30) is True
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.log."))
    assert backups and all(name.endswith(".gz") for name in backups), backups
    text = b"".join(gzip.decompress((tmp_path / name).read_bytes()) for name in backups)
    assert text.startswith(b"rec ")


def test_audit_reads_a_log_with_its_backups_and_shards(tmp_path: Path) -> None:
    """safelog.audit(path, ids, pattern) reads the log, its compressed backups and per-process shards, and counts each id once."""
    path = tmp_path / "app.log"
    log_records(path, 30, "per-process")
    assert safelog.wait_for_compression(30)
    assert any(name.endswith(".gz") for name in os.listdir(tmp_path))
    report = safelog.audit(path, [str(i) for i in range(30)], PATTERN)
    assert report.ok and report.records == 30, report.summary()
    report = safelog.audit(str(path), [str(i) for i in range(31)], PATTERN)
    assert report.lost == ["30"] and not report.ok
    assert safelog.log_files(str(path)) == sorted(str(tmp_path / n) for n in os.listdir(tmp_path) if n.startswith("app.log."))
