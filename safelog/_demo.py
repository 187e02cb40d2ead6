"""``python -m safelog demo``: one multi-process workload through the stdlib, a peer and safelog.

The same workload (several processes, each logging numbered records from several threads,
rotating at a small size) runs through ``logging.handlers.RotatingFileHandler``, through
concurrent-log-handler when it is installed, and through every safelog strategy. Each child
configures logging exactly as an application would (``logging.config.dictConfig``). Afterwards
every file each handler rotated or sharded into is audited exactly: each record id present
once, no torn line. The stdlib handler is not safe across processes (each process rotates on
its own and renames files the others still write), so its row shows the records it lost.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from ._audit import AuditReport, audit, log_files
from ._policy.options import parse_size

__all__ = ["run_demo"]

PAYLOAD = "the quick brown fox jumps over the lazy dog " * 2
PATTERN = r"\S+ \S+ \d+ \S+ INFO demo id=(?P<id>\d+-\d+-\d+) " + PAYLOAD.strip()
FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s %(message)s"
# Upper bound of one formatted record in bytes, shard header included: sizes backup_count.
RECORD_BYTES = 200
CLH_CLASS = "concurrent_log_handler.ConcurrentRotatingFileHandler"


@dataclass(frozen=True)
class Row:
    """One line of the table: a handler entry for dictConfig and the processes that share it."""

    key: str  # directory name under the demo directory
    label: str
    handler: dict[str, Any]  # the dictConfig handler entry, without filename and formatter
    processes: int
    safelog: bool  # an audit failure fails the demo


@dataclass
class Result:
    row: Row
    report: AuditReport
    expected: int  # records logged
    rate: float
    errors: int  # handleError calls in the children (the stdlib prints each one)
    seconds: float = 0.0  # the merge's run time
    inputs: int = 0  # the shard files it merged


def _config(path: str, handler: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {"file": {**handler, "filename": path, "formatter": "plain"}},
        "loggers": {"demo": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def _child(path: str, handler: dict[str, Any], worker: int, threads: int, records: int, go: Any, results: Any) -> None:
    logging.config.dictConfig(_config(path, handler))
    log = logging.getLogger("demo")
    errors = [0]
    (h,) = log.handlers

    def count_error(record: logging.LogRecord) -> None:
        # The stdlib handler's rotation races raise in emit(); each would print a traceback.
        # The demo counts them instead, so the table stays readable.
        errors[0] += 1

    h.handleError = count_error  # type: ignore[method-assign]

    def run(t: int) -> None:
        for i in range(records):
            log.info("id=%d-%d-%d %s", worker, t, i, PAYLOAD.strip())

    pool = [threading.Thread(target=run, args=(t,), name=f"T{t}") for t in range(threads)]
    go.wait(timeout=120)
    # CLOCK_MONOTONIC is system-wide: the parent compares these times across children.
    start = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    h.flush()
    end = time.perf_counter()
    logging.shutdown()
    results.put((start, end, errors[0]))


def run_one(directory: str, row: Row, threads: int, records: int, method: str) -> Result:
    """Run one row's workload and audit what it wrote."""
    path = os.path.join(directory, row.key, "app.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ctx: Any = multiprocessing.get_context(method)
    # Every child configures logging first; the clock starts when all are ready.
    go = ctx.Barrier(row.processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(path, row.handler, w, threads, records, go, results))
        for w in range(row.processes)
    ]
    for p in procs:
        p.start()
    times: list[tuple[float, float, int]] = []
    try:
        while len(times) < len(procs):
            try:
                times.append(results.get(timeout=0.2))
            except queue.Empty:
                # A child that died before reporting (say, it could not import the handler)
                # would keep the parent waiting, and its peers at the barrier, for ever.
                if any(p.exitcode not in (None, 0) for p in procs):
                    break
    finally:
        for p in procs:
            # A child that has reported only has to exit; the others are stuck without a peer.
            p.join(timeout=60 if len(times) == len(procs) else 0)
            if p.is_alive():
                p.kill()
                p.join()
    expected = [f"{w}-{t}-{i}" for w in range(row.processes) for t in range(threads) for i in range(records)]
    report = audit(log_files(path), expected, PATTERN)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        report.malformed.append((path, 0, f"child exit codes {failed}"))
    if not times:
        return Result(row, report, len(expected), 0.0, 0)
    seconds = max(t[1] for t in times) - min(t[0] for t in times)
    return Result(row, report, len(expected), len(expected) / max(seconds, 1e-9), sum(t[2] for t in times))


