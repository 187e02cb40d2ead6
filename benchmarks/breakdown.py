"""Where one record's time goes: the parts of a ``logger.info()`` call, each measured alone.

One process, one thread, the benchmark's record and formatter (``throughput.py``). Each part runs
in short interleaved slices; each reports its *fastest* slice of thread CPU time (as
``percall.py`` does), so interference from other jobs on the machine is left out as far as it
can be. The parts:

- ``logger.info`` to a handler whose ``emit`` does nothing: creating and dispatching the
  ``LogRecord``, what every handler pays before its own work;
- ``Formatter.format`` and safelog's formatting fast path on one such record;
- the system calls of safelog's ``flock`` fast path, one by one: ``flock`` LOCK_SH + LOCK_UN on
  a lock file, one ``lseek`` (SEEK_END), one ``os.write`` of a record on an ``O_APPEND`` file;
- whole records through the stdlib ``FileHandler`` and safelog's strategies.

"safelog's own Python" in the summary is what a whole ``flock`` record costs beyond the record,
the formatting and those system calls.

    python benchmarks/breakdown.py              # 30 slices of 4,000 calls per part (~1 min)
    python benchmarks/breakdown.py --slices 60  # steadier
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as T

from safelog._delivery.fastformat import fast_format


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def _parts(base: str) -> tuple[dict[str, Callable[[int], None]], Callable[[], None]]:  # noqa: C901 - one closure per measured part, a table
    """name -> run(n): does the part n times. Also the cleanup."""
    logger = logging.getLogger(T.LOGGER + ".breakdown")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = T.formatter()
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "id=%d-%d-%d payload=%s",
                               (0, 0, 1, T.PAYLOAD), None)
    fast = fast_format(formatter)
    assert fast is not None and fast(record) == formatter.format(record)
    data = (formatter.format(record) + "\n").encode()
    lockfd = os.open(os.path.join(base, "part.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    logfd = os.open(os.path.join(base, "part.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    handlers: dict[str, logging.Handler] = {}

    def through(key: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            handler = handlers.get(key)
            if handler is None:
                if key == "nothing":
                    handler = _Nothing()
                else:
                    workdir = tempfile.mkdtemp(dir=base)
                    handler = T.ROW_BY_KEY[key].make(os.path.join(workdir, "bench.log"), 1000)
                handler.setFormatter(formatter)
                handlers[key] = handler
            logger.handlers[:] = [handler]
            info = logger.info
            for i in range(n):
                info("id=%d-%d-%d payload=%s", 0, 0, i, T.PAYLOAD)
            logger.handlers[:] = []

        return run

    def stock(n: int) -> None:
        f = formatter.format
        for _ in range(n):
            f(record)

    def faster(n: int) -> None:
        for _ in range(n):
            fast(record)

    def lock_pair(n: int) -> None:
        fl, sh, un = fcntl.flock, fcntl.LOCK_SH, fcntl.LOCK_UN
        for _ in range(n):
            fl(lockfd, sh)
            fl(lockfd, un)

    def seek(n: int) -> None:
        ls, end = os.lseek, os.SEEK_END
        for _ in range(n):
            ls(logfd, 0, end)

    def write(n: int) -> None:
        w = os.write
        for _ in range(n):
            w(logfd, data)

    parts = {
        "record": through("nothing"),
        "Formatter.format": stock,
        "fast format": faster,
        "flock SH+UN": lock_pair,
        "lseek": seek,
        "os.write": write,
        "FileHandler": through("stdlib_file"),
        "safelog flock": through("safelog_flock"),
        "safelog thread": through("safelog_thread"),
        "safelog per-process": through("safelog_per_process"),
    }

    def cleanup() -> None:
        for h in handlers.values():
            h.close()
        os.close(lockfd)
        os.close(logfd)

    return parts, cleanup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=30, help="slices per part (default 30)")
    p.add_argument("--calls", type=int, default=4000, help="calls per slice (default 4000)")
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="safelog-breakdown-")
    try:
        parts, cleanup = _parts(base)
        names = list(parts)
        best = {name: float("inf") for name in names}
        try:
            for name in names:
                parts[name](200)  # open files, warm caches
            for k in range(args.slices):
                for name in names[k % len(names):] + names[: k % len(names)]:
                    cpu = time.thread_time()
                    parts[name](args.calls)
                    best[name] = min(best[name], (time.thread_time() - cpu) / args.calls * 1e6)
        finally:
            cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    syscalls = best["flock SH+UN"] + 2 * best["lseek"] + best["os.write"]
    own = best["safelog flock"] - best["record"] - best["fast format"] - syscalls
    print(f"fastest of {args.slices} slices of {args.calls:,} calls, Python {sys.version.split()[0]}")
    print()
    print("| part | CPU µs |")
    print("| --- | ---: |")
    for name in names:
        print(f"| {name} | {best[name]:.2f} |")
    print()
    print(f"safelog flock = record {best['record']:.2f} + fast format {best['fast format']:.2f}"
          f" + system calls {syscalls:.2f} (flock pair, 2 lseek, write)"
          f" + safelog's own Python {own:.2f} µs")
    print(f"FileHandler   = record {best['record']:.2f} + Formatter.format {best['Formatter.format']:.2f}"
          f" + os.write {best['os.write']:.2f}"
          f" + the rest {best['FileHandler'] - best['record'] - best['Formatter.format'] - best['os.write']:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
