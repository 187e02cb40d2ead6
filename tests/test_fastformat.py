"""The formatting fast path writes exactly what logging.Formatter.format writes, or steps aside."""

from __future__ import annotations

import logging
import random
import string
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

import safelog
from safelog._delivery import fastformat
from safelog._delivery.fastformat import _stable, fast_format

SEED = 20261201

# Every attribute a stock LogRecord has, in each style (taskName exists from 3.12 on).
_ATTRS = [
    "name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName",
    "created", "asctime", "msecs", "relativeCreated", "thread", "threadName", "process",
    "processName", "message",
] + (["taskName"] if sys.version_info >= (3, 12) else [])
PERCENT_ALL = "|".join(f"%({a})s" for a in _ATTRS) + " %(created)f %(msecs)03d %(relativeCreated)d %(lineno)5d"
BRACE_ALL = "|".join(f"{{{a}}}" for a in _ATTRS) + " {created:.6f} {msecs:03.0f} {levelname:<8} {asctime!r}"
DOLLAR_ALL = "|".join(f"${{{a}}}" for a in _ATTRS) + " $asctime $$ $message"

FORMATS: list[tuple[str, str]] = [
    ("%", PERCENT_ALL),
    ("%", "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s %(message)s"),
    ("%", "%(message)s"),
    ("%", "[%(asctime)s] %(levelname)-8s %(msecs)d %(message)s"),
    ("{", BRACE_ALL),
    ("{", "{asctime} {levelname} {message}"),
    ("{", "{message!r:>30}"),
    ("$", DOLLAR_ALL),
    ("$", "${asctime} $levelname $message"),
    ("$", "$message"),
]
DATEFMTS: list[str | None] = [
    None, "", "%Y-%m-%d %H:%M:%S", "%H:%M:%S.%f", "%d/%b/%Y:%H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z %Z",
    "%s", "%a %A %b %B %p %c %x %X", "%%Y %% %j %U %W %G-%V-%u %C %e %I %l %k", "%-d %_H", "%Ey %Od",
    "trailing %", "é %H:%M", "%F %T %D %R", "%n%t",
]
MSEC_FORMATS: list[str | None] = ["%s,%03d", None, "", "%s.%03d", "%s.%06d", "%s:%d ms", "%s+%.1f"]
TIME_FORMATS = ["%Y-%m-%d %H:%M:%S", "%H:%M:%S", "%c", "%Y-%m-%dT%H:%M:%S%z", "%b %d %H:%M:%S"]
CONVERTERS = [time.localtime, time.gmtime]

# Fractions of a second where rounding and the msecs computation are delicate.
FRACTIONS_NS = [0, 1, 999, 1_000_000, 499_500_000, 999_000_000, 999_499_999, 999_500_000, 999_999_000, 999_999_999]


def make_records(times_ns: list[int], rng: random.Random, exceptions: bool = False) -> list[logging.LogRecord]:
    """Real LogRecords, one per time, each created under a clock that reads that time, so that
    created and msecs come from this Python's own LogRecord code (3.13 computes msecs from
    nanoseconds, earlier versions from the float)."""
    out = []
    clock = [0]
    with mock.patch.object(time, "time_ns", lambda: clock[0]), mock.patch.object(
        time, "time", lambda: clock[0] / 1e9
    ):
        for ns in times_ns:
            clock[0] = ns
            msg, args = _message(rng)
            exc_info = _exc_info(rng) if exceptions and rng.random() < 0.4 else None
            sinfo = "Stack (most recent call last):\n  File x" if exceptions and rng.random() < 0.3 else None
            record = logging.LogRecord(
                rng.choice(["app", "app.db", "élan", ""]),
                rng.choice([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 5, 60]),
                "/srv/app/module.py",
                rng.randrange(1, 10_000),
                msg,
                args,
                exc_info,
                "handler",
                sinfo,
            )
            if exceptions and rng.random() < 0.2:
                # Set before, as another handler's formatter leaves it: kept, with or without
                # exc_info.
                record.exc_text = "Traceback text set before"
            out.append(record)
    return out


