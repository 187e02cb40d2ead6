"""What happens to a log's backups after each rotation: small steps, run in order by the policy.

Every step gets the same :class:`Listing` of the backups (made once, under the rotating writer's
exclusion, so two processes never delete concurrently) and decides from it; its ``select``
is a pure function of the listing, and ``run`` carries it out through :mod:`.backups`.

A new step is a class here with ``run`` and a line in :func:`.rotation.RotationPolicy._compile`.
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

__all__ = ["Listing", "Step", "KeepCount", "KeepAge", "KeepTotal", "Leftovers", "Compress", "Series"]

# One live file and its backups: the log (or a shard of it) and what its rotations made.
Series = tuple[str, Backups]


def _no_others() -> list[Series]:
    return []


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
    # The log's other live files and their backups, listed on demand: per-process, the other
    # processes' shards (the log on disk is every shard); none for one shared file.
    others: Callable[[], list[Series]] = _no_others


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


class KeepTotal:
    """The oldest backups are removed until the log and its backups, as they are on disk
    (compressed or not; a compression in flight counted by its source, its temp file not at
    all), fit in ``limit`` bytes (``max_total_bytes``). Live files are counted, never removed;
    across shards, the backup last written longest ago goes first, each shard's in its order."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def select(self, live: int, series: list[list[tuple[float, Key, int]]]) -> list[tuple[int, Key]]:
        """Which backups go: ``live`` is the size of the live files, ``series`` each live file's
        backups as ``(mtime, key, size)``, oldest first. Returns ``(series index, key)``."""
        total = live + sum(size for one in series for _, _, size in one)
        heads = [0] * len(series)
        doomed = []
        while total > self.limit:
            # The oldest of the series' oldest backups (one series: simply its oldest).
            candidates = [(one[heads[i]][0], i) for i, one in enumerate(series) if heads[i] < len(one)]
            if not candidates:
                break  # the live files alone are over the limit: nothing of ours is left to remove
            _, i = min(candidates)
            _, key, size = series[i][heads[i]]
            heads[i] += 1
            doomed.append((i, key))
            total -= size
        return doomed

    def run(self, listing: Listing, files: BackupFiles) -> None:
        everything: list[Series] = [(listing.path, listing.backups), *listing.others()]
        live = 0
        series = []
        for path, backups in everything:
            live += files.size(path) or 0
            one = []
            for k in sorted(backups):
                try:
                    mtime = files.newest_mtime(backups[k]) if len(everything) > 1 else 0.0
                except OSError:
                    mtime = 0.0  # gone meanwhile (compressed, or removed): its size is 0 now
                one.append((mtime, k, sum(files.size(f) or 0 for f in backups[k])))
            series.append(one)
        doomed = self.select(live, series)
        _remove(listing, files, {k for i, k in doomed if i == 0})
        for i, k in doomed:
            if i:
                for f in everything[i][1][k]:
                    files.trash(f)


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
