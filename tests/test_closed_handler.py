"""A handler closed by a later dictConfig() but still attached to a logger keeps writing."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

import pytest

import safelog


def _config(path: Path, logger: str) -> dict[str, object]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"f": {"class": "safelog.SafeFileHandler", "filename": str(path)}},
        "loggers": {logger: {"level": "INFO", "handlers": ["f"], "propagate": False}},
    }


def test_second_dictconfig_does_not_silence_first(tmp_path: Path) -> None:
    """Like gunicorn's access log after Django applies LOGGING: records still reach the file."""
    first, second = tmp_path / "access.log", tmp_path / "app.log"
    try:
        logging.config.dictConfig(_config(first, "t.access"))
        logging.config.dictConfig(_config(second, "t.app"))  # closes t.access's handler
        logging.getLogger("t.access").info("after reconfiguration")
        logging.getLogger("t.app").info("app record")
    finally:
        for name in ("t.access", "t.app"):
            for h in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(h)
                h.close()
    assert first.read_text() == "after reconfiguration\n"
    assert second.read_text() == "app record\n"


def test_closed_write_mode_handler_does_not_truncate_again(tmp_path: Path) -> None:
    """mode='w' is not reopened after close(), as logging.FileHandler, so it cannot truncate twice."""
    path = tmp_path / "w.log"
    h = safelog.SafeFileHandler(path, mode="w", strategy="thread")
    h.emit(logging.makeLogRecord({"msg": "kept"}))
    h.close()
    errors: list[logging.LogRecord] = []
    h.handleError = errors.append  # type: ignore[method-assign]
    h.emit(logging.makeLogRecord({"msg": "dropped"}))
    assert path.read_text() == "kept\n"
    assert len(errors) == 1


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_reopened_handler_closes_cleanly(tmp_path: Path, strategy: str) -> None:
    """A reopened handler can be closed again and then reopened once more."""
    path = tmp_path / "a.log"
    h = safelog.SafeFileHandler(path, strategy=strategy)
    for text in ("one", "two", "three"):
        h.emit(logging.makeLogRecord({"msg": text}))
        h.close()
    assert path.read_text() == "one\ntwo\nthree\n"
