"""``safelog merge``: join the shards of a ``per-process`` log into one time-ordered file.

Inputs
    Every shard of the log, for every host and pid, with its rotated backups
    (``app.log.<host>.<pid>.shard[.N][.gz|.bz2|.xz]``). The files of one writer process form one
    *chain*, oldest backup first; within a chain the shard format guarantees non-decreasing
    times, so each chain is a sorted run and the merge is a streaming k-way merge over chains.

Order
    By time (the shard header, microseconds, UTC); ties by host name, then pid, then position
    in the writer's chain (that is, the order the writer wrote them). The order is total and
    does not depend on directory listing order, so a re-run produces the same bytes.

Output
    The records exactly as the user's formatter produced them: framing stripped, continuation
    lines restored. The default output is the log path itself (``app.log``): the
    ``per-process`` strategy never writes it, and it is where people look. If it exists, the
    new records are appended *after* its content: each merge adds one time-ordered batch.

Atomicity and idempotence
    The new output is written to a temp file beside the output (``os.open`` with ``O_EXCL``),
    fsynced, and ``os.replace``-d over the output; only then are merged shards removed. A
    small state file (``<output>.merge-state``) is the journal: before the replace it records
    the temp file's inode and what the merge will remove; a re-run after a crash compares that
    inode with the output's and either finishes the removals (the replace happened) or
    discards the temp file (it did not). It also records how far each shard that stays on disk
    (``keep=True``, live shards, damaged ones) has been merged, so no record is written twice.

Live shards
    A writer holds ``LOCK_SH`` on its shard while it has it open; a merge that cannot take
    ``LOCK_EX`` knows the shard is live. Live shards are skipped by default; with
    ``include_live`` they are read up to their last record known to be complete (the final
    record of a live shard is held back: it may still be being written) and never removed.

Speed and memory
    Memory is bounded by the number of chains (one read buffer of at most 256 KiB each), not
    by their size. Large inputs of plain shards are merged on two cores: the key range is
    split at a record boundary in every shard, a forked worker merges the upper part into a
    side file, and the two parts are concatenated (this process copies what the worker has
    written while the worker is still merging); the bytes are the same as from one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sys
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any, Callable

from .._primitives.atomic import atomic_write, create_temp, fsync_dir
from .._primitives.codec import BY_EXT, DECODE_ERRORS
from .._primitives.fileio import READ, create_exclusive, open_lockfile
from .._primitives.fsdetect import network_fs
from .._primitives.lock import LOCK_EX, try_lock
from .._primitives.shard import (
    CONT,
    HEADER_RE,
    LINE_HEADER_RE,
    TIME_LEN,
    hostname,
    is_time,
    parse_shard_name,
    split_records,
    unframe,
)


__all__ = ["merge", "MergeReport", "MergeError", "Problem"]

# Bytes read per shard and step. Memory is about (number of chains) x (two chunks plus the
# Python objects of their records, ~3x the bytes), so the chunk shrinks when there are many
# chains. Larger chunks do not make the merge faster (measured: 1 MiB chunks, same CPU time,
# twice the peak RSS of 256 KiB chunks for 8 shards).
_CHUNK_MAX = 256 << 10
_CHUNK_MIN = 64 << 10
_BUDGET = 8 << 20
# How many problems of one file are listed one by one; the rest are counted.
_MAX_REPORTED = 10
# A header line longer than this without a line end is not a record being written; it is
# garbage (a binary file, a region of NUL bytes), and is skipped rather than buffered whole.
_MAX_GARBAGE = 1 << 20
# Room in a reader's buffer for the start of a record cut at the end of the previous chunk;
# longer ones are read into a new buffer.
_SLACK = 16 << 10
_HAVE_PREADV = hasattr(os, "preadv")
_TAB = CONT[0]

STATE_SUFFIX = ".merge-state"
LOCK_SUFFIX = ".merge.lock"
# Temp files of a merge are ".<output>.merge-<random>.tmp" (the journal's atomic_write temp
# ".<output>.merge-state.<random>.tmp" shares the prefix, so leftovers of both are cleaned).
TMP_INFIX = ".merge-"
DAMAGED_SUFFIX = ".damaged"


class MergeError(Exception):
    """The merge could not run at all (no such directory, another merge running, output not
    writable). Problems in the shards themselves are reported in :class:`MergeReport`."""


@dataclass
class Problem:
    """Something wrong in one input file; ``lineno`` 0 means the file as a whole."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}" if self.lineno else f"{self.path}: {self.message}"


@dataclass
class MergeReport:
    """What a merge did. ``ok`` is false when some input could not be merged whole."""

    output: str
    records: int = 0
    shards: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [f"merged {self.records} records from {len(self.shards)} shard file(s) into {self.output}"]
        if self.removed:
            parts.append(f"removed {len(self.removed)}")
        if self.moved:
            parts.append(f"moved {len(self.moved)} damaged aside")
        if self.live:
            parts.append(f"{len(self.live)} live")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return "; ".join(parts)


# -- discovery --------------------------------------------------------------------------------


