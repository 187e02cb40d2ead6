"""A faster ``logging.Formatter.format`` for the stock formatter, with byte-identical output.

Most of what a stock formatter does per record is the same every time: ``usesTime()`` searches
the format string, and ``formatTime()`` converts and ``strftime``-formats a time that changes
once a second. :func:`fast_format` precomputes the first and reuses the second within the second
(the milliseconds are still added per record, with the formatter's own ``default_msec_format``),
and formats the message with the style's own operation (``%``, ``str.format``,
``Template.substitute``) on the record's ``__dict__``. Everything else happens exactly as in
``Formatter.format``, in the same order: ``record.message``, ``record.asctime``, the exception
text cached in ``record.exc_text``, the stack.

It applies only where that is provably the same: a formatter of exactly ``logging.Formatter``
whose ``format``/``formatTime``/``formatMessage``/``usesTime`` (and its style's) are the
stdlib's, without ``defaults=``, converting with ``time.localtime`` or ``time.gmtime``. Every
record first checks that nothing it relies on changed (instance attributes, by comparing
``vars()`` with a snapshot; the class attributes people do set, such as
``Formatter.converter``); after a change the formatter is examined again, and if it no longer
qualifies, every record takes ``formatter.format(record)``.

Why reusing the time text is exact: ``time.localtime``/``gmtime`` of a float depend only on its
floor (CPython rounds it down to a ``time_t``) and on the time zone, which only ``time.tzset()``
changes, and that replaces ``time.tzname``, which is checked. Only ASCII formats whose directives
are all numeric or zone fields are reused (``%a``, ``%b``, ``%p``, ``%c`` ... follow the locale,
which can change at any time, so they are formatted per record).
"""

from __future__ import annotations

import logging
import math
import time
import types
from collections.abc import Callable
from typing import Any

__all__ = ["fast_format"]

_Formatter = logging.Formatter
_STYLES = (logging.PercentStyle, logging.StrFormatStyle, logging.StringTemplateStyle)
# What a stock Formatter.format calls on itself and on its style.
_FORMATTER_METHODS = ("format", "formatTime", "formatMessage", "usesTime", "formatException", "formatStack")
_STYLE_METHODS = ("format", "_format", "usesTime")
# strftime directives whose text depends on the time tuple alone (not on the locale).
_STABLE_DIRECTIVES = frozenset("YmdHMSyjeFTDRzZCGgVUWuwIklsnt%")
_NOT_FOUND = "Formatting field not found in record: %s"
_float = float

Render = Callable[[logging.LogRecord], str]


def fast_format(formatter: logging.Formatter) -> Render | None:
    """A callable ``record -> str`` that returns exactly ``formatter.format(record)``, faster;
    None when ``formatter`` is not one it can reproduce (a subclass, an overridden method, a
    user converter, ``defaults=``)."""
    first = _plan(formatter)
    if first is None:
        return None
    # One cell for the whole plan: a thread that re-plans after a change replaces it at once,
    # so no other thread ever sees half of an old plan and half of a new one.
    return _renderer(formatter, [first])


