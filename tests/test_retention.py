"""Retention: backup_count and age, applied once per rotation, only to this log's own backups."""

from __future__ import annotations

import logging
import multiprocessing
import os
from typing import Any

import pytest

import safelog
from safelog import audit, log_files

PATTERN = r"id=(?P<id>\S+)"
BASE = 1_795_651_200.0  # 2026-11-26 00:00:00 UTC
DAY = 86400.0




def emit(handler: logging.Handler, rid: str, created: float) -> None:
    handler.handle(logging.makeLogRecord({"msg": f"id={rid}", "created": created}))


def touch(path: Any, mtime: float | None = None) -> None:
    with open(path, "w") as f:
        f.write("not a log record\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def bystanders(directory: Any) -> list[str]:
    """Files that look a lot like app.log's backups but are not: none may ever be deleted."""
    names = [
        "app.log.notes",
        "app.log.2026-11-01.notes",
        "app.log.old",
        "app.log.1x",
        "app.log.vm.123.shard",
        "app.log.vm.123.shard.2026-11-01",
        "app.log.vm.123.shard.1",
        "app.log.lock.2026-11-01",
        "app.log2.2026-11-01",
        "app.log2.1",
        "other.log",
        "other.log.2026-11-01",
        "other.log.1.gz",
        "xapp.log.2026-11-01",
        ".app.log.2026-11-01.gz.notmine.tmp",
        "app.log.2026-11-01.gz.bak",
    ]
    for n in names:
        touch(directory / n, 0.0)  # as old as can be: age retention would love to take them
    return names


def test_backup_count_keeps_the_newest_time_backups(tmp_path: Any, make_handler: Any) -> None:
    """Daily rotation with backup_count=3 keeps the three newest backups after every rotation."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", when="D", utc=True, backup_count=3)
    for d in range(7):
        emit(h, f"d{d}", BASE + d * DAY)
    assert safelog.wait_for_compression(30)  # removed backups are unlinked in the background
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith("app.log.2026"))
    assert kept == ["app.log.2026-11-29", "app.log.2026-11-30", "app.log.2026-12-01"]
    assert audit(log_files(path), ["d3", "d4", "d5", "d6"], PATTERN).ok


def test_age_retention_removes_backups_older_than_the_limit(tmp_path: Any, make_handler: Any) -> None:
    """retention='3 days' removes, at the next rotation, backups last written more than three
    days before the record that rotates; newer ones stay."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="thread", rotate_every="1 day", utc=True, retention="3 days")
    for d in range(6):
        emit(h, f"d{d}", BASE + d * DAY + 10)
        h.close()  # reopen each day so each backup's mtime can be set like the real clock
        for n in os.listdir(tmp_path):
            if n.startswith("app.log.2026"):
                stamp = n[len("app.log.") :]
                day = int(stamp[-2:]) - 26 if stamp.startswith("2026-11") else int(stamp[-2:]) + 4
                os.utime(tmp_path / n, (BASE + day * DAY + 20, BASE + day * DAY + 20))
        os.utime(path, (BASE + d * DAY + 20, BASE + d * DAY + 20))
        h = make_handler(path, strategy="thread", rotate_every="1 day", utc=True, retention="3 days")
    emit(h, "d6", BASE + 6 * DAY + 10)
    assert safelog.wait_for_compression(30)
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith("app.log.2026"))
    # At day 6 + 10 s the limit is day 3 + 10 s: the day-3 backup (written at day 3 + 20 s) stays.
    assert kept == ["app.log.2026-11-29", "app.log.2026-11-30", "app.log.2026-12-01"]


@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
def test_retention_never_touches_other_files(tmp_path: Any, make_handler: Any, strategy: str) -> None:
    """With an aggressive count and age, a user's app.log.notes, shards, the lock file, other
    logs and look-alike names all survive many rotations; only real backups go."""
    names = bystanders(tmp_path)
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, when="D", utc=True, backup_count=1, retention="30 days", compress="gzip")
    for d in range(5):
        emit(h, f"d{d}", BASE + d * DAY)
    assert safelog.wait_for_compression(30)
    left = set(os.listdir(tmp_path))
    assert set(names) <= left, set(names) - left
    mine = sorted(left - set(names))
    if strategy == "per-process":
        assert len(mine) == 3 and mine[0] == ".app.log.policy" and mine[2].endswith(".shard.2026-11-29.gz")
    else:
        assert mine[:2] == ["app.log", "app.log.2026-11-29.gz"]


