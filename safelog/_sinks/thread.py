"""``thread`` strategy: the threads of one process share one descriptor and one lock.

Only this process writes the file, so the size is counted in memory and rotation needs no
re-check: the thread lock is the whole story.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import AbstractContextManager
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._policy.starts import inherited
from .._policy.triggers import SIZE
from .regular import FileStrategy
from .strategy import Render

if TYPE_CHECKING:
    from .._policy.config import FileConfig
    from .._policy.rotation import RotationPolicy

__all__ = ["ThreadStrategy"]


class ThreadStrategy(FileStrategy):
    name = "thread"

    _size = 0
    # rotate_on_start: rotate the file at its first opening in this process. Only this process
    # writes it, so no record is kept: the process is a start unless an ancestor named one.
    _start_pending = False

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        super().__init__(path, options, policy)
        self._start_pending = policy.config.rotate_on_start and not inherited()

    def _new_lock(self) -> threading.Lock | threading.RLock:
        # Re-entrant: records are formatted under it (write_record), and a formatter may log to
        # this file itself.
        return threading.RLock()

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        # Formatted under the lock, as logging.FileHandler does under its own: with formatting
        # before it, two threads convoyed (the second formats while the first writes, then waits
        # for the lock, then for the GIL) and ran at 0.75x FileHandler.
        with self.lock:
            msg = render(record)
            if msg is None:
                return
            self._write_locked(self.encode(msg, record.created), record.created)
        if self._rotated:
            self._after_write()

    def _open_files(self) -> None:
        self.file.open()
        self._size = os.lseek(self.file.fd, 0, os.SEEK_END)
        # A (re)opened file may be another one than before (first open, rotation, logrotate):
        # its period is worked out again from the file on the next record.
        self._set_period(None)
        if self._start_pending:
            self._start_pending = False
            self._rotate_now(time.time())  # an empty file stays

    def _append(self, data: bytes, created: float) -> None:
        file = self.file
        if file.fd < 0 or (monotonic() >= file.next_check and file.moved()):
            self._open_files()
        size = self._size
        # The policy is asked only when the record reaches the room left (see regular.py).
        if created >= self._period_end or size + len(data) >= self._limit:
            size = self._rotate_if_due(size, len(data), created)
        fd = file.fd
        n = os.write(fd, data)  # LogFile.write_all, inline: this is the per-record path
        if n != len(data):
            file.write_rest(fd, data, n)
        self._size = size + len(data)

    def _rotate_if_due(self, size: int, nbytes: int, created: float) -> int:
        """Rotate first if the file of ``size`` bytes is due before a record of ``nbytes``;
        returns the size of the file the record goes to."""
        if self._period_unknown():
            self._set_period(self._first_period(size, created))
        trigger = self._due(size, nbytes, created)
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
        return self._due(size, nbytes, created), size

    def _append_many(self, datas: list[bytes], createds: list[float]) -> None:
        file = self.file
        if file.fd < 0 or (monotonic() >= file.next_check and file.moved()):
            self._open_files()
        if self._period_unknown():
            self._set_period(self._first_period(self._size, createds[0]))

        def rotate(trigger: int, nbytes: int, created: float, size: int) -> int:
            trigger, size = self._recheck(size, nbytes, created)
            self._size = size
            if trigger:
                self._rotate(trigger, size, created)
            # Keep the in-memory size true even if a later chunk of the batch fails.
            return self._size

        self._size = self._write_batch(datas, createds, self._size, rotate)

    def _rotate_now(self, created: float) -> None:
        if self.file.fd < 0 or self.file.moved():
            self._open_files()
        size = os.fstat(self.file.fd).st_size
        if size == 0:
            return  # never an empty backup
        if self._period is None:
            self._set_period(self._first_period(size, created))
        self._rotate(SIZE, size, created)

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
        done = self.policy.rotate(target, trigger, size, self._period, created)
        if done is None:
            return  # could not rename: write on to the current file, retry later
        period, _ = done
        self._open_files()
        self._set_period(period)
        self.policy.after_rotation(target, created, self.rotation_guard)
        self._rotated = True

    def _forget(self) -> None:
        self.file.close()

    def reopen(self) -> None:
        with self.lock:
            if self.file.fd >= 0:
                self._open_files()

    def close(self) -> None:
        with self.lock:
            self.file.close()

    def rotation_guard(self) -> AbstractContextManager[Any]:
        # One writer per file: the thread lock.
        return self.lock

    def after_fork(self) -> None:
        # A lock held by another parent thread at fork time stays held forever in the child,
        # and the descriptor is shared with the parent: start over with fresh ones.
        self.lock = self._new_lock()
        self.file.after_fork()
