"""Fork during emit: a thread is inside ``emit()`` holding the locks while another thread forks.

As in CPython's ``test_post_fork_child_no_deadlock``: the child must neither deadlock on a
lock that only a parent thread could release, nor believe it holds the inter-process lock
through a descriptor it shares with the parent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

import safelog
from safelog import STRATEGIES, SafeFileHandler
from safelog._policy.compressor import COMPRESSOR
from tests.faults_helpers import FORK, exact, flock_waiters, join_all, make_logger, wait_until
from tests.helpers import lock_path, strategy_of


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
            wait_until(lambda: child.pid in flock_waiters(lock_path(path)), 10,
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

    strategy_of(h).write = broken
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


def _child_logs_and_exits(log, h, tag: str) -> None:
    for i in range(5):
        log.info("rec %s-%d %s", tag, i, "c" * 60)
    h.flush()
    os._exit(0)


def _storm(path: str, strategy: str, mode: str, out) -> None:
    os.setpgid(0, 0)  # a group of its own: the test can end it and every child it forked
    h = SafeFileHandler(path, strategy=strategy, max_bytes=3000, backup_count=10_000, compress="gzip",
                        nonblocking=mode == "nonblocking")
    rotated = FORK.Event()  # set by whichever process rotates (children share the log under flock)

    def rotator(source: str, dest: str) -> None:
        os.replace(source, dest)
        rotated.set()

    h.rotator = rotator
    log = make_logger(h)
    children = []
    i = 0
    # Each fork right after a rotation: the compressor has just been handed the backup, and
    # takes the log's lock to create its temp file while the child is being forked.
    while len(children) < 40:
        for _ in range(45):  # more than a file holds: at least one rotation
            log.info("rec p%d %s", i, "p" * 60)
            i += 1
        assert rotated.wait(10)  # non-blocking: once the writer has rotated
        rotated.clear()
        child = FORK.Process(target=_child_logs_and_exits, args=(log, h, f"c{len(children)}"))
        child.start()
        children.append(child)
    join_all(children)
    h.close()
    assert safelog.wait_for_compression(30)
    assert [c.exitcode for c in children] == [0] * len(children)
    out.send(i)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("mode", ["sync", "nonblocking"])
@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_fork_storm_during_rotation_with_compression(tmp_path, strategy, mode):
    """Forty children forked right after rotations of a gzip-compressing log (the compressor
    may hold the log's lock, a rotation or a batch may be under way): none hangs or fails, the
    parent never waits on one, and every record of parent and children is in the log exactly
    once."""
    path = str(tmp_path / "app.log")
    recv, send = FORK.Pipe(duplex=False)
    storm = FORK.Process(target=_storm, args=(path, strategy, mode, send))
    storm.start()
    storm.join(120)
    if storm.exitcode is None:
        os.killpg(storm.pid, signal.SIGKILL)  # the storm and every child it forked
        storm.join()
        raise AssertionError("the storm hung: a child kept a lock it inherited")
    assert storm.exitcode == 0 and recv.poll(0)
    records = recv.recv()
    expected = [f"p{i}" for i in range(records)] + [f"c{n}-{i}" for n in range(40) for i in range(5)]
    exact(path, expected)


def _child_logs(log, done) -> None:
    for i in range(5):
        log.info("rec child-%d", i)
    done.set()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_fork_while_the_compressor_holds_the_log_lock(tmp_path, strategy):
    """A child forked while the background compressor holds the log's exclusive lock (and its
    temp file's) logs as soon as the parent's compressor lets go, and so does everyone else:
    the child does not keep the lock through the descriptor it inherited."""
    path = str(tmp_path / "app.log")
    held, forked = threading.Event(), threading.Event()

    def hook(tmp: str) -> None:  # runs in the compressor, under the log's lock
        held.set()
        assert forked.wait(10)

    h = SafeFileHandler(path, strategy=strategy, max_bytes=100, backup_count=5, compress="gzip")
    log = make_logger(h)
    COMPRESSOR.temp_hook = hook
    try:
        log.info("rec a %s", "a" * 60)
        log.info("rec b %s", "b" * 60)  # rotates: the compressor starts on app.log.1
        assert held.wait(10)
        done = FORK.Event()
        child = FORK.Process(target=_child_logs, args=(log, done))
        child.start()
    finally:
        forked.set()
        COMPRESSOR.temp_hook = None
    assert done.wait(20), "the child hung on the lock it inherited from the compressor"
    join_all([child])
    assert safelog.wait_for_compression(10)
    log.info("rec after")
    h.close()
    exact(path, ["a", "b", "after"] + [f"child-{i}" for i in range(5)])


def _batch_child(log, h, done) -> None:
    log.info("rec child")
    h.flush()
    done.set()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_during_a_batch_of_the_nonblocking_writer(tmp_path, monkeypatch):
    """A child forked while the non-blocking writer is inside a batch write (holding the log's
    locks) logs and flushes without waiting on the parent's writer or its lock."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy="flock", nonblocking=True)
    log = make_logger(h)
    inside, release = threading.Event(), threading.Event()
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if b"rec held" in data and threading.current_thread().name.startswith("safelog-writer"):
            inside.set()
            release.wait()
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    log.info("rec held")
    assert inside.wait(10)
    done = FORK.Event()
    child = FORK.Process(target=_batch_child, args=(log, h, done))
    child.start()
    try:
        wait_until(lambda: child.pid in flock_waiters(lock_path(path)) or done.is_set(), 10,
                   "the child to wait for the parent's lock (or to finish)")
    finally:
        release.set()
    assert done.wait(20), "the child hung"
    join_all([child])
    h.close()
    exact(path, ["held", "child"])


_MERGING_PROCESS = r"""
import logging, os, sys, threading
import safelog
from safelog._merge import run as _merge

path, status_file = sys.argv[1], sys.argv[2]
h = safelog.PerProcessFileHandler(path, merge_on_exit=True)
log = logging.getLogger("merging")
log.addHandler(h)
log.setLevel(logging.INFO)
log.propagate = False
for i in range(200):
    log.info("rec p%d", i)
inside, forked = threading.Event(), threading.Event()
child = []
real = _merge.merge_into

def merge_into(readers, fd):
    # The merge at exit holds the merge lock and its shards' exclusive locks here; a thread
    # forks now, and this process waits for the child to log and exit before merging on.
    inside.set()
    assert forked.wait(30)
    _, status = os.waitpid(child[0], 0)
    with open(status_file, "w") as f:
        f.write(str(status))
    return real(readers, fd)

_merge.merge_into = merge_into

def forker():
    inside.wait()
    pid = os.fork()
    if pid == 0:
        for i in range(50):
            log.info("rec c%d", i)
        h.flush()
        os._exit(0)
    child.append(pid)
    forked.set()

threading.Thread(target=forker, daemon=True).start()
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12+ refuses os.fork() at interpreter shutdown, where atexit hooks run: the moment cannot occur")
def test_fork_during_the_merge_at_exit(tmp_path):
    """A child forked (by another thread) while the merge at exit holds the merge lock and the
    shards' locks logs and exits without waiting on any of them; the parent's merge then ends,
    and a second merge takes the child's shard: every record of both exactly once."""
    import subprocess

    import safelog

    path = str(tmp_path / "app.log")
    status_file = tmp_path / "child-status"
    script = tmp_path / "merging.py"
    script.write_text(_MERGING_PROCESS)
    done = subprocess.run([sys.executable, str(script), path, str(status_file)], timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert status_file.read_text() == "0", "the forked child did not log and exit cleanly"
    assert safelog.merge(path).ok
    exact(path, [f"p{i}" for i in range(200)] + [f"c{i}" for i in range(50)])
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".shard")]
