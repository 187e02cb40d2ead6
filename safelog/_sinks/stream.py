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

So :class:`StreamStrategy` is a :class:`.strategy.Strategy` and nothing more: it does not rotate
or follow its path (it is not :class:`.strategy.Rotating`).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from .._primitives.fileio import close_quietly, open_stream
from .strategy import PartialWrite, Render, Retired

if TYPE_CHECKING:
    from .._policy.config import FileConfig
    from .._policy.rotation import RotationPolicy

__all__ = ["StreamStrategy", "PIPE_BUF"]

PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)  # POSIX guarantees at least 512


class StreamStrategy:
    """Writes a file that is not a regular file, whatever the strategy (see the module)."""

    name: ClassVar[str] = "stream"
    regular: ClassVar[bool] = False
    lazy: ClassVar[bool] = False
    own_file: ClassVar[bool] = False

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        # /dev/stdout and /dev/stderr kept their configured path (see resolve_log_path):
        # open_stream lets the kernel follow them.
        self.path = path
        self.options = options
        self.policy = policy  # kept for the handler's attributes; never acted on
        self.refs = 0
        self.watching = False  # nothing to watch: the descriptor is never reopened
        self.lock = threading.Lock()
        self._fd = -1
        self._retired = False
        # A write failed part-way: the next record starts on a new line (nothing can be taken
        # back from a stream).
        self._torn = False
        self._written = 0  # records of the current batch that reached the file (under the lock)

    @property
    def opened(self) -> bool:
        return self._fd >= 0

    def target(self) -> str:
        return self.path

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        return []  # nothing is created

    def identity(self) -> tuple[int, int]:
        with self.lock:
            if self._fd < 0:
                return -1, -1
            st = os.fstat(self._fd)
            return st.st_dev, st.st_ino

    def open(self) -> None:
        with self.lock:
            self._open()

    def _open(self) -> None:
        if self._fd < 0:
            if self._retired:
                raise Retired(self.path)
            self._fd = open_stream(self.path)

    def write(self, msg: str, created: float) -> None:
        data = (msg + "\n").encode(self.options.encoding, self.options.errors)
        with self.lock:
            self._write([data])

    def _write(self, datas: list[bytes]) -> None:
        """Write ``datas`` (under the lock), counting in ``_written`` the records that reached
        the file. After an error that wrote nothing, one more try on the same descriptor:
        reopening a FIFO whose reader went away would wait for a new reader, forever."""
        self._written = 0
        if self._torn:
            datas[0] = b"\n" + datas[0]
        try:
            self._write_runs(datas)
        except OSError:
            if self._torn:
                raise
            self._write_runs(datas[self._written :])
        self._torn = False

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        msg = render(record)
        if msg is not None:
            self.write(msg, record.created)

    def write_many(self, items: Sequence[tuple[str, float]]) -> list[tuple[int, Exception]]:
        rejected: list[tuple[int, Exception]] = []
        datas: list[bytes] = []
        kept: list[int] = []
        encoding, errors = self.options.encoding, self.options.errors
        for i, (msg, _) in enumerate(items):
            try:
                datas.append((msg + "\n").encode(encoding, errors))
            except Exception as exc:
                rejected.append((i, exc))
                continue
            kept.append(i)
        if not datas:
            return rejected
        with self.lock:
            try:
                self._write(datas)
            except Exception as exc:
                raise PartialWrite(kept[self._written :], rejected) from exc
        return rejected

    def _write_runs(self, datas: list[bytes]) -> None:
        """Whole records in writes of at most PIPE_BUF bytes: a longer write to a pipe may be
        split, and another process's record land inside one of ours."""
        self._open()
        i, n = 0, len(datas)
        while i < n:
            j, total = i + 1, len(datas[i])
            while j < n and total + len(datas[j]) <= PIPE_BUF:
                total += len(datas[j])
                j += 1
            self._write_all(datas[i] if j == i + 1 else b"".join(datas[i:j]))
            self._written += j - i
            i = j

    def _write_all(self, data: bytes) -> None:
        fd = self._fd
        n = os.write(fd, data)
        try:
            while n < len(data):
                n += os.write(fd, data[n:])
        except OSError:
            self._torn = True
            raise

    def close(self) -> None:
        with self.lock:
            fd, self._fd = self._fd, -1
            close_quietly(fd)

    def retire(self) -> None:
        with self.lock:
            self._retired = True
        self.close()

    def after_fork(self) -> None:
        # The inherited descriptor holds no lock and no state: keep it, as the stdlib does.
        self.lock = threading.Lock()
