"""The one public handler: formatting, error handling and rotation; strategies do the I/O."""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from typing import Any, Callable, ClassVar

from ._flock import FlockSink
from ._compress import parse_compress
from ._fastformat import handler_render
from ._options import check_bool, check_choice, check_int, check_str, parse_duration, parse_size
from ._paths import resolve_log_path, unwritable_dir
from ._perms import Perms, parse_chmod, parse_owner
from ._perprocess import PerProcessSink
from ._queue import QueueSettings, Writer, attach, detach, prepare, revive
from ._rotation import Rollover
from ._timepolicy import parse_time_policy
from ._strategy import FileOptions, Sink, acquire, release
from ._thread import ThreadSink

__all__ = ["SafeFileHandler", "STRATEGIES"]

STRATEGIES: dict[str, type[Sink]] = {
    "thread": ThreadSink,
    "flock": FlockSink,
    "per-process": PerProcessSink,
}

_SENTINEL: Any = object()

# escape_newlines: a message that carries a line break can forge whole log entries (CWE-117),
# and terminal control sequences can rewrite what `tail -f` shows. Every C0/C1 control
# character but TAB, plus DEL and the Unicode line/paragraph separators (which
# str.splitlines() and some viewers treat as line ends), is written as a visible escape; the
# terminator is added after, so each record stays exactly one line.
_ESCAPES: dict[int, str] = {
    c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09
}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


