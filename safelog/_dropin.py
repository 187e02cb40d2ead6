"""The drop-in classes: safelog's handler under the names and signatures of the stdlib's file
handlers, and one class per strategy (``ThreadFileHandler`` & co.)."""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import math
import os
import re
import time
from typing import Any, ClassVar

from ._closed import ClosedStrategy
from ._handler import SafeFileHandler
from ._policy.config import UNSET
from ._policy.timing import TimePolicy
from ._sinks.strategy import last_write, rotates

__all__ = [
    "ThreadFileHandler",
    "FlockFileHandler",
    "PerProcessFileHandler",
    "FileHandler",
    "WatchedFileHandler",
    "RotatingFileHandler",
    "TimedRotatingFileHandler",
]


class ThreadFileHandler(SafeFileHandler):
    """``strategy="thread"``: the threads of one process share one file and one lock."""

    default_strategy: ClassVar[str] = "thread"


class FlockFileHandler(SafeFileHandler):
    """``strategy="flock"``: many processes on one machine append to one file under a lock file."""

    default_strategy: ClassVar[str] = "flock"


class PerProcessFileHandler(SafeFileHandler):
    """``strategy="per-process"``: each process writes its own shard; merge them afterwards."""

    default_strategy: ClassVar[str] = "per-process"


# The drop-ins: the stdlib class's signature, positional and keyword, plus every safelog keyword
# (strategy, compress, ...); instances of the stdlib class they replace, so that code finding log
# files with isinstance(h, logging.FileHandler) still finds them. Safe across processes by
# default (flock); strategy= picks another.


class FileHandler(SafeFileHandler):
    """Drop-in for ``logging.FileHandler`` (no rotation), safe across threads and processes."""

    _watch: ClassVar[bool] = False  # the default of watch=; WatchedFileHandler's is True

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("watch", self._watch)
        super().__init__(filename, mode, encoding=encoding, delay=delay, errors=errors, **options)


class WatchedFileHandler(FileHandler, logging.handlers.WatchedFileHandler):
    """Drop-in for ``logging.handlers.WatchedFileHandler``: before every record, checks that the
    path still names the open file (moved or deleted by logrotate, say) and reopens it if not."""

    _watch = True

    def reopenIfNeeded(self) -> None:
        """The check runs in the strategy, under its lock, on every record; nothing to do here."""

    def _statstream(self) -> None:
        pass

    # The stdlib sets these when it opens the file; here they are read from the file open now
    # (the strategy reopens it, not this class).
    @property
    def dev(self) -> int:  # type: ignore[override]
        """The device of the file the handler writes now; -1 when it has none open."""
        return self._identity()[0]

    @property
    def ino(self) -> int:  # type: ignore[override]
        """The inode of the file the handler writes now; -1 when it has none open."""
        return self._identity()[1]

    def _identity(self) -> tuple[int, int]:
        strategy = self._strategy
        return (-1, -1) if isinstance(strategy, ClosedStrategy) else strategy.identity()


class RotatingFileHandler(SafeFileHandler, logging.handlers.RotatingFileHandler):
    """Drop-in for ``logging.handlers.RotatingFileHandler``: rotates exactly once however many
    processes share the file (``flock`` by default)."""

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        maxBytes: int | str = 0,
        backupCount: int = 0,
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        # The stdlib defaults are 0; max_bytes=/backup_count= may then stand in for them.
        size = UNSET if maxBytes == 0 and "max_bytes" in options else maxBytes
        count = UNSET if backupCount == 0 and "backup_count" in options else backupCount
        super().__init__(filename, mode, size, count, encoding, delay, errors, **options)


class TimedRotatingFileHandler(  # type: ignore[misc]  # when: str | None in SafeFileHandler
    SafeFileHandler, logging.handlers.TimedRotatingFileHandler
):
    """Drop-in for ``logging.handlers.TimedRotatingFileHandler``: the boundaries of the running
    interpreter's stdlib (``computeRollover``, the log's mtime at start-up), rotation exactly once
    across processes (with ``flock`` every process learns the boundary from the lock file).

    ``interval`` reads as the period in seconds, as in the stdlib. ``suffix`` and ``extMatch``
    may be changed after construction, as the stdlib allows: backups are then named with the
    new ``strftime`` suffix, recognised by ``extMatch`` (or a pattern made from the suffix) and
    ordered by the time they name.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        when: str = "h",
        interval: int = 1,
        backupCount: int = 0,
        encoding: str | None = None,
        delay: bool = False,
        utc: bool = False,
        atTime: datetime.time | str | None = None,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        if options.get("rotate_every") is not None:
            raise ValueError(
                f"rotate_every={options['rotate_every']!r} replaces when/interval; give when= to "
                f"TimedRotatingFileHandler, or use SafeFileHandler(rotate_every=...)"
            )
        super().__init__(
            filename, backupCount=backupCount, encoding=encoding, delay=delay, errors=errors,
            when=when, interval=interval, utc=utc, atTime=atTime, **options,
        )  # fmt: skip

    def _policy(self) -> TimePolicy:
        trigger = self._rotation.time
        assert trigger is not None
        return trigger.timing

    @property
    def interval(self) -> int:
        """The period in seconds, as the stdlib's ``interval`` after construction."""
        return self._policy().step

    @interval.setter
    def interval(self, value: Any) -> None:
        self._fixed("interval")

    @property
    def dayOfWeek(self) -> int:
        """For ``when='W0'``-``'W6'``: the day (0 is Monday), as in the stdlib."""
        when = self._policy().when
        if not when.startswith("W"):
            raise AttributeError(f"dayOfWeek: when={when!r} rotates on no day of the week")
        return int(when[1])

    @dayOfWeek.setter
    def dayOfWeek(self, value: Any) -> None:
        self._fixed("dayOfWeek")

    @property
    def suffix(self) -> str:
        return self._policy().suffix

    @suffix.setter
    def suffix(self, value: str) -> None:
        self._policy().set_suffix(value)

    @property
    def extMatch(self) -> re.Pattern[str]:
        return re.compile(r"^" + self._policy().stamp_re + r"(\.\w+)?$", re.ASCII)

    @extMatch.setter
    def extMatch(self, value: re.Pattern[str] | str) -> None:
        pattern = value.pattern if isinstance(value, re.Pattern) else value
        if not isinstance(pattern, str):
            raise TypeError(f"extMatch must be a regular expression, not {value!r}")
        # The stdlib anchors it and allows a trailing extension; safelog matches the stamp
        # itself and handles compressed extensions on its own.
        pattern = pattern.removeprefix("^").removesuffix("$").removesuffix(r"(\.\w+)?")
        re.compile(pattern)
        timing = self._policy()
        timing.set_suffix(timing.suffix, pattern)

    @property  # read-only: the strategy keeps it (for flock, shared through the lock file)
    def rolloverAt(self) -> int:  # type: ignore[override]
        """When the current file is due, as this process knows it."""
        strategy, now = self._strategy, time.time()
        if isinstance(strategy, ClosedStrategy) or rotates(strategy):
            return math.ceil(strategy.rotates_at(now))
        policy = self._rotation  # a FIFO or device: when a file there would be due
        return math.ceil(policy.period_end(policy.start_period(last_write(-1, strategy.target()), now)))

    def computeRollover(self, currentTime: float) -> Any:
        """The stdlib's ``computeRollover(currentTime)`` of the running interpreter: the
        boundary after a file started at ``currentTime``."""
        return self._policy().compute_rollover(currentTime)

    def getFilesToDelete(self) -> list[str]:
        return self._rotation.files_to_delete(self.baseFilename)
