"""nonblocking=True: records are frozen in the caller, queued, and written in batches by one
background thread per file; nothing is lost on close, shutdown, exit, fork or overflow."""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._delivery import queue as _queue
from tests.faults_helpers import wait_until
from tests.helpers import strategy_of

STRATEGIES = ("thread", "flock", "per-process")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = r"(?:\S+ \d+ )?id=(?P<id>\S+)( .*)?"


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A private logger; its handlers are closed after the test."""
    log = logging.getLogger(f"safelog-nb.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def _add(log: logging.Logger, path: str, fmt: str = "%(message)s", **kwargs: Any) -> safelog.SafeFileHandler:
    handler = safelog.SafeFileHandler(path, nonblocking=True, **kwargs)
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    return handler


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _log_from_threads(log: logging.Logger, nthreads: int, per_thread: int, padding: str = "") -> list[str]:
    """Log ``per_thread`` records from each of ``nthreads`` threads at once; the ids logged."""

    def work(t: int) -> None:
        for i in range(per_thread):
            log.info("id=t%d-%d%s", t, i, padding)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a logging thread did not finish"
    return [f"t{t}-{i}" for t in range(nthreads) for i in range(per_thread)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_threads_exact_audit_with_rotation(tmp_path: Any, logger: logging.Logger, strategy: str) -> None:
    """Four threads through one queue: every record exactly once, rotated files within the limit."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy=strategy, max_bytes=4096, backup_count=1000, max_batch=64)
    expected = _log_from_threads(logger, 4, 1000, " padding-padding-padding")
    handler.close()
    files = log_files(path)
    report = audit(files, expected, RECORD)
    assert report.ok, report.summary()
    assert len(files) > 10
    assert all(os.path.getsize(f) <= 4096 for f in files)


def test_batches_rotate_exactly_like_synchronous_writes(tmp_path: Any, logger: logging.Logger) -> None:
    """A batch crossing the size limit is split where record-by-record writing rotates: same files."""
    sync_path, nb_path = str(tmp_path / "sync" / "app.log"), str(tmp_path / "nb" / "app.log")
    sync = safelog.SafeFileHandler(sync_path, strategy="thread", max_bytes=1000, backup_count=100)
    sync.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(sync)
    nb = _add(logger, nb_path, strategy="thread", max_bytes=1000, backup_count=100, flush_interval=60)
    for i in range(300):
        logger.info("id=%d %s", i, "x" * (i % 37))
    nb.flush()
    sync_files = [open(f, "rb").read() for f in log_files(sync_path)]
    nb_files = [open(f, "rb").read() for f in log_files(nb_path)]
    assert len(sync_files) > 5
    assert nb_files == sync_files


def test_one_lock_and_one_write_per_batch(tmp_path: Any, logger: logging.Logger, monkeypatch: Any) -> None:
    """100 queued records reach a flock file with one lock acquisition and one write()."""
    import safelog._sinks.flock as flock_mod
    from safelog._sinks.logfile import LogFile

    calls: list[int] = []
    real_flock = flock_mod._flock
    monkeypatch.setattr(flock_mod, "_flock", lambda fd, op: (calls.append(op), real_flock(fd, op))[1])
    handler = _add(logger, str(tmp_path / "app.log"), strategy="flock", flush_interval=60)
    writes: list[int] = []
    real_write_all = LogFile.write_all

    def counting(file: LogFile, data: bytes) -> None:
        writes.append(data.count(b"\n"))
        real_write_all(file, data)

    monkeypatch.setattr(LogFile, "write_all", counting)
    for i in range(100):
        logger.info("id=%d", i)
    handler.flush()
    assert calls.count(flock_mod._LOCK_EX) == 1
    assert writes == [100]


