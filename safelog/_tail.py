"""``safelog follow`` on a plain log (``thread``, ``flock``): its files read as they grow, across
rotation (a backup renamed, compressed or removed while it is read), each line printed once;
``-n`` and ``--since`` positions.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import stat
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from ._merge.discovery import Decoded
from ._merge.output import write_all
from ._merge.report import MergeReport, Problem
from ._policy.naming import backup_name
from ._primitives.codec import DECODE_ERRORS
from ._primitives.fileio import READ, close_quietly

__all__ = ["PlainTail", "Problems", "FollowError", "ALL"]

# How much of a plain file names it once it is compressed (with its size).
_PREFIX = 4096
_CHUNK = 1 << 20
# -n of "everything there is".
ALL = sys.maxsize
# Walks of the backups that found the names moving under them before giving up for this look.
_WALKS = 20
# A leading timestamp: ISO 8601 or logging's asctime ("2026-12-07 10:00:00,123").
_STAMP_RE = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,6})\d*)?\s?(Z|[+-]\d\d:?\d\d)?"
)


class FollowError(Exception):
    """The log cannot be followed (no such directory, not a regular file)."""


class Problems:
    """Reports problems on stderr as they are found, each once."""

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.status = 0

    def report(self, problem: Problem | str, warning: bool = False) -> None:
        if not warning:
            self.status = 1
        self.err.write(f"safelog follow: {'warning: ' if warning else ''}{problem}\n")
        self.err.flush()

    def take(self, report: MergeReport) -> None:
        for p in report.problems:
            self.report(p)
        for w in report.warnings:
            self.report(w, warning=True)
        report.problems.clear()
        report.warnings.clear()


# -- a plain log --------------------------------------------------------------------------------


class _Read:
    """A file being read: its descriptor, how far, and what names it once it is compressed."""

    def __init__(self, fd: int, ext: str, path: str) -> None:
        self.fd = fd
        self.ext = ext
        self.path = path
        st = os.fstat(fd)
        self.ino = (st.st_dev, st.st_ino)
        self.pos = 0  # bytes read (decoded)
        self.partial = b""  # an incomplete last line
        self.prefix = b""  # the first _PREFIX bytes
        self.data = Decoded(fd, ext)

    def close(self) -> None:
        self.data.close()
        close_quietly(self.fd)

    def identity(self) -> tuple[int, str]:
        return self.pos, hashlib.blake2b(self.prefix, digest_size=16).hexdigest()


class PlainTail:
    """Follows a log written in place and rotated by renaming (see the module docstring)."""

    def __init__(self, path: str, out: int, problems: Problems) -> None:
        self.path = path
        self.directory, self.name = os.path.split(path)
        self.out = out
        self.problems = problems
        self.cur: _Read | None = None
        self.last: _Read | None = None  # the file read before cur: held, watched for late lines
        self.history: deque[tuple[int, str]] = deque(maxlen=256)

    # -- start ----------------------------------------------------------------------------------

    def start(self, lines: int, since: float | None) -> None:
        """Print the chosen past, then follow from the end of the newest file."""
        files = self._snapshot()
        if files is None:
            return
        current, backups = files
        everything = backups + ([current] if current is not None else [])
        if since is not None:
            at, offset = _since_position(everything, since)
        else:
            at, offset = _last_lines_position(everything, lines)
        for i, f in enumerate(everything):
            if i < at:
                if f is backups[-1]:
                    # The newest backup names where the next walk stops (older ones are behind it).
                    _skip_to_end(f)
                    self._finished(f, emit=False)
                elif f is not current:
                    f.close()
                continue
            if i == at:
                f.pos = offset
                _prime_prefix(f)
            self._drain(f)
            if f is not current:
                self._finished(f)
        self.cur = current

    # -- looking again --------------------------------------------------------------------------

    def poll(self) -> None:
        if self.cur is not None:
            self._drain(self.cur)
        if self.last is not None:
            self._late_lines()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        cur = self.cur
        if cur is not None and st is not None and (st.st_dev, st.st_ino) == cur.ino:
            if st.st_size < cur.pos:
                self.problems.report(f"{self.path}: truncated in place; reading it again from its start", True)
                cur.pos, cur.partial = 0, b""
                self._drain(cur)
            return
        if cur is not None:
            # Renamed (or removed): nobody appends to it any more; read it to its end.
            self._drain(cur)
            self._finished(cur)
            self.cur = None
        if st is None:
            return
        files = self._snapshot()
        if files is not None:
            self._catch_up(*files)

    def _catch_up(self, current: _Read | None, backups: list[_Read]) -> None:
        """After a rotation: print the backups not read yet, oldest first, then go on with the
        ``current`` file."""
        unread: list[_Read] = []
        for f in reversed(backups):  # newest first, back to the last file read
            if self._known(f):
                break
            unread.append(f)
        for f in backups:
            if f not in unread:
                f.close()
        for f in reversed(unread):
            self._drain(f)
            self._finished(f)
        self.cur = current
        if current is not None:
            self._drain(current)

    def _known(self, f: _Read) -> bool:
        if self.last is not None and f.ino == self.last.ino:
            return True
        size = _decoded_size_if(f, lambda n: any(n == s for s, _ in self.history))
        if size < 0:
            return False
        prefix = _read_at(f, 0, _PREFIX)
        return (size, hashlib.blake2b(prefix, digest_size=16).hexdigest()) in self.history

    def _snapshot(self) -> tuple[_Read | None, list[_Read]] | None:
        """The current file and the backups, oldest first, all opened; names verified after
        opening, so that a rotation during the listing is not misread. None if the names kept
        moving.

        The directory is listed again after the opening, names with inodes: a rotation between
        the listing and the opening of the current file would otherwise go unseen (the file
        the listing had at the path is then a backup under a name the listing lacks, and the
        path names the newer file), and that file would never be read."""
        for _ in range(_WALKS):
            listed = self._listing()
            named: list[tuple[Any, str, str]] = []
            for entry, _ino in listed:
                parsed = backup_name(self.name, entry)
                if parsed is not None:
                    named.append((parsed[0], entry, parsed[1]))
            named.sort(key=lambda n: (n[0], n[2] != ""))  # the plain form of a twin first
            opened: list[_Read] = []
            keys: set[Any] = set()
            ok = True
            for key, entry, ext in named:
                if key in keys:
                    continue  # the compressed twin of a plain backup: the same lines
                f = _open(os.path.join(self.directory, entry), ext)
                if f is None:
                    ok = False
                    break
                keys.add(key)
                opened.append(f)
            current = _open(self.path, "") if ok else None
            if ok and os.path.lexists(self.path) and current is None:
                ok = False
            if (
                ok
                and all(_still(f) for f in opened)
                and (current is None or _still(current))
                and self._listing() == listed
            ):
                return current, opened
            for f in opened + ([current] if current is not None else []):
                f.close()
        self.problems.report(f"{self.path}: its backups kept moving while being listed; trying again", True)
        return None

    def _listing(self) -> set[tuple[str, int]]:
        """(name, inode) of the log and its backups, from one listing (no stat)."""
        with os.scandir(self.directory) as entries:
            return {
                (e.name, e.inode())
                for e in entries
                if e.name == self.name or backup_name(self.name, e.name) is not None
            }

    # -- reading --------------------------------------------------------------------------------

    def _drain(self, f: _Read) -> None:
        """Print the complete lines of ``f`` from where it was read to."""
        while True:
            data = _advance(f)
            if not data:
                return
            data = f.partial + data
            end = data.rfind(b"\n") + 1
            f.partial = data[end:]
            if end:
                write_all(self.out, memoryview(data)[:end])

    def _finished(self, f: _Read, emit: bool = True) -> None:
        """``f`` is read to its end and nobody writes it any more."""
        if f.partial and emit:
            self.problems.report(f"{f.path}: its last line has no line end (a write cut short)", True)
            write_all(self.out, f.partial + b"\n")
        f.partial = b""
        self.history.append(f.identity())
        if self.last is not None:
            self.last.close()
        self.last = f

    def _late_lines(self) -> None:
        last = self.last
        assert last is not None
        if not last.ext and os.fstat(last.fd).st_size > last.pos:
            self.problems.report(f"{last.path}: lines appended after it was rotated", True)
            self._drain(last)
            self.history.append(last.identity())

    def close(self) -> None:
        for f in (self.cur, self.last):
            if f is not None:
                f.close()


def _open(path: str, ext: str) -> _Read | None:
    try:
        fd = os.open(path, READ)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FollowError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return _Read(fd, ext, path)


def _still(f: _Read) -> bool:
    try:
        st = os.stat(f.path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == f.ino


def _read_at(f: _Read, offset: int, n: int) -> bytes:
    try:
        return f.data.read_at(offset, n)
    except DECODE_ERRORS as exc:
        raise FollowError(f"{f.path}: cannot read: {exc}") from None


def _decoded_size_if(f: _Read, plausible: Callable[[int], bool]) -> int:
    """The decoded size of ``f``, or -1 when it is certainly none that ``plausible`` accepts."""
    if not f.ext:
        size = os.fstat(f.fd).st_size
        return size if plausible(size) else -1
    if f.ext == ".gz":
        # The gzip trailer holds the size modulo 2**32: enough to rule most out unread.
        tail = os.pread(f.fd, 4, max(os.fstat(f.fd).st_size - 4, 0))
        if len(tail) == 4 and not any(plausible(s) for s in _candidates(int.from_bytes(tail, "little"))):
            return -1
    size = 0
    while True:
        data = _read_at(f, size, _CHUNK)
        if not data:
            break
        size += len(data)
    return size if plausible(size) else -1


def _candidates(low: int) -> list[int]:
    return [low + (k << 32) for k in range(16)]


def _skip_to_end(f: _Read) -> None:
    if not f.ext:
        f.pos = os.fstat(f.fd).st_size
        f.prefix = _read_at(f, 0, _PREFIX)
        return
    while _advance(f):
        pass


def _advance(f: _Read) -> bytes:
    """The next chunk of ``f`` (b"" at its end); ``pos`` and ``prefix`` move past it."""
    data = _read_at(f, f.pos, _CHUNK)
    if len(f.prefix) < _PREFIX:
        f.prefix += data[: _PREFIX - len(f.prefix)]
    f.pos += len(data)
    return data


def _prime_prefix(f: _Read) -> None:
    f.prefix = _read_at(f, 0, min(_PREFIX, f.pos)) if f.pos else b""


def _last_lines_position(files: list[_Read], n: int) -> tuple[int, int]:
    """(file index, offset) where the last ``n`` complete lines start (a partial last line
    of the newest file is not one of them)."""
    if not files:
        return 0, 0
    need = n
    for i in range(len(files) - 1, -1, -1):
        f = files[i]
        if f.ext:
            data = _read_all(f)
            size = len(data)
        else:
            size = os.fstat(f.fd).st_size
            data = b""
        end = size
        if i == len(files) - 1:
            tail = data[-1:] if f.ext else os.pread(f.fd, 1, max(size - 1, 0))
            if tail != b"\n" and size:
                # The partial last line is not one of the n.
                end = _last_newline(f, data, size) + 1
        pos = end
        while need > 0 and pos > 0:
            j = _last_newline(f, data, pos - 1)  # the line end before the line ending at pos
            pos = j + 1
            need -= 1
        if need <= 0:
            return i, pos
    return 0, 0


def _last_newline(f: _Read, data: bytes, before: int) -> int:
    """The offset of the last line end before ``before`` (-1 if none)."""
    if f.ext:
        return data.rfind(b"\n", 0, before)
    pos = before
    while pos > 0:
        lo = max(pos - _CHUNK, 0)
        chunk = os.pread(f.fd, pos - lo, lo)
        j = chunk.rfind(b"\n")
        if j >= 0:
            return lo + j
        pos = lo
    return -1


def _read_all(f: _Read) -> bytes:
    parts: list[bytes] = []
    pos = 0
    while True:
        data = _read_at(f, pos, _CHUNK)
        if not data:
            return b"".join(parts)
        parts.append(data)
        pos += len(data)


def _since_position(files: list[_Read], since: float) -> tuple[int, int]:
    """(file index, offset) of the first line stamped ``since`` or later; files last written
    before ``since`` are skipped whole."""
    for i, f in enumerate(files):
        if os.fstat(f.fd).st_mtime < since and i < len(files) - 1:
            continue
        pos = 0
        while True:
            data = _read_at(f, pos, _CHUNK)
            if not data:
                break
            end = data.rfind(b"\n") + 1 or len(data)
            start = 0
            while start < end:
                nl = data.find(b"\n", start, end)
                line_end = nl + 1 if nl >= 0 else end
                t = _line_time(data[start:line_end])
                if t is not None and t >= since:
                    return i, pos + start
                start = line_end
            pos += end
        if i == len(files) - 1:
            return i, pos
    return len(files), 0


def _line_time(line: bytes) -> float | None:
    m = _STAMP_RE.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = int((m.group(7) or b"0").ljust(6, b"0")) / 1_000_000
    zone = m.group(8)
    try:
        if zone is None:
            return time.mktime((y, mo, d, h, mi, s, 0, 0, -1)) + frac
        base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac
    except (OverflowError, ValueError):
        return None
    if zone == b"Z":
        return base
    sign = -1 if zone[:1] == b"-" else 1
    digits = zone[1:].replace(b":", b"")
    return base - sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
