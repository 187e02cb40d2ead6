"""Every handler option, parsed once into one frozen :class:`Config`.

:func:`parse_config` is a pure function of the user's values: it opens no file and depends on
nothing but the parsers of this layer, so the configuration tests call it directly and every
conflict between the options of one handler is decided here, in one place. Conflicts between
two handlers of one path in one process are decided here too (:func:`check_compatible`); the
sink registry calls it when a second handler joins a file.
"""

from __future__ import annotations

import codecs
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from .._primitives.perms import Perms, parse_chmod, parse_owner
from .compress import Codec, parse_compress
from .options import check_bool, check_choice, check_int, check_str, parse_duration, parse_size
from .timing import TimePolicy, parse_time_policy

__all__ = [
    "Config",
    "FileOptions",
    "QueueSettings",
    "STRATEGY_NAMES",
    "OPTION_NAMES",
    "parse_config",
    "check_compatible",
    "check_size_rotates",
    "parse_level",
    "parse_mode",
    "parse_reopen_signal",
]

STRATEGY_NAMES = ("thread", "flock", "per-process")
_SIGNAL_NAMES = ("SIGHUP", "SIGUSR1", "SIGUSR2")

# Every keyword a handler accepts, in the order the unknown-option message lists them.
OPTION_NAMES = (
    "filename", "strategy", "max_bytes (maxBytes)", "backup_count (backupCount)", "mode", "encoding",
    "errors", "delay", "namer", "rotator", "lock_dir", "merge_on_exit", "escape_newlines",
    "nonblocking", "queue_size", "overflow", "flush_interval", "flush_level", "max_batch", "when",
    "interval", "utc", "atTime", "rotate_every", "compress", "retention", "chmod", "owner", "watch",
    "delay_compress", "reopen_signal",
)  # fmt: skip

# Marks an option the user did not give (None is a value some options accept).
UNSET: Any = object()


class QueueSettings(NamedTuple):
    """The options that belong to the shared writer of a file, not to one handler."""

    queue_size: int
    flush_interval: float
    max_batch: int


class FileOptions(NamedTuple):
    """The open-time options every strategy needs; the registry keys sinks by ``key()``."""

    encoding: str
    errors: str
    truncate: bool
    file_mode: int
    lock_dir: str | None
    perms: Perms | None = None

    def key(self) -> tuple[object, ...]:
        return (self.lock_dir,)


@dataclass(frozen=True)
class Config:
    """One handler's options, validated and normalised (sizes in bytes, durations in seconds)."""

    filename: str  # absolute, not resolved: baseFilename
    strategy: str
    mode: str
    encoding: str
    errors: str
    delay: bool
    max_bytes: int
    backup_count: int
    namer: Callable[[str], str] | None
    rotator: Callable[[str, str], None] | None
    lock_dir: str | None
    merge_on_exit: bool
    escape_newlines: bool
    utc: bool
    timing: TimePolicy | None
    codec: Codec | None
    max_age: float | None
    perms: Perms
    nonblocking: bool
    queue: QueueSettings | None
    overflow: str
    flush_level: int
    watch: bool
    delay_compress: bool
    reopen_signal: int | None
    # How the user spelled chmod/owner, for messages about conflicts (perms holds them parsed),
    # and mode (the handler's ``mode`` attribute, as in the stdlib).
    given: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def rotates(self) -> bool:
        """Size rotation needs somewhere to rotate to: with backupCount=0 the stdlib never rotates
        either ("if either is zero, rollover never occurs"). Time rotation names backups by
        period, so there backupCount=0 means "keep them all", as in the stdlib."""
        return self.timing is not None or (self.max_bytes > 0 and self.backup_count > 0)

    @property
    def timing_key(self) -> object:
        return _timing_key(self)

    @property
    def codec_name(self) -> str | None:
        return None if self.codec is None else self.codec.name

    @property
    def perms_key(self) -> tuple[int | None, int, int]:
        return (self.perms.chmod, self.perms.uid, self.perms.gid)

    def file_options(self) -> FileOptions:
        return FileOptions(
            encoding=self.encoding,
            errors=self.errors,
            truncate=self.mode == "w",
            file_mode=self.perms.create_mode,
            lock_dir=self.lock_dir,
            perms=self.perms if self.perms.active else None,
        )


