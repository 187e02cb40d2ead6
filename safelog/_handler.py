"""The one public handler: formatting, error handling and rotation; strategies do the I/O."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, ClassVar

from ._flock import FlockSink
from ._options import check_bool, check_choice, check_int, check_str, parse_duration, parse_size
from ._perprocess import PerProcessSink
from ._queue import QueueSettings, Writer, attach, detach, prepare
from ._rotation import Rollover
from ._strategy import FileOptions, Sink, acquire, release
from ._thread import ThreadSink

__all__ = ["SafeFileHandler", "STRATEGIES"]

STRATEGIES: dict[str, type[Sink]] = {
    "thread": ThreadSink,
    "flock": FlockSink,
    "per-process": PerProcessSink,
}

_SENTINEL: Any = object()


class SafeFileHandler(logging.Handler):
    """A file handler that many threads, processes or an event loop can share safely.

    A drop-in for ``logging.handlers.RotatingFileHandler`` (same positional arguments and
    keyword names) plus ``strategy`` (``"thread"``, ``"flock"``, ``"per-process"``) and
    snake-case aliases ``max_bytes``/``backup_count`` that also accept sizes like ``"10 MB"``.

    ``nonblocking=True`` moves formatting and I/O to one background thread per file: ``emit()``
    freezes the record and queues it (``queue_size``, ``overflow="block"|"drop"``); the thread
    writes batches of up to ``max_batch`` records with one lock and one ``write()``, at least
    every ``flush_interval`` (seconds or ``"200 ms"``) and at once for records at or above
    ``flush_level``.
    """

    default_strategy: ClassVar[str] = "flock"
    terminator = "\n"

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
        nonblocking: bool = False,
        queue_size: int | None = None,
        overflow: str | None = None,
        flush_interval: float | str | None = None,
        flush_level: int | str | None = None,
        max_batch: int | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {', '.join(sorted(unknown))}; "
                f"valid options: filename, strategy, max_bytes (maxBytes), backup_count "
                f"(backupCount), mode, encoding, errors, delay, namer, rotator, lock_dir, "
                f"nonblocking, queue_size, overflow, flush_interval, flush_level, max_batch"
            )
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise TypeError(f"filename must be a path, not {filename!r}")
        if strategy is None:
            strategy = self.default_strategy
        elif type(self).default_strategy != strategy and type(self) is not SafeFileHandler:
            raise ValueError(
                f"strategy={strategy!r} conflicts with {type(self).__name__}, which is the "
                f"{self.default_strategy!r} strategy; use safelog.SafeFileHandler instead"
            )
        self.strategy = check_choice("strategy", strategy, tuple(STRATEGIES))
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
        if namer is not None and not callable(namer):
            raise TypeError(f"namer must be callable, not {namer!r}")
        if rotator is not None and not callable(rotator):
            raise TypeError(f"rotator must be callable, not {rotator!r}")
        self.namer = namer
        self.rotator = rotator
        self.delay = check_bool("delay", delay)
        self.baseFilename = os.path.abspath(os.fspath(filename))
        if os.path.isdir(self.baseFilename):
            raise ValueError(f"filename={os.fspath(filename)!r} is a directory")
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

        # Size rotation needs somewhere to rotate to: with backupCount=0 the stdlib never
        # rotates either ("if either is zero, rollover never occurs").
        self._rollover: Rollover | None = None
        if self.maxBytes > 0 and self.backupCount > 0:
            self._rollover = Rollover(self, self.maxBytes, self.backupCount)

        super().__init__()
        options = FileOptions(
            encoding=self.encoding,
            errors=self.errors,
            truncate=mode == "w",
            file_mode=0o666,
            lock_dir=lock_dir_s,
        )
        self._sink = acquire(STRATEGIES[self.strategy], os.path.realpath(self.baseFilename), options)
        self._fail_lock = threading.Lock()
        self._lost = 0
        self._lost_since = 0.0
        self._lost_error = ""
        if not self.delay and self.strategy != "per-process":
            # Open now so a bad path fails at configuration time, like logging.FileHandler.
            try:
                self._sink.open()
            except OSError as exc:
                release(self._sink)
                raise ValueError(f"filename={os.fspath(filename)!r} cannot be opened: {exc}") from exc
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
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):
            record = rv
        if rv:
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
            if writer.put(self, prepared, record.levelno >= self.flush_level, self._drop):
                return
            # The writer has stopped (interpreter exit) or this is the writer thread itself.
            record = prepared
        try:
            msg = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._sink.write(msg, record.created, self._rollover)
        except Exception as exc:
            self._write_failed(record, exc)
            return
        if self._lost:
            self._report_recovery()

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
            sink, self._sink = self._sink, _ClosedSink()
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
            self._sink.write(self.format(note), note.created, self._rollover)
        except Exception as exc:
            with self._fail_lock:
                self._lost += lost
            self._write_failed(note, exc)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.baseFilename} strategy={self.strategy}>"


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
    """Stands in after close(): records logged to a closed handler are reported, not written."""

    kind = "closed"

    def __init__(self) -> None:  # noqa: D107 - no file behind it
        pass

    def write(self, msg: str, created: float, rollover: Rollover | None) -> None:
        raise ValueError("I/O operation on closed handler")

    def write_many(self, items: Any, rollover: Rollover | None) -> None:
        raise ValueError("I/O operation on closed handler")
