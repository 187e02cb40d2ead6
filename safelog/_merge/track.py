"""One file of a live merge: what has been emitted of it, where its records start and end,
and the file itself (open, renamed, compressed or gone)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator

from .._primitives.codec import BY_EXT
from .._primitives.fileio import close_quietly
from .._primitives.shard import LINE_HEADER_RE, TIME_LEN
from .discovery import Decoded, File, age_key

__all__ = ["Track", "copy_of", "sort_key"]

# Bytes read per look at a file while finding where the emitted part ends.
_SCAN = 64 << 10
# A record header is shorter than this: windows overlap by it, so none is cut in two.
_OVERLAP = 64


class Track:
    """One file the live merge follows."""

    __slots__ = (
        "f", "ino", "size", "changed", "head", "head_key", "tail_nl", "data_end", "done", "listed",
        "copies", "locked", "removing", "order", "_decoded",
    )  # fmt: skip

    def __init__(self, f: File, ino: tuple[int, int], size: int, now: float) -> None:
        self.f = f  # f.start: what has been emitted (decoded offset); f.fd: held open
        self.ino = ino
        self.size = size  # plain files: the size at the last look
        self.changed = now  # when the size last changed (monotonic)
        self.head = -1  # the first record not yet emitted (a record start), once looked at
        self.head_key = b""  # its time, b"" while not known (or while it may be incomplete)
        self.tail_nl = False  # the data ended with a line end at the last look
        self.data_end = -1  # the end of the decoded data, once read to it
        self.done = False  # finished and emitted to its end
        self.listed = True  # in the last directory listing (under some name)
        # Compressed copies of it listed beside it (same first line): inode -> [descriptor
        # (held, so the inode cannot pass to another file while it is known), path].
        self.copies: dict[tuple[int, int], tuple[int, str]] = {}
        self.locked = False  # its exclusive lock is held (to remove it)
        # Where it sorts among its writer's files: by its first record's time (a writer's
        # files are in time order, whatever their names at the moment of a listing), then by
        # its name when first seen. A file without a first record yet is the newest.
        self.order: tuple[bytes, tuple[object, ...], int] = (b"\xff", age_key(f), ino[1])
        self.removing: set[str] = set()  # paths of it (and its copies) whose removal was tried
        self._decoded: Decoded | None = None

    def __repr__(self) -> str:
        name = os.path.basename(self.f.path)
        return f"Track({name!r}, {self.ino[1]}, {self.f.identity[-6:]}, start={self.f.start}, done={self.done})"

    # -- reading -------------------------------------------------------------------------------

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` decoded bytes from ``offset`` (fewer at the end of the data)."""
        if self._decoded is None:
            self._decoded = Decoded(self.f.fd, self.f.ext)
        return self._decoded.read_at(offset, n)

    def starts(self, pos: int, limit: int, at_start: bool = True) -> Iterator[tuple[int, bytes]]:
        """``(offset, time)`` of every record header from ``pos`` up to ``limit`` (-1: the end
        of the data), found as merge finds them: a line break, then a header. ``at_start``:
        ``pos`` is a record start (the start of the file, or of an unread record). Sets
        ``tail_nl`` and, at the end of the data, ``data_end``."""
        at = pos
        last = pos - 1
        while True:
            want = _SCAN if limit < 0 else min(_SCAN, limit - at)
            if want <= 0:
                return
            lo = at - 1 if at > 0 and not (at == pos and at_start) else at
            data = self.read_at(lo, want + (at - lo))
            if lo == at:
                # A record starts at ``at``: a virtual line break before it.
                data = b"\n" + data
                lo -= 1
            if len(data) <= at - lo:
                return
            self.tail_nl = data.endswith(b"\n")
            for m in LINE_HEADER_RE.finditer(data):
                s = lo + m.start() + 1
                if s > last:
                    last = s
                    yield s, m.group(1)
            end = lo + len(data)
            if end < at + want:
                self.data_end = end
                return
            at = max(at + 1, end - _OVERLAP)

    def ends(self) -> int:
        """Where the complete records of the data end now (a record being written is not one)."""
        limit = -1 if self.f.ext else self.size
        pos = self.f.start
        if limit >= 0:
            if limit <= pos:
                return pos
            step = _SCAN
            while True:
                back = max(limit - step, pos)
                found = list(self.starts(back, limit, at_start=back == pos))
                if found or back == pos:
                    break
                step *= 4  # a very long last record: look further back
        else:
            found = list(self.starts(pos, -1))
            limit = self.data_end
        if self.tail_nl:
            return limit
        return found[-1][0] if found else pos

    def last_records(self, n: int) -> list[tuple[int, bytes]]:
        """(offset, time) of the last ``n`` complete records, oldest first."""
        pos = self.f.start
        if self.f.ext:
            window: deque[tuple[int, bytes]] = deque(self.starts(pos, -1), maxlen=n + 1)
            found = list(window)
        else:
            step = _SCAN
            while True:
                back = max(self.size - step, pos)
                found = list(self.starts(back, self.size, at_start=back == pos))
                if len(found) > n or back == pos:
                    break
                step *= 4
        if found and not self.tail_nl:
            found.pop()  # being written: not a record yet
        return found[-n:] if n else []

    def close_stream(self) -> None:
        if self._decoded is not None:
            self._decoded.close()
            self._decoded = None

    @property
    def twins(self) -> list[str]:
        return [path for _, path in self.copies.values()]

    def close(self) -> None:
        self.close_stream()
        close_quietly(self.f.fd)
        self.f.fd = -1
        self.locked = False
        for fd, _ in self.copies.values():
            close_quietly(fd)
        self.copies = {}


def copy_of(plain: File, path: str) -> File:
    """The File of ``path``, a compressed twin of ``plain``."""
    ext = next((e for e in BY_EXT if path.endswith(e)), "")
    return File(path, plain.host, plain.pid, plain.n, ext, plain.period)


def sort_key(t: Track) -> tuple[bytes, tuple[object, ...], int]:
    """Where ``t`` goes in its writer's chain: by its first record's time, once it has one."""
    if t.order[0] == b"\xff" and t.f.identity:
        t.order = (t.read_at(0, TIME_LEN), t.order[1], t.order[2])
    return t.order
