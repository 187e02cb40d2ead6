"""Code written for the stdlib file handlers keeps working when the class name changes to safelog's."""

from __future__ import annotations

import datetime
import faulthandler
import inspect
import io
import logging
import logging.config
import logging.handlers
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faults_helpers import join_all

import safelog
from safelog import log_files
from tests.helpers import current_file, same_file

PAIRS = [
    (safelog.FileHandler, logging.FileHandler),
    (safelog.WatchedFileHandler, logging.handlers.WatchedFileHandler),
    (safelog.RotatingFileHandler, logging.handlers.RotatingFileHandler),
    (safelog.TimedRotatingFileHandler, logging.handlers.TimedRotatingFileHandler),
]


def _read(path: Path | str) -> list[str]:
    return Path(path).read_text().splitlines()


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_drop_ins_have_the_stdlib_signature_and_class(ours: type, theirs: type) -> None:
    """Each drop-in takes the stdlib parameters in the stdlib order with the stdlib defaults, and
    is an instance of the stdlib class it replaces."""
    std = [p for p in inspect.signature(theirs.__init__).parameters.values() if p.kind != p.VAR_KEYWORD]
    mine = list(inspect.signature(ours.__init__).parameters.values())[: len(std)]
    assert [(p.name, p.default) for p in mine] == [(p.name, p.default) for p in std]
    assert issubclass(ours, theirs) and issubclass(ours, logging.FileHandler)


FILECONFIG = """
[loggers]
keys=root,app

[handlers]
keys=h

[formatters]
keys=plain

[logger_root]
handlers=

[logger_app]
level=INFO
handlers=h
qualname=fc.app
propagate=0

[handler_h]
class={cls}
formatter=plain
args={args}

[formatter_plain]
format=%(message)s
"""


@pytest.mark.parametrize(
    "cls, args, check",
    [
        ("safelog.TimedRotatingFileHandler", "({path!r}, 'D', 1, 7)", lambda h: (h.when, h.interval, h.backupCount) == ("D", 86400, 7)),
        ("safelog.RotatingFileHandler", "({path!r}, 'a', 1000, 3)", lambda h: (h.maxBytes, h.backupCount) == (1000, 3)),
        ("safelog.FileHandler", "({path!r}, 'a', 'utf-8')", lambda h: h.encoding == "utf-8"),
        ("safelog.WatchedFileHandler", "({path!r},)", lambda h: h.mode == "a"),
    ],
)
def test_fileconfig_args_written_for_the_stdlib_class_work(tmp_path: Path, cls: str, args: str, check: Callable[[Any], bool]) -> None:
    """An INI file's args=(...) tuple for the stdlib class builds the safelog class, which writes."""
    ini = tmp_path / "logging.ini"
    path = str(tmp_path / "app.log")
    ini.write_text(FILECONFIG.format(cls=cls, args=args.format(path=path)))
    logging.config.fileConfig(str(ini), disable_existing_loggers=False)
    log = logging.getLogger("fc.app")
    try:
        (h,) = log.handlers
        assert type(h).__name__ == cls.split(".")[1] and check(h)
        log.info("from fileConfig")
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
    assert _read(path) == ["from fileConfig"]


def test_dictconfig_with_stdlib_keywords(tmp_path: Path, dict_config: Callable[..., logging.Logger]) -> None:
    """dictConfig with the stdlib keyword names of TimedRotatingFileHandler works unchanged."""
    path = tmp_path / "t.log"
    log = dict_config({"class": "safelog.TimedRotatingFileHandler", "filename": str(path), "when": "midnight", "backupCount": 3, "utc": True})
    log.info("hello")
    h = log.handlers[0]
    assert (h.when, h.backupCount, h.utc, h.strategy) == ("MIDNIGHT", 3, True, "flock")
    assert _read(path) == ["hello"]


