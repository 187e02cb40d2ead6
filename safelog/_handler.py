"""The one public handler: formatting, error handling and rotation; strategies do the I/O."""

from __future__ import annotations

import datetime
import errno
import logging
import logging.handlers
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ._attributes import OptionViews
from ._closed import ClosedStrategy, later
from ._delivery.failures import Failures
from ._delivery.freeze import Freezer
from ._delivery.outlet import Outlet
from ._delivery.queue import Writer, attach, detach
from ._delivery.render import ESCAPES, Renderer
from ._delivery.reopen import unwatch, watch
from ._exitmerge import check_merge_names, merge_at_exit
from ._policy.config import OPTIONS, UNSET, Config, parse_config
from ._policy.rotation import RotationHooks
from ._primitives.paths import resolve_log_path, unwritable, unwritable_dir
from ._primitives.reentry import defer, section
from ._primitives.reentry import get_ident as _get_ident
from ._primitives.reentry import inside as _inside
from ._primitives.reentry import write_all as write_pending
from ._rotating import StdlibRotation
from ._sinks.registry import STRATEGIES, acquire, release
from ._sinks.strategy import Render, Retired, Strategy, check_names, rotates
from ._stream import StreamView

__all__ = ["SafeFileHandler", "STRATEGIES"]

_SENTINEL: Any = UNSET
# How often a record is redirected to a reopened strategy when close() keeps retiring the one it
# reaches (each time needs another close() racing it).
_REWRITES = 10


