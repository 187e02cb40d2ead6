"""An asyncio service logging through safelog in non-blocking mode.

Run it::

    PYTHONPATH=. python config-examples/asyncio_app.py logs/app.log --seconds 2 --hold 1

The only logging-specific part is the ``LOGGING`` dict: ``"nonblocking": True`` makes every
``logger.info()`` in a coroutine a queue append; formatting, the ``flock`` and the ``write()``
happen in safelog's background writer. To show that the loop never waits for the log, a second
process takes the log's lock (``app.log.lock``) and holds it ``--hold`` seconds while the loop
keeps logging; a fast ticker coroutine measures the loop's longest stall. At the end every record
is audited (each id exactly once). Exit status 0 when the audit is clean.

The stall is the longest gap between two ticks of the ticker minus the time the kernel kept the
runnable loop thread, or safelog's writer thread, off the CPU (their run-queue wait, read from
``/proc/.../schedstat`` where Linux provides it): on an overloaded machine that time has nothing
to do with logging. Waiting for a lock, or for the GIL while the writer runs, is not run-queue
time and still counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import logging.config
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import safelog

log = logging.getLogger("app")


def logging_config(path: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "safelog.SafeFileHandler",
                "filename": path,
                "strategy": "flock",  # several worker processes may share the file
                "max_bytes": "10 MB",
                "backup_count": 5,
                "formatter": "default",
                "nonblocking": True,
                "flush_interval": "100 ms",  # a tail -f sees records within 0.1 s
                "flush_level": "ERROR",  # errors are written at once
                "queue_size": 100_000,  # room for 1 s of a busy loop while the disk stalls
            }
        },
        "root": {"handlers": ["file"], "level": "INFO"},
    }


def hold_lock(lock_path: str, seconds: float, go: Any, held: Any, released: Any) -> None:
    """Another process: when told to, take the log's lock, hold it, let go."""
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    go.wait()
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.set()
    time.sleep(seconds)
    fcntl.flock(fd, fcntl.LOCK_UN)
    released.set()


def runqueue_clock() -> Callable[[], float]:
    """Seconds the loop thread and safelog's writer threads have been runnable but not running.

    That is time the kernel gave the CPU to other work: the loop's own, and the writer's (a
    writer preempted while it holds the GIL keeps the loop waiting for as long, through no
    fault of the design). 0 where Linux schedstat is missing.
    """
    task = "/proc/self/task/{}/schedstat"
    fds: dict[int, int] = {}

    def read(tid: int) -> float:
        if tid not in fds:
            try:
                fds[tid] = os.open(task.format(tid), os.O_RDONLY)
            except OSError:
                fds[tid] = -1
        fd = fds[tid]
        return int(os.pread(fd, 100, 0).split()[1]) / 1e9 if fd >= 0 else 0.0

    loop_tid = threading.get_native_id()

    def waited() -> float:
        total = read(loop_tid)
        for t in threading.enumerate():
            if t.name.startswith("safelog-writer") and t.native_id is not None:
                total += read(t.native_id)
        return total

    return waited


async def main(path: str, seconds: float, hold: float, control: bool = False) -> dict[str, Any]:  # noqa: C901 - an example, read top to bottom
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    go, held, released = ctx.Event(), ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(path + ".lock", hold, go, held, released))
    # Started before the loop is measured: starting a process blocks the calling thread for
    # milliseconds (fork/exec and the pickled preparation data), which is not logging's doing.
    holder.start()
    # A service is up before it serves: the executor has its thread and safelog its writer
    # (both start on first use, and starting a thread can keep the loop waiting for
    # milliseconds once, which is not what this measures).
    await loop.run_in_executor(None, lambda: None)
    if not control:
        log.info("service started id=start")
    stop = asyncio.Event()
    stalls: list[float] = []
    raw: list[float] = []
    logged: list[str] = [] if control else ["start"]
    checks: list[bool] = []
    during: list[int] = []

    async def ticker() -> None:
        waited = runqueue_clock()
        last, last_wait = time.perf_counter(), waited()
        while not stop.is_set():
            await asyncio.sleep(0.0005)
            now, wait = time.perf_counter(), waited()
            raw.append(now - last)
            stalls.append(now - last - (wait - last_wait))
            last, last_wait = now, wait

    def burst() -> None:
        for _ in range(3):
            n = str(len(logged))
            if not control:
                log.info("request handled id=%s", n)
            logged.append(n)

    async def app() -> None:
        go.set()
        # Keep serving until the other process holds the lock (a handshake, not a sleep).
        waiting = loop.run_in_executor(None, held.wait)
        while not waiting.done():
            burst()
            await asyncio.sleep(0.001)
        if not control:
            log.error("request failed id=during-hold")
            logged.append("during-hold")
        t0 = time.perf_counter()
        before = len(logged)
        waiting = loop.run_in_executor(None, released.wait)
        while not waiting.done():
            burst()
            if not checks and not control and time.perf_counter() - t0 > hold / 3:
                # Mid-hold: the writer waits for the lock, the loop does not.
                checks.append(b"during-hold" not in open(path, "rb").read())
            await asyncio.sleep(0.001)
        during.append(len(logged) - before)
        end = time.perf_counter() + max(0.0, seconds - hold)
        while time.perf_counter() < end:
            burst()
            await asyncio.sleep(0.001)
        stop.set()

    await asyncio.gather(ticker(), app())
    holder.join()
    return {
        "stalls": stalls,
        "raw": raw,
        "logged": logged,
        "during_hold": during[0],
        "blocked_writer_seen": checks == [True],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the loop logs")
    parser.add_argument("--hold", type=float, default=1.0, help="how long the other process holds the lock")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--control", action="store_true", help="the same loop without logging: what the machine alone costs"
    )
    args = parser.parse_args()
    path = os.path.abspath(args.path)
    logging.config.dictConfig(logging_config(path))
    # A service freezes what it allocated at startup so collections stay short (gc.freeze,
    # Python 3.7+); it is what keeps a cyclic collection from being the loop's longest stall.
    gc.freeze()
    result = asyncio.run(main(path, args.seconds, args.hold, args.control))
    logging.shutdown()  # drains the queue; also happens by itself at exit
    pattern = r"\S+ \S+ (INFO|ERROR) app \S+ \S+ id=(?P<id>\S+)"
    report = safelog.audit(path, [] if args.control else result["logged"], pattern)
    figures = {
        "records": len(result["logged"]),
        "records_during_hold": result["during_hold"],
        "longest_stall_ms": round(max(result["stalls"]) * 1000, 3),
        "longest_gap_incl_runqueue_ms": round(max(result["raw"]) * 1000, 3),
        "ticks": len(result["stalls"]),
        "blocked_writer_seen": result["blocked_writer_seen"],
        "audit": report.summary(),
        "audit_ok": report.ok,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    sys.exit(0 if report.ok else 1)
