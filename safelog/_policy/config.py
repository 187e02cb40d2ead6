"""Every handler option, parsed once into one frozen :class:`Config` of a few sub-configs.

:data:`OPTIONS` is the one table of the options a handler accepts, with their defaults: the
handler's signature spells the same names (``tests/test_docs.py`` holds the two, and
``docs/options.md``, together), and the message for an unknown option lists them from here.

:func:`parse_config` is a pure function of the user's values: it opens no file and depends on
nothing but the parsers of this layer, so the configuration tests call it directly. Each
sub-config has a small parser of its own; every conflict between the options of one handler is
decided here. Conflicts between two handlers of one path in one process are decided here too
(:func:`check_compatible`); the strategy registry calls it when a second handler joins a file.
"""

from __future__ import annotations

import codecs
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._primitives.perms import Perms, parse_chmod, parse_owner
from .compress import Codec, parse_compress
from .options import check_bool, check_choice, check_int, check_str, parse_duration, parse_size
from .timing import TimePolicy, parse_time_policy

__all__ = [
    "Config",
    "FileConfig",
    "RotationConfig",
    "QueueConfig",
    "ReopenConfig",
    "OPTIONS",
    "STRATEGY_NAMES",
    "UNSET",
    "parse_config",
    "check_compatible",
    "check_same_hooks",
    "check_size_rotates",
    "parse_level",
    "parse_mode",
    "parse_reopen_signal",
]

STRATEGY_NAMES = ("thread", "flock", "per-process")
_SIGNAL_NAMES = ("SIGHUP", "SIGUSR1", "SIGUSR2")

# Marks an option the user did not give (None is a value some options accept).
UNSET: Any = object()

# Every keyword a handler accepts and its default, in the order of SafeFileHandler's signature.
OPTIONS: dict[str, Any] = {
    "filename": UNSET, "mode": "a", "maxBytes": UNSET, "backupCount": UNSET, "encoding": None,
    "delay": False, "errors": None, "strategy": None, "max_bytes": UNSET, "backup_count": UNSET,
    "namer": None, "rotator": None, "lock_dir": None, "merge_on_exit": False, "escape_newlines": False,
    "nonblocking": False, "queue_size": None, "overflow": None, "flush_interval": None,
    "flush_level": None, "max_batch": None, "when": None, "interval": 1, "utc": False, "atTime": None,
    "rotate_every": None, "compress": None, "delay_compress": False, "retention": None, "max_total_bytes": None,
    "chmod": None, "owner": None, "watch": False, "reopen_signal": None, "rotate_on_start": False,
}  # fmt: skip
# The stdlib's spelling beside safelog's: either may be given (the same value, if both).
ALIASES = {"maxBytes": "max_bytes", "backupCount": "backup_count"}


@dataclass(frozen=True)
class FileConfig:
    """How the log file is opened and written: shared by every handler of the path."""

    mode: str  # "a", or "w": truncated when the first handler opens it
    encoding: str
    errors: str
    perms: Perms
    lock_dir: str | None  # absolute, not resolved

    @property
    def truncate(self) -> bool:
        return self.mode == "w"

    @property
    def create_mode(self) -> int:
        """The mode a new log file is created with."""
        return self.perms.create_mode

    @property
    def set_perms(self) -> Perms | None:
        """The permissions to apply to created files; None when ``chmod``/``owner`` are not given."""
        return self.perms if self.perms.active else None


@dataclass(frozen=True)
class RotationConfig:
    """When the log rotates and what becomes of its backups: shared by every handler of the path."""

    max_bytes: int = 0
    backup_count: int = 0
    timing: TimePolicy | None = None
    utc: bool = False  # as given; timing has it too
    codec: Codec | None = None
    max_age: float | None = None  # retention, in seconds
    delay_compress: bool = False
    max_total_bytes: int = 0  # the log and its backups on disk; 0: no limit
    rotate_on_start: bool = False

    @property
    def rotates(self) -> bool:
        """Size rotation needs somewhere to rotate to: with backupCount=0 the stdlib never rotates
        either ("if either is zero, rollover never occurs"). Time rotation names backups by
        period, so there backupCount=0 means "keep them all", as in the stdlib."""
        sized = self.max_bytes > 0 or self.rotate_on_start
        return self.timing is not None or (sized and self.backup_count > 0)


@dataclass(frozen=True)
class QueueConfig:
    """``nonblocking=True``: the queue between the callers and the file's writer thread. The
    first three belong to the writer, which the file's non-blocking handlers share."""

    queue_size: int
    flush_interval: float
    max_batch: int
    overflow: str  # "block" or "drop"
    flush_level: int

    @property
    def writer(self) -> tuple[int, float, int]:
        """The settings the handlers sharing a writer must agree on."""
        return (self.queue_size, self.flush_interval, self.max_batch)


