"""Options are validated at construction: bad values fail early, naming the option and the value."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import log_files
from safelog._policy.config import STRATEGY_NAMES, Config, QueueConfig, parse_config
from safelog._policy.options import parse_size
from safelog._sinks.registry import STRATEGIES, registered
from tests.helpers import same_file

# (keyword arguments, exception type, texts the message must contain)
BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], tuple[str, ...]]] = [
    ({"strategy": "flok"}, ValueError, ("strategy", "'flok'")),
    ({"strategy": 3}, ValueError, ("strategy", "3")),
    ({"max_bytes": "ten"}, ValueError, ("max_bytes", "'ten'")),
    ({"maxBytes": "ten"}, ValueError, ("max_bytes", "'ten'")),
    ({"max_bytes": "10 XB"}, ValueError, ("max_bytes", "'10 XB'")),
    ({"max_bytes": -5}, ValueError, ("max_bytes", "-5")),
    ({"max_bytes": 1.5}, TypeError, ("max_bytes", "1.5")),
    ({"max_bytes": True}, TypeError, ("max_bytes", "True")),
    ({"backup_count": -1}, ValueError, ("backup_count", "-1")),
    ({"backupCount": -3}, ValueError, ("backup_count", "-3")),
    ({"backup_count": "three"}, TypeError, ("backup_count", "'three'")),
    ({"colour": "red"}, TypeError, ("colour",)),
    ({"maxbytes": 10}, TypeError, ("maxbytes",)),
    ({"mode": "r"}, ValueError, ("mode", "'r'")),
    ({"mode": "x"}, ValueError, ("mode", "'x'")),
    ({"mode": "aw"}, ValueError, ("mode", "'aw'")),
    ({"mode": "wbt"}, ValueError, ("mode", "'wbt'")),
    ({"mode": 1}, TypeError, ("mode", "1")),
    ({"maxBytes": 1000, "max_bytes": 2000}, ValueError, ("max_bytes=2000", "maxBytes=1000")),
    ({"backupCount": 1, "backup_count": 2}, ValueError, ("backup_count=2", "backupCount=1")),
    ({"encoding": "no-such-codec"}, ValueError, ("encoding", "'no-such-codec'")),
    ({"errors": "no-such-handler"}, ValueError, ("errors", "'no-such-handler'")),
    ({"encoding": 8}, TypeError, ("encoding", "8")),
    ({"delay": "maybe"}, TypeError, ("delay", "'maybe'")),
    ({"namer": "not callable"}, TypeError, ("namer", "'not callable'")),
    ({"rotator": 42}, TypeError, ("rotator", "42")),
    ({"compress": "gzip", "max_bytes": 100, "backup_count": 1, "delay_compress": "later"}, TypeError,
     ("delay_compress", "'later'")),
    ({"max_bytes": 100, "backup_count": 1, "delay_compress": True}, ValueError, ("delay_compress=True", "compress")),
    ({"reopen_signal": "SIGTERM"}, ValueError, ("reopen_signal", "'SIGTERM'", "'SIGUSR1'")),
    ({"reopen_signal": 10}, TypeError, ("reopen_signal", "10")),
]


def _case_id(case: tuple[dict[str, Any], type[Exception], tuple[str, ...]]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


def _parse(filename: Any = "app.log", **options: Any) -> Config:
    return parse_config("SafeFileHandler", "flock", False, filename, **options)


@pytest.mark.parametrize(("options", "exc_type", "texts"), BAD_OPTIONS, ids=[_case_id(c) for c in BAD_OPTIONS])
def test_the_parser_rejects_bad_options_without_touching_files(
    tmp_path: Any, monkeypatch: Any, options: dict[str, Any], exc_type: type[Exception], texts: tuple[str, ...]
) -> None:
    """parse_config() alone raises the same error, naming the option and value, and needs no file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc_type) as info:
        _parse("logs/app.log", **options)
    for text in texts:
        assert text in str(info.value), (text, str(info.value))
    assert list(tmp_path.iterdir()) == []


