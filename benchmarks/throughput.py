"""Throughput of safelog's strategies against the stdlib handlers and concurrent-log-handler.

Every row is measured in the same run, interleaved repetition by repetition, so the ratios stay
fair on a shared, noisy machine: a slow minute hurts every row alike. Each run starts fresh
``spawn`` processes (each configures its own handler, like a real app), holds them at a barrier,
and times from the release until the last thread has logged its last record. After every run the
files are audited: every record id exactly once, no malformed line.

    python benchmarks/throughput.py                 # full run, 5 repetitions (a few minutes)
    python benchmarks/throughput.py --quick         # smoke run (under a minute)
    python benchmarks/throughput.py --markdown      # print only the markdown table
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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

# Run as a script from anywhere: import safelog from this checkout, not from site-packages.
# spawn children inherit sys.path from the parent, so this also covers them.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MAX_BYTES = 1024 * 1024
# Large enough that no backup is ever deleted: the audit then accounts for every record.
BACKUP_COUNT = 10_000
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


def _stdlib_file(path: str) -> logging.Handler:
    return logging.FileHandler(path, encoding="utf-8")


def _stdlib_rotating(path: str) -> logging.Handler:
    return logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
    )


def _clh(path: str) -> logging.Handler:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    return ConcurrentRotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
    )


def _safelog(strategy: str) -> Callable[[str], logging.Handler]:
    def make(path: str) -> logging.Handler:
        import safelog

        return safelog.SafeFileHandler(
            path, strategy=strategy, max_bytes=MAX_BYTES, backup_count=BACKUP_COUNT
        )

    return make


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    make: Callable[[str], logging.Handler]
    multi: bool  # measured in the multi-process case too


ROWS = [
    Row("os_write", "format + one os.write (baseline)", OsWriteHandler, False),
    Row("stdlib_file", "stdlib FileHandler (no rotation)", _stdlib_file, True),
    Row("stdlib_rotating", "stdlib RotatingFileHandler", _stdlib_rotating, True),
    Row("clh", "concurrent-log-handler 0.9.31", _clh, True),
    Row("safelog_thread", "safelog thread", _safelog("thread"), True),
    Row("safelog_flock", "safelog flock", _safelog("flock"), True),
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
    barrier: Any,
    results: Any,
) -> None:
    """Configure the handler, wait for everyone, log, report (start, end) monotonic times."""
    handler = ROW_BY_KEY[row_key].make(path)
    handler.setFormatter(logging.Formatter(FORMAT))
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
        go.set()
        for th in pool:
            th.join()
        handler.flush()
        end = time.perf_counter()
    finally:
        go.set()
        for th in pool:
            th.join()
        handler.close()
    results.put((worker, start, end))


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    row: str
    case: str
    rep: int
    records: int
    seconds: float
    rate: float
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
    workdir = tempfile.mkdtemp(prefix=f"{row.key}-{case}-", dir=base)
    path = os.path.join(workdir, "bench.log")
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(row.key, path, w, threads, per_thread, barrier, results))
        for w in range(procs)
    ]
    for c in children:
        c.start()
    times = []
    try:
        for _ in range(procs):
            times.append(results.get(timeout=600))
    finally:
        for c in children:
            c.join(timeout=60)
            if c.is_alive():
                c.kill()
                c.join()
    failed = [c.exitcode for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"{row.key} {case}: child exit codes {failed}")
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
    rates: list[float] = field(default_factory=list)
    median_rate: float = 0.0
    us_per_record: float = 0.0
    vs_file: float = 0.0
    vs_baseline: float | None = None
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
                s.vs_baseline = s.us_per_record / by["os_write"].us_per_record
        out[case] = rows
    return out


def targets(summary: dict[str, list[Summary]], multi: str, single: str) -> list[tuple[str, float, float, bool]]:
    """(description, measured, target, met) for the issue's targets."""
    out = []
    if multi in summary:
        by = {s.row: s for s in summary[multi]}
        f = by["safelog_flock"].median_rate
        out.append((f"{multi}: safelog flock / stdlib FileHandler", f / by["stdlib_file"].median_rate, 0.85, True))
        out.append((f"{multi}: safelog flock / concurrent-log-handler", f / by["clh"].median_rate, 5.0, True))
    if single in summary:
        by = {s.row: s for s in summary[single]}
        base = by["os_write"].us_per_record
        for key in ("safelog_thread", "safelog_flock", "safelog_per_process"):
            ratio = by[key].us_per_record / base
            out.append((f"{single}: {ROW_BY_KEY[key].label} µs/record / baseline", ratio, 1.15, False))
    # higher-is-better targets are ">=", cost ratios are "<="
    return [(d, m, t, (m >= t) if hi else (m <= t)) for d, m, t, hi in out]


