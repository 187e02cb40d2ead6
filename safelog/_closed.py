"""What a closed handler holds instead of a strategy, and operations deferred from inside
safelog (a signal handler or finalizer interrupting a write)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ._policy.rotation import RotationPolicy
from ._primitives.reentry import defer
from ._primitives.reentry import get_ident as _get_ident
from ._primitives.reentry import inside as _inside
from ._sinks.strategy import Strategy, last_write

__all__ = ["ClosedStrategy", "later"]


class _Reopens(Protocol):
    """What a closed handler is asked (the handler; a protocol, not an import of it)."""

    _rotation: RotationPolicy

    @property
    def baseFilename(self) -> str: ...

    def _reopen(self) -> Strategy: ...


def later(operation: Callable[[], None]) -> bool:
    """True when this thread is inside safelog (a signal handler or finalizer called
    ``operation`` in the middle of a write, maybe holding the lock it needs): it is then done
    when the thread leaves, like a record logged there."""
    me = _get_ident()
    if me not in _inside:
        return False
    defer(me, lambda _: operation(), None)
    return True


class ClosedStrategy:
    """Stands in after close(): the next record reopens the handler (see ``_reopen``).

    Reopening here rather than testing for a closed handler in emit() keeps the hot path as is.
    """

    kind = "closed"

    def __init__(self, handler: _Reopens) -> None:
        self._handler = handler

    def write(self, msg: str, created: float) -> None:
        self._handler._reopen().write(msg, created)

    def write_many(self, items: Any) -> list[tuple[int, Exception]]:
        return self._handler._reopen().write_many(items)

    def write_record(self, render: Any, record: logging.LogRecord) -> None:
        self._handler._reopen().write_record(render, record)

    def rotates_at(self, now: float) -> float:
        # Asked of a closed handler: what a new one would start with (reopening would be a side
        # effect of reading an attribute).
        policy = self._handler._rotation
        return policy.period_end(policy.start_period(last_write(-1, self._handler.baseFilename), now))
