"""The one public handler: formatting, error handling and rotation; strategies do the I/O."""

from __future__ import annotations

import datetime
import logging
import os
import threading
from typing import Any, Callable, ClassVar

from ._delivery.failures import Failures
from ._delivery.outlet import Outlet
from ._delivery.freeze import Freezer
from ._delivery.queue import Writer, attach, detach
from ._delivery.render import Renderer
from ._exitmerge import merge_at_exit
from ._policy.config import UNSET, Config, parse_config
from ._policy.rotation import Rollover, RotationHooks
from ._primitives.paths import resolve_log_path, unwritable_dir
from ._sinks.base import Sink
from ._sinks.registry import STRATEGIES, acquire, release

__all__ = ["SafeFileHandler", "STRATEGIES"]

_SENTINEL: Any = UNSET


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

    ``nonblocking=True`` moves the I/O to one background thread per file: ``emit()`` freezes the
    record and queues it (``queue_size``, ``overflow="block"|"drop"``); the thread writes
    batches of up to ``max_batch`` records with one lock and one ``write()``, at least every
    ``flush_interval`` (seconds or ``"200 ms"``) and at once for records at or above
    ``flush_level``. The text is what a synchronous handler writes: the stock
    ``logging.Formatter``'s layout runs in the thread, any other formatter in the caller
    (``_delivery/freeze.py`` has the rule).
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
        cls = type(self)
        config = parse_config(
            cls.__name__, self.default_strategy, _pins_strategy(cls), filename, mode, maxBytes, backupCount,
            encoding, delay, errors, strategy=strategy, max_bytes=max_bytes, backup_count=backup_count,
            namer=namer, rotator=rotator, lock_dir=lock_dir, merge_on_exit=merge_on_exit,
            escape_newlines=escape_newlines, nonblocking=nonblocking, queue_size=queue_size,
            overflow=overflow, flush_interval=flush_interval, flush_level=flush_level,
            max_batch=max_batch, when=when, interval=interval, utc=utc, atTime=atTime,
            rotate_every=rotate_every, compress=compress, retention=retention, chmod=chmod,
            owner=owner, **unknown,
        )  # fmt: skip
        if os.path.isdir(config.filename):
            raise ValueError(f"filename={os.fspath(filename)!r} is a directory")
        self._build(config)
        super().__init__()
        try:
            self._open(config, os.fspath(filename))
        except BaseException:
            _unregister(self)
            raise

    def _build(self, config: Config) -> None:
        """The stdlib attributes, and the values the layers below are handed."""
        self.config = config
        self.strategy = config.strategy
        self.baseFilename = config.filename
        self.mode = config.mode
        self.encoding = config.encoding
        self.errors = config.errors
        self.delay = config.delay
        self.maxBytes = config.max_bytes
        self.backupCount = config.backup_count
        self.namer = config.namer
        self.rotator = config.rotator
        self.lock_dir = config.lock_dir
        self.merge_on_exit = config.merge_on_exit
        self.escape_newlines = config.escape_newlines
        self.nonblocking = config.nonblocking
        self.overflow = config.overflow
        self._drop = config.overflow == "drop"
        self.flush_level = config.flush_level
        self.utc = config.utc
        timing = config.timing
        self.when = None if timing is None else timing.when
        self.interval = 1 if timing is None else timing.interval
        self.atTime = None if timing is None else timing.at_time
        self._writer: Writer | None = None
        self._rollover: Rollover | None = None
        if config.rotates:
            # Looked up on every use, as BaseRotatingHandler does: a namer or rotator assigned
            # after construction, or a subclass's methods, are the ones that count.
            hooks = RotationHooks(
                name=lambda name: self.rotation_filename(name),
                move=lambda source, dest: self.rotate(source, dest),
                plain=lambda: self.namer is None,
                report=lambda record: self.handleError(record),
            )
            perms = config.perms if config.perms.active else None
            self._rollover = Rollover(
                hooks, config.max_bytes, config.backup_count, timing, config.codec, config.max_age, perms
            )

    def _open(self, config: Config, given: str) -> None:
        """Share the path's sink and open it (unless ``delay``)."""
        renderer = Renderer(self, config.escape_newlines)
        self._render = renderer.render
        self._failures = Failures(lambda record: self.handleError(record), config.filename)
        self._sink_lock = threading.Lock()  # guards swapping the sink on close() and reopen
        real = resolve_log_path(config.filename)
        self._real = real
        self._sink = acquire(real, config)
        if config.merge_on_exit:
            merge_at_exit(config.filename)
        if not config.delay and config.strategy != "per-process":
            # Open now so a bad path fails at configuration time, like logging.FileHandler.
            try:
                self._sink.open()
            except OSError as exc:
                release(self._sink, config)
                raise ValueError(f"filename={given!r} cannot be opened: {exc}") from exc
        elif not config.delay:
            # The shard is opened lazily, in the process that writes (after any fork); a
            # directory it can never be created in should still fail here, not at emit time.
            problem = unwritable_dir(real)
            if problem is not None:
                release(self._sink, config)
                raise ValueError(f"filename={given!r} cannot be opened: {problem}")
        if config.queue is not None:
            # The layout of a record may wait for the writer only if this class formats as
            # logging.Handler does; see _delivery/freeze.py.
            self._freeze = Freezer(self._render, type(self).format is logging.Handler.format).freeze
            self._outlet = Outlet(
                config.filename,
                self._render,
                renderer.layout,
                self._rollover,
                lambda record, exc: self._write_failed(record, exc),
                self._failures,
                lambda record: self.handleError(record),
            )
            self._writer = attach(self._sink, config.queue)

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
        render: Callable[[logging.LogRecord], str | None] = self._render
        writer = self._writer
        if writer is not None:
            try:
                frozen = self._freeze(record, self.formatter)
            except Exception:
                self.handleError(record)
                return
            if frozen is None:
                return  # could not be formatted: reported
            payload, extra = frozen
            if writer.put(self._outlet, payload, extra, record.levelno >= self.flush_level, self._drop):
                return
            # The writer has stopped (interpreter exit): write it here, formatted only once.
            if isinstance(payload, str):
                render = lambda _: payload  # noqa: E731
        try:
            self._sink.write_record(render, record, self._rollover)
        except Exception as exc:
            self._write_failed(record, exc)
            return
        if self._failures.lost:
            self._failures.recover(self._write_now)

    def _write_now(self, record: logging.LogRecord) -> None:
        self._sink.write_record(self._render, record, self._rollover)

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child for every handler (3.9+). A parent thread that
        # held one of these locks at fork time holds it forever in the child.
        super()._at_fork_reinit()  # type: ignore[misc]  # private, logging 3.9+
        self._sink_lock = threading.Lock()
        self._failures.after_fork()

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
        with self._sink_lock:
            sink, self._sink = self._sink, _ClosedSink(self)
        if not isinstance(sink, _ClosedSink):
            release(sink, self.config)
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
        self._failures.failed(record, exc)

    def _reopen(self) -> Sink:
        """The sink for a record that arrived after close(), as logging.FileHandler reopens.

        A second dictConfig() (Django's LOGGING after gunicorn's logconfig_dict, a Flask app's
        config) closes every existing handler but leaves the ones on loggers it does not
        configure attached: gunicorn.access keeps a closed handler. Dropping its records would
        silently lose the access log, so a closed handler in append mode reopens, like the
        stdlib's; in mode 'w' it does not, as reopening would truncate the file again.
        """
        with self._sink_lock:
            if isinstance(self._sink, _ClosedSink):
                if self.mode == "w":
                    raise ValueError("I/O operation on closed handler")
                self._sink = acquire(self._real, self.config)
            return self._sink

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.baseFilename} strategy={self.strategy}>"


def _unregister(handler: logging.Handler) -> None:
    """Take a handler whose construction failed out of logging's list of handlers, so that
    ``logging.shutdown()`` at exit does not flush or close a half-built object (and stop there,
    before the handlers after it in the list)."""
    with logging._lock:  # type: ignore[attr-defined]  # private; present on every version
        logging._handlerList[:] = [r for r in logging._handlerList if r() is not handler]  # type: ignore[attr-defined]


def _pins_strategy(cls: type) -> bool:
    """True for ThreadFileHandler & co.: a class that sets default_strategy itself. A user's
    subclass of SafeFileHandler (to override handleError, say) keeps the strategy option."""
    below = cls.__mro__[: cls.__mro__.index(SafeFileHandler)]
    return any("default_strategy" in vars(c) for c in below)


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