def rows(processes: int, max_bytes: int, backups: int, clh: bool) -> list[Row]:
    """The handlers the demo compares, each with the same rotation size."""
    rotating = {"maxBytes": max_bytes, "backupCount": backups, "encoding": "utf-8"}
    out = [
        Row("stdlib-rotating", "stdlib RotatingFileHandler",
            {"class": "logging.handlers.RotatingFileHandler", **rotating}, processes, False),
    ]
    if clh:
        out.append(Row("concurrent-log-handler", "concurrent-log-handler", {"class": CLH_CLASS, **rotating},
                       processes, False))
    for strategy in ("thread", "flock", "per-process"):
        entry = {"class": "safelog.SafeFileHandler", "strategy": strategy, "max_bytes": max_bytes,
                 "backup_count": backups}
        # thread is for the threads of one process: it runs with one.
        out.append(Row(strategy, f"safelog {strategy}", entry, 1 if strategy == "thread" else processes, True))
    return out


def _merge_result(directory: str, row: Row, threads: int, records: int) -> Result:
    """Join the per-process shards into one time-ordered app.log and audit it again."""
    from ._merge import merge

    path = os.path.join(directory, row.key, "app.log")
    started = time.perf_counter()
    merged = merge(path)
    seconds = time.perf_counter() - started
    expected = [f"{w}-{t}-{i}" for w in range(row.processes) for t in range(threads) for i in range(records)]
    report = audit([path], expected, PATTERN)
    report.malformed.extend((p.path, p.lineno, p.message) for p in merged.problems)
    left = [f for f in log_files(path) if ".shard" in os.path.basename(f)]
    report.malformed.extend((path, 0, f"shard left behind: {f}") for f in left)
    merge_row = Row(row.key, "safelog merge", {}, row.processes, True)
    return Result(merge_row, report, len(expected), 0.0, 0, seconds, len(merged.shards))


HEAD = f"{'handler':<26} {'files':>5} {'records':>8} {'lost':>7} {'dup':>4} {'torn':>4} {'rec/s':>8}  audit"

LEGEND = [
    "files    the files a handler left: its log, backups, shards. They differ with",
    "         how each rotates: flock rotates before a file's last 16 KiB (limits of",
    "         64 KiB and up), per-process writes one series of shards per process",
    "records  records found in them; lost, dup: ids missing, or found twice",
    "torn     lines that are not one whole record",
    "rec/s    records logged per second, all processes together",
    "audit    OK when nothing was lost, duplicated or torn",
]


def _row(r: Result) -> str:
    rep = r.report
    return (
        f"{r.row.label:<26} {rep.files:>5} {rep.records:>8,} {len(rep.lost):>7,} {len(rep.duplicated):>4} "
        f"{len(rep.malformed) + len(rep.unexpected):>4} {r.rate:>8,.0f}  {'OK' if rep.ok else 'FAILED'}"
    )


def _table(results: list[Result], threads: int, records: int) -> list[str]:
    """The rows that compare with each other together: the handlers sharing one file across
    processes; then thread, which runs in one process; then the merge, which logs nothing."""
    shared = [r for r in results if r.row.key != "thread" and r.row.label != "safelog merge"]
    lines = []
    if shared:
        n = shared[0].row.processes
        lines += [f"{n} processes x {threads} threads share one log ({shared[0].expected:,} records):", HEAD,
                  "-" * len(HEAD), *map(_row, shared)]
    for r in results:
        if r.row.key == "thread":
            lines += ["", f"1 process x {threads} threads ({r.expected:,} records): thread is for the threads "
                      "of one process", _row(r)]
    for r in results:
        if r.row.label == "safelog merge":
            rep = r.report
            verdict = "OK" if rep.ok else "FAILED"
            lines += [
                "",
                f"safelog merge joined the {r.inputs:,} per-process shard files into one",
                f"time-ordered log in {r.seconds:.2f} s: {rep.records:,} records; audit {verdict} "
                f"({len(rep.lost):,} lost, {len(rep.duplicated):,} dup, "
                f"{len(rep.malformed) + len(rep.unexpected):,} torn)",
            ]
    return lines