class SafeFileHandler(logging.Handler):
    """A file handler that many threads, processes or an event loop can share safely.

    A drop-in for ``logging.handlers.RotatingFileHandler`` (same positional arguments and
    keyword names) plus ``strategy`` (``"thread"``, ``"flock"``, ``"per-process"``) and
    snake-case aliases ``max_bytes``/``backup_count`` that also accept sizes like ``"10 MB"``.
    Time rotation takes the ``TimedRotatingFileHandler`` names (``when``, ``interval``, ``utc``,
    ``atTime``) or ``rotate_every="1 hour"``; ``compress``, ``retention``, ``chmod`` and
    ``owner`` apply to every strategy.
    ``merge_on_exit=True`` (``per-process`` only) runs :func:`safelog.merge` on the log when
    the process that created the handler exits (not in its fork or multiprocessing children).

    ``escape_newlines=True`` writes line breaks and other control characters inside a record
    as ``\\n``, ``\\r``, ``\\xNN``, so that a logged value cannot forge extra log lines.

    ``nonblocking=True`` moves formatting and I/O to one background thread per file: ``emit()``
    freezes the record and queues it (``queue_size``, ``overflow="block"|"drop"``); the thread
    writes batches of up to ``max_batch`` records with one lock and one ``write()``, at least
    every ``flush_interval`` (seconds or ``"200 ms"``) and at once for records at or above
    ``flush_level``.

    A stock ``logging.Formatter`` is run through an equivalent that writes the same text with
    less work per record (the time text is made once a second); ``fast_format = False`` on the
    class or on a handler turns that off.
    """

    default_strategy: ClassVar[str] = "flock"
    terminator = "\n"
    #: Format records of a stock ``logging.Formatter`` through safelog's faster equivalent
    #: (same text, see ``safelog/_fastformat.py``); set False, on the class or on a handler, to
    #: have every record formatted by ``self.format(record)``.
    fast_format: bool = True
    # (formatter, fast_format, render) that _render last used; rebuilt when either changes.
    _fast: tuple[Any, Any, Callable[[logging.LogRecord], str]] = (_SENTINEL, _SENTINEL, str)

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        maxBytes: int | str | None = _SENTINEL,
        backupCount: int | None = _SENTINEL,
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        *,
        strategy: str | None = None,
        max_bytes: int | str | None = _SENTINEL,
        backup_count: int | None = _SENTINEL,
        namer: Callable[[str], str] | None = None,
        rotator: Callable[[str, str], None] | None = None,
        lock_dir: str | os.PathLike[str] | None = None,
        merge_on_exit: bool = False,
        escape_newlines: bool = False,
        nonblocking: bool = False,
        queue_size: int | None = None,
        overflow: str | None = None,
        flush_interval: float | str | None = None,
        flush_level: int | str | None = None,
        max_batch: int | None = None,
        when: str | None = None,
        interval: int = 1,
        utc: bool = False,
        atTime: datetime.time | str | None = None,
        rotate_every: str | datetime.timedelta | None = None,
        compress: str | None = None,
        retention: str | datetime.timedelta | None = None,
        chmod: int | str | None = None,
        owner: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {', '.join(sorted(unknown))}; "
                f"valid options: filename, strategy, max_bytes (maxBytes), backup_count "
                f"(backupCount), mode, encoding, errors, delay, namer, rotator, lock_dir, "
                f"merge_on_exit, escape_newlines, nonblocking, queue_size, overflow, flush_interval, "
                f"flush_level, max_batch, when, interval, utc, atTime, rotate_every, compress, "
                f"retention, chmod, owner"
            )
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise TypeError(f"filename must be a path, not {filename!r}")
        if "\0" in os.fspath(filename):
            raise ValueError(f"filename={filename!r} contains a NUL character")
        if strategy is None:
            strategy = self.default_strategy
        elif strategy != self.default_strategy and _pins_strategy(type(self)):
            raise ValueError(
                f"strategy={strategy!r} conflicts with {type(self).__name__}, which is the "
                f"{self.default_strategy!r} strategy; use safelog.SafeFileHandler instead"
            )
        self.strategy = check_choice("strategy", strategy, tuple(STRATEGIES))
        self.merge_on_exit = check_bool("merge_on_exit", merge_on_exit)
        if self.merge_on_exit and self.strategy != "per-process":
            raise ValueError(
                f"merge_on_exit=True needs strategy='per-process' (got {self.strategy!r}): "
                f"only per-process shards are merged"
            )
        size = _one_of("max_bytes", max_bytes, "maxBytes", maxBytes, 0)
        count = _one_of("backup_count", backup_count, "backupCount", backupCount, 0)
        self.maxBytes = parse_size("max_bytes", size)
        self.backupCount = check_int("backup_count", count)
        mode = check_choice("mode", mode, ("a", "w"))
        if mode == "w" and self.strategy == "flock":
            raise ValueError(
                "mode='w' with strategy='flock' would let every process truncate what the others "
                "wrote; use mode='a' (or strategy='thread')"
            )
        self.mode = mode
        self.encoding = check_str("encoding", encoding) or "utf-8"
        # Lone surrogates or unencodable text must not cost the user a record: default to an
        # escaping error handler rather than 'strict'.
        self.errors = check_str("errors", errors) or "backslashreplace"
        try:
            "".encode(self.encoding, self.errors)
            import codecs

            codecs.lookup_error(self.errors)
        except LookupError as exc:
            raise ValueError(f"encoding={self.encoding!r} / errors={self.errors!r}: {exc}") from None
        if "a\n".encode(self.encoding) != b"a\n":
            # Each record is encoded on its own: UTF-16/32 would put a byte-order mark in front
            # of every record, and a line end that is not the byte 0x0A breaks every reader
            # (tail, grep, merge, audit) that splits records on it.
            raise ValueError(
                f"encoding={self.encoding!r} is not ASCII-compatible; log files are read line by "
                f"line, use an encoding such as 'utf-8'"
            )
        if namer is not None and not callable(namer):
            raise TypeError(f"namer must be callable, not {namer!r}")
        if rotator is not None and not callable(rotator):
            raise TypeError(f"rotator must be callable, not {rotator!r}")
        self.namer = namer
        self.rotator = rotator
        self.delay = check_bool("delay", delay)
        self.escape_newlines = check_bool("escape_newlines", escape_newlines)
        self.baseFilename = os.path.abspath(os.fspath(filename))
        if os.path.isdir(self.baseFilename):
            raise ValueError(f"filename={os.fspath(filename)!r} is a directory")
        if lock_dir is not None and (
            not isinstance(lock_dir, (str, os.PathLike)) or not os.fspath(lock_dir)
        ):
            raise TypeError(f"lock_dir must be a directory path, not {lock_dir!r}")
        lock_dir_s = None if lock_dir is None else os.path.abspath(os.fspath(lock_dir))
        self.lock_dir = lock_dir_s
        self.nonblocking = check_bool("nonblocking", nonblocking)
        queue_options = {
            "queue_size": queue_size,
            "overflow": overflow,
            "flush_interval": flush_interval,
            "flush_level": flush_level,
            "max_batch": max_batch,
        }
        if not self.nonblocking and any(v is not None for v in queue_options.values()):
            given = ", ".join(k for k, v in queue_options.items() if v is not None)
            raise ValueError(f"{given} only apply with nonblocking=True")
        self.overflow = check_choice("overflow", "block" if overflow is None else overflow, ("block", "drop"))
        self._drop = self.overflow == "drop"
        self.flush_level = _level("flush_level", logging.ERROR if flush_level is None else flush_level)
        queue_settings = QueueSettings(
            queue_size=check_int("queue_size", 10_000 if queue_size is None else queue_size, minimum=1),
            flush_interval=parse_duration("flush_interval", 0.2 if flush_interval is None else flush_interval),
            max_batch=check_int("max_batch", 1000 if max_batch is None else max_batch, minimum=1),
        )

        self.utc = check_bool("utc", utc)
        timing = parse_time_policy(when, interval, self.utc, atTime, rotate_every)
        codec = parse_compress(compress)
        max_age = None if retention is None else parse_duration("retention", retention, positive=True)
        file_chmod = parse_chmod(chmod)
        uid, gid = parse_owner(owner)
        perms = Perms(file_chmod, uid, gid)
        self.when = None if timing is None else timing.when
        self.interval = 1 if timing is None else timing.interval
        self.atTime = None if timing is None else timing.at_time

        # Size rotation needs somewhere to rotate to: with backupCount=0 the stdlib never
        # rotates either ("if either is zero, rollover never occurs"). Time rotation names
        # backups by period, so there backupCount=0 means "keep them all", as in the stdlib.
        self._rollover: Rollover | None = None
        if timing is not None or (self.maxBytes > 0 and self.backupCount > 0):
            self._rollover = Rollover(
                self, self.maxBytes, self.backupCount, timing, codec, max_age, perms if perms.active else None
            )
        elif codec is not None or max_age is not None:
            what = f"compress={compress!r}" if codec is not None else f"retention={retention!r}"
            raise ValueError(
                f"{what} applies to rotated backups, but this handler never rotates: give "
                f"max_bytes and backup_count, or when / rotate_every"
            )

        super().__init__()
        options = FileOptions(
            encoding=self.encoding,
            errors=self.errors,
            truncate=mode == "w",
            file_mode=perms.create_mode,
            lock_dir=lock_dir_s,
            perms=perms if perms.active else None,
        )
        real = resolve_log_path(self.baseFilename)
        self._sink_key: tuple[type[Sink], str, FileOptions] = (STRATEGIES[self.strategy], real, options)
        self._sink = acquire(*self._sink_key)
        self._fail_lock = threading.Lock()
        self._lost = 0
        self._lost_since = 0.0
        self._lost_error = ""
        if self.merge_on_exit:
            from ._merge import merge_at_exit

            merge_at_exit(self)
        if not self.delay and self.strategy != "per-process":
            # Open now so a bad path fails at configuration time, like logging.FileHandler.
            try:
                self._sink.open()
            except OSError as exc:
                release(self._sink)
                raise ValueError(f"filename={os.fspath(filename)!r} cannot be opened: {exc}") from exc
        elif not self.delay:
            # The shard is opened lazily, in the process that writes (after any fork); a
            # directory it can never be created in should still fail here, not at emit time.
            problem = unwritable_dir(real)
            if problem is not None:
                release(self._sink)
                raise ValueError(f"filename={os.fspath(filename)!r} cannot be opened: {problem}")
        self._writer: Writer | None = None
        if self.nonblocking:
            try:
                self._writer = attach(self._sink, queue_settings)
            except ValueError:
                release(self._sink)
                raise

    # -- logging.Handler -------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        # The handler-level RLock that logging.Handler.handle() takes is per handler, so it
        # would not serialise two handlers on the same path; the sink's lock does, so taking
        # both would only cost time.
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):
                record = rv
        else:
            rv = True  # what filter() returns without filters, minus the call
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        writer = self._writer
        if writer is not None:
            try:
                prepared = prepare(record, self.formatter)
            except Exception:
                self.handleError(record)
                return
            if writer.put(self, prepared, type(record), record.levelno >= self.flush_level, self._drop):
                return
            # The writer has stopped (interpreter exit).
            record = revive(type(record), prepared)
        try:
            self._sink.write_record(self._render, record, self._rollover)
        except Exception as exc:
            self._write_failed(record, exc)
            return
        if self._lost:
            self._report_recovery()

    def _render(self, record: logging.LogRecord) -> str | None:
        """The text written for ``record``: formatted, control characters escaped if asked; None
        when it cannot be formatted (reported through handleError).

        One place for both paths: emit() in the caller and the non-blocking writer thread.
        """
        try:
            fast = self._fast
            if fast[0] is not self.formatter or fast[1] is not self.fast_format:
                fast = self._fast = handler_render(self)
            msg = fast[2](record)
        except Exception:
            self.handleError(record)
            return None
        if self.escape_newlines:
            msg = msg.translate(_ESCAPES)
        return msg

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child for every handler (3.9+). A parent thread that
        # was reporting a failure at fork time holds _fail_lock forever in the child.
        super()._at_fork_reinit()  # type: ignore[misc]  # private, logging 3.9+
        self._fail_lock = threading.Lock()

    def flush(self) -> None:
        """Wait until the queued records are written (non-blocking mode); a synchronous handler
        writes every record with its own ``write()`` and has nothing buffered."""
        writer = self._writer
        if writer is not None:
            writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            # Drain before the sink can close: nothing queued is lost on close()/shutdown().
            detach(writer)
        with self._fail_lock:
            sink, self._sink = self._sink, _ClosedSink(self)
        if not isinstance(sink, _ClosedSink):
            release(sink)
        super().close()

    # -- rotation hooks, as in logging.handlers.BaseRotatingHandler ------------------------

    def rotation_filename(self, default_name: str) -> str:
        return default_name if not callable(self.namer) else self.namer(default_name)

    def rotate(self, source: str, dest: str) -> None:
        if not callable(self.rotator):
            if os.path.exists(source):
                os.replace(source, dest)
        else:
            self.rotator(source, dest)

    # -- failure bursts ---------------------------------------------------------------------

    def _write_failed(self, record: logging.LogRecord, exc: BaseException) -> None:
        """Count the lost record; report only the first failure of a burst via handleError."""
        with self._fail_lock:
            first = self._lost == 0
            self._lost += 1
            if first:
                self._lost_since = time.time()
                self._lost_error = f"{type(exc).__name__}: {exc}"
        if first:
            self.handleError(record)

    def _report_recovery(self) -> None:
        with self._fail_lock:
            lost, self._lost = self._lost, 0
            since, error = self._lost_since, self._lost_error
        if not lost:
            return
        note = logging.LogRecord(
            "safelog",
            logging.WARNING,
            __file__,
            0,
            "safelog: %d record(s) could not be written to %s since %s (%s); writing resumed",
            (lost, self.baseFilename, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)), error),
            None,
        )
        try:
            self._sink.write_record(self._render, note, self._rollover)
        except Exception as exc:
            with self._fail_lock:
                self._lost += lost
            self._write_failed(note, exc)

    def _reopen(self) -> Sink:
        """The sink for a record that arrived after close(), as logging.FileHandler reopens.

        A second dictConfig() (Django's LOGGING after gunicorn's logconfig_dict, a Flask app's
        config) closes every existing handler but leaves the ones on loggers it does not
        configure attached: gunicorn.access keeps a closed handler. Dropping its records would
        silently lose the access log, so a closed handler in append mode reopens, like the
        stdlib's; in mode 'w' it does not, as reopening would truncate the file again.
        """
        with self._fail_lock:
            if isinstance(self._sink, _ClosedSink):
                if self.mode == "w":
                    raise ValueError("I/O operation on closed handler")
                self._sink = acquire(*self._sink_key)
            return self._sink

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.baseFilename} strategy={self.strategy}>"


