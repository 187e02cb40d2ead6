"""What a queued record keeps: non-blocking mode writes the text a synchronous handler writes.

The rule: only values the caller can no longer change cross to the writer thread. Whatever
may still change after ``emit()`` returns (an argument, a dict message or an ``extra=`` value
the caller mutates, the frames of a traceback, the caller's context variables and
``sys.exc_info()``, which a formatter may read) is read in the caller. Per record, one of two:

* **Layout deferred** (the fast path). When the formatter is the stock ``logging.Formatter``
  (that class itself, or no formatter; no method replaced on the instance), the handler does
  not override ``format()``, the record is a plain ``logging.LogRecord``, the format names
  neither ``msg``, ``args`` nor ``exc_info``, and every field it names that logging does not
  set itself (``extra=`` fields) holds an immutable value (``str``, ``int``, ``float``,
  ``bool``, ``None``, ``bytes``, a date or time): the caller computes the message
  (``getMessage()``) and the traceback text; the writer applies the layout (time, level,
  padding) to a copy of the record that holds those. That formatter reads nothing else of the
  record, so the text is the synchronous text; the caller pays the message merge, not the
  layout (``formatTime`` alone is half of a record's formatting).
* **Formatted in the caller**, for every other record: a formatter subclass or any other
  formatter class (structlog's ``ProcessorFormatter``, python-json-logger), a ``LogRecord``
  subclass (``__slots__``, a brace-style ``getMessage``), a mutable ``extra=`` field in the
  format. The caller formats the original record exactly as a synchronous handler does (its
  ``msg``, ``args``, ``exc_info``, class and slots, in the caller's context) and the writer only
  writes the text. The caller then pays the formatting; the writer still takes the I/O.

Either way a record is written with the formatter set at its call (a later ``setFormatter()``
applies to later calls), and the original record is changed only as a synchronous
``logging.Formatter`` changes it (the traceback text is cached in ``exc_text``), for the
handlers after this one. A formatter is examined once, when it first formats for the handler:
replacing a formatter's methods or format string after it has been used is not seen.
"""

from __future__ import annotations

import datetime
import logging
import re
import string
import time
from collections.abc import Callable
from typing import Any

from .fastformat import formats_plainly

__all__ = ["Freezer", "Frozen", "revive"]

_LogRecord = logging.LogRecord
_new_object = object.__new__
_DEFAULT_FORMATTER = logging.Formatter()  # what logging.Handler.format() uses without one

# A frozen record: either the attributes of a plain LogRecord whose message and traceback are
# text, with the stock Formatter that lays it out; or the finished text, with the original's
# attributes minus its args and traceback (its time, and a record to report a failed write).
Frozen = tuple[dict[str, Any], logging.Formatter] | tuple[str, dict[str, Any]]

# Set by LogRecord.__init__ (and by Formatter.format) from plain values: safe to lay out later.
_LOGGING_FIELDS = frozenset(
    "name levelno levelname pathname filename module lineno funcName created msecs relativeCreated "
    "thread threadName process processName taskName message asctime exc_text stack_info".split()
)
# The fast path replaces these on the copy: a format that shows them is formatted in the caller.
_REPLACED_FIELDS = frozenset(("msg", "args", "exc_info"))
# Values whose text cannot change after the call. Exact types: a subclass may format itself
# from mutable state.
_IMMUTABLE = frozenset(
    (str, int, float, bool, type(None), bytes, complex,
     datetime.datetime, datetime.date, datetime.time, datetime.timedelta)
)  # fmt: skip
# Instance attributes a stock Formatter has, or that users set to configure it.
_FORMATTER_ATTRS = frozenset(("_style", "_fmt", "datefmt", "default_time_format", "default_msec_format", "converter"))
_CONVERTERS = (time.localtime, time.gmtime)

_PERCENT_FIELD = re.compile(r"%\(([^)]*)\)")
_TEMPLATE_FIELD = re.compile(r"\$(?:(\w+)|\{([^}]*)\})")
_FIELD_BASE = re.compile(r"[^.\[]*")


def revive(attrs: dict[str, Any]) -> logging.LogRecord:
    """The plain LogRecord of a frozen record's attributes (in the writer)."""
    record: logging.LogRecord = _new_object(_LogRecord)
    record.__dict__ = attrs
    return record


