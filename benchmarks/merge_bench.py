"""Benchmark ``safelog merge`` against GNU ``sort -m`` on the same shard data.

Generates ``--shards`` shards of about ``--mb`` MB in total with the real shard encoder (records
of ~110 bytes, every 50th a 5-line traceback, the writers' times interleaved at random), then
runs, alternately and ``--reps`` times each, in a fresh child process:

* ``python -c "safelog.merge(...)"`` (``keep=True``, a fresh output file each time, or with
  ``--existing-mb`` one that already holds that much of an earlier merge; the batch is appended
  in place and fsynced, as always), and
* ``LC_ALL=C sort -m -k1,1 -s -o OUT SHARDS...`` (merge of sorted inputs keyed on the time
  field; it writes the framed lines unchanged and does not fsync).

Wall time is measured around the child; CPU time (user + system) and peak RSS come from its
``wait4`` rusage, which includes the merge's forked worker (RSS: the larger of the two
processes, CPU: both). CPU time is the steadier figure on a busy machine. Prints medians and
ratios, and checks that the merge wrote every record. Usage::

    python benchmarks/merge_bench.py [--mb 200] [--shards 8] [--reps 5] [--existing-mb 0] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from safelog._primitives.shard import ShardFrame  # noqa: E402


def generate(directory: str, total_mb: float, shards: int, seed: int = 1) -> int:
    """Write the shards; return the number of records."""
    rng = random.Random(seed)
    per_shard = int(total_mb * 1e6 / shards)
    records = 0
    t0 = 1_790_000_000.0
    for k in range(shards):
        frame = ShardFrame("utf-8", "strict")
        t = t0 + rng.random() * 0.001
        size = n = 0
        buf: list[bytes] = []
        with open(os.path.join(directory, f"app.log.bench-host.{1000 + k}.shard"), "wb") as f:
            while size < per_shard:
                # ~2,500 records/s per writer: times of the 8 writers interleave record by record.
                t += rng.random() * 0.0008
                n += 1
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
                if n % 50 == 0:
                    msg = (
                        f"{stamp},{int(t * 1000) % 1000:03d} ERROR app.worker[{1000 + k}] id={k}-{n} request failed\n"
                        "Traceback (most recent call last):\n"
                        '  File "app/views.py", line 42, in handle\n'
                        "    return self.process(request)\n"
                        f"ValueError: bad request {n}"
                    )
                else:
                    msg = (
                        f"{stamp},{int(t * 1000) % 1000:03d} INFO app.worker[{1000 + k}] id={k}-{n} "
                        f"GET /api/v1/items/{n} 200 {rng.randint(1, 900)}ms"
                    )
                data = frame.encode(msg, t)
                buf.append(data)
                size += len(data)
                if len(buf) >= 4096:
                    f.write(b"".join(buf))
                    buf.clear()
            f.write(b"".join(buf))
        records += n
    return records


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with status {proc.returncode}")
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss // 1024
    return wall, usage.ru_utime + usage.ru_stime, rss_kib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--existing-mb", type=float, default=0, help="what the merged log holds before each merge (default: empty)"
    )
    ap.add_argument("--dir", help="work directory (default: a temp dir on the same file system as the repo)")
    args = ap.parse_args()
    if shutil.which("sort") is None:
        raise SystemExit("GNU sort not found")
    base = args.dir or os.path.join(ROOT, "benchmarks", "results")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="merge-bench-", dir=base)
    try:
        t = time.perf_counter()
        records = generate(work, args.mb, args.shards)
        shards = sorted(os.path.join(work, e) for e in os.listdir(work) if ".shard" in e)
        size = sum(os.path.getsize(p) for p in shards)
        print(
            f"generated {len(shards)} shards, {size / 1e6:.1f} MB, {records:,} records "
            f"in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        existing = os.path.join(work, "existing.log")
        if args.existing_mb:
            with open(existing, "wb") as f:
                block = b"".join(b"2026-11-26 18:49:28,123 INFO earlier batch line %08d\n" % i for i in range(10_000))
                for _ in range(max(1, int(args.existing_mb * 1e6 / len(block)))):
                    f.write(block)
        env = dict(os.environ, PYTHONPATH=ROOT)
        log = os.path.join(work, "app.log")
        sort_out = os.path.join(work, "sorted.out")
        merge_t, merge_rss, sort_t, sort_rss, merge_cpu, sort_cpu = [], [], [], [], [], []
        for rep in range(args.reps):
            out = os.path.join(work, f"merged-{rep}.log")
            if args.existing_mb:
                shutil.copyfile(existing, out)
                os.sync()  # its bytes on disk already, as an earlier merge left them
            code = f"import safelog; r = safelog.merge({log!r}, {out!r}, keep=True); assert r.ok and r.records == {records}"
            runs = [("merge", [sys.executable, "-c", code]), ("sort", ["sort", "-m", "-k1,1", "-s", "-o", sort_out, *shards])]
            if rep % 2:
                runs.reverse()  # alternate who goes first: page cache and machine noise hit both
            for name, cmd in runs:
                wall, cpu, rss = run_child(cmd, env=dict(env, LC_ALL="C"))
                (merge_t if name == "merge" else sort_t).append(wall)
                (merge_cpu if name == "merge" else sort_cpu).append(cpu)
                (merge_rss if name == "merge" else sort_rss).append(rss)
            os.unlink(out)
            for p in os.listdir(work):
                if p.startswith(f"merged-{rep}.log."):
                    os.unlink(os.path.join(work, p))
            print(
                f"rep {rep + 1}: merge {merge_t[-1]:.2f} s (cpu {merge_cpu[-1]:.2f}) {merge_rss[-1] / 1024:.0f} MiB | "
                f"sort -m {sort_t[-1]:.2f} s (cpu {sort_cpu[-1]:.2f}) {sort_rss[-1] / 1024:.0f} MiB | "
                f"ratio {merge_t[-1] / sort_t[-1]:.2f}",
                flush=True,
            )
        result = {
            "mb": round(size / 1e6, 1),
            "existing_mb": args.existing_mb,
            "shards": len(shards),
            "records": records,
            "reps": args.reps,
            "merge_median_s": round(statistics.median(merge_t), 3),
            "sort_m_median_s": round(statistics.median(sort_t), 3),
            "ratio_of_medians": round(statistics.median(merge_t) / statistics.median(sort_t), 2),
            "median_of_ratios": round(statistics.median(m / s for m, s in zip(merge_t, sort_t, strict=True)), 2),
            "merge_cpu_median_s": round(statistics.median(merge_cpu), 3),
            "sort_m_cpu_median_s": round(statistics.median(sort_cpu), 3),
            "cpu_ratio_of_medians": round(statistics.median(merge_cpu) / statistics.median(sort_cpu), 2),
            "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
            "merge_peak_rss_mib_max": round(max(merge_rss) / 1024, 1),
            "sort_m_peak_rss_mib_max": round(max(sort_rss) / 1024, 1),
            "merge_mb_per_s": round(size / 1e6 / statistics.median(merge_t), 1),
        }
        print(json.dumps(result, indent=1))
        with open(os.path.join(base, "merge_bench.json"), "w") as f:
            json.dump(result, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