def test_the_parser_normalises_every_value() -> None:
    """Sizes become bytes, durations seconds, aliases one value, and defaults are filled in."""
    c = _parse(
        "app.log", maxBytes="10 MB", backupCount="3", nonblocking=True, flush_interval="200 ms",
        flush_level="warning", retention="2 days", compress="gzip", chmod="0640",
    )  # fmt: skip
    assert c.filename == os.path.abspath("app.log")
    assert (c.strategy, c.rotation.max_bytes, c.rotation.backup_count, c.file.mode) == ("flock", 10_000_000, 3, "a")
    assert (c.file.encoding, c.file.errors) == ("utf-8", "backslashreplace")
    assert c.queue == QueueConfig(
        queue_size=10_000, flush_interval=0.2, max_batch=1000, overflow="block", flush_level=logging.WARNING
    )
    assert c.rotation.max_age == 172_800.0
    assert c.rotation.codec is not None and c.rotation.codec.name == "gzip" and c.file.perms.chmod == 0o640
    assert c.rotation.rotates
    assert not _parse().rotation.rotates and _parse().queue is None


def test_a_class_that_pins_its_strategy_refuses_another() -> None:
    """pinned=True (ThreadFileHandler & co.) makes strategy= a conflict, named with the class."""
    with pytest.raises(ValueError, match="strategy='flock' conflicts with ThreadFileHandler"):
        parse_config("ThreadFileHandler", "thread", True, "app.log", strategy="flock")
    assert parse_config("ThreadFileHandler", "thread", True, "app.log").strategy == "thread"


@pytest.mark.parametrize(("options", "exc_type", "texts"), BAD_OPTIONS, ids=[_case_id(c) for c in BAD_OPTIONS])
def test_bad_option_raises_naming_it(
    tmp_path: Any, options: dict[str, Any], exc_type: type[Exception], texts: tuple[str, ...]
) -> None:
    """A bad option raises ValueError/TypeError naming the option and value, and creates no file."""
    path = tmp_path / "logs" / "app.log"
    with pytest.raises(exc_type) as info:
        safelog.SafeFileHandler(str(path), **options)
    for text in texts:
        assert text in str(info.value), (text, str(info.value))
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(("options", "exc_type", "texts"), BAD_OPTIONS, ids=[_case_id(c) for c in BAD_OPTIONS])
def test_bad_option_fails_dictconfig_naming_it(
    tmp_path: Any, options: dict[str, Any], exc_type: type[Exception], texts: tuple[str, ...],
    dict_config: Callable[..., logging.Logger],
) -> None:
    """Through dictConfig the same error is the cause of "Unable to configure handler 'file'"."""
    path = tmp_path / "logs" / "app.log"
    with pytest.raises(ValueError, match="Unable to configure handler 'file'") as info:
        dict_config({"class": "safelog.SafeFileHandler", "filename": str(path), **options})
    cause = info.value.__cause__
    assert isinstance(cause, exc_type), repr(cause)
    for text in texts:
        assert text in str(cause), (text, str(cause))
    assert not (tmp_path / "logs").exists()


def test_filename_that_is_a_directory(tmp_path: Any, dict_config: Callable[..., logging.Logger]) -> None:
    """A directory as filename is refused directly and through dictConfig, naming the path."""
    with pytest.raises(ValueError, match="filename=.* is a directory") as info:
        safelog.SafeFileHandler(str(tmp_path), strategy="thread")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="Unable to configure handler") as info:
        dict_config({"class": "safelog.SafeFileHandler", "filename": str(tmp_path), "strategy": "per-process"})
    assert "is a directory" in str(info.value.__cause__) and str(tmp_path) in str(info.value.__cause__)


@pytest.mark.parametrize("filename", [None, "", 17])
def test_filename_must_be_a_path(filename: Any) -> None:
    """A missing or non-path filename is a TypeError naming the value."""
    with pytest.raises(TypeError, match=f"filename must be a path, not {filename!r}"):
        safelog.SafeFileHandler(filename)


