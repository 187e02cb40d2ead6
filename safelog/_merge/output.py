"""Writing the merged output: the k-way merge step that emits records in blocks, and the copy
helpers for the second core's side file."""

from __future__ import annotations

import os
from bisect import bisect_left
from functools import partial
from typing import Callable

from .._primitives.shard import unframe
from .reader import Reader

__all__ = ["merge_into", "write_all", "copy_range", "BLOCK"]

# Records per output write (about 50 KiB for records of 100 bytes).
BLOCK = 512


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
            # Written in blocks of BLOCK records: the allocator reuses memory of that size,
            # while every larger block is fresh memory from the kernel (page faults).
            for a in range(0, len(texts), BLOCK):
                # Texts keep the continuation framing ("\n\t" + line); no text starts with a
                # tab, so every "\n\t" of the block is framing. Empty ends put a line break
                # before the first text (a tab that starts a text is doubled, see
                # _decode_slow) and after the last.
                part = [b""]
                part += texts[a : a + BLOCK]
                part.append(b"")
                # (sub returns the block itself when there is nothing to replace)
                block = unframe(b"\n".join(part))
                write_all(fd, memoryview(block)[1:])
        for r in active:
            if not r.done and (r.bound == m or r.pos >= len(r.keys)):
                r.fill()
        active = [r for r in active if not r.done or r.pos < len(r.keys)]
    return records


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