def _message(rng: random.Random) -> tuple[Any, Any]:
    kind = rng.randrange(6)
    word = "".join(rng.choice(string.ascii_letters + " \n\t%{}$é€") for _ in range(rng.randrange(0, 40)))
    if kind == 0:
        return word.replace("%", "%%"), ()
    if kind == 1:
        return "id=%d value=%s ratio=%.3f", (rng.randrange(10**6), word, rng.random())
    if kind == 2:
        return "%(a)s and %(b)r", ({"a": word, "b": rng.random()},)
    if kind == 3:
        return {"event": word, "n": rng.randrange(100)}, ()
    if kind == 4:
        return rng.randrange(-1000, 1000), ()
    return word + "\n", ()


def _exc_info(rng: random.Random) -> Any:
    try:
        if rng.random() < 0.5:
            raise ValueError(f"bad value {rng.randrange(100)}")
        {}["missing"]
    except Exception:
        return sys.exc_info()


def times(rng: random.Random, n: int) -> list[int]:
    """Record times: runs inside one second, seconds in a row, jumps back and forth, every
    delicate fraction, before 1970 and far ahead."""
    out: list[int] = []
    while len(out) < n:
        base = rng.choice([0, -86_400 * 400, 1_711_846_798, 1_729_990_798, 4_102_444_799, rng.randrange(2 * 10**9)])
        second = base + rng.randrange(4)
        for _ in range(rng.randrange(1, 12)):
            frac = rng.choice(FRACTIONS_NS) if rng.random() < 0.5 else rng.randrange(10**9)
            out.append(second * 10**9 + frac)
            if rng.random() < 0.3:
                second += 1
    return out[:n]


def formatted(fmt: Callable[[logging.LogRecord], str], record: logging.LogRecord) -> tuple[Any, dict[str, Any]]:
    """What formatting ``record`` returns (or raises) and the attributes it leaves behind."""
    try:
        result: Any = fmt(record)
    except Exception as exc:
        result = (type(exc), str(exc))
    return result, dict(record.__dict__)


def assert_same(formatter: logging.Formatter, fast: Callable[[logging.LogRecord], str], records: list[logging.LogRecord]) -> None:
    """Each record, copied twice, formats to the same text and the same record state."""
    for record in records:
        a = logging.makeLogRecord(dict(record.__dict__))
        b = logging.makeLogRecord(dict(record.__dict__))
        assert formatted(fast, b) == formatted(formatter.format, a), record.__dict__


def test_random_formatters_match_stock() -> None:
    """Random combinations of format, style, datefmt, converter and time/msec formats produce
    exactly the stock text over records in runs of seconds and at every delicate fraction."""
    rng = random.Random(SEED)
    for _ in range(200):
        style, fmt = rng.choice(FORMATS)
        f = logging.Formatter(fmt, rng.choice(DATEFMTS), style=style, validate=False)
        if rng.random() < 0.5:
            f.converter = rng.choice(CONVERTERS)  # type: ignore[method-assign]
        if rng.random() < 0.3:
            f.default_msec_format = rng.choice(MSEC_FORMATS)  # type: ignore[assignment]
        if rng.random() < 0.2:
            f.default_time_format = rng.choice(TIME_FORMATS)
        fast = fast_format(f)
        assert fast is not None
        assert_same(f, fast, make_records(times(rng, 150), rng))


def test_exceptions_and_stacks_match_stock() -> None:
    """Tracebacks, pre-set exc_text and stack info come out the same, and exc_text is cached
    on the record as the stock formatter caches it."""
    rng = random.Random(SEED + 1)
    for style, fmt in FORMATS:
        f = logging.Formatter(fmt, style=style, validate=False)
        fast = fast_format(f)
        assert fast is not None
        records = make_records(times(rng, 80), rng, exceptions=True)
        assert any(r.exc_info for r in records) and any(r.stack_info for r in records)
        assert_same(f, fast, records)
    record = make_records([10**18], rng)[0]
    record.exc_info = _exc_info(rng)
    fast = fast_format(logging.Formatter())
    assert fast is not None
    fast(record)
    assert record.exc_text == logging.Formatter().formatException(record.exc_info)