@dataclass(frozen=True)
class ReopenConfig:
    """When the log is reopened at its path besides the once-a-second check."""

    watch: bool = False  # before every record (WatchedFileHandler)
    signal: int | None = None  # reopen_signal


@dataclass(frozen=True)
class Config:
    """One handler's options, validated and normalised (sizes in bytes, durations in seconds)."""

    filename: str  # absolute, not resolved: baseFilename
    strategy: str
    file: FileConfig
    rotation: RotationConfig
    queue: QueueConfig | None  # None: synchronous
    reopen: ReopenConfig
    delay: bool
    escape_newlines: bool
    merge_on_exit: bool
    namer: Callable[[str], str] | None = None
    rotator: Callable[[str, str], None] | None = None
    # How the user spelled chmod/owner (for messages about conflicts) and mode (the handler's
    # ``mode`` attribute, as in the stdlib), which the parsed values do not keep.
    given: dict[str, Any] = field(default_factory=dict, compare=False)


def parse_config(
    cls_name: str, default_strategy: str, pinned: bool, filename: Any, /, *, stdlib_rotating: bool = False, **given: Any
) -> Config:
    """Validate a handler's options (the keywords of :data:`OPTIONS`, defaults for those left
    out); ``cls_name`` is the class name used in messages, ``default_strategy`` its strategy,
    ``pinned`` whether the class fixes it, ``stdlib_rotating`` whether it keeps
    ``RotatingFileHandler``'s rule that a size limit without backups never rotates."""
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        names = ", ".join(f"{n} ({ALIASES[n]})" if n in ALIASES else n for n in OPTIONS)
        raise TypeError(f"{cls_name} got unknown option(s) {', '.join(unknown)}; valid options: {names}")
    options = {**OPTIONS, **given}
    if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
        raise TypeError(f"filename must be a path, not {filename!r}")
    if "\0" in os.fspath(filename):
        raise ValueError(f"filename={filename!r} contains a NUL character")
    strategy = _parse_strategy(cls_name, default_strategy, pinned, options["strategy"])
    merge_on_exit = check_bool("merge_on_exit", options["merge_on_exit"])
    if merge_on_exit and strategy != "per-process":
        raise ValueError(
            f"merge_on_exit=True needs strategy='per-process' (got {strategy!r}): "
            f"only per-process shards are merged"
        )
    rotation = parse_rotation(options, stdlib_rotating)
    # As RotatingFileHandler: a log rotated by size is appended to, never truncated at open.
    appends = rotation.max_bytes > 0
    file = parse_file(options, appends)
    for hook in ("namer", "rotator"):
        if options[hook] is not None and not callable(options[hook]):
            raise TypeError(f"{hook} must be callable, not {options[hook]!r}")
    return Config(
        filename=os.path.abspath(os.fspath(filename)),
        strategy=strategy,
        file=file,
        rotation=rotation,
        queue=parse_queue(options),
        reopen=ReopenConfig(check_bool("watch", options["watch"]), parse_reopen_signal(options["reopen_signal"])),
        delay=check_bool("delay", options["delay"]),
        escape_newlines=check_bool("escape_newlines", options["escape_newlines"]),
        merge_on_exit=merge_on_exit,
        namer=options["namer"],
        rotator=options["rotator"],
        given={"chmod": options["chmod"], "owner": options["owner"], "mode": "a" if appends else options["mode"]},
    )


def _parse_strategy(cls_name: str, default: str, pinned: bool, strategy: Any) -> str:
    if strategy is None:
        strategy = default
    elif strategy != default and pinned:
        raise ValueError(
            f"strategy={strategy!r} conflicts with {cls_name}, which is the {default!r} "
            f"strategy; use safelog.SafeFileHandler instead"
        )
    return check_choice("strategy", strategy, STRATEGY_NAMES)


def parse_file(options: Mapping[str, Any], appends: bool = False) -> FileConfig:
    """``mode`` (``"a"`` whatever it says with ``appends``), ``encoding``, ``errors``, ``chmod``,
    ``owner``, ``lock_dir``."""
    mode = parse_mode(options["mode"])
    if appends:
        mode = "a"
    encoding = check_str("encoding", options["encoding"]) or "utf-8"
    # Lone surrogates or unencodable text must not cost the user a record: default to an
    # escaping error handler rather than 'strict'.
    errors = check_str("errors", options["errors"]) or "backslashreplace"
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
    lock_dir = options["lock_dir"]
    if lock_dir is not None and (not isinstance(lock_dir, (str, os.PathLike)) or not os.fspath(lock_dir)):
        raise TypeError(f"lock_dir must be a directory path, not {lock_dir!r}")
    perms = Perms(parse_chmod(options["chmod"]), *parse_owner(options["owner"]))
    lock_dir = None if lock_dir is None else os.path.abspath(os.fspath(lock_dir))
    return FileConfig(mode=mode, encoding=encoding, errors=errors, perms=perms, lock_dir=lock_dir)


