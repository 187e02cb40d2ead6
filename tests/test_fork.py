"""Fork safety: handlers built before fork() stay exclusive, and a fork never inherits a held lock."""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from tests.helpers import current_file, drop_lock, lock_descriptor, lock_file, take_lock, try_take_lock

WAIT = 60
PATTERN = r"rec (?P<id>[a-z0-9-]+)"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def fork_context() -> Any:
    return multiprocessing.get_context("fork")


def start_quietly(process: Any) -> None:
    """Start a fork child from a process with threads; 3.12+ warns about exactly that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()


def join_all(*children: Any) -> None:
    try:
        for child in children:
            child.join(WAIT)
        assert [c.exitcode for c in children] == [0] * len(children), "child failed or hung"
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()


def _child_probe_lock(log: logging.Logger, handler: Any, ready: Any, parent_locked: Any, out: Any) -> None:
    log.info("rec child")  # opens the child's lock file descriptor; the lock is free now
    ready.set()
    if not parent_locked.wait(WAIT):
        raise TimeoutError("parent never took the lock")
    fd = lock_descriptor(handler)
    got = try_take_lock(fd)
    if got:
        drop_lock(fd)
    out.send({"same_file": os.fstat(fd).st_ino == os.stat(lock_file(handler)).st_ino, "got_lock": got})


def test_child_does_not_share_the_parents_lock_description(log_path: str, logger: logging.Logger,
                                                            make_handler: Callable[..., Any]) -> None:
    """While the parent holds its flock lock, a fork child's try_lock on its own lock fd fails."""
    # A child that kept the inherited descriptor would share the parent's open file
    # description and therefore its lock: its try_lock would succeed.
    handler = make_handler(log_path, strategy="flock")
    logger.addHandler(handler)
    logger.info("rec parent")  # lock file open in the parent before the fork
    ctx = fork_context()
    ready, parent_locked = ctx.Event(), ctx.Event()
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_probe_lock, args=(logger, handler, ready, parent_locked, send))
    child.start()
    try:
        assert ready.wait(WAIT)
        parent_fd = lock_descriptor(handler)
        take_lock(parent_fd)
        try:
            parent_locked.set()
            assert recv.poll(WAIT), "child sent no result"
            result = recv.recv()
        finally:
            drop_lock(parent_fd)
    finally:
        join_all(child)
    assert result == {"same_file": True, "got_lock": False}
    assert audit(log_files(log_path), ["parent", "child"], PATTERN).ok


def _child_logs(log: logging.Logger, message: str, done: Any) -> None:
    log.info(message)
    done.set()


def _blocked_waiter(pid: int, inode: int) -> bool:
    with open("/proc/locks") as f:
        return any(re.search(rf"-> FLOCK\s+\S+\s+(?:READ|WRITE)\s+{pid}\s+\S+:{inode}\s", ln) for ln in f)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks")
def test_child_write_waits_while_the_parent_holds_the_lock(log_path: str, logger: logging.Logger,
                                                          make_handler: Callable[..., Any]) -> None:
    """A fork child's write through an inherited handler blocks on the parent's lock until released."""
    handler = make_handler(log_path, strategy="flock")
    logger.addHandler(handler)
    logger.info("rec parent")
    lock_fd = lock_descriptor(handler)
    lock_inode = os.fstat(lock_fd).st_ino
    ctx = fork_context()
    done = ctx.Event()
    take_lock(lock_fd)
    child = ctx.Process(target=_child_logs, args=(logger, "rec child", done))
    try:
        child.start()
        # Wait until the kernel lists the child as blocked on the lock file; a child that
        # wrote without waiting sets `done` instead and fails the test.
        deadline = time.monotonic() + WAIT
        while not _blocked_waiter(child.pid, lock_inode):
            assert not done.is_set(), "child wrote while the parent held the lock"
            assert time.monotonic() < deadline and child.is_alive(), "child never blocked on the lock"
            time.sleep(0.005)
        assert not done.is_set()
        with open(log_path, "rb") as f:
            assert f.read() == b"rec parent\n"
    finally:
        drop_lock(lock_fd)
        join_all(child)
    assert done.is_set()
    with open(log_path, "rb") as f:
        assert f.read() == b"rec parent\nrec child\n"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_another_thread_is_inside_emit(strategy: str, log_path: str, logger: logging.Logger,
                                                  make_handler: Callable[..., Any]) -> None:
    """Forking while a thread holds the sink's lock mid-emit does not deadlock the child."""
    # The thread is parked inside the rotator, i.e. inside the sink's thread lock (and, for
    # flock, the file lock). A child that inherited the held thread lock would hang forever.
    inside, proceed = threading.Event(), threading.Event()

    def rotator(source: str, dest: str) -> None:
        if not inside.is_set():
            inside.set()
            proceed.wait(WAIT)
        os.replace(source, dest)

    # 30 + 30 bytes pass the 50-byte limit; 30 + 10 (the child's record) do not.
    handler = make_handler(log_path, strategy=strategy, max_bytes=50, backup_count=5, rotator=rotator)
    logger.addHandler(handler)
    logger.info("rec first-record-of-30-bytes")
    parked = threading.Thread(target=logger.info, args=("rec second-record-of-30-byte",))
    parked.start()
    try:
        assert inside.wait(WAIT)
        ctx = fork_context()
        done = ctx.Event()
        child = ctx.Process(target=_child_logs, args=(logger, "rec child", done))
        start_quietly(child)
        if strategy == "flock":
            # The parent thread really holds the file lock: the child must wait for it, so
            # release the parent before joining. An inherited held thread lock would still
            # hang the child.
            proceed.set()
            join_all(child)
        else:
            # Nothing is shared across processes: the child finishes while the parent's
            # thread is still parked.
            join_all(child)
            assert inside.is_set() and not proceed.is_set() and parked.is_alive()
    finally:
        proceed.set()
        parked.join(WAIT)
    assert not parked.is_alive()
    report = audit(log_files(log_path), ["first-record-of-30-bytes", "second-record-of-30-byte", "child"], PATTERN)
    assert report.ok, report