def test_real_clock_records_match_stock() -> None:
    """Records made by a logger at the real clock, many per millisecond, format the same."""
    f = logging.Formatter("%(asctime)s %(msecs)d %(message)s")
    fast = fast_format(f)
    assert fast is not None
    log = logging.Logger("fastformat-test")
    records = [log.makeRecord("x", logging.INFO, "f.py", 1, "n=%d", (i,), None) for i in range(20_000)]
    assert_same(f, fast, records)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"])
def test_daylight_saving_changes_match_stock(tz: Callable[[str], None], zone: str) -> None:
    """Around the 2024 DST changes of zones with whole-hour and half-hour shifts, the local time
    text (with %z and %Z) is the stock one for every record."""
    tz(zone)
    rng = random.Random(SEED + 2)
    # Seconds around the March/April and October/November 2024 changes in both hemispheres.
    edges = [1_711_846_800, 1_729_990_800, 1_710_054_000, 1_730_613_600, 1_712_415_600, 1_728_142_200]
    records = make_records(
        [(e + d) * 10**9 + rng.choice(FRACTIONS_NS) for e in edges for d in range(-3, 4) for _ in range(3)], rng
    )
    for datefmt in (None, "%Y-%m-%d %H:%M:%S %z %Z"):
        f = logging.Formatter("%(asctime)s %(message)s", datefmt)
        fast = fast_format(f)
        assert fast is not None
        assert_same(f, fast, records)


def test_tzset_between_records_is_followed(tz: Callable[[str], None]) -> None:
    """A time zone change through time.tzset() within one second shows in the next record."""
    tz("UTC")
    f = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S %Z")
    fast = fast_format(f)
    assert fast is not None
    records = make_records([1_700_000_000 * 10**9 + i for i in range(4)], random.Random(SEED))
    assert_same(f, fast, records[:2])
    tz("Asia/Tokyo")
    assert_same(f, fast, records[2:])
    assert "JST" in fast(records[3])


def test_time_text_is_made_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path calls strftime once for many records of one second, the stock path once
    per record: the reuse this module exists for actually happens."""
    calls = []
    real = time.strftime

    def counting(*args: Any) -> str:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(time, "strftime", counting)
    f = logging.Formatter("%(asctime)s %(message)s")
    fast = fast_format(f)
    assert fast is not None
    records = make_records([1_700_000_000 * 10**9 + i * 1000 for i in range(100)], random.Random(SEED))
    for r in records:
        fast(r)
    assert len(calls) == 1
    for r in records:
        f.format(r)
    assert len(calls) == 101


@pytest.mark.parametrize(
    "form, stable",
    [
        ("%Y-%m-%d %H:%M:%S", True),
        ("%d/%m/%y %I:%M:%S %z %Z %% %s %j %F %T", True),
        ("%H:%M:%S,%f", False),  # %f is not a strftime directive: left to the C library
        ("trailing %", False),
        ("é %H", False),  # non-ASCII: encoded with the locale's encoding
        *((f"%{c}", False) for c in "aAbBhpPcxXrEO+-_0^#"),  # names, locale forms and flags
    ],
)
def test_only_locale_free_time_formats_are_reused(form: str, stable: bool) -> None:
    """Time text is reused within a second only for formats whose every directive reads the
    time tuple alone; day and month names, AM/PM and the locale's forms follow setlocale()."""
    assert _stable(form) is stable


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: type("Sub", (logging.Formatter,), {})(), id="subclass"),
        pytest.param(lambda: logging.Formatter("%(message)s %(extra)s", defaults={"extra": "x"}), id="defaults"),
        pytest.param(lambda: _with(logging.Formatter(), converter=lambda t: time.gmtime(t)), id="user-converter"),
        pytest.param(lambda: _with(logging.Formatter(), formatTime=lambda r, d=None: "T"), id="instance-formatTime"),
        pytest.param(lambda: _with(logging.Formatter(), format=lambda r: "F"), id="instance-format"),
        pytest.param(lambda: _with(logging.Formatter(), formatException=lambda e: "E"), id="instance-formatException"),
        pytest.param(lambda: _with(logging.Formatter(), formatStack=lambda s: "S"), id="instance-formatStack"),
        pytest.param(lambda: _with(logging.Formatter(), _style=_CustomStyle("%(message)s")), id="custom-style"),
    ],
)
def test_formatters_it_cannot_reproduce_are_refused(make: Callable[[], logging.Formatter]) -> None:
    """A subclass, defaults=, a user converter, overridden methods or a foreign style get no
    fast path: the handler then formats the stock way."""
    assert fast_format(make()) is None


