"""Writing the merged output: the k-way merge step that emits records in blocks, and the copy
helpers for the second core's side file."""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from functools import partial

from .._primitives.shard import CONT, unframe
from .reader import Progress, Reader, Span, chunk_size
from .report import MergeReport

__all__ = ["merge_into", "write_spans", "write_all", "copy_range", "BLOCK"]

# Records per output write (about 50 KiB for records of 100 bytes).
BLOCK = 512
# A block larger than this is written record by record, a window of this size at a time.
_LARGE = 256 << 10
_NL = 0x0A


def merge_into(readers: list[Reader], fd: int, alive: Callable[[], bool] | None = None) -> int:
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
        texts: list[bytes | bytearray] = []
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
            _write_sorted(fd, texts)
        for r in active:
            if not r.done and (r.bound == m or r.pos >= len(r.keys)):
                r.fill()
        active = [r for r in active if not r.done or r.pos < len(r.keys)]
    return records


def _write_sorted(fd: int, texts: list[bytes | bytearray]) -> None:
    """Write one step's sorted records, their framing taken off."""
    # Written in blocks of BLOCK records: the allocator reuses memory of that size, while every
    # larger block is fresh memory from the kernel (page faults).
    for a in range(0, len(texts), BLOCK):
        # Texts keep the continuation framing ("\n\t" + line); no text starts with a tab, so
        # every "\n\t" of the block is framing. Empty ends put a line break before the first
        # text (a tab that starts a text is doubled, see _decode_slow) and after the last.
        block_texts = texts[a : a + BLOCK]
        if sum(map(len, block_texts)) > _LARGE:
            # A record of megabytes: written a window at a time, not joined and unframed whole
            # (two more copies of it).
            for text in block_texts:
                _write_unframed(fd, text)
            continue
        part: list[bytes | bytearray] = [b""]
        part += block_texts
        part.append(b"")
        # (sub returns the block itself when there is nothing to replace)
        block = unframe(b"\n".join(part))
        write_all(fd, memoryview(block)[1:])


def _write_unframed(fd: int, text: bytes | bytearray) -> None:
    """Write one framed text and its line end as a block would, a window at a time."""
    view = memoryview(text)
    # A text that starts with a tab had it doubled (see Reader._decode_slow); in a block the
    # line break before it makes the pair framing.
    start = 1 if text[:1] == CONT else 0
    end = len(text)
    while start < end:
        stop = min(end, start + _LARGE)
        if text[stop - 1] == _NL:
            stop += 1  # a line break and the tab after it stay in one window
        write_all(fd, unframe(bytes(view[start:stop])))
        start = stop
    write_all(fd, b"\n")


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_range(src: int, fd: int, offset: int, count: int) -> int:
    """Append up to ``count`` bytes of ``src`` from ``offset`` to ``fd``; bytes copied.

    Through a buffer: ``copy_file_range``, ``sendfile`` and ``splice`` all refuse a target
    opened with ``O_APPEND``, which the merged log is. The copy overlaps the worker's merging.
    """
    if count <= 0:
        return 0
    data = os.pread(src, min(count, 1 << 20), offset)
    write_all(fd, data)
    return len(data)


def write_spans(spans: list[list[Span]], fd: int, report: MergeReport, alive: Callable[[], bool] | None = None) -> int:
    """Merge ``spans`` (from :meth:`.live.LiveMerge.plan`) into ``fd``; the number of records."""
    if not spans:
        return 0
    readers = [Reader(c, chunk_size(len(spans)), report, Progress(0, None)) for c in spans]
    try:
        return merge_into(readers, fd, alive)
    finally:
        for r in readers:
            r.close()