def test_size_rotation_keeps_n_backups_and_their_compressed_forms(tmp_path: Any, make_handler: Any) -> None:
    """Size rotation with backup_count=3 and gzip keeps app.log.1.gz … app.log.3.gz and the
    bystanders, however many times it rotates."""
    names = bystanders(tmp_path)
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", max_bytes=100, backup_count=3, compress="gzip")
    ids = [f"{i:04d}-{'y' * 40}" for i in range(40)]
    for rid in ids:
        emit(h, rid, BASE)
        assert safelog.wait_for_compression(30)
    left = sorted(set(os.listdir(tmp_path)) - set(names))
    assert left == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz", "app.log.lock"]
    report = audit(log_files(path)[:1] + [str(tmp_path / f"app.log.{i}.gz") for i in (1, 2, 3)], ids[-8:], PATTERN)
    assert report.ok, report.summary()


def test_retention_with_a_namer_only_removes_names_the_namer_makes(tmp_path: Any, make_handler: Any) -> None:
    """A namer moving the stamp inside the name: its backups are counted and pruned, a file
    with the same stamp that the namer would not produce is left alone."""
    path = str(tmp_path / "app.log")
    touch(tmp_path / "app-2026-11-26.txt", 0.0)
    touch(tmp_path / "app-2026-11-26.log.old", 0.0)
    h = make_handler(path, strategy="thread", when="D", utc=True, backup_count=2)
    h.namer = lambda name: name.replace("app.log.", "app-") + ".log"
    for d in range(5):
        emit(h, f"d{d}", BASE + d * DAY)
    assert safelog.wait_for_compression(30)
    assert sorted(os.listdir(tmp_path)) == [
        "app-2026-11-26.log.old",
        "app-2026-11-26.txt",
        "app-2026-11-28.log",
        "app-2026-11-29.log",
        "app.log",
    ]


def _rotating_worker(path: str, wid: int, barrier: Any, start: float) -> None:
    h = safelog.SafeFileHandler(path, strategy="flock", when="M", utc=True, backup_count=2)
    for m in range(6):
        barrier.wait()  # all writers are in minute m together
        for i in range(20):
            emit(h, f"{wid}-{m}-{i}", start + m * 60 + i * 0.01)
    h.close()
    safelog.wait_for_compression(30)


def test_many_processes_apply_retention_once_per_rotation(tmp_path: Any) -> None:
    """Four flock writers cross five minute boundaries together with backup_count=2: exactly
    the two newest minutes remain as backups and every record of them is there once."""
    path = str(tmp_path / "app.log")
    ctx: Any = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_rotating_worker, args=(path, w, barrier, BASE)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sorted(os.listdir(tmp_path)) == ["app.log", "app.log.2026-11-26_00-03", "app.log.2026-11-26_00-04", "app.log.lock"]
    expected = [f"{w}-{m}-{i}" for w in range(4) for m in (3, 4, 5) for i in range(20)]
    assert audit(log_files(path), expected, PATTERN).ok


def _backups_oldest_first(directory: Any, stamp: str) -> list[str]:
    """The backups of ``stamp`` (of the log or of its shard) in numeric order of their ``.N``."""

    def number(name: str) -> int:
        tail = name.split(stamp, 1)[1].removesuffix(".gz")
        return int(tail[1:]) if tail else 0

    return sorted((n for n in os.listdir(directory) if stamp in n), key=number)


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_time_and_size_rotation_keep_the_newest_backups_of_a_period(
    tmp_path: Any, make_handler: Any, strategy: str, compress: str | None
) -> None:
    """Hourly and size rotation with backup_count=2, every record rotating within one hour:
    after each rotation the two backups kept hold the two records just before the current
    one, and their numbers grow with their age (a new backup never reuses a lower number)."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, when="H", utc=True, max_bytes=60, backup_count=2, compress=compress)
    ids = [f"{i:02d}-{'z' * 30}" for i in range(12)]  # 37 bytes: every record after the first rotates
    for i, rid in enumerate(ids):
        emit(h, rid, BASE + i * 60)
        assert safelog.wait_for_compression(30)
        kept = _backups_oldest_first(tmp_path, ".2026-11-26_00")
        held = [audit([str(tmp_path / k)], [], PATTERN).unexpected for k in kept]
        assert held == [[r] for r in ids[max(i - 2, 0) : i]], (i, kept)
    numbers = [k.split(".2026-11-26_00")[1] for k in _backups_oldest_first(tmp_path, ".2026-11-26_00")]
    assert [n.removesuffix(".gz") for n in numbers] == [".9", ".10"]
