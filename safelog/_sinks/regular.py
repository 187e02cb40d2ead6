"""What the strategies on a regular file (``thread``, ``per-process``, ``flock``) share: a
:class:`FileCore` each of them holds (``self.core``) and calls, under its own exclusion.

The core holds the log file (the composed :class:`.logfile.LogFile`), the rotation policy and the
bookkeeping around it, and does once what every strategy needs: the one retry after a stale
descriptor, torn-record repair, batches cut where a record-by-record writer would rotate,
the questions the stdlib's rotation API asks, and starting the background work a rotation queued
once the lock is released. How a strategy appends and rotates under its exclusion is the
strategy's own code; where the core needs it (a retry, a batch, a question that must open the
file), the strategy hands in the step as an argument.

The rotation policy's "room left" for the open file lives here, per real path (all handlers of
the path in this process write the same file): the size at which it is due (``limit``) and the
instant its period ends (``period_end``; infinity: no such trigger; ``UNKNOWN``: not worked out
yet). The per-record test of each strategy compares with them; only a record that reaches one
asks the policy.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .._policy.compressor import COMPRESSOR
from .._policy.config import FileConfig
from .._policy.rotation import RotationPolicy
from .._policy.triggers import UNKNOWN
from .logfile import LogFile
from .strategy import PartialWrite, check_names, last_write

__all__ = ["FileCore"]

Append = Callable[[bytes, float], None]
AppendMany = Callable[[list[bytes], list[float]], None]
Rotate = Callable[[int, int, float, int], int]
Due = Callable[[int, int, float], int]
Names = list[tuple[str, str]]


class FileCore:
    """Per-process state for one real log path that is a regular file, shared by every handler of
    it through its strategy; every method runs under the strategy's exclusion unless it takes
    ``lock`` itself."""

    __slots__ = ("path", "options", "policy", "file", "batch_done", "period", "period_end",
                 "limit", "rotated")  # fmt: skip

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy, *, own: bool = False) -> None:
        self.path = path
        self.options = options
        self.policy = policy
        self.file = LogFile(path, options, own=own, truncate=options.truncate)
        # Records of the current write_many() batch that reached the file (under the lock).
        self.batch_done = 0
        self.period: float | None = None  # the key of the open file's period (see _policy.timing)
        self.period_end = policy.period_end(None)
        self.limit = policy.limit
        self.rotated = False  # a rotation queued background work: start it after the lock

    # -- writing --------------------------------------------------------------------------------

    def write_one(self, data: bytes, created: float, append: Append, forget: Callable[[], None]) -> None:
        """Append one encoded record with the strategy's ``append``, under its lock."""
        file = self.file
        if file.torn:
            data = b"\n" + data
        try:
            append(data, created)
        except OSError:
            if file.torn:
                raise
            # The descriptor may be stale (directory removed and recreated, file system
            # remounted, descriptor closed by a library): reopen once and retry. Nothing of
            # this record reached the file, so the retry cannot duplicate it.
            forget()
            append(data, created)
        file.torn = False

    def after_write(self) -> None:
        """After a write that rotated, with the lock released."""
        # The rotation queued background work (compression, unlinks): start the worker now that
        # the lock is released, so no writer waited for a thread to start.
        self.rotated = False
        COMPRESSOR.start()

    def write_many(
        self,
        items: Sequence[tuple[str, float]],
        encode: Callable[[str, float], bytes],
        append_many: AppendMany,
        forget: Callable[[], None],
    ) -> list[tuple[int, Exception]]:
        """``Strategy.write_many`` under the strategy's lock: each record encoded on its own with
        ``encode`` (the per-process shard frame numbers records), one that cannot be encoded
        (``errors="strict"``) left out and returned with its error as ``(index, error)``, as a
        synchronous write loses only that record; the rest appended with ``append_many``.
        Raises :class:`PartialWrite` from the cause when an error stops the batch part-way."""
        rejected: list[tuple[int, Exception]] = []
        datas: list[bytes] = []
        createds: list[float] = []
        kept: list[int] = []
        for i, (msg, created) in enumerate(items):
            try:
                datas.append(encode(msg, created))
            except Exception as exc:  # UnicodeEncodeError, or a shard that cannot be opened
                rejected.append((i, exc))
                continue
            createds.append(created)
            kept.append(i)
        if not datas:
            return rejected
        file = self.file
        if file.torn:
            datas[0] = b"\n" + datas[0]
        self.batch_done = 0
        try:
            try:
                append_many(datas, createds)
            except OSError:
                if file.torn:
                    raise
                # As in write_one(): a stale descriptor gets one reopen. Only the records that
                # did not reach the file are retried, so nothing is duplicated.
                forget()
                done = self.batch_done
                append_many(datas[done:], createds[done:])
        except Exception as exc:
            raise PartialWrite(kept[self.batch_done :], rejected) from exc
        file.torn = False
        return rejected

    def write_batch(
        self, datas: list[bytes], createds: list[float], size: int, rotate: Rotate, due: Due
    ) -> int:
        """Write ``datas`` (under the strategy's exclusion) and return the file's new size.

        A batch that would cross a trigger is split exactly where a record-by-record writer
        would have rotated, so the files look the same in both modes: rotation is asked per
        record (``due``, the strategy's test), the write is one per run of records that fit.
        ``rotate(trigger, n, created, size)`` rotates the file of ``size`` bytes before a record
        of ``n`` bytes and returns the size of the file written next.
        """
        i, n = 0, len(datas)
        if not self.may_rotate():
            self.file.write_all(b"".join(datas))
            self.batch_done += n
            return size + sum(len(d) for d in datas)
        while i < n:
            first = len(datas[i])
            trigger = due(size, first, createds[i])
            if trigger:
                size = rotate(trigger, first, createds[i], size)
            j, total = i + 1, first
            while j < n and not due(size + total, len(datas[j]), createds[j]):
                total += len(datas[j])
                j += 1
            self.file.write_all(datas[i] if j == i + 1 else b"".join(datas[i:j]))
            self.batch_done += j - i
            size += total
            i = j
        return size

    # -- the policy's room left -----------------------------------------------------------------

    def set_period(self, period: float | None) -> None:
        self.period = period
        self.period_end = self.policy.period_end(period)

    def period_unknown(self) -> bool:
        """True while the open file's period must still be worked out (time rotation only)."""
        return self.period_end == UNKNOWN

    def first_period(self, size: int, created: float) -> float | None:
        """The period of the open file, of ``size`` bytes, that this process did not create by
        rotating, at its first record (``created``): the one of its last write (its mtime, as
        the stdlib reads it at start-up), or the one that starts now if it is empty."""
        policy = self.policy
        if policy.time is None:
            return None
        return policy.start_period(os.fstat(self.file.fd).st_mtime if size > 0 else None, created)

    def may_rotate(self) -> bool:
        """False when no record can make the open file due (no trigger)."""
        return self.limit != math.inf or self.period_end != math.inf

    def due(self, size: int, nbytes: int, created: float) -> int:
        """Which trigger finds the file of ``size`` bytes due before a record of ``nbytes``
        (0: none)?"""
        return self.policy.due(size, nbytes, created, self.period_end)

    def after_rotation(
        self, target: str, period: float | None, created: float, guard: Callable[[], AbstractContextManager[Any]]
    ) -> None:
        """After a rotation renamed ``target`` and the strategy opened the new file: its period,
        then the steps after a rotation (retention now, compression queued for after the lock)."""
        self.set_period(period)
        self.policy.after_rotation(target, created, guard)
        self.rotated = True

    # -- the stdlib's rotation API (under the strategy's lock) ----------------------------------

    def rotation_due(self, nbytes: int, created: float, open_files: Callable[[], None]) -> bool:
        if self.file.fd < 0:
            open_files()
        size = os.fstat(self.file.fd).st_size
        end = self.period_end
        if self.period is None:
            end = self.policy.period_end(self.first_period(size, created))
        return self.policy.would_rotate(size, nbytes, created, end)

    def rotates_at(self, now: float, target: str) -> float:
        # Worked out from the file, as its first record would, when no record was written yet.
        if self.period is not None:
            return self.period_end
        policy = self.policy
        return policy.period_end(policy.start_period(last_write(self.file.fd, target), now))

    def check_resize(self, max_bytes: int, backup_count: int, names: Callable[[RotationPolicy], Names]) -> None:
        """ValueError when a backup name would be too long for the new count (nothing changed)."""
        policy = self.policy
        config = dataclasses.replace(policy.config, max_bytes=max_bytes, backup_count=backup_count)
        check_names(self.path, names(RotationPolicy(config, policy.hooks)))

    def resize(self, max_bytes: int, backup_count: int) -> None:
        """The new limits, under the strategy's lock, once :meth:`check_resize` passed."""
        self.policy.resize(max_bytes, backup_count)
        self.limit = self.policy.limit

    def names(self, what: str, longest_target: str, own: Names, policy: RotationPolicy | None) -> Names:
        """``Strategy.names``: the log (or shard) at its longest, the strategy's ``own`` files,
        then the backups of ``policy`` (the path's own when None)."""
        return [(what, longest_target), *own, *(policy or self.policy).created_names(longest_target)]
