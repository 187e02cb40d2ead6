"""Compress time and ratio of each ``compress`` codec on a realistic log, as safelog writes it.

The log: web-application lines (timestamps a few ms apart, levels, logger names, request lines
with paths, ids, client addresses, status codes and durations, a traceback now and then), the
kind of text a backup holds. Each codec compresses it through the same writer the background
compressor uses (the codec table, at safelog's levels: gzip 6, bz2 9, xz 6, zstd 3), into a
file, and reads it back. Reported per codec, medians over the runs (codecs interleaved run by
run): compressed size as a share of the original, compress and decompress time and speed. Only
ratios between codecs measured in one run mean much on a shared machine.

    python benchmarks/compress_ratio.py                # 20 MB, 3 runs
    python benchmarks/compress_ratio.py --size-mb 50 --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from safelog._primitives.codec import CODECS  # noqa: E402

PATHS = ["/api/orders", "/api/orders/{id}", "/api/users/{id}", "/health", "/static/app.js", "/login", "/api/search"]
LOGGERS = ["app.web", "app.db", "app.auth", "app.worker", "gunicorn.access", "urllib3.connectionpool"]


def realistic_log(size: int, seed: int = 7) -> bytes:
    """``size`` bytes of varied application log lines."""
    rnd = random.Random(seed)
    t = 1_796_000_000.0
    out: list[str] = []
    total = 0
    while total < size:
        t += rnd.expovariate(200.0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t * 1000) % 1000:03d}"
        roll = rnd.random()
        if roll < 0.75:
            path = rnd.choice(PATHS).replace("{id}", str(rnd.randrange(10**6)))
            line = (
                f"{stamp} INFO {rnd.choice(LOGGERS[:1] + LOGGERS[4:5])} [{rnd.randrange(1000, 40000)}] "
                f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)} "
                f'"{rnd.choice(["GET", "GET", "POST", "PUT"])} {path} HTTP/1.1" {rnd.choice([200, 200, 200, 201, 304, 404, 500])} '
                f"{rnd.randrange(100, 90000)} {rnd.expovariate(30.0) * 1000:.1f}ms request_id={rnd.getrandbits(64):016x}\n"
            )
        elif roll < 0.97:
            line = (
                f"{stamp} {rnd.choice(['DEBUG', 'INFO', 'WARNING'])} {rnd.choice(LOGGERS)} [{rnd.randrange(1000, 40000)}] "
                f"{rnd.choice(['query took', 'cache miss for', 'retrying', 'user logged in:', 'job done:'])} "
                f"{rnd.choice(['user', 'order', 'session', 'task'])}={rnd.randrange(10**7)} rows={rnd.randrange(500)}\n"
            )
        else:
            line = (
                f"{stamp} ERROR app.web [{rnd.randrange(1000, 40000)}] unhandled error in request "
                f"{rnd.getrandbits(64):016x}\nTraceback (most recent call last):\n"
                f'  File "/srv/app/views.py", line {rnd.randrange(40, 900)}, in handler\n'
                f"    result = service.process(payload)\n"
                f'  File "/srv/app/service.py", line {rnd.randrange(40, 900)}, in process\n'
                f"    raise ValueError(f\"bad value: {{value!r}}\")\nValueError: bad value: '{rnd.getrandbits(32):x}'\n"
            )
        out.append(line)
        total += len(line)
    return "".join(out).encode()[:size]


def run_one(name: str, data: bytes, directory: str) -> tuple[int, float, float]:
    """(compressed size, compress seconds, decompress seconds) of ``data`` with codec ``name``."""
    codec = CODECS[name]
    path = os.path.join(directory, "app.log.1" + codec.ext)
    t0 = time.perf_counter()
    with open(path, "wb") as raw, codec.writer(raw, "app.log.1", 0.0) as out:
        for i in range(0, len(data), 1 << 20):
            out.write(data[i : i + (1 << 20)])
    t1 = time.perf_counter()
    size = os.path.getsize(path)
    t2 = time.perf_counter()
    with codec.reader(path) as f:
        back = f.read()
    t3 = time.perf_counter()
    assert back == data, name
    os.unlink(path)
    return size, t1 - t0, t3 - t2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = realistic_log(int(args.size_mb * 1_000_000))
    names = [n for n, c in CODECS.items() if c.missing() is None]
    results: dict[str, list[tuple[int, float, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.runs):
            for n in names:
                results[n].append(run_one(n, data, d))
    mb = len(data) / 1e6
    print(f"{mb:.0f} MB realistic log, {args.runs} runs, Python {platform.python_version()}, {platform.machine()}")
    print(f"{'codec':6} {'size':>7} {'compress':>9} {'MB/s':>6} {'decompress':>11} {'MB/s':>6}")
    for n in names:
        size = statistics.median(r[0] for r in results[n])
        c = statistics.median(r[1] for r in results[n])
        x = statistics.median(r[2] for r in results[n])
        print(f"{n:6} {size / len(data):7.1%} {c:8.2f}s {mb / c:6.0f} {x:10.2f}s {mb / x:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
