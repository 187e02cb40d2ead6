"""Make a file appear whole or not at all: write a temp file beside it, fsync, ``os.replace``.

``os.replace`` is an atomic rename only within one file system, which is why the temp file lives
in the target's own directory (a temp file in /tmp would make it a copy plus delete, and a crash
in between leaves half a file). The data is fsynced before the rename and the directory after
it, so after a power loss the name points either at the old content or at the complete new one.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from .fileio import DIRECTORY, create_exclusive
from .paths import resolve_log_path
from .perms import Perms

__all__ = ["atomic_write", "replacing", "create_temp", "fsync_dir"]


@contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    *,
    file_mode: int | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """Write ``path`` atomically: readers see the old content or the new one, never a mix.

    Yields a file object (text for ``mode="w"``, binary for ``"wb"``) on a temp file created in
    the same directory (``O_EXCL|O_NOFOLLOW``, named ``.<name>.<random>.tmp``). When the block
    ends normally the data is flushed and fsynced, the temp file replaces ``path`` with
    ``os.replace`` and the directory is fsynced. If the block raises, the temp file is removed and
    ``path`` keeps its old content. The new file gets the permissions of the file it replaces,
    or ``file_mode`` (default ``0o666`` minus the umask) for a new file. Text is UTF-8 unless
    ``encoding`` says otherwise. When ``path`` is a symbolic link of yours (or root's), the
    file it points to is replaced and the link stays; another user's link in a directory others
    can write is refused (``ValueError``), as a handler refuses it.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"mode must be 'w', 'wt' or 'wb', not {mode!r}")
    binary = "b" in mode
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("encoding, errors and newline apply to text mode only")
    target = resolve_log_path(os.path.abspath(os.fspath(path)), "path")
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    bits = stat.S_IMODE(old.st_mode) if old is not None else file_mode
    owner = None
    if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
        # A file owned by someone else (root rewriting a service's file) keeps its owner
        # where we are allowed to set it.
        owner = (old.st_uid, old.st_gid)
    with replacing(target, bits=bits, owner=owner, fsync=fsync) as raw:
        if binary:
            yield raw
        else:
            f = io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors, newline=newline)
            yield f
            f.flush()
            f.detach()


@contextmanager
def replacing(
    path: str,
    *,
    bits: int | None = None,
    owner: tuple[int, int] | None = None,
    perms: Perms | None = None,
    fsync: bool = True,
) -> Iterator[BinaryIO]:
    """The steps of an atomic replace: a binary file on a new temp file beside ``path``; when the
    block ends normally, flushed, fsynced and renamed over ``path`` (then the directory is
    fsynced); if it raises, the temp file is removed. Whatever had the name (a file, a planted
    symlink) is neither followed nor read: the name is replaced.

    The new file gets ``perms`` (mode and owner), or the permission ``bits`` and, where allowed,
    ``owner``; neither: ``0o666`` minus the umask.
    """
    directory, name = os.path.split(path)
    private = perms is not None or bits is not None
    tmp, fd = create_temp(directory, name, 0o600 if private else 0o666, perms)
    try:
        if bits is not None and perms is None:
            # Set explicitly: the mode given to open() is reduced by the umask.
            if hasattr(os, "fchmod"):
                os.fchmod(fd, bits)
            else:  # pragma: no cover - Windows
                os.chmod(tmp, bits)
        if owner is not None and hasattr(os, "fchown"):
            try:
                os.fchown(fd, *owner)
            except PermissionError:
                pass
        raw = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    try:
        yield raw
        raw.flush()
        if fsync:
            os.fsync(raw.fileno())
        raw.close()
        os.replace(tmp, path)
    except BaseException:
        try:
            raw.close()
        except Exception:
            pass
        _remove(tmp)
        raise
    if fsync:
        fsync_dir(directory)


TMP_SUFFIX = ".tmp"


def temp_name(name: str, tag: str = "", token: str | None = None) -> str:
    """The base name of a temp file for ``name``: ``.<name>.<tag><12 hex>.tmp``."""
    return f".{name}.{tag}{secrets.token_hex(6) if token is None else token}{TMP_SUFFIX}"


def create_temp(
    directory: str, name: str, mode: int, perms: Perms | None = None, tag: str = ""
) -> tuple[str, int]:
    """A new hidden temp file for ``name`` in ``directory``: ``.<name>.<tag><12 hex>.tmp``,
    created exclusively (never through a planted symlink), with ``mode`` (or ``perms``).
    Returns its path and a write descriptor. Every temp file safelog writes is made here."""
    for _ in range(100):
        path = os.path.join(directory, temp_name(name, tag))
        try:
            return path, create_exclusive(path, os.O_WRONLY, mode, perms)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file beside {name} in {directory}")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(directory: str) -> None:
    """Persist the rename itself: it lives in the directory, not in the file."""
    try:
        fd = os.open(directory or ".", DIRECTORY)
    except OSError:  # pragma: no cover - Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
