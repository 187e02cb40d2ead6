"""Opening files: the ``os.open`` flag sets every module uses, the few ways safelog opens, and
the one rule for every file it creates or opens beside the log.

Every descriptor is ``O_CLOEXEC``: a program the application starts (``subprocess``, ``exec``)
must not inherit log, lock or shard descriptors, or it would hold their locks and keep removed
files alive. ``O_BINARY`` (Windows only) stops the C runtime from translating line ends: safelog
writes bytes. ``O_NOFOLLOW`` is used wherever the path was resolved once, at configuration, or
names a file safelog itself created: a symlink found there later (planted in a shared
directory) is refused, never followed.

The rule (the threat model is in docs/guarantees.md): a file beside the log (the log, its lock
file, a shard, a backup, a journal, a merge output, a temp file) is opened relative to its
directory reached from the root without following a link (:class:`Place`), with
``O_NOFOLLOW``; in a directory other users can write it must belong to a user who may write it
and have one link (:func:`check_file`); a file that carries a lock is created so that no one
else can open it (:meth:`Perms.private`). These checks run when a file is opened, never per
record.
"""

from __future__ import annotations

import errno
import os
import stat

from .paths import exposed, kind_of, trusted_owner
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
    "open_input",
    "check_file",
    "Place",
    "Refused",
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


def create_exclusive(
    path: str, flags: int, mode: int, perms: Perms | None = None, *, place: Place | None = None
) -> int:
    """Create ``path``, failing if anything (a file, a planted symlink) already has the name.

    ``O_EXCL`` with ``O_CREAT`` never follows a symlink at the last component, so in a shared
    directory another user cannot redirect the file safelog is about to write; the directory
    itself is reached through :class:`Place` (no symlink at any component).
    """
    own = place is None
    if place is None:
        place = Place(os.path.dirname(path))
    try:
        return _create_at(place.fd(), path, flags, mode, perms)
    finally:
        if own:
            place.close()


def _create_at(dfd: int | None, path: str, flags: int, mode: int, perms: Perms | None) -> int:
    fd = _at(dfd, path, flags | os.O_CREAT | os.O_EXCL | O_BINARY, mode)
    if perms is not None and perms.active:
        try:
            perms.apply(fd)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_append(
    path: str,
    mode: int,
    *,
    truncate: bool = False,
    perms: Perms | None = None,
    place: Place | None = None,
    own: bool = False,
) -> int:
    """Open the regular file ``path`` for appending, creating it and its directory if needed.

    ``O_APPEND`` makes every ``write()`` land at the current end of file atomically on local
    POSIX file systems, whoever else appends; it is what lets several processes share the file.
    ``O_NOFOLLOW``, and a directory reached without following links (:class:`Place`): the
    handler resolved the path once, at configuration; a symlink found there later (the log or
    its directory deleted and a link planted, in a shared directory) is refused, not followed.
    With ``perms`` the file is created exclusively first, so that only the process that created
    it sets its mode and owner, on the descriptor.

    ``own`` is for a file only safelog creates (a shard, the merged log): :func:`check_file`'s
    full rule. Otherwise (the configured log, which the application may share with others) the
    rule applies in sticky shared directories, as the kernel's ``fs.protected_regular`` does.

    Anything but a regular file is refused (OSError): a FIFO or device found where the handler
    expected a log file (the stream strategy writes those) must not be rotated. It is opened with
    ``O_NONBLOCK`` for that check, so that a FIFO without a reader does not block the open (a
    writer holding the log's lock would block every process).
    """
    flags = APPEND | O_NONBLOCK
    if truncate:
        flags |= os.O_TRUNC
    if perms is not None and perms.active:
        mode = perms.create_mode
    fd = create_or_open(path, flags, mode, perms, place=place, strict=own)
    try:
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


def open_lockfile(path: str, perms: Perms | None = None, *, place: Place | None = None) -> int:
    """Open (creating) a lock file that no other user can open: ``flock`` needs only a read
    descriptor, so anyone who can open a lock file can hold the lock forever.

    Created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode ``0600`` (``0660`` when ``chmod`` gives
    the group write: see :meth:`Perms.private`); opened with ``O_NOFOLLOW``. An existing lock
    file that others could open is narrowed if it is ours, refused otherwise (:func:`check_file`).
    """
    private = (perms or Perms()).private()
    return create_or_open(path, LOCKFILE, private.create_mode, private, place=place, strict=True, private=True)