class Freezer:
    """Freezes the records of one handler, in the caller (see the module docstring)."""

    __slots__ = ("_render", "_handler", "_plan")

    def __init__(self, render: Callable[[logging.LogRecord], str | None], handler: logging.Handler) -> None:
        """``render`` formats as ``handler`` does (reporting a failure itself)."""
        self._render = render
        self._handler = handler
        # (formatter, format set on the handler instance, plan): the extra fields to check per
        # record, or None for "format in the caller". One tuple, so that a thread reading it
        # never sees half of an update.
        self._plan: tuple[Any, Any, tuple[str, ...] | None] = (None, None, None)

    def freeze(self, record: logging.LogRecord, formatter: logging.Formatter | None) -> Frozen | None:
        """The queue item of ``record``; None when it could not be formatted (reported)."""
        fmt = formatter or _DEFAULT_FORMATTER
        own = self._handler.__dict__.get("format")
        plan = self._plan
        if plan[0] is not fmt or plan[1] is not own:
            # A handler whose format() is not Handler.format's (its class's, or one set on the
            # instance, even after the first record) formats every record in the caller.
            plan = self._plan = (fmt, own, _deferrable_fields(fmt) if formats_plainly(self._handler) else None)
        checks = plan[2]
        attrs = record.__dict__
        if checks is not None and type(record) is _LogRecord:
            if checks:
                for name in checks:
                    if type(attrs.get(name)) not in _IMMUTABLE:
                        return self._format_here(record, attrs)
            # Merging the args now means later mutation of an argument cannot change what is
            # logged; the traceback is rendered now because the frames it refers to change as
            # the caller goes on.
            copy = attrs.copy()  # a third of the cost of copy.copy(); the record is made in the writer
            copy["msg"] = copy["message"] = record.getMessage()
            copy["args"] = None
            if record.exc_info:
                if not record.exc_text:
                    # Cached on the original as Formatter.format() caches it, for later handlers.
                    record.exc_text = fmt.formatException(record.exc_info)
                copy["exc_text"] = record.exc_text
                copy["exc_info"] = None
            return copy, fmt
        return self._format_here(record, attrs)

    def _format_here(self, record: logging.LogRecord, attrs: dict[str, Any]) -> Frozen | None:
        """Format in the caller, exactly as a synchronous handler does."""
        text = self._render(record)
        if text is None:
            return None
        # What the writer needs besides the text: the time (rotation) and, should the write
        # fail, a record to report (revived there), whose message is the text that was lost.
        # The original's traceback frames and arguments are not kept alive in the queue.
        copy = attrs.copy()
        copy["msg"] = text
        copy["args"] = copy["exc_info"] = None
        return text, copy


def _deferrable_fields(fmt: logging.Formatter) -> tuple[str, ...] | None:
    """For a formatter whose layout may be deferred, the fields it names that must hold an
    immutable value per record; None when its records are formatted in the caller."""
    if type(fmt) is not logging.Formatter:
        return None
    attrs = vars(fmt)
    if not attrs.keys() <= _FORMATTER_ATTRS or attrs.get("converter", time.localtime) not in _CONVERTERS:
        return None
    fields = _format_fields(fmt._style)
    if fields is None or fields & _REPLACED_FIELDS:
        return None
    return tuple(sorted(fields - _LOGGING_FIELDS))


def _format_fields(style: Any) -> frozenset[str] | None:
    """The record attributes a stock style reads (a superset: an escaped ``%%(x)s`` counts)."""
    fmt = style._fmt
    kind = type(style)
    if kind is logging.PercentStyle:
        return frozenset(_PERCENT_FIELD.findall(fmt))
    if kind is logging.StringTemplateStyle:
        return frozenset(a or b for a, b in _TEMPLATE_FIELD.findall(fmt))
    if kind is logging.StrFormatStyle:
        names: set[str] = set()
        try:
            _brace_fields(fmt, names)
        except ValueError:
            return None
        return frozenset(names)
    return None


def _brace_fields(fmt: str, names: set[str]) -> None:
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is not None:
            match = _FIELD_BASE.match(field)
            names.add(match.group() if match else field)
        if spec:
            _brace_fields(spec, names)  # "{message:{width}}"