def test_unopenable_path_fails_at_construction(tmp_path: Any) -> None:
    """A log path below a regular file cannot be opened: the error says so when configuring."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot be opened"):
        safelog.SafeFileHandler(str(tmp_path / "file" / "app.log"), strategy="flock")


@pytest.mark.parametrize(
    ("cls", "strategy"),
    [(safelog.ThreadFileHandler, "flock"), (safelog.FlockFileHandler, "per-process"),
     (safelog.PerProcessFileHandler, "thread")],
)
def test_strategy_class_refuses_another_strategy(tmp_path: Any, cls: type[safelog.SafeFileHandler], strategy: str) -> None:
    """A per-strategy class given a different strategy raises instead of silently ignoring it."""
    with pytest.raises(ValueError, match=f"strategy='{strategy}' conflicts with {cls.__name__}"):
        cls(str(tmp_path / "app.log"), strategy=strategy)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512 KB", 512_000),
        ("10MB", 10_000_000),
        ("1 GiB", 1024**3),
        ("2 KiB", 2048),
        ("1.5 KB", 1500),
        ("10 mb", 10_000_000),
        ("3 b", 3),
        ("  7 MiB ", 7 * 1024**2),
        ("100", 100),
        ("0", 0),
        (4096, 4096),
        (0, 0),
        (None, 0),
    ],
)
def test_parse_size_accepts(value: Any, expected: int) -> None:
    """Sizes are ints or strings with decimal (KB) or binary (KiB) units; 0 and None mean never."""
    assert parse_size("max_bytes", value) == expected


@pytest.mark.parametrize("value", ["ten", "", "10 XB", "-1 MB", "1e3", "10 MB extra", "MB", "1,000"])
def test_parse_size_rejects(value: str) -> None:
    """A size string that is not a number with a known unit is a ValueError quoting it."""
    with pytest.raises(ValueError, match=f"Cannot parse max_bytes from {value!r}"):
        parse_size("max_bytes", value)


@pytest.mark.parametrize(("value", "expected"), [("512 KB", 512_000), ("1 GiB", 1024**3), (300, 300)])
def test_size_strings_reach_the_handler(
    tmp_path: Any, value: Any, expected: int, make_handler: Callable[..., Any]
) -> None:
    """max_bytes and maxBytes both take size strings; the handler keeps the byte count."""
    a = make_handler(str(tmp_path / "a.log"), strategy="thread", max_bytes=value, backup_count=2)
    b = make_handler(str(tmp_path / "b.log"), strategy="thread", maxBytes=value, backupCount=2)
    assert a.maxBytes == b.maxBytes == expected


def test_numeric_strings_for_counts(tmp_path: Any, make_handler: Callable[..., Any]) -> None:
    """backup_count and delay accept the strings an INI file (fileConfig) produces."""
    h = make_handler(str(tmp_path / "app.log"), strategy="thread", backup_count="3", delay="true")
    assert (h.backupCount, h.delay) == (3, True)


def test_same_value_under_both_spellings_is_accepted(tmp_path: Any, make_handler: Callable[..., Any]) -> None:
    """Giving maxBytes and max_bytes the same value is not a conflict."""
    h = make_handler(str(tmp_path / "app.log"), maxBytes=1000, max_bytes=1000, backupCount=2, backup_count=2)
    assert (h.maxBytes, h.backupCount) == (1000, 2)


@pytest.mark.parametrize(
    "options",
    [
        {"max_bytes": 0, "backup_count": 5},
        {"max_bytes": None, "backup_count": 5},
        {"maxBytes": 100, "cls": safelog.RotatingFileHandler},
        {"max_bytes": 100, "backupCount": 0, "cls": safelog.RotatingFileHandler},
    ],
)
def test_no_rotation_without_size_or_backups(
    strategy: str, log_path: str, options: dict[str, Any], make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """max_bytes 0/None mean the file never rotates; so does backup_count 0 for the drop-in
    RotatingFileHandler, which keeps the stdlib's rule."""
    logger.addHandler(make_handler(log_path, strategy=strategy, **options))
    for i in range(50):
        logger.info("record %d with some padding to pass one hundred bytes quickly", i)
    (name,) = log_files(log_path)
    assert os.path.getsize(name) > 50 * 60


