"""nonblocking=True writes, byte for byte, what the same formatter writes synchronously.

Every test logs each record once through a logger with two handlers on two files: one
synchronous, one non-blocking whose writer is held back (``flush_interval`` of an hour, no
urgent level) until the test has changed whatever the caller may change after the call. The
two files must then be identical, for every strategy and with either handler first (so that
neither mode leaves the record changed for the handler after it).
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from pythonjsonlogger.json import JsonFormatter

import safelog
from safelog import log_files
from safelog._delivery.freeze import Freezer
from safelog._primitives.shard import ShardRecord, iter_records

STRATEGIES = ("thread", "flock", "per-process")
ORDERS = ("sync-first", "nonblocking-first")


class _Recording(safelog.SafeFileHandler):
    """A handler that keeps the errors it would report, so a failure names its cause."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reported: list[str] = []
        super().__init__(*args, **kwargs)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(traceback.format_exc())


class Pair:
    """A logger writing every record to a synchronous and a non-blocking handler."""

    def __init__(
        self,
        root: Path,
        strategy: str,
        order: str,
        formatter: Callable[[], logging.Formatter],
        logger: logging.Logger,
        handler_cls: type[_Recording] = _Recording,
    ) -> None:
        self.logger = logger
        self.strategy = strategy
        self.dirs = {"sync": root / "sync", "nonblocking": root / "nonblocking"}
        self.sync = handler_cls(str(self.dirs["sync"] / "app.log"), strategy=strategy)
        self.nonblocking = handler_cls(
            str(self.dirs["nonblocking"] / "app.log"),
            strategy=strategy,
            nonblocking=True,
            flush_interval="1 hour",
            flush_level=logging.CRITICAL + 1,
        )
        self.sync.setFormatter(formatter())
        self.nonblocking.setFormatter(formatter())
        first, second = (self.sync, self.nonblocking) if order == "sync-first" else (self.nonblocking, self.sync)
        logger.addHandler(first)
        logger.addHandler(second)

    def close(self) -> None:
        for handler in (self.sync, self.nonblocking):
            self.logger.removeHandler(handler)
            handler.close()

    def outputs(self) -> str:
        """Write what is queued, close both handlers, check that both wrote the same bytes; the
        records' text (without shard headers), for a check that it holds what was logged."""
        self.close()
        for mode, handler in (("synchronous", self.sync), ("non-blocking", self.nonblocking)):
            assert not handler.reported, f"{mode} handler reported: {handler.reported[0]}"
        written = {}
        for mode, directory in self.dirs.items():
            files = log_files(str(directory / "app.log"))
            written[mode] = {os.path.basename(f): Path(f).read_bytes() for f in files}
        assert written["sync"], "nothing was written synchronously"
        assert written["nonblocking"] == written["sync"]
        return _text(written["sync"], self.strategy)


def _text(files: dict[str, bytes], strategy: str) -> str:
    if strategy != "per-process":
        return b"".join(files.values()).decode()
    out = []
    for data in files.values():
        for rec in iter_records(io.BytesIO(data)):
            assert isinstance(rec, ShardRecord), rec
            out.append(rec.text.decode().replace("\n\t", "\n") + "\n")
    return "".join(out)


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    """Each strategy in turn."""
    return str(request.param)


@pytest.fixture(params=ORDERS)
def order(request: pytest.FixtureRequest) -> str:
    """The synchronous handler first, then the non-blocking one first."""
    return str(request.param)


@pytest.fixture
def make_pair(tmp_path: Path, strategy: str, order: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Pair]]:
    """Build a :class:`Pair` on a private logger (or the one given); closed after the test."""
    made: list[Pair] = []

    def make(
        formatter: Callable[[], logging.Formatter],
        logger: logging.Logger | None = None,
        handler_cls: type[_Recording] = _Recording,
    ) -> Pair:
        if logger is None:
            logger = logging.Logger(f"fidelity.{request.node.name}", logging.DEBUG)
        logger.propagate = False
        pair = Pair(tmp_path / f"p{len(made)}", strategy, order, formatter, logger, handler_cls)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close()


def _lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


# -- structlog -------------------------------------------------------------------------------


