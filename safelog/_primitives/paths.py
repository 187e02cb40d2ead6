"""Resolve a configured log path once, without following symlinks an attacker may plant.

A handler (and a merge) resolves its path once, at configuration, so that every handler on the
same file shares one strategy object and later opens use ``O_NOFOLLOW``. Resolving with
``os.path.realpath`` and then opening the result would defeat the kernel's
``fs.protected_symlinks``: ``readlink`` is not restricted, so a symlink planted in ``/tmp`` by
another user would be followed to, say, ``/etc/passwd``. The rule here is stricter than the
kernel's, which protects sticky world-writable directories only: a symlink is followed only if
it belongs to this process's user or root, or lies in a directory that no one else can write
(:func:`exposed`). In a directory owned by another user (root merging a service's log in the
service's directory) that user's link is refused: it could point anywhere.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "resolve_log_path",
    "unwritable_dir",
    "unwritable",
    "special_kind",
    "kind_of",
    "name_too_long",
    "exposed",
    "trusted_owner",
]

_MAX_LINKS = 40  # as the kernel's ELOOP limit


def resolve_log_path(path: str, what: str = "filename") -> str:
    """The real path of ``path``; ``ValueError`` (naming ``what``) for another user's symlink in
    a directory others can write.

    ``/dev/stdout`` on a pipe or a socket stays ``/dev/stdout``: it links to ``/proc/self/fd/1``,
    which reads as ``pipe:[1234]``, a name no path has (or ``/x/out.log (deleted)``), and only
    the kernel can follow it.
    """
    if os.name != "posix":
        return os.path.realpath(path)
    path = os.path.abspath(path)
    real = _resolve(path, _MAX_LINKS, what)
    if not os.path.lexists(real) and os.path.exists(path):
        return path
    return real


def special_kind(path: str) -> str | None:
    """What ``path`` names if it exists and is neither a regular file nor a directory ("a FIFO",
    "a character device" ...), following symlinks; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return kind_of(mode)


def kind_of(mode: int) -> str:
    """The file type of ``st_mode``, for messages."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def _resolve(path: str, budget: int, what: str) -> str:
    cur = os.sep
    parts = [p for p in path.split(os.sep) if p]
    for i, part in enumerate(parts):
        if part == "..":
            cur = os.path.dirname(cur)
            continue
        if part == ".":
            continue
        nxt = os.path.join(cur, part)
        try:
            st = os.lstat(nxt)
        except OSError:
            # Not there (yet): the rest is created by us, as regular files and directories.
            return os.path.normpath(os.path.join(cur, *parts[i:]))
        if stat.S_ISLNK(st.st_mode):
            if budget <= 0:
                raise ValueError(f"{what}={path!r}: too many levels of symbolic links")
            _check_link(nxt, st, cur, what)
            target = os.path.join(cur, os.readlink(nxt))
            nxt = _resolve(target, budget - 1, what)
        cur = nxt
    return cur


def _check_link(link: str, st: os.stat_result, parent: str, what: str) -> None:
    if not _POSIX or st.st_uid in (os.geteuid(), 0):
        return
    pst = os.stat(parent)
    if not exposed(pst):
        return  # only this user and root can write the directory: no one else made the link
    raise ValueError(
        f"{what}: refusing to follow symlink {link!r}: it belongs to another user (uid "
        f"{st.st_uid}) who can write the directory {parent!r}, so it could point at any file; "
        f"give the real path, or use a log directory that only the application can write"
    )


_POSIX = hasattr(os, "geteuid")


def exposed(dst: os.stat_result) -> bool:
    """True when a user other than this process's user and root may create or replace names in
    the directory ``dst``: it belongs to another user, or its group or everyone may write it."""
    return dst.st_uid not in (os.geteuid(), 0) or bool(dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def trusted_owner(st: os.stat_result, dst: os.stat_result) -> bool:
    """Whether the owner of the file ``st`` is one of the users who may put files in its
    directory ``dst``: this process's user, root, the directory's owner (who can replace any
    file in it anyway) or, in a directory shared with its group and not with everyone, that
    group (the log's co-writers: a file of the group, ``st_gid``)."""
    if st.st_uid in (os.geteuid(), 0, dst.st_uid):
        return True
    shared_with_group = dst.st_mode & stat.S_IWGRP and not dst.st_mode & stat.S_IWOTH
    return bool(shared_with_group) and st.st_gid == dst.st_gid


def unwritable_dir(path: str) -> str | None:
    """Why files cannot be created beside ``path`` (``None`` when they can). The directory is
    created on first write if missing, so its nearest existing ancestor is what must be
    writable."""
    d = os.path.dirname(path)
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        if os.path.exists(d):
            return f"{d!r} is not a directory"
        d = os.path.dirname(d)
    if not os.access(d, os.W_OK | os.X_OK):
        return f"directory {d!r} is not writable"
    return None


def unwritable(path: str) -> str | None:
    """Why ``path`` cannot be opened for appending, created if missing (``None`` when it can,
    as far as permissions tell): asked before a handler creates anything, so that a
    configuration that fails leaves no file behind, and after a failed open, to name the
    directory or file at fault rather than whichever file the strategy opened first."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return unwritable_dir(path)
    except OSError:
        return None  # the open says why
    if stat.S_ISDIR(st.st_mode):
        return None
    if not os.access(path, os.W_OK):
        return f"file {path!r} is not writable"
    return None


def name_too_long(path: str) -> str | None:
    """Why the last component of ``path`` can never be created: longer than the name limit
    (``NAME_MAX``, in bytes) of the file system it would be created on. None when it fits."""
    directory, name = os.path.split(path)
    size = len(os.fsencode(name))
    limit = _name_max(directory)
    if size <= limit:
        return None
    return (
        f"the name {name!r} is {size} bytes, over the {limit}-byte name limit of the file "
        f"system of {directory!r}"
    )


def _name_max(directory: str) -> int:
    d = directory or "."
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)  # created on first write: the file system is its ancestor's
    try:
        limit = os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or not known
        return 255
    return limit if limit > 0 else 1 << 30  # -1: no limit
