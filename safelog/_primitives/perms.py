"""File permissions of everything safelog creates: log files, lock files, compressed backups.

``chmod`` gives exact permission bits, applied with ``fchmod`` on the descriptor right after
creating the file (so the umask cannot narrow them, and there is no path to swap in between);
``owner`` (``"user"``, ``"user:group"`` or ``":group"``) does the same with ``fchown``. Without
them files are created with mode 0o666 filtered by the umask, like ``logging.FileHandler``.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["Perms", "parse_chmod", "parse_owner"]


class Perms:
    """Permission bits and ownership for newly created files (``None``/``-1``: leave as created)."""

    __slots__ = ("chmod", "uid", "gid")

    def __init__(self, chmod: int | None = None, uid: int = -1, gid: int = -1) -> None:
        self.chmod = chmod
        self.uid = uid
        self.gid = gid

    @property
    def active(self) -> bool:
        return self.chmod is not None or self.uid != -1 or self.gid != -1

    @property
    def create_mode(self) -> int:
        """The mode passed to ``open()``: already the final bits where the umask allows them."""
        return 0o666 if self.chmod is None else self.chmod

    def private(self) -> Perms:
        """The permissions of a file other users must not open (a lock file, a shard, a merge
        journal): ``flock`` needs only a read descriptor, so whoever can open such a file can
        hold its lock. The owner's bits; the group's too when ``chmod`` gives the group write
        (the group is then trusted as the log's co-writers); never anyone else's. ``owner``
        applies as configured."""
        group = self.chmod is not None and self.chmod & 0o020
        return Perms(0o660 if group else 0o600, self.uid, self.gid)

    def apply(self, fd: int) -> None:
        """Give a file this process has just created its configured mode and owner."""
        if self.chmod is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, self.chmod)
        if (self.uid != -1 or self.gid != -1) and hasattr(os, "fchown"):
            os.fchown(fd, self.uid, self.gid)


def _plausible(mode: int) -> bool:
    """Bits someone would choose for a file: each of owner, group and others has none, r, rw,
    rx or rwx (never write or execute without read), and none has a bit the one before lacks."""
    owner, group, other = mode >> 6 & 7, mode >> 3 & 7, mode & 7
    sensible = all(c in (0, 4, 5, 6, 7) for c in (owner, group, other))
    return sensible and group & ~owner == 0 and other & ~group == 0


def parse_chmod(value: Any) -> int | None:
    """``chmod``: permission bits as an int (``0o640``) or an octal string (``"0640"``, ``"0o640"``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"chmod must be permission bits such as 0o640 or '0640', not {value!r}")
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:0o)?([0-7]{1,4})\s*", value)
        if m is None:
            raise ValueError(f"Cannot parse chmod from {value!r}: expected octal bits such as '0640'")
        value = int(m.group(1), 8)
    elif not isinstance(value, int):
        raise TypeError(f"chmod must be permission bits such as 0o640 or '0640', not {value!r}")
    elif value > 0o777 or (re.fullmatch(r"[0-7]{3}", str(value)) and not _plausible(value)):
        # JSON has no octal numbers and YAML 1.2 reads 640 as decimal: "chmod": 640 is the int
        # 640, mode 0o1200. The set-id and sticky bits mean nothing on a log file, so an int
        # that has them was not meant as bits: say how to write the mode instead of applying it.
        # Below 0o777 the digits of 400 or 444 read as a mode too (0o620, 0o674): no one means
        # those bits, while Python's 0o640 (416) or 0o644 (420) are plausible and taken.
        digits = str(value)
        if re.fullmatch(r"[0-7]{3,4}", digits):
            plausible = value <= 0o777 and value & 0o200
            meant = f"; if you do mean {oct(value)}, write the string '0{oct(value)[2:]}'" if plausible else ""
            raise ValueError(
                f"chmod={value} is the decimal number {value}, mode {oct(value)}, not 0o{digits}: "
                f"write the mode as the string '0{digits}' (JSON, YAML, INI) or as 0o{digits} in Python{meant}"
            )
        raise ValueError(
            f"chmod={value} is mode {oct(value)}, with bits beyond 0o777 (set-id, sticky) that a "
            f"log file has no use for: write the mode in octal, as the string '0640' (JSON, YAML, "
            f"INI) or as 0o640 in Python"
        )
    if not 0 <= value <= 0o7777:
        raise ValueError(f"chmod must be permission bits between 0 and 0o7777, got {value!r}")
    if not value & 0o200:
        # The writers open the file for appending after it exists; without the owner's write
        # bit every reopen (rotation, restart) would fail.
        raise ValueError(f"chmod={oct(value)} leaves the log unwritable for its owner; add 0o200")
    bits: int = value
    return bits


def parse_owner(value: Any) -> tuple[int, int]:
    """``owner``: ``"user"``, ``"user:group"``, ``":group"`` (names or numeric ids) → (uid, gid)."""
    if value is None:
        return -1, -1
    if not isinstance(value, str) or not value.strip(":"):
        raise TypeError(f"owner must be a string 'user', 'user:group' or ':group', not {value!r}")
    try:
        import grp
        import pwd
    except ImportError:  # pragma: no cover - Windows
        raise ValueError(f"owner={value!r}: file ownership is only supported on POSIX") from None
    user, _, group = value.partition(":")
    uid = gid = -1
    try:
        if user:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        # The KeyError's own text is getpwnam()'s ("name not found: ..."): say which name.
        unknown = f"no user named {user!r}" if uid == -1 and user else f"no group named {group!r}"
        raise ValueError(
            f"owner={value!r}: {unknown} on this system; give an existing name or a numeric id "
            f"('user', 'user:group', ':group')"
        ) from None
    return uid, gid

