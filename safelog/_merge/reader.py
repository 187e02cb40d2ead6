"""Decoding one writer's chain of shard files into sorted ``(time, text)`` records, a chunk at a
time, through the shard format's fast chunk reader; what it cannot judge is decoded line by
line, and every damaged line is reported by file and line number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from .._primitives.codec import DECODE_ERRORS
from .._primitives.shard import CONT, HEADER_RE, TIME_LEN, is_time, split_records
from .discovery import File, close_streams, open_decoded, pread
from .report import MergeReport, Problem

__all__ = ["Span", "Reader", "Progress", "chunk_size"]

# Bytes read per shard and step. Memory is about (number of chains) x (two chunks plus the
# Python objects of their records, ~3x the bytes), so the chunk shrinks when there are many
# chains. Larger chunks do not make the merge faster (measured: 1 MiB chunks, same CPU time,
# twice the peak RSS of 256 KiB chunks for 8 shards).
CHUNK_MAX = 256 << 10
CHUNK_MIN = 64 << 10
_BUDGET = 8 << 20
# How many problems of one file are listed one by one; the rest are counted.
_MAX_REPORTED = 10
# A header line longer than this without a line end is not a record being written; it is
# garbage (a binary file, a region of NUL bytes), and is skipped rather than buffered whole.
_MAX_GARBAGE = 1 << 20
# Room in a reader's buffer for the start of a record cut at the end of the previous chunk;
# longer ones are read into a new buffer.
SLACK = 16 << 10
_HAVE_PREADV = hasattr(os, "preadv")
# A line break that starts a record: one not followed by a tab (the end of the buffer counts
# as not a tab; the caller then waits for the next byte).
_RECORD_START = re.compile(rb"\n(?!\t)")
_TAB = CONT[0]


def chunk_size(chains: int) -> int:
    """Bytes each of ``chains`` readers reads per step: memory stays bounded (see CHUNK_MAX)."""
    return max(CHUNK_MIN, min(CHUNK_MAX, _BUDGET // max(chains, 1)))


@dataclass
class Span:
    """The part of one file a reader decodes: decoded offsets ``start`` to ``stop`` (-1: to
    the end). ``cut`` means ``stop`` is a record boundary inside the file where another worker
    goes on, so the span neither finishes the file nor holds back its last record."""

    file: File
    start: int
    stop: int = -1
    cut: bool = False


class Reader:
    """Decodes one chain into sorted (key, text) records, a chunk at a time.

    ``bound`` is a lower bound for every key this reader has not yet produced (the key of the
    record that starts the unread remainder); ``None`` once the chain is exhausted.
    """

    def __init__(self, spans: list[Span], chunk: int, report: MergeReport, progress: Progress) -> None:
        self.spans = spans
        self.report = report
        self.chunk = chunk
        self.progress = progress
        self.keys: list[bytes] = []
        self.texts: list[bytes | bytearray] = []
        self.pos = 0
        self.bound: bytes | None = b""
        self.last = b""
        self.done = not self.spans
        self._i = -1
        self._stream: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._pos = 0  # next pread offset of a plain file
        self._left: bytes | bytearray = b""
        self._offset = 0  # decoded offset of self._left[1:] in the current file
        self._lines_at = (0, 0)  # (decoded offset, line breaks before it): see _line_of
        self._limit = -1
        self._reported = 0
        # The read buffer of plain files: a chunk plus room for a record cut at its end.
        plain = _HAVE_PREADV and any(not sp.file.ext for sp in spans)
        self._buf = bytearray(chunk + SLACK if plain else 0)
        self._view = memoryview(self._buf)
        if not self.done:
            self._next_file()

    # The file being read.
    @property
    def file(self) -> File:
        return self.spans[self._i].file

    def _next_file(self) -> None:
        self.close()
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
                self._stream, self._raw = open_decoded(f)
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

    def close(self) -> None:
        close_streams(self._stream, self._raw)
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
        n = self._room(len(left))
        if n <= 0:
            return left, len(left)
        if self._stream is None and _HAVE_PREADV and len(left) + n <= len(self._buf):
            # pread: the descriptor (and its offset) is shared with a forked worker.
            view = self._view
            view[: len(left)] = left
            try:
                got = os.preadv(self.file.fd, [view[len(left) : len(left) + n]], self._pos)
            except DECODE_ERRORS as exc:
                self._problem(self._line_of(self._offset), f"cannot read further: {exc}")
                return left, len(left)
            self._pos += got
            self._advance(got)
            return self._buf, len(left) + got
        data = self._fetch(n)
        if data is None:
            return left, len(left)
        return left + data, len(left) + len(data)

    def _room(self, pending: int) -> int:
        """How many bytes to read next, with ``pending`` bytes unconsumed: a chunk, or what is
        left of a live shard as far as it was when the merge looked at it."""
        n = self.chunk
        if self._limit >= 0:
            n = min(n, self._limit - self._offset - (pending - 1))
        return n

    def _fetch(self, n: int) -> bytes | None:
        """The next ``n`` bytes at most (b"" at the end of the file), into a new buffer; None
        after a read error (reported)."""
        try:
            if self._stream is None:
                data = pread(self.file, n, self._pos)
                self._pos += len(data)
            else:
                data = self._stream.read(n) or b""
        except DECODE_ERRORS as exc:
            self._problem(self._line_of(self._offset), f"cannot read further: {exc}")
            return None
        self._advance(len(data))
        return data

    def _advance(self, got: int) -> None:
        if self._raw is not None:
            path = self.file.path
            self.progress.advance(self._raw.tell() - self.progress.raw_seen.get(path, 0), path)
        else:
            self.progress.advance(got, self.file.path)

    def fill(self) -> None:
        """Decode the next chunk of the chain into ``keys``/``texts``."""
        if self.done:
            return
        if isinstance(self._left, bytearray) and self._fill_long():
            return
        buf, end = self._read()
        if end > len(self._left):
            # The last record may continue in the next chunk: cut at the last line break that
            # starts a new record (is followed by something other than a tab).
            j = buf.rfind(b"\n", 0, end - 1)
            while j > 0 and buf[j + 1] == _TAB:
                j = buf.rfind(b"\n", 0, j)
            if j <= 0:
                if HEADER_RE.match(buf, 1, end) is not None:
                    # One record longer than a chunk: gathered in place, and only what is read
                    # next is searched for its end (see _fill_long).
                    self._left = bytearray(memoryview(buf)[:end])
                elif end > _MAX_GARBAGE:
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
        self._end_of_file()

    def _end_of_file(self) -> None:
        """The end of this file (or of what a live shard had when the merge started): decode
        what is left, and go on with the next file of the chain."""
        f = self.file
        left = self._left
        if self.spans[self._i].cut:
            # Another worker goes on from here, at a record boundary: what is left is whole.
            if len(left) > 1:
                self._decode_last(left)
        elif len(left) > 1:
            if f.live:
                # Held back: the writer may be in the middle of this record.
                f.end = self._offset
            elif left.endswith(b"\n"):
                f.end = self._offset + len(left) - 1
                f.complete = True
                self._decode_last(left)
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

    def _fill_long(self) -> bool:
        """Go on with a record longer than a chunk (``_left`` is then a bytearray: the line
        break before it, its header and what was read of it so far). Each chunk is searched
        once, and appended in place, so a record costs time and memory linear in its length
        (one copy of it), whatever its length: rescanning and re-copying the whole record per
        chunk made a record four times longer take forty times longer. False at the end of the
        file: ``fill`` finishes it as any last record."""
        left = self._left
        assert isinstance(left, bytearray)
        n = self._room(len(left))
        data = self._fetch(n) if n > 0 else b""
        if not data:
            self._end_of_file()
            return True
        # The record ends at the first line break followed by anything but a tab; a line break
        # at the very end of what was read is decided by the next byte.
        if left[-1] == 0x0A and data[0] != _TAB:
            j = len(left) - 1
            del left[-1:]
            rest = b"\n" + data
        else:
            m = _RECORD_START.search(data)
            if m is None or m.start() + 1 >= len(data):
                left += data
                return True
            k = m.start()
            j = len(left) + k
            left += memoryview(data)[:k]
            rest = data[k:]
        self._decode_long(left)
        self._left = rest
        self._offset += j
        self._set_bound()
        return True

    def _decode_last(self, left: bytes | bytearray) -> None:
        """Decode the records of ``left`` but its final line break (the end of a file)."""
        if isinstance(left, bytearray):
            del left[-1:]
            self._decode_long(left)
        else:
            self._decode(left[:-1])

    def _decode_long(self, record: bytearray) -> None:
        """Decode one long record (the line break before it, its header, its text and
        continuation lines) in place: the bytearray becomes its text."""
        m = HEADER_RE.match(record, 1)
        if m is None:  # pragma: no cover - a long record is only gathered after its header
            self._decode(bytes(record))
            return
        key = m.group(1)
        del record[: m.end()]
        if record[:1] == CONT:
            # As _decode_slow: a leading tab would read as continuation framing in the output.
            record[0:0] = CONT
        self._push([key], [record])

    def _set_bound(self) -> None:
        if self.done:
            self.bound = None
            return
        key = bytes(self._left[1 : 1 + TIME_LEN])
        if len(self._left) > TIME_LEN + 1 and is_time(key):
            self.bound = max(key, self.last)
        else:
            self.bound = self.last

    def _decode(self, part: bytes | memoryview) -> None:
        """Decode complete records (``part`` starts with the line break before its first one)."""
        split = split_records(part)
        keys, texts = split if split is not None else self._decode_slow(bytes(part))
        self._push(keys, texts)

    def _push(self, keys: list[bytes], texts: Sequence[bytes | bytearray]) -> None:
        """Add decoded records (in file order) to the buffered ones."""
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
            stream, raw = open_decoded(f)
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
                raw.close()
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


def _count_lines(f: File, pos: int, upto: int) -> int:
    n = 0
    while pos < upto:
        data = pread(f, min(1 << 20, upto - pos), pos)
        if not data:
            break
        n += data.count(b"\n")
        pos += len(data)
    return n


class Progress:
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
