"""Rotating, compressing and pruning the merged log, with the handler's policy values.

``max_bytes``, ``backup_count``, ``compress`` and ``retention`` are parsed by the handler's own
parsers and carried out by the handler's own rotation policy (``_policy.rotation.Rollover``):
the merged log's backups are named, shifted, compressed and pruned exactly like a handler's
(``app.log.1`` newest … ``app.log.N``, ``.gz`` when compressed). This is the one place merge
uses the policy layer.

When: at the start of a merge, before its batch is appended, if the batch would take a
non-empty merged log past ``max_bytes`` (the batch counted as the input bytes it is read from,
a little more than it adds for plain shards). A batch is never split across files, and the
rename happens long after the previous batch was appended: a shipper that follows the log by
name has read it to its end. Everything runs under the merge lock: only a merge writes,
rotates or prunes the merged log. Compression runs in the policy's background worker, and the
merge waits for it before it returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from .._policy import compress as _compress
from .._policy.compress import parse_compress
from .._policy.options import check_int, parse_duration, parse_size
from .._policy.rotation import SIZE, Rollover, RotationHooks
from .._primitives.codec import Codec
from .report import MergeReport, Problem

__all__ = ["OutputPolicy", "parse_policy", "Rotator"]

# How long a merge waits for the compression of the merged log's backups (a worker stuck on a
# lock that a hung process holds must not keep the merge from returning).
_COMPRESS_WAIT = 300.0


@dataclass(frozen=True)
class OutputPolicy:
    """How the merged log is bounded: parsed once, before a merge starts."""

    max_bytes: int
    backup_count: int
    codec: Codec | None
    max_age: float | None


def parse_policy(max_bytes: Any, backup_count: Any, compress: Any, retention: Any) -> OutputPolicy | None:
    """The merged log's rotation policy from the handler's option values, or None for none.

    Raises ValueError/TypeError naming the option, as the handler does."""
    size = parse_size("max_bytes", max_bytes)
    count = check_int("backup_count", 0 if backup_count is None else backup_count)
    codec = parse_compress(compress)
    max_age = None if retention is None else parse_duration("retention", retention, positive=True)
    if size == 0 and count == 0:
        if codec is not None or max_age is not None:
            what = f"compress={compress!r}" if codec is not None else f"retention={retention!r}"
            raise ValueError(f"{what} applies to rotated merged logs: give max_bytes and backup_count too")
        return None
    if size == 0 or count == 0:
        # The handler follows the stdlib here (either one zero: never rotate); a merge has no
        # such legacy, and a limit that silently does nothing helps nobody.
        raise ValueError(
            f"rotating the merged log needs both max_bytes and backup_count (>= 1); "
            f"got max_bytes={max_bytes!r}, backup_count={backup_count!r}"
        )
    return OutputPolicy(size, count, codec, max_age)


def _hooks(path: str, report: MergeReport) -> RotationHooks:
    """What the rotation policy asks of the handler that owns a log, answered for the merged
    log: default backup names, a plain rename, and errors into the merge's report."""

    def report_error(record: logging.LogRecord) -> None:
        report.problems.append(Problem(path, 0, record.getMessage()))

    return RotationHooks(name=lambda name: name, move=os.replace, plain=lambda: True, report=report_error)


class Rotator:
    """The rotation policy applied to one merged log, within one merge."""

    def __init__(self, policy: OutputPolicy, path: str, report: MergeReport) -> None:
        self.path = path
        self.report = report
        self._rollover = Rollover(
            _hooks(path, report), policy.max_bytes, policy.backup_count, None, policy.codec, policy.max_age
        )
        self._active = policy.codec is not None or policy.max_age is not None

    def due(self, size: int, incoming: int) -> bool:
        """Whether a batch of about ``incoming`` bytes must go to a new file."""
        return bool(self._rollover.due(size, incoming, time.time()))

    def rotate(self, size: int) -> str | None:
        """Shift the backups and rename the merged log to the first one; its name, or None if
        the rename failed (reported; the batch then goes to the current file)."""
        done = self._rollover.rollover(self.path, SIZE, size, None, time.time())
        return done[1] if done is not None else None

    def tidy(self, rotated: bool, wait: bool = True) -> None:
        """Retention and compression of the backups (also those a crash left uncompressed);
        returns when the compression, and the removal of backups shifted out, is done (or at
        once without ``wait``: a live merge goes on while they run)."""
        if self._active:
            self._rollover.after_rollover(self.path, time.time(), contextlib.nullcontext)
        elif not rotated:
            return
        if not wait:
            _compress.start_worker()
            return
        if not _compress.wait(_COMPRESS_WAIT):
            self.report.warnings.append(Problem(self.path, 0, "compression of its backups goes on in the background"))
