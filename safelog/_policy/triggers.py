"""Rotation triggers: what makes a log file due for rotation.

A trigger answers two questions: is the file due (:meth:`due`), and how much room is left before
it will be: a size (:attr:`SizeTrigger.limit`) or an instant (:meth:`TimeTrigger.end`). The
strategies keep the second answer beside the open file, worked out once per file, so that the
per-record test is a comparison (``size + n >= limit``, ``created >= period_end``); only a record
that passes it asks :meth:`due`. Each trigger is a value: no file is read here.

A new trigger (retention by total size, a start-up rotation) is a class here with ``kind``,
``due`` and its "room left", and a line in :meth:`.rotation.RotationPolicy._compile`.
"""

from __future__ import annotations

import math
from typing import ClassVar

from .timing import TimePolicy

__all__ = ["SIZE", "TIME", "SizeTrigger", "TimeTrigger", "UNKNOWN"]

# Trigger kinds: which trigger found the file due (0: none).
SIZE = 1
TIME = 2

# The end of a period not worked out yet (a file just opened): before it, every record takes
# the strategy's slow path, which works it out from the file.
UNKNOWN = -math.inf


class SizeTrigger:
    """Due when a record would bring a non-empty file to ``limit`` bytes or past it
    (``RotatingFileHandler``'s ``pos + len(msg) >= maxBytes``)."""

    kind: ClassVar[int] = SIZE
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def due(self, size: int, nbytes: int) -> bool:
        # An empty file is never due (the stdlib's rule since 3.13, gh-116263, followed on every
        # version): a single record larger than the limit is written whole instead of
        # producing an endless series of empty files.
        return size > 0 and size + nbytes >= self.limit


class TimeTrigger:
    """Due when a record's time reaches the end of the file's period (see :mod:`.timing`)."""

    kind: ClassVar[int] = TIME
    __slots__ = ("timing", "started")

    def __init__(self, timing: TimePolicy, started: float | None = None) -> None:
        self.timing = timing
        # When the handler was built: the stdlib works out its first boundary then, from the
        # clock when the log is new or empty (delay=True included), not at the first record.
        self.started = started

    def due(self, created: float, period_end: float) -> bool:
        return created >= period_end and self.timing.now(created) >= period_end

    def end(self, period: float | None) -> float:
        """When the file of ``period`` is due; :data:`UNKNOWN` for a period not known yet."""
        return UNKNOWN if period is None else self.timing.end(period)

    def start_period(self, mtime: float | None, created: float) -> float:
        """The period of a file last written at ``mtime`` (None: empty or missing), found by a
        record at ``created``: an existing file belongs to the period of its last write (as the
        stdlib reads its mtime at start-up), an empty one to the period that starts now."""
        timing = self.timing
        now = timing.now(created)
        if not timing.aligned and self.started is not None:
            now = min(now, self.started)
        return timing.first(now, mtime)

    def following(self, created: float) -> float:
        """The period of the file a time rotation at ``created`` starts."""
        return self.timing.following(self.timing.now(created))