def test_second_handler_on_same_path_with_other_strategy_or_encoding_is_refused(tmp_path):
    """A second handler on an open path must not silently get another strategy's or encoding's file."""
    path = str(tmp_path / "app.log")
    first = safelog.SafeFileHandler(path, strategy="flock")
    try:
        with pytest.raises(ValueError, match=r"strategy='flock'.*strategy='thread'"):
            safelog.SafeFileHandler(path, strategy="thread")
        with pytest.raises(ValueError, match=r"encoding='latin-1'"):
            safelog.SafeFileHandler(path, strategy="flock", encoding="latin-1")
        same = safelog.SafeFileHandler(path, strategy="flock")
        assert same_file(same, first)
        same.close()
    finally:
        first.close()


def _dated(name: str) -> str:
    return name + ".dated"


def _shouting(name: str) -> str:
    return name.upper()


def _copying(source: str, dest: str) -> None:
    shutil.copyfile(source, dest)
    os.truncate(source, 0)


def _refusing(source: str, dest: str) -> None:
    raise PermissionError(13, "refused by the test", dest)


class _OwnNames(safelog.SafeFileHandler):
    def rotation_filename(self, default_name: str) -> str:
        return default_name + ".own"


# (first handler's options, second's, the texts of each in the message)
_OTHER_HOOKS = [
    ({"namer": _dated}, {"namer": _shouting}, "namer=_dated, rotator=None", "namer=_shouting, rotator=None"),
    ({"namer": _dated}, {}, "namer=_dated, rotator=None", "namer=None, rotator=None"),
    ({}, {"rotator": _copying}, "namer=None, rotator=None", "namer=None, rotator=_copying"),
    ({"cls": _OwnNames}, {}, "namer=_OwnNames.rotation_filename, rotator=None", "namer=None, rotator=None"),
]


@pytest.mark.parametrize(("first", "second", "theirs", "mine"), _OTHER_HOOKS, ids=["namers", "namer-or-none", "rotator", "subclass-method"])
@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_a_second_handler_with_another_namer_or_rotator_is_refused(
    tmp_path: Any, make_handler: Callable[..., Any], strategy: str, first: dict[str, Any], second: dict[str, Any],
    theirs: str, mine: str,
) -> None:
    """Two handlers of one file share its rotation: a second one whose namer or rotator (or a
    subclass's rotation_filename) differs is refused at configuration, naming both settings,
    instead of making a second series of backups beside the first one's."""
    path = str(tmp_path / "app.log")
    make_handler(path, strategy=strategy, max_bytes=100, backup_count=3, **first)
    with pytest.raises(ValueError) as info:
        make_handler(path, strategy=strategy, max_bytes=100, backup_count=3, **second)
    message = str(info.value)
    assert f"is already open in this process with {theirs}" in message
    assert f"another handler asked for {mine}" in message


