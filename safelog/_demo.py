"""``python -m safelog demo``: several processes log through dictConfig with rotation; then audit.

Each child configures logging exactly as an application would (``logging.config.dictConfig``
with a ``safelog.SafeFileHandler`` entry) and logs numbered records from several threads. The
parent then reads every file the log rotated or sharded into and checks that each record id is
present exactly once and that no line is torn.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import tempfile
import threading
import time
from typing import Any

from ._audit import AuditReport, audit, log_files

__all__ = ["run_demo"]

PAYLOAD = "the quick brown fox jumps over the lazy dog " * 2
PATTERN = r"\S+ \S+ \d+ \S+ INFO demo id=(?P<id>\d+-\d+-\d+) " + PAYLOAD.strip()


def _config(path: str, strategy: str, max_bytes: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s %(message)s"}
        },
        "handlers": {
            "file": {
                "class": "safelog.SafeFileHandler",
                "filename": path,
                "strategy": strategy,
                "max_bytes": max_bytes,
                "backup_count": 10_000,
                "formatter": "plain",
            }
        },
        "loggers": {"demo": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def _child(path: str, strategy: str, max_bytes: str, worker: int, threads: int, records: int, go: Any) -> None:
    logging.config.dictConfig(_config(path, strategy, max_bytes))
    log = logging.getLogger("demo")
    go.wait()

    def run(t: int) -> None:
        for i in range(records):
            log.info("id=%d-%d-%d %s", worker, t, i, PAYLOAD.strip())

    pool = [threading.Thread(target=run, args=(t,), name=f"T{t}") for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    logging.shutdown()


def run_one(
    directory: str, strategy: str, processes: int, threads: int, records: int, max_bytes: str, method: str
) -> tuple[AuditReport, float]:
    """Run one strategy and return its audit and its records per second."""
    path = os.path.join(directory, strategy, "app.log")
    ctx: Any = multiprocessing.get_context(method)
    # Every child configures logging first; the clock starts when all are ready.
    go = ctx.Barrier(processes + 1)
    procs = [
        ctx.Process(target=_child, args=(path, strategy, max_bytes, w, threads, records, go))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    go.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    expected = [f"{w}-{t}-{i}" for w in range(processes) for t in range(threads) for i in range(records)]
    report = audit(log_files(path), expected, PATTERN)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        report.malformed.append((path, 0, f"child exit codes {failed}"))
    return report, processes * threads * records / elapsed


def run_demo(
    directory: str | None = None,
    processes: int = 4,
    threads: int = 2,
    records: int = 2500,
    max_bytes: str = "256 KB",
    method: str = "spawn",
    out: Any = None,
) -> int:
    """Run every strategy, print a verdict table, and return 0 when every audit passed."""
    import sys

    out = out or sys.stdout
    keep = directory is not None
    directory = directory or tempfile.mkdtemp(prefix="safelog-demo-")
    rows = []
    for strategy, procs in (("thread", 1), ("flock", processes), ("per-process", processes)):
        report, rate = run_one(directory, strategy, procs, threads, records, max_bytes, method)
        rows.append((strategy, f"{procs}x{threads}", report, rate))
    # The per-process shards, joined into one time-ordered app.log and audited again.
    from ._merge import merge

    merged_path = os.path.join(directory, "per-process", "app.log")
    started = time.perf_counter()
    merged = merge(merged_path)
    merge_rate = merged.records / max(time.perf_counter() - started, 1e-9)
    expected = [f"{w}-{t}-{i}" for w in range(processes) for t in range(threads) for i in range(records)]
    report = audit([merged_path], expected, PATTERN)
    report.malformed.extend((p.path, p.lineno, p.message) for p in merged.problems)
    left = [f for f in log_files(merged_path) if ".shard" in os.path.basename(f)]
    report.malformed.extend((merged_path, 0, f"shard left behind: {f}") for f in left)
    rows.append(("  + merge", "", report, merge_rate))
    print(
        f"safelog demo: {processes} processes x {threads} threads x {records} records "
        f"({method}), rotation every {max_bytes}, "
        + (f"files in {directory}" if keep else "in a temporary directory (--dir DIR keeps the files)"),
        file=out,
    )
    head = f"{'strategy':<12} {'procs':>6} {'records':>8} {'files':>6} {'lost':>5} {'dup':>4} {'malformed':>9} {'rec/s':>8}  verdict"
    print(head, file=out)
    print("-" * len(head), file=out)
    for strategy, shape, r, rate in rows:
        print(
            f"{strategy:<12} {shape:>6} {r.records:>8} {r.files:>6} {len(r.lost):>5} "
            f"{len(r.duplicated):>4} {len(r.malformed):>9} {rate:>8.0f}  {'OK' if r.ok else 'FAILED'}",
            file=out,
        )
    if not keep:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    return 0 if all(r.ok for _, _, r, _ in rows) else 1
