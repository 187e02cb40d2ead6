"""Logging from inside logging: a signal handler, a finalizer, a rotator, a namer or a formatter
that logs while its own thread is inside a write. Nothing deadlocks, nothing is lost, and the
nested record is written right after the one it interrupted.

Each scenario runs in a forked child (a deadlock there fails the test instead of hanging the
run); the nested call is made at a chosen point inside the write, never by timing.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import STRATEGIES, SafeFileHandler, audit, log_files
from safelog._delivery import queue as _queue
from safelog._policy.compressor import COMPRESSOR
from safelog._primitives.shard import iter_records
from tests.faults_helpers import RECORD, exact, in_child, make_logger

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

MODES = ["sync", "nonblocking"]
OUTER = "rec outer " + "o" * 40
BIG = "rec big " + "b" * 3000  # over flock's fast-path size: written under the exclusive lock


def _handler(path: str, strategy: str, mode: str, **options: Any) -> tuple[SafeFileHandler, logging.Logger]:
    h = SafeFileHandler(path, strategy=strategy, nonblocking=mode == "nonblocking", **options)
    return h, make_logger(h, f"reentrant.{os.getpid()}")


def _ids_in_order(path: str) -> list[str]:
    """Record ids in file order: the log's lines, or the records of this process's shard."""
    for name in log_files(path):
        if name.endswith(f".{os.getpid()}.shard"):
            with open(name, "rb") as f:
                return [r.text.decode().split()[1] for r in iter_records(f)]  # type: ignore[union-attr]
    with open(path) as f:
        return [line.split()[1] for line in f]


class _Finalized:
    """An object in a reference cycle, so only the garbage collector frees it; it logs then."""

    def __init__(self, log: logging.Logger, text: str) -> None:
        self.log, self.text, self.me = log, text, self

    def __del__(self) -> None:
        self.log.info(self.text)


def _nested_once(kind: str, log: logging.Logger, text: str) -> Callable[[], None]:
    """A function that, called once inside a write, logs ``text`` the way ``kind`` does."""
    fired: list[bool] = []

    def fire() -> None:
        if fired:
            return
        fired.append(True)
        if kind == "signal":
            signal.raise_signal(signal.SIGUSR1)  # its handler runs before this returns
        else:
            _Finalized(log, text)
            gc.collect()

    if kind == "signal":
        signal.signal(signal.SIGUSR1, lambda *_: log.info(text))
    return fire


def _logs_inside_a_write(path: str, strategy: str, mode: str, kind: str, outer: str) -> list[str]:
    gc.disable()  # only the collection the scenario triggers runs a finalizer
    h, log = _handler(path, strategy, mode)
    log.info("rec first")
    fire = _nested_once(kind, log, "rec nested")
    if mode == "sync":
        # Inside the write of the outer record: under the strategy's locks (flock: the shared
        # lock for a small record, the exclusive lock for a large one).
        real = os.write

        def write(fd: int, data: bytes) -> int:
            if outer.encode()[:20] in data:
                fire()
            return real(fd, data)

        os.write = write  # type: ignore[assignment]  # the child's own copy of the module
    else:
        # Inside Writer.put, holding the queue's lock (the caller's thread, where a signal
        # handler runs); and, for a finalizer, inside the writer thread's own locked steps.
        real_clock = _queue.monotonic
        main = threading.main_thread()

        def clock() -> float:
            if threading.current_thread() is main or kind == "finalizer":
                fire()
            return real_clock()

        _queue.monotonic = clock  # type: ignore[assignment]
        log.info("rec spacer")  # the queue is empty before it: put() reads the clock
        h.flush()
    log.info(outer)
    log.info("rec last")
    h.close()
    return _ids_in_order(path)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["signal", "finalizer"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("outer", [OUTER, BIG], ids=["small", "large"])
def test_logging_from_inside_a_write(tmp_path, strategy, mode, kind, outer):
    """A signal handler or a finalizer that logs while its thread is inside a write (holding
    the strategy's locks, or the queue's) neither deadlocks nor loses a record; its record
    comes right after the one it interrupted."""
    path = str(tmp_path / "app.log")
    order = in_child(_logs_inside_a_write, path, strategy, mode, kind, outer, timeout=30)
    ids = ["first", "nested", "last", outer.split()[1]] + (["spacer"] if mode == "nonblocking" else [])
    exact(path, ids)
    if mode == "sync":
        assert order == ["first", outer.split()[1], "nested", "last"]


class _LoggingFormatter(logging.Formatter):
    """A formatter that, formatting a record that asks for it, logs a record of its own first (an
    audit trail, a warning about the record's content: code that runs inside the write)."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self.log = log

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if "outer" in text and "nested" not in text:
            self.log.info("rec nested-%s", record.getMessage().split()[1])
        return text


def _logging_formatter(path: str, strategy: str, mode: str) -> list[str]:
    h, log = _handler(path, strategy, mode)
    h.setFormatter(_LoggingFormatter(log))
    log.info("rec first")
    log.info("rec outer-1 %s", "o" * 40)
    log.info(BIG.replace("big", "outer-2"))
    log.info("rec last")
    h.close()
    return _ids_in_order(path)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_formatter_that_logs(tmp_path, strategy, mode):
    """A formatter that logs while formatting a record neither deadlocks nor loses a record; its
    record is written right after the one being formatted (a small record and one over flock's
    fast-path size)."""
    path = str(tmp_path / "app.log")
    order = in_child(_logging_formatter, path, strategy, mode, timeout=30)
    exact(path, ["first", "outer-1", "nested-outer-1", "outer-2", "nested-outer-2", "last"])
    assert order == ["first", "outer-1", "nested-outer-1", "outer-2", "nested-outer-2", "last"]


def _logging_rotator(path: str, strategy: str, mode: str, hook: str) -> None:
    gc.disable()
    options: dict[str, Any] = {"max_bytes": 200, "backup_count": 50}
    h, log = _handler(path, strategy, mode, **options)
    count = [0]

    def rotator(source: str, dest: str) -> None:
        count[0] += 1
        log.info("rec rotator-%d %s", count[0], "r" * 30)
        os.replace(source, dest)

    named = [0]

    def namer(name: str) -> str:
        if named[0] < 5:  # on every call, each record would rotate again: no end
            named[0] += 1
            log.info("rec namer-%d %s", named[0], "n" * 30)
        return name

    if hook == "rotator":
        h.rotator = rotator
    else:
        h.namer = namer
    for i in range(40):
        log.info("rec r%d %s", i, "x" * 40)
    h.close()
    return count[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hook", ["rotator", "namer"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_rotator_or_namer_that_logs(tmp_path, strategy, mode, hook):
    """A rotator or namer that logs on every rotation neither deadlocks nor loses a record:
    each record it logs is written after the rotation that logged it."""
    path = str(tmp_path / "app.log")
    in_child(_logging_rotator, path, strategy, mode, hook, timeout=30)
    records = [f"r{i}" for i in range(40)]
    report = audit(log_files(path), records, RECORD)
    assert not report.lost and not report.duplicated and not report.malformed, report.summary()
    extra = set(report.unexpected)
    if hook == "rotator":
        # Every rotator record exactly once (they are numbered).
        assert all(u.startswith("rotator-") for u in extra), extra
        rotations = len([u for u in report.unexpected if u.startswith("rotator-")])
        assert rotations >= 5
        assert sorted(report.unexpected) == sorted(f"rotator-{i}" for i in range(1, rotations + 1))
    else:
        assert sorted(report.unexpected) == [f"namer-{i}" for i in range(1, 6)]


def _signal_during_rotation(path: str, strategy: str, n: int) -> None:
    # The signal arrives inside every rotation, half way through shifting the backups; its
    # handler logs a record big enough to rotate the file again (the nested rotation must not
    # run inside the outer one, which would finish its shift from a stale listing).
    gc.disable()
    h, log = _handler(path, strategy, "sync", max_bytes=2000, backup_count=10_000)
    k = [0]
    signal.signal(signal.SIGUSR1, lambda *_: (k.__setitem__(0, k[0] + 1), log.info("rec s%d %s", k[0], "s" * 1500)))
    real = os.replace

    def replace(src: str, dst: str) -> None:
        real(src, dst)
        if dst.endswith(".2"):
            signal.raise_signal(signal.SIGUSR1)

    os.replace = replace  # type: ignore[assignment]
    for i in range(n):
        log.info("rec m%d %s", i, "m" * 300)
    h.close()
    return k[0]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_signal_handler_logging_during_size_rotation(tmp_path, strategy):
    """A signal handler that logs (and rotates) in the middle of a size rotation loses no
    record and leaves no file over max_bytes."""
    path = str(tmp_path / "app.log")
    n = 300
    signals = in_child(_signal_during_rotation, path, strategy, n, timeout=60)
    assert signals >= 20
    exact(path, [f"m{i}" for i in range(n)] + [f"s{i}" for i in range(1, signals + 1)])
    sizes = {f: os.path.getsize(f) for f in log_files(path)}
    assert max(sizes.values()) <= 2000, sizes


class _Probe(threading.Condition):
    """The compressor's condition, with a handshake: once armed, the worker holds it until the
    main thread, rotating under the log's lock, tries to take it; then a finalizer that logs
    runs in the worker. Without care that is a lock-order cycle: the worker waits for the log's
    lock while holding the condition, the main thread for the condition while holding the
    log's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.worker_holds = threading.Event()
        self.main_waits = threading.Event()
        self.armed = False

    def __enter__(self) -> Any:
        if self.armed and threading.current_thread() is threading.main_thread():
            if self._lock.acquire(blocking=False):
                return True
            self.main_waits.set()  # the worker holds it: the main thread waits from here
            return super().__enter__()
        got = super().__enter__()
        worker = threading.current_thread().name == "safelog-compress"
        if self.armed and worker and not self.worker_holds.is_set():
            self.worker_holds.set()
            self.main_waits.wait(20)  # (not asserted here: this thread must not die holding it)
            gc.collect()  # the finalizer logs from here
        return got


def _finalizer_in_the_compressor(path: str, strategy: str) -> int:
    faulthandler.dump_traceback_later(25)  # every thread's stack, should it hang
    gc.disable()
    probe = _Probe()
    COMPRESSOR.cond = probe
    h, log = _handler(path, strategy, "sync", max_bytes=300, backup_count=100, compress="gzip")
    for i in range(10):
        log.info("rec a%d %s", i, "a" * 60)  # rotates: queues jobs, starts the worker
    assert safelog.wait_for_compression(10)
    _Finalized(log, "rec from-finalizer")
    probe.armed = True
    n = 0
    while not probe.main_waits.is_set():  # rotations until one finds the worker holding it
        assert n < 500
        log.info("rec b%d %s", n, "b" * 60)
        n += 1
    log.info("rec b%d %s", n, "b" * 60)
    assert safelog.wait_for_compression(10)
    h.close()
    return n + 1


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_finalizer_in_the_compressor_thread_does_not_deadlock(tmp_path, strategy):
    """A finalizer the garbage collector runs in the compressor thread, while it holds its
    queue's lock and a rotating writer waits for that lock under the log's lock, logs without
    a lock-order deadlock, and its record is written."""
    path = str(tmp_path / "app.log")
    n = in_child(_finalizer_in_the_compressor, path, strategy, timeout=30)
    exact(path, [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(n)] + ["from-finalizer"])
