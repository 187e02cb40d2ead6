"""What the layers below the handler need of one handler, handed to them as a value."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .failures import Failures

__all__ = ["Outlet"]


class Outlet(NamedTuple):
    """One handler as the non-blocking writer sees it: how to render its records (``layout``:
    with the formatter a record was frozen for), where its lost records are counted, and where
    a writer bug is reported."""

    path: str
    render: Callable[[logging.LogRecord], str | None]
    layout: Callable[[logging.Formatter, logging.LogRecord], str | None]
    failed: Callable[[logging.LogRecord, BaseException], None]
    failures: Failures
    handle_error: Callable[[logging.LogRecord], None]
