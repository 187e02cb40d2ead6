"""Worst single ``emit()`` latency while a 50 MB backup is compressed: safelog vs concurrent-log-handler.

Each run: a log file pre-filled with 50 MB of log lines; two writer processes (fresh ``spawn``
interpreters, each configuring its own handler with a 50 MB size limit and gzip) are released
together and log at a steady pace, timing every ``emit()``. The first record rotates the full
file, so its backup is gzipped while both keep logging. The run ends when the backup has become
``app.log.1.gz`` (and the plain one is gone). Reported per handler: the worst and the 99th
percentile emit latency over all writers, and how long the backup took to compress, as medians
over the runs (handlers interleaved run by run, so a noisy minute hurts both alike). Every run
is audited: each record logged during it exactly once, across app.log and app.log.1.gz. A third
row, safelog with the same rotation but no compression, shows the machine's own noise floor.

    python benchmarks/compress_latency.py              # 5 runs each (about a minute)
    python benchmarks/compress_latency.py --runs 3 --size-mb 20
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

PATTERN = r"\S+ \S+ \d+ INFO bench id=(?P<id>w\d+-\d+) payload=[0-9a-f]{32}"


def prefill(path: str, size: int) -> None:
    """``size`` bytes of varied log lines (ids and hex payloads, so gzip has real work)."""
    rnd = os.urandom(16 * 1024)
    lines = []
    n = 0
    total = 0
    while total < size:
        payload = rnd[(n * 16) % len(rnd) : (n * 16) % len(rnd) + 16].hex()
        line = f"2026-11-26 18:00:00,000 4242 INFO old id=old-{n} payload={payload}\n"
        lines.append(line)
        total += len(line)
        n += 1
        if len(lines) >= 10_000:
            with open(path, "a") as f:
                f.writelines(lines)
            lines = []
    with open(path, "a") as f:
        f.writelines(lines)
    with open(path, "r+b") as f:
        f.truncate(size)  # exactly at the limit; the last old line may be cut, it is never audited
        f.seek(size - 1)
        f.write(b"\n")


def make_handler(kind: str, path: str, size: int) -> logging.Handler:
    if kind in ("safelog", "plain"):
        import safelog

        compress = "gzip" if kind == "safelog" else None
        return safelog.SafeFileHandler(path, strategy="flock", max_bytes=size, backup_count=5, compress=compress)
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    return ConcurrentRotatingFileHandler(path, maxBytes=size, backupCount=5, use_gzip=True)


def writer(kind: str, path: str, size: int, wid: int, go: Any, stop: Any, pace: float, out: Any) -> None:
    handler = make_handler(kind, path, size)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d INFO %(name)s %(message)s"))
    log = logging.Logger("bench")
    log.addHandler(handler)
    payload = os.urandom(16).hex()
    lat = []
    perf = time.perf_counter
    go.wait()
    i = 0
    while not stop.is_set() or i == 0:
        t0 = perf()
        log.info("id=w%d-%d payload=%s", wid, i, payload)
        lat.append(perf() - t0)
        i += 1
        # A steady application pace: sleeping, not spinning, so the compressor and the other
        # writer get the CPU they would get in a real service.
        time.sleep(pace)
    handler.close()
    if kind == "safelog":
        from safelog._policy import compress as _compress
        _compress.wait(120)
    out.put((wid, i, max(lat), statistics.quantiles(lat, n=100)[98] if len(lat) > 100 else max(lat)))


def one_run(kind: str, size: int, writers: int, pace: float, template: str) -> dict[str, float]:
    from safelog._audit import audit

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix=f"compress-{kind}-") as d:
        path = os.path.join(d, "app.log")
        shutil.copyfile(template, path)
        go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=writer, args=(kind, path, size, w, go, stop, pace, out)) for w in range(writers)]
        for p in procs:
            p.start()
        time.sleep(1.0)  # let both interpreters start and open the log before the clock starts
        t0 = time.monotonic()
        go.set()
        gz = path + ".1.gz"

        def done() -> bool:
            if kind == "plain":  # the floor: same rotation, nothing compressed, 3 seconds
                return time.monotonic() - t0 > 3 and os.path.exists(path + ".1")
            return os.path.exists(gz) and not os.path.exists(path + ".1")

        while not done():
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"{kind}: backup not compressed after 300 s")
            time.sleep(0.005)
        compressed_after = time.monotonic() - t0
        time.sleep(0.1)
        stop.set()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(120)
        ids = [f"w{wid}-{i}" for wid, n, _, _ in results for i in range(n)]
        report = audit([path, path + ".1" if kind == "plain" else gz], ids, PATTERN)
        # The pre-filled old lines are in the backup too; they are not ours to count.
        assert not report.lost and not report.duplicated, report.summary()
        return {
            "worst_ms": max(r[2] for r in results) * 1000,
            "p99_ms": max(r[3] for r in results) * 1000,
            "records": float(len(ids)),
            "compress_s": compressed_after,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--pace-us", type=int, default=500, help="sleep between records (default %(default)s µs)")
    ap.add_argument("--only", choices=("safelog", "clh", "plain"))
    args = ap.parse_args(argv)
    size = args.size_mb * 1000 * 1000
    kinds = [args.only] if args.only else ["plain", "safelog", "clh"]
    with tempfile.TemporaryDirectory(prefix="compress-template-") as d:
        template = os.path.join(d, "template.log")
        prefill(template, size)
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for r in range(args.runs):
            for k in kinds:
                res = one_run(k, size, args.writers, args.pace_us / 1e6, template)
                rows[k].append(res)
                print(f"run {r + 1} {k:8s} worst {res['worst_ms']:8.2f} ms  p99 {res['p99_ms']:6.2f} ms  "
                      f"compressed after {res['compress_s']:5.2f} s  ({int(res['records'])} records)", flush=True)
    print()
    print(f"{args.size_mb} MB backup, gzip, {args.writers} writer processes, one record per "
          f"{args.pace_us} µs each; medians of {args.runs} runs; {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print("| handler | worst emit() | (range over runs) | p99 emit() | backup compressed after |")
    print("| --- | --- | --- | --- | --- |")
    for k in kinds:
        med = {key: statistics.median(x[key] for x in rows[k]) for key in rows[k][0]}
        name = {
            "plain": "safelog (flock), no compression: the floor",
            "safelog": "safelog (flock), gzip",
            "clh": "concurrent-log-handler 0.9.31, use_gzip",
        }[k]
        after = "-" if k == "plain" else f"{med['compress_s']:.2f} s"
        worst = [x["worst_ms"] for x in rows[k]]
        print(
            f"| {name} | {med['worst_ms']:.1f} ms | {min(worst):.1f}–{max(worst):.1f} ms "
            f"| {med['p99_ms']:.2f} ms | {after} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
