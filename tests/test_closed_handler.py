"""A handler closed by a later dictConfig() but still attached to a logger keeps writing."""

from __future__ import annotations

import logging
import logging.config
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import safelog
from tests.faults_helpers import exact, in_child, make_logger
from tests.helpers import strategy_of


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


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _write_racing_close(path: str, strategy: str) -> tuple[set[int], int]:
    # A thread has fetched the handler's sink and is about to write to it when close(), in
    # another thread, closes it for good; then the thread writes.
    before = _open_fds()
    h = safelog.SafeFileHandler(path, strategy=strategy)
    log = make_logger(h)
    log.info("rec first")
    sink = strategy_of(h)
    fetched, closed = threading.Event(), threading.Event()
    real = type(sink).write_record

    def parked(render: Any, record: logging.LogRecord) -> None:
        fetched.set()
        assert closed.wait(10)
        real(sink, render, record)

    sink.write_record = parked  # type: ignore[method-assign]
    t = threading.Thread(target=log.info, args=("rec raced",))
    t.start()
    assert fetched.wait(10)
    h.close()
    closed.set()
    t.join()
    log.info("rec after")
    h.close()  # the final close: nothing of the handler may stay open
    leaked = _open_fds() - before
    merged = safelog.merge(path).records if strategy == "per-process" else -1
    return leaked, merged


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("strategy", sorted(safelog.STRATEGIES))
def test_emit_racing_close_leaves_no_descriptor(tmp_path: Path, strategy: str) -> None:
    """A record written to a sink that close() retired meanwhile reaches the log through the
    reopened handler, and after the final close() no descriptor of the handler is left (for
    per-process: no shard stays locked, so a merge in the same process merges them all)."""
    path = str(tmp_path / "app.log")
    leaked, merged = in_child(_write_racing_close, path, strategy, timeout=30)
    assert leaked == set()
    if strategy == "per-process":
        assert merged == 3
        exact(path, ["first", "raced", "after"], files=[path])
    else:
        exact(path, ["first", "raced", "after"])


def _emits_racing_closes(path: str, strategy: str, closes: int) -> tuple[set[int], list[int], int]:
    before = _open_fds()
    h = safelog.SafeFileHandler(path, strategy=strategy)
    log = make_logger(h)
    stop = threading.Event()
    counts = [0] * 4

    def emit(k: int) -> None:
        while not stop.is_set():
            log.info("rec t%d-%d", k, counts[k])
            counts[k] += 1  # counted once emit() has returned

    threads = [threading.Thread(target=emit, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for _ in range(closes):
        h.close()
    stop.set()
    for t in threads:
        t.join()
    h.close()
    leaked = _open_fds() - before
    merged = safelog.merge(path).records if strategy == "per-process" else -1
    return leaked, counts, merged


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("strategy", sorted(safelog.STRATEGIES))
def test_close_racing_emit_from_four_threads(tmp_path: Path, strategy: str) -> None:
    """close() called over and over while four threads log: every record whose emit() returned
    is in the log once, and the final close() leaves no descriptor open."""
    path = str(tmp_path / "app.log")
    leaked, counts, merged = in_child(_emits_racing_closes, path, strategy, 300, timeout=60)
    assert leaked == set()
    ids = [f"t{k}-{i}" for k in range(4) for i in range(counts[k])]
    if strategy == "per-process":
        assert merged == len(ids)
        exact(path, ids, files=[path])
    else:
        exact(path, ids)
