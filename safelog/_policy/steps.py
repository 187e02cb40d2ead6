"""What happens to a log's backups after each rotation: small steps, run in order by the policy.

Every step gets the same :class:`Listing` of the backups (made once, under the rotating writer's
exclusion, so two processes never delete concurrently) and decides from it; its ``select``
is a pure function of the listing, and ``run`` carries it out through :mod:`.backups`.

A new step (retention by total size, say) is a class here with ``run`` and a line in
:func:`.rotation.RotationPolicy._compile`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._primitives.perms import Perms
from .backups import BackupFiles
from .compress import DEL_SUFFIX, EXTENSIONS, Codec
from .naming import Backups, Key, leftover

__all__ = ["Listing", "Step", "KeepCount", "KeepAge", "Leftovers", "Compress"]


@dataclass
class Listing:
    """One rotation's view of a log's backups, shared by the steps that follow it."""

    path: str
    now: float
    backups: Backups
    tmps: list[str]
    guard: Callable[[], AbstractContextManager[Any]]  # the log's exclusion (compression's renames)
    locate: Callable[[str, tuple[int, int]], str | None]  # a backup's name now, by its inode
    busy: set[int] = field(default_factory=set)  # inodes a live process is compressing


class Step(Protocol):
    def run(self, listing: Listing, files: BackupFiles) -> None:
        """Act on ``listing`` (removed backups leave it). OSError: a backup could not be
        removed; the steps after it wait for the next rotation."""


def _remove(listing: Listing, files: BackupFiles, keys: set[Key]) -> None:
    for k in sorted(keys):
        for f in listing.backups.pop(k):
            files.trash(f)


class KeepCount:
    """Dated backups beyond the newest ``count`` are removed (numbered ones never exceed it:
    shifting drops the oldest)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def select(self, backups: Backups) -> set[Key]:
        return set(sorted(backups)[: -self.count])

    def run(self, listing: Listing, files: BackupFiles) -> None:
        _remove(listing, files, self.select(listing.backups))


class KeepAge:
    """Backups last written more than ``max_age`` seconds ago are removed (``retention``)."""

    __slots__ = ("max_age",)

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age

    def select(self, newest: dict[Key, float], now: float) -> set[Key]:
        """The keys whose newest file (``newest``: key -> mtime) is older than the limit."""
        limit = now - self.max_age
        return {k for k, mtime in newest.items() if mtime < limit}

    def run(self, listing: Listing, files: BackupFiles) -> None:
        newest = {}
        for k, names in listing.backups.items():
            try:
                newest[k] = files.newest_mtime(names)
            except OSError:
                pass
        _remove(listing, files, self.select(newest, listing.now))


class Leftovers:
    """Hidden files a dead process left: backups it was removing are removed now; compression
    temp files it was writing are removed (a live writer's are noted, so their backups are not
    compressed twice)."""

    def run(self, listing: Listing, files: BackupFiles) -> None:
        for t in listing.tmps:
            if t.endswith(DEL_SUFFIX):
                files.discard(t)
            elif files.temp_is_live(t):
                found = leftover(os.path.basename(t))
                if found is not None and found.inode is not None:
                    listing.busy.add(found.inode)


class Compress:
    """The uncompressed backups are queued for compression, in the background (with ``delay``,
    all but the newest: logrotate's ``delaycompress``)."""

    __slots__ = ("codec", "delay", "perms")

    def __init__(self, codec: Codec, delay: bool, perms: Perms | None) -> None:
        self.codec = codec
        self.delay = delay
        self.perms = perms

    def select(self, backups: Backups) -> list[str]:
        """The files to compress, before the check that nobody compresses them already."""
        keys = list(backups)
        if self.delay and keys:
            # The backup this rotation made stays plain until the next one: a shipper that
            # follows the renamed file by its inode has a whole rotation to read it to the end.
            keys.remove(max(keys))
        return [f for k in keys for f in backups[k] if not f.endswith(EXTENSIONS)]

    def run(self, listing: Listing, files: BackupFiles) -> None:
        for f in self.select(listing.backups):
            # The new backup, or one a dead process left uncompressed. One that a live
            # process (maybe another one) is compressing right now is left to it.
            ino = files.inode(f)
            if ino is None or ino in listing.busy:
                continue
            files.compress(f, self.codec, listing.locate, listing.guard, self.perms)
