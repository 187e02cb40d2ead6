"""The file side of rotation: listing a log's backups, renaming, probing and removing them, and
handing them to the background worker. Every decision about which file to touch is made
elsewhere (:mod:`.naming`, :mod:`.steps`, :mod:`.rotation`), from what this module reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from .._primitives.fileio import open_input, open_lockfile
from .._primitives.lock import LOCK_EX, flock, hold, release, try_lock
from .._primitives.perms import Perms
from .compress import Codec
from .compressor import COMPRESSOR
from .naming import FORMS, Backups, Key, leftover, recognise

__all__ = ["BackupFiles", "FILES"]


class BackupFiles:
    """What rotation does to files, in one place (a test may hand a policy another)."""

    def listing(self, path: str, directory: str, key_of: Callable[[str], Key | None]) -> tuple[Backups, list[str]]:
        """The backups of the log ``path`` in ``directory`` (recognised by ``key_of``), and the
        hidden files rotation left beside them (compression temp files, backups being removed).
        Nothing else in the directory can match."""
        backups: Backups = {}
        tmps = []
        for entry in os.listdir(directory):
            full = os.path.join(directory, entry)
            if entry.startswith("."):
                # Leftovers of a process that died half-way: a compression temp file, or a
                # backup renamed away to be unlinked (see Compressor.trash).
                found = leftover(entry)
                if found and recognise(key_of, os.path.join(directory, found.name)) is not None:
                    tmps.append(full)
                continue
            key = recognise(key_of, full)
            if key is not None:
                backups.setdefault(key, []).append(full)
        return backups, tmps

    def exists(self, name: str) -> bool:
        """Whether ``name`` or a compressed form of it names anything (a link included)."""
        return any(os.path.lexists(name + ext) for ext in FORMS)

    def replace(self, source: str, dest: str) -> None:
        # os.replace overwrites atomically: no moment where the older backup is gone and the
        # newer one not yet in place.
        os.replace(source, dest)

    def trash(self, name: str) -> None:
        COMPRESSOR.trash(name)

    def discard(self, name: str) -> None:
        COMPRESSOR.discard(name)

    def newest_mtime(self, files: list[str]) -> float:
        """When the newest of ``files`` was last written (OSError if one cannot be read)."""
        return max(os.stat(f).st_mtime for f in files)

    def size(self, name: str) -> int | None:
        """The size of ``name`` (None when it is gone: compressed or removed meanwhile)."""
        try:
            return os.stat(name).st_size
        except OSError:
            return None

    def inode(self, name: str) -> int | None:
        try:
            return os.stat(name).st_ino
        except OSError:
            return None

    def identity(self, name: str) -> tuple[int, int] | None:
        try:
            st = os.stat(name)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def temp_is_live(self, name: str) -> bool:
        """True when a live process is writing this compression temp file (it holds its lock);
        otherwise its writer died: remove it."""
        try:
            # A temp name another user filled is not ours: neither live nor removed.
            fd, _ = open_input(name)
        except OSError:
            return False
        try:
            if not try_lock(fd, LOCK_EX):
                return True
            os.unlink(name)
        except OSError:
            pass
        finally:
            os.close(fd)
        return False

    @contextmanager
    def exclusive(self, lock_path: str, perms: Perms | None) -> Iterator[None]:
        """Hold the lock file ``lock_path`` exclusively (created private, as every lock file)."""
        # Registered with hold(): a child forked while this thread holds it must not keep it.
        fd = hold(open_lockfile(lock_path, perms))
        try:
            flock(fd, LOCK_EX)
            yield
        finally:
            release(fd)

    def compress(
        self,
        name: str,
        codec: Codec,
        locate: Callable[[str, tuple[int, int]], str | None],
        guard: Callable[[], AbstractContextManager[Any]],
        perms: Perms | None,
    ) -> None:
        """Queue ``name`` for compression in the background (see :mod:`.compressor`)."""
        COMPRESSOR.submit(name, codec, locate, guard, perms)


# The one every policy uses unless given another.
FILES = BackupFiles()
