"""Shared fixtures of the core suite: fresh log paths, handlers and loggers cleaned up after use."""

from __future__ import annotations

import logging
import logging.config
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import safelog
from safelog import log_files
from safelog._primitives.shard import FrameError, iter_records

ALL_STRATEGIES = ("thread", "flock", "per-process")


@pytest.fixture(params=ALL_STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    """Each strategy in turn: the contract holds for all of them."""
    return str(request.param)


@pytest.fixture
def log_path(tmp_path: Any) -> str:
    """A log file path in a fresh directory of its own."""
    return str(tmp_path / "app.log")


@pytest.fixture
def make_handler() -> Iterator[Callable[..., safelog.SafeFileHandler]]:
    """Build SafeFileHandler (or a subclass via ``cls=``) and close every one after the test."""
    made: list[logging.Handler] = []

    def make(*args: Any, cls: type[safelog.SafeFileHandler] = safelog.SafeFileHandler, **kwargs: Any) -> Any:
        handler = cls(*args, **kwargs)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()
    # Backups queued for compression are written by a background worker: let it finish, so
    # no test leaves it running into the next one.
    assert safelog.wait_for_compression(30)


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger private to the test, detached from root; its handlers are closed afterwards.

    It is built directly, not through ``logging.getLogger``: pytest attaches its capture handler
    to every registered non-propagating logger, which would add a second handler (and its cost)
    to every record. Fork children get the object itself, as an argument.
    """
    log = logging.Logger(f"safelog-test.{request.node.name}", logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


@pytest.fixture
def dict_config(request: pytest.FixtureRequest) -> Iterator[Callable[[dict[str, Any]], logging.Logger]]:
    """Run ``logging.config.dictConfig`` with one handler named "file" on a private logger."""
    names: list[str] = []

    def configure(handler_config: dict[str, Any]) -> logging.Logger:
        name = f"safelog-dict.{request.node.name}.{len(names)}"
        names.append(name)
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(message)s"}},
                "handlers": {"file": {"formatter": "plain", **handler_config}},
                "loggers": {name: {"handlers": ["file"], "level": "DEBUG", "propagate": False}},
            }
        )
        return logging.getLogger(name)

    yield configure
    for name in names:
        log = logging.getLogger(name)
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


def read_records(path: str) -> list[str]:
    """The records of one log in file order: lines of plain files, decoded records of shards.

    Fails the test on a torn line or a broken shard frame, so callers can compare texts exactly.
    """
    out: list[str] = []
    for name in log_files(path):
        with open(name, "rb") as f:
            if ".shard" in os.path.basename(name):
                for item in iter_records(f):
                    assert not isinstance(item, FrameError), f"{name}: {item}"
                    out.append(item.text.decode("utf-8"))
            else:
                data = f.read()
                assert data == b"" or data.endswith(b"\n"), f"{name}: torn last line"
                out.extend(data.decode("utf-8").splitlines())
    return out


@pytest.fixture
def records() -> Callable[[str], list[str]]:
    """The ``read_records`` helper, as a fixture so test modules need not import conftest."""
    return read_records


@pytest.fixture
def tz() -> Iterator[Callable[[str], None]]:
    """Switch the process's local time zone (TZ + time.tzset()) for one test; the original zone
    comes back afterwards."""
    old = os.environ.get("TZ")

    def use(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()
