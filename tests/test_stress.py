"""Multi-process stress: 4 processes x 2 threads with rotation, audited record by record.

Every start method (fork, spawn, forkserver) and the gunicorn shape (handler built in the parent,
inherited by fork children) run for the two multi-process strategies. Afterwards every file is
audited: each record id exactly once, no malformed line, and rotation happened exactly once per
crossing of the size limit.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import re
import threading
import time
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._sinks.flock import FAST_MARGIN

PROCS = 4
THREADS = 2
PER_THREAD = 3000
MAX_BYTES = 250_000
PAYLOAD = "x" * 60
PATTERN = r"(?P<id>[0-9P]+-\d+-\d+) x{60}"
LOGGER = "safelog-stress"
# Bounded waits: generous on a loaded 2-core machine, but a hang fails instead of blocking CI.
WAIT = 120


def line(rid: str) -> str:
    return f"{rid} {PAYLOAD}"


def expected_ids() -> list[str]:
    return [f"{w}-{t}-{i}" for w in range(PROCS) for t in range(THREADS) for i in range(PER_THREAD)]


def handler_config(path: str, strategy: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "file": {
                "class": "safelog.SafeFileHandler",
                "formatter": "plain",
                "filename": path,
                "strategy": strategy,
                "max_bytes": MAX_BYTES,
                # Large enough that no backup is ever dropped, so the audit can be exact.
                "backup_count": 100,
            }
        },
        "loggers": {LOGGER: {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def worker(w: int, path: str, strategy: str, configure: bool, barrier: Any) -> None:
    """One child: configure logging (unless inherited), wait for all, then log from 2 threads."""
    if configure:
        logging.config.dictConfig(handler_config(path, strategy))
    log = logging.getLogger(LOGGER)
    barrier.wait(timeout=WAIT)
    failures: list[BaseException] = []

    def run(t: int) -> None:
        try:
            for i in range(PER_THREAD):
                log.info("%d-%d-%d %s", w, t, i, PAYLOAD)
        except BaseException as exc:  # pragma: no cover - turned into the exit code
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if failures:
        raise failures[0]


def run_children(method: str, path: str, strategy: str, configure: bool) -> None:
    ctx: Any = multiprocessing.get_context(method)
    barrier = ctx.Barrier(PROCS)
    children = [ctx.Process(target=worker, args=(w, path, strategy, configure, barrier)) for w in range(PROCS)]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join(WAIT)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
    assert [c.exitcode for c in children] == [0] * PROCS


def check_sizes(files: list[str], longest: int, early: int = 0) -> list[str]:
    """Every file is within the limit, and every backup was full: rotated once per crossing.

    A backup is rotated only when the next record would bring it to the limit or past it (for
    ``flock``, to the last ``early`` = FAST_MARGIN bytes, the room for records in flight: the
    stdlib's ``>=``), so it holds at least ``MAX_BYTES - early - longest`` bytes (exactly that when
    the record that did not fit was a longest one); a second, racing rotation would leave a
    short backup. Returns the backups.
    """
    backups = [f for f in files if re.search(r"\.\d+$", f)]
    for f in files:
        size = os.path.getsize(f)
        assert size <= MAX_BYTES, (f, size)
        if f in backups:
            assert size >= MAX_BYTES - early - longest, (f, size)
    return backups


def check_flock(path: str, extra: list[str]) -> None:
    files = log_files(path)
    report = audit(files, expected_ids() + extra, PATTERN)
    assert report.ok, report.summary()
    assert report.records == len(expected_ids()) + len(extra)
    assert not any(".shard" in f for f in files)
    longest = len(line("3-1-2999")) + 1
    backups = check_sizes(files, longest, early=FAST_MARGIN)
    # The stdlib scheme: backups are numbered 1..n without a gap.
    assert sorted(backups) == sorted(f"{path}.{i}" for i in range(1, len(backups) + 1))
    total = sum(len(line(rid)) + 1 for rid in expected_ids() + extra)
    assert sum(os.path.getsize(f) for f in files) == total
    # With every backup full (checked above) and the current file within the limit, the number
    # of backups is pinned by the total: 1.67 MB at 234-250 KB per file leaves room for 6 or 7.
    assert (total - 1) // MAX_BYTES <= len(backups) <= total / (MAX_BYTES - FAST_MARGIN - longest)
    assert len(backups) >= 5


def check_per_process(path: str, extra: list[str], writers: int) -> None:
    files = log_files(path)
    report = audit(files, expected_ids() + extra, PATTERN)
    assert report.ok, report.summary()
    assert report.records == len(expected_ids()) + len(extra)
    assert all(".shard" in f for f in files), files
    pids = {re.search(r"\.(\d+)\.shard", f).group(1) for f in files}  # type: ignore[union-attr]
    assert len(pids) == writers, pids
    # A shard header adds time and sequence number (< 40 bytes) to each record.
    check_sizes(files, longest=len(line("3-1-2999")) + 41)
    assert any(f.endswith(".shard.1") for f in files), "no shard rotated"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_children_configure_their_own_handler(method: str, strategy: str, log_path: str) -> None:
    """4 processes x 2 threads, each process configured by dictConfig: every record once, rotated."""
    started = time.monotonic()
    run_children(method, log_path, strategy, configure=True)
    if strategy == "flock":
        check_flock(log_path, [])
    else:
        check_per_process(log_path, [], writers=PROCS)
    assert time.monotonic() - started < WAIT


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_handler_created_before_fork(strategy: str, log_path: str) -> None:
    """A handler built and used in the parent, inherited by fork children (gunicorn --preload)."""
    logging.config.dictConfig(handler_config(log_path, strategy))
    log = logging.getLogger(LOGGER)
    try:
        (handler,) = log.handlers
        assert isinstance(handler, safelog.SafeFileHandler)
        # Use the handler before forking, so its descriptors (lock file, log) are open and
        # would be inherited by the children.
        log.info("P-0-0 %s", PAYLOAD)
        run_children("fork", log_path, strategy, configure=False)
        # The parent's handler still writes to the current file after the children rotated.
        log.info("P-0-1 %s", PAYLOAD)
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
    if strategy == "flock":
        check_flock(log_path, ["P-0-0", "P-0-1"])
        with open(log_path, "rb") as f:
            assert f.read().splitlines()[-1] == line("P-0-1").encode()
    else:
        check_per_process(log_path, ["P-0-0", "P-0-1"], writers=PROCS + 1)