def test_structlog_processor_formatter(make_pair: Callable[..., Pair]) -> None:
    """structlog events (wrap_for_formatter) and foreign records with a pre-chain that reads the
    caller's context variables and exc_info come out as synchronously."""
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
    ]

    def formatter() -> logging.Formatter:
        return structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            foreign_pre_chain=pre_chain,
        )

    pair = make_pair(formatter)
    slog = structlog.wrap_logger(
        pair.logger,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    items = ["first"]
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        slog.info("user logged in", user="bob", items=items)
        pair.logger.warning("foreign %s", "record", extra={"shard": 3})
        try:
            raise ValueError("bad input")
        except ValueError:
            slog.exception("structlog failure")
            pair.logger.exception("foreign failure")
    finally:
        structlog.contextvars.clear_contextvars()
    items.append("changed after the call")
    sync = pair.outputs()
    events = _lines(sync)
    assert [e["event"] for e in events] == ["user logged in", "foreign record", "structlog failure", "foreign failure"]
    assert all(e["request_id"] == "r-1" for e in events)
    assert events[0]["items"] == ["first"] and events[1]["shard"] == 3
    assert "ValueError: bad input" in events[2]["exception"] and "ValueError: bad input" in events[3]["exception"]


# -- python-json-logger ----------------------------------------------------------------------


def test_python_json_logger(make_pair: Callable[..., Pair]) -> None:
    """A dict message is merged into the JSON object, extra= fields and the traceback are kept,
    and a dict or extra value changed after the call is logged as it was."""
    pair = make_pair(lambda: JsonFormatter("%(levelname)s %(name)s %(message)s"))
    event = {"event": "login", "user": {"id": 7}}
    tags = ["a"]
    pair.logger.info(event, extra={"request_id": "r-1", "tags": tags})
    try:
        raise KeyError("missing")
    except KeyError:
        pair.logger.exception("lookup failed", extra={"tags": tags})
    event["user"]["id"] = 8  # type: ignore[index]
    tags.append("changed after the call")
    sync = pair.outputs()
    first, second = _lines(sync)
    assert first["event"] == "login" and first["user"] == {"id": 7}
    assert first["request_id"] == "r-1" and first["tags"] == ["a"]
    assert second["message"] == "lookup failed" and "KeyError: 'missing'" in second["exc_info"]


# -- formatters that read what getMessage() consumes -----------------------------------------


class ArgsFormatter(logging.Formatter):
    """Writes the message template and its arguments as logged, not the merged message."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.msg!r} args={record.args!r}"


def test_formatter_reading_args(make_pair: Callable[..., Pair]) -> None:
    """record.msg and record.args reach the formatter, as logged; a mutable argument changed
    after the call is logged as it was at the call."""
    pair = make_pair(ArgsFormatter)
    items = [1, 2]
    pair.logger.info("a %s %d", "x", 3)
    pair.logger.info("mapping %(k)s", {"k": "v"})
    pair.logger.info("items %s", items)
    items.append(3)
    sync = pair.outputs()
    assert sync.splitlines() == [
        "INFO 'a %s %d' args=('x', 3)",
        "INFO 'mapping %(k)s' args={'k': 'v'}",
        "INFO 'items %s' args=([1, 2],)",
    ]


class ExcInfoFormatter(logging.Formatter):
    """Reads ``exc_info`` itself: the exception, its traceback, and a local of the frame that
    caught it."""

    def format(self, record: logging.LogRecord) -> str:
        assert record.exc_info is not None
        etype, value, tb = record.exc_info
        assert etype is not None and value is not None and tb is not None
        marker = tb.tb_frame.f_locals.get("marker")
        head = f"{record.getMessage()} {etype.__name__}{value.args!r} marker={marker!r}"
        return head + "\n" + "".join(traceback.format_tb(tb)).rstrip("\n")


def _fail(n: int) -> None:
    raise ValueError(n * 2)


def test_formatter_reading_exc_info(make_pair: Callable[..., Pair]) -> None:
    """exc_info reaches the formatter, and what it reads of the exception and its frames is what
    they were at the call, not what the caller changed them to afterwards."""
    pair = make_pair(ExcInfoFormatter)
    marker = "at the call"
    try:
        _fail(21)
    except ValueError as exc:
        pair.logger.error("failed", exc_info=True)
        err = exc
    marker = "changed after the call"  # noqa: F841 - read through the frame
    err.args = ("changed after the call",)
    sync = pair.outputs()
    assert sync.startswith("failed ValueError(42,) marker='at the call'\n")
    assert "_fail(21)" in sync and "raise ValueError(n * 2)" in sync


# -- LogRecord subclasses --------------------------------------------------------------------


class SlotRecord(logging.LogRecord):
    """A record whose extra attribute lives in a slot, not in ``__dict__``."""

    __slots__ = ("request_id",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_id = "r-42"


class SlotFormatter(logging.Formatter):
    """Prefixes the record's ``request_id`` slot."""

    def format(self, record: logging.LogRecord) -> str:
        return f"[{record.request_id}] {super().format(record)}"  # type: ignore[attr-defined]


@pytest.fixture
def record_factory() -> Iterator[Callable[[Callable[..., logging.LogRecord]], None]]:
    """Install a LogRecord factory for the test; the previous one is restored after it."""
    previous = logging.getLogRecordFactory()
    yield logging.setLogRecordFactory
    logging.setLogRecordFactory(previous)


def test_slots_record_from_the_record_factory(make_pair: Callable[..., Pair], record_factory: Any) -> None:
    """A LogRecord subclass with __slots__, installed with setLogRecordFactory, keeps its slot."""
    record_factory(SlotRecord)
    pair = make_pair(lambda: SlotFormatter("%(levelname)s %(message)s"))
    pair.logger.info("hello %s", "slots")
    sync = pair.outputs()
    assert sync == "[r-42] INFO hello slots\n"


class SlotLogger(logging.Logger):
    """A Logger subclass whose records are :class:`SlotRecord`."""

    def makeRecord(self, name: str, level: int, fn: str, lno: int, msg: object, args: Any, exc_info: Any,
                   func: str | None = None, extra: Mapping[str, object] | None = None,
                   sinfo: str | None = None) -> logging.LogRecord:  # fmt: skip
        record = SlotRecord(name, level, fn, lno, msg, args, exc_info, func, sinfo)
        for key, value in (extra or {}).items():
            setattr(record, key, value)
        return record


def test_slots_record_from_a_logger_subclass(make_pair: Callable[..., Pair], request: pytest.FixtureRequest) -> None:
    """A LogRecord subclass with __slots__ made by a Logger subclass keeps its slot and extras."""
    pair = make_pair(
        lambda: SlotFormatter("%(levelname)s %(user)s %(message)s"),
        logger=SlotLogger(f"fidelity-slots.{request.node.name}", logging.DEBUG),
    )
    pair.logger.info("hello %s", "slots", extra={"user": "bob"})
    sync = pair.outputs()
    assert sync == "[r-42] INFO bob hello slots\n"


class BraceRecord(logging.LogRecord):
    """Brace-style messages, as the logging cookbook builds them: ``getMessage`` uses
    ``str.format`` with the record's arguments."""

    def getMessage(self) -> str:
        args = self.args
        if isinstance(args, Mapping):
            return str(self.msg).format(**args)
        return str(self.msg).format(*(args or ()))


def test_brace_style_messages(make_pair: Callable[..., Pair], record_factory: Any) -> None:
    """A record class whose getMessage uses str.format gets its own arguments in the writer's
    place: braces in an argument stay literal, a mutable argument is logged as it was."""
    record_factory(BraceRecord)
    pair = make_pair(lambda: logging.Formatter("%(levelname)s %(message)s"))
    items = ["a"]
    pair.logger.info("user {} has {} items", "bob", 3)
    pair.logger.info("literal {}", "{not a field}")
    pair.logger.info("mapping {k}", {"k": "v"})
    pair.logger.info("items {}", items)
    items.append("changed after the call")
    sync = pair.outputs()
    assert sync.splitlines() == [
        "INFO user bob has 3 items",
        "INFO literal {not a field}",
        "INFO mapping v",
        "INFO items ['a']",
    ]


# -- values the caller changes after the call ------------------------------------------------


class BraceMessage:
    """The cookbook's message object: formatted when the record's message is made."""

    def __init__(self, fmt: str, *args: Any) -> None:
        self.fmt, self.args = fmt, args

    def __str__(self) -> str:
        return self.fmt.format(*self.args)


@pytest.mark.parametrize(
    "fmt, style",
    [("%(levelname)s ctx=%(ctx)s %(message)s", "%"), ("{levelname} ctx={ctx} {message}", "{"), ("$levelname ctx=${ctx} $message", "$")],
)
def test_mutable_values_changed_after_the_call(make_pair: Callable[..., Pair], fmt: str, style: Any) -> None:
    """With the stock Formatter, an extra= field, an argument and a message object that the caller
    changes after the call are logged as they were at the call, in each format style."""
    pair = make_pair(lambda: logging.Formatter(fmt, style=style))
    ctx = {"user": "bob"}
    items = ["a"]
    pair.logger.info("items %s", items, extra={"ctx": ctx})
    pair.logger.info(BraceMessage("object {}", items), extra={"ctx": "plain"})
    ctx["user"] = "changed after the call"
    items.append("changed after the call")
    sync = pair.outputs()
    assert sync.splitlines() == [
        "INFO ctx={'user': 'bob'} items ['a']",
        "INFO ctx=plain object ['a']",
    ]


def test_formatter_replaced_after_the_call(make_pair: Callable[..., Pair]) -> None:
    """A record queued before setFormatter() is written with the formatter of its call."""
    pair = make_pair(lambda: logging.Formatter("old %(message)s"))
    pair.logger.info("before")
    for handler in (pair.sync, pair.nonblocking):
        handler.setFormatter(logging.Formatter("new %(message)s"))
    pair.logger.info("after")
    sync = pair.outputs()
    assert sync == "old before\nnew after\n"


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestHandler(_Recording):
    """A handler subclass whose format() adds the caller's request id (a context variable)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{REQUEST_ID.get()} {super().format(record)}"


def test_handler_subclass_overriding_format(make_pair: Callable[..., Pair]) -> None:
    """A handler subclass's format() runs in the caller's context, even with the stock Formatter."""
    pair = make_pair(lambda: logging.Formatter("%(levelname)s %(message)s"), handler_cls=RequestHandler)
    token = REQUEST_ID.set("r-7")
    try:
        pair.logger.info("in a request")
    finally:
        REQUEST_ID.reset(token)
    pair.logger.info("outside")
    sync = pair.outputs()
    assert sync == "r-7 INFO in a request\n- INFO outside\n"


# -- the rule itself: which records the writer may lay out -----------------------------------


class _Str(str):
    """A str subclass: it could format itself from mutable state."""


class _Int(int):
    """An int subclass, likewise."""


def _converted(converter: Any) -> logging.Formatter:
    fmt = logging.Formatter("%(asctime)s %(message)s")
    fmt.converter = converter
    return fmt


def _time_replaced() -> logging.Formatter:
    fmt = logging.Formatter("%(asctime)s %(message)s")
    fmt.formatTime = lambda record, datefmt=None: "then"  # type: ignore[method-assign]
    return fmt


@pytest.mark.parametrize(
    "formatter, extra, record_cls, plain_handler, deferred",
    [
        (lambda: logging.Formatter("%(asctime)s %(levelname)s %(message)s"), {}, logging.LogRecord, True, True),
        (lambda: None, {}, logging.LogRecord, True, True),
        (lambda: logging.Formatter("%(user)s %(n)d %(message)s"), {"user": "bob", "n": 3}, logging.LogRecord, True, True),
        (lambda: logging.Formatter("%(user)s %(message)s"), {"user": ["bob"]}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("%(user)s %(message)s"), {"user": _Str("bob")}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("%(message)s"), {"unused": ["bob"]}, logging.LogRecord, True, True),
        (lambda: logging.Formatter("%(msg)s"), {}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("%(args)s"), {}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("{user!r:>10} {message}", style="{"), {"user": "bob"}, logging.LogRecord, True, True),
        (lambda: logging.Formatter("{message:>{width}}", style="{"), {"width": _Int(10)}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("{user[0]} {message}", style="{"), {"user": ["bob"]}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("${user} $message", style="$"), {"user": {"id": 1}}, logging.LogRecord, True, False),
        (lambda: _converted(time.gmtime), {}, logging.LogRecord, True, True),
        (lambda: _converted(lambda t: time.gmtime(t)), {}, logging.LogRecord, True, False),
        (_time_replaced, {}, logging.LogRecord, True, False),
        (lambda: ArgsFormatter("%(message)s"), {}, logging.LogRecord, True, False),
        (lambda: logging.Formatter("%(message)s"), {}, BraceRecord, True, False),
        (lambda: logging.Formatter("%(message)s"), {}, logging.LogRecord, False, False),
    ],
    ids=[
        "stock", "no formatter", "immutable extras", "mutable extra", "str subclass extra",
        "mutable extra not in the format", "msg in the format", "args in the format",
        "brace style", "int subclass in a nested spec", "item of a mutable extra", "template style mutable",
        "gmtime converter", "own converter", "formatTime replaced", "formatter subclass",
        "record subclass", "handler overrides format",
    ],
)  # fmt: skip
def test_which_records_the_writer_lays_out(
    formatter: Callable[[], logging.Formatter | None],
    extra: dict[str, Any],
    record_cls: type[logging.LogRecord],
    plain_handler: bool,
    deferred: bool,
) -> None:
    """The stock Formatter's layout waits for the writer only when everything it reads is frozen;
    every other record is formatted in the caller (the rule of safelog/_delivery/freeze.py)."""
    fmt = formatter()
    rendered: list[logging.LogRecord] = []

    def render(record: logging.LogRecord) -> str:
        rendered.append(record)
        return (fmt or logging.Formatter()).format(record)

    record = record_cls("app", logging.INFO, __file__, 1, "hello %s", ("bob",), None)
    if record_cls is BraceRecord:
        record.msg = "hello {}"
    record.__dict__.update(extra)
    handler = logging.Handler()
    if not plain_handler:
        handler.format = lambda r: "own"  # type: ignore[method-assign]
    frozen = Freezer(render, handler).freeze(record, fmt)
    assert frozen is not None
    payload, _ = frozen
    if deferred:
        assert isinstance(payload, dict) and rendered == []
        assert payload["msg"] == payload["message"] == "hello bob" and payload["args"] is None
    else:
        assert isinstance(payload, str) and rendered == [record]
