"""Rotating, compressing and pruning the merged log, with the handler's policy values.

``max_bytes``, ``backup_count``, ``compress`` and ``retention`` are parsed by the handler's own
parsers and carried out by the handler's own rotation policy (``_policy.rotation.RotationPolicy``):
the merged log's backups are named, shifted, compressed and pruned exactly like a handler's
(``app.log.1`` newest … ``app.log.N``, ``.gz`` when compressed). This is the one place merge
uses the policy layer.

When: at the start of a merge, before its batch is appended, if the batch would take a
non-empty merged log to ``max_bytes`` or past it (the batch counted as the input bytes it is read from,
a little more than it adds for plain shards). A batch is never split across files, and the
rename happens long after the previous batch was appended: a shipper that follows the log by
name has read it to its end. Everything runs under the merge lock: only a merge writes,
rotates or prunes the merged log. Compression runs in the policy's background worker, and the
merge waits for it before it returns. ``merge --follow`` does not wait: it rotates again while
a backup may still be compressing, so a rotation and the compressor's last step (find the
backup's name now, put the ``.gz`` there, remove the plain file) exclude each other, as a
handler's rotation and its compressor do.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from .._policy.compress import parse_compress
from .._policy.compressor import COMPRESSOR
from .._policy.config import RotationConfig
from .._policy.options import check_int, parse_duration, parse_size
from .._policy.rotation import SIZE, RotationHooks, RotationPolicy
from .report import MergeReport, Problem

__all__ = ["parse_policy", "Rotator"]

# How long a merge waits for the compression of the merged log's backups (a worker stuck on a
# lock that a hung process holds must not keep the merge from returning).
_COMPRESS_WAIT = 300.0


# The option names messages use: the function's keywords, or (the CLI) its own option names.
KEYWORDS = {"max_bytes": "max_bytes", "backup_count": "backup_count", "compress": "compress", "retention": "retention"}


def parse_policy(
    max_bytes: Any, backup_count: Any, compress: Any, retention: Any, *, names: Mapping[str, str] = KEYWORDS
) -> RotationConfig | None:
    """How the merged log is bounded, from the handler's option values, parsed once before a
    merge starts; None for not at all.

    Raises ValueError/TypeError naming the option as ``names`` spell it, as the handler does."""
    mb, bc, co, re_ = names["max_bytes"], names["backup_count"], names["compress"], names["retention"]
    size = parse_size(mb, max_bytes)
    # The handler follows the stdlib (either one zero: never rotate); a merge has no such
    # legacy, and a limit that silently does nothing helps nobody: each needs the other.
    if size and backup_count is None:
        raise ValueError(f"{_spell(mb, max_bytes)} needs {bc} too: the number of backups to keep (>= 1)")
    count = check_int(bc, 0 if backup_count is None else backup_count, minimum=1 if size else 0)
    if count and not size:
        raise ValueError(f"{_spell(bc, backup_count)} needs {mb} too: the size to rotate at")
    codec = parse_compress(compress, co)
    max_age = None if retention is None else parse_duration(re_, retention, positive=True)
    if size == 0:
        if codec is not None or max_age is not None:
            what = _spell(co, compress) if codec is not None else _spell(re_, retention)
            raise ValueError(f"{what} applies to rotated merged logs: give {mb} and {bc} too")
        return None
    return RotationConfig(max_bytes=size, backup_count=count, codec=codec, max_age=max_age)


def _spell(name: str, value: Any) -> str:
    """An option and its value as the user wrote them: ``--max-bytes '1 MB'`` or ``max_bytes=1``."""
    return f"{name} {value!r}" if name.startswith("--") else f"{name}={value!r}"


def _hooks(path: str, report: MergeReport) -> RotationHooks:
    """What the rotation policy asks of the handler that owns a log, answered for the merged
    log: default backup names, a plain rename, and errors into the merge's report."""

    def report_error(record: logging.LogRecord) -> None:
        report.problems.append(Problem(path, 0, record.getMessage()))

    return RotationHooks(name=lambda name: name, move=os.replace, plain=lambda: True, report=report_error)


class Rotator:
    """The rotation policy applied to one merged log, within one merge."""

    def __init__(self, config: RotationConfig, path: str, report: MergeReport) -> None:
        self.path = path
        self.report = report
        self._policy = RotationPolicy(config, _hooks(path, report))
        self._active = config.codec is not None or config.max_age is not None
        # Held while the backups are shifted, and by the compressor around its last step:
        # otherwise it found app.log.1, the shift moved that backup to app.log.2 and the merged
        # log to app.log.1, and the compressor put the old records into app.log.1.gz and removed
        # the new file (records lost, others twice).
        self._renaming = threading.Lock()

    def due(self, size: int, incoming: int) -> bool:
        """Whether a batch of about ``incoming`` bytes must go to a new file."""
        return bool(self._policy.due(size, incoming, time.time(), math.inf))

    def rotate(self, size: int) -> str | None:
        """Shift the backups and rename the merged log to the first one; its name, or None if
        the rename failed (reported; the batch then goes to the current file)."""
        with self._renaming:
            done = self._policy.rotate(self.path, SIZE, size, None, time.time())
        return done[1] if done is not None else None

    def tidy(self, rotated: bool, wait: bool = True) -> None:
        """Retention and compression of the backups (also those a crash left uncompressed);
        returns when the compression, and the removal of backups shifted out, is done (or at
        once without ``wait``: a live merge goes on while they run)."""
        if self._active:
            # Under the exclusion too, as a handler runs it: retention and the cleanup of a dead
            # compressor's leftovers must not meet a compressor's last step either.
            with self._renaming:
                self._policy.after_rotation(self.path, time.time(), lambda: self._renaming)
        elif not rotated:
            return
        if not wait:
            COMPRESSOR.start()
            return
        if not COMPRESSOR.wait(_COMPRESS_WAIT):
            self.report.warnings.append(Problem(self.path, 0, "compression of its backups goes on in the background"))