def create_or_open(
    path: str,
    flags: int,
    mode: int,
    perms: Perms | None,
    *,
    place: Place | None = None,
    strict: bool = True,
    private: bool = False,
) -> int:
    """Create ``path`` exclusively (applying ``perms``) or, if it exists, open it and check it
    (:func:`check_file`; with ``private``, its mode too): only the process that created a file
    sets its mode and owner. Never follows a symlink, at any component; creates the directory
    if it is missing."""
    if place is None:
        place = Place(os.path.dirname(path))
        try:
            return create_or_open(path, flags, mode, perms, place=place, strict=strict, private=private)
        finally:
            place.close()
    create = flags & ~os.O_CREAT & ~os.O_TRUNC
    open_flags = create | (flags & os.O_TRUNC)
    for _ in range(ATTEMPTS):
        # A missing directory (removed, or never made) is created, without following a link
        # at any component.
        dfd = place.fd(create=True)
        try:
            return _create_at(dfd, path, create, mode, perms)
        except FileExistsError:
            pass
        except FileNotFoundError:
            place.close()  # the directory went away since: walk again
            continue
        try:
            fd = _at(dfd, path, open_flags, 0)
        except FileNotFoundError:
            continue  # removed between the two calls (rotation by another process): create it
        try:
            parent = None if dfd is None else os.fstat(dfd)
            check_file(fd, parent, path, strict=strict, private=mode if private else None)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise gave_up(path, "created or opened")


def open_input(path: str, place: Place | None = None) -> tuple[int, os.stat_result]:
    """Open a file safelog reads beside the log (a shard, a backup to compress, a journal)
    under the full rule of :func:`check_file`: never through a link, never another user's
    file, never a FIFO (opened with ``O_NONBLOCK``, so a planted FIFO cannot block the open).
    Returns the descriptor and its ``fstat``."""
    fd, dst = _open_at(path, READ | O_NONBLOCK, 0, place)
    try:
        st = check_file(fd, dst, path, strict=True)
        if O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


# -- the rule for every file beside the log -----------------------------------------------------
#
# Who may have put a file where safelog finds one: you (the effective user), root, the owner of
# the directory (who can replace any file in it anyway) and, in a directory shared with a group
# and not with everyone, that group (its members are the log's co-writers). A directory is
# *exposed* when anyone else may create names in it: it belongs to another user, or its group
# or everyone may write it. In an exposed directory a file safelog opens must belong to one of
# those users and have a single link (a hard link is a file of somewhere else, planted under a
# name safelog uses), or it is refused, never written, read or reported on. Symlinks are never
# followed at any component (O_NOFOLLOW, and the directory walked one component at a time).

_POSIX = hasattr(os, "geteuid")
# O_PATH: walking needs search permission only, as a path lookup does (O_RDONLY would need read
# permission on every directory of the path).
_O_PATH: int = getattr(os, "O_PATH", os.O_RDONLY)
_WALK_DIR = _O_PATH | getattr(os, "O_DIRECTORY", 0) | O_NOFOLLOW | O_CLOEXEC
_WALK = _POSIX and bool(O_NOFOLLOW) and os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd


class Refused(PermissionError):
    """A file or directory beside the log that another user may have put there; not used."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EPERM, f"refused: {why}", path)


def check_file(
    fd: int, dst: os.stat_result | None, path: str, *, strict: bool = True, private: int | None = None
) -> os.stat_result:
    """The rule for a file opened beside the log, applied to its descriptor; its ``fstat``.

    A regular file only. In an exposed directory (with ``strict=False``, only in a sticky one,
    as ``fs.protected_regular`` does: that is for the configured log, which the application may
    share), it must belong to a trusted user and have one link. ``private`` (the mode of a file
    others must not open: a lock file, a shard) narrows a file of ours that gives more than that
    mode allows (created by an older version, or by hand), and refuses anyone else's: another
    user may hold it open already.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        why = f"is {kind_of(st.st_mode)}, not a regular file"
        if not strict:
            why += (
                "; it was not one when the handler was configured, and a handler writes a FIFO or "
                "device only if it finds one then"
            )
        raise OSError(errno.EINVAL, why, path)
    if not _POSIX or dst is None:
        return st
    if exposed(dst) and (strict or dst.st_mode & stat.S_ISVTX):
        if not trusted_owner(st, dst):
            raise Refused(
                path,
                f"it belongs to uid {st.st_uid}, another user who can write its directory; remove it",
            )
        if st.st_nlink != 1:
            raise Refused(
                path,
                f"it has {st.st_nlink} links in a directory other users can write (a hard link "
                f"planted under a name safelog uses could be any file); remove it",
            )
    if private is not None:
        extra = stat.S_IMODE(st.st_mode) & 0o777 & ~private
        if extra:
            if os.geteuid() not in (st.st_uid, 0) or not hasattr(os, "fchmod"):
                raise Refused(
                    path,
                    f"its mode {stat.S_IMODE(st.st_mode):04o} lets other users open it (and hold "
                    f"its lock) and it belongs to uid {st.st_uid}: chmod it to {private:04o}",
                )
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~extra)
    return st