def test_arguments_and_exception_are_frozen_in_the_caller(tmp_path: Any, logger: logging.Logger) -> None:
    """Mutating an argument after the call, or the frames of a traceback, cannot change the log."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, fmt="%(levelname)s %(message)s", flush_interval=60)
    items = ["before"]
    logger.info("items=%s", items)
    try:
        raise KeyError("boom")
    except KeyError:
        logger.warning("failed with %s", items, exc_info=True)
    items[0] = "after"
    handler.flush()
    text = open(path, encoding="utf-8").read()
    assert "INFO items=['before']" in text
    assert "WARNING failed with ['before']" in text
    assert "KeyError: 'boom'" in text
    assert "after" not in text


def test_escape_newlines_applies_in_the_writer(tmp_path: Any, logger: logging.Logger) -> None:
    """escape_newlines=True escapes a forged line break in non-blocking mode too."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, escape_newlines=True)
    logger.info("id=1 user=%s", "bob\nid=2 forged")
    handler.flush()
    assert open(path).read() == "id=1 user=bob\\nid=2 forged\n"


def test_stock_formatter_lays_out_in_the_writer_thread(tmp_path: Any, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the stock Formatter the caller only freezes the record: the layout (formatTime and
    the rest) runs in the background writer."""
    seen: list[str] = []
    format_time = logging.Formatter.formatTime

    def spy(self: logging.Formatter, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seen.append(threading.current_thread().name)
        return format_time(self, record, datefmt)

    monkeypatch.setattr(logging.Formatter, "formatTime", spy)
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, fmt="%(asctime)s %(request)s %(message)s")
    for i in range(10):
        logger.info("id=%d user=%s", i, "bob", extra={"request": "r-1"})
    handler.flush()
    assert [line.split(" ", 2)[2] for line in open(path).read().splitlines()] == [
        f"r-1 id={i} user=bob" for i in range(10)
    ]
    assert len(seen) == 10
    assert all(name.startswith("safelog-writer") for name in seen)


def test_other_formatters_run_in_the_caller(tmp_path: Any, logger: logging.Logger) -> None:
    """A formatter subclass may read anything the caller can still change, so it runs in the
    caller; the writer only writes its text."""
    seen: list[str] = []

    class Spy(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            seen.append(threading.current_thread().name)
            return super().format(record)

    path = str(tmp_path / "app.log")
    handler = _add(logger, path)
    handler.setFormatter(Spy("%(message)s"))
    for i in range(10):
        logger.info("id=%d", i)
    handler.flush()
    assert seen == [threading.current_thread().name] * 10
    assert open(path).read() == "".join(f"id={i}\n" for i in range(10))


def test_one_writer_thread_per_file(tmp_path: Any, logger: logging.Logger) -> None:
    """Two handlers on one file share one queue and one thread; another file gets its own."""
    a = _add(logger, str(tmp_path / "a.log"))
    b = _add(logger, str(tmp_path / "a.log"))
    c = _add(logger, str(tmp_path / "c.log"))
    logger.info("id=1")
    assert a._writer is b._writer is not None
    assert c._writer is not a._writer
    names = [t.name for t in threading.enumerate() if t.name.startswith("safelog-writer")]
    assert sorted(names) == sorted({f"safelog-writer {tmp_path / 'a.log'}", f"safelog-writer {tmp_path / 'c.log'}"})
    for h in (a, b, c):
        h.flush()
    assert open(tmp_path / "a.log").read() == "id=1\nid=1\n"


def test_flush_interval_and_flush_level(tmp_path: Any, logger: logging.Logger) -> None:
    """Below flush_level a record waits for flush_interval; an ERROR is written at once with it."""
    path = str(tmp_path / "app.log")
    _add(logger, path, flush_interval=30)
    logger.info("id=waiting")
    # The writer thread is running and idle-waiting on its 30 s deadline: nothing written yet.
    wait_until(lambda: any(t.name.startswith("safelog-writer") for t in threading.enumerate()), what="the writer thread")
    assert os.path.getsize(path) == 0
    logger.error("id=urgent")
    wait_until(lambda: os.path.getsize(path) > 0, what="the ERROR record to be written")
    assert open(path).read() == "id=waiting\nid=urgent\n"

    short = str(tmp_path / "short.log")
    _add(logger, short, flush_interval="50 ms")
    logger.info("id=soon")
    # No flush, no error: the interval alone writes it.
    wait_until(lambda: os.path.getsize(short) > 0, what="the flush interval to write the record")


def _burst_while_the_writer_stalls(logger: logging.Logger, handler: safelog.SafeFileHandler, count: int) -> None:
    """Log ``id=0`` … ``id=count-1`` while the writer is blocked in ``write_many`` (the strategy's
    lock held, as if the disk stalled). The burst starts only once the writer holds its first
    batch: a writer that took that batch late would free room for the last records, and none of
    them would drop."""
    strategy = strategy_of(handler)
    entered = threading.Event()
    write_many = strategy.write_many

    def entering(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return write_many(*args, **kwargs)

    strategy.write_many = entering  # type: ignore[method-assign]
    with strategy.lock:
        logger.info("id=0")
        assert entered.wait(30), "the writer never took its first batch"
        for i in range(1, count):
            logger.info("id=%d", i)


def test_overflow_drop_counts_and_reports(tmp_path: Any, logger: logging.Logger) -> None:
    """With overflow='drop' a full queue drops new records; the notice says exactly how many."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy="thread", queue_size=10, max_batch=10, overflow="drop", flush_interval=0)
    _burst_while_the_writer_stalls(logger, handler, 200)
    handler.flush()
    logger.info("id=after")
    handler.flush()
    lines = open(path).read().splitlines()
    # Records are written in order with one notice per stretch of drops, placed where the gap is:
    # each notice counts exactly the ids missing between its neighbours ("after" counts as 200).
    previous, dropped, notices = -1, 0, 0
    for k, line in enumerate(lines):
        if line.startswith("safelog: dropped"):
            following = lines[k + 1]
            nxt = 200 if following == "id=after" else int(following[3:])
            assert int(line.split()[2]) == nxt - previous - 1, lines
            dropped += nxt - previous - 1
            notices += 1
        elif line != "id=after":
            current = int(line[3:])
            assert current > previous
            if current != previous + 1:
                assert lines[k - 1].startswith("safelog: dropped"), lines
            previous = current
    assert notices >= 1 and dropped > 0
    assert lines[-1] == "id=after"
    assert len(lines) - notices - 1 + dropped == 200


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_overflow_block_loses_nothing(tmp_path: Any, logger: logging.Logger, strategy: str) -> None:
    """With the default overflow='block' a tiny queue slows callers down but loses nothing."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy=strategy, queue_size=3, max_batch=2)
    expected = _log_from_threads(logger, 3, 300)
    handler.close()
    report = audit(log_files(path), expected, RECORD)
    assert report.ok, report.summary()


class _Subclass(logging.Formatter):
    """A formatter the writer does not know: its records are formatted in the caller."""


@pytest.mark.parametrize("formatter", [logging.Formatter, _Subclass])
def test_write_failure_reported_once_and_counted(
    tmp_path: Any, logger: logging.Logger, monkeypatch: Any, formatter: type[logging.Formatter]
) -> None:
    """A failing disk costs the queued records, reported once with the first lost record;
    writing resumes with a notice. Whether the writer or the caller formatted them."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy="thread", flush_interval=60)
    handler.setFormatter(formatter("%(message)s"))
    failing = [True]
    from safelog._sinks.logfile import LogFile

    real = LogFile.write_all

    def write_all(file: LogFile, data: bytes) -> None:
        if failing[0]:
            raise OSError(28, "No space left on device")
        real(file, data)

    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(LogFile, "write_all", write_all)
    monkeypatch.setattr(handler, "handleError", errors.append)
    for i in range(5):
        logger.info("id=lost%d", i)
    handler.flush()
    assert len(errors) == 1
    assert errors[0].getMessage() == "id=lost0"
    failing[0] = False
    logger.info("id=ok")
    handler.flush()
    lines = open(path).read().splitlines()
    assert lines[0] == "id=ok"
    assert lines[1].startswith("safelog: 5 record(s) could not be written")


def test_close_and_shutdown_drain(tmp_path: Any, logger: logging.Logger) -> None:
    """close() and logging.shutdown() write everything queued, even with a long flush_interval."""
    a, b = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    ha = _add(logger, a, flush_interval=3600)
    hb = _add(logger, b, flush_interval=3600)
    for i in range(500):
        logger.info("id=%d", i)
    ha.close()
    assert audit([a], _ids("", 500), RECORD).ok
    logging.shutdown([weakref.ref(hb)])
    assert audit([b], _ids("", 500), RECORD).ok
    assert not any(t.name.startswith("safelog-writer") for t in threading.enumerate() if t.is_alive())


def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dictconfig_and_drain_at_interpreter_exit(tmp_path: Any, strategy: str) -> None:
    """From dictConfig (any Python), records still queued at a normal exit are all written."""
    path = str(tmp_path / "app.log")
    proc = _run(
        f"""
        import logging, logging.config, threading
        logging.config.dictConfig({{
            "version": 1,
            "formatters": {{"plain": {{"format": "%(message)s"}}}},
            "handlers": {{"file": {{
                "class": "safelog.SafeFileHandler", "filename": {path!r}, "strategy": {strategy!r},
                "formatter": "plain", "nonblocking": True, "flush_interval": "1 min",
                "queue_size": 100000, "max_batch": 100000, "flush_level": "CRITICAL"}}}},
            "root": {{"handlers": ["file"], "level": "INFO"}},
        }})
        for i in range(2000):
            logging.info("id=%d", i)
        # a daemon thread still logging while the interpreter exits must not break the drain
        threading.Thread(target=lambda: [logging.info("id=daemon") for _ in range(10**9)],
                         daemon=True).start()
        """
    )
    assert proc.returncode == 0, proc.stderr
    report = audit(log_files(path), _ids("", 2000) + ["daemon"], RECORD)
    assert not (report.lost or report.malformed or report.unexpected), report.summary()
    # Only the daemon's record repeats (it logs it many times); a record drained twice is a bug.
    assert set(report.duplicated) <= {"daemon"}, report.summary()


def _mp_child(path: str, strategy: str, tag: str, ready: Any) -> None:
    log = logging.getLogger("safelog-nb-mp")
    if not log.handlers:  # spawn / forkserver children get no inherited handlers
        _add(log, path, strategy=strategy, flush_interval=3600)
        log.setLevel(logging.INFO)
        log.propagate = False
    for i in range(300):
        log.info("id=%s-%d", tag, i)
    ready.set()
    # Returning ends the process with os._exit() after multiprocessing's finalizers: no atexit.


# Forking while the writer thread runs is the point here; 3.12+ warns about any fork with threads.
FORK_WITH_THREADS = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


@FORK_WITH_THREADS
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_drain_and_never_repeat_the_parent(tmp_path: Any, method: str) -> None:
    """Children (every start method) write all their records; a fork child does not rewrite the
    records the parent still had queued."""
    path = str(tmp_path / "app.log")
    log = logging.getLogger("safelog-nb-mp")
    log.setLevel(logging.INFO)
    log.propagate = False
    strategy = "flock"
    handler = _add(log, path, strategy=strategy, flush_interval=3600)
    try:
        for i in range(200):
            log.info("id=parent-%d", i)  # still queued when the children fork
        ctx = multiprocessing.get_context(method)
        events = [ctx.Event() for _ in range(2)]
        procs = [
            ctx.Process(target=_mp_child, args=(path, strategy, f"c{n}", events[n])) for n in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert all(e.is_set() for e in events)
        handler.flush()
    finally:
        log.removeHandler(handler)
        handler.close()
    expected = _ids("parent-", 200) + [f"c{n}-{i}" for n in range(2) for i in range(300)]
    report = audit(log_files(path), expected, RECORD)
    assert report.ok, report.summary()


@FORK_WITH_THREADS
def test_os_fork_child_gets_a_live_writer(tmp_path: Any, logger: logging.Logger) -> None:
    """After a bare os.fork() the child's records are written by a new thread, not lost to a dead one."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy="per-process", flush_interval=3600)
    logger.info("id=parent-before")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            for i in range(100):
                logger.info("id=child-%d", i)
            handler.flush()
            code = 0 if handler._writer is not None and handler._writer._thread is not None else 2
        finally:
            os.write(w, b"x")
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.info("id=parent-after")
    handler.flush()
    report = audit(log_files(path), ["parent-before", "parent-after"] + _ids("child-", 100), RECORD)
    assert report.ok, report.summary()
    assert len(log_files(path)) == 2  # one shard per process


def test_record_logged_by_the_writer_thread_is_queued_not_deadlocked(tmp_path: Any, logger: logging.Logger) -> None:
    """A record logged from inside the writer (by a rotator) cannot deadlock on a full queue."""
    path = str(tmp_path / "app.log")

    rotations: list[str] = []

    def rotator(src: str, dst: str) -> None:
        rotations.append(dst)
        logger.warning("id=from-rotator")
        os.replace(src, dst)

    handler = _add(logger, path, strategy="thread", max_bytes=200, backup_count=50, queue_size=1)
    handler.rotator = rotator
    for i in range(40):
        logger.info("id=%d", i)
    handler.close()
    assert rotations
    # Every record once, and one record from each rotation: none lost, none written twice.
    report = audit(log_files(path), _ids("", 40) + ["from-rotator"], RECORD)
    assert not (report.lost or report.unexpected or report.malformed), report.summary()
    assert report.duplicated == ({"from-rotator": len(rotations)} if len(rotations) > 1 else {}), report.summary()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"nonblocking": True, "overflow": "newest"}, "overflow must be one of"),
        ({"nonblocking": True, "flush_interval": "soon"}, "Cannot parse flush_interval"),
        ({"nonblocking": True, "flush_interval": -1}, "flush_interval must be >= 0"),
        ({"nonblocking": True, "queue_size": 0}, "queue_size must be >= 1"),
        ({"nonblocking": True, "flush_level": "LOUD"}, "flush_level='LOUD' is not a level name"),
        ({"flush_interval": 1}, "flush_interval=1 applies only with nonblocking=True"),
    ],
)
def test_bad_options_fail_at_construction(tmp_path: Any, kwargs: dict[str, Any], error: str) -> None:
    """Queue options are validated when the handler is built, naming the option and the value."""
    with pytest.raises(ValueError, match=error):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), **kwargs)


def test_handlers_of_one_file_must_agree_on_the_shared_writer(tmp_path: Any) -> None:
    """Two non-blocking handlers of one file share a writer, so conflicting queue sizes are refused."""
    a = safelog.SafeFileHandler(str(tmp_path / "app.log"), nonblocking=True, queue_size=100)
    try:
        with pytest.raises(ValueError, match="queue_size=100"):
            safelog.SafeFileHandler(str(tmp_path / "app.log"), nonblocking=True, queue_size=5)
    finally:
        a.close()
    assert _queue._writers == {}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="dictConfig builds QueueHandler listeners from 3.12")
def test_coexists_with_the_queuehandler_dictconfig_form(tmp_path: Any) -> None:
    """The 3.12+ QueueHandler/QueueListener dictConfig form can feed a safelog handler (sync or not)."""
    path = str(tmp_path / "app.log")
    name = "safelog-nb-queuehandler"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(message)s"}},
            "handlers": {
                "file": {"class": "safelog.SafeFileHandler", "filename": path, "formatter": "plain",
                         "nonblocking": True},
                "sync": {"class": "safelog.SafeFileHandler", "filename": path, "formatter": "plain"},
                "q": {"class": "logging.handlers.QueueHandler", "handlers": ["file", "sync"]},
            },
            "loggers": {name: {"handlers": ["q"], "level": "INFO", "propagate": False}},
        }
    )
    q = logging.getHandlerByName("q")  # type: ignore[attr-defined]
    q.listener.start()
    log = logging.getLogger(name)
    try:
        for i in range(300):
            log.info("id=%d", i)
    finally:
        q.listener.stop()
        for h in [q, logging.getHandlerByName("file"), logging.getHandlerByName("sync")]:  # type: ignore[attr-defined]
            log.removeHandler(h)
            h.close()
    report = audit([path], _ids("", 300), RECORD)
    assert not (report.lost or report.malformed or report.unexpected), report.summary()
    assert set(report.duplicated.values()) == {2}  # once through each handler


def test_sigterm_with_default_action_drains_the_queue_then_dies_by_sigterm(tmp_path):
    """A process ended by SIGTERM (default action) still writes every queued record first."""
    import signal
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "app.log"
    code = textwrap.dedent(
        f"""
        import logging, os, signal, safelog
        h = safelog.SafeFileHandler({str(path)!r}, nonblocking=True, flush_interval=60)
        log = logging.getLogger("t"); log.addHandler(h); log.propagate = False
        for i in range(500):
            log.warning("id=%d", i)
        os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=root), timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert path.read_text().splitlines() == [f"id={i}" for i in range(500)]


@pytest.mark.parametrize("end", ["flush", "close", "idle"])
def test_drop_notice_is_written_when_no_record_follows(tmp_path: Any, logger: logging.Logger, end: str) -> None:
    """Records dropped at the end of a burst are counted in a notice even when no record comes
    after them: flush(), close() and the writer itself, once its queue is empty, write it."""
    path = str(tmp_path / "app.log")
    handler = _add(logger, path, strategy="thread", queue_size=10, max_batch=10, overflow="drop", flush_interval=0)
    _burst_while_the_writer_stalls(logger, handler, 200)
    if end == "flush":
        handler.flush()
    elif end == "close":
        handler.close()
    else:
        wait_until(lambda: "safelog: dropped" in open(path).read(), 10, "the writer to write the notice")
    lines = open(path).read().splitlines()
    notices = [line for line in lines if line.startswith("safelog: dropped")]
    written = [line for line in lines if line.startswith("id=")]
    assert lines[-1].startswith("safelog: dropped"), lines[-3:]  # the last drops, after the last record
    assert sum(int(n.split()[2]) for n in notices) + len(written) == 200
    assert written == [f"id={i}" for i in sorted(int(w[3:]) for w in written)]


@pytest.mark.parametrize("nonblocking", [False, True])
def test_an_unencodable_record_costs_only_itself(tmp_path: Any, logger: logging.Logger, nonblocking: bool) -> None:
    """With errors='strict', a record the encoding cannot hold is lost alone, reported through
    handleError and counted in the notice; the records batched with it are written."""
    path = str(tmp_path / "app.log")
    queue = {"nonblocking": True, "flush_interval": 60} if nonblocking else {}
    handler = safelog.SafeFileHandler(path, strategy="flock", encoding="ascii", errors="strict", **queue)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign]
    for i in range(100):
        logger.info("id=good%d", i)
        if i == 49:
            logger.info("id=bad \u00e9")
    handler.flush()
    logger.info("id=after")
    handler.close()
    lines = open(path).read().splitlines()
    assert [e.getMessage() for e in errors] == ["id=bad \u00e9"]
    good = [line for line in lines if line.startswith("id=")]
    assert good == [f"id=good{i}" for i in range(100)] + ["id=after"]
    notices = [line for line in lines if line.startswith("safelog: 1 record(s) could not be written")]
    assert len(notices) == 1 and "UnicodeEncodeError" in notices[0]
