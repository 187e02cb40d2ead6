"""Rotation policy, parsed once: when a file is due, and how its backups are named and shifted.

The policy is a value built in the handler's constructor; a strategy asks :meth:`Rollover.due`
per record (a comparison, no parsing, no syscall) and calls :meth:`Rollover.rollover` while it
holds whatever exclusion it needs, so that across all writers it happens exactly once.
"""

from __future__ import annotations

import logging
import os
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._handler import SafeFileHandler

__all__ = ["Rollover"]

# After a failed rotation (log directory not writable, a backup name taken by a directory),
# records go on to the current file and the rotation is retried this often: losing records
# because the file cannot be renamed would be worse than a file over its size limit.
RETRY_INTERVAL = 1.0


class Rollover:
    """Size rotation with the stdlib backup scheme (``app.log.1`` newest … ``.N`` oldest)."""

    __slots__ = ("max_bytes", "backup_count", "_handler", "_retry_at", "_failing")

    def __init__(self, handler: SafeFileHandler, max_bytes: int, backup_count: int) -> None:
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._handler = handler
        self._retry_at = 0.0
        self._failing = False

    def due(self, size: int, nbytes: int) -> bool:
        """True when appending ``nbytes`` to a file of ``size`` bytes would pass the limit.

        An empty file is never due, so a single record larger than the limit is written whole
        instead of producing an endless series of empty files.
        """
        return size > 0 and size + nbytes > self.max_bytes and monotonic() >= self._retry_at

    def rollover(self, path: str) -> None:
        """Shift ``path.1 … path.N-1`` up by one and move ``path`` to ``path.1``.

        The caller holds the exclusion of its strategy; the names go through the handler's
        ``namer`` and the move through its ``rotator``, as in ``logging.handlers``.
        """
        try:
            self._shift(path)
        except OSError:
            self._retry_at = monotonic() + RETRY_INTERVAL
            if not self._failing:
                self._failing = True
                # One report per failure burst, with the traceback of this error; the record
                # that found the file due is still written, to the current file.
                self._handler.handleError(
                    logging.makeLogRecord(
                        {"name": "safelog", "levelno": logging.ERROR, "levelname": "ERROR",
                         "msg": "safelog: cannot rotate %s; writing on to it, retrying every %.0f s",
                         "args": (path, RETRY_INTERVAL)}
                    )
                )
            return
        self._failing = False

    def _shift(self, path: str) -> None:
        h = self._handler
        for i in self._backups(path):
            src = h.rotation_filename(f"{path}.{i}")
            if os.path.exists(src):
                # os.replace overwrites atomically: no moment where the older backup is gone
                # and the newer one not yet in place.
                os.replace(src, h.rotation_filename(f"{path}.{i + 1}"))
        h.rotate(path, h.rotation_filename(f"{path}.1"))

    def _backups(self, path: str) -> list[int]:
        """The numbers ``i`` to shift, highest first. Probing every number up to backup_count
        costs one stat() each, under the lock every writer waits for: with a large count
        ("keep everything") each rotation stalled all writers for seconds. Without a namer
        the existing backups are known from one directory listing."""
        if self._handler.namer is not None or self.backup_count <= 32:
            return list(range(self.backup_count - 1, 0, -1))
        directory, base = os.path.split(path)
        found = []
        for name in os.listdir(directory or "."):
            suffix = name[len(base) + 1 :]
            if name.startswith(base + ".") and suffix.isdigit() and 0 < int(suffix) < self.backup_count:
                found.append(int(suffix))
        return sorted(found, reverse=True)
