"""``flock`` strategy: many processes append to one file, serialised by a lock file.

Per record, under the lock: one ``lseek`` on the lock file (has anyone rotated?), one ``lseek``
on the log (its size), one ``write``. That is the whole cross-process cost, about 2 µs.

How rotation stays exactly-once: the rotating process re-checks under the exclusive lock that
its descriptor still names the path, renames, then appends one byte to the lock file. The lock
file's size is a rotation counter every writer reads under the lock; when it moved, the writer
reopens the path before writing, so after a rotation nobody appends to the renamed backup.
"""

from __future__ import annotations

import os
from time import monotonic
from typing import TYPE_CHECKING

from ._fsdetect import warn_if_network
from ._lock import LOCK_EX, LOCK_UN, flock
from ._strategy import CHECK_INTERVAL, Sink, close_quietly, open_lockfile

if TYPE_CHECKING:
    from ._rotation import Rollover

__all__ = ["FlockSink", "lock_path_for"]

# Bound once: this is the per-record path, and module attribute lookups are measurable there.
_flock, _LOCK_EX, _LOCK_UN = flock, LOCK_EX, LOCK_UN
_lseek, _SEEK_END, _monotonic = os.lseek, os.SEEK_END, monotonic


def lock_path_for(path: str, lock_dir: str | None) -> str:
    """``app.log`` → ``app.log.lock`` beside it, or in ``lock_dir`` when the log's own directory
    must stay clean (or is not writable for lock files)."""
    if lock_dir is None:
        return path + ".lock"
    flat = path.strip(os.sep).replace(os.sep, "_")
    return os.path.join(lock_dir, flat + ".lock")


def _no_rotation(nbytes: int) -> int:  # pragma: no cover - never called without a policy
    raise AssertionError("rotation without a policy")


class FlockSink(Sink):
    kind = "flock"

    def __init__(self, path: str, options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(path, options)
        self.lock_path = lock_path_for(path, options.lock_dir)
        self._lockfd = -1
        self._lock_ino = -1
        self._gen = -1
        # flock's promise does not hold on NFS/SMB/FUSE: worth one warning per network mount
        # and process. stacklevel 4 points at the code that built the handler.
        warn_if_network(path, "log file", stacklevel=4)
        if options.lock_dir is not None:
            warn_if_network(self.lock_path, "lock file", stacklevel=4)

    def _append(self, data: bytes, rollover: Rollover | None) -> None:
        if self._lockfd < 0:
            self._open_lock()
        lockfd = self._lockfd
        _flock(lockfd, _LOCK_EX)
        try:
            if _monotonic() >= self._next_check:
                self._check_paths()
                lockfd = self._lockfd
            gen = _lseek(lockfd, 0, _SEEK_END)
            if gen != self._gen or self._fd < 0:
                self._open_log()
                self._gen = gen
            if rollover is not None and rollover.due(_lseek(self._fd, 0, _SEEK_END), len(data)):
                self._rotate(rollover, len(data))
            self._write_all(data)
        finally:
            # _check_paths/_rotate may have moved to a new lock file (the old one is already
            # released then): release the one held now.
            _flock(self._lockfd, _LOCK_UN)

    def _append_many(self, datas: list[bytes], rollover: Rollover | None) -> None:
        # The same steps as _append, for a whole batch under one lock acquisition. (_append
        # keeps its own inline copy: it is the per-record path of synchronous handlers.)
        if self._lockfd < 0:
            self._open_lock()
        _flock(self._lockfd, _LOCK_EX)
        try:
            if _monotonic() >= self._next_check:
                self._check_paths()
            gen = _lseek(self._lockfd, 0, _SEEK_END)
            if gen != self._gen or self._fd < 0:
                self._open_log()
                self._gen = gen
            if rollover is None:
                self._write_batch(datas, None, 0, _no_rotation)
                return

            def rotate(nbytes: int) -> int:
                assert rollover is not None
                self._rotate(rollover, nbytes)
                return _lseek(self._fd, 0, _SEEK_END)

            self._write_batch(datas, rollover, _lseek(self._fd, 0, _SEEK_END), rotate)
        finally:
            _flock(self._lockfd, _LOCK_UN)

    def _open_files(self) -> None:
        if self._lockfd < 0:
            self._open_lock()
        self._open_log()

    def _rotate(self, rollover: Rollover, nbytes: int) -> None:
        # Two processes can both see the file over the limit; only the first one through the
        # lock renames. The second arrives here after the counter moved and has reopened, so
        # it sees the new, small file and does not rotate again. What remains to rule out is a
        # lock file replaced while we hold the old one, which would let another process rotate
        # at the same time: verify we hold the lock the path names.
        self._verify_lock()
        gen = os.lseek(self._lockfd, 0, os.SEEK_END)
        if gen != self._gen or self._path_moved():
            self._open_log()
            self._gen = gen
            if not rollover.due(os.lseek(self._fd, 0, os.SEEK_END), nbytes):
                return
        rollover.rollover(self.path)
        os.write(self._lockfd, b"\n")
        self._gen = os.lseek(self._lockfd, 0, os.SEEK_END)
        self._open_log()

    def _open_lock(self) -> None:
        fd = open_lockfile(self.lock_path, self.options.file_mode)
        self._lockfd = fd
        self._lock_ino = os.fstat(fd).st_ino

    def _verify_lock(self) -> None:
        """Make sure the held lock is the one the lock path names; if the lock file was deleted
        or replaced, take the current one (keeping the old one held until the new is ours)."""
        while True:
            try:
                if os.stat(self.lock_path).st_ino == self._lock_ino:
                    return
            except FileNotFoundError:
                pass
            old = self._lockfd
            self._open_lock()
            flock(self._lockfd, LOCK_EX)
            flock(old, LOCK_UN)
            close_quietly(old)
            self._gen = -1

    def _check_paths(self) -> None:
        self._next_check = monotonic() + CHECK_INTERVAL
        self._verify_lock()
        if self._fd >= 0 and self._path_moved():
            self._close_files_log_only()

    def _close_files_log_only(self) -> None:
        close_quietly(self._fd)
        self._fd = -1

    def _close_files(self) -> None:
        super()._close_files()
        close_quietly(self._lockfd)
        self._lockfd = -1
        self._gen = -1