def parse_rotation(options: Mapping[str, Any], stdlib_rotating: bool) -> RotationConfig:
    """``max_bytes``/``maxBytes``, ``backup_count``/``backupCount``, ``when``, ``interval``,
    ``utc``, ``atTime``, ``rotate_every``, ``compress``, ``delay_compress``, ``retention``,
    ``max_total_bytes``, ``rotate_on_start``."""
    size = parse_size("max_bytes", _one_of(options, "max_bytes", "maxBytes", 0))
    count = check_int("backup_count", _one_of(options, "backup_count", "backupCount", 0))
    utc = check_bool("utc", options["utc"])
    timing = parse_time_policy(options["when"], options["interval"], utc, options["atTime"], options["rotate_every"])
    compress = options["compress"]
    codec = parse_compress(compress)
    delay_compress = check_bool("delay_compress", options["delay_compress"])
    if delay_compress and codec is None:
        raise ValueError(f"delay_compress=True needs compress (got compress={compress!r})")
    retention = options["retention"]
    max_age = None if retention is None else parse_duration("retention", retention, positive=True)
    given = options["max_bytes"] is not UNSET
    spelled = f"max_bytes={options['max_bytes']!r}" if given else f"maxBytes={options['maxBytes']!r}"
    check_size_rotates(size, count, timing, stdlib_rotating, spelled)
    on_start = check_bool("rotate_on_start", options["rotate_on_start"])
    if on_start and timing is None and not count:
        raise ValueError(
            "rotate_on_start=True with backup_count=0 has no backup to rotate to: give backup_count "
            "(the number of backups to keep), or when / rotate_every"
        )
    total = parse_size("max_total_bytes", options["max_total_bytes"])
    _check_total_fits(total, size, options["max_total_bytes"], spelled)
    rotation = RotationConfig(size, count, timing, utc, codec, max_age, delay_compress, total, on_start)
    if not rotation.rotates and (codec is not None or max_age is not None or total):
        what = (
            f"compress={compress!r}" if codec is not None
            else f"retention={retention!r}" if max_age is not None
            else f"max_total_bytes={options['max_total_bytes']!r}"
        )  # fmt: skip
        raise ValueError(
            f"{what} applies to rotated backups, but this handler never rotates: give "
            f"max_bytes and backup_count, or when / rotate_every"
        )
    return rotation


def _check_total_fits(total: int, size: int, given: Any, spelled: str) -> None:
    """A total below one file's size would leave no backup after any rotation (the newest one
    alone is ``max_bytes``): refused rather than defined as "keep nothing"."""
    if total and size and total < size:
        raise ValueError(
            f"max_total_bytes={given!r} is less than {spelled}: the log and its backups could "
            f"never fit (one full file alone is larger); give at least {size} bytes"
        )