class _CustomStyle(logging.PercentStyle):
    pass


def _with(f: logging.Formatter, **attrs: Any) -> logging.Formatter:
    for k, v in attrs.items():
        setattr(f, k, v)
    return f


MUTATIONS: list[tuple[str, Callable[[logging.Formatter, pytest.MonkeyPatch], None]]] = [
    ("datefmt", lambda f, mp: setattr(f, "datefmt", "%H:%M")),
    ("datefmt-none", lambda f, mp: setattr(f, "datefmt", None)),
    ("converter-gmtime", lambda f, mp: setattr(f, "converter", time.gmtime)),
    ("converter-user", lambda f, mp: setattr(f, "converter", lambda t: time.gmtime(t + 3600))),
    ("msec-format", lambda f, mp: setattr(f, "default_msec_format", "%s.%03d")),
    ("msec-format-none", lambda f, mp: setattr(f, "default_msec_format", None)),
    ("time-format", lambda f, mp: setattr(f, "default_time_format", "%H:%M:%S")),
    ("style", lambda f, mp: setattr(f, "_style", logging.StrFormatStyle("{asctime}|{message}"))),
    ("style-fmt", lambda f, mp: setattr(f._style, "_fmt", "%(message)s")),
    ("style-defaults", lambda f, mp: setattr(f._style, "_defaults", {"x": 1})),
    ("formatTime", lambda f, mp: setattr(f, "formatTime", lambda r, d=None: "TIME")),
    ("formatMessage", lambda f, mp: setattr(f, "formatMessage", lambda r: "MSG")),
    ("usesTime", lambda f, mp: setattr(f, "usesTime", lambda: False)),
    ("class", lambda f, mp: setattr(f, "__class__", type("Sub", (logging.Formatter,), {"formatTime": lambda s, r, d=None: "SUB"}))),
    ("dict", lambda f, mp: setattr(f, "__dict__", {**vars(f), "datefmt": "%M"})),
    ("del-datefmt", lambda f, mp: delattr(f, "datefmt")),
    ("cls-converter", lambda f, mp: mp.setattr(logging.Formatter, "converter", time.gmtime)),
    ("cls-msec", lambda f, mp: mp.setattr(logging.Formatter, "default_msec_format", "%s!%03d")),
    ("cls-time-format", lambda f, mp: mp.setattr(logging.Formatter, "default_time_format", "%d %H")),
    ("cls-formatTime", lambda f, mp: mp.setattr(logging.Formatter, "formatTime", lambda s, r, d=None: "CLS")),
    ("cls-format", lambda f, mp: mp.setattr(logging.Formatter, "format", lambda s, r: "CLSFMT")),
    ("cls-formatMessage", lambda f, mp: mp.setattr(logging.Formatter, "formatMessage", lambda s, r: "M")),
    ("cls-usesTime", lambda f, mp: mp.setattr(logging.Formatter, "usesTime", lambda s: False)),
    ("style-cls-format", lambda f, mp: mp.setattr(logging.PercentStyle, "_format", lambda s, r: "PS")),
    ("style-cls-search", lambda f, mp: mp.setattr(logging.PercentStyle, "asctime_search", "%(nothing)")),
    ("strftime", lambda f, mp: mp.setattr(time, "strftime", lambda form, t=None: "STRF")),
]


