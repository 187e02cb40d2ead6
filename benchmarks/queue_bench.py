"""Non-blocking (queue) mode against synchronous writes, for every strategy.

For each strategy and mode, 1 process × 1 thread and 4 processes × 2 threads log the same
records. Two figures per run:

* caller-side cost: what one logging call costs the thread that makes it, in µs per record:
  wall time of the logging loop (``perf_counter``) and that thread's CPU time (``thread_time``).
  Queue mode runs with the default settings (``queue_size`` 10,000, ``overflow="block"``):
  when the writer falls behind, the caller's figure includes the time it waited for room.
* throughput: records per second from the release of all processes until the last one has
  drained its queue and closed its handler, i.e. everything is on disk. Next to it, the CPU
  time all threads of all processes spent per record (``process_time``): on a machine shared
  with other work, wall-clock throughput depends on how the scheduler shares the CPUs out, the
  CPU cost per record does not.

Every run ends with an exact audit (every record id once, nothing malformed). Rows are
interleaved repetition by repetition, so a noisy minute hurts every row alike; figures are
medians over the repetitions.

    python benchmarks/queue_bench.py                  # 5 repetitions, JSON to benchmarks/results/queue.json
    python benchmarks/queue_bench.py --quick          # smoke run
    python benchmarks/chart.py benchmarks/results/queue.json -o docs/benchmarks.png
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from _harness import run_workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MAX_BYTES = 1024 * 1024
BACKUP_COUNT = 10_000  # nothing is ever deleted, so the audit accounts for every record
FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s %(message)s"
PAYLOAD = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWX"
PATTERN = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ (?:w\d+t\d+|MainThread) INFO bench id=(?P<id>\d+-(?:\d+|warm)-\d+) payload="
    + PAYLOAD
)
STRATEGIES = ("thread", "flock", "per-process")
MODES = ("sync", "queue")
CASES = (("1x1", 1, 1), ("4x2", 4, 2))


def _child(strategy: str, mode: str, path: str, worker: int, threads: int, per_thread: int, barrier: Any, results: Any) -> None:
    import safelog

    # The thread strategy is for one process: with four, its in-memory size would rotate the file
    # under the others' feet, so it runs without rotation here (in every mode alike).
    rotate = strategy != "thread"
    options: dict[str, Any] = {}
    if mode == "queue":
        options = {"nonblocking": True}
    handler = safelog.SafeFileHandler(
        path,
        strategy=strategy,
        max_bytes=MAX_BYTES if rotate else 0,
        backup_count=BACKUP_COUNT if rotate else 0,
        **options,
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("bench")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    go = threading.Event()
    costs: list[tuple[float, float]] = []

    def work(t: int) -> None:
        info = logger.info
        go.wait()
        w0, c0 = time.perf_counter(), time.thread_time()
        for i in range(per_thread):
            info("id=%d-%d-%d payload=%s", worker, t, i, PAYLOAD)
        costs.append(((time.perf_counter() - w0) / per_thread, (time.thread_time() - c0) / per_thread))

    pool = [threading.Thread(target=work, args=(t,), name=f"w{worker}t{t}") for t in range(threads)]
    for th in pool:
        th.start()
    # One warm record through the whole path (opens files, starts the writer thread).
    logger.info("id=%d-warm-0 payload=%s", worker, PAYLOAD)
    handler.flush()
    barrier.wait(timeout=120)
    start, cpu = time.perf_counter(), time.process_time()
    go.set()
    for th in pool:
        th.join()
    handler.close()  # drains the queue: the run ends when everything is written
    end = time.perf_counter()
    results.put((worker, start, end, costs, time.process_time() - cpu))


@dataclass
class Run:
    strategy: str
    mode: str
    case: str
    rep: int
    records: int
    rate: float
    cpu_us: float
    caller_wall_us: float
    caller_cpu_us: float
    lost: int
    duplicated: int
    malformed: int


def run_once(ctx: Any, strategy: str, mode: str, case: str, procs: int, threads: int, records: int, rep: int, base: str) -> Run:
    from safelog._audit import audit, log_files

    per_thread = records // (procs * threads)
    workdir = tempfile.mkdtemp(prefix=f"{strategy}-{mode}-{case}-", dir=base)
    path = os.path.join(workdir, "bench.log")
    barrier = ctx.Barrier(procs)
    got = run_workers(ctx, _child, [(strategy, mode, path, w, threads, per_thread, barrier) for w in range(procs)], f"{strategy} {mode} {case}")
    seconds = max(g[2] for g in got) - min(g[1] for g in got)
    costs = [c for g in got for c in g[3]]
    total = per_thread * procs * threads
    expected = [f"{w}-{t}-{i}" for w in range(procs) for t in range(threads) for i in range(per_thread)]
    expected += [f"{w}-warm-0" for w in range(procs)]
    report = audit(log_files(path), expected, PATTERN)
    shutil.rmtree(workdir, ignore_errors=True)
    return Run(
        strategy=strategy,
        mode=mode,
        case=case,
        rep=rep,
        records=total,
        rate=total / seconds,
        cpu_us=sum(g[4] for g in got) / total * 1e6,
        caller_wall_us=statistics.mean(c[0] for c in costs) * 1e6,
        caller_cpu_us=statistics.mean(c[1] for c in costs) * 1e6,
        lost=len(report.lost),
        duplicated=sum(n - 1 for n in report.duplicated.values()),
        malformed=len(report.malformed) + len(report.unexpected),
    )


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for case, _, _ in CASES:
        for strategy in STRATEGIES:
            for mode in MODES:
                mine = [r for r in runs if (r.case, r.strategy, r.mode) == (case, strategy, mode)]
                if not mine:
                    continue
                rows.append(
                    {
                        "case": case,
                        "strategy": strategy,
                        "mode": mode,
                        "rate": statistics.median(r.rate for r in mine),
                        "cpu_us": statistics.median(r.cpu_us for r in mine),
                        "caller_wall_us": statistics.median(r.caller_wall_us for r in mine),
                        "caller_cpu_us": statistics.median(r.caller_cpu_us for r in mine),
                        "rates": [round(r.rate) for r in mine],
                        # the worst repetition: one lossy run is what matters
                        "lost": max(r.lost for r in mine),
                        "duplicated": max(r.duplicated for r in mine),
                        "malformed": max(r.malformed for r in mine),
                    }
                )
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["case"], r["strategy"], r["mode"]): r for r in rows}
    out = []
    sync1 = by.get(("1x1", "flock", "sync"))
    if sync1:
        for strategy in STRATEGIES:
            q = by.get(("1x1", strategy, "queue"))
            if q:
                for key, what in (("caller_wall_us", "wall"), ("caller_cpu_us", "CPU")):
                    ratio = q[key] / sync1[key]
                    out.append({"target": f"1x1 caller {what} µs/record: {strategy} queue / flock sync",
                                "measured": ratio, "goal": 0.6, "op": "<=", "met": ratio <= 0.6})
    sync4 = by.get(("4x2", "flock", "sync"))
    if sync4:
        for strategy in STRATEGIES:
            q = by.get(("4x2", strategy, "queue"))
            if q:
                ratio = q["rate"] / sync4["rate"]
                out.append({"target": f"4x2 records/s: {strategy} queue / flock sync",
                            "measured": ratio, "goal": 1.5, "op": ">=", "met": ratio >= 1.5})
                # The same target in CPU terms: records per CPU-second, independent of how much
                # of the machine the run was given.
                ratio = sync4["cpu_us"] / q["cpu_us"]
                out.append({"target": f"4x2 records per CPU-second: {strategy} queue / flock sync",
                            "measured": ratio, "goal": 1.5, "op": ">=", "met": ratio >= 1.5})
    return out


def markdown(rows: list[dict[str, Any]], checks: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Python {meta['python']}, {meta['cpus']} CPUs, {meta['reps']} repetitions (medians), "
        f"{meta['records']:,} records per run, 1 MB rotation (thread strategy: none); safelog {meta['commit']}; "
        f"load average at the end {meta['load_average']}",
        "",
        "| case | strategy | mode | caller µs/record (wall) | caller µs/record (CPU) | records/s | total CPU µs/record | lost | dup | malformed |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['strategy']} | {r['mode']} | {r['caller_wall_us']:.1f} | {r['caller_cpu_us']:.1f} | "
            f"{r['rate']:,.0f} | {r['cpu_us']:.1f} | {r['lost']} | {r['duplicated']} | {r['malformed']} |"
        )
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | ---: | :---: |"]
    for c in checks:
        lines.append(f"| {c['target']} | {c['measured']:.2f}× | {'≤' if c['op'] == '<=' else '≥'} {c['goal']}× | {'yes' if c['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 2 with --quick)")
    p.add_argument("--records", type=int, default=None, help="records per run (default 40000; 8000 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "queue.json"))
    args = p.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    records = args.records or (8_000 if args.quick else 40_000)
    ctx = mp.get_context("spawn")
    base = tempfile.mkdtemp(prefix="safelog-queue-bench-")
    combos = [(s, m) for s in STRATEGIES for m in MODES]
    runs: list[Run] = []
    started = time.monotonic()
    try:
        for rep in range(reps):
            for case, procs, threads in CASES:
                k = rep % len(combos)
                for strategy, mode in combos[k:] + combos[:k]:
                    r = run_once(ctx, strategy, mode, case, procs, threads, records, rep, base)
                    runs.append(r)
                    print(
                        f"rep {rep + 1}/{reps} {case} {strategy:11s} {mode:5s} {r.rate:9,.0f} rec/s "
                        f"caller {r.caller_wall_us:5.1f} µs wall {r.caller_cpu_us:5.1f} µs CPU "
                        f"lost={r.lost} dup={r.duplicated} malformed={r.malformed}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = summarise(runs)
    checks = targets(rows)
    meta = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "reps": reps,
        "records": records,
        "format": FORMAT,
        "commit": _commit(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(x, 1) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    print(markdown(rows, checks, meta))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows, "targets": checks, "runs": [asdict(r) for r in runs]}, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
