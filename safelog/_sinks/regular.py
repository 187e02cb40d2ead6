"""The shared loop of the strategies on a regular file (``thread``, ``per-process``, ``flock``).

:class:`FileStrategy` implements :class:`.strategy.Rotating` once: encoding, the one retry after
a stale descriptor, torn-record repair (through the composed :class:`.logfile.LogFile`), batches
cut where a record-by-record writer would rotate, the questions the stdlib's rotation API asks,
and starting the background work a rotation queued once the lock is released. A strategy fills
in how it appends and rotates under its own exclusion: :meth:`_append`, :meth:`_append_many`,
:meth:`_rotate_now`, :meth:`_open_files`, :meth:`_forget`, and how it closes, reopens, excludes
the compressor and survives a fork.

The rotation policy's "room left" for the open file lives here, per real path (all handlers of
the path in this process write the same file): the size at which it is due (``_limit``) and the
instant its period ends (``_period_end``; infinity: no such trigger; ``UNKNOWN``: not worked out
yet). The per-record test of each strategy compares with them; only a record that reaches one
asks the policy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from .._policy.compressor import COMPRESSOR
from .._policy.config import FileConfig
from .._policy.rotation import RotationPolicy
from .._policy.triggers import UNKNOWN
from .logfile import LogFile
from .strategy import PartialWrite, Render, check_names, last_write

__all__ = ["FileStrategy"]


class FileStrategy:
    """Per-process writer state for one real log path that is a regular file."""

    name: ClassVar[str] = ""
    regular: ClassVar[bool] = True
    lazy: ClassVar[bool] = False
    own_file: ClassVar[bool] = False
    target_what: ClassVar[str] = "log file"  # what target() is, in messages

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        self.path = path
        self.options = options
        self.policy = policy
        self.refs = 0
        self.file = LogFile(path, options, own=self.own_file, truncate=options.truncate)
        self._encoding, self._errors = options.encoding, options.errors  # read per record
        self.lock = self._new_lock()
        # Records of the current write_many() batch that reached the file (under the lock).
        self._batch_done = 0
        self._period: float | None = None  # the key of the open file's period (see _policy.timing)
        self._period_end = policy.period_end(None)
        self._limit = policy.limit
        self._rotated = False  # a rotation queued background work: start it after the lock

    def _new_lock(self) -> threading.Lock | threading.RLock:
        return threading.Lock()

    @property
    def watching(self) -> bool:
        return self.file.watching

    @watching.setter
    def watching(self, value: bool) -> None:
        self.file.watching = value

    @property
    def opened(self) -> bool:
        return self.file.fd >= 0

    def target(self) -> str:
        return self.file.target

    # -- writing --------------------------------------------------------------------------------

    def encode(self, msg: str, created: float) -> bytes:
        """Turn one formatted record into the bytes appended to the file (under the lock)."""
        return (msg + "\n").encode(self._encoding, self._errors)

    def write(self, msg: str, created: float) -> None:
        with self.lock:
            self._write_locked(self.encode(msg, created), created)
        if self._rotated:
            self._after_write()

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        # Formatting happens before any lock here; a strategy may format under it (thread).
        msg = render(record)
        if msg is not None:
            self.write(msg, record.created)

    def _write_locked(self, data: bytes, created: float) -> None:
        """Append one encoded record, under the lock."""
        file = self.file
        if file.torn:
            data = b"\n" + data
        try:
            self._append(data, created)
        except OSError:
            if file.torn:
                raise
            # The descriptor may be stale (directory removed and recreated, file system
            # remounted, descriptor closed by a library): reopen once and retry. Nothing of
            # this record reached the file, so the retry cannot duplicate it.
            self._forget()
            self._append(data, created)
        file.torn = False

    def _after_write(self) -> None:
        """After a write that rotated, with the lock released."""
        # The rotation queued background work (compression, unlinks): start the worker now that
        # the lock is released, so no writer waited for a thread to start.
        self._rotated = False
        COMPRESSOR.start()

    def write_many(self, items: Sequence[tuple[str, float]]) -> list[tuple[int, Exception]]:
        """Append ``(msg, created)`` records in order with one lock acquisition and as few
        ``write()`` calls as rotation allows (one, unless the batch crosses the size limit).

        Each record is encoded on its own (the per-process shard frame numbers records); one
        that cannot be encoded (``errors="strict"``) is left out, as a synchronous write loses
        only that record, and returned with its error as ``(index, error)``. Raises
        :class:`PartialWrite` from the cause when an error stops the batch part-way.
        """
        rejected: list[tuple[int, Exception]] = []
        with self.lock:
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
            if datas:
                self._write_all_of(datas, createds, kept, rejected)
        if self._rotated:
            self._after_write()
        return rejected

    def _write_all_of(self, datas: list[bytes], createds: list[float], kept: list[int], rejected: Any) -> None:
        file = self.file
        if file.torn:
            datas[0] = b"\n" + datas[0]
        self._batch_done = 0
        try:
            try:
                self._append_many(datas, createds)
            except OSError:
                if file.torn:
                    raise
                # As in write(): a stale descriptor gets one reopen. Only the records that
                # did not reach the file are retried, so nothing is duplicated.
                self._forget()
                done = self._batch_done
                self._append_many(datas[done:], createds[done:])
        except Exception as exc:
            raise PartialWrite(kept[self._batch_done :], rejected) from exc
        file.torn = False

    def _write_batch(
        self, datas: list[bytes], createds: list[float], size: int, rotate: Callable[[int, int, float, int], int]
    ) -> int:
        """Write ``datas`` (under the strategy's exclusion) and return the file's new size.

        A batch that would cross a trigger is split exactly where a record-by-record writer
        would have rotated, so the files look the same in both modes: rotation is asked per
        record, the write is one per run of records that fit. ``rotate(trigger, n, created,
        size)`` rotates the file of ``size`` bytes before a record of ``n`` bytes and returns
        the size of the file written next.
        """
        i, n = 0, len(datas)
        if not self._may_rotate():
            self.file.write_all(b"".join(datas))
            self._batch_done += n
            return size + sum(len(d) for d in datas)
        while i < n:
            first = len(datas[i])
            trigger = self._due(size, first, createds[i])
            if trigger:
                size = rotate(trigger, first, createds[i], size)
            j, total = i + 1, first
            while j < n and not self._due(size + total, len(datas[j]), createds[j]):
                total += len(datas[j])
                j += 1
            self.file.write_all(datas[i] if j == i + 1 else b"".join(datas[i:j]))
            self._batch_done += j - i
            size += total
            i = j
        return size

    # -- the policy's room left -----------------------------------------------------------------

    def _set_period(self, period: float | None) -> None:
        self._period = period
        self._period_end = self.policy.period_end(period)

    def _period_unknown(self) -> bool:
        """True while the open file's period must still be worked out (time rotation only)."""
        return self._period_end == UNKNOWN

    def _first_period(self, size: int, created: float) -> float | None:
        """The period of the open file, of ``size`` bytes, that this process did not create by
        rotating, at its first record (``created``): the one of its last write (its mtime, as
        the stdlib reads it at start-up), or the one that starts now if it is empty."""
        policy = self.policy
        if policy.time is None:
            return None
        return policy.start_period(os.fstat(self.file.fd).st_mtime if size > 0 else None, created)

    def _may_rotate(self) -> bool:
        """False when no record can make the open file due (no trigger)."""
        return self._limit != math.inf or self._period_end != math.inf

    def _due(self, size: int, nbytes: int, created: float) -> int:
        """Which trigger finds the file of ``size`` bytes due before a record of ``nbytes``
        (0: none)?"""
        return self.policy.due(size, nbytes, created, self._period_end)

    # -- the stdlib's rotation API --------------------------------------------------------------

    def rotation_due(self, nbytes: int, created: float) -> bool:
        with self.lock:
            if self.file.fd < 0:
                self._open_files()
            size = os.fstat(self.file.fd).st_size
            end = self._period_end
            if self._period is None:
                end = self.policy.period_end(self._first_period(size, created))
            return self.policy.would_rotate(size, nbytes, created, end)

    def rotates_at(self, now: float) -> float:
        # Worked out from the file, as its first record would, when no record was written yet.
        with self.lock:
            if self._period is not None:
                return self._period_end
            policy = self.policy
            return policy.period_end(policy.start_period(last_write(self.file.fd, self.target()), now))

    def rotate_now(self, created: float) -> None:
        with self.lock:
            self._rotate_now(created)
        if self._rotated:
            self._after_write()

    def resize(self, max_bytes: int, backup_count: int) -> None:
        # A backup name too long for the new count is a ValueError, and changes nothing.
        policy = self.policy
        config = dataclasses.replace(policy.config, max_bytes=max_bytes, backup_count=backup_count)
        check_names(self.path, self.names(RotationPolicy(config, policy.hooks)))
        with self.lock:
            policy.resize(max_bytes, backup_count)
            self._limit = policy.limit

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        with self.lock:
            if self.file.fd < 0:
                self._open_files()

    def identity(self) -> tuple[int, int]:
        with self.lock:
            return self.file.identity()

    def retire(self) -> None:
        # A thread that fetched this strategy before its last handler let go of it and writes
        # now (close() racing emit()) must not reopen the files: nobody would close them again
        # (and a per-process shard left open keeps its shared lock, so a merge takes it for
        # live). It gets Retired instead.
        with self.lock:  # a write in progress (a rotation, say) finishes first
            self.file.retired = True
        self.close()

    def request_reopen(self) -> None:
        # From a signal handler, maybe inside a write holding the lock: takes no lock. If the
        # path names the same file, the file held open is that file: reopening changes nothing.
        self.file.request_check()

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        target = self._longest_target()
        return [(self.target_what, target)] + self._own_names() + (policy or self.policy).created_names(target)

    def _longest_target(self) -> str:
        """The longest name :meth:`target` can have, in this process or a child."""
        return self.path

    def _own_names(self) -> list[tuple[str, str]]:
        """What and where the files the strategy keeps beside the log are (a lock file)."""
        return []

    # -- what each strategy fills in ------------------------------------------------------------

    def _append(self, data: bytes, created: float) -> None:
        """Append one encoded record under the strategy's exclusion, rotating first if due."""
        raise NotImplementedError

    def _append_many(self, datas: list[bytes], createds: list[float]) -> None:
        """:meth:`_append` for a batch (counting the records written in ``_batch_done``)."""
        raise NotImplementedError

    def _rotate_now(self, created: float) -> None:
        """``doRollover()`` under the strategy's exclusion (the thread lock is held)."""
        raise NotImplementedError

    def _open_files(self) -> None:
        """Open the log (and whatever else the strategy writes) under the thread lock."""
        raise NotImplementedError

    def _forget(self) -> None:
        """After a failed write: make the retry reopen the files."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def reopen(self) -> None:
        raise NotImplementedError

    def after_fork(self) -> None:
        raise NotImplementedError

    def rotation_guard(self) -> AbstractContextManager[Any]:
        """The exclusion under which this log's backups may be renamed or removed (the
        background compressor's final renames)."""
        raise NotImplementedError