@dataclass
class _File:
    path: str
    host: str
    pid: int
    n: int  # 0 for the shard being written, N for the backup .shard.N (higher is older)
    ext: str  # "", ".gz", ".bz2", ".xz"
    live: bool = False
    fd: int = -1  # held open (and LOCK_EX-locked when finished) from discovery to removal
    identity: str = ""
    start: int = 0  # already merged (from the state file): bytes of the decoded stream
    end: int = 0  # how far this merge consumed the decoded stream
    size: int = 0  # on-disk size at discovery
    damaged: bool = False
    complete: bool = False  # read to its end (not held back)


def _discover(directory: str, logname: str) -> tuple[list[list[_File]], list[tuple[_File, str]]]:
    """Chains of shard files, one per (host, pid), oldest file first, in tie order; and the
    compressed twins of plain backups (same records, removed with them)."""
    by_writer: dict[tuple[str, int], dict[int, _File]] = {}
    twins: list[tuple[_File, str]] = []
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
        f = _File(os.path.join(directory, entry), host, pid, n, "." + parts["ext"] if parts["ext"] else "")
        files = by_writer.setdefault((host, pid), {})
        other = files.get(n)
        if other is not None:
            # A compressor writes ``x.shard.1.gz`` whole (temp + replace) and then removes
            # ``x.shard.1``: when both exist they hold the same records. Read the plain one
            # once and remove the compressed one with it.
            plain, twin = (other, f) if not other.ext else (f, other)
            files[n] = plain
            twins.append((plain, twin.path))
            continue
        files[n] = f
    chains = [[fs[n] for n in sorted(fs, reverse=True)] for _, fs in sorted(by_writer.items())]
    return chains, twins


def _first_line(f: _File) -> bytes:
    """The first line of the decoded file: it names the file across renames and compression."""
    try:
        if f.ext:
            with _open_decoded(f.path, f.ext)[0] as stream:
                line = stream.readline(4096)
        else:
            line = _pread(f, 4096, 0)
            i = line.find(b"\n")
            line = line[: i + 1] if i >= 0 else line
    except DECODE_ERRORS as exc:
        raise _Unreadable(str(exc)) from None
    return line


class _Unreadable(Exception):
    pass


def _open_decoded(path: str, ext: str) -> tuple[IO[bytes], IO[bytes]]:
    """(decoded stream, raw file) so progress can follow the raw position."""
    raw = open(path, "rb")
    try:
        return BY_EXT[ext].reader(raw), raw
    except BaseException:
        raw.close()
        raise


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Span:
    """The part of one file a reader decodes: decoded offsets ``start`` to ``stop`` (-1: to
    the end). ``cut`` means ``stop`` is a record boundary inside the file where another worker
    goes on, so the span neither finishes the file nor holds back its last record."""

    file: _File
    start: int
    stop: int = -1
    cut: bool = False


