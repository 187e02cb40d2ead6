"""The one public handler: formatting, error handling and rotation; strategies do the I/O."""

from __future__ import annotations

import datetime
import errno
import io
import logging
import logging.handlers
import math
import re
import os
import threading
import time
from typing import Any, Callable, ClassVar

from ._delivery.failures import Failures
from ._delivery.outlet import Outlet
from ._delivery.freeze import Freezer
from ._delivery.queue import Writer, attach, detach
from ._delivery.reopen import unwatch, watch
from ._delivery.render import ESCAPES, Renderer
from ._exitmerge import merge_at_exit
from ._policy.config import UNSET, Config, check_size_rotates, parse_config
from ._policy.options import check_int, parse_size
from ._policy.rotation import Rollover, RotationHooks
from ._policy.timing import TimePolicy
from ._merge import created_names as merge_names
from ._primitives.paths import name_too_long, resolve_log_path, unwritable, unwritable_dir
from ._primitives.reentry import defer, get_ident as _get_ident, inside as _inside, section
from ._primitives.reentry import write_all as write_pending
from ._primitives.fileio import open_append, open_stream
from ._sinks.base import Sink, SinkRetired, last_write
from ._sinks.registry import STRATEGIES, acquire, release

__all__ = [
    "SafeFileHandler",
    "ThreadFileHandler",
    "FlockFileHandler",
    "PerProcessFileHandler",
    "FileHandler",
    "WatchedFileHandler",
    "RotatingFileHandler",
    "TimedRotatingFileHandler",
    "STRATEGIES",
]

_SENTINEL: Any = UNSET
# How often a record is redirected to a reopened sink when close() keeps retiring the one it
# reaches (each time needs another close() racing it).
_REWRITES = 10


def _check_merge_names(given: str, real: str) -> None:
    """ValueError when a file the merge at exit creates beside the log (its journal, lock, temp
    files) has a name over the file system's limit: found when the handler is built, not at
    exit, when there is no one left to tell."""
    for what, name in merge_names(real):
        problem = name_too_long(name)
        if problem is not None:
            raise ValueError(
                f"filename={given!r}: merge_on_exit: the {what} {name!r} cannot be created: "
                f"{problem}; use a shorter filename"
            )


