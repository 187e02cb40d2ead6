"""Finding a log's shards and opening them: chains of files per writer, live or finished, and
how far each one is already merged.

A writer holds ``LOCK_SH`` on its shard while it has it open; a merge that cannot take
``LOCK_EX`` knows the shard is live. A file is named across renames and compression by its
first line (the first record's time and sequence number, with the writer's host and pid).

Every input is opened under the rule of ``_primitives.fileio`` (:func:`open_input`): never
through a symlink, never a FIFO, never another user's file or a hard link in a directory other
users can write. Such a file is skipped and reported by name, its content unread, and left
where it is. A file is opened by name once; later streams of it (decoding a compressed file, the
second core) are checked to be the same file (``st_dev``, ``st_ino``).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass
from typing import IO, Any

from .._primitives.codec import BY_EXT, DECODE_ERRORS
from .._primitives.fileio import Place, Refused, close_quietly, open_input
from .._primitives.fsdetect import network_fs
from .._primitives.lock import LOCK_EX, try_lock
from .._primitives.shard import hostname, parse_shard_name
from .report import MergeError, MergeReport, Problem

__all__ = [
    "File", "Decoded", "close_streams", "age_key", "identify", "line_digest", "first_line_fd", "decode_fd",
    "discover", "open_inputs", "open_decoded", "reopen", "pread", "Unreadable",
]  # fmt: skip

# On a network file system (see _primitives.fsdetect) a lock may not reach other clients, so a
# shard of another host also counts as live until it has not been written for this long.
FOREIGN_QUIET = 300.0


@dataclass
class File:
    """One shard file of one writer, and what the merge learns about it."""

    path: str
    host: str
    pid: int
    n: int  # 0 for the shard being written, N for the backup .shard.N (higher is older)
    ext: str  # "", ".gz", ".bz2", ".xz"
    period: str = ""  # the stamp of a time backup, .shard.<period>[.N]
    live: bool = False
    fd: int = -1  # held open (and LOCK_EX-locked when finished) from discovery to removal
    identity: str = ""
    start: int = 0  # already merged (from the state file): bytes of the decoded stream
    end: int = 0  # how far this merge consumed the decoded stream
    size: int = 0  # on-disk size at discovery
    damaged: bool = False
    complete: bool = False  # read to its end (not held back)
    inode: tuple[int, int] = (0, 0)  # (st_dev, st_ino) once opened


def discover(directory: str, logname: str) -> tuple[list[list[File]], list[tuple[File, str]]]:
    """Chains of shard files, one per (host, pid), oldest file first, in tie order; and the
    compressed twins of plain backups (same records, removed with them)."""
    by_writer: dict[tuple[str, int], dict[tuple[Any, ...], File]] = {}
    twins: list[tuple[File, str]] = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise MergeError(f"cannot list {directory}: {exc.strerror or exc}") from None
    for entry in entries:
        parts = parse_shard_name(logname, entry)
        if parts is None:
            continue
        host, pid = str(parts["host"]), int(str(parts["pid"]))
        n = int(parts["n"]) if parts["n"] else 0
        period = parts["period"] or ""
        ext = "." + parts["ext"] if parts["ext"] else ""
        f = File(os.path.join(directory, entry), host, pid, n, ext, period)
        files = by_writer.setdefault((host, pid), {})
        key = age_key(f)
        other = files.get(key)
        if other is not None:
            # A compressor writes ``x.shard.1.gz`` whole (temp + replace) and then removes
            # ``x.shard.1``: when both exist they hold the same records. Read the plain one
            # once and remove the compressed one with it.
            plain, twin = (other, f) if not other.ext else (f, other)
            files[key] = plain
            twins.append((plain, twin.path))
            continue
        files[key] = f
    chains = [[fs[k] for k in sorted(fs)] for _, fs in sorted(by_writer.items())]
    return chains, twins


def age_key(f: File) -> tuple[Any, ...]:
    """Sorts one writer's files oldest first: size backups ``.shard.N`` … ``.shard.1``, then
    time backups by period and number (the stdlib's stamps sort as text), then the shard being
    written."""
    if f.period:
        return (1, f.period, f.n)
    return (0, -f.n) if f.n else (2,)


def first_line(f: File) -> bytes:
    """The first line of the decoded file: it names the file across renames and compression.
    Read through ``f.fd`` when it is held (its name may have moved on), else by its path."""
    try:
        if f.fd >= 0:
            return first_line_fd(f.fd, f.ext)
        # A compressed input of a one-shot merge (plain ones are held open): by name, checked
        # to be the file opened first.
        stream, raw = open_decoded(f)
        try:
            return stream.readline(4096)
        finally:
            close_streams(stream, raw)
    except DECODE_ERRORS as exc:
        raise Unreadable(str(exc)) from None


def first_line_fd(fd: int, ext: str) -> bytes:
    """The first decoded line (at most 4 KiB) of the file open as ``fd``, compressed with the
    codec of ``ext`` ("" for none); the descriptor's offset is not moved."""
    if ext:
        stream, raw = decode_fd(fd, ext)
        try:
            return stream.readline(4096)
        finally:
            close_streams(stream, raw)
    line = os.pread(fd, 4096, 0)
    i = line.find(b"\n")
    return line[: i + 1] if i >= 0 else line


def identify(f: File, line: bytes) -> str:
    """The name of the file whose first line is ``line``: the same across renames and
    compression (what the journal's offsets are keyed by)."""
    return f"{f.host}.{f.pid}:" + line_digest(line)


def line_digest(line: bytes) -> str:
    return hashlib.blake2b(line, digest_size=8).hexdigest()


class Unreadable(Exception):
    pass


def reopen(f: File) -> int:
    """A new descriptor of ``f`` (with an offset of its own), opened by name under the rule and
    checked to be the file the merge opened first."""
    fd, st = open_input(f.path)
    if (st.st_dev, st.st_ino) != f.inode:
        os.close(fd)
        raise OSError(f"{f.path} was replaced during the merge")
    return fd


def open_decoded(f: File) -> tuple[IO[bytes], IO[bytes]]:
    """(decoded stream, raw file) of a compressed input, so progress can follow the raw position:
    through ``f.fd`` when it is held (a live merge, whose files' names move on), else a new
    descriptor (see :func:`reopen`)."""
    if f.fd >= 0:
        return decode_fd(f.fd, f.ext)
    raw = open(reopen(f), "rb")
    try:
        return BY_EXT[f.ext].reader(raw), raw
    except BaseException:
        raw.close()
        raise


class Decoded:
    """Reads at any offset of the decoded content of a file held open as ``fd``: ``pread`` for
    a plain file; for a compressed one a decoded stream read forward (opened again to go
    back). The last read is kept: reads that overlap it cost nothing."""

    def __init__(self, fd: int, ext: str) -> None:
        self.fd = fd
        self.ext = ext
        self._stream: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._pos = 0
        self._cache_at = 0
        self._cache = b""

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` decoded bytes from ``offset`` (fewer at the end of the data)."""
        c, at = self._cache, self._cache_at
        if at <= offset and offset + n <= at + len(c):
            return c[offset - at : offset - at + n]
        if not self.ext:
            data = os.pread(self.fd, n, offset)
        elif self._stream is not None and at <= offset < at + len(c) == self._pos:
            # Overlaps the kept read, which ends where the stream is: no need to decode again.
            data = c[offset - at :] + (self._stream.read(n - (at + len(c) - offset)) or b"")
            self._pos = offset + len(data)
        else:
            if self._stream is None or offset < self._pos:
                self.close()
                self._stream, self._raw = decode_fd(self.fd, self.ext)
                self._pos = 0
            stream = self._stream
            while self._pos < offset:
                skipped = stream.read(min(offset - self._pos, 1 << 20))
                if not skipped:
                    return b""
                self._pos += len(skipped)
            data = stream.read(n) or b""
            self._pos += len(data)
        self._cache_at, self._cache = offset, data
        return data

    def forget(self) -> None:
        """Drop the kept read (the bytes past a plain file's end may still change)."""
        self._cache = b""

    def close(self) -> None:
        close_streams(self._stream, self._raw)
        self._stream = self._raw = None
        self._cache = b""


def close_streams(*streams: IO[bytes] | None) -> None:
    """Close a decoded stream and its raw file (either may be None), ignoring errors."""
    for s in streams:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


def decode_fd(fd: int, ext: str) -> tuple[IO[bytes], IO[bytes]]:
    """(decoded stream, raw file) of a file compressed with the codec of ``ext``, held open as
    ``fd`` elsewhere: read through it from its start, with a position of its own."""
    raw = io.BufferedReader(_Positional(fd))
    try:
        return BY_EXT[ext].reader(raw), raw
    except BaseException:
        raw.close()
        raise


class _Positional(io.RawIOBase):
    """A file read through ``pread`` on a descriptor held elsewhere, from its start: its
    position is its own (a duplicated descriptor would share one with every other reader)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = os.preadv(self._fd, [buf], self._pos) if _HAVE_PREADV else _pread_into(self._fd, buf, self._pos)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos


def _pread_into(fd: int, buf: Any, pos: int) -> int:  # pragma: no cover - without preadv
    data = os.pread(fd, len(buf), pos)
    buf[: len(data)] = data
    return len(data)


_HAVE_PREADV = hasattr(os, "preadv")


def pread(f: File, n: int, offset: int) -> bytes:
    """Read without moving the offset that the reader's duplicate of ``f.fd`` shares."""
    if hasattr(os, "pread"):
        return os.pread(f.fd, n, offset)
    with open(f.path, "rb") as stream:  # pragma: no cover - Windows
        stream.seek(offset)
        return stream.read(n)


def open_inputs(
    chains: list[list[File]], offsets: dict[str, Any], include_live: bool, report: MergeReport, place: Place
) -> int:
    """Open every file, tell live from finished, find what is already merged; total bytes."""
    total = 0
    files = [f for chain in chains for f in chain]
    foreign = [f for f in files if f.host != hostname()]
    netfs = network_fs(files[0].path) if foreign else None
    for f in files:
        try:
            fd, st = open_input(f.path, place)
        except OSError as exc:
            # A link, a FIFO, another user's file: skipped unread, left where it is.
            what = "skipped" if isinstance(exc, Refused) else "cannot read"
            report.problems.append(Problem(f.path, 0, f"{what}: {exc.strerror or exc}"))
            f.damaged = True
            continue
        f.inode = (st.st_dev, st.st_ino)
        f.size = st.st_size
        try:
            if not f.ext:
                f.fd = fd
                # Held until the file is removed: a process that reuses the pid and opens the
                # shard waits for its LOCK_SH, and then finds the path gone (see _perprocess).
                f.live = not try_lock(f.fd, LOCK_EX)
                recent = time.time() - st.st_mtime < FOREIGN_QUIET
                if not f.live and netfs and f.host != hostname() and recent:
                    f.live = True
            else:
                close_quietly(fd)  # decoded through descriptors of its own (see reopen)
            line = first_line(f)
        except (OSError, Unreadable) as exc:
            msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            report.problems.append(Problem(f.path, 0, f"cannot read: {msg}"))
            f.damaged = True
            if f.fd >= 0:
                os.close(f.fd)
                f.fd = -1
            continue
        if f.live:
            report.live.append(f.path)
        if not line or (f.live and not line.endswith(b"\n")):
            # Empty, or a live shard whose first record is not complete yet.
            f.complete = not f.live
            continue
        f.identity = identify(f, line)
        done = offsets.get(f.identity)
        f.start = f.end = int(done["offset"]) if done else 0
        if f.live and not include_live:
            continue
        report.shards.append(f.path)
        total += f.size
    return total
