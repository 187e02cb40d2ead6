"""The shared part of every strategy: one open log file per real path per process.

A :class:`Sink` is the per-process state behind every handler that writes one real path: the
file descriptor, the thread lock, the size. ``logging.Handler.handle()`` holds a lock per
*handler*; two handlers on the same path would not exclude each other, so the lock lives here,
shared through :func:`.registry.acquire`.

Strategies subclass :class:`Sink` and fill in :meth:`Sink._append` ("how do concurrent writers
append and rotate safely"); everything else (opening, reopening, fork safety, partial writes)
is here once. One sink per real path per process is kept by :mod:`.registry`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Sequence

from .._policy import compress as _compress
from .._policy.config import FileOptions
from .._policy.rotation import SIZE
from .._primitives.fileio import Place, close_quietly, open_append
from .._primitives.paths import name_too_long
from .._primitives.perms import Perms

if TYPE_CHECKING:
    from .._policy.rotation import Rollover

__all__ = ["Sink", "PartialWrite", "SinkRetired", "CHECK_INTERVAL", "last_write"]

# How often a writer checks that the path it writes still names the file it holds open (log
# file deleted, renamed by logrotate, lock file replaced). Checking on every record would cost a
# stat() (~2 µs, 10% of a record); once a second costs nothing and bounds the time records go
# to a file nobody will read.
CHECK_INTERVAL = 1.0


def last_write(fd: int, path: str) -> float | None:
    """When the log was last written (from ``fd`` if open, else ``path``); None when it has no
    records or does not exist. Nothing is opened: asking must not create the log."""
    try:
        st = os.fstat(fd) if fd >= 0 else os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime if st.st_size else None


class SinkRetired(Exception):
    """The sink was closed for good (its last handler closed it) while a record was on its way
    to it: the record belongs to the handler's current sink (see :meth:`Sink.retire`)."""


class PartialWrite(Exception):
    """:meth:`Sink.write_many` stopped early: the records at ``lost`` (indexes into the batch)
    did not reach the file, the others did; ``rejected`` as returned by ``write_many``. The
    underlying error is chained as ``__cause__``."""

    def __init__(self, lost: list[int], rejected: list[tuple[int, Exception]]) -> None:
        super().__init__(f"{len(lost)} record(s) of the batch were not written")
        self.lost = lost
        self.rejected = rejected


