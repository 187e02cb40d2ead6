"""What following a log costs: ``safelog follow``'s CPU while writers log at full speed, and the lag
of ``safelog merge --follow`` (a record written -> the record in the merged file).

CPU: ``--writers`` fork processes log ``--records`` records each as fast as they can through
one strategy (rotation at 1 MB, gzip), while ``safelog follow`` runs in its own process with its
output to /dev/null. The follower's user + system time comes from its ``wait4`` rusage; it is
given per 100,000 records, with the writers' own CPU beside it. Each strategy runs ``--reps``
times, interleaved; medians.

Lag: writers log one record every ``--period`` seconds each, carrying ``time.time()`` at
logging; a reader in this process follows the merged file (it looks every millisecond) and
notes, for each record, the time it appeared minus the time it was logged. Median and 99th
percentile, per ``--lag`` setting. Figures from a shared machine are indicative.

    python benchmarks/follow_bench.py [--writers 4] [--records 100000] [--reps 3] [--lags 0.5,0]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import safelog  # noqa: E402

FORK = multiprocessing.get_context("fork")


def _writer(path: str, strategy: str, name: str, n: int, period: float) -> None:
    handler = safelog.SafeFileHandler(path, strategy=strategy, max_bytes="1 MB", backup_count=10_000, compress="gzip")
    handler.setFormatter(logging.Formatter("%(created).6f %(process)d %(message)s"))
    log = logging.Logger(name)
    log.addHandler(handler)
    payload = "x" * 60
    for i in range(n):
        log.info("%s-%d %s", name, i, payload)
        if period:
            time.sleep(period)
    handler.close()


def _start(args: list[str], stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "safelog", *args], cwd=ROOT, stdout=stdout, env=dict(os.environ, PYTHONPATH=ROOT)
    )


def _cpu_of(proc: subprocess.Popen[bytes]) -> float:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def follow_cpu(strategy: str, writers: int, records: int) -> tuple[float, float, float]:
    """(follower CPU s, writers' CPU s, wall s of the writers) for one run."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "app.log")
        follower = _start(["follow", "-n", "0", path])
        time.sleep(1.0)  # let it start: its start-up is not what is measured
        before = os.times()
        t0 = time.perf_counter()
        procs = [FORK.Process(target=_writer, args=(path, strategy, f"w{k}", records, 0.0)) for k in range(writers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        after = os.times()
        follower.send_signal(signal.SIGTERM)
        cpu = _cpu_of(follower)
        writer_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        return cpu, writer_cpu, wall


def merge_lag(lag: str, writers: int, seconds: float, period: float) -> list[float]:
    """Lags (s) of every record of a run of ``seconds``."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "app.log")
        merger = _start(["merge", "--follow", "--lag", lag, "-q", path], stdout=None)
        n = int(seconds / period)
        procs = [FORK.Process(target=_writer, args=(path, "per-process", f"w{k}", n, period)) for k in range(writers)]
        for p in procs:
            p.start()
        lags: list[float] = []
        pos, partial = 0, b""
        expected = n * writers
        deadline = time.monotonic() + seconds * 3 + 30
        while len(lags) < expected and time.monotonic() < deadline:
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            now = time.time()
            if data:
                pos += len(data)
                lines = (partial + data).split(b"\n")
                partial = lines.pop()
                lags += [now - float(line.split(b" ", 1)[0]) for line in lines if line]
            time.sleep(0.001)
        for p in procs:
            p.join()
        merger.send_signal(signal.SIGTERM)
        merger.wait()
        return lags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--records", type=int, default=100_000, help="records per writer (CPU runs)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--strategies", default="per-process,flock")
    ap.add_argument("--lags", default="0.5,0", help="--lag values of the lag runs (seconds)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of a lag run")
    ap.add_argument("--period", type=float, default=0.002, help="seconds between two records of a writer (lag runs)")
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {}
    strategies = args.strategies.split(",")
    for _ in range(args.reps):
        for s in strategies:
            results.setdefault(s, []).append(follow_cpu(s, args.writers, args.records))
    total = args.writers * args.records
    print(f"follow CPU, {args.writers} writers x {args.records:,} records at full speed (medians of {args.reps}):")
    for s in strategies:
        cpu = statistics.median(r[0] for r in results[s])
        wcpu = statistics.median(r[1] for r in results[s])
        wall = statistics.median(r[2] for r in results[s])
        print(
            f"  {s:12} follower {cpu / total * 1e5:.2f} CPU s per 100k records "
            f"(writers {wcpu / total * 1e5:.2f}; {total / wall:,.0f} records/s)"
        )
    print(f"merge --follow lag, {args.writers} writers, a record every {args.period * 1000:g} ms each:")
    for lag in args.lags.split(","):
        lags = sorted(merge_lag(lag, args.writers, args.seconds, args.period))
        if not lags:
            print(f"  --lag {lag}: no record seen")
            continue
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(f"  --lag {lag:4}s: median {statistics.median(lags) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(lags):,} records)")


if __name__ == "__main__":
    main()