def _notes(results: list[Result], clh: bool) -> list[str]:
    """What the table cannot say: how much each baseline lost, and why; what was skipped."""
    lines = []
    for r in results:
        if r.row.safelog or r.report.ok:
            continue
        lost = len(r.report.lost)
        lines.append(f"{r.row.label}: {lost:,} of {r.expected:,} records lost ({100 * lost / r.expected:.1f}%)")
        if r.errors:
            lines.append(f"  and {r.errors:,} error(s) raised in emit(), counted here instead of printed")
        if r.row.key == "stdlib-rotating":
            lines.append("  (each process rotates on its own and renames files the others still write)")
    if any(r.row.key == "stdlib-rotating" and r.report.ok for r in results):
        # Its loss needs the rotations of two processes to interleave badly: a run can miss.
        lines.append("stdlib RotatingFileHandler lost nothing this time: its processes' rotations")
        lines.append("  did not collide. Run again, or give a smaller --max-bytes (more rotations).")
    if not clh:
        lines.append("concurrent-log-handler is not installed: its row is skipped. To add it:")
        lines.append("  pip install concurrent-log-handler, then run the demo again")
    return lines


def run_demo(
    directory: str | None = None,
    processes: int = 4,
    threads: int = 2,
    records: int = 2500,
    max_bytes: str | int = "64 KiB",
    method: str = "spawn",
    out: IO[str] | None = None,
) -> int:
    """Run every row, print the table, and return 0 when every safelog audit passed."""
    out = out or sys.stdout
    size = parse_size("max_bytes", max_bytes)
    if size <= 0:
        raise ValueError(f"max_bytes must be > 0 for the demo, got {max_bytes!r}")
    try:
        import concurrent_log_handler  # noqa: F401
    except ImportError:
        clh = False
    else:
        clh = True
    keep = directory is not None
    directory = os.path.abspath(directory) if directory is not None else tempfile.mkdtemp(prefix="safelog-demo-")
    total = processes * threads * records
    # The default rotation size is small so that the stdlib handler's processes rotate often:
    # each rotation is a chance for their renames to race, and the demo should show the loss.
    # Enough backups that no handler ever deletes one: every lost record is a real loss. Not
    # many more, since the stdlib and concurrent-log-handler check every slot when they rotate.
    backups = 2 * processes * (total * RECORD_BYTES // size + 1) + 10
    print(
        f"safelog demo: {processes} processes x {threads} threads x {records:,} records "
        f"({total:,} a row, {method})\n"
        f"rotation every {max_bytes}; then every file is audited: each record once, none torn",
        file=out,
        flush=True,
    )
    results = []
    try:
        for row in rows(processes, size, backups, clh):
            results.append(run_one(directory, row, threads, records, method))
            if row.key == "per-process":
                results.append(_merge_result(directory, row, threads, records))
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(file=out)
    for line in [*_table(results, threads, records), "", *LEGEND, "", *_notes(results, clh)]:
        print(line, file=out)
    if keep:
        print("Files, one directory per handler:", file=out)
        for r in results:
            if r.row.label != "safelog merge":
                print(f"  {os.path.join(directory, r.row.key, 'app.log')}*", file=out)
    else:
        print("Files were in a temporary directory, now removed (--dir DIR keeps them).", file=out)
    failed = [r.row.label for r in results if r.row.safelog and not r.report.ok]
    # The exit status is safelog's verdict: the other rows are there to compare with.
    if failed:
        print(f"Exit status 1: {', '.join(failed)} failed the audit.", file=out)
        return 1
    print("Exit status 0: every safelog row passed the audit (the other rows are there", file=out)
    print("to compare with: what they lose does not change it).", file=out)
    return 0