class Sink:
    """Per-process writer state for one real log path, shared by all handlers on it."""

    kind: ClassVar[str] = ""
    # Check on every record that the path still names the open file (a WatchedFileHandler on
    # it), instead of once per CHECK_INTERVAL.
    watching = False
    # False for StreamSink: a FIFO or device, never rotated, locked beside or sharded.
    regular: ClassVar[bool] = True
    # True when the file is opened by the first write, in the process that writes (per-process
    # shards), not when the handler is configured.
    lazy: ClassVar[bool] = False
    target_kind: ClassVar[str] = "log file"  # what _target() is, in messages
    _retired = False  # set by retire(): never opened again
    # The file is one only safelog creates (a shard): the full rule of fileio.check_file, and
    # created so that no other user can open it (it carries a lock).
    own_file: ClassVar[bool] = False
    _reopen_requests = 0  # counted by request_reopen()

    def __init__(self, path: str, options: FileOptions) -> None:
        self.path = path
        self.options = options
        self.refs = 0
        self._encoding, self._errors = options.encoding, options.errors  # read per record
        self._tlock = self._new_lock()
        self._fd = -1
        self._ino = -1
        self._next_check = 0.0
        # Set when a write failed after part of a record reached the file: the next write starts
        # with a line break so the torn fragment cannot glue itself to a good record.
        self._torn = False
        self._truncate = options.truncate
        # Records of the current write_many() batch that reached the file (under _tlock).
        self._batch_done = 0
        # Time rotation: start of the period the open file belongs to (None: not known yet), and
        # the instant that period ends. Kept here, per real path, because all handlers of the
        # path in this process write the same file.
        self._period: float | None = None
        self._rollover_at = math.inf
        self._rotated = False
        # The log's directory, reached without following links; it remembers the directories
        # of the path it saw first (see Place).
        self._place = Place(os.path.dirname(path))

    # -- called by the handler ------------------------------------------------------------

    def encode(self, msg: str, created: float) -> bytes:
        """Turn one formatted record into the bytes appended to the file (under the lock)."""
        return (msg + "\n").encode(self._encoding, self._errors)

    def write(self, msg: str, created: float, rollover: Rollover | None) -> None:
        """Append one record; rotate first when ``rollover`` says the file is due."""
        with self._tlock:
            self._write_locked(self.encode(msg, created), created, rollover)
        if self._rotated:
            self._after_write()

    def write_record(
        self, render: Callable[[logging.LogRecord], str | None], record: logging.LogRecord, rollover: Rollover | None
    ) -> None:
        """Format ``record`` with ``render`` and append it. ``render`` reports a record it cannot
        format itself and returns None; what this raises is a failed write. Formatting happens
        before any lock here; a strategy may format under its lock instead (ThreadSink)."""
        msg = render(record)
        if msg is not None:
            self.write(msg, record.created, rollover)

    def _write_locked(self, data: bytes, created: float, rollover: Rollover | None) -> None:
        """Append one encoded record, under the thread lock."""
        if self._torn:
            data = b"\n" + data
        try:
            self._append(data, created, rollover)
        except OSError:
            if self._torn:
                raise
            # The descriptor may be stale (directory removed and recreated, file system
            # remounted, descriptor closed by a library): reopen once and retry. Nothing of
            # this record reached the file, so the retry cannot duplicate it.
            self._forget_files()
            self._append(data, created, rollover)
        self._torn = False

    def _after_write(self) -> None:
        """After a write that rotated, with the lock released."""
        # The rotation queued background work (compression, unlinks): start the worker now that
        # the lock is released, so no writer waited for a thread to start.
        self._rotated = False
        _compress.start_worker()

    def write_many(self, items: Sequence[tuple[str, float]], rollover: Rollover | None) -> list[tuple[int, Exception]]:
        """Append ``(msg, created)`` records in order with one lock acquisition and as few
        ``write()`` calls as rotation allows (one, unless the batch crosses the size limit).

        Each record is encoded on its own (the per-process shard frame numbers records); one
        that cannot be encoded (``errors="strict"``) is left out, as a synchronous write loses
        only that record, and returned with its error as ``(index, error)``. Raises
        :class:`PartialWrite` from the cause when an error stops the batch part-way.
        """
        rejected: list[tuple[int, Exception]] = []
        with self._tlock:
            datas: list[bytes] = []
            createds: list[float] = []
            kept: list[int] = []
            for i, (msg, created) in enumerate(items):
                try:
                    datas.append(self.encode(msg, created))
                except Exception as exc:  # UnicodeEncodeError, or a shard that cannot be opened
                    rejected.append((i, exc))
                    continue
                createds.append(created)
                kept.append(i)
            if not datas:
                return rejected
            if self._torn:
                datas[0] = b"\n" + datas[0]
            self._batch_done = 0
            try:
                try:
                    self._append_many(datas, createds, rollover)
                except OSError:
                    if self._torn:
                        raise
                    # As in write(): a stale descriptor gets one reopen. Only the records that
                    # did not reach the file are retried, so nothing is duplicated.
                    self._forget_files()
                    done = self._batch_done
                    self._append_many(datas[done:], createds[done:], rollover)
            except Exception as exc:
                raise PartialWrite(kept[self._batch_done :], rejected) from exc
            self._torn = False
        if self._rotated:
            self._after_write()
        return rejected

    @property
    def opened(self) -> bool:
        return self._fd >= 0

    def target(self) -> str:
        """The file this process appends to: the log, or this process's shard."""
        return self._target()

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the file this process has open for writing, ``(-1, -1)`` when
        none is (``WatchedFileHandler.dev``/``ino``)."""
        with self._tlock:
            if self._fd < 0:
                return -1, -1
            st = os.fstat(self._fd)
            return st.st_dev, st.st_ino

    def rotation_due(self, rollover: Rollover, nbytes: int, created: float) -> bool:
        """``shouldRollover()``: would a record of ``nbytes`` at ``created`` rotate the file now?"""
        with self._tlock:
            if self._fd < 0:
                self._open_files()
            size = os.fstat(self._fd).st_size
            boundary = self._rollover_at
            if self._period is None and rollover.timing is not None:
                boundary = rollover.boundary(rollover.first_period(self._fd, size, created))
            return rollover.would_rotate(size, nbytes, created, boundary)

    def rollover_at(self, rollover: Rollover, now: float) -> float:
        """``rolloverAt``: when the open file's period ends, as this process knows it (worked
        out from the file, as its first record would, when no record was written yet)."""
        with self._tlock:
            if self._period is not None:
                return self._rollover_at
            return rollover.boundary(rollover.start_period(last_write(self._fd, self._target()), now))

    def rotate_now(self, rollover: Rollover, created: float) -> None:
        """``doRollover()``: rotate the file now, unless it is empty (never an empty backup)."""
        with self._tlock:
            self._force_rotate(rollover, created)
        if self._rotated:
            self._after_write()

    def _force_rotate(self, rollover: Rollover, created: float) -> None:
        # thread and per-process: this process alone writes the file, under the thread lock.
        if self._fd < 0 or self._path_moved():
            self._open_log()
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        if self._period is None and rollover.timing is not None:
            self._set_period(rollover, rollover.first_period(self._fd, size, created))
        self._rotate_own(rollover, SIZE, size, created)

    def open(self) -> None:
        """Open the files now (handlers without ``delay``), so a bad path fails at configuration."""
        with self._tlock:
            if self._fd < 0:
                self._open_files()

    def close(self) -> None:
        with self._tlock:
            self._close_files()

    def retire(self) -> None:
        """Close for good: the last handler of the path let go of it. A thread that fetched
        this sink before that and writes now (close() racing emit()) must not reopen the files:
        nobody would close them again (and a per-process shard left open keeps its shared lock,
        so a merge takes it for live). It gets :class:`SinkRetired` instead."""
        with self._tlock:  # a write in progress (a rotation, say) finishes first
            self._retired = True
        self.close()

    def check_names(self, rollover: Rollover | None) -> None:
        """ValueError when a file this sink would create has a name over the limit of its file
        system: found here, when the handler is built, instead of by every record."""
        target = self._longest_target()
        names = [(self.target_kind, target)] + self._own_names()
        if rollover is not None:
            names += rollover.created_names(target)
        for what, name in names:
            problem = name_too_long(name)
            if problem is not None:
                raise ValueError(
                    f"filename={self.path!r}: {what} {name!r} cannot be created: {problem}; "
                    f"use a shorter filename"
                )

    def reopen(self) -> None:
        """Close the log and open the file now at its path (after an external rotation)."""
        with self._tlock:
            if self._fd >= 0:
                self._open_log()

    def request_reopen(self) -> None:
        """:meth:`reopen` from a signal handler. That runs between two bytecodes of the main
        thread, maybe inside a write holding the lock, so it takes no lock: it makes the
        once-a-second path check due, and the next record of any thread reopens before it is
        written if the path names another file. (If it names the same one, the file we hold
        open is that file: reopening would change nothing.)"""
        self._reopen_requests += 1
        self._next_check = 0.0

    # -- for strategies ---------------------------------------------------------------------

    def _append(self, data: bytes, created: float, rollover: Rollover | None) -> None:
        raise NotImplementedError

    def _append_many(self, datas: list[bytes], createds: list[float], rollover: Rollover | None) -> None:
        raise NotImplementedError

    def _write_batch(
        self,
        datas: list[bytes],
        createds: list[float],
        rollover: Rollover | None,
        size: int,
        rotate: Callable[[int, int, float, int], int],
    ) -> int:
        """Write ``datas`` (under the strategy's exclusion) and return the file's new size.

        A batch that would cross the size limit is split exactly where a record-by-record
        writer would have rotated, so the files look the same in both modes: rotation is asked
        per record (a comparison), the write is one per run of records that fit.
        ``rotate(kind, n, created, size)`` rotates the file of ``size`` bytes before a record of
        ``n`` bytes and returns the size of the file written next.
        """
        i, n = 0, len(datas)
        while i < n:
            first = len(datas[i])
            if rollover is not None:
                kind = self._due(rollover, size, first, createds[i])
                if kind:
                    size = rotate(kind, first, createds[i], size)
            j, total = i + 1, first
            if rollover is None:
                j, total = n, total + sum(len(d) for d in datas[i + 1 :])
            else:
                while j < n and not self._due(rollover, size + total, len(datas[j]), createds[j]):
                    total += len(datas[j])
                    j += 1
            self._write_all(datas[i] if j == i + 1 else b"".join(datas[i:j]))
            self._batch_done += j - i
            size += total
            i = j
        return size

    def _due(self, rollover: Rollover, size: int, nbytes: int, created: float) -> int:
        """Is the file of ``size`` bytes due for rotation before a record of ``nbytes``?"""
        return rollover.due(size, nbytes, created, self._rollover_at)

    def rotation_guard(self) -> ContextManager[Any]:
        """The exclusion under which this log's backups may be renamed or removed (used by the
        background compressor for its final renames). One writer per file: the thread lock."""
        return self._tlock

    def _set_period(self, rollover: Rollover, period: float | None) -> None:
        self._period = period
        self._rollover_at = rollover.boundary(period)

    def _rotate_own(self, rollover: Rollover, kind: int, size: int, created: float) -> None:
        """Rotate a file this process alone writes (``thread``, ``per-process``), under its
        thread lock: nobody else can be appending, so no re-check is needed."""
        if self._path_moved():
            # The path names another file now, or none (the file or its directory deleted,
            # renamed or replaced since the last check): renaming by path would move whatever
            # is there now. Follow the path instead (the reopen goes through the rules of
            # fileio) and write to what it names.
            self._open_log()
            return
        target = self._target()
        done = rollover.rollover(target, kind, size, self._period, created)
        if done is None:
            return  # could not rename: write on to the current file, retry later
        period, _ = done
        self._open_log()
        self._set_period(rollover, period)
        rollover.after_rollover(target, created, self.rotation_guard)
        self._rotated = True

    def _open_files(self) -> None:
        self._open_log()

    def _target(self) -> str:
        """The file this process appends to (the shard for per-process)."""
        return self.path

    def _longest_target(self) -> str:
        """The longest name :meth:`_target` can have, in this process or a child."""
        return self.path

    def _own_names(self) -> list[tuple[str, str]]:
        """What and where the files the strategy keeps beside the log are (a lock file)."""
        return []

    def _open_log(self) -> None:
        # Every descriptor is forgotten before it is closed, and kept only once open: a child
        # forked by another thread in between then never closes (in _after_fork) a number the
        # kernel has already given to someone else, such as the pipe multiprocessing forks with.
        fd, self._fd = self._fd, -1
        close_quietly(fd)
        if self._retired:
            raise SinkRetired(self.path)
        # Before the open, so that a reopen requested after it (request_reopen) is not undone.
        self._next_check = 0.0 if self.watching else monotonic() + CHECK_INTERVAL
        perms = self.options.perms
        if self.own_file:
            perms = (perms or Perms()).private()
        fd = open_append(
            self._target(),
            self.options.file_mode,
            truncate=self._truncate,
            perms=perms,
            place=self._place,
            own=self.own_file,
        )
        self._truncate = False
        self._fd = fd
        self._ino = os.fstat(fd).st_ino

    def _close_files(self) -> None:
        fd, self._fd = self._fd, -1  # forgotten first: see _open_log
        close_quietly(fd)
        self._place.close()

    def _forget_files(self) -> None:
        """After a failed write: make the retry reopen the files."""
        self._close_files()

    def _path_moved(self) -> bool:
        """True when the path no longer names the open file (deleted, or renamed by someone)."""
        self._next_check = 0.0 if self.watching else monotonic() + CHECK_INTERVAL
        try:
            return os.stat(self._target()).st_ino != self._ino
        except FileNotFoundError:
            return True

    def _write_all(self, data: bytes) -> None:
        """One ``write()`` per record; loop only if the kernel took part of it."""
        fd = self._fd
        n = os.write(fd, data)
        if n != len(data):
            self._write_rest(fd, data, n)

    def _write_rest(self, fd: int, data: bytes, n: int) -> None:
        """The kernel took only ``n`` bytes of ``data``: write the rest, or take back the part
        written if that fails."""
        try:
            while n < len(data):
                n += os.write(fd, data[n:])
        except OSError:
            self._untear(fd, n)
            raise

    def _untear(self, fd: int, written: int) -> None:
        """Remove the ``written`` bytes of a record that failed half-way (disk full, file too
        big), so that the next record, ours or another process's, does not glue onto them.

        Every caller holds the exclusion of its strategy, so the record is the last thing in
        the file. If the file grew past our own write anyway, or cannot be truncated, leave the
        fragment and make the next write start a new line instead.
        """
        try:
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_size == end:
                # Shrinking a file is allowed even at RLIMIT_FSIZE or with the disk full.
                os.ftruncate(fd, end - written)
                return
        except OSError:
            pass
        self._torn = True

    def _new_lock(self) -> threading.Lock | threading.RLock:
        return threading.Lock()

    def _after_fork(self) -> None:
        """In a forked child: a lock held by another parent thread at fork time stays held
        forever in the child, and descriptors are shared with the parent (for ``flock`` that
        means a shared lock), so start over with fresh ones. mode='w' truncates in the process
        that configured the handler only: a child inheriting it appends."""
        self._tlock = self._new_lock()
        self._truncate = False
        self._close_files()
