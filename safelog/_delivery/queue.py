"""Non-blocking mode: the caller only enqueues; one background thread per log file writes.

``emit()`` in the caller freezes the record and appends it to the :class:`Writer` of the
handler's strategy. There is one writer per strategy, i.e. per real path and strategy in this process,
whatever the number of handlers on it. The writer hands the whole batch to
:meth:`Strategy.write_many`: one lock acquisition and one ``write()`` for up to ``max_batch``
records.

What the formatter sees is what it sees synchronously, and the text written is the text a
synchronous handler writes: only values the caller can no longer change cross to this thread
(the rule is in :mod:`.freeze`). For the stock ``logging.Formatter`` the caller merges the
message and renders the traceback, and the writer does the layout (most of the formatting
cost); every other formatter, record class, or a mutable ``extra=`` value in the format, is
formatted in the caller and the writer only writes the text.

When it writes: as soon as the oldest queued record has waited ``flush_interval``, as soon as a
record at or above ``flush_level`` is queued, when ``max_batch`` records are waiting, and on
``flush()``/``close()``/``logging.shutdown()``/interpreter exit, which drain everything.

Lifecycle: the thread starts on the first record. In a forked child the queue is emptied (the
parent's writer writes those records) and a new thread starts on the child's first record, so a
child never waits on a thread that does not exist. At exit, :func:`_drain_all` (registered with
``atexit`` after ``logging`` registered ``logging.shutdown``, so it runs first) drains and stops
every writer; records logged after that are written directly by the caller.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections import deque
from time import monotonic, perf_counter
from typing import Any

from .._policy.config import QueueConfig
from .._primitives.reentry import get_ident, leave
from .._primitives.reentry import inside as _inside
from .._sinks.strategy import PartialWrite, Strategy
from .freeze import revive
from .outlet import Outlet

__all__ = ["Writer", "attach", "detach"]

# The writer formats records while holding the GIL. An event loop thread that wants the GIL
# back waits up to sys.getswitchinterval() (5 ms) before the interpreter forces a switch, so a
# long batch would stall the loop by that much. Formatting in slices of _SLICE and then sleeping
# _YIELD (long enough for the waiting thread to wake up and take the GIL, which a zero sleep is
# not) bounds that stall to about one slice. Not while draining for flush()/close(): then the
# caller is waiting for the writer, and every pause is pure delay.
_SLICE = 0.001
_YIELD = 0.0002

# A queued item: the outlet of the handler that writes it, and one of: a deferred record's
# attributes and the formatter that lays it out; a record's text and its attributes (see
# .freeze); for the notice of records dropped on overflow, their number (and None).
_Item = tuple[Outlet, dict[str, Any] | str | int, Any]


class Writer:
    """The bounded queue and background thread of one strategy."""

    def __init__(self, strategy: Strategy, settings: QueueConfig) -> None:
        self.strategy = strategy
        self.settings = settings
        self._queue_size = settings.queue_size  # read by every put()
        self._max_batch = settings.max_batch
        self.refs = 0
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._thread: threading.Thread | None = None
        self._ident = -1
        self._first_at = 0.0
        self._urgent = False
        self._stopping = False
        self._flushing = 0
        self._blocked = 0
        self._queued = 0
        self._written = 0
        self._dropped = 0
        self._drop_outlet: Outlet | None = None

    # -- caller side ------------------------------------------------------------------------

    def put(self, outlet: Outlet, payload: dict[str, Any] | str, extra: Any, urgent: bool, drop: bool) -> bool:
        """Queue one frozen record (the two parts of :meth:`.Freezer.freeze`'s item). False
        means "write it yourself": the writer has stopped (interpreter exit)."""
        with self._lock:
            if self._closed:
                return False
            q = self._queue
            if len(q) >= self._queue_size:
                if self._ident == threading.get_ident():
                    # Logged from the writer's own thread (a rotator, namer, formatter or
                    # finalizer that logs, queued as its round ends): it cannot wait for room
                    # only it can make. The next batch takes it; one record over the bound is
                    # the lesser evil.
                    q.append((outlet, payload, extra))
                    self._queued += 1
                    return True
                if drop:
                    self._dropped += 1
                    self._drop_outlet = outlet
                    return True
                self._blocked += 1
                # A full queue is written now, not at the end of flush_interval.
                self._not_empty.notify()
                try:
                    while len(q) >= self._queue_size and not self._closed:
                        self._not_full.wait()
                finally:
                    self._blocked -= 1
                if self._closed:
                    return False
            if self._thread is None:
                self._start()
            if not q:
                self._first_at = monotonic()
                self._not_empty.notify()
            if self._dropped:
                # The notice goes where the gap is: after the records queued before the drops,
                # before the first one that found room again.
                self._queue_drop_notice()
            q.append((outlet, payload, extra))
            self._queued += 1
            if urgent:
                self._urgent = True
                self._not_empty.notify()
            elif len(q) == self._max_batch:
                self._not_empty.notify()
            return True

    def flush(self) -> None:
        """Return once every record queued before the call is written (or reported lost)."""
        with self._lock:
            if self._thread is None or self._ident == threading.get_ident():
                return
            if self._dropped:
                self._queue_drop_notice()  # no record followed the drops: the notice is due now
            target = self._queued
            self._flushing += 1
            self._not_empty.notify()
            try:
                while self._written < target and self._thread is not None:
                    self._done.wait()
            finally:
                self._flushing -= 1

    def stop_within(self, deadline: float) -> None:
        """:meth:`stop` for a signal handler: it may have interrupted this very thread inside
        ``put()`` holding the queue lock, so never wait past ``deadline`` for anything."""
        if not self._lock.acquire(timeout=max(deadline - monotonic(), 0)):
            return
        try:
            self._stopping = True
            thread = self._thread
            self._not_empty.notify()
        finally:
            self._lock.release()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - monotonic(), 0))

    def stop(self) -> None:
        """Drain the queue, end the thread; later records are written by their callers."""
        with self._lock:
            self._stopping = True
            thread = self._thread
            if thread is None:
                self._closed = True
                self._not_full.notify_all()
                return
            self._not_empty.notify()
        if thread is not threading.current_thread():
            thread.join()

    # -- writer side ------------------------------------------------------------------------

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name=f"safelog-writer {self.strategy.path}")
        # Daemon, so that interpreter exit does not wait for it before atexit runs; the atexit
        # drain (and logging.shutdown) are what write its last records.
        thread.daemon = True
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        me = self._ident = get_ident()
        try:
            while True:
                # Each round is a section (see _primitives/reentry.py): a record logged from
                # this thread meanwhile (a finalizer run by the garbage collector while the
                # queue's lock is held; a rotator, namer or formatter that logs) would wait for
                # a lock this thread holds; it is written when the round ends.
                _inside[me] = None
                try:
                    if not self._round(me):
                        return
                finally:
                    leave(me)
        finally:
            with self._lock:
                self._thread = None
                self._ident = -1
                self._done.notify_all()
                self._not_full.notify_all()

    def _round(self, me: int) -> bool:
        """Write one batch; False once the writer has stopped."""
        q = self._queue
        max_batch = self._max_batch
        with self._lock:
            while not q and not self._stopping:
                if self._dropped:
                    self._queue_drop_notice()
                    break
                if _inside.get(me):
                    return True  # records logged from this thread: written as the round ends
                self._not_empty.wait()
            if not q:
                # Closed under the same lock as the emptiness check: no caller can slip a
                # record in after the last batch.
                self._closed = True
                self._not_full.notify_all()
                return False
            while not (
                self._urgent or self._stopping or self._flushing or self._blocked or len(q) >= max_batch
            ):
                remaining = self._first_at + self.settings.flush_interval - monotonic()
                if remaining <= 0:
                    break
                self._not_empty.wait(remaining)
            # Taken one by one, not copied and cleared: a record this thread queues meanwhile
            # (a finalizer) stays for the next round instead of being cleared unwritten.
            batch = [q.popleft() for _ in range(min(len(q), max_batch))]
            if not q:
                self._urgent = False
                if self._dropped:
                    # Records were dropped and none followed to carry the notice: it goes
                    # after the records queued before the drops, which this batch ends with.
                    self._queue_drop_notice()
                    batch.append(q.popleft())
            # else a backlog: the rest is already overdue, so the next round writes it at
            # once (_first_at stays in the past).
            if self._blocked:
                self._not_full.notify_all()
        try:
            self._write(batch)
        finally:
            with self._lock:
                self._written += len(batch)
                self._done.notify_all()
        return True

    def _queue_drop_notice(self) -> None:
        """Queue the notice of the records dropped since the last one (under the lock)."""
        assert self._drop_outlet is not None
        if not self._queue:
            self._first_at = monotonic()
        self._queue.append((self._drop_outlet, self._dropped, None))
        self._queued += 1
        self._dropped = 0

    def _write(self, batch: list[_Item]) -> None:
        i, n = 0, len(batch)
        while i < n:
            outlet = batch[i][0]
            j = i + 1
            while j < n and batch[j][0] is outlet:
                j += 1
            try:
                self._write_group(outlet, batch[i:j])
            except Exception:  # pragma: no cover - a bug must not kill the writer
                outlet.handle_error(logging.makeLogRecord({"msg": "safelog writer"}))
            i = j

    def _write_group(self, outlet: Outlet, items: list[_Item]) -> None:
        records: list[logging.LogRecord] = []
        msgs: list[tuple[str, float]] = []
        layout = outlet.layout
        slice_end = perf_counter() + _SLICE
        for k, (_, payload, extra) in enumerate(items):
            msg: str | None
            record: logging.LogRecord
            if isinstance(payload, str):
                msg, record = payload, revive(extra)  # formatted in the caller
            elif isinstance(payload, dict):
                record = revive(payload)
                msg = layout(extra, record)
            else:
                record = _drop_notice(payload, outlet.path)
                msg = outlet.render(record)
            if msg is None:
                continue  # reported
            msgs.append((msg, record.created))
            records.append(record)
            if k & 15 == 15 and perf_counter() > slice_end:
                if not (self._flushing or self._stopping):
                    time.sleep(_YIELD)
                slice_end = perf_counter() + _SLICE
        try:
            rejected = self.strategy.write_many(msgs)
        except PartialWrite as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            for i, error in exc.rejected:
                outlet.failed(records[i], error)
            for i in exc.lost:
                outlet.failed(records[i], cause)
            return
        for i, error in rejected:
            outlet.failed(records[i], error)  # as in synchronous mode: this record alone is lost
        if outlet.failures.lost:
            outlet.failures.recover(lambda note: self.strategy.write_record(outlet.render, note))


def _drop_notice(count: int, path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "safelog",
        logging.WARNING,
        __file__,
        0,
        "safelog: dropped %d record(s): the queue of %s was full (overflow='drop')",
        (count, path),
        None,
    )


_writers: dict[int, Writer] = {}
_writers_lock = threading.Lock()


def attach(strategy: Strategy, settings: QueueConfig) -> Writer:
    """The writer of ``strategy``, created on first use. The handlers of one file agree on its
    settings: the strategy registry refused any that did not."""
    with _writers_lock:
        writer = _writers.get(id(strategy))
        if writer is None or writer.strategy is not strategy:
            writer = Writer(strategy, settings)
            _writers[id(strategy)] = writer
        writer.refs += 1
    _hook_multiprocessing()
    _hook_sigterm()
    return writer


def detach(writer: Writer) -> None:
    """Drop one handler's reference: drain what is queued; the last one stops the thread."""
    with _writers_lock:
        writer.refs -= 1
        last = writer.refs <= 0
        if last and _writers.get(id(writer.strategy)) is writer:
            del _writers[id(writer.strategy)]
    if last:
        writer.stop()
    else:
        writer.flush()


def _drain_all() -> None:
    with _writers_lock:
        writers = list(_writers.values())
    for writer in writers:
        writer.stop()


_mp_hooked = False
_sigterm_hooked = False

# How long a SIGTERM may wait for queued records before the process dies as the signal wants.
SIGTERM_DRAIN = 2.0


def _hook_sigterm() -> None:
    """Drain before dying of SIGTERM, when nobody else handles it.

    SIGTERM's default action ends the process without atexit, so records still queued would be
    lost; servers that restore the default and re-raise it after their own shutdown (uvicorn's
    workers do) would lose their last lines. Installed only where SIGTERM has its default
    action, from the main thread; after draining, the default is restored and the signal
    re-raised, so the process still ends by SIGTERM with the same status.
    """
    global _sigterm_hooked
    if _sigterm_hooked or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_hooked = True
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no SIGTERM, or embedded
        pass


def _on_sigterm(signum: int, frame: object) -> None:
    deadline = monotonic() + SIGTERM_DRAIN
    for writer in list(_writers.values()):
        writer.stop_within(deadline)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _hook_multiprocessing() -> None:
    """Drain in multiprocessing children too: they end with ``os._exit()``, which skips atexit,
    after running multiprocessing's own exit finalizers (``multiprocessing.util.Finalize``)."""
    global _mp_hooked
    if _mp_hooked:
        return
    _mp_hooked = True
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _drain_all, exitpriority=10)
    # multiprocessing clears its finalizers in every child it starts, then runs these hooks.
    mp_util.register_after_fork(_drain_all, _register_mp_finalizer)


def _register_mp_finalizer(_: object) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _drain_all, exitpriority=10)


def _after_fork_in_child() -> None:
    global _writers_lock
    _writers_lock = threading.Lock()
    for writer in _writers.values():
        # The queued records belong to the parent, whose writer writes them; keeping them would
        # write them twice. The parent's thread does not exist here: start afresh.
        writer._reset()


# Registered after logging's own atexit hook (logging is imported first), so it runs before
# logging.shutdown() and before the files close.
atexit.register(_drain_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