def _renderer(formatter: logging.Formatter, box: list[tuple[Any, ...] | None]) -> Render:
    """The per-record closure of :func:`fast_format` over the plan in ``box``."""
    f, F, tm = formatter, _Formatter, time

    def render(record: logging.LogRecord) -> str:
        p = box[0]
        if p is None:
            return f.format(record)
        (fvars, style, svars, S, f_format, f_time, f_message, f_uses, c_conv, c_dtf, c_dmf,
         s_format, s_private, s_uses, s_search, strftime, tzname,
         percent, fmt, uses_time, form, stable, whole, dmf, cache, last, conv) = p
        if not (
            f.__class__ is F
            and f.__dict__ == fvars
            and style.__dict__ == svars
            and F.format is f_format
            and F.formatTime is f_time
            and F.formatMessage is f_message
            and F.usesTime is f_uses
            and F.converter is c_conv
            and F.default_time_format is c_dtf
            and F.default_msec_format is c_dmf
            and S.format is s_format
            and S._format is s_private
            and S.usesTime is s_uses
            and S.asctime_search is s_search
            and tm.strftime is strftime
            and (tzname is None or tm.tzname is tzname)
        ):
            # Something the plan relies on changed: this record takes the stock path, the next
            # ones a new plan (or the stock path for good, when the formatter no longer
            # qualifies).
            box[0] = _plan(f)
            return f.format(record)

        record.message = record.getMessage()
        if uses_time:
            created = record.created
            c = cache[0]
            if created.__class__ is _float and c[0] <= created < c[1]:
                text = c[2]
            else:
                text = _time_text(created, conv, form, strftime, cache, stable)
            if whole:
                record.asctime = text
            else:
                # Records come many to a millisecond: the last text is reused for the same
                # second's text and the same float msecs (the text %-formatting made of them).
                msecs = record.msecs
                m = last[0]
                if msecs.__class__ is _float and m[1] == msecs and m[0] is text:
                    record.asctime = m[2]
                else:
                    asctime = dmf % (text, msecs)
                    last[0] = (text, msecs, asctime)
                    record.asctime = asctime
        d = record.__dict__
        s: str
        try:
            # fmt: the format string for %, else its bound str.format or Template.substitute.
            s = fmt % d if percent else fmt(**d)
        except KeyError as e:
            raise ValueError(_NOT_FOUND % e)  # noqa: B904 - unchained, as logging.Formatter raises it
        if record.exc_info or record.exc_text or record.stack_info:
            return _with_traceback(f, record, s)
        return s

    return render


def _with_traceback(f: logging.Formatter, record: logging.LogRecord, s: str) -> str:
    """The end of ``Formatter.format``: the traceback and the stack after the message."""
    if record.exc_info:
        # Cache the traceback text, as Formatter.format does (other handlers reuse it).
        if not record.exc_text:
            record.exc_text = f.formatException(record.exc_info)
    if record.exc_text:
        if s[-1:] != "\n":
            s = s + "\n"
        s = s + record.exc_text
    if record.stack_info:
        if s[-1:] != "\n":
            s = s + "\n"
        s = s + f.formatStack(record.stack_info)
    return s


def _time_text(
    created: Any,
    conv: Callable[[Any], Any],
    form: Any,
    strftime: Callable[[Any, Any], str],
    cache: list[Any],
    stable: bool,
) -> str:
    """``formatTime``'s text before the milliseconds, computed as it does; remembered for the
    rest of the second when ``stable`` (``_stable(form)``, see the module docstring)."""
    ct = conv(created)  # first, as formatTime does: a bad ``created`` raises the same here
    text = strftime(form, ct)
    if stable and created.__class__ is _float:
        low = _float(math.floor(created))
        cache[0] = (low, low + 1.0, text)
    return text


def _stable(form: Any) -> bool:
    """True when strftime(form, t) depends on the time tuple t alone."""
    if type(form) is not str or not form.isascii():
        return False  # non-ASCII text goes through the locale's encoding
    i = form.find("%")
    while i >= 0:
        if form[i + 1 : i + 2] not in _STABLE_DIRECTIVES:
            return False
        i = form.find("%", i + 2)
    return True


def _stock(fn: Any, owner: str, name: str) -> bool:
    """Is ``fn`` the logging module's own method ``owner.name`` (not a replacement)?"""
    return (
        isinstance(fn, types.FunctionType)
        and fn.__module__ == "logging"
        and fn.__qualname__ == f"{owner}.{name}"
    )


def _style_plan(style: Any) -> tuple[Any, type, dict[str, Any], list[Any], str, int, Any, bool] | None:
    """The style part of :func:`_plan`: the style, its class, a copy of its ``vars()``, its
    stock methods, ``asctime_search``, which formatting it does (0 %, 1 str.format, 2
    string.Template), its format (for ``%``) or the bound method that formats with it, and
    whether it uses the time; None when it does not qualify."""
    S = type(style)
    if S not in _STYLES:
        return None
    svars = dict(vars(style))
    methods = [getattr(S, name) for name in _STYLE_METHODS]
    for name, fn in zip(_STYLE_METHODS, methods, strict=True):
        if name in svars or not _stock(fn, fn.__qualname__.split(".")[0], name):
            return None
    search = S.asctime_search
    if svars.get("_defaults") or "_fmt" not in svars or not isinstance(search, str):
        return None
    fmt: Any = svars["_fmt"]
    if type(fmt) is not str:
        return None
    # The stock usesTime() of the style, on the snapshot's format string.
    uses_time = fmt.find(search) >= 0
    if S is logging.PercentStyle:
        kind = 0
    elif S is logging.StrFormatStyle:
        kind, fmt = 1, fmt.format
    else:
        kind = 2
        uses_time = fmt.find("$asctime") >= 0 or uses_time
        tpl = svars.get("_tpl")
        if tpl is None:
            return None
        fmt = tpl.substitute
    return style, S, svars, methods, search, kind, fmt, uses_time


