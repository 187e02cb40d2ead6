"""Using a second core: the key range is split at a record boundary in every shard, a forked
worker merges the upper part into a side file, and the two parts are concatenated (this process
copies what the worker has written while the worker is still merging); the bytes are the same
as from one process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
from typing import Any

from .._primitives.fileio import READ_NOFOLLOW, create_exclusive
from .._primitives.shard import LINE_HEADER_RE
from . import output
from .discovery import File, pread, reopen
from .reader import Progress, Reader, Span
from .report import MergeReport, Problem

__all__ = ["partition", "Worker", "PARALLEL_MIN", "split_offset"]

# Below this much input a second process costs more than it saves.
PARALLEL_MIN = 32 << 20
# The share of the input this process merges itself when a worker takes the rest. Less than
# half: after its own part this process fsyncs it and copies the worker's output, and that
# copying overlaps the worker's last stretch of merging instead of following it.
_OWN_SHARE = 0.45
# While waiting for the worker, the copy of its output is fsynced every this many bytes.
_SYNC_STEP = 16 << 20
# What the worker sends once it holds nothing of its parent's (see Worker.__init__); its
# findings follow on the same pipe.
_READY = b"."


def _first_record_at(f: File, pos: int, limit: int) -> tuple[int, bytes] | None:
    """(offset, key) of the first record of plain file ``f`` that starts in [pos, limit)."""
    while pos < limit:
        lo = pos - 1
        data = pread(f, min(limit + 64, pos + (1 << 16)) - max(lo, 0), max(lo, 0))
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


def split_offset(f: File, t: bytes, start: int, stop: int) -> int:
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
    data = pread(f, min(hi + 64, stop) - max(lo - 1, 0), max(lo - 1, 0))
    if lo == 0:
        data = b"\n" + data
    for m in LINE_HEADER_RE.finditer(data):
        at = lo + m.start()
        if lo <= at < hi and m.group(1) >= t:
            return at
    return best


def partition(spans: list[list[Span]], total: int) -> list[list[Span]]:
    """Split the key range in two at the median key of points ``_OWN_SHARE`` into the files:
    this process merges the lower part, a forked worker the upper part; their outputs are
    concatenated.

    Only for plain files (a compressed stream cannot be entered in the middle), enough input,
    two CPUs, and no other thread (fork copies one thread; locks held by others stay held).
    Returns the worker's spans, and cuts ``spans`` down to this process's share.
    """
    files = [sp.file for c in spans for sp in c]
    if (
        total < PARALLEL_MIN
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
    upper: list[list[Span]] = []
    lower_bytes = 0
    cuts = []
    for chain in spans:
        up = []
        for sp in chain:
            cut = split_offset(sp.file, t, sp.start, sp.file.size)
            cuts.append((sp, cut))
            lower_bytes += cut - sp.start
            if cut < sp.file.size:
                up.append(Span(sp.file, cut))
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


def _drop_locks(files: list[File], needed: set[int], lock_fd: int) -> None:
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
            f.fd = reopen(f)
        os.close(inherited)


class Worker:
    """The forked process that merges the upper half into a side file."""

    def __init__(
        self, spans: list[list[Span]], chunk: int, files: list[File], side: str, lock_fd: int
    ) -> None:
        self.side = side
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
                os.write(wfd, _READY)
                readers = [Reader(c, chunk, sub, Progress(0, None)) for c in spans]
                records = output.merge_into(readers, out, alive=lambda: os.getppid() == parent)
                os.close(out)
                result = {
                    "records": records,
                    "problems": [[p.path, p.lineno, p.message] for p in sub.problems],
                    "warnings": [[p.path, p.lineno, p.message] for p in sub.warnings],
                    "files": {i: [files[i].end, files[i].complete, files[i].damaged] for i in finished},
                }
                output.write_all(wfd, json.dumps(result).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        self.rfd = rfd
        # Until the worker has let go of the inherited locks, this merge's death would leave
        # them held by a process that may not even have been scheduled yet: a re-run would find
        # "another merge running". Its side file exists by then too, so a re-run removes it as a
        # leftover. (An empty read: the worker failed; finish() reports it.)
        os.read(rfd, len(_READY))

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
                        side = os.open(self.side, READ_NOFOLLOW)
                    except FileNotFoundError:
                        pass  # the worker has not created it yet
                if side >= 0:
                    copied += output.copy_range(side, fd, copied, os.fstat(side).st_size - copied)
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
                side = os.open(self.side, READ_NOFOLLOW)
            self._copy_rest(side, fd, copied)
        finally:
            if side >= 0:
                os.close(side)
        result = json.loads(b"".join(chunks))
        self._take(result, report)
        os.unlink(self.side)
        return int(result["records"])

    def _copy_rest(self, side: int, fd: int, copied: int) -> None:
        """Append what the finished worker wrote to the side file after ``copied``."""
        size = os.fstat(side).st_size
        while copied < size:
            n = output.copy_range(side, fd, copied, size - copied)
            if n <= 0:
                raise OSError(f"{self.side} ended early")
            copied += n

    def _take(self, result: dict[str, Any], report: MergeReport) -> None:
        """The worker's findings: its problems and warnings, and how far each file was merged."""
        report.problems += [Problem(*p) for p in result["problems"]]
        report.warnings += [Problem(*p) for p in result["warnings"]]
        for i, (end, complete, damaged) in result["files"].items():
            f = self.files[int(i)]
            f.end, f.complete, f.damaged = end, complete, damaged or f.damaged

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
