"""mode='w' truncates the log once, when the handler opens it, under the strategy's exclusion;
the other modes the stdlib accepts mean what they mean there, or are refused by name."""

from __future__ import annotations

import logging
import multiprocessing
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faults_helpers import join_all

import safelog

WAIT = 60
LINE = re.compile(r"(?P<who>[a-z]+)-(?P<n>\d{5})")


def _lines(path: str | Path) -> list[str]:
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return data.decode().splitlines()


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    log = logging.Logger(name, logging.INFO)
    log.addHandler(handler)
    return log


@pytest.mark.parametrize("strategy", ["thread", "flock"])
@pytest.mark.parametrize("mode", ["w", "wb", "w+", "wb+"])
def test_write_modes_truncate_once_at_open(tmp_path: Path, make_handler: Callable[..., Any], strategy: str, mode: str) -> None:
    """FileHandler(path, 'w') (and 'wb', 'w+', which the stdlib accepts too) empties the file when
    the handler opens it, under every strategy of one file, flock included; ``mode`` keeps the
    value given, as in the stdlib."""
    path = tmp_path / "app.log"
    path.write_text("old-1\nold-2\n")
    h = make_handler(str(path), mode, cls=safelog.FileHandler, strategy=strategy)
    assert h.mode == mode
    assert path.read_text() == ""
    log = _logger(h, f"w-{strategy}-{mode}")
    log.info("new-1")
    log.info("new-2")
    assert _lines(path) == ["new-1", "new-2"]


@pytest.mark.parametrize("mode", ["a", "ab", "a+", "ab+"])
def test_append_modes_keep_the_file(tmp_path: Path, make_handler: Callable[..., Any], mode: str) -> None:
    """'a', 'ab', 'a+' (the stdlib accepts them all) append to what is there."""
    path = tmp_path / "app.log"
    path.write_text("old-1\n")
    log = _logger(make_handler(str(path), mode, cls=safelog.FileHandler), f"a-{mode}")
    log.info("new-1")
    assert _lines(path) == ["old-1", "new-1"]


@pytest.mark.parametrize("mode", ["r", "r+", "x", "rw", "wt+b", "ww"])
def test_a_mode_that_is_no_log_mode_is_refused_naming_it(tmp_path: Path, mode: str) -> None:
    """Reading, exclusive creation or a malformed mode: a ValueError naming mode and value, and
    the file untouched."""
    path = tmp_path / "app.log"
    path.write_text("old-1\n")
    with pytest.raises(ValueError, match=re.escape(f"mode={mode!r}")):
        safelog.FileHandler(str(path), mode)
    assert path.read_text() == "old-1\n"


def test_a_size_limited_handler_appends_whatever_the_mode(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """As the stdlib's RotatingFileHandler: with maxBytes > 0, mode 'w' becomes 'a' (a log
    rotated by size is never truncated at open)."""
    path = tmp_path / "app.log"
    path.write_text("old-1\n")
    h = make_handler(str(path), "w", 1000, 3, cls=safelog.RotatingFileHandler)
    assert h.mode == "a"
    _logger(h, "sized").info("new-1")
    assert _lines(path) == ["old-1", "new-1"]


def _appender(path: str, started: Any, truncated: Any, n: int) -> None:
    log = _logger(safelog.FileHandler(path), "appender")
    for i in range(n):
        log.info("b-%05d", i)
        if i == 200:
            started.set()
        if i == n // 2:
            assert truncated.wait(WAIT)  # the second half is surely written after the truncation


def test_mode_w_truncates_under_the_lock_while_another_process_appends(tmp_path: Path) -> None:
    """A flock handler opened with 'w' while another process appends: the file loses exactly the
    other process's records written before the truncation, none torn, none after it."""
    path = str(tmp_path / "app.log")
    ctx = multiprocessing.get_context("fork")
    started, truncated = ctx.Event(), ctx.Event()
    n = 4000
    child = ctx.Process(target=_appender, args=(path, started, truncated, n))
    child.start()
    try:
        assert started.wait(WAIT)
        h = safelog.FileHandler(path, "w")  # truncates now, while the child writes
        truncated.set()
        _logger(h, "truncating").info("a-00000")
        h.close()
    finally:
        join_all([child])
    assert child.exitcode == 0
    lines = _lines(path)
    assert all(LINE.fullmatch(line) for line in lines), [x for x in lines if not LINE.fullmatch(x)][:3]
    kept = [int(line[2:]) for line in lines if line.startswith("b-")]
    # A suffix of the child's records, each once: everything from the first one kept on.
    assert kept == list(range(kept[0], n)) and kept[0] > 200
    assert lines.count("a-00000") == 1


def _child_inherits(log: logging.Logger) -> None:
    log.info("child-00001")


def _child_configures(path: str) -> None:
    h = safelog.FileHandler(path, "w")
    _logger(h, "spawned").info("child-00001")
    h.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("delay", [False, True], ids=["open", "delay"])
def test_mode_w_truncates_in_the_process_that_opens_the_handler_only(
    tmp_path: Path, make_handler: Callable[..., Any], method: str, delay: bool
) -> None:
    """A fork child that inherits a 'w' handler appends (it never truncates again); a spawn or
    forkserver child that configures its own 'w' handler truncates when that opens, as every
    process opening a file with 'w' does in the stdlib."""
    path = tmp_path / "app.log"
    path.write_text("old-00001\n")
    h = make_handler(str(path), "w", cls=safelog.FileHandler, delay=delay)
    log = _logger(h, f"parent-{method}-{delay}")
    log.info("parent-00001")
    ctx = multiprocessing.get_context(method)
    if method == "fork":
        child = ctx.Process(target=_child_inherits, args=(log,))
    else:
        child = ctx.Process(target=_child_configures, args=(str(path),))
    child.start()
    join_all([child])
    assert child.exitcode == 0
    log.info("parent-00002")
    if method == "fork":
        assert _lines(path) == ["parent-00001", "child-00001", "parent-00002"]
    else:
        assert _lines(path) == ["child-00001", "parent-00002"]


def test_mode_w_with_delay_truncates_at_the_first_record_of_its_own_process(
    tmp_path: Path, make_handler: Callable[..., Any]
) -> None:
    """With delay=True the file is truncated at the first record of the process that configured
    the handler, as the stdlib opens it then: a fork child that wrote before it loses those
    records to the truncation, and never truncates itself."""
    path = tmp_path / "app.log"
    path.write_text("old-00001\n")
    log = _logger(make_handler(str(path), "w", cls=safelog.FileHandler, delay=True), "delayed")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_inherits, args=(log,))
    child.start()
    join_all([child])
    assert child.exitcode == 0
    assert _lines(path) == ["old-00001", "child-00001"]
    log.info("parent-00001")
    assert _lines(path) == ["parent-00001"]