def test_drop_ins_take_safelog_keywords_too(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """strategy= and the other safelog options are accepted by every drop-in."""
    h = make_handler(str(tmp_path / "a.log"), "a", 1000, 2, cls=safelog.RotatingFileHandler, strategy="thread", compress="gzip")
    assert (h.strategy, h.config.rotation.codec.name) == ("thread", "gzip")
    t = make_handler(str(tmp_path / "b.log"), "H", 2, 5, cls=safelog.TimedRotatingFileHandler, strategy="per-process")
    assert (t.strategy, t.interval, t.backupCount) == ("per-process", 7200, 5)


def _rotating(tmp_path: Path, make_handler: Callable[..., Any], cls: type = safelog.RotatingFileHandler, **kw: Any) -> tuple[logging.Logger, Any, str]:
    path = str(tmp_path / "app.log")
    h = make_handler(path, "a", kw.pop("maxBytes", 200), kw.pop("backupCount", 3), cls=cls, **kw)
    log = logging.Logger(f"t{id(h)}", logging.INFO)
    log.addHandler(h)
    return log, h, path


def test_should_rollover_answers_for_the_next_record(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """shouldRollover(record) is True exactly when the formatted record would bring the file to
    maxBytes or past it (the stdlib's >=)."""
    log, h, path = _rotating(tmp_path, make_handler, maxBytes=100)
    rec = logging.makeLogRecord({"msg": "x" * 40})
    assert not h.shouldRollover(rec)  # 0 + 41 < 100
    log.info("x" * 40)
    assert not h.shouldRollover(rec)  # 41 + 41 < 100
    assert h.shouldRollover(logging.makeLogRecord({"msg": "x" * 58}))  # 41 + 59 == 100
    log.info("x" * 40)
    assert h.shouldRollover(rec)  # 82 + 41 > 100
    plain = make_handler(str(tmp_path / "p.log"), cls=safelog.FileHandler)
    assert plain.shouldRollover(rec) is False


def test_do_rollover_rotates_now_and_never_makes_an_empty_backup(tmp_path: Path, make_handler: Callable[..., Any], strategy: str) -> None:
    """doRollover() moves a non-empty file to .1; on the new, empty file it does nothing."""
    log, h, path = _rotating(tmp_path, make_handler, maxBytes=10_000, strategy=strategy)
    log.info("first")
    h.doRollover()
    h.doRollover()
    log.info("second")
    target = current_file(h)
    assert _records(target + ".1") == ["first"]
    assert not os.path.exists(target + ".2")
    assert _records(target) == ["second"]


def _records(path: str) -> list[str]:
    """The messages of a log or shard file (shard framing stripped)."""
    from safelog._primitives.shard import iter_records

    if ".shard" in os.path.basename(path):
        with open(path, "rb") as f:
            return [r.text.decode() for r in iter_records(f) if not isinstance(r, Exception)]
    return _read(path)


def _startup_worker(path: str, w: int, go: Any, rotated: Any) -> None:
    h = safelog.RotatingFileHandler(path, "a", 1_000_000, 5)
    log = logging.Logger(f"w{w}", logging.INFO)
    log.addHandler(h)
    go.wait()
    h.doRollover()  # the "rotate at start-up" idiom, in every process at once
    rotated.wait()
    for i in range(200):
        log.info("w%d-%03d", w, i)
    h.close()


def test_do_rollover_at_startup_in_every_process_rotates_once(tmp_path: Path) -> None:
    """Four processes calling doRollover() together make one backup (the old content) and lose
    nothing: the later ones find the new file empty and leave it."""
    path = str(tmp_path / "app.log")
    Path(path).write_text("old-1\nold-2\n")
    ctx = multiprocessing.get_context("fork")
    go, rotated = ctx.Barrier(4), ctx.Barrier(4)
    procs = [ctx.Process(target=_startup_worker, args=(path, w, go, rotated)) for w in range(4)]
    for p in procs:
        p.start()
    join_all(procs)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert _read(path + ".1") == ["old-1", "old-2"]
    assert not os.path.exists(path + ".2")
    lines = _read(path)
    assert sorted(lines) == sorted(f"w{w}-{i:03d}" for w in range(4) for i in range(200))


class _EveryMarker(safelog.RotatingFileHandler):
    """Rotates before every record that says ROTATE, through the template methods."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return "ROTATE" in record.getMessage()


def test_a_subclass_should_rollover_is_called_by_emit(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """As BaseRotatingHandler.emit does, emit() asks the subclass's shouldRollover() and then
    calls doRollover()."""
    log, h, path = _rotating(tmp_path, make_handler, cls=_EveryMarker, maxBytes=10_000)
    for msg in ("a", "b ROTATE", "c", "d ROTATE", "e"):
        log.info(msg)
    assert _read(path + ".2") == ["a"]
    assert _read(path + ".1") == ["b ROTATE", "c"]
    assert _read(path) == ["d ROTATE", "e"]


class _BakNames(safelog.RotatingFileHandler):
    def rotation_filename(self, default_name: str) -> str:
        return default_name + ".bak"


class _NamerMethod(safelog.RotatingFileHandler):
    def namer(self, default_name: str) -> str:  # type: ignore[override]
        return default_name.replace("app.log.", "app-") + ".old"


class _RotatorMethod(safelog.RotatingFileHandler):
    moves: list[tuple[str, str]]

    def rotator(self, source: str, dest: str) -> None:  # type: ignore[override]
        self.moves.append((os.path.basename(source), os.path.basename(dest)))
        os.rename(source, dest)


@pytest.mark.parametrize("cls, names", [
    (_BakNames, ["app.log.1.bak", "app.log.2.bak", "app.log.3.bak"]),
    (_NamerMethod, ["app-1.old", "app-2.old", "app-3.old"]),
])  # fmt: skip
def test_subclass_names_shift_and_retire_like_plain_ones(tmp_path: Path, make_handler: Callable[..., Any], cls: type, names: list[str]) -> None:
    """A subclass's rotation_filename() or namer() method names every backup; shifting and the
    backupCount limit work on those names, so no backup is overwritten."""
    log, h, path = _rotating(tmp_path, make_handler, cls=cls, maxBytes=40, backupCount=3)
    for i in range(12):
        log.info("record-%02d", i)  # 10 bytes each: three per file (a fourth would reach maxBytes)
    assert sorted(f for f in os.listdir(tmp_path) if f != "app.log" and not f.endswith(".lock")) == names
    files = [str(tmp_path / n) for n in reversed(names)] + [path]
    got = [line for f in files for line in _read(f)]
    assert got == [f"record-{i:02d}" for i in range(12 - len(got), 12)] and len(got) == 12


def test_a_subclass_rotator_method_moves_the_files(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """A rotator defined as a method is called for every rotation (not shadowed by None)."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, "a", 30, 2, cls=_RotatorMethod)
    h.moves = []
    log = logging.Logger("rot", logging.INFO)
    log.addHandler(h)
    for i in range(4):
        log.info("record-%02d", i)
    assert h.moves == [("app.log", "app.log.1")]


def test_namer_assigned_after_construction_is_used(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """The stdlib idiom handler.namer = f (after construction) names the backups."""
    log, h, path = _rotating(tmp_path, make_handler, maxBytes=40, backupCount=2)
    h.namer = lambda name: name + ".x"
    for i in range(9):
        log.info("record-%02d", i)
    assert sorted(os.listdir(tmp_path)) == ["app.log", "app.log.1.x", "app.log.2.x", "app.log.lock"]


def _docs_namer(name: str) -> str:
    return name + ".gz"


def _docs_rotator(source: str, dest: str) -> None:
    # The logging cookbook's rotator, as CPython's RotatingFileHandlerTest.test_rotator runs it.
    with open(source, "rb") as sf:
        data = sf.read()
    with open(dest, "wb") as df:
        df.write(zlib.compress(data, 9))
    os.remove(source)


def _unzipped_records(path: str) -> list[str]:
    """The messages of a backup the docs' rotator compressed (shard framing stripped)."""
    from safelog._primitives.shard import iter_records

    with open(path, "rb") as f:
        data = zlib.decompress(f.read())
    if ".shard" in os.path.basename(path):
        return [r.text.decode() for r in iter_records(io.BytesIO(data)) if not isinstance(r, Exception)]
    return data.decode().splitlines()


def test_the_docs_namer_and_compressing_rotator_shift_their_backups(
    tmp_path: Path, make_handler: Callable[..., Any], strategy: str
) -> None:
    """The stdlib docs' namer (appending .gz) and compressing rotator, backupCount=2: each
    rotation shifts .1.gz to .2.gz and drops the oldest, as the stdlib does, instead of writing
    over .1.gz every time."""
    log, h, path = _rotating(tmp_path, make_handler, maxBytes=20, backupCount=2, strategy=strategy)
    h.namer, h.rotator = _docs_namer, _docs_rotator
    for i in range(4):
        log.info("record-%02d", i)  # 10 bytes: the next one would bring a file to maxBytes
    target = current_file(h)
    assert [_unzipped_records(f"{target}.2.gz"), _unzipped_records(f"{target}.1.gz"), _records(target)] == [
        ["record-01"], ["record-02"], ["record-03"]
    ]
    assert sorted(os.path.basename(f) for f in log_files(path)) == sorted(
        os.path.basename(f) for f in (target, f"{target}.1.gz", f"{target}.2.gz")
    )


def _docs_rotation_writer(path: str, w: int, go: Any) -> None:
    h = safelog.RotatingFileHandler(path, "a", 100, 1000, namer=_docs_namer, rotator=_docs_rotator)
    log = logging.Logger(f"w{w}", logging.INFO)
    log.addHandler(h)
    go.wait()
    for i in range(150):
        log.info("w%d-%03d", w, i)
    h.close()


def test_the_docs_namer_and_rotator_lose_nothing_across_processes(tmp_path: Path) -> None:
    """Three processes rotating one flock log through the docs' namer and compressing rotator:
    every record is in exactly one file, backups numbered .1.gz (newest) upward without a gap."""
    path = str(tmp_path / "app.log")
    ctx = multiprocessing.get_context("fork")
    go = ctx.Barrier(3)
    procs = [ctx.Process(target=_docs_rotation_writer, args=(path, w, go)) for w in range(3)]
    for p in procs:
        p.start()
    join_all(procs)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    backups = sorted((f for f in log_files(path) if f != path), key=lambda f: int(f.split(".")[-2]))
    assert backups == [f"{path}.{n}.gz" for n in range(1, len(backups) + 1)] and len(backups) > 10
    lines = [line for f in reversed(backups) for line in _unzipped_records(f)] + _read(path)
    assert sorted(lines) == sorted(f"w{w}-{i:03d}" for w in range(3) for i in range(150))


def test_stdlib_attributes(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """baseFilename, mode, encoding, errors, delay and terminator mean what they mean in the stdlib."""
    path = tmp_path / "app.log"
    h = make_handler(str(path), "a", "latin-1", True, "replace", cls=safelog.FileHandler)
    assert (h.baseFilename, h.mode, h.encoding, h.errors, h.delay) == (str(path), "a", "latin-1", "replace", True)
    assert h.stream is None and not path.exists()  # delay: nothing opened yet
    log = logging.Logger("attrs", logging.INFO)
    log.addHandler(h)
    h.terminator = "\r\n"
    log.info("crlf")
    h.terminator = "\n"
    log.info("lf")
    assert path.read_bytes() == b"crlf\r\nlf\n"


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_stream_is_a_real_file_for_faulthandler(tmp_path: Path, make_handler: Callable[..., Any], strategy: str) -> None:
    """handler.stream has a file descriptor: faulthandler dumps a traceback into the log."""
    path = tmp_path / "app.log"
    h = make_handler(str(path), strategy=strategy, cls=safelog.FileHandler)
    log = logging.Logger("fh", logging.INFO)
    log.addHandler(h)
    log.info("before")
    faulthandler.dump_traceback(file=h.stream, all_threads=False)
    h.stream.write("written to the stream\n")
    log.info("after")
    lines = _read(path)
    assert lines[0] == "before" and lines[-1] == "after"
    assert "written to the stream" in lines
    assert any("test_stream_is_a_real_file_for_faulthandler" in line for line in lines)


def test_stream_follows_a_rotation(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """After a rotation, the stream's writes and its descriptor go to the new log."""
    log, h, path = _rotating(tmp_path, make_handler, maxBytes=1000)
    log.info("one")
    os.write(h.stream.fileno(), b"raw one\n")
    h.doRollover()
    h.stream.write("two\n")
    os.write(h.stream.fileno(), b"raw two\n")
    assert _read(path + ".1") == ["one", "raw one"]
    assert _read(path) == ["two", "raw two"]


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_stream_writes_are_records(tmp_path: Path, make_handler: Callable[..., Any], strategy: str) -> None:
    """stream.write(msg) then write(terminator), as StreamHandler.emit does, is one record."""
    h = make_handler(str(tmp_path / "app.log"), strategy=strategy)
    h.stream.write("via the stream")
    h.stream.write("\n")
    h.emit(logging.makeLogRecord({"msg": "via emit"}))
    assert _records(current_file(h)) == ["via the stream", "via emit"]


def test_reading_stream_does_no_io(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """Looking at handler.stream (gunicorn does, for every FileHandler) creates no file."""
    h = make_handler(str(tmp_path / "app.log"), strategy="flock", delay=True)
    assert h.stream is None
    h2 = make_handler(str(tmp_path / "b.log"), strategy="flock", lock_dir=str(tmp_path / "locks"))
    assert h2.stream is not None and h2.stream.name == str(tmp_path / "b.log")
    assert sorted(os.listdir(tmp_path)) == ["b.log", "locks"]


def test_stream_is_falsy_so_signal_time_reopeners_leave_it_alone(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """gunicorn's USR1 handler closes and reopens every FileHandler whose ``stream`` is truthy,
    from a signal handler; the view is falsy, so that code never closes a safelog handler in the
    middle of a write it interrupted (and holding its lock)."""
    h = make_handler(str(tmp_path / "app.log"), strategy="flock")
    assert h.stream is not None and not h.stream


def test_per_process_has_no_stream(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """A per-process handler's stream is None: its shards are framed, with no plain file to hand
    out; faulthandler.enable(file=None) then writes to stderr, and nothing creates a shard."""
    h = make_handler(str(tmp_path / "app.log"), strategy="per-process")
    assert h.stream is None
    assert os.listdir(tmp_path) == []


def test_timed_suffix_can_be_changed_like_the_stdlib(
    tmp_path: Path, make_handler: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """handler.suffix = '%Y%m%d' names backups with it; retention keeps the newest backupCount by
    the time they name, even for a suffix that does not sort as text."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, "D", 1, 2, cls=safelog.TimedRotatingFileHandler, utc=True, strategy="thread")
    h.suffix = "%d.%m.%Y"
    assert h.extMatch.match("31.12.2026") and not h.extMatch.match("2026-12-31")
    log = logging.Logger("sfx", logging.INFO)
    log.addHandler(h)
    day = 86400.0
    start = 1_798_675_200.0  # 2026-12-31 00:00 UTC: the day numbers wrap into January
    for d in range(5):
        # The stdlib's rule goes by the clock (when= counts from the first record here).
        monkeypatch.setattr("time.time", lambda d=d: start + d * day + 60)
        log.handle(logging.makeLogRecord({"msg": f"day {d}", "created": start + d * day + 60, "levelno": 20}))
    backups = sorted(f for f in os.listdir(tmp_path) if f.startswith("app.log."))
    assert backups == ["app.log.02.01.2027", "app.log.03.01.2027"]
    assert _read(path) == ["day 4"]
    assert h.getFilesToDelete() == []


@pytest.mark.parametrize(
    "first, second, named",
    [
        ({"max_bytes": 1000, "backup_count": 2}, {"when": "H"}, ("max_bytes=1000", "no time rotation", "when='H'")),
        ({"when": "H"}, {"when": "D"}, ("when='H'", "when='D'")),
        ({"when": "H"}, {"rotate_every": "1 hour"}, ("when='H'", "(rotate_every)")),  # stdlib rule vs clock
        ({"max_bytes": 1000, "backup_count": 2}, {"max_bytes": 1000, "backup_count": 2, "compress": "gzip"}, ("compress=None", "compress='gzip'")),
        ({"max_bytes": 1000, "backup_count": 2, "retention": "1 day"}, {"max_bytes": 1000, "backup_count": 2}, ("retention=86400.0", "retention=None")),
        ({"chmod": 0o600}, {"chmod": 0o644}, ("chmod=384", "chmod=420")),
        ({"strategy": "thread", "mode": "w"}, {"strategy": "thread"}, ("mode='w'", "mode='a'")),
    ],
)
def test_one_path_one_policy(tmp_path: Path, make_handler: Callable[..., Any], first: dict[str, Any], second: dict[str, Any], named: tuple[str, ...]) -> None:
    """A second handler on the same path with another rotation, compression, retention,
    permission or mode is refused, the message naming both settings."""
    path = str(tmp_path / "app.log")
    make_handler(path, **first)
    with pytest.raises(ValueError) as info:
        safelog.SafeFileHandler(path, **second)
    for text in named:
        assert text in str(info.value), str(info.value)


def test_same_policy_twice_is_fine(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """Two handlers with the same policy (written differently) share the file."""
    path = str(tmp_path / "app.log")
    a = make_handler(path, max_bytes="1 KB", backup_count=2, when="h")
    b = make_handler(path, maxBytes=1000, backupCount=2, when="H", escape_newlines=True)
    assert same_file(a, b)


def test_a_failed_constructor_leaves_nothing_registered(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """A handler whose construction raised is not in logging's handler list."""
    path = str(tmp_path / "app.log")
    first = make_handler(path, when="H")
    with pytest.raises(ValueError) as info:
        safelog.SafeFileHandler(path, when="D")
    assert info.traceback  # the traceback keeps the half-built object alive
    on_path = [h for h in (r() for r in logging._handlerList) if getattr(h, "baseFilename", None) == path]  # type: ignore[attr-defined]
    assert on_path == [first]


def test_a_failed_constructor_does_not_stop_shutdown(tmp_path: Path) -> None:
    """With a failed safelog handler kept alive by a saved traceback, logging.shutdown() at exit
    still flushes a MemoryHandler registered before it: its records reach their file."""
    out = tmp_path / "memory.log"
    script = textwrap.dedent(f"""
        import logging, logging.handlers, sys
        import safelog
        target = logging.FileHandler({str(out)!r})
        memory = logging.handlers.MemoryHandler(capacity=1000, target=target)
        logging.getLogger().addHandler(memory)
        logging.getLogger().warning("buffered record")
        keep = safelog.SafeFileHandler({str(tmp_path / "a.log")!r}, when="H")
        try:
            safelog.SafeFileHandler({str(tmp_path / "a.log")!r}, when="D")
        except ValueError:
            saved = sys.exc_info()
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr, done.stderr
    assert _read(out) == ["buffered record"]


def test_watched_handler_follows_a_rename_at_the_next_record(tmp_path: Path, make_handler: Callable[..., Any], strategy: str) -> None:
    """WatchedFileHandler reopens at the very next record after the file is moved away, as the
    stdlib's does (not after the once-a-second check)."""
    if strategy == "per-process":
        pytest.skip("a per-process log is a set of shards; nothing renames them under a writer")
    path = tmp_path / "app.log"
    h = make_handler(str(path), strategy=strategy, cls=safelog.WatchedFileHandler)
    log = logging.Logger("watch", logging.INFO)
    log.addHandler(h)
    log.info("one")
    os.rename(path, tmp_path / "app.log.old")
    log.info("two")
    assert _read(path) == ["two"] and _read(tmp_path / "app.log.old") == ["one"]


def test_watched_handler_dev_and_ino_name_the_file_it_writes(tmp_path: Path, make_handler: Callable[..., Any], strategy: str) -> None:
    """WatchedFileHandler.dev/.ino are the device and inode of the file the handler writes now,
    -1 while it has none open (delay, close), as the stdlib's."""
    path = tmp_path / "app.log"
    h = make_handler(str(path), strategy=strategy, delay=True, cls=safelog.WatchedFileHandler)
    assert (h.dev, h.ino) == (-1, -1)
    log = logging.Logger("dev-ino", logging.INFO)
    log.addHandler(h)
    log.info("one")
    target = current_file(h)
    st = os.stat(target)
    assert (h.dev, h.ino) == (st.st_dev, st.st_ino)
    if strategy != "per-process":  # nothing renames a shard under its writer
        os.rename(path, tmp_path / "app.log.old")
        log.info("two")
        st = os.stat(path)
        assert (h.dev, h.ino) == (st.st_dev, st.st_ino) and h.ino != os.stat(tmp_path / "app.log.old").st_ino
    h.close()
    assert (h.dev, h.ino) == (-1, -1)


@pytest.mark.parametrize("cls", [safelog.FileHandler, safelog.WatchedFileHandler])
def test_a_failed_open_at_emit_is_reported_as_logging_raise_exceptions_says(
    tmp_path: Path, monkeypatch: Any, capsys: Any, strategy: str, cls: type
) -> None:
    """A log that cannot be opened when a record comes (its directory replaced by a file) goes
    to handleError like a failed write: the traceback on stderr while logging.raiseExceptions
    is true, nothing when it is false; the application never sees the error."""
    directory = tmp_path / "logs"
    directory.mkdir()
    h = cls(str(directory / "app.log"), strategy=strategy, delay=cls is safelog.FileHandler)
    try:
        h.emit(logging.makeLogRecord({"msg": "one"}))
        shutil.rmtree(directory)
        directory.write_text("")  # a file where the directory was: it cannot be created again
        capsys.readouterr()
        if cls is safelog.FileHandler:
            h.close()  # its next record opens the file again; a WatchedFileHandler follows the path
        monkeypatch.setattr(logging, "raiseExceptions", True)
        h.emit(logging.makeLogRecord({"msg": "two"}))
        assert "\nNotADirectoryError:" in capsys.readouterr().err
        monkeypatch.setattr(logging, "raiseExceptions", False)
        h.emit(logging.makeLogRecord({"msg": "three"}))
        assert capsys.readouterr().err == ""
    finally:
        h.close()


def test_set_stream_is_refused(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """setStream() would bypass the strategy's locking: it raises, naming the file."""
    h = make_handler(str(tmp_path / "app.log"), cls=safelog.FileHandler)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "app.log"))):
        h.setStream(sys.stderr)


# (class, options, attribute, a new value): attributes that say how the file is written.
_FIXED = [
    (safelog.TimedRotatingFileHandler, {"when": "H"}, "when", "M"),
    (safelog.TimedRotatingFileHandler, {"when": "H"}, "interval", 60),
    (safelog.TimedRotatingFileHandler, {"when": "H"}, "utc", True),
    (safelog.TimedRotatingFileHandler, {"when": "midnight"}, "atTime", datetime.time(1, 0)),
    (safelog.TimedRotatingFileHandler, {"when": "W2"}, "dayOfWeek", 4),
    (safelog.SafeFileHandler, {"rotate_every": "1 hour"}, "interval", 2),
    (safelog.FileHandler, {}, "mode", "w"),
    (safelog.FileHandler, {}, "encoding", "latin-1"),
    (safelog.FileHandler, {}, "errors", "strict"),
    (safelog.FileHandler, {}, "delay", True),
    (safelog.FileHandler, {}, "baseFilename", "/elsewhere.log"),
    (safelog.SafeFileHandler, {}, "strategy", "thread"),
    (safelog.SafeFileHandler, {}, "escape_newlines", True),
    (safelog.SafeFileHandler, {}, "nonblocking", True),
]


@pytest.mark.parametrize(("cls", "options", "name", "value"), _FIXED, ids=[f"{c[0].__name__}.{c[2]}" for c in _FIXED])
def test_an_attribute_fixed_at_construction_refuses_a_new_value(
    tmp_path: Path, make_handler: Callable[..., Any], cls: Any, options: dict[str, Any], name: str, value: Any
) -> None:
    """An attribute that says how the file is written (mode, encoding, when, interval, ...)
    assigned after construction raises AttributeError naming it and keeps its value: a copy of
    the option would take the new value and change nothing."""
    h = make_handler(str(tmp_path / "app.log"), cls=cls, **options)
    before = getattr(h, name)
    with pytest.raises(AttributeError, match=f"{cls.__name__}.{name} cannot be changed once the handler is built"):
        setattr(h, name, value)
    assert getattr(h, name) == before


def test_the_views_read_the_configuration(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """The stdlib attributes read what the handler was built with, as the stdlib names them."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, when="W3", interval=2, utc=True, atTime="04:05", cls=safelog.TimedRotatingFileHandler)
    assert (h.when, h.interval, h.utc, h.atTime, h.dayOfWeek) == ("W3", 2 * 7 * 86400, True, datetime.time(4, 5), 3)
    assert (h.baseFilename, h.mode, h.encoding, h.errors, h.delay) == (path, "a", "utf-8", "backslashreplace", False)
    g = make_handler(str(tmp_path / "b.log"), "wb", rotate_every="2 hours", strategy="thread")
    assert (g.when, g.interval, g.mode, g.strategy) == ("H", 2, "wb", "thread")


def test_flush_level_and_overflow_assigned_later_take_effect(tmp_path: Path, make_handler: Callable[..., Any]) -> None:
    """flush_level and overflow, assigned after construction, are parsed and used from the next
    record: a record at the new flush_level is written at once, not after flush_interval."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, nonblocking=True, flush_interval=300, strategy="thread")
    log = logging.Logger("views", logging.DEBUG)
    log.addHandler(h)
    with pytest.raises(ValueError, match="flush_level='LOUD' is not a level name"):
        h.flush_level = "LOUD"
    with pytest.raises(ValueError, match="overflow must be one of 'block', 'drop'; got 'spill'"):
        h.overflow = "spill"
    h.overflow = "drop"
    assert h.overflow == "drop"
    h.flush_level = "info"
    assert h.flush_level == logging.INFO
    log.info("urgent now")
    deadline = time.monotonic() + 60  # far below the 300 s flush_interval it must not wait for
    while not os.path.exists(path) or b"urgent now" not in Path(path).read_bytes():
        assert time.monotonic() < deadline, "an INFO record waited for flush_interval"
        time.sleep(0.01)
