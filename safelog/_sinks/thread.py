"""``thread`` strategy: the threads of one process share one descriptor and one lock.

Only this process writes the file, so the size is counted in memory and rotation needs no
re-check: the thread lock is the whole story.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from time import monotonic
from typing import Any, ClassVar

from .._policy.config import FileConfig
from .._policy.rotation import RotationPolicy
from .._policy.starts import inherited
from .._policy.triggers import SIZE
from .regular import FileCore
from .strategy import Render

__all__ = ["ThreadStrategy"]


class ThreadStrategy:
    name: ClassVar[str] = "thread"
    regular: ClassVar[bool] = True
    lazy: ClassVar[bool] = False
    own_file: ClassVar[bool] = False

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        self.path = path
        self.options = options
        self.policy = policy
        self.refs = 0
        self.core = core = FileCore(path, options, policy, own=self.own_file)
        self.file = core.file
        self._encoding, self._errors = options.encoding, options.errors  # read per record
        # Re-entrant: records are formatted under it (write_record), and a formatter may log to
        # this file itself.
        self.lock = threading.RLock()
        self._size = 0
        # rotate_on_start: rotate the file at its first opening in this process. Only this
        # process writes it, so no record is kept: the process is a start unless an ancestor
        # named one (see _policy.starts).
        self._start_pending = policy.config.rotate_on_start and not inherited()

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
        core = self.core
        with self.lock:
            core.write_one(self.encode(msg, created), created, self._append, self._forget)
        if core.rotated:
            core.after_write()

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        # Formatted under the lock, as logging.FileHandler does under its own: with formatting
        # before it, two threads convoyed (the second formats while the first writes, then waits
        # for the lock, then for the GIL) and ran at 0.75x FileHandler.
        core = self.core
        with self.lock:
            msg = render(record)
            if msg is None:
                return
            created = record.created
            data = self.encode(msg, created)
            # FileCore.write_one, inline: this is the per-record path (one call less per record).
            file = self.file
            if file.torn:
                data = b"\n" + data
            try:
                self._append(data, created)
            except OSError:
                if file.torn:
                    raise
                self._forget()  # a stale descriptor: reopen once and retry (see write_one)
                self._append(data, created)
            file.torn = False
        if core.rotated:
            core.after_write()

    def write_many(self, items: Sequence[tuple[str, float]]) -> list[tuple[int, Exception]]:
        core = self.core
        with self.lock:
            rejected = core.write_many(items, self.encode, self._append_many, self._forget)
        if core.rotated:
            core.after_write()
        return rejected

    def _open_files(self) -> None:
        self.file.open()
        self._size = os.lseek(self.file.fd, 0, os.SEEK_END)
        # A (re)opened file may be another one than before (first open, rotation, logrotate):
        # its period is worked out again from the file on the next record.
        self.core.set_period(None)
        if self._start_pending:
            self._start_pending = False
            self.rotate_now(time.time())  # an empty file stays (the lock is re-entrant)

    def _append(self, data: bytes, created: float) -> None:
        file, core = self.file, self.core
        if file.fd < 0 or (monotonic() >= file.next_check and file.moved()):
            self._open_files()
        size = self._size
        # The policy is asked only when the record reaches the room left (see regular.py).
        if created >= core.period_end or size + len(data) >= core.limit:
            size = self._rotate_if_due(size, len(data), created)
        fd = file.fd
        n = os.write(fd, data)  # LogFile.write_all, inline: this is the per-record path
        if n != len(data):
            file.write_rest(fd, data, n)
        self._size = size + len(data)

    def _rotate_if_due(self, size: int, nbytes: int, created: float) -> int:
        """Rotate first if the file of ``size`` bytes is due before a record of ``nbytes``;
        returns the size of the file the record goes to."""
        core = self.core
        if core.period_unknown():
            core.set_period(core.first_period(size, created))
        trigger = core.due(size, nbytes, created)
        if trigger:
            trigger, size = self._recheck(size, nbytes, created)
        if trigger:
            self._rotate(trigger, size, created)
            size = self._size  # of the new file
        return size

    def _recheck(self, size: int, nbytes: int, created: float) -> tuple[int, int]:
        """Is the file due, going by its real size? ``_size`` is counted in memory, and someone
        may have truncated the file since (logrotate's ``copytruncate``): read the size once per
        rotation, not per record. Returns the trigger (0: not due) and the size."""
        real = os.lseek(self.file.fd, 0, os.SEEK_END)
        if real != size:
            size = self._size = real
        return self.core.due(size, nbytes, created), size

    def _append_many(self, datas: list[bytes], createds: list[float]) -> None:
        file, core = self.file, self.core
        if file.fd < 0 or (monotonic() >= file.next_check and file.moved()):
            self._open_files()
        if core.period_unknown():
            core.set_period(core.first_period(self._size, createds[0]))

        def rotate(trigger: int, nbytes: int, created: float, size: int) -> int:
            trigger, size = self._recheck(size, nbytes, created)
            self._size = size
            if trigger:
                self._rotate(trigger, size, created)
            # Keep the in-memory size true even if a later chunk of the batch fails.
            return self._size

        self._size = core.write_batch(datas, createds, self._size, rotate, core.due)

    def _rotate(self, trigger: int, size: int, created: float) -> None:
        """Rotate the file this process alone writes, under the thread lock: nobody else can be
        appending, so no re-check is needed."""
        if self.file.moved():
            # The path names another file now, or none (the file or its directory deleted,
            # renamed or replaced since the last check): renaming by path would move whatever
            # is there now. Follow the path instead (the reopen goes through the rules of
            # fileio) and write to what it names.
            self._open_files()
            return
        target = self.file.target
        done = self.policy.rotate(target, trigger, size, self.core.period, created)
        if done is None:
            return  # could not rename: write on to the current file, retry later
        period, _ = done
        self._open_files()
        self.core.after_rotation(target, period, created, self.rotation_guard)

    def _forget(self) -> None:
        self.file.close()

    # -- the stdlib's rotation API --------------------------------------------------------------

    def rotation_due(self, nbytes: int, created: float) -> bool:
        with self.lock:
            return self.core.rotation_due(nbytes, created, self._open_files)

    def rotates_at(self, now: float) -> float:
        with self.lock:
            return self.core.rotates_at(now, self.target())

    def rotate_now(self, created: float) -> None:
        core = self.core
        with self.lock:
            if self.file.fd < 0 or self.file.moved():
                self._open_files()
            size = os.fstat(self.file.fd).st_size
            if size:  # never an empty backup
                if core.period is None:
                    core.set_period(core.first_period(size, created))
                self._rotate(SIZE, size, created)
        if core.rotated:
            core.after_write()

    def resize(self, max_bytes: int, backup_count: int) -> None:
        self.core.check_resize(max_bytes, backup_count, self.names)
        with self.lock:
            self.core.resize(max_bytes, backup_count)

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        with self.lock:
            if self.file.fd < 0:
                self._open_files()

    def identity(self) -> tuple[int, int]:
        with self.lock:
            return self.file.identity()

    def reopen(self) -> None:
        with self.lock:
            if self.file.fd >= 0:
                self._open_files()

    def request_reopen(self) -> None:
        # From a signal handler, maybe inside a write holding the lock: takes no lock. If the
        # path names the same file, the file held open is that file: reopening changes nothing.
        self.file.request_check()

    def close(self) -> None:
        with self.lock:
            self.file.close()

    def retire(self) -> None:
        # A thread that fetched this strategy before its last handler let go of it and writes
        # now (close() racing emit()) must not reopen the files: nobody would close them again
        # (and a per-process shard left open keeps its shared lock, so a merge takes it for
        # live). It gets Retired instead.
        with self.lock:  # a write in progress (a rotation, say) finishes first
            self.file.retired = True
        self.close()

    def rotation_guard(self) -> AbstractContextManager[Any]:
        # One writer per file: the thread lock.
        return self.lock

    def after_fork(self) -> None:
        # A lock held by another parent thread at fork time stays held forever in the child,
        # and the descriptor is shared with the parent: start over with fresh ones.
        self.lock = threading.RLock()
        self.file.after_fork()

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        return self.core.names("log file", self.path, [], policy)
