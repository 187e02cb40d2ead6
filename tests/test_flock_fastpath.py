"""The flock strategy's shared-lock fast path: writers share, rotation is exclusive and exact."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading

import safelog
from safelog._sinks.flock import FAST_MARGIN, FAST_RECORD
from tests.faults_helpers import flock_waiters, join_all, wait_until
from tests.helpers import drop_lock, log_descriptor, strategy_of, take_lock


def _write_two(path: str, msg: str, max_bytes: int, ready, go, done) -> None:  # type: ignore[no-untyped-def]
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=max_bytes, backup_count=5)
    # The first record of a process always takes the exclusive path (it learns the rotation
    # counter there); the second is the one under test.
    h.emit(logging.makeLogRecord({"msg": "first"}))
    ready.set()
    assert go.wait(10)
    h.emit(logging.makeLogRecord({"msg": msg}))
    h.close()
    done.set()


def _run_child(
    path: str, msg: str, max_bytes: int, expect_block: bool, between=None  # type: ignore[no-untyped-def]
) -> tuple[bool, multiprocessing.process.BaseProcess]:
    """Start a writer, hold the lock shared while it writes its second record; did it finish
    (or, when ``expect_block``, is the kernel showing it queued on the lock)? ``between`` runs
    after the first record."""
    ctx = multiprocessing.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_write_two, args=(path, msg, max_bytes, ready, go, done))
    child.start()
    assert ready.wait(10)
    if between is not None:
        between()
    fd = os.open(path + ".lock", os.O_RDWR)
    take_lock(fd, shared=True)
    try:
        go.set()
        if expect_block:
            wait_until(lambda: child.pid in flock_waiters(path + ".lock") or done.is_set(), 10,
                       "the child to write or to queue on the lock")
            finished = done.is_set()
        else:
            finished = done.wait(10)
    finally:
        drop_lock(fd)
        os.close(fd)
    join_all([child], timeout=10)
    return finished, child


def test_small_record_far_from_the_limit_is_written_beside_another_shared_holder(tmp_path):
    """While another process holds the lock shared, a small record far from the limit is still written."""
    path = str(tmp_path / "app.log")
    finished, child = _run_child(path, "small", 10 * FAST_MARGIN, expect_block=False)
    assert finished, "a shared-lock writer waited for another shared holder"
    assert child.exitcode == 0
    assert open(path).read() == "first\nsmall\n"


def test_record_near_the_limit_takes_the_exclusive_lock(tmp_path):
    """In the last FAST_MARGIN bytes the exact check runs under the exclusive lock: it waits
    for a shared holder."""
    path = str(tmp_path / "app.log")
    max_bytes = FAST_MARGIN + 50
    with open(path, "w") as f:
        f.write("x" * 99 + "\n")  # 100 bytes: less than FAST_MARGIN below the limit
    finished, child = _run_child(path, "near", max_bytes, expect_block=True)
    assert not finished, "a record near the limit was written without the exclusive lock"
    assert child.exitcode == 0
    assert open(path).read().endswith("near\n")


def test_the_size_is_read_for_every_record(tmp_path):
    """The shared path looks at the file's size for every record, not a remembered one: bytes
    another process appended after our last record move the next one to the exclusive path."""
    path = str(tmp_path / "app.log")
    max_bytes = 10 * FAST_MARGIN

    def another_writer() -> None:  # takes the file into the last FAST_MARGIN bytes
        with open(path, "a") as f:
            f.write("z" * (max_bytes - FAST_MARGIN) + "\n")

    finished, child = _run_child(path, "second", max_bytes, expect_block=True, between=another_writer)
    assert not finished, "the size was not read again for the second record"
    assert child.exitcode == 0
    assert open(path).read().endswith("second\n")


def _stall_write(monkeypatch, payload: bytes) -> tuple[threading.Event, threading.Event]:  # type: ignore[no-untyped-def]
    """Make the write() of ``payload`` stop inside the call until released: (inside, release)."""
    inside, release = threading.Event(), threading.Event()
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if data == payload:
            inside.set()
            release.wait(30)
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return inside, release


def test_threads_of_one_process_do_not_wait_for_each_other(tmp_path, monkeypatch):
    """No thread lock is held across the write: while one thread is stopped inside its
    write(), another thread's record is written (each thread holds the shared lock through a
    descriptor of its own)."""
    path = str(tmp_path / "app.log")
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=10 * FAST_MARGIN, backup_count=2)
    h.emit(logging.makeLogRecord({"msg": "first"}))
    inside, release = _stall_write(monkeypatch, b"stalled\n")
    t = threading.Thread(target=h.emit, args=(logging.makeLogRecord({"msg": "stalled"}),))
    t.start()
    try:
        assert inside.wait(10)
        h.emit(logging.makeLogRecord({"msg": "beside"}))  # returns: no thread lock to wait for
        assert open(path).read() == "first\nbeside\n"
    finally:
        release.set()
        t.join(10)
    h.close()
    assert open(path).read() == "first\nbeside\nstalled\n"


def test_close_waits_for_a_write_in_flight(tmp_path, monkeypatch):
    """close() does not close the descriptors under a thread that is writing without the thread
    lock: it waits until that write is done."""
    path = str(tmp_path / "app.log")
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=10 * FAST_MARGIN, backup_count=2)
    h.emit(logging.makeLogRecord({"msg": "first"}))
    sink = strategy_of(h)
    fd = log_descriptor(h)
    inside, release = _stall_write(monkeypatch, b"stalled\n")
    t = threading.Thread(target=h.emit, args=(logging.makeLogRecord({"msg": "stalled"}),))
    t.start()
    assert inside.wait(10)
    closer = threading.Thread(target=h.close)
    closer.start()
    try:
        wait_until(lambda: sink.lockfile.closing, 10, "close() to wait for the writer")
        os.fstat(fd)  # still open under the writer
    finally:
        release.set()
        t.join(10)
        closer.join(10)
    assert not closer.is_alive()
    assert open(path).read() == "first\nstalled\n"
    assert sink.file.fd == -1  # closed once the writer was done


def test_large_record_takes_the_exclusive_lock(tmp_path):
    """A record over FAST_RECORD bytes never takes the shared path (it could overshoot the margin)."""
    path = str(tmp_path / "app.log")
    finished, child = _run_child(path, "y" * (FAST_RECORD + 1), 0, expect_block=True)
    assert not finished, "a large record was written without the exclusive lock"
    assert child.exitcode == 0
    assert open(path).read() == "first\n" + "y" * (FAST_RECORD + 1) + "\n"
