"""The contract every strategy keeps: one write per record, dictConfig, hooks, sharing, errors."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._primitives.shard import FrameError, iter_records
from tests.helpers import current_file, log_descriptor, same_file

PATTERN = r"rec (?P<id>\d{5}) [a-z]+"
CLASS_FOR = {
    "thread": "safelog.ThreadFileHandler",
    "flock": "safelog.FlockFileHandler",
    "per-process": "safelog.PerProcessFileHandler",
}


def rec(i: int, word: str = "payload") -> str:
    return f"rec {i:05d} {word}"


def ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:05d}" for i in range(start, start + n)]


def log_from_threads(log: logging.Logger, nthreads: int, per_thread: int) -> None:
    """Log ``nthreads * per_thread`` distinct records concurrently; re-raise a thread's failure."""
    start = threading.Barrier(nthreads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_thread):
                log.info(rec(t * per_thread + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive(), "a logging thread did not finish"
    assert not errors, errors


def test_one_write_per_record(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger, monkeypatch: Any
) -> None:
    """Every record, a multi-line one included, reaches the file in exactly one write() call."""
    handler = make_handler(log_path, strategy=strategy)
    logger.addHandler(handler)
    real_write = os.write
    calls: list[tuple[int, bytes]] = []

    def counting_write(fd: int, data: Any) -> int:
        calls.append((fd, bytes(data)))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    log_from_threads(logger, nthreads=4, per_thread=200)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception(rec(800, "traceback"))
    monkeypatch.undo()

    fd = log_descriptor(handler)
    writes = [data for f, data in calls if f == fd]
    assert len(writes) == 801
    got: Counter[str] = Counter()
    for data in writes:
        if strategy == "per-process":
            decoded = list(iter_records(io.BytesIO(data)))
            assert len(decoded) == 1 and not isinstance(decoded[0], FrameError), data
            text = decoded[0].text
        else:
            assert data.endswith(b"\n"), data
            text = data[:-1]
        m = re.fullmatch(rb"rec (\d{5}) (payload|traceback\nTraceback .*\nValueError: boom)", text, re.S)
        assert m, data
        got[m.group(1).decode()] += 1
    assert got == Counter(ids(801))
    # The writes are the whole file: nothing else was written, nothing written twice. (In
    # which order: flock's shared-lock writers do not queue, so the file's order of two
    # concurrent writes need not be the order they were recorded in here.)
    (name,) = log_files(log_path)
    with open(name, "rb") as f:
        content = f.read()
    chunks = re.split(rb"(?<=\n)(?=rec \d{5} |\d{4}-\d\d-\d\dT)", content)
    assert Counter(chunks) == Counter(writes)


@pytest.mark.parametrize("spelling", ["snake_case", "stdlib"])
def test_dictconfig_builds_a_rotating_handler(
    strategy: str, spelling: str, log_path: str, dict_config: Callable[..., logging.Logger]
) -> None:
    """dictConfig builds the handler from snake_case or stdlib option names, and it rotates."""
    if spelling == "snake_case":
        cfg = {"class": "safelog.SafeFileHandler", "filename": log_path, "strategy": strategy,
               "max_bytes": "1 KB", "backup_count": 20}
    else:
        cfg = {"class": CLASS_FOR[strategy], "filename": log_path, "maxBytes": 1000,
               "backupCount": 20, "encoding": "utf-8", "delay": True}
    log = dict_config(cfg)
    (handler,) = log.handlers
    assert isinstance(handler, safelog.SafeFileHandler)
    assert (handler.strategy, handler.maxBytes, handler.backupCount) == (strategy, 1000, 20)
    for i in range(200):
        log.info(rec(i))
    files = log_files(log_path)
    # 200 records of 18 bytes (more in a shard) at 1000 bytes per file: at least 3 backups.
    assert len([f for f in files if re.search(r"\.\d+$", f)]) >= 3, files
    for f in files:
        assert os.path.getsize(f) <= 1000, f
    report = audit(files, ids(200), PATTERN)
    assert report.ok, report.summary()


def test_namer_and_rotator_hooks(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """Backups are named by ``namer`` and moved by ``rotator``, as in logging.handlers."""
    moves: list[tuple[str, str]] = []

    def namer(name: str) -> str:
        return name + ".bak"

    def rotator(source: str, dest: str) -> None:
        moves.append((source, dest))
        os.replace(source, dest)

    handler = make_handler(log_path, strategy=strategy, max_bytes=100, backup_count=10,
                           namer=namer, rotator=rotator)
    logger.addHandler(handler)
    for i in range(20):  # about 5 records per 100-byte file: 3 or more rotations
        logger.info(rec(i))
    assert len(moves) >= 3
    target = current_file(handler)
    assert all(move == (target, target + ".1.bak") for move in moves), moves
    names = sorted(os.path.basename(f) for f in log_files(log_path))
    base = os.path.basename(target)
    assert names == sorted([base] + [f"{base}.{i}.bak" for i in range(1, len(moves) + 1)])
    report = audit(log_files(log_path), ids(20), PATTERN)
    assert report.ok, report.summary()


def test_log_directory_is_created(
    strategy: str, tmp_path: Any, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """A log path whose directories do not exist yet works: they are created."""
    path = tmp_path / "not" / "there" / "app.log"
    logger.addHandler(make_handler(str(path), strategy=strategy))
    logger.info(rec(1))
    assert (tmp_path / "not" / "there").is_dir()
    report = audit(log_files(str(path)), ids(1, 1), PATTERN)
    assert report.ok and report.records == 1, report.summary()


def test_delay_creates_nothing_before_the_first_record(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """With delay=True no file appears until something is logged."""
    logger.addHandler(make_handler(log_path, strategy=strategy, delay=True))
    assert os.listdir(os.path.dirname(log_path)) == []
    logger.info(rec(1))
    assert log_files(log_path)


def test_two_handlers_on_one_path_share_one_sink(
    strategy: str, tmp_path: Any, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """Handlers naming one real path (different spellings, a symlink) share one sink and lock."""
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path, tmp_path / "link")
    path = str(tmp_path / "app.log")
    h1 = make_handler(path, strategy=strategy)
    h2 = make_handler(str(tmp_path / "sub" / ".." / "app.log"), strategy=strategy)
    h3 = make_handler(str(tmp_path / "link" / "app.log"), strategy=strategy)
    assert same_file(h1, h2, h3)
    # Each handler gets half of the records, from two threads each.
    h1.addFilter(lambda r: int(r.getMessage().split()[1]) % 2 == 0)
    h2.addFilter(lambda r: int(r.getMessage().split()[1]) % 2 == 1)
    logger.addHandler(h1)
    logger.addHandler(h2)
    log_from_threads(logger, nthreads=4, per_thread=250)
    # Closing one handler must not close the file under the others.
    logger.removeHandler(h1)
    h1.close()
    logger.removeHandler(h2)
    logger.addHandler(h3)
    logger.info(rec(1000))
    report = audit(log_files(path), ids(1001), PATTERN)
    assert report.ok, report.summary()


def test_multiline_records_stay_intact(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """Tracebacks logged by several threads at once come back whole, one block per record."""
    expected: dict[str, str] = {}

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            expected[record.getMessage().split()[1]] = self.format(record)

    logger.addHandler(Collect())
    logger.addHandler(make_handler(log_path, strategy=strategy))
    start = threading.Barrier(4)

    def fail(n: int) -> None:
        raise ValueError(f"boom {n}\nsecond line of the message")

    def work(t: int) -> None:
        start.wait(timeout=30)
        for i in range(t * 100, t * 100 + 100):
            try:
                fail(i)
            except ValueError:
                logger.exception(f"rec {i:05d} start")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    got: list[str] = []
    for name in log_files(log_path):
        with open(name, "rb") as f:
            if strategy == "per-process":
                items = list(iter_records(f))
                assert not [x for x in items if isinstance(x, FrameError)]
                got.extend(x.text.decode() for x in items)  # type: ignore[union-attr]
            else:
                # A plain file has no framing: a record is its first line and every line up
                # to the next first line.
                blocks = re.split(r"(?m)^(?=rec \d{5} start$)", f.read().decode())
                assert blocks[0] == ""
                got.extend(b[:-1] for b in blocks[1:])
    assert len(expected) == 400
    assert Counter(got) == Counter(expected.values())


def test_logging_after_close_reopens_in_append_mode(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """A record sent to a closed append-mode handler reopens it and is written, as with FileHandler."""
    handler = make_handler(log_path, strategy=strategy)
    logger.addHandler(handler)
    logger.info(rec(1))
    handler.close()
    handler.close()  # closing twice is harmless, as for logging.FileHandler
    reported: list[str] = []
    handler.handleError = lambda record: reported.append(record.getMessage())
    logger.info(rec(2))
    logger.info(rec(3))
    assert reported == []
    report = audit(log_files(log_path), ids(3, 1), PATTERN)
    assert report.ok and report.records == 3, report


def test_formatting_error_goes_to_handle_error(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """A record that cannot be formatted goes to handleError, and the next record is written."""
    handler = make_handler(log_path, strategy=strategy)
    logger.addHandler(handler)
    reported: list[str] = []
    handler.handleError = lambda record: reported.append(record.msg)
    logger.info("rec %05d payload", "not a number")
    logger.info(rec(1))
    assert reported == ["rec %05d payload"]
    report = audit(log_files(log_path), ids(1, 1), PATTERN)
    assert report.ok and report.records == 1, report


def test_a_formatter_that_logs_to_the_same_file_does_not_deadlock(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """thread and per-process format under the file's lock (so threads do not convoy): a
    formatter that itself logs through the same handler re-enters it instead of hanging."""

    class Chatty(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            if record.getMessage() == rec(0):
                logger.info(rec(1))  # logged while rec 0 is being formatted
            return super().format(record)

    handler = make_handler(log_path, strategy=strategy)
    handler.setFormatter(Chatty())
    logger.addHandler(handler)
    t = threading.Thread(target=logger.info, args=(rec(0),), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the handler deadlocked on its own lock"
    report = audit(log_files(log_path), ids(2), PATTERN)
    assert report.ok and report.records == 2, report


@pytest.mark.parametrize("strategy", ["thread", "per-process"])
def test_logging_after_close_in_mode_w_reports_once_and_does_not_raise(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """In mode 'w' (reopening would truncate) a closed handler reports to handleError once per burst."""
    handler = make_handler(log_path, "w", strategy=strategy)
    logger.addHandler(handler)
    logger.info(rec(1))
    handler.close()
    reported: list[str] = []
    handler.handleError = lambda record: reported.append(record.getMessage())
    logger.info(rec(2))
    logger.info(rec(3))
    assert reported == [rec(2)]
    report = audit(log_files(log_path), ids(3, 1), PATTERN)
    assert report.lost == ["00002", "00003"] and report.records == 1 and not report.malformed, report


@pytest.mark.parametrize("strategy", ["thread", "per-process"])
def test_closed_handler_error_goes_to_stderr(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger, capsys: Any,
    monkeypatch: Any,
) -> None:
    """With the stock handleError a write to a closed mode-'w' handler prints a logging error, no raise."""
    monkeypatch.setattr(logging, "raiseExceptions", True)
    handler = make_handler(log_path, "w", strategy=strategy)
    logger.addHandler(handler)
    handler.close()
    logger.info(rec(1))
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "closed" in err


def test_lone_surrogates_do_not_lose_the_record(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger,
    records: Callable[[str], list[str]],
) -> None:
    """Text the encoding cannot represent is escaped (default errors), never dropped."""
    logger.addHandler(make_handler(log_path, strategy=strategy))
    logger.info("rec 00001 bad \udcff byte")
    logger.info(rec(2))
    assert records(log_path) == ["rec 00001 bad \\udcff byte", rec(2)]


@pytest.mark.parametrize(
    ("encoding", "errors", "raw"),
    [
        ("latin-1", None, b"caf\xe9 \\u20ac"),
        ("latin-1", "replace", b"caf\xe9 ?"),
        ("utf-8", None, "café €".encode()),
        ("ascii", "xmlcharrefreplace", b"caf&#233; &#8364;"),
    ],
)
def test_encoding_and_errors_options(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger,
    encoding: str, errors: str | None, raw: bytes,
) -> None:
    """The file is written in ``encoding``; unencodable characters follow ``errors``."""
    logger.addHandler(make_handler(log_path, strategy=strategy, encoding=encoding, errors=errors))
    logger.info("café €")
    (name,) = log_files(log_path)
    with open(name, "rb") as f:
        data = f.read()
    assert data.endswith(b" " + raw + b"\n") if strategy == "per-process" else data == raw + b"\n"


def test_mode_w_truncates_once(
    log_path: str, make_handler: Callable[..., Any], logger: logging.Logger, records: Callable[[str], list[str]]
) -> None:
    """mode='w' (thread strategy) starts the file empty, like logging.FileHandler."""
    with open(log_path, "w") as f:
        f.write("old line\n")
    logger.addHandler(make_handler(log_path, "w", strategy="thread"))
    logger.info(rec(1))
    logger.info(rec(2))
    assert records(log_path) == [rec(1), rec(2)]


def test_public_exports() -> None:
    """safelog.__all__ names the handler classes, and each class picks its strategy."""
    for name in ("SafeFileHandler", "RotatingFileHandler", "ThreadFileHandler",
                 "FlockFileHandler", "PerProcessFileHandler", "STRATEGIES"):
        assert name in safelog.__all__ and hasattr(safelog, name), name
    assert set(safelog.STRATEGIES) == {"thread", "flock", "per-process"}
    for cls in (safelog.RotatingFileHandler, safelog.ThreadFileHandler,
                safelog.FlockFileHandler, safelog.PerProcessFileHandler):
        assert issubclass(cls, safelog.SafeFileHandler) and issubclass(cls, logging.Handler)
    assert safelog.SafeFileHandler.default_strategy == "flock"
    assert safelog.RotatingFileHandler.default_strategy == "flock"
    assert safelog.ThreadFileHandler.default_strategy == "thread"
    assert safelog.FlockFileHandler.default_strategy == "flock"
    assert safelog.PerProcessFileHandler.default_strategy == "per-process"


def test_rotating_file_handler_takes_stdlib_positional_arguments(
    log_path: str, make_handler: Callable[..., Any]
) -> None:
    """safelog.RotatingFileHandler(filename, mode, maxBytes, backupCount, ...) is the stdlib call."""
    std = logging.handlers.RotatingFileHandler(log_path + ".std", "a", 2000, 3, "utf-8", True)
    std.close()
    h = make_handler(log_path, "a", 2000, 3, "utf-8", True, cls=safelog.RotatingFileHandler)
    assert (h.strategy, h.maxBytes, h.backupCount, h.encoding, h.delay) == ("flock", 2000, 3, "utf-8", True)
    assert (h.baseFilename, h.mode) == (std.baseFilename[: -len(".std")], std.mode)
