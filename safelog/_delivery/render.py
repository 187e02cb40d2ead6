"""The text a record becomes: the handler's formatter, then (optionally) escaped control
characters. One renderer per handler, used in the caller and in the non-blocking writer alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .fastformat import fast_format, handler_render

__all__ = ["Renderer", "ESCAPES"]

# escape_newlines: a message that carries a line break can forge whole log entries (CWE-117),
# and terminal control sequences can rewrite what `tail -f` shows. Every C0/C1 control
# character but TAB, plus DEL and the Unicode line/paragraph separators (which
# str.splitlines() and some viewers treat as line ends), is written as a visible escape; the
# terminator is added after, so each record stays exactly one line.
ESCAPES: dict[int, str] = {
    c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09
}
ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


class Formats(Protocol):
    """The public part of ``logging.Handler`` a renderer uses, looked up per record as the stdlib
    does: a subclass override or an instance attribute set later is honoured."""

    terminator: str
    formatter: logging.Formatter | None
    fast_format: bool
    __dict__: dict[str, Any]  # an instance's own format() replaces the class's

    def format(self, record: logging.LogRecord) -> str: ...

    def handleError(self, record: logging.LogRecord) -> None: ...


class Renderer:
    """``render(record)``: the formatted text, or None when the record cannot be formatted (it is
    reported through ``handleError``, as ``logging.Handler.emit`` would)."""

    __slots__ = ("_owner", "_escape", "_fast", "_laid")

    def __init__(self, owner: Formats, escape: bool) -> None:
        self._owner = owner
        self._escape = escape
        # (formatter, fast_format, format set on the instance, render) last used: the fast path
        # of a stock Formatter (same text, see fastformat.py) or the owner's format(); rebuilt
        # when one of the first three changes (setFormatter(), fast_format set on the handler,
        # handler.format replaced).
        self._fast: tuple[Any, Any, Any, Callable[[logging.LogRecord], str]] = (self, self, self, str)
        self._laid: tuple[Any, Any, Callable[[logging.LogRecord], str]] = (self, self, str)

    def render(self, record: logging.LogRecord) -> str | None:
        owner = self._owner
        try:
            fast = self._fast
            if (
                fast[0] is not owner.formatter
                or fast[1] is not owner.fast_format
                or fast[2] is not owner.__dict__.get("format")
            ):
                fast = self._fast = handler_render(owner)  # type: ignore[arg-type]
            msg = fast[3](record)
        except Exception:
            owner.handleError(record)
            return None
        return self._finish(msg)

    def _finish(self, msg: str) -> str:
        if self._escape:
            msg = msg.translate(ESCAPES)
        end = self._owner.terminator
        if end != "\n":
            # The strategy ends every record with a line break: every guarantee (one record, one
            # line; torn-write repair; shards; merge) depends on it. Another terminator is
            # written before that break ("\r\n" stays "\r\n"; "" adds nothing).
            msg += end[:-1] if end.endswith("\n") else end
        return msg

    def layout(self, formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
        """:meth:`render` with the formatter a queued record was frozen for (the handler's at
        the call), for a handler whose ``format()`` is ``logging.Handler.format``."""
        try:
            laid = self._laid
            if laid[0] is not formatter or laid[1] is not self._owner.fast_format:
                fast = fast_format(formatter) if self._owner.fast_format else None
                laid = self._laid = (formatter, self._owner.fast_format, fast or formatter.format)
            msg = laid[2](record)
        except Exception:
            self._owner.handleError(record)
            return None
        return self._finish(msg)
