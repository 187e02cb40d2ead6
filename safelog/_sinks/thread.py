"""``thread`` strategy: the threads of one process share one descriptor and one lock.

Only this process writes the file, so the size is counted in memory and rotation needs no
re-check: the thread lock is the whole story.
"""

from __future__ import annotations

import logging
import os
import threading
from time import monotonic
from typing import Callable

from .base import Sink

__all__ = ["ThreadSink"]


class ThreadSink(Sink):
    kind = "thread"

    _size = 0

    def _new_lock(self) -> threading.Lock | threading.RLock:
        # Re-entrant: records are formatted under it (write_record), and a formatter may log to
        # this file itself.
        return threading.RLock()

    def write_record(self, render: Callable[[logging.LogRecord], str | None], record: logging.LogRecord) -> None:
        # Formatted under the lock, as logging.FileHandler does under its own: with formatting
        # before it, two threads convoyed (the second formats while the first writes, then waits
        # for the lock, then for the GIL) and ran at 0.75x FileHandler.
        with self._tlock:
            msg = render(record)
            if msg is None:
                return
            self._write_locked(self.encode(msg, record.created), record.created)
        if self._rotated:
            self._after_write()

    def _open_log(self) -> None:
        super()._open_log()
        self._size = os.lseek(self._fd, 0, os.SEEK_END)
        # A (re)opened file may be another one than before (first open, rotation, logrotate):
        # its period is worked out again from the file on the next record.
        self._set_period(None)

    def _append(self, data: bytes, created: float) -> None:
        if self._fd < 0 or (monotonic() >= self._next_check and self._path_moved()):
            self._open_log()
        size = self._size
        # The policy is asked only when the record reaches the room left (see Sink.__init__).
        if created >= self._period_end or size + len(data) >= self._limit:
            size = self._rotate_if_due(size, len(data), created)
        fd = self._fd
        n = os.write(fd, data)  # _write_all, inline: this is the per-record path
        if n != len(data):
            self._write_rest(fd, data, n)
        self._size = size + len(data)

    def _rotate_if_due(self, size: int, nbytes: int, created: float) -> int:
        """Rotate first if the file of ``size`` bytes is due before a record of ``nbytes``;
        returns the size of the file the record goes to."""
        if self._period_unknown():
            self._set_period(self._first_period(size, created))
        kind = self._due(size, nbytes, created)
        if kind:
            kind, size = self._recheck(size, nbytes, created)
        if kind:
            self._rotate_own(kind, size, created)
            size = self._size  # of the new file
        return size

    def _recheck(self, size: int, nbytes: int, created: float) -> tuple[int, int]:
        """Is the file due, going by its real size? ``_size`` is counted in memory, and someone
        may have truncated the file since (logrotate's ``copytruncate``): read the size once per
        rotation, not per record. Returns the trigger (0: not due) and the size."""
        real = os.lseek(self._fd, 0, os.SEEK_END)
        if real != size:
            size = self._size = real
        return self._due(size, nbytes, created), size

    def _append_many(self, datas: list[bytes], createds: list[float]) -> None:
        if self._fd < 0 or (monotonic() >= self._next_check and self._path_moved()):
            self._open_log()
        if self._period_unknown():
            self._set_period(self._first_period(self._size, createds[0]))

        def rotate(kind: int, nbytes: int, created: float, size: int) -> int:
            kind, size = self._recheck(size, nbytes, created)
            self._size = size
            if kind:
                self._rotate_own(kind, size, created)
            # Keep the in-memory size true even if a later chunk of the batch fails.
            return self._size

        self._size = self._write_batch(datas, createds, self._size, rotate)
