"""External rotation: handler.reopen(), the opt-in reopen_signal, and a size counter that follows
a truncate. (tests/integration/test_logrotate.py runs the real logrotate.)"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import stat
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._delivery import reopen as _reopen
from safelog._primitives.shard import shard_path
from tests.faults_helpers import FORK, join_all, wait_until

PATTERN = r"id=(?P<id>\S+)(?: .*)?"
SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture(autouse=True)
def signals() -> Iterator[None]:
    """Each test leaves the signal handlers (and the module's record of them) as it found them."""
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    _reopen._previous.clear()
    _reopen._targets.clear()


def emit(handler: logging.Handler, rid: str, pad: int = 0) -> None:
    msg = f"id={rid}" + (" " + "x" * pad if pad else "")
    handler.handle(logging.makeLogRecord({"msg": msg, "levelno": logging.INFO, "levelname": "INFO"}))


def target(path: str, strategy: str) -> str:
    """The file this process appends to."""
    return shard_path(path) if strategy == "per-process" else path


def ids_in(path: str) -> list[str]:
    report = audit([path], [], PATTERN)
    assert not report.malformed, report.malformed
    return sorted(report.unexpected)


@pytest.mark.parametrize("how", ["reopen()", "signal"])
def test_the_next_record_goes_to_the_file_now_at_the_path(
    tmp_path: Any, make_handler: Any, strategy: str, how: str
) -> None:
    """After the log is renamed away, reopen() (or the configured signal) sends the very next
    record to a new file at the path, not to the renamed one."""
    path = str(tmp_path / "app.log")
    options = {"reopen_signal": "SIGUSR1"} if how == "signal" else {}
    h = make_handler(path, strategy=strategy, **options)
    emit(h, "before")
    live = target(path, strategy)
    os.rename(live, live + ".old")  # what logrotate's "create" does first
    if how == "signal":
        signal.raise_signal(signal.SIGUSR1)
    else:
        h.reopen()
    emit(h, "after")
    assert ids_in(live + ".old") == ["before"]
    assert ids_in(live) == ["after"]


def test_reopen_of_a_closed_or_unopened_handler_does_nothing(tmp_path: Any, make_handler: Any) -> None:
    """reopen() before the first record (delay=True) or after close() creates no file."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", delay=True)
    h.reopen()
    assert os.listdir(tmp_path) == []
    h.close()
    h.reopen()
    assert os.listdir(tmp_path) == []


def test_no_signal_handler_unless_asked(tmp_path: Any, make_handler: Any, strategy: str) -> None:
    """Without reopen_signal no signal disposition changes."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    make_handler(str(tmp_path / "app.log"), strategy=strategy)
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


def test_the_signal_chains_the_handler_installed_before(tmp_path: Any, make_handler: Any) -> None:
    """A Python handler already installed for the signal is still called, once per signal, and
    a handler configured twice (dictConfig run again) installs nothing twice."""
    calls: list[int] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: calls.append(signum))
    path = str(tmp_path / "app.log")
    h1 = make_handler(path, strategy="thread", reopen_signal="SIGHUP")
    h2 = make_handler(str(tmp_path / "other.log"), strategy="thread", reopen_signal="HUP")
    emit(h1, "a")
    emit(h2, "a")
    os.rename(path, path + ".old")
    signal.raise_signal(signal.SIGHUP)
    assert calls == [signal.SIGHUP]
    emit(h1, "b")
    assert ids_in(path) == ["b"]
    h1.close()
    signal.raise_signal(signal.SIGHUP)  # a closed handler is simply skipped
    assert calls == [signal.SIGHUP, signal.SIGHUP]


def test_a_default_disposition_is_not_chained(tmp_path: Any, make_handler: Any) -> None:
    """SIGUSR2's default action ends the process: with reopen_signal it only reopens."""
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    h = make_handler(str(tmp_path / "app.log"), strategy="flock", reopen_signal=signal.SIGUSR2)
    signal.raise_signal(signal.SIGUSR2)
    emit(h, "alive")
    assert ids_in(str(tmp_path / "app.log")) == ["alive"]


