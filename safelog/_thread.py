"""``thread`` strategy: the threads of one process share one descriptor and one lock.

Only this process writes the file, so the size is counted in memory and rotation needs no
re-check: the thread lock is the whole story.
"""

from __future__ import annotations

import os
from time import monotonic
from typing import TYPE_CHECKING

from ._strategy import Sink

if TYPE_CHECKING:
    from ._rotation import Rollover

__all__ = ["ThreadSink"]


class ThreadSink(Sink):
    kind = "thread"

    _size = 0

    def _open_log(self) -> None:
        super()._open_log()
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _append(self, data: bytes, rollover: Rollover | None) -> None:
        if self._fd < 0 or (monotonic() >= self._next_check and self._path_moved()):
            self._open_log()
        if rollover is not None and rollover.due(self._size, len(data)):
            rollover.rollover(self._target())
            self._open_log()
        self._write_all(data)
        self._size += len(data)

    def _append_many(self, datas: list[bytes], rollover: Rollover | None) -> None:
        if self._fd < 0 or (monotonic() >= self._next_check and self._path_moved()):
            self._open_log()

        def rotate(nbytes: int) -> int:
            assert rollover is not None
            rollover.rollover(self._target())
            self._open_log()
            # Keep the in-memory size true even if a later chunk of the batch fails.
            return self._size

        self._size = self._write_batch(datas, rollover, self._size, rotate)