def parse_config(
    cls_name: str,
    default_strategy: str,
    pinned: bool,
    filename: Any,
    mode: Any = "a",
    maxBytes: Any = UNSET,
    backupCount: Any = UNSET,
    encoding: Any = None,
    delay: Any = False,
    errors: Any = None,
    *,
    strategy: Any = None,
    max_bytes: Any = UNSET,
    backup_count: Any = UNSET,
    namer: Any = None,
    rotator: Any = None,
    lock_dir: Any = None,
    merge_on_exit: Any = False,
    escape_newlines: Any = False,
    nonblocking: Any = False,
    queue_size: Any = None,
    overflow: Any = None,
    flush_interval: Any = None,
    flush_level: Any = None,
    max_batch: Any = None,
    when: Any = None,
    interval: Any = 1,
    utc: Any = False,
    atTime: Any = None,
    rotate_every: Any = None,
    compress: Any = None,
    retention: Any = None,
    chmod: Any = None,
    owner: Any = None,
    watch: Any = False,
    delay_compress: Any = False,
    reopen_signal: Any = None,
    stdlib_rotating: bool = False,
    **unknown: Any,
) -> Config:
    """Validate a handler's options; ``cls_name`` is the class name used in messages,
    ``default_strategy`` its strategy, ``pinned`` whether the class fixes it,
    ``stdlib_rotating`` whether it keeps ``RotatingFileHandler``'s rule that a size limit
    without backups never rotates."""
    if unknown:
        raise TypeError(
            f"{cls_name} got unknown option(s) {', '.join(sorted(unknown))}; "
            f"valid options: {', '.join(OPTION_NAMES)}"
        )
    if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
        raise TypeError(f"filename must be a path, not {filename!r}")
    if "\0" in os.fspath(filename):
        raise ValueError(f"filename={filename!r} contains a NUL character")
    if strategy is None:
        strategy = default_strategy
    elif strategy != default_strategy and pinned:
        raise ValueError(
            f"strategy={strategy!r} conflicts with {cls_name}, which is the {default_strategy!r} "
            f"strategy; use safelog.SafeFileHandler instead"
        )
    strategy = check_choice("strategy", strategy, STRATEGY_NAMES)
    merge_on_exit = check_bool("merge_on_exit", merge_on_exit)
    if merge_on_exit and strategy != "per-process":
        raise ValueError(
            f"merge_on_exit=True needs strategy='per-process' (got {strategy!r}): "
            f"only per-process shards are merged"
        )
    size = parse_size("max_bytes", _one_of("max_bytes", max_bytes, "maxBytes", maxBytes, 0))
    count = check_int("backup_count", _one_of("backup_count", backup_count, "backupCount", backupCount, 0))
    given_mode = mode
    mode = parse_mode(mode)
    if size > 0:
        # As RotatingFileHandler: a log rotated by size is appended to, never truncated at open.
        mode = given_mode = "a"
    encoding = check_str("encoding", encoding) or "utf-8"
    # Lone surrogates or unencodable text must not cost the user a record: default to an
    # escaping error handler rather than 'strict'.
    errors = check_str("errors", errors) or "backslashreplace"
    try:
        "".encode(encoding, errors)
        codecs.lookup_error(errors)
    except LookupError as exc:
        raise ValueError(f"encoding={encoding!r} / errors={errors!r}: {exc}") from None
    if "a\n".encode(encoding) != b"a\n":
        # Each record is encoded on its own: UTF-16/32 would put a byte-order mark in front of
        # every record, and a line end that is not the byte 0x0A breaks every reader (tail,
        # grep, merge, audit) that splits records on it.
        raise ValueError(
            f"encoding={encoding!r} is not ASCII-compatible; log files are read line by line, "
            f"use an encoding such as 'utf-8'"
        )
    if namer is not None and not callable(namer):
        raise TypeError(f"namer must be callable, not {namer!r}")
    if rotator is not None and not callable(rotator):
        raise TypeError(f"rotator must be callable, not {rotator!r}")
    if lock_dir is not None and (not isinstance(lock_dir, (str, os.PathLike)) or not os.fspath(lock_dir)):
        raise TypeError(f"lock_dir must be a directory path, not {lock_dir!r}")

    nonblocking = check_bool("nonblocking", nonblocking)
    queue_options = {
        "queue_size": queue_size,
        "overflow": overflow,
        "flush_interval": flush_interval,
        "flush_level": flush_level,
        "max_batch": max_batch,
    }
    if not nonblocking and any(v is not None for v in queue_options.values()):
        given = [f"{k}={v!r}" for k, v in queue_options.items() if v is not None]
        verb = "applies" if len(given) == 1 else "apply"
        raise ValueError(
            f"{', '.join(given)} {verb} only with nonblocking=True: add nonblocking=True, or "
            f"remove {'it' if len(given) == 1 else 'them'}"
        )
    overflow = check_choice("overflow", "block" if overflow is None else overflow, ("block", "drop"))
    level = parse_level("flush_level", logging.ERROR if flush_level is None else flush_level)
    queue = QueueSettings(
        queue_size=check_int("queue_size", 10_000 if queue_size is None else queue_size, minimum=1),
        flush_interval=parse_duration("flush_interval", 0.2 if flush_interval is None else flush_interval),
        max_batch=check_int("max_batch", 1000 if max_batch is None else max_batch, minimum=1),
    )

    utc = check_bool("utc", utc)
    timing = parse_time_policy(when, interval, utc, atTime, rotate_every)
    codec = parse_compress(compress)
    delay_compress = check_bool("delay_compress", delay_compress)
    if delay_compress and codec is None:
        raise ValueError(f"delay_compress=True needs compress (got compress={compress!r})")
    max_age = None if retention is None else parse_duration("retention", retention, positive=True)
    uid, gid = parse_owner(owner)
    perms = Perms(parse_chmod(chmod), uid, gid)
    config = Config(
        filename=os.path.abspath(os.fspath(filename)),
        strategy=strategy,
        mode=mode,
        encoding=encoding,
        errors=errors,
        delay=check_bool("delay", delay),
        max_bytes=size,
        backup_count=count,
        namer=namer,
        rotator=rotator,
        lock_dir=None if lock_dir is None else os.path.abspath(os.fspath(lock_dir)),
        merge_on_exit=merge_on_exit,
        escape_newlines=check_bool("escape_newlines", escape_newlines),
        utc=utc,
        timing=timing,
        codec=codec,
        max_age=max_age,
        perms=perms,
        nonblocking=nonblocking,
        queue=queue if nonblocking else None,
        overflow=overflow,
        flush_level=level,
        watch=check_bool("watch", watch),
        delay_compress=delay_compress,
        reopen_signal=parse_reopen_signal(reopen_signal),
        given={"chmod": chmod, "owner": owner, "mode": given_mode},
    )
    spelled = f"max_bytes={max_bytes!r}" if max_bytes is not UNSET else f"maxBytes={maxBytes!r}"
    check_size_rotates(size, count, timing, stdlib_rotating, spelled)
    if not config.rotates and (codec is not None or max_age is not None):
        what = f"compress={compress!r}" if codec is not None else f"retention={retention!r}"
        raise ValueError(
            f"{what} applies to rotated backups, but this handler never rotates: give "
            f"max_bytes and backup_count, or when / rotate_every"
        )
    return config