def test_a_handler_that_chains_ours_back_does_not_loop(tmp_path: Any, make_handler: Any) -> None:
    """A handler installed after ours that calls ours, and a second configuration that then
    chains it: one signal runs each once."""
    make_handler(str(tmp_path / "app.log"), strategy="thread", reopen_signal="SIGUSR1")
    ours = signal.getsignal(signal.SIGUSR1)
    calls = []

    def theirs(signum: int, frame: Any) -> None:
        calls.append(signum)
        ours(signum, frame)  # type: ignore[operator]

    signal.signal(signal.SIGUSR1, theirs)
    make_handler(str(tmp_path / "b.log"), strategy="thread", reopen_signal="SIGUSR1")
    signal.raise_signal(signal.SIGUSR1)
    assert calls == [signal.SIGUSR1]


def test_reopen_signal_outside_the_main_thread_fails_at_configuration(tmp_path: Any) -> None:
    """Only the main thread can install a signal handler: elsewhere the option is refused with
    the reason, and no file or handler is left behind."""
    errors: list[BaseException] = []

    def configure() -> None:
        try:
            safelog.SafeFileHandler(str(tmp_path / "logs" / "app.log"), reopen_signal="SIGUSR1")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=configure)
    t.start()
    t.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ValueError), errors
    assert "reopen_signal='SIGUSR1'" in str(errors[0]) and "main thread" in str(errors[0])
    assert not (tmp_path / "logs").exists()


def _signalled_writer(path: str, k: int, ready: Any, acked: Any, stop: Any, out: Any, stacks: str) -> None:
    phase = [0]
    dump = open(stacks, "w")

    def mark(signum: int, frame: Any) -> None:
        phase[0] = 1  # installed first: safelog's handler chains it, after requesting the reopen
        # Should this process not get to its records after the signal, the test shows where
        # every thread of it was (just before the parent gives up on it).
        faulthandler.dump_traceback_later(50, file=dump)

    signal.signal(signal.SIGUSR1, mark)
    h = safelog.SafeFileHandler(path, strategy="flock", reopen_signal="SIGUSR1")
    counts = [[0, 0], [0, 0]]

    def loop(t: int) -> None:
        while not stop.is_set():
            p = phase[0]
            emit(h, f"{p}-{k}-{t}-{counts[t][p]}")
            counts[t][p] += 1
            if p and min(c[1] for c in counts) >= 200 and not acked.is_set():
                faulthandler.cancel_dump_traceback_later()
                acked.set()

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: min(c[0] for c in counts) > 0, 30, "first records")
    ready.set()
    for t in threads:
        t.join()
    h.close()
    out.send(counts)


def test_the_signal_reopens_in_every_process_at_once(tmp_path: Any) -> None:
    """Three flock writers (two threads each) keep logging while the log is renamed and each
    gets the signal: no record logged after its process handled the signal is in the renamed
    file, and every record is in one of the two files exactly once."""
    path = str(tmp_path / "app.log")
    stop = FORK.Event()
    kids = []
    for k in range(3):
        ready, acked = FORK.Event(), FORK.Event()
        recv, send = FORK.Pipe(duplex=False)
        stacks = str(tmp_path / f"stacks-{k}")
        p = FORK.Process(target=_signalled_writer, args=(path, k, ready, acked, stop, send, stacks))
        p.start()
        kids.append((p, ready, acked, recv))
    try:
        for _p, ready, _, _ in kids:
            assert ready.wait(60)
        os.rename(path, path + ".1")
        for p, _, _, _ in kids:
            os.kill(p.pid, signal.SIGUSR1)
        for k, (p, _, acked, _) in enumerate(kids):
            # An empty stack dump means the signal's Python handler never ran in that process.
            assert acked.wait(60), (k, p.is_alive(), p.exitcode, (tmp_path / f"stacks-{k}").read_text())
    finally:
        stop.set()
    counts = [recv.recv() for _, _, _, recv in kids]
    join_all([p for p, _, _, _ in kids])
    expected = [f"{p}-{k}-{t}-{i}" for k in range(3) for t in range(2) for p in (0, 1) for i in range(counts[k][t][p])]
    assert log_files(path) == [path, path + ".1"]
    assert audit(log_files(path), expected, PATTERN).ok
    assert not [i for i in ids_in(path + ".1") if i.startswith("1-")]