def _pins_strategy(cls: type) -> bool:
    """True for ThreadFileHandler & co.: a class that sets default_strategy itself. A user's
    subclass of SafeFileHandler (to override handleError, say) keeps the strategy option."""
    below = cls.__mro__[: cls.__mro__.index(SafeFileHandler)]
    return any("default_strategy" in vars(c) for c in below)


def _level(option: str, value: Any) -> int:
    """A level number from an int or a level name such as ``"ERROR"``."""
    if isinstance(value, bool):
        raise TypeError(f"{option} must be a level name or number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        level = logging.getLevelName(value.strip().upper())
        if isinstance(level, int):
            return level
        raise ValueError(f"{option}={value!r} is not a level name (e.g. 'ERROR', 'WARNING')")
    raise TypeError(f"{option} must be a level name or number, not {value!r}")


def _one_of(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    if value is not _SENTINEL and alias_value is not _SENTINEL and value != alias_value:
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r} disagree; give one of them")
    if value is not _SENTINEL:
        return value
    if alias_value is not _SENTINEL:
        return alias_value
    return default


class _ClosedSink(Sink):
    """Stands in after close(): the next record reopens the handler (see ``_reopen``).

    Reopening here rather than testing for a closed handler in emit() keeps the hot path as is.
    """

    kind = "closed"

    def __init__(self, handler: SafeFileHandler) -> None:  # noqa: D107 - no file behind it
        self._handler = handler

    def write(self, msg: str, created: float, rollover: Rollover | None) -> None:
        self._handler._reopen().write(msg, created, rollover)

    def write_many(self, items: Any, rollover: Rollover | None) -> None:
        self._handler._reopen().write_many(items, rollover)

    def write_record(self, render: Any, record: logging.LogRecord, rollover: Rollover | None) -> None:
        self._handler._reopen().write_record(render, record, rollover)