def check_compatible(path: str, existing: list[Config], new: Config) -> None:
    """Refuse a second handler of ``path`` in this process whose options would break the first's.

    One file, one way of writing it: the handlers of a path share one sink, so another strategy,
    encoding, rotation, retention, compression, permission or mode would be silently ignored
    for one of them (a size handler beside a time handler would stop time rotation for good).
    The non-blocking writer is shared by the file's non-blocking handlers, so they must agree on
    its settings too. Options that belong to one handler (formatting, ``escape_newlines``,
    ``nonblocking`` itself, ``delay``) may differ.
    """
    for old in existing:
        differ = [(names, attrs) for names, attrs in _SHARED if [getattr(old, a) for a in attrs] != [getattr(new, a) for a in attrs]]
        if differ:
            theirs = "; ".join(_spell(old, n, a) for n, a in differ)
            mine = "; ".join(_spell(new, n, a) for n, a in differ)
            raise ValueError(
                f"filename={path!r} is already open in this process with {theirs}; another "
                f"handler asked for {mine}: the handlers of one file share its strategy, "
                f"rotation, retention, compression and permissions, so give them the same values"
            )
        if new.queue is not None and old.queue is not None and new.queue != old.queue:
            q = old.queue
            raise ValueError(
                f"{path} already has a non-blocking writer with queue_size={q.queue_size}, "
                f"flush_interval={q.flush_interval}, max_batch={q.max_batch}; every non-blocking "
                f"handler of one file shares it, so give them the same values"
            )


def _timing_key(config: Config) -> object:
    t = config.timing
    return None if t is None else (t.when, t.interval, t.utc, t.at_time, t.aligned)