def markdown(summary: dict[str, list[Summary]], meta: dict[str, Any], checks: list[tuple[str, float, float, bool]]) -> str:
    lines = [
        f"`{meta['command']}` — Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{meta['reps']} repetitions (median records/s), {meta['records']:,} records per run, "
        f"1 MB rotation; safelog {meta['commit']}",
        "",
    ]
    for case, rows in summary.items():
        single = case.startswith("1x1")
        lines.append(f"**{_case_title(case)}**")
        lines.append("")
        if single:
            lines.append("| handler | records/s | µs/record | vs FileHandler | vs format + os.write | lost | dup | malformed |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        else:
            lines.append("| handler | records/s | vs FileHandler | lost | dup | malformed |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for s in rows:
            bad = s.malformed + s.unexpected
            if single:
                lines.append(
                    f"| {s.label} | {s.median_rate:,.0f} | {s.us_per_record:.1f} | {s.vs_file:.2f}× | "
                    f"{s.vs_baseline:.2f}× | {s.lost:,} | {s.duplicated:,} | {bad:,} |"
                )
            else:
                lines.append(
                    f"| {s.label} | {s.median_rate:,.0f} | {s.vs_file:.2f}× | {s.lost:,} | "
                    f"{s.duplicated:,} | {bad:,} |"
                )
        lines.append("")
    lines.append(
        "lost / dup / malformed: worst repetition (max), from an exact audit of every file the run "
        "left (malformed includes torn or interleaved lines). In the multi-process case the stdlib "
        "handlers and safelog `thread` are not process-safe; they are measured to show what they lose."
    )
    lines.append("")
    lines.append("| target | measured | goal | met |")
    lines.append("| --- | ---: | ---: | :---: |")
    for desc, measured, goal, ok in checks:
        op = "≤" if "µs" in desc else "≥"
        lines.append(f"| {desc} | {measured:.2f}× | {op} {goal:.2f}× | {'yes' if ok else 'NO'} |")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=None, help="repetitions per row (default 5; 3 with --quick)")
    p.add_argument("--records", type=int, default=None, help="records per run, split over all threads (default 80000; 20000 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer records and repetitions: a smoke run")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "throughput.json"), help="JSON results file (default benchmarks/results/throughput.json)")
    p.add_argument("--markdown", action="store_true", help="print only the markdown table, no progress")
    p.add_argument("--rows", default=",".join(r.key for r in ROWS), help="comma-separated row keys to run (default: all)")
    p.add_argument("--dir", default=None, help="where the log files go (default: the system temp dir)")
    args = p.parse_args(argv)
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    records = args.records if args.records is not None else (20_000 if args.quick else 80_000)
    wanted = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in ROW_BY_KEY]
    if unknown or reps < 1 or records < 8:
        p.error(f"bad --rows {unknown}" if unknown else "--reps must be >= 1 and --records >= 8")
    for need in ("stdlib_file",):
        if need not in wanted:
            wanted.insert(0, need)  # every ratio is against it

    cases = [("1x1", 1, 1), ("4x2", 4, 2)]
    ctx = mp.get_context("spawn")
    base = tempfile.mkdtemp(prefix="safelog-bench-", dir=args.dir)
    say = (lambda *a: None) if args.markdown else (lambda *a: print(*a, file=sys.stderr, flush=True))
    runs: list[Run] = []
    started = time.monotonic()
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
    checks = targets(summary, "4x2", "1x1") if {"os_write", "clh", "safelog_flock"} <= set(wanted) else []
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO)] + (argv if argv is not None else sys.argv[1:])),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "reps": reps,
        "records": records,
        "max_bytes": MAX_BYTES,
        "backup_count": BACKUP_COUNT,
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
                "targets": [{"target": d, "measured": m, "goal": g, "met": ok} for d, m, g, ok in checks],
                "runs": [asdict(r) for r in runs],
            },
            f,
            indent=2,
        )
    say(f"wrote {args.out} ({meta['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