def test_a_namer_assigned_after_construction_counts_for_the_next_handler(
    tmp_path: Any, make_handler: Callable[..., Any]
) -> None:
    """The namer the first handler has now is compared, not the one it was built with (the
    stdlib's way: build, then assign namer); the same namer again is accepted."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, max_bytes=100, backup_count=3)
    h.namer = _dated
    with pytest.raises(ValueError, match="with namer=_dated, rotator=None; another handler asked for namer=None"):
        make_handler(path, max_bytes=100, backup_count=3)
    same = make_handler(path, max_bytes=100, backup_count=3, namer=_dated)
    assert same.maxBytes == 100


def test_the_policy_reports_through_a_handler_still_open(tmp_path: Any, make_handler: Callable[..., Any]) -> None:
    """When the handler whose hooks the file's rotation uses is closed, the next handler of the
    file takes over: a rotation that fails is reported through its handleError."""
    path = str(tmp_path / "app.log")
    first = make_handler(path, strategy="thread", max_bytes=100, backup_count=2, rotator=_refusing)
    second = make_handler(path, strategy="thread", max_bytes=100, backup_count=2, rotator=_refusing)
    seen: dict[str, list[str]] = {"first": [], "second": []}
    first.handleError = lambda record: seen["first"].append(record.getMessage())  # type: ignore[method-assign]
    second.handleError = lambda record: seen["second"].append(record.getMessage())  # type: ignore[method-assign]
    first.close()
    log = logging.Logger("hand-over", logging.DEBUG)
    log.addHandler(second)
    for i in range(10):
        log.info("record %d padded to cross one hundred bytes in a few records", i)
    assert seen["first"] == []
    assert seen["second"] and seen["second"][0].startswith("safelog: cannot rotate")


@pytest.mark.parametrize("cls", [safelog.SafeFileHandler, safelog.FlockFileHandler, safelog.FileHandler])
@pytest.mark.parametrize("options", [{"max_bytes": "1 KB"}, {"maxBytes": 1000, "backup_count": 0}])
def test_a_size_limit_without_backups_is_refused(tmp_path: Any, cls: Any, options: dict[str, Any]) -> None:
    """Outside the drop-in RotatingFileHandler, max_bytes with backup_count 0 (which would never
    rotate) is refused at configuration, naming the value and what to give, and creates no file."""
    with pytest.raises(ValueError) as exc:
        cls(str(tmp_path / "app.log"), **options)
    spelled = "max_bytes='1 KB'" if "max_bytes" in options else "maxBytes=1000"
    assert str(exc.value).startswith(f"{spelled} with backup_count=0 (the default) would never rotate")
    assert "give backup_count, the number of backups to keep, e.g. backup_count=5" in str(exc.value)
    assert os.listdir(tmp_path) == []


def test_a_size_limit_with_time_rotation_needs_no_backup_count(tmp_path: Any, make_handler: Callable[..., Any]) -> None:
    """With time rotation, backup_count 0 keeps every backup (as in the stdlib), so max_bytes alone is fine."""
    h = make_handler(str(tmp_path / "app.log"), max_bytes="1 KB", when="H")
    assert (h.maxBytes, h.backupCount) == (1000, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue_size": 5}, "queue_size=5 applies only with nonblocking=True: add nonblocking=True, or remove it"),
        (
            {"queue_size": 5, "overflow": "drop"},
            "queue_size=5, overflow='drop' apply only with nonblocking=True: add nonblocking=True, or remove them",
        ),
    ],
)
def test_queue_options_without_nonblocking_name_their_values(options: dict[str, Any], message: str) -> None:
    """A queue option without nonblocking=True is refused with its value and what to do, in grammatical English."""
    with pytest.raises(ValueError) as exc:
        _parse("app.log", **options)
    assert str(exc.value) == message


def test_the_registry_maps_exactly_the_strategy_names_the_option_accepts() -> None:
    """Every name strategy= accepts has its strategy class, under that class's own name, and no other."""
    assert tuple(STRATEGIES) == STRATEGY_NAMES
    assert all(cls.name == name for name, cls in STRATEGIES.items())


def test_a_strategy_named_on_one_side_only_is_refused_at_import() -> None:
    """The registry's check refuses a class list and a name list that disagree, either way round."""
    classes = tuple(STRATEGIES.values())
    with pytest.raises(RuntimeError, match="do not match STRATEGY_NAMES"):
        registered(classes[:-1], STRATEGY_NAMES)
    with pytest.raises(RuntimeError, match="'socket'"):
        registered(classes, (*STRATEGY_NAMES, "socket"))
    assert registered(classes, STRATEGY_NAMES) == STRATEGIES
