"""The stdlib's rotation API on safelog's handler, as ``logging.handlers.BaseRotatingHandler``
has it: ``namer``/``rotator`` and the methods that call them, ``shouldRollover()``,
``doRollover()``, and ``maxBytes``/``backupCount`` live (assigned, they apply from the next
record). The rotation itself is the path's compiled :class:`RotationPolicy`, run by the strategy.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import time
from collections.abc import Callable

from ._closed import ClosedStrategy, later
from ._policy.config import Config, check_size_rotates
from ._policy.options import check_int, parse_size
from ._policy.rotation import RotationPolicy
from ._primitives.reentry import get_ident as _get_ident
from ._primitives.reentry import inside as _inside
from ._primitives.reentry import section
from ._sinks.strategy import Strategy, rotates

__all__ = ["StdlibRotation"]


class StdlibRotation:
    """Mixed into the handler, before ``logging.FileHandler``."""

    # The BaseRotatingHandler hooks. Class attributes, so that a subclass may define them as
    # methods; the namer=/rotator= options set them on the instance.
    namer: Callable[[str], str] | None = None
    rotator: Callable[[str, str], None] | None = None
    config: Config
    _rotation: RotationPolicy  # the path's policy, shared by every handler of it
    _strategy: Strategy | ClosedStrategy
    _render: Callable[[logging.LogRecord], str | None]

    def _live_strategy(self) -> Strategy:
        raise NotImplementedError

    def _hook(self, attr: str, method: str) -> object:
        """What names (``namer``) or moves (``rotator``) this handler's backups now: a subclass's
        own ``rotation_filename``/``rotate``, else the hook set on the instance or the class."""
        cls = type(self)
        override = getattr(cls, method)
        if override is not getattr(StdlibRotation, method):
            return override
        return self.__dict__.get(attr, getattr(cls, attr, None))

    # -- the size limits, live as in the stdlib (its emit() reads them) -------------------------

    @property
    def maxBytes(self) -> int:
        """The size limit in bytes (0: none). Assigned after construction, it applies from the
        next record (``"10 MB"`` is accepted too), as ``RotatingFileHandler.maxBytes`` does; to
        every handler of the file, which share one rotation."""
        return self._rotation.config.max_bytes

    @maxBytes.setter
    def maxBytes(self, value: int) -> None:
        self._resize(parse_size("maxBytes", value), self.backupCount)

    @property
    def backupCount(self) -> int:
        """How many backups are kept. Assigned after construction, it applies from the next
        rotation, as ``RotatingFileHandler.backupCount`` does (0 with only a size limit:
        nothing is rotated); to every handler of the file, which share one rotation."""
        return self._rotation.config.backup_count

    @backupCount.setter
    def backupCount(self, value: int) -> None:
        self._resize(self.maxBytes, check_int("backupCount", value))

    def _resize(self, max_bytes: int, backup_count: int) -> None:
        stdlib_rotating = isinstance(self, logging.handlers.RotatingFileHandler)
        rotation = self._rotation.config
        check_size_rotates(max_bytes, backup_count, rotation.timing, stdlib_rotating, f"maxBytes={max_bytes!r}")
        strategy = self._strategy
        if isinstance(strategy, ClosedStrategy) or not rotates(strategy):
            self._rotation.resize(max_bytes, backup_count)
        else:
            strategy.resize(max_bytes, backup_count)  # a backup name too long: ValueError, now
        # What a reopen after close() compiles its policy from.
        self.config = dataclasses.replace(self.config, rotation=self._rotation.config)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` would make the file rotate now, as the stdlib answers it: by time,
        or by size (formatted, it would bring a non-empty file to ``maxBytes`` or past it, even
        with ``backupCount=0``, which then rotates nothing). The strategy decides again, under
        its lock, when it writes: this is a question, not a reservation."""
        if not self._rotation.configured or _get_ident() in _inside:
            # From inside safelog (a signal handler, a finalizer): the answer needs the lock
            # this thread may hold; its records are written after, and rotate then if due.
            return False
        msg = self._render(record)
        if msg is None:
            return False
        nbytes = len((msg + "\n").encode(self.config.file.encoding, self.config.file.errors))
        with section():
            strategy = self._live_strategy()
            return rotates(strategy) and strategy.rotation_due(nbytes, record.created)

    def doRollover(self) -> None:
        """Rotate now, as ``BaseRotatingHandler.doRollover``, under the strategy's lock.

        An empty file is not rotated (no empty backups): so when every process of a server
        calls ``doRollover()`` at start-up, the first rotates and the others find the new,
        empty file and leave it, and no record is lost or rotated twice. A handler without a
        rotation policy (``backupCount=0`` and no ``when``) rotates nothing, as in the stdlib,
        which then only reopens the file."""
        if self._rotation.renames and not later(self.doRollover):
            with section():
                strategy = self._live_strategy()
                if rotates(strategy):  # a FIFO or device: nothing to move, as the stdlib's isfile check
                    strategy.rotate_now(time.time())

    def _subclass_rotation(self, record: logging.LogRecord) -> bool:
        """A subclass's own shouldRollover()/doRollover(), called as ``BaseRotatingHandler.emit``
        calls them, before emit() marks the thread: they are the record's own work (each marks
        itself while it holds the strategy's lock). False when one raised (reported)."""
        try:
            if self.shouldRollover(record):
                self.doRollover()
        except Exception:
            self.handleError(record)  # type: ignore[attr-defined]  # logging.Handler's
            return False
        return True

    def rotation_filename(self, default_name: str) -> str:
        return default_name if not callable(self.namer) else self.namer(default_name)

    def rotate(self, source: str, dest: str) -> None:
        if not callable(self.rotator):
            if os.path.exists(source):
                os.replace(source, dest)
        else:
            self.rotator(source, dest)
