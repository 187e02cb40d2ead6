"""The stdlib's handler attributes (``baseFilename``, ``mode``, ``when`` ...) and safelog's own
option attributes, as views of the handler's parsed configuration.

A copy would go stale: assigning ``handler.interval = 60`` would change the attribute and
nothing else. So each attribute reads the configuration the handler runs with, and assigning
one either takes effect, as in the stdlib (``maxBytes``, ``backupCount``, ``namer``,
``rotator``, ``suffix``, ``extMatch``, ``flush_level``, ``overflow``, ``terminator``), or raises
an ``AttributeError`` that says why: the others are shared by every handler of the file (and,
for rotation, every process), fixed when the handler is built.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any, NoReturn

from ._policy.config import Config, parse_level
from ._policy.options import check_choice

if TYPE_CHECKING:
    from ._policy.timing import TimePolicy

__all__ = ["OptionViews"]


class OptionViews:
    """Mixed into the handler: ``config`` is the :class:`Config` it was built with."""

    config: Config
    # Read by every non-blocking emit(): plain attributes, kept by the setters below.
    _flush_level: int = logging.ERROR
    _drop: bool = False

    def _fixed(self, name: str) -> NoReturn:
        raise AttributeError(
            f"{type(self).__name__}.{name} cannot be changed once the handler is built: it is how "
            f"the file is written, shared by every handler of it; build a new handler with "
            f"{name}= instead"
        )

    def _views_from(self, config: Config) -> None:
        self.config = config
        queue = config.queue
        if queue is not None:
            self._flush_level = queue.flush_level
            self._drop = queue.overflow == "drop"

    @property
    def baseFilename(self) -> str:
        """The log's absolute path, as given (not resolved), as in ``logging.FileHandler``."""
        return self.config.filename

    @baseFilename.setter
    def baseFilename(self, value: Any) -> None:
        self._fixed("baseFilename")

    @property
    def mode(self) -> str:
        """``"a"``, or the ``"w"`` mode as given (``"a"`` when the log rotates by size)."""
        mode: str = self.config.given.get("mode", self.config.file.mode)
        return mode

    @mode.setter
    def mode(self, value: Any) -> None:
        self._fixed("mode")

    @property
    def encoding(self) -> str | None:  # typed as logging.FileHandler's; never None here
        return self.config.file.encoding

    @encoding.setter
    def encoding(self, value: Any) -> None:
        self._fixed("encoding")

    @property
    def errors(self) -> str | None:  # typed as logging.FileHandler's; never None here
        return self.config.file.errors

    @errors.setter
    def errors(self, value: Any) -> None:
        self._fixed("errors")

    @property
    def delay(self) -> bool:
        return self.config.delay

    @delay.setter
    def delay(self, value: Any) -> None:
        self._fixed("delay")

    # -- time rotation (TimedRotatingFileHandler's names) ---------------------------------------

    def _timing(self) -> TimePolicy | None:
        return self.config.rotation.timing

    @property
    def when(self) -> str | None:
        """The stdlib's ``when`` (``"H"``, ``"MIDNIGHT"``, ``"W0"`` ...), upper case; None
        without time rotation."""
        timing = self._timing()
        return None if timing is None else timing.when

    @when.setter
    def when(self, value: Any) -> None:
        self._fixed("when")

    @property
    def interval(self) -> int:
        """How many ``when`` units a period lasts (1 without time rotation)."""
        timing = self._timing()
        return 1 if timing is None else timing.interval

    @interval.setter
    def interval(self, value: Any) -> None:
        self._fixed("interval")

    @property
    def utc(self) -> bool:
        return self.config.rotation.utc

    @utc.setter
    def utc(self, value: Any) -> None:
        self._fixed("utc")

    @property
    def atTime(self) -> datetime.time | None:
        timing = self._timing()
        return None if timing is None else timing.at_time

    @atTime.setter
    def atTime(self, value: Any) -> None:
        self._fixed("atTime")

    # -- safelog's own options ------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        return self.config.strategy

    @strategy.setter
    def strategy(self, value: Any) -> None:
        self._fixed("strategy")

    @property
    def lock_dir(self) -> str | None:
        return self.config.file.lock_dir

    @lock_dir.setter
    def lock_dir(self, value: Any) -> None:
        self._fixed("lock_dir")

    @property
    def merge_on_exit(self) -> bool:
        return self.config.merge_on_exit

    @merge_on_exit.setter
    def merge_on_exit(self, value: Any) -> None:
        self._fixed("merge_on_exit")

    @property
    def escape_newlines(self) -> bool:
        return self.config.escape_newlines

    @escape_newlines.setter
    def escape_newlines(self, value: Any) -> None:
        self._fixed("escape_newlines")

    @property
    def nonblocking(self) -> bool:
        return self.config.queue is not None

    @nonblocking.setter
    def nonblocking(self, value: Any) -> None:
        self._fixed("nonblocking")

    @property
    def reopen_signal(self) -> int | None:
        return self.config.reopen.signal

    @reopen_signal.setter
    def reopen_signal(self, value: Any) -> None:
        self._fixed("reopen_signal")

    @property
    def flush_level(self) -> int:
        """Records at or above this level are written at once (non-blocking mode); assigned
        after construction (a number or a name), it applies from the next record."""
        return self._flush_level

    @flush_level.setter
    def flush_level(self, value: Any) -> None:
        self._flush_level = parse_level("flush_level", value)

    @property
    def overflow(self) -> str:
        """What a full queue does to a record: ``"block"`` (wait) or ``"drop"`` (count it, and
        write a notice later); assigned after construction, it applies from the next record."""
        return "drop" if self._drop else "block"

    @overflow.setter
    def overflow(self, value: Any) -> None:
        self._drop = check_choice("overflow", value, ("block", "drop")) == "drop"
