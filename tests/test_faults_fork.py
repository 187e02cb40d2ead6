"""Fork during emit: a thread is inside ``emit()`` holding the locks while another thread forks.

As in CPython's ``test_post_fork_child_no_deadlock``: the child must neither deadlock on a
lock that only a parent thread could release, nor believe it holds the inter-process lock
through a descriptor it shares with the parent.
"""

from __future__ import annotations

import os
import threading

import pytest

from safelog import STRATEGIES, SafeFileHandler
from safelog._sinks.flock import lock_path_for

from tests.faults_helpers import FORK, exact, flock_waiters, join_all, make_logger, wait_until


def _child(log, done) -> None:
    for i in range(5):
        log.info("rec child-%d", i)
    done.set()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_fork_while_another_thread_is_inside_emit(tmp_path, strategy, monkeypatch):
    """A thread stops inside emit() holding the sink's locks; the main thread forks. The child
    logs without deadlocking; with flock it waits for the parent's record (it did not inherit
    the held lock), with the other strategies it does not wait at all."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy=strategy)
    log = make_logger(h)
    log.info("rec parent-0")
    inside, release = threading.Event(), threading.Event()
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if b"rec parent-held" in data:
            inside.set()
            release.wait()
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)  # the forked child inherits it: a pass-through there
    t = threading.Thread(target=log.info, args=("rec parent-held",))
    t.start()
    assert inside.wait(10)
    done = FORK.Event()
    child = FORK.Process(target=_child, args=(log, done))
    child.start()  # forks while t holds the thread lock (and, for flock, the file lock)
    try:
        if strategy == "flock":
            wait_until(lambda: child.pid in flock_waiters(lock_path_for(path, None)), 10,
                       "the child to wait for the lock the parent holds")
            assert not done.is_set()
        else:
            assert done.wait(10), "the child deadlocked on a lock held by a parent thread"
    finally:
        release.set()
        t.join()
    join_all([child])
    assert child.exitcode == 0
    log.info("rec parent-1")
    h.close()
    exact(path, ["parent-0", "parent-held", "parent-1"] + [f"child-{i}" for i in range(5)])
    if strategy == "flock":
        text = open(path).read()
        assert text.index("parent-held") < text.index("child-0"), "the child wrote while the parent held the lock"


def _fail_in_child(log, h, done) -> None:
    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    h._sink.write = broken
    log.info("rec lost")
    done.set()


def test_fork_while_a_failure_is_being_reported(tmp_path):
    """The parent forks while one of its threads holds the lock of the failure counter: the
    child's own first failed write reports normally instead of hanging on that lock."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy="flock")
    h.handleError = lambda record: None  # type: ignore[method-assign]
    log = make_logger(h)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with h._failures._lock:
            held.set()
            release.wait()

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    done = FORK.Event()
    child = FORK.Process(target=_fail_in_child, args=(log, h, done))
    child.start()
    try:
        assert done.wait(10), "the child hung on a lock held by a parent thread at fork time"
    finally:
        release.set()
        t.join()
        join_all([child])
    h.close()
    assert os.path.getsize(path) == 0