class SafeFileHandler(OptionViews, StdlibRotation, logging.FileHandler):
    """A file handler that many threads, processes or an event loop can share safely.

    A drop-in for ``logging.handlers.RotatingFileHandler`` (same positional arguments and
    keyword names) plus ``strategy`` (``"thread"``, ``"flock"``, ``"per-process"``) and
    snake-case aliases ``max_bytes``/``backup_count`` that also accept sizes like ``"10 MB"``.
    Time rotation takes the ``TimedRotatingFileHandler`` names (``when``, ``interval``, ``utc``,
    ``atTime``) or ``rotate_every="1 hour"``; ``compress``, ``retention``, ``max_total_bytes``,
    ``chmod`` and ``owner`` apply to every strategy. ``delay_compress=True`` leaves the newest backup
    uncompressed until the next rotation (logrotate's ``delaycompress``), for log shippers that
    are still reading it.
    ``rotate_on_start=True`` rotates a non-empty log once per start (docs/rotation.md).
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
    #: Format records of a stock ``logging.Formatter`` through safelog's faster equivalent
    #: (same text, see ``safelog/_delivery/fastformat.py``); set False, on the class or on a
    #: handler, to have every record formatted by ``self.format(record)``.
    fast_format: bool = True
    _outlet: Outlet  # what the non-blocking writer gets (nonblocking=True only)
    _strategy: Strategy | ClosedStrategy  # the path's strategy; a stand-in after close()

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
        max_total_bytes: int | str | None = None,
        chmod: int | str | None = None,
        owner: str | None = None,
        watch: bool = False,
        reopen_signal: str | None = None,
        rotate_on_start: bool = False,
        **unknown: Any,
    ) -> None:
        # Every keyword as given, forwarded once: the signature above is where the handler spells
        # an option (parse_config fills in the defaults of the ones a subclass leaves out).
        arguments = locals()
        given = {name: arguments[name] for name in OPTIONS if name != "filename"}
        cls = type(self)
        config = parse_config(
            cls.__name__, self.default_strategy, _pins_strategy(cls), filename,
            stdlib_rotating=issubclass(cls, logging.handlers.RotatingFileHandler), **given, **unknown,
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
        """The values the layers below are handed (the stdlib attributes are views of ``config``)."""
        self._views_from(config)
        if config.namer is not None:
            self.namer = config.namer
        if config.rotator is not None:
            self.rotator = config.rotator
        self._writer: Writer | None = None
        self._view: StreamView | None = None
        # Backups have the default names unless a namer is set (now or later) or a subclass
        # renames them in rotation_filename(); rotation then recognises them by asking it.
        cls = type(self)
        self._own_names = cls.rotation_filename is not SafeFileHandler.rotation_filename
        self._template = (
            cls.shouldRollover is not SafeFileHandler.shouldRollover
            or cls.doRollover is not SafeFileHandler.doRollover
        )
        self._prelude: Callable[[int, logging.LogRecord], Render | None] | None
        self._prelude = self._rare_prelude if self._template or config.queue is not None else None
        # Looked up on every use, as BaseRotatingHandler does: a namer or rotator assigned
        # after construction, or a subclass's methods, are the ones that count.
        self._hooks = RotationHooks(
            name=lambda name: self.rotation_filename(name),
            move=lambda source, dest: self.rotate(source, dest),
            plain=lambda: self.namer is None and not self._own_names,
            report=lambda record: self.handleError(record),
            identity=lambda: (self._hook("namer", "rotation_filename"), self._hook("rotator", "rotate")),
        )

    def _start(self, config: Config, given: str) -> None:
        """Share the path's strategy and open it (unless ``delay``)."""
        renderer = Renderer(self, config.escape_newlines)
        self._render = renderer.render
        self._failures = Failures(lambda record: self.handleError(record), config.filename)
        self._strategy_lock = threading.Lock()  # guards swapping the strategy on close() and reopen
        real = resolve_log_path(config.filename)
        self._real = real
        strategy = self._strategy = acquire(real, config, self._hooks, self)
        self._rotation = strategy.policy
        try:
            check_names(config.filename, strategy.names())
            if config.merge_on_exit:
                check_merge_names(given, real)
        except ValueError:
            release(strategy, self)
            raise
        if config.merge_on_exit:
            merge_at_exit(config.filename, config.given.get("chmod"), config.given.get("owner"))
        if not config.delay and not strategy.lazy:
            # Open now so a bad path fails at configuration time, like logging.FileHandler; a
            # log that cannot be opened fails before the strategy creates its other files
            # (flock's lock file), so nothing is left behind.
            problem = unwritable(real)
            if problem is not None:
                release(strategy, self)
                raise ValueError(f"filename={given!r} cannot be opened: {problem}")
            try:
                strategy.open()
            except OSError as exc:
                release(strategy, self)
                denied = exc.errno in (errno.EACCES, errno.EPERM) and isinstance(exc.filename, str)
                why = (unwritable(exc.filename) if denied else None) or exc
                raise ValueError(f"filename={given!r} cannot be opened: {why}") from exc
        elif not config.delay:
            # The shard is opened lazily, in the process that writes (after any fork); a
            # directory it can never be created in should still fail here, not at emit time.
            problem = unwritable_dir(real)
            if problem is not None:
                release(strategy, self)
                raise ValueError(f"filename={given!r} cannot be opened: {problem}")
        if config.queue is not None:
            # The layout of a record may wait for the writer only if this class formats as
            # logging.Handler does; see _delivery/freeze.py.
            self._freeze = Freezer(self._render, self).freeze
            self._outlet = Outlet(
                config.filename,
                self._render,
                renderer.layout,
                lambda record, exc: self._write_failed(record, exc),
                self._failures,
                lambda record: self.handleError(record),
            )
            self._writer = attach(strategy, config.queue)
        if config.reopen.signal is not None:
            watch(self, config.reopen.signal)

    # -- logging.Handler -------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        # The handler-level RLock that logging.Handler.handle() takes is per handler, so it
        # would not serialise two handlers on the same path; the strategy's lock does, so taking
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
        # The common path is straight-line; what only some handlers do (a subclass's rotation
        # methods, the queue) is one method chosen at configuration.
        prelude = self._prelude
        if prelude is None:
            render: Render = self._render
            _inside[me] = None
        else:
            found = prelude(me, record)
            if found is None:
                return
            render = found
        try:
            try:
                self._strategy.write_record(render, record)
            except Exception as exc:
                if not self._record_failed(exc, render, record):
                    return
            if self._failures.lost:
                self._failures.recover(self._write_now)
        finally:
            pending = _inside.pop(me, None)
            if pending:
                write_pending(me, pending)

    def _rare_prelude(self, me: int, record: logging.LogRecord) -> Render | None:
        """emit()'s part for a subclass that overrides shouldRollover()/doRollover() or a
        non-blocking handler: None when the record is done with (queued, or reported), else the
        render emit() writes it with, this thread marked inside safelog."""
        if self._template and not self._subclass_rotation(record):
            return None
        _inside[me] = None
        writer = self._writer
        if writer is None:
            return self._render  # not non-blocking, or closed
        done = True
        try:
            try:
                frozen = self._freeze(record, self.formatter)
            except Exception:
                self.handleError(record)
                return None
            if frozen is None:
                return None  # could not be formatted: reported
            payload, extra = frozen
            if writer.put(self._outlet, payload, extra, record.levelno >= self._flush_level, self._drop):
                return None
            # The writer has stopped (interpreter exit): emit() writes it, formatted only once.
            done = False
            if isinstance(payload, str):
                return lambda _: payload
            return self._render
        finally:
            pending = _inside.pop(me, None) if done else None
            if pending:
                write_pending(me, pending)

    def _record_failed(self, exc: Exception, render: Render, record: logging.LogRecord) -> bool:
        # Apart from emit(), so that its closure costs emit() nothing per record.
        return self._failed_write(exc, record, lambda strategy: strategy.write_record(render, record))

    def _failed_write(self, exc: Exception, record: logging.LogRecord, write: Callable[[Strategy], None]) -> bool:
        """A write raised ``exc``: count the record lost and return False, unless the strategy was
        retired by close() in another thread while the record was on its way to it (see
        ``Strategy.retire``): then ``write`` it to the handler's current strategy, reopened as logging
        after close() reopens a FileHandler, and return True."""
        for _ in range(_REWRITES):
            if not isinstance(exc, Retired):
                break
            try:
                write(self._live_strategy())
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
                self._live_strategy().write(text, created)
            except Exception as exc:
                record = logging.makeLogRecord({"msg": text})
                self._failed_write(exc, record, lambda strategy: strategy.write(text, created))

    def _write_now(self, record: logging.LogRecord) -> None:
        self._strategy.write_record(self._render, record)

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child for every handler (3.9+). A parent thread that
        # held one of these locks at fork time holds it forever in the child.
        super()._at_fork_reinit()  # type: ignore[misc]  # private, logging 3.9+
        self._strategy_lock = threading.Lock()
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
        strategy = self._strategy
        if not isinstance(strategy, ClosedStrategy) and rotates(strategy) and not later(self.reopen):
            with section():
                strategy.reopen()

    def request_reopen(self) -> None:
        """:meth:`reopen` for a signal handler: takes no lock; every thread's next record
        reopens the log first if the path names another file now."""
        strategy = self._strategy
        if not isinstance(strategy, ClosedStrategy) and rotates(strategy):
            strategy.request_reopen()

    def close(self) -> None:
        if later(self.close):
            return
        with section():
            self._close()

    def _close(self) -> None:
        if self.reopen_signal is not None:
            unwatch(self)
        writer, self._writer = self._writer, None
        if writer is not None:
            # Drain before the strategy can close: nothing queued is lost on close()/shutdown().
            detach(writer)
        with self._strategy_lock:
            strategy, self._strategy = self._strategy, ClosedStrategy(self)
            view, self._view = self._view, None
        if view is not None:
            view.close()
        if not isinstance(strategy, ClosedStrategy):
            release(strategy, self)
        logging.Handler.close(self)

    # -- logging.FileHandler ----------------------------------------------------------------

    @property  # type: ignore[override]
    def stream(self) -> StreamView | None:
        """A file object on the log, as ``FileHandler.stream``, for code that wants a real file
        (``faulthandler.enable(file=handler.stream)``) or writes to it (see :class:`StreamView`).
        None after ``close()`` and, with ``delay=True``, before the first record, as in the
        stdlib; always None for ``per-process``, whose shards are framed and have no plain file
        to hand out (code that probes ``stream``, as gunicorn does, then leaves it alone)."""
        view = self._view
        if view is None:
            strategy = self._strategy
            if isinstance(strategy, ClosedStrategy) or strategy.lazy or self.delay and not strategy.opened:
                return None
            view = self._view = self._open()
        return view

    @stream.setter
    def stream(self, value: Any) -> None:
        # What code written for FileHandler assigns: gunicorn's USR1 reopen does
        # ``handler.close(); handler.stream = handler._open()``. The strategy owns the file, so
        # only a view of ours (or None) is kept; the next record reopens the strategy.
        old, self._view = self._view, value if isinstance(value, StreamView) else None
        if old is not None and old is not value:
            old.close()

    def _open(self) -> StreamView:  # type: ignore[override]
        """A new :attr:`stream` view of the log (``FileHandler._open``)."""
        return StreamView(self)

    def setStream(self, stream: Any) -> Any:
        raise ValueError(
            f"{type(self).__name__} writes {self.baseFilename} through its strategy; "
            f"setStream() would bypass it (use logging.StreamHandler for a stream)"
        )

    def _closed_handler(self) -> bool:
        return isinstance(self._strategy, ClosedStrategy)

    def _live_strategy(self) -> Strategy:
        strategy = self._strategy
        return self._reopen() if isinstance(strategy, ClosedStrategy) else strategy


    # -- failure bursts ---------------------------------------------------------------------

    def _write_failed(self, record: logging.LogRecord, exc: BaseException) -> None:
        """Count the lost record; report only the first failure of a burst via handleError."""
        self._failures.failed(record, exc)

    def _reopen(self) -> Strategy:
        """The strategy for a record that arrived after close(), as logging.FileHandler reopens.

        A second dictConfig() (Django's LOGGING after gunicorn's logconfig_dict, a Flask app's
        config) closes every existing handler but leaves the ones on loggers it does not
        configure attached: gunicorn.access keeps a closed handler. Dropping its records would
        silently lose the access log, so a closed handler in append mode reopens, like the
        stdlib's; in mode 'w' it does not, as reopening would truncate the file again.
        """
        with self._strategy_lock:
            strategy = self._strategy
            if isinstance(strategy, ClosedStrategy):
                if self.config.file.mode == "w":
                    raise ValueError("I/O operation on closed handler")
                strategy = self._strategy = acquire(self._real, self.config, self._hooks, self)
                self._rotation = strategy.policy
            return strategy

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