@pytest.mark.parametrize("mutate", [m for _, m in MUTATIONS], ids=[n for n, _ in MUTATIONS])
def test_change_after_first_use_is_noticed(
    mutate: Callable[[logging.Formatter, pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch, tz: Callable[[str], None]
) -> None:
    """A formatter changed after it has formatted records (on the instance, its style or its
    class) formats the next record as the stock path would, and the records after it too."""
    tz("Asia/Tokyo")  # local time and UTC differ
    rng = random.Random(SEED + 3)
    f = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    fast = fast_format(f)
    assert fast is not None
    second = 1_700_000_000 * 10**9
    records = make_records([second + i for i in range(40)], rng)
    assert_same(f, fast, records[:20])
    mutate(f, monkeypatch)
    assert_same(f, fast, records[20:])
    monkeypatch.undo()
    assert_same(f, fast, records[:20])


def test_errors_match_stock() -> None:
    """A missing field, a bad time or a bad msec format raises what the stock path raises."""
    rng = random.Random(SEED + 4)
    cases: list[tuple[logging.Formatter, dict[str, Any]]] = [
        (logging.Formatter("%(nope)s %(asctime)s", validate=False), {}),
        (logging.Formatter("{nope}", style="{", validate=False), {}),
        (logging.Formatter("$nope", style="$", validate=False), {}),
        (logging.Formatter("%(asctime)", validate=False), {}),
        (logging.Formatter("%(asctime)s"), {"created": "soon"}),
        (logging.Formatter("%(asctime)s"), {"created": float("nan")}),
        (logging.Formatter("%(asctime)s"), {"created": 1e300}),
        (logging.Formatter("%(asctime)s"), {"created": 1_700_000_000}),
        (logging.Formatter("%(asctime)s"), {"msecs": "lots"}),
        (logging.Formatter("%(asctime)s"), {"msecs": 999.9999}),
        (logging.Formatter("%(asctime)s", b"%H"), {}),  # type: ignore[arg-type]
        (_with(logging.Formatter("%(asctime)s"), default_msec_format="%s"), {}),
    ]
    for f, attrs in cases:
        fast = fast_format(f)
        assert fast is not None
        base = make_records([1_700_000_000 * 10**9 + 5], rng)[0]
        for _ in range(2):  # the second time with the second's text cached
            record = logging.makeLogRecord({**base.__dict__, **attrs})
            assert_same(f, fast, [base, record])
    decimal = logging.makeLogRecord({**base.__dict__, "created": __import__("decimal").Decimal("1700000000.5")})
    f = logging.Formatter("%(asctime)s")
    fast = fast_format(f)
    assert fast is not None
    # The stock formatter raises on a Decimal time up to 3.14 and formats it on 3.15: either way
    # the fast path must do exactly what it does.
    assert_same(f, fast, [base, decimal])


def test_threads_share_one_fast_formatter() -> None:
    """Threads formatting through one fast path while the formatter changes never produce a
    text that neither the old nor the new formatter would."""
    f = logging.Formatter("%(asctime)s %(message)s")
    fast = fast_format(f)
    assert fast is not None
    record = make_records([1_700_000_000 * 10**9 + 123_000_000], random.Random(SEED))[0]
    allowed = set()
    for datefmt in (None, "%H:%M:%S"):
        f.datefmt = datefmt
        allowed.add(f.format(logging.makeLogRecord(dict(record.__dict__))))
    bad: list[str] = []
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            text = fast(logging.makeLogRecord(dict(record.__dict__)))
            if text not in allowed:
                bad.append(text)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        for i in range(3000):
            f.datefmt = "%H:%M:%S" if i % 2 else None
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not bad, bad[:3]


# -- the handler's hook -------------------------------------------------------------------------


def _log_all(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    for r in records:
        handler.handle(logging.makeLogRecord(dict(r.__dict__)))


@pytest.mark.parametrize("strategy", ["thread", "flock"])
@pytest.mark.parametrize("nonblocking", [False, True])
def test_handler_writes_the_same_bytes_either_way(
    tmp_path: Any, make_handler: Callable[..., Any], strategy: str, nonblocking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler with the fast path writes byte for byte what one with fast_format=False writes,
    exceptions included, and formats the time once a second instead of once per record."""
    rng = random.Random(SEED + 5)
    records = make_records([1_700_000_000 * 10**9 + i * 10**7 for i in range(300)], rng, exceptions=True)
    calls = []
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda *a: calls.append(a) or real(*a))
    paths = {}
    for fast in (True, False):
        path = str(tmp_path / f"{fast}.log")
        handler = make_handler(path, strategy=strategy, nonblocking=nonblocking)
        handler.fast_format = fast
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        before = len(calls)
        _log_all(handler, records)
        handler.close()
        paths[fast] = (path, len(calls) - before)
    with open(paths[True][0], "rb") as a, open(paths[False][0], "rb") as b:
        assert a.read() == b.read()
    assert paths[True][1] == 3 and paths[False][1] == 300


def test_handler_follows_set_formatter_and_a_changed_formatter(
    log_path: str, make_handler: Callable[..., Any]
) -> None:
    """setFormatter() mid-stream, a datefmt changed on the handler's formatter and turning the
    fast path off later all show in the next record."""
    rng = random.Random(SEED + 6)
    records = make_records([1_700_000_000 * 10**9 + i for i in range(4)], rng)
    for r in records:
        r.msg, r.args = "m", ()
    handler = make_handler(log_path, strategy="thread")
    first = logging.Formatter("A %(asctime)s %(message)s")
    handler.setFormatter(first)
    _log_all(handler, records[:1])
    handler.setFormatter(logging.Formatter("B %(message)s"))
    _log_all(handler, records[1:2])
    handler.setFormatter(first)
    first.datefmt = "%Y"
    _log_all(handler, records[2:3])
    handler.fast_format = False
    first.formatTime = lambda r, d=None: "T"  # type: ignore[method-assign]
    _log_all(handler, records[3:])
    with open(log_path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000))
    assert lines == [f"A {stamp},000 m", "B m", "A 2023 m", "A T m"]


def test_handler_subclass_format_is_honoured(log_path: str, make_handler: Callable[..., Any]) -> None:
    """A handler subclass that overrides format() gets its own text, not the fast path's."""

    class Upper(safelog.SafeFileHandler):
        def format(self, record: logging.LogRecord) -> str:
            return super().format(record).upper()

    handler = make_handler(log_path, strategy="thread", cls=Upper)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.handle(logging.makeLogRecord({"msg": "quiet", "levelname": "info"}))
    handler.close()
    with open(log_path, encoding="utf-8") as fh:
        assert fh.read() == "INFO QUIET\n"


@pytest.mark.parametrize("nonblocking", [False, True])
def test_format_replaced_on_the_handler_after_use_is_honoured(
    log_path: str, make_handler: Callable[..., Any], nonblocking: bool
) -> None:
    """``handler.format = ...`` set on the instance, even after records went through the fast
    path, is what the next record is formatted with (logging.Handler looks it up per record),
    in the caller in non-blocking mode; deleting it brings the formatter back."""
    handler = make_handler(log_path, strategy="thread", nonblocking=nonblocking)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.handle(logging.makeLogRecord({"msg": "one", "levelname": "INFO", "levelno": logging.INFO}))
    handler.format = lambda record: "OWN " + record.getMessage()  # type: ignore[method-assign]
    handler.handle(logging.makeLogRecord({"msg": "two", "levelname": "INFO", "levelno": logging.INFO}))
    del handler.format
    handler.handle(logging.makeLogRecord({"msg": "three", "levelname": "INFO", "levelno": logging.INFO}))
    handler.close()
    with open(log_path, encoding="utf-8") as fh:
        assert fh.read() == "INFO one\nOWN two\nINFO three\n"


def test_a_locale_dependent_date_format_is_examined_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a date format may be reused within its second is decided once, when the
    formatter is planned, not for every record of a format that never qualifies."""
    calls = []
    real = fastformat._stable
    monkeypatch.setattr(fastformat, "_stable", lambda form: calls.append(form) or real(form))
    formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%b %d %H:%M:%S")
    fast = fast_format(formatter)
    assert fast is not None
    for r in make_records([1_700_000_000 * 10**9 + i * 10**6 for i in range(100)], random.Random(SEED + 8)):
        assert fast(logging.makeLogRecord(dict(r.__dict__))) == formatter.format(r)
    assert calls == ["%b %d %H:%M:%S"]
