"""The inter-process lock primitive: ``fcntl.flock`` on POSIX, portalocker elsewhere.

``fcntl.flock`` is called directly because it is the hot path: a lock+unlock pair costs about
1.2 µs, against about 12 µs through ``portalocker.lock/unlock``. portalocker is imported only where
``fcntl`` does not exist (Windows).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["flock", "LOCK_EX", "LOCK_SH", "LOCK_UN", "LOCK_NB", "try_lock"]

flock: Callable[[int, int], None]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    import msvcrt

    import portalocker

    LOCK_EX, LOCK_SH, LOCK_UN, LOCK_NB = 2, 1, 8, 4

    class _FdFile:
        """The minimal file-like object portalocker needs around a raw descriptor."""

        def __init__(self, fd: int) -> None:
            self._fd = fd

        def fileno(self) -> int:
            return self._fd

    def flock(fd: int, op: int) -> None:
        f = _FdFile(fd)
        if op & LOCK_UN:
            portalocker.unlock(f)
            return
        flags = portalocker.LockFlags.EXCLUSIVE if op & LOCK_EX else portalocker.LockFlags.SHARED
        if op & LOCK_NB:
            flags |= portalocker.LockFlags.NON_BLOCKING
        try:
            portalocker.lock(f, flags)
        except portalocker.exceptions.LockException as exc:
            raise BlockingIOError(str(exc)) from exc

    del msvcrt
else:
    flock = fcntl.flock
    LOCK_EX, LOCK_SH, LOCK_UN, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_SH, fcntl.LOCK_UN, fcntl.LOCK_NB


def try_lock(fd: int, op: int) -> bool:
    """Take ``op`` (LOCK_EX or LOCK_SH) without waiting; False when another holder has it."""
    try:
        flock(fd, op | LOCK_NB)
    except BlockingIOError:
        return False
    return True
