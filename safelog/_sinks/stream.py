"""Files that are not regular files: ``/dev/stdout``, ``/dev/null``, a terminal, a FIFO (and a
file reachable only through ``/dev/stdout``: one redirected to and since deleted).

The stdlib writes these like any file and never rotates them (bpo-45401). So does safelog, with
every strategy, because what each strategy adds assumes a regular file:

* rotation renames the path, compression and retention remove files beside it: on a device that
  would replace ``/dev/null`` with a regular file (as root). None of it happens here; rotation
  options are accepted, as by the stdlib, and have no effect;
* ``flock`` keeps a lock file beside the log and ``per-process`` a shard per process: neither can
  be created in ``/dev``, and neither is needed: a pipe keeps every ``write()`` of up to
  ``PIPE_BUF`` bytes (4096 on Linux) whole, whoever else writes it. So every strategy writes the
  file directly, one ``write()`` per record, like ``thread``; records are plain lines (no shard
  framing) and a batch of the non-blocking mode is cut into writes of at most ``PIPE_BUF``;
* a pipe has no size and cannot seek, and its reader sees end of file when the last writer
  closes it: the descriptor is never sought, truncated, or closed and reopened to follow the
  path (a FIFO opened again waits for a reader). A failed write (the reader went away:
  ``EPIPE``) is reported like any other and the descriptor kept, as the stdlib keeps its stream;
  a forked child keeps the inherited descriptor too.
"""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING, ClassVar

from .._primitives.fileio import open_stream
from .base import Sink, SinkRetired

if TYPE_CHECKING:
    from .._policy.config import FileOptions
    from .._policy.rotation import Rollover

__all__ = ["StreamSink", "PIPE_BUF"]

PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)  # POSIX guarantees at least 512


class StreamSink(Sink):
    """Writes a file that is not a regular file, whatever the strategy (see the module)."""

    kind = "stream"
    regular: ClassVar[bool] = False

    def __init__(self, path: str, options: FileOptions) -> None:
        # /dev/stdout and /dev/stderr kept their configured path (see resolve_log_path):
        # open_stream lets the kernel follow them.
        super().__init__(path, options)

    def _open_log(self) -> None:
        if self._retired:
            raise SinkRetired(self.path)
        self._fd = open_stream(self.path)

    def check_names(self, rollover: Rollover | None) -> None:
        pass  # nothing is created

    def rotation_due(self, rollover: Rollover, nbytes: int, created: float) -> bool:
        return False  # never rotated

    def reopen(self) -> None:
        pass  # a FIFO opened again waits for a reader; a device is the same device

    def request_reopen(self) -> None:
        pass

    def rotate_now(self, rollover: Rollover, created: float) -> None:
        pass  # doRollover() on a FIFO or device: nothing to move, as the stdlib's isfile check

    def _append(self, data: bytes, created: float, rollover: Rollover | None) -> None:
        if self._fd < 0:
            self._open_log()
        self._write_all(data)

    def _append_many(self, datas: list[bytes], createds: list[float], rollover: Rollover | None) -> None:
        if self._fd < 0:
            self._open_log()
        # Whole records in writes of at most PIPE_BUF bytes: a longer write to a pipe may be
        # split, and another process's record land inside one of ours.
        i, n = 0, len(datas)
        while i < n:
            j, total = i + 1, len(datas[i])
            while j < n and total + len(datas[j]) <= PIPE_BUF:
                total += len(datas[j])
                j += 1
            self._write_all(datas[i] if j == i + 1 else b"".join(datas[i:j]))
            self._batch_done += j - i
            i = j

    def _untear(self, fd: int, written: int) -> None:
        # Nothing can be taken back from a stream: the next record starts on a new line.
        self._torn = True

    def _forget_files(self) -> None:
        # The retry after a failed write uses the same descriptor: reopening a FIFO whose
        # reader went away would wait for a new reader, forever.
        pass

    def _after_fork(self) -> None:
        # The inherited descriptor holds no lock and no state: keep it, as the stdlib does.
        self._tlock = self._new_lock()