def test_a_reopen_request_is_not_undone_by_a_path_check_that_started_before_it(tmp_path: Any) -> None:
    """flock: a writer's once-a-second path check found the log unchanged just before logrotate
    renamed it; the signal comes before the check notes when to check next, and another thread
    logs before the check sees that a signal came. That record still goes to the file now at
    the path, not to the renamed one."""
    import inspect
    import sys

    from safelog._sinks.flock import FlockStrategy
    from tests.faults_helpers import flock_waiters
    from tests.helpers import strategy_of

    path = str(tmp_path / "app.log")
    h = safelog.SafeFileHandler(path, strategy="flock")
    emit(h, "first")
    sink = strategy_of(h)
    lines, start = inspect.getsourcelines(FlockStrategy._paths_unchanged)
    store = start + next(i for i, line in enumerate(lines) if "file.schedule_check()" in line)
    # The checker stops before noting the next check time, and again right after.
    stops = {store: threading.Event(), store + 1: threading.Event()}
    goes = {store: threading.Event(), store + 1: threading.Event()}

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is not FlockStrategy._paths_unchanged.__code__:
            return None
        if event == "line" and frame.f_lineno in stops:
            stops[frame.f_lineno].set()
            assert goes[frame.f_lineno].wait(60)
        return tracer

    def checker() -> None:
        sys.settrace(tracer)
        try:
            sink.file.next_check = 0.0  # its check is due
            emit(h, "checker")
        finally:
            sys.settrace(None)

    a = threading.Thread(target=checker)
    b_done = threading.Event()
    b = threading.Thread(target=lambda: (emit(h, "after"), b_done.set()))
    a.start()
    try:
        assert stops[store].wait(60)  # its stat found the log unchanged
        os.rename(path, path + ".1")
        h.request_reopen()  # what the signal handler does
        goes[store].set()
        assert stops[store + 1].wait(60)  # it noted the next check time
        b.start()
        # The record either went somewhere, or waits for the exclusive lock (to reopen) that the
        # checker's shared lock holds back.
        wait_until(lambda: b_done.is_set() or os.getpid() in flock_waiters(path + ".lock"), 60,
                   "the record to be written or to wait for the lock")
    finally:
        for go in goes.values():
            go.set()
        a.join(60)
        if b.ident is not None:
            b.join(60)
    h.close()
    assert ids_in(path + ".1") == ["checker", "first"]
    assert ids_in(path) == ["after"]


@pytest.mark.parametrize("nonblocking", [False, True])
def test_thread_size_counter_follows_a_truncate(tmp_path: Any, make_handler: Any, nonblocking: bool) -> None:
    """A file truncated behind the handler's back (logrotate's copytruncate) is counted from its
    real size: the next rotation comes when that file is full, not at once."""
    path = str(tmp_path / "app.log")
    options = {"flush_interval": 0.01} if nonblocking else {}
    h = make_handler(path, strategy="thread", max_bytes=10_000, backup_count=5, nonblocking=nonblocking, **options)
    record = len("id=0000 " + "x" * 90 + "\n")
    per_file = 10_000 // record
    n = 0

    def write(count: int) -> None:
        nonlocal n
        for _ in range(count):
            emit(h, f"{n:04d}", pad=90)
            n += 1
        h.flush()

    write(per_file)
    os.truncate(path, 0)  # copytruncate: the records so far went to its copy
    write(per_file)
    assert sorted(os.listdir(tmp_path)) == ["app.log"]
    assert os.path.getsize(path) == per_file * record
    write(per_file + 1)
    assert sorted(os.listdir(tmp_path)) == ["app.log", "app.log.1", "app.log.2"]
    assert os.path.getsize(path + ".1") == per_file * record == os.path.getsize(path + ".2")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_thread_size_rotation_never_renames_a_character_device(tmp_path: Any, make_handler: Any) -> None:
    """A private /dev/null (mknod in tmp_path) as the log: its real size stays 0, so the thread
    strategy's size limit never renames or deletes the device node (the counter alone would)."""
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    h = make_handler(str(node), strategy="thread", max_bytes=100, backup_count=2)
    for i in range(20):
        emit(h, f"{i:04d}", pad=50)
    assert os.listdir(tmp_path) == ["null"]
    assert stat.S_ISCHR(os.stat(node).st_mode)
