"""What a strategy is: the way one real path is written by one process, shared by every handler
of that path in it.

``logging.Handler.handle()`` holds a lock per *handler*; two handlers on the same path would not
exclude each other, so the exclusion lives in the strategy object, one per real path per process
(:mod:`.registry` keeps them). The handler and the non-blocking writer see it through the narrow
:class:`Strategy` protocol; a strategy on a regular file is also :class:`Rotating`.

A new strategy (a socket to a local collector, say) is one module implementing the protocol
(on a regular file, holding a :class:`.regular.FileCore` for what every such strategy does), its
class in :data:`.registry.STRATEGIES` and its name in ``STRATEGY_NAMES``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeGuard

from .._primitives.paths import name_too_long

if TYPE_CHECKING:
    from .._policy.config import FileConfig
    from .._policy.rotation import RotationPolicy

__all__ = ["Strategy", "Rotating", "rotates", "PartialWrite", "Retired", "last_write", "check_names"]

Render = Callable[[logging.LogRecord], "str | None"]


class Strategy(Protocol):
    """One real path, written by this process: what the handlers and the writer thread ask."""

    name: ClassVar[str]  # "thread", "flock", "per-process"; "stream" for a FIFO or device
    regular: ClassVar[bool]  # a regular file: rotated and reopened (see Rotating)
    lazy: ClassVar[bool]  # opened by its first write, in the process that writes (shards)
    own_file: ClassVar[bool]  # the file is one only safelog creates (a shard)
    path: str  # the real path
    policy: RotationPolicy  # the path's rotation (compiled once; a stream never rotates)
    refs: int  # the handlers using it (the registry counts)
    watching: bool  # check the path before every record (a WatchedFileHandler is on it)

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None: ...

    def write(self, msg: str, created: float) -> None:
        """Append one formatted record (rotating first when it is due)."""

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        """Format ``record`` with ``render`` (None: it reported a record it cannot format) and
        append it; where the formatting happens (before or under the lock) is the strategy's."""

    def write_many(self, items: Sequence[tuple[str, float]]) -> list[tuple[int, Exception]]:
        """Append ``(msg, created)`` records in order with one lock; return the ones that
        could not be encoded, as ``(index, error)``; :class:`PartialWrite` if one failed half-way."""

    @property
    def opened(self) -> bool:
        """Whether this process has the file open now."""

    def open(self) -> None:
        """Open now (a handler without ``delay``), so that a bad path fails at configuration."""

    def close(self) -> None:
        """Close the files (the next record reopens them)."""

    def retire(self) -> None:
        """Close for good: a write that still arrives raises :class:`Retired`."""

    def after_fork(self) -> None:
        """In a forked child: new locks, and no descriptor shared with the parent's writer."""

    def target(self) -> str:
        """The file this process appends to (its shard, for ``per-process``)."""

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the file open now, ``(-1, -1)`` when none is."""

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        """What and where the files it would create are, at their longest (the log or shard,
        a lock file, the backups of ``policy``, its own if None): for the name-length check."""


class Rotating(Strategy, Protocol):
    """A strategy on a regular file: it rotates by its policy and follows a moved path."""

    def rotate_now(self, created: float) -> None:
        """``doRollover()``: rotate unless the file is empty."""

    def rotation_due(self, nbytes: int, created: float) -> bool:
        """``shouldRollover()``: would a record of ``nbytes`` at ``created`` rotate the file?"""

    def rotates_at(self, now: float) -> float:
        """``rolloverAt``: when the open file's period ends (infinity: never by time)."""

    def resize(self, max_bytes: int, backup_count: int) -> None:
        """``maxBytes``/``backupCount`` assigned: the policy's new limits, from the next record."""

    def reopen(self) -> None:
        """Close the log and open the file at its path now (after an external rotation)."""

    def request_reopen(self) -> None:
        """:meth:`reopen` from a signal handler: no lock; the next record of each thread
        reopens first if the path names another file."""


def rotates(strategy: Strategy) -> TypeGuard[Rotating]:
    """True for a strategy on a regular file (every one but the stream of a FIFO or device)."""
    return strategy.regular


class Retired(Exception):
    """The strategy was closed for good (its last handler closed it) while a record was on its
    way to it: the record belongs to the handler's current strategy (see ``retire``)."""


class PartialWrite(Exception):
    """``write_many`` stopped early: the records at ``lost`` (indexes into the batch) did not
    reach the file, the others did; ``rejected`` as returned by ``write_many``. The underlying
    error is chained as ``__cause__``."""

    def __init__(self, lost: list[int], rejected: list[tuple[int, Exception]]) -> None:
        super().__init__(f"{len(lost)} record(s) of the batch were not written")
        self.lost = lost
        self.rejected = rejected


def last_write(fd: int, path: str) -> float | None:
    """When the log was last written (from ``fd`` if open, else ``path``); None when it has no
    records or does not exist. Nothing is opened: asking must not create the log."""
    try:
        st = os.fstat(fd) if fd >= 0 else os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime if st.st_size else None


def check_names(path: str, names: list[tuple[str, str]]) -> None:
    """ValueError when one of the files a strategy would create (``names``, see
    :meth:`Strategy.names`) has a name over the limit of its file system: found when the
    handler is built, instead of by every record."""
    for what, name in names:
        problem = name_too_long(name)
        if problem is not None:
            raise ValueError(
                f"filename={path!r}: {what} {name!r} cannot be created: {problem}; use a shorter filename"
            )