def parse_queue(options: Mapping[str, Any]) -> QueueConfig | None:
    """``nonblocking`` and the queue's options (refused without it)."""
    nonblocking = check_bool("nonblocking", options["nonblocking"])
    names = ("queue_size", "overflow", "flush_interval", "flush_level", "max_batch")
    if not nonblocking:
        given = [f"{k}={options[k]!r}" for k in names if options[k] is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(
                f"{', '.join(given)} {verb} only with nonblocking=True: add nonblocking=True, or "
                f"remove {'it' if len(given) == 1 else 'them'}"
            )
        return None

    def value(name: str, default: Any) -> Any:
        return default if options[name] is None else options[name]

    return QueueConfig(
        queue_size=check_int("queue_size", value("queue_size", 10_000), minimum=1),
        flush_interval=parse_duration("flush_interval", value("flush_interval", 0.2)),
        max_batch=check_int("max_batch", value("max_batch", 1000), minimum=1),
        overflow=check_choice("overflow", value("overflow", "block"), ("block", "drop")),
        flush_level=parse_level("flush_level", value("flush_level", logging.ERROR)),
    )


def check_compatible(path: str, existing: list[Config], new: Config) -> None:
    """Refuse a second handler of ``path`` in this process whose options would break the first's.

    One file, one way of writing it: the handlers of a path share one strategy object, so another strategy,
    encoding, rotation, retention, compression, permission or mode would be silently ignored
    for one of them (a size handler beside a time handler would stop time rotation for good).
    The non-blocking writer is shared by the file's non-blocking handlers, so they must agree on
    its settings too. Options that belong to one handler (formatting, ``escape_newlines``,
    ``nonblocking`` itself, ``delay``) may differ.
    """
    for old in existing:
        differ = [(names, get) for names, get in _SHARED if get(old) != get(new)]
        if differ:
            theirs = "; ".join(_spell(old, n) for n, _ in differ)
            mine = "; ".join(_spell(new, n) for n, _ in differ)
            raise ValueError(
                f"filename={path!r} is already open in this process with {theirs}; another "
                f"handler asked for {mine}: the handlers of one file share its strategy, "
                f"rotation, retention, compression and permissions, so give them the same values"
            )
        if new.queue is not None and old.queue is not None and new.queue.writer != old.queue.writer:
            q = old.queue
            raise ValueError(
                f"{path} already has a non-blocking writer with queue_size={q.queue_size}, "
                f"flush_interval={q.flush_interval}, max_batch={q.max_batch}; every non-blocking "
                f"handler of one file shares it, so give them the same values"
            )


def check_same_hooks(path: str, theirs: tuple[object, object], mine: tuple[object, object]) -> None:
    """Refuse a second handler of ``path`` whose namer or rotator (or a subclass's
    ``rotation_filename``/``rotate``) is not the first one's: the handlers of a file share one
    rotation, and two namings would make two series of backups."""
    if theirs != mine:
        raise ValueError(
            f"filename={path!r} is already open in this process with {_spell_hooks(theirs)}; another "
            f"handler asked for {_spell_hooks(mine)}: the handlers of one file share its rotation "
            f"and backup names, so give them the same namer and rotator"
        )


def _spell_hooks(hooks: tuple[object, object]) -> str:
    def spell(hook: object) -> str:
        if hook is None:
            return "None"
        func = getattr(hook, "__func__", hook)
        return str(getattr(func, "__qualname__", None) or repr(hook))

    return f"namer={spell(hooks[0])}, rotator={spell(hooks[1])}"


def _timing_key(c: Config) -> object:
    t = c.rotation.timing
    return None if t is None else (t.when, t.interval, t.utc, t.at_time, t.aligned)


# Settings the handlers of one file must share: (option names shown, how to read them).
_SHARED: tuple[tuple[tuple[str, ...], Callable[[Config], object]], ...] = (
    (("strategy", "encoding", "errors"), lambda c: (c.strategy, c.file.encoding, c.file.errors)),
    (("mode",), lambda c: c.file.mode),
    (("max_bytes", "backup_count"), lambda c: (c.rotation.max_bytes, c.rotation.backup_count)),
    (("when", "interval", "utc", "atTime"), _timing_key),
    (("compress", "delay_compress"), lambda c: (c.rotation.codec and c.rotation.codec.name, c.rotation.delay_compress)),
    (("retention",), lambda c: c.rotation.max_age),
    (("max_total_bytes",), lambda c: c.rotation.max_total_bytes),
    (("rotate_on_start",), lambda c: c.rotation.rotate_on_start),
    (("chmod", "owner"), lambda c: (c.file.perms.chmod, c.file.perms.uid, c.file.perms.gid)),
)
_VALUES: dict[str, Callable[[Config], object]] = {
    "strategy": lambda c: c.strategy,
    "encoding": lambda c: c.file.encoding,
    "errors": lambda c: c.file.errors,
    "mode": lambda c: c.file.mode,
    "max_bytes": lambda c: c.rotation.max_bytes,
    "backup_count": lambda c: c.rotation.backup_count,
    "compress": lambda c: c.rotation.codec and c.rotation.codec.name,
    "delay_compress": lambda c: c.rotation.delay_compress,
    "retention": lambda c: c.rotation.max_age,
    "max_total_bytes": lambda c: c.rotation.max_total_bytes,
    "rotate_on_start": lambda c: c.rotation.rotate_on_start,
}


def _spell(config: Config, names: tuple[str, ...]) -> str:
    """The settings ``names`` of ``config`` as the user would write them."""
    if names[0] == "when":
        t = config.rotation.timing
        if t is None:
            return "no time rotation"
        at = "" if t.at_time is None else f", atTime={t.at_time.isoformat()!r}"
        grid = " (rotate_every)" if t.aligned else ""
        return f"when={t.when!r}, interval={t.interval}, utc={t.utc}{at}{grid}"
    if names[0] == "chmod":
        return f"chmod={config.given.get('chmod')!r}, owner={config.given.get('owner')!r}"
    return ", ".join(f"{n}={_VALUES[n](config)!r}" for n in names)


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


def _one_of(options: Mapping[str, Any], name: str, alias: str, default: Any) -> Any:
    value, alias_value = options[name], options[alias]
    if value is not UNSET and alias_value is not UNSET and value != alias_value:
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r} disagree; give one of them")
    if value is not UNSET:
        return value
    if alias_value is not UNSET:
        return alias_value
    return default