class _Reader:
    """Decodes one chain into sorted (key, text) records, a chunk at a time.

    ``bound`` is a lower bound for every key this reader has not yet produced (the key of the
    record that starts the unread remainder); ``None`` once the chain is exhausted.
    """

    def __init__(self, spans: list[_Span], chunk: int, report: MergeReport, progress: _Progress) -> None:
        self.spans = spans
        self.report = report
        self.chunk = chunk
        self.progress = progress
        self.keys: list[bytes] = []
        self.texts: list[bytes] = []
        self.pos = 0
        self.bound: bytes | None = b""
        self.last = b""
        self.done = not self.spans
        self._i = -1
        self._stream: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._pos = 0  # next pread offset of a plain file
        self._left = b""
        self._offset = 0  # decoded offset of self._left[1:] in the current file
        self._lines_at = (0, 0)  # (decoded offset, line breaks before it): see _line_of
        self._limit = -1
        self._reported = 0
        # The read buffer of plain files: a chunk plus room for a record cut at its end.
        plain = _HAVE_PREADV and any(not sp.file.ext for sp in spans)
        self._buf = bytearray(chunk + _SLACK if plain else 0)
        self._view = memoryview(self._buf)
        if not self.done:
            self._next_file()

    # The file being read.
    @property
    def file(self) -> _File:
        return self.spans[self._i].file

    def _next_file(self) -> None:
        self._close()
        self._i += 1
        if self._i >= len(self.spans):
            self.done = True
            self.bound = None
            self._view.release()
            self._buf = bytearray()
            self._view = memoryview(self._buf)
            return
        span = self.spans[self._i]
        f = span.file
        self._reported = 0
        # The leading line break lets the split pattern find the first header like any other.
        self._left = b"\n"
        self._offset = span.start
        self._lines_at = (0, 0)
        # A finished plain file is locked against writers; a live one is read only as far as
        # it was when the merge looked at it.
        self._limit = span.stop if span.stop >= 0 else (-1 if f.ext else f.size)
        self._pos = span.start
        try:
            if f.ext:
                self._stream, self._raw = _open_decoded(f.path, f.ext)
                skip = span.start
                while skip:
                    got = self._stream.read(min(skip, 1 << 20))
                    if not got:
                        break
                    skip -= len(got)
        except DECODE_ERRORS as exc:
            self._problem(0, f"cannot read: {exc}")
            f.end = f.start
            self._next_file()

    def _close(self) -> None:
        for s in (self._stream, self._raw):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._stream = self._raw = None

    def _problem(self, lineno: int, message: str) -> None:
        f = self.file
        f.damaged = True
        self._reported += 1
        if self._reported <= _MAX_REPORTED:
            self.report.problems.append(Problem(f.path, lineno, message))
        elif self._reported == _MAX_REPORTED + 1:
            self.report.problems.append(Problem(f.path, lineno, "more problems in this file not listed"))

    def _read(self) -> tuple[bytes | bytearray, int]:
        """``(buf, end)``: ``buf[:end]`` is the unconsumed rest (``_left``) followed by the
        next chunk; nothing follows it at the end of the file.

        A plain file is read straight into a buffer the reader keeps (no allocation and no
        copy per chunk); the records decoded from it are copies, so it is reused at once.
        """
        left = self._left
        n = self.chunk
        if self._limit >= 0:
            n = min(n, self._limit - self._offset - (len(left) - 1))
            if n <= 0:
                return left, len(left)
        try:
            if self._stream is None:
                # pread: the descriptor (and its offset) is shared with a forked worker.
                if _HAVE_PREADV and len(left) + n <= len(self._buf):
                    view = self._view
                    view[: len(left)] = left
                    got = os.preadv(self.file.fd, [view[len(left) : len(left) + n]], self._pos)
                    buf: bytes | bytearray = self._buf
                else:
                    data = _pread(self.file, n, self._pos)
                    got = len(data)
                    buf = left + data
                self._pos += got
            else:
                data = self._stream.read(n) or b""
                got = len(data)
                buf = left + data
        except DECODE_ERRORS as exc:
            self._problem(self._line_of(self._offset), f"cannot read further: {exc}")
            return left, len(left)
        if self._raw is not None:
            path = self.file.path
            self.progress.advance(self._raw.tell() - self.progress.raw_seen.get(path, 0), path)
        else:
            self.progress.advance(got, self.file.path)
        return buf, len(left) + got

    def fill(self) -> None:
        """Decode the next chunk of the chain into ``keys``/``texts``."""
        if self.done:
            return
        f = self.file
        buf, end = self._read()
        if end > len(self._left):
            # The last record may continue in the next chunk: cut at the last line break that
            # starts a new record (is followed by something other than a tab).
            j = buf.rfind(b"\n", 0, end - 1)
            while j > 0 and buf[j + 1] == _TAB:
                j = buf.rfind(b"\n", 0, j)
            if j <= 0:
                if end > _MAX_GARBAGE and HEADER_RE.match(buf, 1, end) is None:
                    # A megabyte without the start of a record: binary garbage, not a record
                    # being written. Skip it instead of buffering a whole file of it.
                    self._problem(
                        self._line_of(self._offset), "not a shard record (long run of bytes without a record)"
                    )
                    self._offset += end - 1
                    self._left = b"\n"
                else:
                    self._left = bytes(buf[:end]) if end < len(buf) else bytes(buf)
                self._set_bound()
                return
            # The split reads the buffer in place: no copy of the chunk.
            view = memoryview(buf)
            self._decode(view[:j])
            self._left = bytes(view[j:end])
            self._offset += j
            self._set_bound()
            return
        # End of this file (or of what a live shard had when the merge started).
        left = self._left
        if self.spans[self._i].cut:
            # Another worker goes on from here, at a record boundary: what is left is whole.
            if len(left) > 1:
                self._decode(left[:-1])
        elif len(left) > 1:
            if f.live:
                # Held back: the writer may be in the middle of this record.
                f.end = self._offset
            elif left.endswith(b"\n"):
                self._decode(left[:-1])
                f.end = self._offset + len(left) - 1
                f.complete = True
            else:
                # A record is one write(): one without its final line end was cut short (the
                # writer died mid-write, the disk filled up). It is not merged but reported,
                # and the file is moved aside instead of removed, so its bytes stay readable.
                self._problem(
                    self._line_of(self._offset), "truncated record (no line end: writer killed mid-write?)"
                )
                f.end = self._offset + len(left) - 1
                f.complete = True
        else:
            f.end = self._offset
            f.complete = not f.live
        self._next_file()
        self._set_bound()

    def _set_bound(self) -> None:
        if self.done:
            self.bound = None
            return
        key = self._left[1 : 1 + TIME_LEN]
        if len(self._left) > TIME_LEN + 1 and is_time(key):
            self.bound = max(key, self.last)
        else:
            self.bound = self.last

    def _decode(self, part: bytes | memoryview) -> None:
        """Decode complete records (``part`` starts with the line break before its first one)."""
        split = split_records(part)
        keys, texts = split if split is not None else self._decode_slow(bytes(part))
        if keys:
            if keys[0] < self.last:
                self.report.warnings.append(
                    Problem(
                        self.file.path,
                        self._line_of(self._offset),
                        "time goes backwards (clock stepped back, or a pid reused on this host); "
                        "the output is not strictly time-ordered here",
                    )
                )
            self.last = keys[-1]
            if self.pos:
                del self.keys[: self.pos]
                del self.texts[: self.pos]
                self.pos = 0
            self.keys += keys
            self.texts += texts

    def _line_of(self, offset: int) -> int:
        """The line number of the line that starts at decoded ``offset`` of the current file.

        Counted only when a problem is reported, so the fast path never counts lines.
        """
        at, lines = self._lines_at
        if offset < at:
            at, lines = 0, 0
        f = self.file
        if f.ext:
            stream = _open_decoded(f.path, f.ext)[0]
            try:
                pos = 0
                while pos < offset:
                    data = stream.read(min(1 << 20, offset - pos))
                    if not data:
                        break
                    if pos + len(data) > at:
                        lines += data[max(at - pos, 0) :].count(b"\n")
                    pos += len(data)
            except DECODE_ERRORS:
                pass
            finally:
                stream.close()
        else:
            lines += _count_lines(f, at, offset)
        self._lines_at = (offset, lines)
        return lines + 1

    def _decode_slow(self, part: bytes) -> tuple[list[bytes], list[bytes]]:
        """Line by line, strictly: keep every good record, report every bad line."""
        keys: list[bytes] = []
        texts: list[bytes] = []
        cur: list[bytes] | None = None
        lines = part.split(b"\n")
        for n, line in enumerate(lines[1:], self._line_of(self._offset)):
            if line.startswith(CONT):
                if cur is None:
                    self._problem(n, "continuation line without a record")
                else:
                    cur.append(line)  # framing kept: removed for the whole output block
                continue
            if cur is not None:
                texts.append(b"\n".join(cur))
                cur = None
            m = HEADER_RE.match(line)
            if m is None:
                # Salvage a record glued to garbage (e.g. NUL bytes left by a crash).
                m = HEADER_RE.search(line)
                self._problem(n, "not a shard record: " + repr(line[: m.start() if m else 60])[:80])
                if m is None:
                    continue
            keys.append(m.group(1))
            text = line[m.end() :]
            # A leading tab would read as continuation framing in the output block; doubling
            # it encodes it the way the writer encodes tabs after a line break.
            cur = [CONT + text if text.startswith(CONT) else text]
        if cur is not None:
            texts.append(b"\n".join(cur))
        return keys, texts


