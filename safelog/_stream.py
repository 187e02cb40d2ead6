"""The ``stream`` a :class:`SafeFileHandler` hands out: a file object on the log that keeps the
strategy's rules (code written for ``logging.FileHandler`` reads and assigns ``stream``)."""

from __future__ import annotations

import os
from typing import Any, Protocol

from ._policy.config import Config
from ._primitives.fileio import open_append, open_stream
from ._sinks.strategy import Strategy

__all__ = ["StreamView"]


class _Writes(Protocol):
    """What a stream view asks of its handler (a protocol, not an import of it)."""

    config: Config

    @property
    def baseFilename(self) -> str: ...

    def _write_text(self, text: str) -> None: ...

    def _live_strategy(self) -> Strategy: ...


class StreamView:
    """:attr:`.SafeFileHandler.stream`: a file object on the log that keeps the strategy's rules.

    Creating one does no I/O (tools probe ``handler.stream``). ``write()`` goes through the
    handler's strategy, one record per call (a lone line break is the end of the previous
    record, so ``write(msg); write(terminator)`` writes one record). ``fileno()`` is a
    descriptor of its own, opened on first use with ``O_APPEND`` on the file this process
    writes (its shard, for ``per-process``, where raw writes are not framed: merge reports
    them as damaged lines), reopened when that file was rotated away.
    """

    mode = "a"

    def __init__(self, handler: _Writes) -> None:
        self._handler = handler
        self._fd = -1
        self._ino = -1
        self.closed = False

    @property
    def name(self) -> str:
        return self._handler.baseFilename

    @property
    def encoding(self) -> str:
        return self._handler.config.file.encoding

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if text != "\n":
            self._handler._write_text(text[:-1] if text.endswith("\n") else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._fd < 0 or self.moved():
            self._close_fd()
            strategy = self._handler._live_strategy()
            path = strategy.target()
            if strategy.regular:
                # A shard carries a lock: created (if it must be) as the strategy creates it.
                perms = self._handler.config.file.perms
                perms = perms.private() if strategy.own_file else perms
                self._fd = open_append(
                    path, perms.create_mode, perms=perms if perms.active else None, own=strategy.own_file
                )
            else:
                self._fd = open_stream(path)
            self._ino = os.fstat(self._fd).st_ino
        return self._fd

    def moved(self) -> bool:
        """True when the file the descriptor appends to is no longer at its path (rotated)."""
        if self._fd < 0:
            return False
        try:
            return os.stat(self._handler._live_strategy().target()).st_ino != self._ino
        except OSError:
            return True

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __bool__(self) -> bool:
        # Falsy on purpose: code that closes and reopens every FileHandler whose stream is set,
        # from a signal handler (gunicorn's USR1: ``if handler.stream: handler.close(); ...``),
        # would close safelog's from inside a write it interrupted, which holds the strategy's
        # lock: a deadlock. safelog follows a renamed log itself (path check, reopen_signal).
        return False

    def __repr__(self) -> str:
        return f"<safelog stream {self.name!r}>"
