"""Throughput of safelog's strategies against the stdlib handlers and concurrent-log-handler.

Every row is measured in the same run, interleaved repetition by repetition, so the ratios stay
fair on a shared, noisy machine: a slow minute hurts every row alike. Each run starts fresh
``spawn`` processes (each configures its own handler, like a real app), holds them at a barrier,
and times from the release until the last thread has logged its last record. After every run the
files are audited: every record id exactly once, no malformed line.

    python benchmarks/throughput.py                 # full run, 5 repetitions (a few minutes)
    python benchmarks/throughput.py --quick         # smoke run (under a minute)
    python benchmarks/throughput.py --markdown      # print only the markdown table
    python benchmarks/throughput.py --cases 1x1,4x2 --rows stdlib_file,safelog_flock,safelog_flock_nofast
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Run as a script from anywhere: import safelog from this checkout, not from site-packages.
# spawn children inherit sys.path from the parent, so this also covers them.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from _harness import run_workers  # noqa: E402 - beside this script

MAX_BYTES = 1024 * 1024
# PROCSxTHREADS run by default: one process alone, 2 and 4 processes of one thread, 4 of two.
CASES = ("1x1", "2x1", "4x1", "4x2")
# Upper bound of one formatted record in bytes (about 135 plain, 165 with a shard header); used
# only to size backup_count.
RECORD_BYTES = 200
FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s %(message)s"
PAYLOAD = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWX"  # 60 characters
LOGGER = "bench"
# A whole record, as every row writes it (per-process shards are decoded by the audit first).
PATTERN = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ w\d+t\d+ INFO " + LOGGER
    + r" id=(?P<id>\d+-\d+-\d+) payload=" + PAYLOAD
)


class OsWriteHandler(logging.Handler):
    """The floor: format, then one ``os.write`` on an ``O_APPEND`` descriptor, nothing else."""

    def __init__(self, filename: str) -> None:
        super().__init__()
        self.fd = os.open(filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        os.write(self.fd, (self.format(record) + "\n").encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


def backup_count(records: int, procs: int) -> int:
    """Enough backups that nothing is ever deleted, so the audit accounts for every record.

    Not much more than that: every rotation (stdlib, concurrent-log-handler and safelog alike)
    checks each backup slot, so an absurd count would bill every row for thousands of stat()
    calls per rotation that no real configuration makes. Unsafe handlers rotate once per process
    in the worst case, hence the factor ``procs``.
    """
    return 2 * procs * (records * RECORD_BYTES // MAX_BYTES + 1) + 10


def _os_write(path: str, backups: int) -> logging.Handler:
    return OsWriteHandler(path)


def _stdlib_file(path: str, backups: int) -> logging.Handler:
    return logging.FileHandler(path, encoding="utf-8")


def _stdlib_rotating(path: str, backups: int) -> logging.Handler:
    return logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=backups, encoding="utf-8"
    )


def _clh(path: str, backups: int) -> logging.Handler:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    return ConcurrentRotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=backups, encoding="utf-8"
    )


def _safelog(strategy: str, fast_format: bool = True) -> Callable[[str, int], logging.Handler]:
    def make(path: str, backups: int) -> logging.Handler:
        import safelog

        handler = safelog.SafeFileHandler(
            path, strategy=strategy, max_bytes=MAX_BYTES, backup_count=backups
        )
        handler.fast_format = fast_format
        return handler

    return make


def formatter() -> logging.Formatter:
    """The one formatter every row formats with, the stdlib rows included."""
    return logging.Formatter(FORMAT)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    make: Callable[[str, int], logging.Handler]  # (path, backup_count) -> handler
    multi: bool  # measured in the multi-process case too


ROWS = [
    Row("os_write", "format + one os.write (baseline)", _os_write, False),
    Row("stdlib_file", "stdlib FileHandler (no rotation)", _stdlib_file, True),
    Row("stdlib_rotating", "stdlib RotatingFileHandler", _stdlib_rotating, True),
    Row("clh", "concurrent-log-handler 0.9.31", _clh, True),
    Row("safelog_thread", "safelog thread", _safelog("thread"), True),
    Row("safelog_flock", "safelog flock", _safelog("flock"), True),
    # What the formatting fast path buys: the same handler formatting through Formatter.format.
    Row("safelog_flock_nofast", "safelog flock, fast formatting off", _safelog("flock", fast_format=False), True),
    Row("safelog_per_process", "safelog per-process", _safelog("per-process"), True),
]
ROW_BY_KEY = {r.key: r for r in ROWS}


# -- the child process ------------------------------------------------------------------------


def _child(
    row_key: str,
    path: str,
    worker: int,
    threads: int,
    per_thread: int,
    backups: int,
    barrier: Any,
    results: Any,
) -> None:
    """Configure the handler, wait for everyone, log, report (start, end) monotonic times."""
    handler = ROW_BY_KEY[row_key].make(path, backups)
    handler.setFormatter(formatter())
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False

    go = threading.Event()

    def work(t: int) -> None:
        info = logger.info
        go.wait()
        for i in range(per_thread):
            info("id=%d-%d-%d payload=%s", worker, t, i, PAYLOAD)

    pool = [threading.Thread(target=work, args=(t,), name=f"w{worker}t{t}") for t in range(threads)]
    for th in pool:
        th.start()
    try:
        barrier.wait(timeout=120)
        # CLOCK_MONOTONIC is system-wide on Linux: the parent compares these across children.
        start = time.perf_counter()
        cpu = time.process_time()
        go.set()
        for th in pool:
            th.join()
        handler.flush()
        end = time.perf_counter()
        # CPU time (user + system, all threads) does not count the time this process sat
        # descheduled while other jobs ran: on a shared machine it is the steadier per-record
        # cost. It also leaves out time spent blocked on a lock, so it is no throughput measure.
        cpu = time.process_time() - cpu
    finally:
        go.set()
        for th in pool:
            th.join()
        handler.close()
    results.put((worker, start, end, cpu))


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    row: str
    case: str
    rep: int
    records: int
    seconds: float
    rate: float
    cpu_us: float  # CPU µs per record, summed over all processes
    files: int
    lost: int
    duplicated: int
    malformed: int
    unexpected: int


def run_once(
    ctx: Any, row: Row, case: str, procs: int, threads: int, records: int, rep: int, base: str
) -> Run:
    from safelog._audit import audit, log_files

    per_thread = records // (procs * threads)
    backups = backup_count(records, procs)
    workdir = tempfile.mkdtemp(prefix=f"{row.key}-{case}-", dir=base)
    path = os.path.join(workdir, "bench.log")
    barrier = ctx.Barrier(procs)
    times = run_workers(ctx, _child, [(row.key, path, w, threads, per_thread, backups, barrier) for w in range(procs)], f"{row.key} {case}")
    seconds = max(t[2] for t in times) - min(t[1] for t in times)
    total = per_thread * procs * threads
    expected = (f"{w}-{t}-{i}" for w in range(procs) for t in range(threads) for i in range(per_thread))
    files = log_files(path)
    report = audit(files, expected, PATTERN)
    shutil.rmtree(workdir, ignore_errors=True)
    return Run(
        row=row.key,
        case=case,
        rep=rep,
        records=total,
        seconds=seconds,
        rate=total / seconds,
        cpu_us=sum(t[3] for t in times) / total * 1e6,
        files=len(files),
        lost=len(report.lost),
        duplicated=sum(n - 1 for n in report.duplicated.values()),
        malformed=len(report.malformed),
        unexpected=len(report.unexpected),
    )


# -- summary ----------------------------------------------------------------------------------


@dataclass
class Summary:
    row: str
    label: str
    case: str
    rates: list[float] = field(default_factory=list)  # records/s of each repetition
    median_rate: float = 0.0
    us_per_record: float = 0.0  # wall time: 1e6 / median_rate
    cpu_us: float = 0.0  # median CPU µs per record (all processes)
    vs_file: float = 0.0  # median_rate / stdlib FileHandler's
    vs_baseline_cpu: float | None = None  # cpu_us / the os.write floor's (1 x 1)
    vs_baseline_wall: float | None = None  # us_per_record / the os.write floor's (1 x 1)
    lost: int = 0
    duplicated: int = 0
    malformed: int = 0
    unexpected: int = 0


def summarise(runs: list[Run], cases: list[tuple[str, int, int]]) -> dict[str, list[Summary]]:
    out: dict[str, list[Summary]] = {}
    for case, _, _ in cases:
        rows = []
        for row in ROWS:
            mine = [r for r in runs if r.row == row.key and r.case == case]
            if not mine:
                continue
            rate = statistics.median(r.rate for r in mine)
            rows.append(
                Summary(
                    row=row.key,
                    label=row.label,
                    case=case,
                    rates=[round(r.rate, 1) for r in mine],
                    median_rate=rate,
                    us_per_record=1e6 / rate,
                    cpu_us=statistics.median(r.cpu_us for r in mine),
                    # Audit counts are the worst repetition, not the median: one lossy run is
                    # what matters.
                    lost=max(r.lost for r in mine),
                    duplicated=max(r.duplicated for r in mine),
                    malformed=max(r.malformed for r in mine),
                    unexpected=max(r.unexpected for r in mine),
                )
            )
        by = {s.row: s for s in rows}
        for s in rows:
            s.vs_file = s.median_rate / by["stdlib_file"].median_rate
            if "os_write" in by:
                s.vs_baseline_cpu = s.cpu_us / by["os_write"].cpu_us
                s.vs_baseline_wall = s.us_per_record / by["os_write"].us_per_record
        out[case] = rows
    return out


Check = tuple[str, float, str, float, bool]  # (what, measured, "≥" or "≤", goal, met)


def targets(summary: dict[str, list[Summary]]) -> list[Check]:
    """The targets of the speed issue, measured: flock at least FileHandler's records/s in every
    case (with rotation, FileHandler without), at least 6x concurrent-log-handler with 4 x 2;
    per-process at least 1.1x FileHandler with 4 x 2, thread with 1 x 1."""
    out: list[Check] = []
    wanted = [("safelog_flock", "stdlib_file", 1.0, None), ("safelog_flock", "clh", 6.0, "4x2"),
              ("safelog_per_process", "stdlib_file", 1.1, "4x2"), ("safelog_thread", "stdlib_file", 1.1, "1x1")]
    for case, rows in summary.items():
        by = {s.row: s for s in rows}
        for key, against, goal, only in wanted:
            if (only is not None and case != only) or key not in by or against not in by:
                continue
            m = by[key].median_rate / by[against].median_rate
            out.append((f"{_case_title(case)}: {by[key].label} records/s ÷ {by[against].label}", m, "≥", goal, m >= goal))
    return out


def markdown(summary: dict[str, list[Summary]], meta: dict[str, Any], checks: list[Check]) -> str:
    lines = [
        f"`{meta['command']}` — {meta.get('date', '?')[:10]}, Python {meta['python']} on {meta['cpus']} CPUs "
        f"({meta.get('cpu_model', 'CPU model not recorded')}; load average "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after); {meta['reps']} "
        f"repetitions, {meta['records']:,} records per run, 1 MB rotation; safelog {meta['commit']}",
        "",
    ]
    for case, rows in summary.items():
        single = "os_write" in {s.row for s in rows}
        lines.append(f"**{_case_title(case)}**")
        lines.append("")
        if single:
            lines.append(
                "| handler | records/s | µs/record | CPU µs/record | vs FileHandler | "
                "CPU vs format + os.write | lost | dup | malformed |"
            )
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        else:
            lines.append("| handler | records/s | vs FileHandler | lost | dup | malformed |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for s in rows:
            bad = s.malformed + s.unexpected
            if single:
                lines.append(
                    f"| {s.label} | {s.median_rate:,.0f} | {s.us_per_record:.1f} | {s.cpu_us:.1f} | "
                    f"{s.vs_file:.2f}× | {s.vs_baseline_cpu:.2f}× | {s.lost:,} | {s.duplicated:,} | {bad:,} |"
                )
            else:
                lines.append(
                    f"| {s.label} | {s.median_rate:,.0f} | {s.vs_file:.2f}× | {s.lost:,} | "
                    f"{s.duplicated:,} | {bad:,} |"
                )
        lines.append("")
    lines.append(
        "records/s: median over repetitions (wall time from the barrier release to the last "
        "record); µs/record: its inverse; CPU µs/record: median process CPU time (user + system) "
        "per record, which leaves out time spent descheduled by other jobs on the machine. "
        "lost / dup / malformed: worst repetition, from an exact audit of every file a run left. "
        "With several processes the stdlib handlers and safelog `thread` are not process-safe; "
        "they are measured to show what they lose."
    )
    if checks:
        lines.append("")
        lines.append("| target | measured | goal | met |")
        lines.append("| --- | ---: | ---: | :---: |")
        for what, measured, op, goal, ok in checks:
            lines.append(f"| {what} | {measured:.3f}× | {op} {goal:.2f}× | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def _case_title(case: str) -> str:
    procs, threads = (int(n) for n in case.split("x"))
    return f"{procs} process{'es' if procs > 1 else ''} × {threads} thread{'s' if threads > 1 else ''}"


def _commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "safelog"], capture_output=True, text=True
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    """The processor's name as the OS reports it (for the figures' caption)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=None, help="repetitions per row (default 5; 3 with --quick)")
    p.add_argument("--records", type=int, default=None, help="records per run, split over all threads (default 60000; 20000 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer records and repetitions: a smoke run")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "throughput.json"), help="JSON results file (default benchmarks/results/throughput.json)")
    p.add_argument("--markdown", action="store_true", help="print only the markdown table, no progress")
    p.add_argument("--rows", default=",".join(r.key for r in ROWS), help="comma-separated row keys to run (default: all)")
    p.add_argument("--cases", default=",".join(CASES), help=f"PROCSxTHREADS cases to run (default {','.join(CASES)})")
    p.add_argument("--dir", default=None, help="where the log files go (default: the system temp dir)")
    args = p.parse_args(argv)
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    records = args.records if args.records is not None else (20_000 if args.quick else 60_000)
    wanted = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in ROW_BY_KEY]
    if unknown or reps < 1 or records < 8:
        p.error(f"bad --rows {unknown}" if unknown else "--reps must be >= 1 and --records >= 8")
    for need in ("stdlib_file",):
        if need not in wanted:
            wanted.insert(0, need)  # every ratio is against it

    try:
        cases = [(c, int(c.split("x")[0]), int(c.split("x")[1])) for c in args.cases.split(",")]
        if any(procs < 1 or threads < 1 for _, procs, threads in cases):
            raise ValueError
    except (ValueError, IndexError):
        p.error(f"bad --cases {args.cases!r}; expected e.g. 1x1,2x1,4x1,4x2")
    ctx = mp.get_context("spawn")
    base = tempfile.mkdtemp(prefix="safelog-bench-", dir=args.dir)
    say = (lambda *a: None) if args.markdown else (lambda *a: print(*a, file=sys.stderr, flush=True))
    runs: list[Run] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        for rep in range(reps):
            for case, procs, threads in cases:
                rows = [ROW_BY_KEY[k] for k in wanted if procs == 1 or ROW_BY_KEY[k].multi]
                # Rotate the order every repetition so no row always runs first (cold caches) or
                # right after the slowest one.
                k = rep % len(rows)
                for row in rows[k:] + rows[:k]:
                    r = run_once(ctx, row, case, procs, threads, records, rep, base)
                    runs.append(r)
                    say(
                        f"rep {rep + 1}/{reps} {case} {row.key:20s} {r.rate:10,.0f} rec/s "
                        f"lost={r.lost} dup={r.duplicated} malformed={r.malformed + r.unexpected}"
                    )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    summary = summarise(runs, cases)
    checks = targets(summary)
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO)] + (argv if argv is not None else sys.argv[1:])),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "reps": reps,
        "records": records,
        "max_bytes": MAX_BYTES,
        "backup_count": {c: backup_count(records, n) for c, n, _ in cases},
        "format": FORMAT,
        "commit": _commit(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    md = markdown(summary, meta, checks)
    print(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "meta": meta,
                "summary": {c: [asdict(s) for s in rows] for c, rows in summary.items()},
                "targets": [
                    {"target": w, "measured": m, "goal": f"{op} {g}", "met": ok} for w, m, op, g, ok in checks
                ],
                "runs": [asdict(r) for r in runs],
            },
            f,
            indent=2,
        )
    say(f"wrote {args.out} ({meta['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