def _pread(f: _File, n: int, offset: int) -> bytes:
    """Read without moving the offset that the reader's duplicate of ``f.fd`` shares."""
    if hasattr(os, "pread"):
        return os.pread(f.fd, n, offset)
    with open(f.path, "rb") as stream:  # pragma: no cover - Windows
        stream.seek(offset)
        return stream.read(n)


def _count_lines(f: _File, pos: int, upto: int) -> int:
    n = 0
    while pos < upto:
        data = _pread(f, min(1 << 20, upto - pos), pos)
        if not data:
            break
        n += data.count(b"\n")
        pos += len(data)
    return n


class _Progress:
    """Progress on stderr, rate-limited; does nothing without a callback."""

    def __init__(self, total: int, callback: Callable[[int, int], None] | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.raw_seen: dict[str, int] = {}
        self._next = 0

    def advance(self, n: int, path: str) -> None:
        self.done += n
        self.raw_seen[path] = self.raw_seen.get(path, 0) + n
        if self.callback is not None and self.done >= self._next:
            self._next = self.done + max(self.total // 100, 1 << 20)
            self.callback(self.done, self.total)


def _merge_into(readers: list[_Reader], fd: int, alive: Callable[[], bool] | None = None) -> int:
    """The k-way merge. Each step emits every buffered record whose key is below the smallest
    ``bound`` (no reader can still produce a smaller or equal key), sorted stably: the step's
    records are the concatenation of sorted runs in tie order, which timsort merges in C."""
    records = 0
    for r in readers:
        r.fill()
    active = readers
    while active:
        if alive is not None and not alive():
            raise OSError("the merge this worker belongs to has ended")
        bounds = [r.bound for r in active if r.bound is not None]
        m = min(bounds) if bounds else None
        keys: list[bytes] = []
        texts: list[bytes] = []
        for r in active:
            if r.pos < len(r.keys):
                i = len(r.keys) if m is None else bisect_left(r.keys, m, r.pos)
                if i > r.pos:
                    keys += r.keys[r.pos : i]
                    texts += r.texts[r.pos : i]
                    r.pos = i
        if texts:
            # key= is called once per element, in order: it hands out the parallel keys.
            texts.sort(key=partial(next, iter(keys)))
            records += len(texts)
            # Written in blocks of _BLOCK records: the allocator reuses memory of that size,
            # while every larger block is fresh memory from the kernel (page faults).
            for a in range(0, len(texts), _BLOCK):
                # Texts keep the continuation framing ("\n\t" + line); no text starts with a
                # tab, so every "\n\t" of the block is framing. Empty ends put a line break
                # before the first text (a tab that starts a text is doubled, see
                # _decode_slow) and after the last.
                part = [b""]
                part += texts[a : a + _BLOCK]
                part.append(b"")
                # (sub returns the block itself when there is nothing to replace)
                block = unframe(b"\n".join(part))
                _write_all(fd, memoryview(block)[1:])
        for r in active:
            if not r.done and (r.bound == m or r.pos >= len(r.keys)):
                r.fill()
        active = [r for r in active if not r.done or r.pos < len(r.keys)]
    return records


# -- using a second core -------------------------------------------------------------------

# Records per output write (about 50 KiB for records of 100 bytes).
_BLOCK = 512

# Below this much input a second process costs more than it saves.
_PARALLEL_MIN = 32 << 20
# The share of the input this process merges itself when a worker takes the rest. Less than
# half: after its own part this process fsyncs it and copies the worker's output, and that
# copying overlaps the worker's last stretch of merging instead of following it.
_OWN_SHARE = 0.45
# While waiting for the worker, the copy of its output is fsynced every this many bytes.
_SYNC_STEP = 16 << 20


def _first_record_at(f: _File, pos: int, limit: int) -> tuple[int, bytes] | None:
    """(offset, key) of the first record of plain file ``f`` that starts in [pos, limit)."""
    while pos < limit:
        lo = pos - 1
        data = _pread(f, min(limit + 64, pos + (1 << 16)) - max(lo, 0), max(lo, 0))
        if lo < 0:
            data = b"\n" + data
        m = LINE_HEADER_RE.search(data)
        if m is not None:
            start = lo + m.start() + 1
            return (start, m.group(1)) if start < limit else None
        if len(data) <= 64:
            return None
        pos = max(pos + 1, lo + len(data) - 64)  # overlap: a header may straddle the window
    return None


def _split_offset(f: _File, t: bytes, start: int, stop: int) -> int:
    """The first record start in [start, stop) whose key is >= ``t`` (``stop`` if none).

    Binary search over the sorted file; whatever it returns is a record boundary, so even an
    unsorted file is split without losing or repeating a record.
    """
    lo, hi, best = start, stop, stop
    while hi - lo > 1 << 16:
        mid = (lo + hi) // 2
        r = _first_record_at(f, mid, hi)
        if r is None:
            hi = mid
        elif r[1] >= t:
            best, hi = r[0], mid
        else:
            lo = r[0]
    data = _pread(f, min(hi + 64, stop) - max(lo - 1, 0), max(lo - 1, 0))
    if lo == 0:
        data = b"\n" + data
    for m in LINE_HEADER_RE.finditer(data):
        at = lo + m.start()
        if lo <= at < hi and m.group(1) >= t:
            return at
    return best


def _partition(spans: list[list[_Span]], total: int) -> list[list[_Span]]:
    """Split the key range in two at the median key of points ``_OWN_SHARE`` into the files:
    this process merges the lower part, a forked worker the upper part; their outputs are
    concatenated.

    Only for plain files (a compressed stream cannot be entered in the middle), enough input,
    two CPUs, and no other thread (fork copies one thread; locks held by others stay held).
    Returns the worker's spans, and cuts ``spans`` down to this process's share.
    """
    files = [sp.file for c in spans for sp in c]
    if (
        total < _PARALLEL_MIN
        or len(spans) < 2
        or not hasattr(os, "fork")
        or (os.cpu_count() or 1) < 2
        or threading.active_count() > 1
        or any(f.ext for f in files)
    ):
        return []
    mids = []
    for f in files:
        r = _first_record_at(f, f.start + int((f.size - f.start) * _OWN_SHARE), f.size)
        if r is not None:
            mids.append(r[1])
    if not mids:
        return []
    t = sorted(mids)[len(mids) // 2]
    upper: list[list[_Span]] = []
    lower_bytes = 0
    cuts = []
    for chain in spans:
        up = []
        for sp in chain:
            cut = _split_offset(sp.file, t, sp.start, sp.file.size)
            cuts.append((sp, cut))
            lower_bytes += cut - sp.start
            if cut < sp.file.size:
                up.append(_Span(sp.file, cut))
        upper.append(up)
    if not total // 10 < lower_bytes < total - total // 10:
        return []  # too lopsided to be worth a process
    for sp, cut in cuts:
        if cut < sp.file.size:
            sp.stop, sp.cut = cut, True
    for chain in spans:
        chain[:] = [sp for sp in chain if not (sp.cut and sp.stop == sp.start)]
    spans[:] = [c for c in spans if c]
    return [c for c in upper if c]


def _drop_locks(files: list[_File], needed: set[int], lock_fd: int) -> None:
    """In the worker: read through descriptors of its own and close the inherited ones.

    Inherited descriptors share the parent's open file descriptions, so they would keep the
    merge lock and the shards' LOCK_EX alive if the parent were killed: a re-run would then
    find "another merge running" and "live" shards until this worker finished.
    """
    os.close(lock_fd)
    for f in files:
        if f.fd < 0:
            continue
        inherited = f.fd
        if id(f) in needed:
            f.fd = os.open(f.path, READ)
            if os.fstat(f.fd).st_ino != os.fstat(inherited).st_ino:
                raise OSError(f"{f.path} was replaced during the merge")
        os.close(inherited)


class _Worker:
    """The forked process that merges the upper half into a side file."""

    def __init__(
        self, spans: list[list[_Span]], chunk: int, files: list[_File], tmp: str, lock_fd: int
    ) -> None:
        self.side = tmp[: -len(".tmp")] + "-upper.tmp"
        index = {id(f): i for i, f in enumerate(files)}
        finished = [index[id(sp.file)] for c in spans for sp in c]
        self.files = files
        parent = os.getpid()
        rfd, wfd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child, which reports through the pipe
            code = 1
            try:
                os.close(rfd)
                _drop_locks(files, {id(sp.file) for c in spans for sp in c}, lock_fd)
                sub = MergeReport("")
                out = create_exclusive(self.side, os.O_WRONLY, 0o600)
                readers = [_Reader(c, chunk, sub, _Progress(0, None)) for c in spans]
                records = _merge_into(readers, out, alive=lambda: os.getppid() == parent)
                os.close(out)
                result = {
                    "records": records,
                    "problems": [[p.path, p.lineno, p.message] for p in sub.problems],
                    "warnings": [[p.path, p.lineno, p.message] for p in sub.warnings],
                    "files": {i: [files[i].end, files[i].complete, files[i].damaged] for i in finished},
                }
                _write_all(wfd, json.dumps(result).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        self.rfd = rfd

    def finish(self, fd: int, report: MergeReport) -> int:
        """Wait for the worker, take over its findings, append its output to ``fd``.

        What the worker has written so far is copied while it is still merging: it only
        appends to the side file, so every byte below the file's current size is final.
        """
        chunks = []
        side = -1
        copied = synced = 0
        # poll, not select: the descriptor may be above FD_SETSIZE (many shards held open).
        pipe = select.poll()
        pipe.register(self.rfd, select.POLLIN)
        try:
            while True:
                if side < 0:
                    try:
                        side = os.open(self.side, READ)
                    except FileNotFoundError:
                        pass  # the worker has not created it yet
                if side >= 0:
                    copied += _copy_range(side, fd, copied, os.fstat(side).st_size - copied)
                    if copied - synced >= _SYNC_STEP:
                        # Make it durable now rather than all at once at the end.
                        os.fsync(fd)
                        synced = copied
                # The worker writes its findings and exits: end of file on the pipe.
                if pipe.poll(5):
                    data = os.read(self.rfd, 1 << 16)
                    if not data:
                        break
                    chunks.append(data)
            os.close(self.rfd)
            self.rfd = -1
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            if status != 0 or not chunks:
                raise OSError(f"the merge worker process failed (wait status {status})")
            if side < 0:
                side = os.open(self.side, READ)
            size = os.fstat(side).st_size
            while copied < size:
                n = _copy_range(side, fd, copied, size - copied)
                if n <= 0:
                    raise OSError(f"{self.side} ended early")
                copied += n
        finally:
            if side >= 0:
                os.close(side)
        result = json.loads(b"".join(chunks))
        report.problems += [Problem(*p) for p in result["problems"]]
        report.warnings += [Problem(*p) for p in result["warnings"]]
        for i, (end, complete, damaged) in result["files"].items():
            f = self.files[int(i)]
            f.end, f.complete, f.damaged = end, complete, damaged or f.damaged
        os.unlink(self.side)
        return int(result["records"])

    def kill(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0
        if self.rfd >= 0:
            os.close(self.rfd)
            self.rfd = -1
        try:
            os.unlink(self.side)
        except FileNotFoundError:
            pass


# -- the state file (journal) -----------------------------------------------------------------


def _load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("unknown version")
        return state
    except FileNotFoundError:
        return {"version": 1, "output": None, "offsets": {}, "pending": None}
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read the merge state {path}: {exc}; move it aside to start over") from None


def _save_state(path: str, state: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as f:
        f.write(json.dumps(state, indent=1, sort_keys=True).encode())


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_range(src: int, fd: int, offset: int, count: int) -> int:
    """Append up to ``count`` bytes of ``src`` from ``offset`` to ``fd``; bytes copied."""
    if count <= 0:
        return 0
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(src, fd, count, offset)
        except OSError:
            pass  # not supported here (old kernel, some file systems): copy below
    data = os.pread(src, min(count, 1 << 20), offset)
    _write_all(fd, data)
    return len(data)


def _append_file(fd: int, src: IO[bytes]) -> None:
    """Append all of ``src`` to ``fd``; in the kernel where it can (no copy through Python,
    a reflink on file systems that have them)."""
    if hasattr(os, "copy_file_range"):
        try:
            n = os.copy_file_range(src.fileno(), fd, 1 << 30)
        except OSError:
            n = -1  # not supported here (old kernel, some file systems): copy below
        if n >= 0:
            while n:
                n = os.copy_file_range(src.fileno(), fd, 1 << 30)
            return
    while True:
        data = src.read(1 << 20)
        if not data:
            break
        _write_all(fd, data)


def _output_id(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def _recover(state: dict[str, Any], output: str, statefile: str, report: MergeReport) -> None:
    """Finish or undo the merge a crash interrupted (see the module docstring)."""
    pending = state.get("pending")
    if not pending:
        return
    try:
        st = os.stat(output)
        replaced = [st.st_dev, st.st_ino, st.st_size] == pending["output"]
    except FileNotFoundError:
        replaced = False
    if replaced:
        offsets = pending["offsets"]
        for op, path, size, ident in pending["actions"]:
            if not _apply(op, path, size, report):
                # The file changed after that merge (a new process with a reused pid appended):
                # keep it, and remember that its first ``size`` bytes are merged.
                offsets[ident] = {"offset": size, "name": path}
        state["offsets"] = offsets
        state["output"] = pending["output"][:2]
    else:
        try:
            os.unlink(pending["tmp"])
        except FileNotFoundError:
            pass
    state["pending"] = None
    _save_state(statefile, state)


def _apply(op: str, path: str, size: int, report: MergeReport, fd: int = -1) -> bool:
    """Remove (``rm``) or move aside (``mv``) a merged file, if it is still what was merged.

    ``fd``, when given, is this merge's descriptor of the file, already holding ``LOCK_EX``.
    """
    own = fd < 0
    if own:
        try:
            fd = os.open(path, READ)
        except FileNotFoundError:
            return True
    try:
        if own and not try_lock(fd, LOCK_EX):
            return False
        if os.fstat(fd).st_size != size:
            return False
        try:
            if op == "rm":
                os.unlink(path)
                report.removed.append(path)
            else:
                dest = path + DAMAGED_SUFFIX
                i = 1
                while os.path.exists(dest):
                    i += 1
                    dest = f"{path}{DAMAGED_SUFFIX}.{i}"
                os.rename(path, dest)
                report.moved.append((path, dest))
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Merged but still there (no write permission on the directory): the caller
            # records it as merged up to ``size`` so a re-run does not merge it again.
            verb = "remove" if op == "rm" else "move aside"
            report.problems.append(Problem(path, 0, f"merged, but cannot {verb}: {exc.strerror or exc}"))
            return False
        return True
    finally:
        if own:
            os.close(fd)


# -- the merge --------------------------------------------------------------------------------

def merge(
    logfile: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    keep: bool = False,
    include_live: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Merge the shards of the ``per-process`` log ``logfile`` into ``output`` (default: the
    log path itself), appending one time-ordered batch after what the output already holds.

    Finished shards are removed once the output is durable (``keep=True`` leaves them; a
    re-run then skips what was merged). Live shards are skipped, or with ``include_live``
    read up to their last complete record and left in place. Damaged input is reported in
    :attr:`MergeReport.problems` (file and line); every good record is still merged and the
    damaged file is moved aside to ``<name>.damaged`` instead of being removed.
    ``progress(done, total)`` is called now and then with input bytes.
    Raises :class:`MergeError` when the merge cannot run at all.
    """
    log = os.path.abspath(os.fspath(logfile))
    out = os.path.abspath(os.fspath(output)) if output is not None else log
    directory, logname = os.path.split(log)
    if not os.path.isdir(directory):
        raise MergeError(f"no such directory: {directory}")
    if os.path.isdir(out):
        raise MergeError(f"output {out} is a directory")
    if os.path.dirname(out) == directory and parse_shard_name(logname, os.path.basename(out)):
        raise MergeError(f"output {out} is a shard of the log")
    report = MergeReport(out)
    lock_path = out + LOCK_SUFFIX
    try:
        lock_fd = open_lockfile(lock_path, 0o666)
    except OSError as exc:
        raise MergeError(f"cannot create {lock_path}: {exc.strerror or exc}") from None
    chains: list[list[_File]] = []
    try:
        # Two merges at once would each write a batch with the same records.
        if not try_lock(lock_fd, LOCK_EX):
            raise MergeError(f"another merge into {out} is running (it holds {lock_path})")
        # Finish (or undo) a merge that crashed before looking at the shards: its removals
        # change what there is to find.
        state = _load_state(out + STATE_SUFFIX)
        _recover(state, out, out + STATE_SUFFIX, report)
        chains, twins = _discover(directory, logname)
        _run(chains, twins, out, state, report, keep, include_live, progress, lock_fd)
    except OSError as exc:
        raise MergeError(f"merge into {out} failed: {exc}") from None
    finally:
        for chain in chains:
            for f in chain:
                if f.fd >= 0:
                    os.close(f.fd)
                    f.fd = -1
        os.close(lock_fd)
    return report


# On a network file system (see _primitives.fsdetect) a lock may not reach other clients, so a
# shard of another host also counts as live until it has not been written for this long.
_FOREIGN_QUIET = 300.0


def _open_inputs(
    chains: list[list[_File]], offsets: dict[str, Any], include_live: bool, report: MergeReport
) -> int:
    """Open every file, tell live from finished, find what is already merged; total bytes."""
    total = 0
    files = [f for chain in chains for f in chain]
    foreign = [f for f in files if f.host != hostname()]
    netfs = network_fs(files[0].path) if foreign else None
    for f in files:
        try:
            if not f.ext:
                f.fd = os.open(f.path, READ)
                # Held until the file is removed: a process that reuses the pid and opens the
                # shard waits for its LOCK_SH, and then finds the path gone (see _perprocess).
                f.live = not try_lock(f.fd, LOCK_EX)
                st = os.fstat(f.fd)
                f.size = st.st_size
                recent = time.time() - st.st_mtime < _FOREIGN_QUIET
                if not f.live and netfs and f.host != hostname() and recent:
                    f.live = True
            else:
                f.size = os.stat(f.path).st_size
            line = _first_line(f)
        except (OSError, _Unreadable) as exc:
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
        f.identity = f"{f.host}.{f.pid}:" + hashlib.blake2b(line, digest_size=8).hexdigest()
        done = offsets.get(f.identity)
        f.start = f.end = int(done["offset"]) if done else 0
        if f.live and not include_live:
            continue
        report.shards.append(f.path)
        total += f.size
    return total


def _run(
    chains: list[list[_File]],
    twins: list[tuple[_File, str]],
    out: str,
    state: dict[str, Any],
    report: MergeReport,
    keep: bool,
    include_live: bool,
    progress_cb: Callable[[int, int], None] | None,
    lock_fd: int,
) -> None:
    statefile = out + STATE_SUFFIX
    out_dir = os.path.dirname(out)
    # Leftovers of a merge that died before its journal entry (its output and side files, and
    # a half-written journal): never part of the output.
    prefix = "." + os.path.basename(out) + TMP_INFIX
    for entry in os.listdir(out_dir):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, entry))
            except OSError:
                pass
    offsets: dict[str, Any] = state.get("offsets") or {}
    if offsets and state.get("output") != _output_id(out):
        # The offsets describe an output that is gone or was replaced by someone else: what
        # the kept shards hold is not in this output, so merge them again from the start.
        offsets = {}

    total = _open_inputs(chains, offsets, include_live, report)
    files = [f for chain in chains for f in chain]
    readable = [[f for f in c if f.identity and (include_live or not f.live)] for c in chains]
    n = max(sum(1 for c in readable if c), 1)
    chunk = max(_CHUNK_MIN, min(_CHUNK_MAX, _BUDGET // n))
    spans = [[_Span(f, f.start) for f in c] for c in readable if c]
    upper = _partition(spans, total)
    if upper:
        total = sum((sp.stop if sp.stop >= 0 else sp.file.size) - sp.start for c in spans for sp in c)
    prog = _Progress(total, progress_cb)
    readers = [_Reader(c, chunk, report, prog) for c in spans if c]

    # Write the temp output: what the output holds now, then this merge's batch.
    tmp, fd = create_temp(out_dir, os.path.basename(out), 0o666, tag=TMP_INFIX[1:])
    try:
        try:
            with open(out, "rb") as old:
                if hasattr(os, "fchmod"):
                    # The merged log keeps the permissions someone gave the old one.
                    os.fchmod(fd, os.fstat(old.fileno()).st_mode & 0o7777)
                _append_file(fd, old)
        except FileNotFoundError:
            pass
        worker = _Worker(upper, chunk, files, tmp, lock_fd) if upper else None
        try:
            report.records = _merge_into(readers, fd)
            if worker is not None:
                # Flush the lower half to disk while the worker may still be busy.
                os.fsync(fd)
                report.records += worker.finish(fd, report)
        finally:
            for r in readers:
                r._close()
            if worker is not None:
                worker.kill()
        os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if progress_cb is not None:
        progress_cb(prog.done, max(total, prog.done))

    # What to do with each input once the output is durable.
    new_offsets = dict(offsets)
    actions: list[tuple[list[Any], int]] = []
    for f in files:
        if f.damaged and not f.identity:
            continue  # unreadable: left where it is, and reported
        if f.live or keep or not f.complete:
            if f.identity and f.end > 0:
                new_offsets[f.identity] = {"offset": f.end, "name": os.path.basename(f.path)}
            continue
        new_offsets.pop(f.identity, None)
        actions.append((["mv" if f.damaged else "rm", f.path, f.size, f.identity], f.fd))
    removed = {a[1] for a, _ in actions}
    for plain, path in twins:
        if plain.path in removed:
            try:
                actions.append((["rm", path, os.stat(path).st_size, ""], -1))
            except OSError:
                pass
    # Forget files that no longer exist under any name.
    present = {f.identity for f in files if f.identity}
    new_offsets = {k: v for k, v in new_offsets.items() if k in present}

    if report.records == 0:
        # Nothing new to write: leave the output alone; what is removed holds no record that
        # is not in the output already.
        os.unlink(tmp)
        for action, held in actions:
            if not _apply(action[0], action[1], action[2], report, held):
                new_offsets[action[3]] = {"offset": action[2], "name": os.path.basename(action[1])}
        if actions:
            fsync_dir(os.path.dirname(actions[0][0][1]))
        if new_offsets != (state.get("offsets") or {}):
            state.update(offsets=new_offsets, pending=None)
            _save_state(statefile, state)
        return

    # The journal entry, then the commit point (the replace), then the removals.
    state["pending"] = {
        "tmp": tmp,
        "output": [st.st_dev, st.st_ino, st.st_size],
        "offsets": new_offsets,
        "actions": [a for a, _ in actions],
    }
    _save_state(statefile, state)
    os.replace(tmp, out)
    fsync_dir(out_dir)
    for action, held in actions:
        if not _apply(action[0], action[1], action[2], report, held):
            new_offsets[action[3]] = {"offset": action[2], "name": os.path.basename(action[1])}
    if actions:
        fsync_dir(os.path.dirname(actions[0][0][1]))
    _save_state(
        statefile,
        {"version": 1, "output": [st.st_dev, st.st_ino], "offsets": new_offsets, "pending": None},
    )