def _child_per_process(log: logging.Logger, handler: Any, out: Any) -> None:
    log.info("rec child-%d", os.getpid())
    out.send(current_file(handler))


def test_per_process_handler_before_fork_gives_the_child_its_own_shard(
    log_path: str, logger: logging.Logger, make_handler: Callable[..., Any]
) -> None:
    """A per-process handler used before fork() writes a new shard, named by pid, in the child."""
    handler = make_handler(log_path, strategy="per-process")
    logger.addHandler(handler)
    logger.info("rec parent")
    parent_shard = current_file(handler)
    ctx = fork_context()
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_per_process, args=(logger, handler, send))
    child.start()
    join_all(child)
    child_shard = recv.recv()
    assert child_shard != parent_shard and child_shard.endswith(f".{child.pid}.shard")
    logger.info("rec parent-again")
    assert sorted(log_files(log_path)) == sorted([parent_shard, child_shard])
    report = audit([parent_shard], ["parent", "parent-again"], PATTERN)
    assert report.ok, report
    report = audit([child_shard], [f"child-{child.pid}"], PATTERN)
    assert report.ok, report


def _configured_child(config: dict[str, Any], name: str, n: int, go: Any) -> None:
    # A spawn or forkserver child inherits no handler: it must configure logging itself.
    assert logging.getLogger(name).handlers == [], "handlers were inherited"
    logging.config.dictConfig(config)
    log = logging.getLogger(name)
    assert isinstance(log.handlers[0], safelog.SafeFileHandler)
    go.wait(WAIT)
    for i in range(n):
        log.info("rec child-%d", i)
    try:
        raise RuntimeError("traceback from the child")
    except RuntimeError:
        log.exception("rec child-traceback")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_spawned_child_configures_via_dictconfig(method: str, strategy: str, log_path: str,
                                                 dict_config: Callable[..., logging.Logger]) -> None:
    """A spawn/forkserver child configured by dictConfig writes alongside its parent, exactly once."""
    handler_config = {"class": "safelog.SafeFileHandler", "filename": log_path, "strategy": strategy,
                      "max_bytes": "2 KB", "backup_count": 100}
    log = dict_config(handler_config)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {"file": {"formatter": "plain", **handler_config}},
        "loggers": {log.name: {"handlers": ["file"], "level": "DEBUG", "propagate": False}},
    }
    ctx: Any = multiprocessing.get_context(method)
    go = ctx.Event()
    child = ctx.Process(target=_configured_child, args=(config, log.name, 500, go))
    child.start()
    try:
        go.set()
        for i in range(500):
            log.info("rec parent-%d", i)
    finally:
        join_all(child)
    files = log_files(log_path)
    expected = [f"parent-{i}" for i in range(500)] + [f"child-{i}" for i in range(500)] + ["child-traceback"]
    traceback = r"(\nTraceback \(most recent call last\):(\n  .*)+\nRuntimeError: traceback from the child)?"
    report = audit(files, expected, PATTERN + traceback)
    if strategy == "flock":
        # A plain file has no framing: the traceback's lines follow its record line and do
        # not match the record pattern; exactly those lines are reported.
        (path,) = {m[0] for m in report.malformed}
        lines = [m[1] for m in report.malformed]
        assert lines == list(range(lines[0], lines[0] + len(lines)))
        texts = [m[2] for m in report.malformed]
        assert texts[0] == "Traceback (most recent call last):" and texts[-1] == "RuntimeError: traceback from the child"
        with open(path, "rb") as f:
            assert f.read().splitlines()[lines[0] - 2] == b"rec child-traceback"
        report.malformed = []
    assert report.ok, report
    assert len(files) > 3, "no rotation happened"
    if strategy == "per-process":
        assert len({re.search(r"\.(\d+)\.shard", f).group(1) for f in files}) == 2  # type: ignore[union-attr]
