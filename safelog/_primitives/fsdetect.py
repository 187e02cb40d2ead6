"""Detect logs on network file systems, where the ``flock`` strategy's guarantees do not hold.

``O_APPEND`` is atomic only on a local file system: an NFS client computes the end of file
itself, so two hosts appending to one file overwrite each other's records, and ``flock`` over
NFS/SMB is emulated (or ignored) depending on server and mount options. ``os.statvfs`` does not
say which file system a path is on; the mount table does: the mount point that is the longest
prefix of the (resolved) directory is the one the file lives on.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "NetworkFileSystemWarning",
    "parse_mounts",
    "mount_type",
    "fs_type",
    "mount",
    "is_network",
    "network_fs",
    "warn_if_network",
]

# Types whose writers on different hosts (or in different kernels) do not share one lock table
# or one end of file: flock and O_APPEND cannot be trusted across them, and a lock that is free
# here may be held on another client. This one table serves the flock warning and merge (which
# treats another host's unlocked shard there as live until it has been quiet). A type matches on
# its part before the first dot, so "fuse" covers every FUSE type.
_NETWORK = frozenset(
    {
        # NFS: the client computes the end of file itself (appends from two hosts overwrite each
        # other); flock is emulated with byte-range locks, or stays local (nolock, local_lock).
        "nfs", "nfs4",
        # SMB/CIFS: flock becomes a byte-range lock on the server, or a local one (nobrl).
        "cifs", "smb3", "smbfs",
        # NetWare, AFS, Coda: client caching; other clients see writes late or at close.
        "ncpfs", "afs", "coda",
        # Cluster file systems: whether locks are cluster-wide depends on mount options and
        # configuration (Lustre flock/localflock, BeeGFS global file locks, GPFS, Ceph, Gluster).
        "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
        # Shared with a hypervisor host or guest: the other side is another kernel.
        "9p", "virtiofs",
        # FUSE (fuse.sshfs, fuse.s3fs, fuse.gcsfuse, fuse.glusterfs, fuse.cephfs, ntfs-3g on
        # fuseblk ...): the daemon implements locking itself, or silently fakes it.
        "fuse", "fuseblk",
    }
)  # fmt: skip


class NetworkFileSystemWarning(UserWarning):
    """The log (or its lock file) is on a network file system; see the message."""


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as \040-style octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """``(mount point, fs type)`` pairs, in mount order, from ``/proc/self/mountinfo`` text
    (``... mountpoint opts [optional...] - fstype source superopts``) or ``/proc/mounts`` text
    (``source mountpoint fstype opts 0 0``). Lines that fit neither are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " in line and len(fields) >= 7:
            try:
                sep = fields.index("-", 6)
            except ValueError:
                continue
            if sep + 1 < len(fields):
                mounts.append((_unescape(fields[4]), fields[sep + 1]))
        elif len(fields) >= 3:
            mounts.append((_unescape(fields[1]), fields[2]))
    return mounts


def _read_mounts() -> str:
    for name in ("/proc/self/mountinfo", "/proc/mounts"):
        try:
            with open(name, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError:
            continue
    return ""


def _existing_dir(path: str) -> str:
    """The resolved directory of ``path``, or its nearest existing ancestor (a log directory
    is created on first write, and it will be created on the file system of that ancestor)."""
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)
    return os.path.realpath(d)


def _mount_of(directory: str, mounts: str) -> tuple[str, str]:
    best, best_kind = "", ""
    for point, kind in parse_mounts(mounts):
        prefix = point.rstrip("/") + "/"
        # ">=": a later mount on the same point hides the earlier one.
        if (directory == point or (directory + "/").startswith(prefix)) and len(point) >= len(best):
            best, best_kind = point, kind
    return best, best_kind


def mount_type(directory: str, mounts: str) -> str:
    """The type of the mount that holds the resolved absolute ``directory``, per the mount
    table text ``mounts`` (see :func:`parse_mounts`); ``""`` when none matches."""
    return _mount_of(directory, mounts)[1]


def fs_type(path: str, mounts: str | None = None) -> str:
    """The type of the file system that holds (or will hold) the file ``path``."""
    return mount_type(_existing_dir(path), _read_mounts() if mounts is None else mounts)


def mount(path: str, mounts: str | None = None) -> tuple[str, str]:
    """``(mount point, fs type)`` of the file system that holds (or will hold) ``path``."""
    return _mount_of(_existing_dir(path), _read_mounts() if mounts is None else mounts)


def is_network(kind: str) -> bool:
    """Whether the file system type ``kind`` is one of the network types (see _NETWORK)."""
    return kind.split(".", 1)[0] in _NETWORK


def network_fs(path: str, mounts: str | None = None) -> str | None:
    """The network file system type holding ``path`` (``"nfs4"``, ``"fuse.sshfs"`` …), or None."""
    kind = fs_type(path, mounts)
    return kind if kind.split(".", 1)[0] in _NETWORK else None


_warned: set[str] = set()


def warn_if_network(path: str, what: str) -> None:
    """Warn once per network mount and process when ``path`` is on a network file system; the
    warning points at the first caller outside safelog (the code that built the handler)."""
    point, kind = _mount_of(_existing_dir(path), _read_mounts())
    if kind.split(".", 1)[0] not in _NETWORK or point in _warned:
        return
    _warned.add(point)
    warnings.warn(
        f"safelog: {what} {path!r} is on a network file system ({kind}). The 'flock' strategy "
        f"relies on flock() and O_APPEND, which are not reliable there: writers on different "
        f"hosts can lose or interleave records. Use strategy='per-process' (one file per "
        f"process, merged later), or keep the log on a local disk.",
        NetworkFileSystemWarning,
        stacklevel=_outside_package(),
    )


def _outside_package() -> int:
    """The ``stacklevel`` of the innermost frame of the caller that is not safelog's own code."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
