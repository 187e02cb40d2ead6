"""Opening files: the ``os.open`` flag sets every module uses, and the few ways safelog opens.

Every descriptor is ``O_CLOEXEC``: a program the application starts (``subprocess``, ``exec``)
must not inherit log, lock or shard descriptors, or it would hold their locks and keep removed
files alive. ``O_BINARY`` (Windows only) stops the C runtime from translating line ends: safelog
writes bytes. ``O_NOFOLLOW`` is used wherever the path was resolved once, at configuration, or
names a file safelog itself created: a symlink found there later (planted in a shared
directory) is refused, never followed.
"""

from __future__ import annotations

import errno
import os
import stat

from .paths import kind_of
from .perms import Perms

__all__ = [
    "O_NOFOLLOW",
    "O_CLOEXEC",
    "O_BINARY",
    "O_NONBLOCK",
    "READ",
    "READ_NOFOLLOW",
    "APPEND",
    "OUTPUT",
    "OUTPUT_REPAIR",
    "LOCKFILE",
    "LOCKFILE_REOPEN",
    "STREAM",
    "open_stream",
    "DIRECTORY",
    "create_exclusive",
    "create_or_open",
    "open_append",
    "open_lockfile",
    "close_quietly",
    "ATTEMPTS",
    "gave_up",
]

# Every loop that retries because another process changed a file under it (a rotation removed
# the name between two calls, a lock file was replaced, a merge removed a shard) gives up after
# this many rounds. Each round needs someone else to act, so a real race ends in one or two; a
# name that can never be created (inside /proc, a directory that vanishes every time) fails
# instead of spinning forever.
ATTEMPTS = 50

O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)

# Reading a shard, a backup, a side file.
READ = os.O_RDONLY | O_CLOEXEC | O_BINARY
# Reading a file safelog created itself (a backup to compress, a temp file to check).
READ_NOFOLLOW = READ | O_NOFOLLOW
# A log file, a shard, the merged log: ``O_APPEND`` makes every ``write()`` land at the current
# end of file atomically on local POSIX file systems, whoever else appends.
APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_BINARY
# The merged log, appended in place. With O_NONBLOCK a FIFO planted at the name fails the open
# at once (ENXIO) instead of waiting for a reader; merge refuses anything but a regular file.
# The second set truncates it back after an interrupted merge (never creates it).
OUTPUT = APPEND | O_NONBLOCK
OUTPUT_REPAIR = os.O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_BINARY | O_NONBLOCK
# A lock file: read-write (``flock`` needs no more, the rotation counter is appended to it).
LOCKFILE = os.O_RDWR | os.O_APPEND | os.O_CREAT | O_CLOEXEC | O_BINARY
# A directory, to fsync a rename in it.
DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | O_CLOEXEC
# A FIFO, device or terminal written as the stdlib writes it: never created.
STREAM = os.O_WRONLY | os.O_APPEND | O_CLOEXEC | O_BINARY
# Another descriptor of a lock file that exists (never creates one).
LOCKFILE_REOPEN = os.O_RDWR | O_CLOEXEC | O_NOFOLLOW


def create_exclusive(path: str, flags: int, mode: int, perms: Perms | None = None) -> int:
    """Create ``path``, failing if anything (a file, a planted symlink) already has the name.

    ``O_EXCL`` with ``O_CREAT`` never follows a symlink at the last component, so in a shared
    directory another user cannot redirect the file safelog is about to write.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY, mode)
    if perms is not None and perms.active:
        try:
            perms.apply(fd)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_append(path: str, mode: int, *, truncate: bool = False, perms: Perms | None = None) -> int:
    """Open the regular file ``path`` for appending, creating it and its directory if needed.

    ``O_APPEND`` makes every ``write()`` land at the current end of file atomically on local
    POSIX file systems, whoever else appends; it is what lets several processes share the file.
    ``O_NOFOLLOW``: the handler resolved the path once, at configuration; a symlink found there
    later (the log deleted and a link planted, in a shared directory) is refused, not followed.
    With ``perms`` the file is created exclusively first, so that only the process that created
    it sets its mode and owner, on the descriptor.

    Anything but a regular file is refused (OSError): a FIFO or device found where the handler
    expected a log file (the stream sink writes those) must not be rotated. It is opened with
    ``O_NONBLOCK`` for that check, so that a FIFO without a reader does not block the open (a
    writer holding the log's lock would block every process).
    """
    flags = APPEND | O_NONBLOCK
    if truncate:
        flags |= os.O_TRUNC
    if perms is not None and perms.active:
        fd = create_or_open(path, flags, perms.create_mode, perms)
    else:
        try:
            fd = os.open(path, flags, mode)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, flags, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EINVAL,
                f"is {kind_of(st.st_mode)}, not a regular file; it was not one when the handler "
                f"was configured, and a handler writes a FIFO or device only if it finds one then",
                path,
            )
        if O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_stream(path: str) -> int:
    """Open a file that is not a regular file for writing. ``/dev/stdout`` and ``/dev/stderr``
    are links into ``/proc/self/fd`` that name no path when they lead to a pipe or a socket, so
    a link is followed (only the kernel can); any other path was resolved once, at
    configuration, and is opened with ``O_NOFOLLOW``. Never created: if it is gone there is
    nothing to recreate."""
    return os.open(path, STREAM | (0 if os.path.islink(path) else O_NOFOLLOW))


def open_lockfile(path: str, mode: int, perms: Perms | None = None) -> int:
    """Open (creating) a lock file without following a symlink planted in its place.

    Created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and opened with ``O_NOFOLLOW``: in a shared
    directory nobody can make safelog create or lock a file of their choosing.
    """
    if perms is not None and perms.active:
        mode = perms.create_mode
    return create_or_open(path, LOCKFILE, mode, perms)


def create_or_open(path: str, flags: int, mode: int, perms: Perms | None) -> int:
    """Create ``path`` exclusively (applying ``perms``) or, if it exists, open it: only the
    process that created a file sets its mode and owner. Never follows a symlink."""
    open_flags = (flags & ~os.O_CREAT & ~os.O_TRUNC) | O_NOFOLLOW
    for _ in range(ATTEMPTS):
        try:
            return create_exclusive(path, flags & ~os.O_CREAT & ~os.O_TRUNC, mode, perms)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            continue
        try:
            return os.open(path, open_flags | (flags & os.O_TRUNC))
        except FileNotFoundError:
            continue  # removed between the two calls (rotation by another process): create it
    raise gave_up(path, "created or opened")


def gave_up(path: str, what: str) -> OSError:
    """The error of a retry loop that ran out of :data:`ATTEMPTS`."""
    return FileNotFoundError(
        errno.ENOENT, f"could not be {what}: removed or replaced {ATTEMPTS} times in a row", path
    )


def close_quietly(fd: int) -> None:
    """Close ``fd`` if it is one (>= 0), ignoring errors: for cleanup paths."""
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