def _plan(f: logging.Formatter) -> tuple[Any, ...] | None:
    """What the fast path needs for ``f`` and the snapshot it re-checks per record (the order
    ``render`` unpacks); None when ``f`` does not qualify.

    Every value is taken from the snapshot itself (copies of ``vars()`` and the class
    attributes read once), never read again: a formatter changed by another thread meanwhile
    cannot give a plan whose values disagree with the snapshot the records compare against.
    """
    if type(f) is not _Formatter:
        return None
    fvars = dict(vars(f))
    cls = dict(vars(_Formatter))
    for name in _FORMATTER_METHODS:
        if name in fvars or not _stock(cls.get(name), "Formatter", name):
            return None
    if "datefmt" not in fvars:
        return None  # deleted: the stock format() raises AttributeError
    # What formatTime reads through the instance: set on it, or else the class's.
    conv = fvars.get("converter", cls.get("converter"))
    if not isinstance(conv, types.BuiltinFunctionType) or not (
        conv is time.localtime or conv is time.gmtime
    ):
        return None
    found = _style_plan(fvars.get("_style"))
    if found is None:
        return None
    style, S, svars, methods, search, kind, fmt, uses_time = found
    # formatTime: strftime(datefmt) when one is set, else strftime(default_time_format) and the
    # milliseconds added by default_msec_format (when that is set).
    datefmt = fvars.get("datefmt")
    dmf = fvars.get("default_msec_format", cls.get("default_msec_format"))
    form = datefmt or fvars.get("default_time_format", cls.get("default_time_format"))
    whole = bool(datefmt or not dmf)  # the time text is all of asctime
    # Nothing cached yet: an empty range that no time falls in.
    cache: list[tuple[float, float, str]] = [(math.inf, -math.inf, "")]
    last: list[tuple[str | None, float, str]] = [(None, math.nan, "")]
    return (
        # checked per record
        fvars,
        style,
        svars,
        S,
        cls["format"],
        cls["formatTime"],
        cls["formatMessage"],
        cls["usesTime"],
        cls.get("converter"),
        cls.get("default_time_format"),
        cls.get("default_msec_format"),
        *methods,
        search,
        time.strftime,
        time.tzname if conv is time.localtime else None,
        # used
        kind == 0,
        fmt,
        uses_time,
        form,
        _stable(form),  # once per plan, not per record: a locale-dependent format never caches
        whole,
        dmf,
        cache,
        last,
        conv,
    )


def formats_plainly(handler: logging.Handler) -> bool:
    """Does ``handler.format`` do what ``logging.Handler.format`` does (not overridden by its
    class, nor replaced on the instance)?"""
    return type(handler).format is logging.Handler.format and "format" not in vars(handler)


def handler_render(handler: logging.Handler) -> tuple[Any, Any, Any, Render]:
    """``(formatter, fast_format flag, format on the instance, render)`` for ``handler``: the
    fast path of its formatter when the handler formats plainly and ``handler.fast_format`` is
    true, else ``handler.format`` itself. The handler rebuilds it when one of the first three is
    no longer what it holds. Without a formatter (logging's default ``%(message)s``) the fast
    path measured no faster than ``Formatter.format``, so it is not taken."""
    formatter = handler.formatter
    enabled = getattr(handler, "fast_format", False)
    render = None
    if enabled and formatter is not None and formats_plainly(handler):
        render = fast_format(formatter)
    return formatter, enabled, vars(handler).get("format"), render or handler.format