# Settings the handlers of one file must share: (option names shown, Config attributes compared).
_SHARED: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("strategy", "encoding", "errors"), ("strategy", "encoding", "errors")),
    (("mode",), ("mode",)),
    (("max_bytes", "backup_count"), ("max_bytes", "backup_count")),
    (("when", "interval", "utc", "atTime"), ("timing_key",)),
    (("compress", "delay_compress"), ("codec_name", "delay_compress")),
    (("retention",), ("max_age",)),
    (("chmod", "owner"), ("perms_key",)),
)


def _spell(config: Config, names: tuple[str, ...], attrs: tuple[str, ...]) -> str:
    """The settings ``names`` of ``config`` as the user would write them."""
    if attrs == ("timing_key",):
        t = config.timing
        if t is None:
            return "no time rotation"
        at = "" if t.at_time is None else f", atTime={t.at_time.isoformat()!r}"
        grid = " (rotate_every)" if t.aligned else ""
        return f"when={t.when!r}, interval={t.interval}, utc={t.utc}{at}{grid}"
    if attrs == ("perms_key",):
        return f"chmod={config.given.get('chmod')!r}, owner={config.given.get('owner')!r}"
    return ", ".join(f"{n}={getattr(config, a)!r}" for n, a in zip(names, attrs))


def parse_reopen_signal(value: Any) -> int | None:
    """``reopen_signal``: ``"SIGHUP"``, ``"SIGUSR1"``, ``"SIGUSR2"`` (or ``"USR1"``, or a
    ``signal.Signals``); None for none. Checked at configuration: only the main thread may
    install a signal handler."""
    if value is None:
        return None
    name = value.name if isinstance(value, signal.Signals) else value
    if not isinstance(name, str):
        raise TypeError(f"reopen_signal must be a signal name such as 'SIGUSR1', not {value!r}")
    name = name.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in _SIGNAL_NAMES:
        raise ValueError(f"reopen_signal must be one of {', '.join(map(repr, _SIGNAL_NAMES))}; got {value!r}")
    signum = getattr(signal, name, None)
    if signum is None:
        raise ValueError(f"reopen_signal={value!r}: {name} does not exist on this platform")
    if threading.current_thread() is not threading.main_thread():
        raise ValueError(
            f"reopen_signal={value!r} can only be set up from the main thread (Python runs signal "
            f"handlers there); configure logging in the main thread, or call handler.reopen() "
            f"from a signal handler of your own"
        )
    return int(signum)


def check_size_rotates(size: int, count: int, timing: TimePolicy | None, stdlib_rotating: bool, spelled: str) -> None:
    """RotatingFileHandler(maxBytes=N) without backupCount never rotates, silently: the stdlib's
    rule, kept by the drop-in (``stdlib_rotating``), and a well-known trap. The other classes
    say so, at configuration and when ``maxBytes``/``backupCount`` are assigned later."""
    if size and not count and timing is None and not stdlib_rotating:
        raise ValueError(
            f"{spelled} with backup_count=0 (the default) would never rotate: no backups to keep "
            f"means no rotation, the rule of logging.handlers.RotatingFileHandler; give "
            f"backup_count, the number of backups to keep, e.g. backup_count=5"
        )


def parse_mode(value: Any) -> str:
    """``mode``: ``"a"`` (append) or ``"w"`` (truncate the file when the handler opens it), with
    the ``"b"``, ``"t"`` and ``"+"`` that ``open()`` and the stdlib handlers accept too (records
    are always encoded with ``encoding``, so ``"wb"`` means ``"w"``). Reading (``"r"``) or
    exclusive creation (``"x"``) is no mode for a log."""
    if not isinstance(value, str):
        raise TypeError(f"mode must be a string such as 'a' or 'w', not {value!r}")
    chars = set(value)
    kinds = chars & {"a", "w"}
    if len(chars) != len(value) or len(kinds) != 1 or not chars <= {"a", "w", "b", "t", "+"} or {"b", "t"} <= chars:
        raise ValueError(
            f"mode={value!r}: a log handler appends ('a') or truncates the file when it opens it "
            f"('w'), optionally with 'b', 't' or '+' as open() accepts them"
        )
    return kinds.pop()


def parse_level(option: str, value: Any) -> int:
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
    if value is not UNSET and alias_value is not UNSET and value != alias_value:
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r} disagree; give one of them")
    if value is not UNSET:
        return value
    if alias_value is not UNSET:
        return alias_value
    return default