class Place:
    """The directory of a log and of the files safelog keeps beside it, reached from the root one
    component at a time with ``O_NOFOLLOW``: ``O_NOFOLLOW`` on the file protects only the last
    component, and a directory of the path that was deleted (and, in the docs' promise,
    re-created) may have been replaced by another user's symlink meanwhile.

    The first walk remembers every directory it went through. A later one accepts a directory
    that is not the one seen first (deleted and re-created) only if it belongs to you, root, or
    the owner of the one it replaced: records and lock files never go into a directory another
    user made.

    The walked directory's descriptor is kept, and files are opened relative to it, for as long
    as the path still names that directory (two ``stat`` calls per open instead of three calls
    per component). A Place is used by one thread at a time: a strategy's under its lock.
    """

    __slots__ = ("directory", "_seen", "_fd")

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory or ".")
        self._seen: list[tuple[int, int, int]] | None = None
        self._fd = -1

    def open(self, create: bool = False) -> int:
        """A new descriptor of the directory, which the caller closes (``O_PATH`` where there
        is one: only for ``*at`` calls and ``fstat``); missing directories are created with
        ``create``."""
        fd = self.fd(create)
        return os.open(self.directory, DIRECTORY) if fd is None else os.dup(fd)

    def fd(self, create: bool = False) -> int | None:
        """The kept descriptor of the directory (not to be closed by the caller), walked again
        if the path no longer names it; None where directories cannot be walked (Windows),
        after creating them with ``create``."""
        if not _WALK:
            if create:
                os.makedirs(self.directory, exist_ok=True)
            return None
        fd = self._fd
        if fd >= 0:
            try:
                st, held = os.stat(self.directory), os.fstat(fd)
                if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                    return fd
            except OSError:
                pass
            self.close()
        self._fd = self._walk(create)
        return self._fd

    def close(self) -> None:
        """Let go of the kept descriptor (the next open walks again)."""
        # Forgotten before it is closed: a child forked in between must not close the number,
        # which another thread may have been given again (see LogFile.open in _sinks).
        fd, self._fd = self._fd, -1
        close_quietly(fd)

    def _walk(self, create: bool) -> int:
        try:
            return self._walk_from_root(create)
        except PermissionError:
            if _O_PATH != os.O_RDONLY:
                raise
            # No O_PATH (macOS, the BSDs): walking needs read permission on every directory,
            # and a search-only one (0711) stops it. Open the directory by path then: only
            # its last component is protected there.
            return os.open(self.directory, DIRECTORY | O_NOFOLLOW)

    def _walk_from_root(self, create: bool) -> int:
        parts = [p for p in self.directory.split(os.sep) if p]
        fd = os.open(os.sep, _WALK_DIR)
        chain = [_ident(fd)]
        try:
            for i, part in enumerate(parts, 1):
                nxt = self._step(fd, part, create, i)
                os.close(fd)
                fd = nxt
                chain.append(_ident(fd))
                seen = self._seen
                if seen is not None and i < len(seen) and chain[i][:2] != seen[i][:2]:
                    if chain[i][2] not in (os.geteuid(), 0, seen[i][2]):
                        raise Refused(
                            os.sep.join([""] + parts[:i]),
                            f"this directory was replaced by one that belongs to uid {chain[i][2]} "
                            f"(it belonged to uid {seen[i][2]})",
                        )
        except BaseException:
            os.close(fd)
            raise
        if self._seen is None:
            self._seen = chain
        return fd

    def _step(self, parent: int, part: str, create: bool, i: int) -> int:
        for _ in range(ATTEMPTS):
            try:
                return os.open(part, _WALK_DIR, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
            except NotADirectoryError:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
                where = os.sep.join(self.directory.split(os.sep)[: i + 1])
                if stat.S_ISLNK(st.st_mode):
                    raise Refused(
                        where,
                        f"this directory of the path is now a symlink (uid {st.st_uid}); it was "
                        f"resolved when the path was configured, and is not followed now",
                    ) from None
                raise
            try:
                os.mkdir(part, 0o777, dir_fd=parent)
            except FileExistsError:
                pass  # made by another process meanwhile: open it
        raise gave_up(self.directory, "created")


def _ident(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_uid)


def _open_at(path: str, flags: int, mode: int, place: Place | None) -> tuple[int, os.stat_result | None]:
    """``os.open(path)`` with ``O_NOFOLLOW``, relative to its directory reached through
    ``place`` (a new one for ``path``'s directory if None); the descriptor and the directory's
    ``fstat`` (None where directories cannot be walked: Windows)."""
    own = place is None
    if place is None:
        place = Place(os.path.dirname(path))
    try:
        dfd = place.fd()
        fd = _at(dfd, path, flags, mode)
        return fd, None if dfd is None else os.fstat(dfd)
    finally:
        if own:
            place.close()


def _at(dfd: int | None, path: str, flags: int, mode: int) -> int:
    """``os.open`` of ``path``'s last component with ``O_NOFOLLOW``, relative to ``dfd`` (by
    path where there is none)."""
    flags |= O_NOFOLLOW | O_CLOEXEC
    if dfd is None:
        return os.open(path, flags, mode)
    name = os.path.basename(path)
    try:
        return os.open(name, flags, mode, dir_fd=dfd)
    except OSError as exc:
        # O_NOFOLLOW on a symlink fails with ELOOP (EMLINK on some BSDs): say what it is.
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise Refused(path, f"it is a symlink (uid {st.st_uid}); safelog never follows one here") from None
        raise


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