class SafeFileHandler(logging.FileHandler):
    """A file handler that many threads, processes or an event loop can share safely.

    A drop-in for ``logging.handlers.RotatingFileHandler`` (same positional arguments and
    keyword names) plus ``strategy`` (``"thread"``, ``"flock"``, ``"per-process"``) and
    snake-case aliases ``max_bytes``/``backup_count`` that also accept sizes like ``"10 MB"``.
    Time rotation takes the ``TimedRotatingFileHandler`` names (``when``, ``interval``, ``utc``,
    ``atTime``) or ``rotate_every="1 hour"``; ``compress``, ``retention``, ``chmod`` and
    ``owner`` apply to every strategy. ``delay_compress=True`` leaves the newest backup
    uncompressed until the next rotation (logrotate's ``delaycompress``), for log shippers that
    are still reading it.
    ``merge_on_exit=True`` (``per-process`` only) runs :func:`safelog.merge` on the log when
    the process that created the handler exits (not in its fork or multiprocessing children).

    ``reopen_signal="SIGUSR1"`` (or ``"SIGHUP"``, ``"SIGUSR2"``; off by default) makes that
    signal reopen the log before the next record, in every process that configured it: for
    logrotate's ``create`` + ``postrotate kill``. Any Python handler already installed for the
    signal is still called. :meth:`reopen` does the same from code.

    ``escape_newlines=True`` writes line breaks and other control characters inside a record
    as ``\\n``, ``\\r``, ``\\xNN``, so that a logged value cannot forge extra log lines.

    ``nonblocking=True`` moves the I/O to one background thread per file: ``emit()`` freezes the
    record and queues it (``queue_size``, ``overflow="block"|"drop"``); the thread writes
    batches of up to ``max_batch`` records with one lock and one ``write()``, at least every
    ``flush_interval`` (seconds or ``"200 ms"``) and at once for records at or above
    ``flush_level``. The text is what a synchronous handler writes: the stock
    ``logging.Formatter``'s layout runs in the thread, any other formatter in the caller
    (``_delivery/freeze.py`` has the rule).

    A stock ``logging.Formatter`` is run through an equivalent that writes the same text with
    less work per record (the time text is made once a second); ``fast_format = False`` on the
    class or on a handler turns that off.
    """

    default_strategy: ClassVar[str] = "flock"
    terminator = "\n"
    # The BaseRotatingHandler hooks. Class attributes, so that a subclass may define them as
    # methods; the namer=/rotator= options set them on the instance.
    namer: Callable[[str], str] | None = None
    rotator: Callable[[str, str], None] | None = None
    #: Format records of a stock ``logging.Formatter`` through safelog's faster equivalent
    #: (same text, see ``safelog/_delivery/fastformat.py``); set False, on the class or on a
    #: handler, to have every record formatted by ``self.format(record)``.
    fast_format: bool = True
    _outlet: Outlet  # what the non-blocking writer gets (nonblocking=True only)

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
        delay_compress: bool = False,
        retention: str | datetime.timedelta | None = None,
        chmod: int | str | None = None,
        owner: str | None = None,
        watch: bool = False,
        reopen_signal: str | None = None,
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
            rotate_every=rotate_every, compress=compress, delay_compress=delay_compress,
            retention=retention, chmod=chmod, owner=owner, watch=watch, reopen_signal=reopen_signal,
            stdlib_rotating=issubclass(cls, logging.handlers.RotatingFileHandler), **unknown,
        )  # fmt: skip
        self._configure(config, filename)

    def _configure(self, config: Config, filename: Any) -> None:
        """Parse, build, open: the part of construction every safelog class shares."""
        if os.path.isdir(config.filename):
            raise ValueError(f"filename={os.fspath(filename)!r} is a directory")
        self._build(config)
        # logging.Handler's constructor, not FileHandler's: the strategy opens the file.
        logging.Handler.__init__(self)
        try:
            self._start(config, os.fspath(filename))
        except BaseException:
            _unregister(self)
            raise

    def _build(self, config: Config) -> None:
        """The stdlib attributes, and the values the layers below are handed."""
        self.config = config
        self.strategy = config.strategy
        self.baseFilename = config.filename
        self.mode = config.given.get("mode", config.mode)
        self.encoding = config.encoding
        self.errors = config.errors
        self.delay = config.delay
        self._max_bytes = config.max_bytes
        self._backup_count = config.backup_count
        if config.namer is not None:
            self.namer = config.namer
        if config.rotator is not None:
            self.rotator = config.rotator
        self.lock_dir = config.lock_dir
        self.merge_on_exit = config.merge_on_exit
        self.escape_newlines = config.escape_newlines
        self.nonblocking = config.nonblocking
        self.overflow = config.overflow
        self._drop = config.overflow == "drop"
        self.flush_level = config.flush_level
        self.utc = config.utc
        self.reopen_signal = config.reopen_signal
        timing = config.timing
        self.when = None if timing is None else timing.when
        self.interval = 1 if timing is None else timing.interval
        self.atTime = None if timing is None else timing.at_time
        self._writer: Writer | None = None
        self._view: _StreamView | None = None
        self._rollover: Rollover | None = None
        # Backups have the default names unless a namer is set (now or later) or a subclass
        # renames them in rotation_filename(); rotation then recognises them by asking it.
        cls = type(self)
        self._own_names = cls.rotation_filename is not SafeFileHandler.rotation_filename
        self._template = (
            cls.shouldRollover is not SafeFileHandler.shouldRollover
            or cls.doRollover is not SafeFileHandler.doRollover
        )
        # A size limit without backups rotates nothing, but shouldRollover() still answers
        # for it, as the stdlib's does; and assigning backupCount later starts rotating.
        if config.rotates or config.max_bytes or config.backup_count:
            self._rollover = self._new_rollover(config.max_bytes, config.backup_count)

    def _new_rollover(self, max_bytes: int, backup_count: int) -> Rollover:
        config = self.config
        # Looked up on every use, as BaseRotatingHandler does: a namer or rotator assigned
        # after construction, or a subclass's methods, are the ones that count.
        hooks = RotationHooks(
            name=lambda name: self.rotation_filename(name),
            move=lambda source, dest: self.rotate(source, dest),
            plain=lambda: self.namer is None and not self._own_names,
            report=lambda record: self.handleError(record),
        )
        perms = config.perms if config.perms.active else None
        return Rollover(
            hooks, max_bytes, backup_count, config.timing, config.codec, config.max_age, perms, config.delay_compress,
            started=time.time(),
        )

    # -- the size limits, live as in the stdlib (its emit() reads them) -------------------------

    @property
    def maxBytes(self) -> int:
        """The size limit in bytes (0: none). Assigned after construction, it applies from the
        next record (``"10 MB"`` is accepted too), as ``RotatingFileHandler.maxBytes`` does."""
        return self._max_bytes

    @maxBytes.setter
    def maxBytes(self, value: int) -> None:
        self._resize(parse_size("maxBytes", value), self._backup_count)

    @property
    def backupCount(self) -> int:
        """How many backups are kept. Assigned after construction, it applies from the next
        rotation, as ``RotatingFileHandler.backupCount`` does (0 with only a size limit:
        nothing is rotated)."""
        return self._backup_count

    @backupCount.setter
    def backupCount(self, value: int) -> None:
        self._resize(self._max_bytes, check_int("backupCount", value))

    def _resize(self, max_bytes: int, backup_count: int) -> None:
        stdlib_rotating = isinstance(self, logging.handlers.RotatingFileHandler)
        check_size_rotates(max_bytes, backup_count, self.config.timing, stdlib_rotating, f"maxBytes={max_bytes!r}")
        rollover = self._rollover
        if rollover is None and (max_bytes or backup_count):
            rollover = self._new_rollover(max_bytes, backup_count)
            if not self._closed_handler():
                self._sink.check_names(rollover)  # a backup name too long: ValueError, now
            self._rollover = rollover
            if self._writer is not None:
                self._outlet = self._outlet._replace(rollover=rollover)
        elif rollover is not None:
            rollover.resize(max_bytes, backup_count)
        self._max_bytes, self._backup_count = max_bytes, backup_count

    def _start(self, config: Config, given: str) -> None:
        """Share the path's sink and open it (unless ``delay``)."""
        renderer = Renderer(self, config.escape_newlines)
        self._render = renderer.render
        self._failures = Failures(lambda record: self.handleError(record), config.filename)
        self._sink_lock = threading.Lock()  # guards swapping the sink on close() and reopen
        real = resolve_log_path(config.filename)
        self._real = real
        self._sink = acquire(real, config)
        try:
            self._sink.check_names(self._rollover)
            if config.merge_on_exit:
                _check_merge_names(given, real)
        except ValueError:
            release(self._sink, config)
            raise
        if config.merge_on_exit:
            merge_at_exit(config.filename, config.given.get("chmod"), config.given.get("owner"))
        if not config.delay and not self._sink.lazy:
            # Open now so a bad path fails at configuration time, like logging.FileHandler; a
            # log that cannot be opened fails before the strategy creates its other files
            # (flock's lock file), so nothing is left behind.
            problem = unwritable(real)
            if problem is not None:
                release(self._sink, config)
                raise ValueError(f"filename={given!r} cannot be opened: {problem}")
            try:
                self._sink.open()
            except OSError as exc:
                release(self._sink, config)
                denied = exc.errno in (errno.EACCES, errno.EPERM) and isinstance(exc.filename, str)
                why = (unwritable(exc.filename) if denied else None) or exc
                raise ValueError(f"filename={given!r} cannot be opened: {why}") from exc
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
            self._freeze = Freezer(self._render, self).freeze
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
        if config.reopen_signal is not None:
            watch(self, config.reopen_signal)

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
        me = _get_ident()
        if me in _inside:
            # Logged from inside safelog by this very thread (a signal handler, a finalizer, a
            # rotator, namer or formatter): it may hold the lock this record needs, or be half
            # way through a rotation. Written when the thread leaves, after what it interrupted
            # (see _primitives/reentry.py).
            defer(me, self.emit, record)
            return
        if self._template:
            # A subclass's shouldRollover()/doRollover(), called as BaseRotatingHandler.emit
            # calls them, before this thread is marked: they are this record's own work (each
            # marks itself while it holds the strategy's lock).
            try:
                if self.shouldRollover(record):
                    self.doRollover()
            except Exception:
                self.handleError(record)
                return
        _inside[me] = None
        try:
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
                if not self._record_failed(exc, render, record):
                    return
            if self._failures.lost:
                self._failures.recover(self._write_now)
        finally:
            pending = _inside.pop(me, None)
            if pending:
                write_pending(me, pending)

    def _record_failed(self, exc: Exception, render: Callable[[logging.LogRecord], str | None], record: logging.LogRecord) -> bool:
        # Apart from emit(), so that its closure costs emit() nothing per record.
        return self._failed_write(exc, record, lambda sink: sink.write_record(render, record, self._rollover))

    def _failed_write(self, exc: Exception, record: logging.LogRecord, write: Callable[[Sink], None]) -> bool:
        """A write raised ``exc``: count the record lost and return False, unless the sink was
        retired by close() in another thread while the record was on its way to it (see
        ``Sink.retire``): then ``write`` it to the handler's current sink, reopened as logging
        after close() reopens a FileHandler, and return True."""
        for _ in range(_REWRITES):
            if not isinstance(exc, SinkRetired):
                break
            try:
                write(self._live_sink())
                return True
            except Exception as again:  # retired again (another close()), or a real failure
                exc = again
        self._write_failed(record, exc)
        return False

    def _write_text(self, text: str) -> None:
        """Text written to :attr:`stream`: one record, through the strategy, escaped as the
        handler escapes records (``escape_newlines``)."""
        me = _get_ident()
        if me in _inside:
            defer(me, self._write_text, text)  # as in emit()
            return
        if self.escape_newlines:
            text = text.translate(ESCAPES)
        with section():
            created = time.time()
            try:
                self._live_sink().write(text, created, self._rollover)
            except Exception as exc:
                record = logging.makeLogRecord({"msg": text})
                self._failed_write(exc, record, lambda sink: sink.write(text, created, self._rollover))

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
            if _get_ident() in _inside:
                return  # from inside safelog (a signal handler, a finalizer): it cannot wait for itself
            with section():
                writer.flush()

    def reopen(self) -> None:
        """Close the log and open the file now at its path, so that the next record goes there:
        for external rotation (logrotate's ``create``). Call it from any thread, not from a
        signal handler (``reopen_signal`` is the way there, or :meth:`request_reopen`)."""
        sink = self._sink
        if not isinstance(sink, _ClosedSink) and not _later(self.reopen):
            with section():
                sink.reopen()

    def request_reopen(self) -> None:
        """:meth:`reopen` for a signal handler: takes no lock; every thread's next record
        reopens the log first if the path names another file now."""
        sink = self._sink
        if not isinstance(sink, _ClosedSink):
            sink.request_reopen()

    def close(self) -> None:
        if _later(self.close):
            return
        with section():
            self._close()

    def _close(self) -> None:
        if self.reopen_signal is not None:
            unwatch(self)
        writer, self._writer = self._writer, None
        if writer is not None:
            # Drain before the sink can close: nothing queued is lost on close()/shutdown().
            detach(writer)
        with self._sink_lock:
            sink, self._sink = self._sink, _ClosedSink(self)
            view, self._view = self._view, None
        if view is not None:
            view.close()
        if not isinstance(sink, _ClosedSink):
            release(sink, self.config)
        logging.Handler.close(self)

    # -- logging.FileHandler ----------------------------------------------------------------

    @property  # type: ignore[override]
    def stream(self) -> _StreamView | None:
        """A file object on the log, as ``FileHandler.stream``, for code that wants a real file
        (``faulthandler.enable(file=handler.stream)``) or writes to it (see :class:`_StreamView`).
        None after ``close()`` and, with ``delay=True``, before the first record, as in the
        stdlib; always None for ``per-process``, whose shards are framed and have no plain file
        to hand out (code that probes ``stream``, as gunicorn does, then leaves it alone)."""
        view = self._view
        if view is None:
            if self._sink.lazy or self.delay and not self._sink.opened or self._closed_handler():
                return None
            view = self._view = self._open()
        return view

    @stream.setter
    def stream(self, value: Any) -> None:
        # What code written for FileHandler assigns: gunicorn's USR1 reopen does
        # ``handler.close(); handler.stream = handler._open()``. The strategy owns the file, so
        # only a view of ours (or None) is kept; the next record reopens the sink.
        old, self._view = self._view, value if isinstance(value, _StreamView) else None
        if old is not None and old is not value:
            old.close()

    def _open(self) -> _StreamView:  # type: ignore[override]
        """A new :attr:`stream` view of the log (``FileHandler._open``)."""
        return _StreamView(self)

    def setStream(self, stream: Any) -> Any:
        raise ValueError(
            f"{type(self).__name__} writes {self.baseFilename} through its strategy; "
            f"setStream() would bypass it (use logging.StreamHandler for a stream)"
        )

    def _closed_handler(self) -> bool:
        return isinstance(self._sink, _ClosedSink)

    # -- rotation, as in logging.handlers.BaseRotatingHandler -------------------------------

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` would make the file rotate now, as the stdlib answers it: by time,
        or by size (formatted, it would bring a non-empty file to ``maxBytes`` or past it, even
        with ``backupCount=0``, which then rotates nothing). The strategy decides again, under
        its lock, when it writes: this is a question, not a reservation."""
        rollover = self._rollover
        if rollover is None or _get_ident() in _inside:
            # From inside safelog (a signal handler, a finalizer): the answer needs the lock
            # this thread may hold; its records are written after, and rotate then if due.
            return False
        msg = self._render(record)
        if msg is None:
            return False
        nbytes = len((msg + "\n").encode(self.config.encoding, self.config.errors))
        with section():
            return self._live_sink().rotation_due(rollover, nbytes, record.created)

    def doRollover(self) -> None:
        """Rotate now, as ``BaseRotatingHandler.doRollover``, under the strategy's lock.

        An empty file is not rotated (no empty backups): so when every process of a server
        calls ``doRollover()`` at start-up, the first rotates and the others find the new,
        empty file and leave it, and no record is lost or rotated twice. A handler without a
        rotation policy (``backupCount=0`` and no ``when``) rotates nothing, as in the stdlib,
        which then only reopens the file."""
        rollover = self._rollover
        if rollover is not None and rollover.renames and not _later(self.doRollover):
            with section():
                self._live_sink().rotate_now(rollover, time.time())

    def _live_sink(self) -> Sink:
        sink = self._sink
        return self._reopen() if isinstance(sink, _ClosedSink) else sink


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
                if self.config.mode == "w":
                    raise ValueError("I/O operation on closed handler")
                self._sink = acquire(self._real, self.config)
            return self._sink

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.baseFilename} strategy={self.strategy}>"


class _StreamView:
    """:attr:`SafeFileHandler.stream`: a file object on the log that keeps the strategy's rules.

    Creating one does no I/O (tools probe ``handler.stream``). ``write()`` goes through the
    handler's strategy, one record per call (a lone line break is the end of the previous
    record, so ``write(msg); write(terminator)`` writes one record). ``fileno()`` is a
    descriptor of its own, opened on first use with ``O_APPEND`` on the file this process
    writes (its shard, for ``per-process``, where raw writes are not framed: merge reports
    them as damaged lines), reopened when that file was rotated away.
    """

    mode = "a"

    def __init__(self, handler: SafeFileHandler) -> None:
        self._handler = handler
        self._fd = -1
        self._ino = -1
        self.closed = False

    @property
    def name(self) -> str:
        return self._handler.baseFilename

    @property
    def encoding(self) -> str:
        return self._handler.config.encoding

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if text != "\n":
            self._handler._write_text(text[:-1] if text.endswith("\n") else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._fd < 0 or self.moved():
            self._close_fd()
            sink = self._handler._live_sink()
            path = sink.target()
            if sink.regular:
                # A shard carries a lock: created (if it must be) as the sink creates it.
                perms = self._handler.config.perms.private() if sink.own_file else self._handler.config.perms
                self._fd = open_append(
                    path, perms.create_mode, perms=perms if perms.active else None, own=sink.own_file
                )
            else:
                self._fd = open_stream(path)
            self._ino = os.fstat(self._fd).st_ino
        return self._fd

    def moved(self) -> bool:
        """True when the file the descriptor appends to is no longer at its path (rotated)."""
        if self._fd < 0:
            return False
        try:
            return os.stat(self._handler._live_sink().target()).st_ino != self._ino
        except OSError:
            return True

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __bool__(self) -> bool:
        # Falsy on purpose: code that closes and reopens every FileHandler whose stream is set,
        # from a signal handler (gunicorn's USR1: ``if handler.stream: handler.close(); ...``),
        # would close safelog's from inside a write it interrupted, which holds the strategy's
        # lock: a deadlock. safelog follows a renamed log itself (path check, reopen_signal).
        return False

    def __repr__(self) -> str:
        return f"<safelog stream {self.name!r}>"


def _later(operation: Callable[[], None]) -> bool:
    """True when this thread is inside safelog (a signal handler or finalizer called
    ``operation`` in the middle of a write, maybe holding the lock it needs): it is then done
    when the thread leaves, like a record logged there."""
    me = _get_ident()
    if me not in _inside:
        return False
    defer(me, lambda _: operation(), None)
    return True


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

    def write_many(self, items: Any, rollover: Rollover | None) -> list[tuple[int, Exception]]:
        return self._handler._reopen().write_many(items, rollover)

    def write_record(self, render: Any, record: logging.LogRecord, rollover: Rollover | None) -> None:
        self._handler._reopen().write_record(render, record, rollover)

    def rollover_at(self, rollover: Rollover, now: float) -> float:
        # Asked of a closed handler: what a new one would start with (reopening would be a side
        # effect of reading an attribute).
        return rollover.boundary(rollover.start_period(last_write(-1, self._handler.baseFilename), now))


class ThreadFileHandler(SafeFileHandler):
    """``strategy="thread"``: the threads of one process share one file and one lock."""

    default_strategy: ClassVar[str] = "thread"


class FlockFileHandler(SafeFileHandler):
    """``strategy="flock"``: many processes on one machine append to one file under a lock file."""

    default_strategy: ClassVar[str] = "flock"


class PerProcessFileHandler(SafeFileHandler):
    """``strategy="per-process"``: each process writes its own shard; merge them afterwards."""

    default_strategy: ClassVar[str] = "per-process"


# The drop-ins: the stdlib class's signature, positional and keyword, plus every safelog keyword
# (strategy, compress, ...); instances of the stdlib class they replace, so that code finding log
# files with isinstance(h, logging.FileHandler) still finds them. Safe across processes by
# default (flock); strategy= picks another.


class FileHandler(SafeFileHandler):
    """Drop-in for ``logging.FileHandler`` (no rotation), safe across threads and processes."""

    _watch: ClassVar[bool] = False  # the default of watch=; WatchedFileHandler's is True

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("watch", self._watch)
        super().__init__(filename, mode, encoding=encoding, delay=delay, errors=errors, **options)


class WatchedFileHandler(FileHandler, logging.handlers.WatchedFileHandler):
    """Drop-in for ``logging.handlers.WatchedFileHandler``: before every record, checks that the
    path still names the open file (moved or deleted by logrotate, say) and reopens it if not."""

    _watch = True

    def reopenIfNeeded(self) -> None:
        """The check runs in the strategy, under its lock, on every record; nothing to do here."""

    def _statstream(self) -> None:
        pass

    # The stdlib sets these when it opens the file; here they are read from the file open now
    # (the strategy reopens it, not this class).
    @property
    def dev(self) -> int:  # type: ignore[override]
        """The device of the file the handler writes now; -1 when it has none open."""
        return self._identity()[0]

    @property
    def ino(self) -> int:  # type: ignore[override]
        """The inode of the file the handler writes now; -1 when it has none open."""
        return self._identity()[1]

    def _identity(self) -> tuple[int, int]:
        return (-1, -1) if self._closed_handler() else self._sink.identity()


class RotatingFileHandler(SafeFileHandler, logging.handlers.RotatingFileHandler):
    """Drop-in for ``logging.handlers.RotatingFileHandler``: rotates exactly once however many
    processes share the file (``flock`` by default)."""

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        maxBytes: int | str = 0,
        backupCount: int = 0,
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        # The stdlib defaults are 0; max_bytes=/backup_count= may then stand in for them.
        size = UNSET if maxBytes == 0 and "max_bytes" in options else maxBytes
        count = UNSET if backupCount == 0 and "backup_count" in options else backupCount
        super().__init__(filename, mode, size, count, encoding, delay, errors, **options)


class TimedRotatingFileHandler(  # type: ignore[misc]  # when: str | None in SafeFileHandler
    SafeFileHandler, logging.handlers.TimedRotatingFileHandler
):
    """Drop-in for ``logging.handlers.TimedRotatingFileHandler``: the boundaries of the running
    interpreter's stdlib (``computeRollover``, the log's mtime at start-up), rotation exactly once
    across processes (with ``flock`` every process learns the boundary from the lock file).

    ``interval`` reads as the period in seconds, as in the stdlib. ``suffix`` and ``extMatch``
    may be changed after construction, as the stdlib allows: backups are then named with the
    new ``strftime`` suffix, recognised by ``extMatch`` (or a pattern made from the suffix) and
    ordered by the time they name.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        when: str = "h",
        interval: int = 1,
        backupCount: int = 0,
        encoding: str | None = None,
        delay: bool = False,
        utc: bool = False,
        atTime: datetime.time | str | None = None,
        errors: str | None = None,
        **options: Any,
    ) -> None:
        if options.get("rotate_every") is not None:
            raise ValueError(
                f"rotate_every={options['rotate_every']!r} replaces when/interval; give when= to "
                f"TimedRotatingFileHandler, or use SafeFileHandler(rotate_every=...)"
            )
        super().__init__(
            filename, backupCount=backupCount, encoding=encoding, delay=delay, errors=errors,
            when=when, interval=interval, utc=utc, atTime=atTime, **options,
        )  # fmt: skip
        timing = self._policy()
        self.when = timing.when
        self.interval = timing.step
        if timing.when.startswith("W"):
            self.dayOfWeek = int(timing.when[1])

    def _policy(self) -> TimePolicy:
        rollover = self._rollover
        assert rollover is not None and rollover.timing is not None
        return rollover.timing

    @property
    def suffix(self) -> str:
        return self._policy().suffix

    @suffix.setter
    def suffix(self, value: str) -> None:
        self._policy().set_suffix(value)

    @property
    def extMatch(self) -> re.Pattern[str]:
        return re.compile(r"^" + self._policy().stamp_re + r"(\.\w+)?$", re.ASCII)

    @extMatch.setter
    def extMatch(self, value: re.Pattern[str] | str) -> None:
        pattern = value.pattern if isinstance(value, re.Pattern) else value
        if not isinstance(pattern, str):
            raise TypeError(f"extMatch must be a regular expression, not {value!r}")
        # The stdlib anchors it and allows a trailing extension; safelog matches the stamp
        # itself and handles compressed extensions on its own.
        pattern = pattern.removeprefix("^").removesuffix("$").removesuffix(r"(\.\w+)?")
        re.compile(pattern)
        timing = self._policy()
        timing.set_suffix(timing.suffix, pattern)

    @property  # read-only: the strategy keeps it (for flock, shared through the lock file)
    def rolloverAt(self) -> int:  # type: ignore[override]
        """When the current file is due, as this process knows it."""
        rollover = self._rollover
        assert rollover is not None
        return math.ceil(self._sink.rollover_at(rollover, time.time()))

    def computeRollover(self, currentTime: float) -> Any:
        """The stdlib's ``computeRollover(currentTime)`` of the running interpreter: the
        boundary after a file started at ``currentTime``."""
        return self._policy().compute_rollover(currentTime)

    def getFilesToDelete(self) -> list[str]:
        rollover = self._rollover
        assert rollover is not None
        return rollover.files_to_delete(self.baseFilename)
