"""The rotation policy of one log, compiled once: its triggers, its backup names and the steps
after a rotation.

A :class:`RotationPolicy` is built from the rotation sub-config and the handler's hooks when the
first handler of a path opens it, and owned by that path's strategy (one per real path per
process: the handlers of a path agree on it, or are refused). The strategy keeps the triggers'
"room left" beside the open file (:attr:`RotationPolicy.limit`, :meth:`RotationPolicy.period_end`)
and asks :meth:`RotationPolicy.due` only when a record reaches it; while it holds whatever
exclusion makes it the only rotating writer, it calls :meth:`RotationPolicy.rotate` (the rename)
and :meth:`RotationPolicy.after_rotation` (retention, and queueing compression, which runs later
in a background thread outside the lock). That is what makes each rotation happen exactly once.

The decisions are in :mod:`.triggers` (when), :mod:`.naming` (which names) and :mod:`.steps`
(what follows); the files are touched through :mod:`.backups` only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from time import monotonic
from typing import Any, NamedTuple

from .._primitives.perms import Perms
from .._primitives.shard import parse_shard_name, shard_path
from . import starts
from .backups import FILES, BackupFiles
from .compress import work_names
from .config import RotationConfig
from .fingerprint import Fingerprint, fingerprint_of
from .naming import Backups, DatedNames, NumberedNames
from .steps import Compress, KeepAge, KeepCount, KeepTotal, Leftovers, Listing, Series, Step
from .triggers import SIZE, TIME, SizeTrigger, TimeTrigger

__all__ = ["RotationPolicy", "RotationHooks", "SIZE", "TIME", "RETRY_INTERVAL"]

# After a failed rotation (log directory not writable, a backup name taken by a directory),
# records go on to the current file and the rotation is retried this often: losing records
# because the file cannot be renamed would be worse than a file over its size limit.
RETRY_INTERVAL = 1.0
# RotatingFileHandler.shouldRollover() of 3.10-3.12 answers True for an empty file whose first
# record reaches maxBytes; 3.13 stopped rotating empty files (gh-116263).
_ASKS_EMPTY = sys.version_info < (3, 13)

Naming = NumberedNames | DatedNames


def _no_identity() -> tuple[object, object]:
    return (None, None)


class RotationHooks(NamedTuple):
    """What rotation needs from the handler that owns it, handed in when it is built: the
    ``logging.handlers.BaseRotatingHandler`` hooks, looked up on every use, and where to report
    a failure."""

    name: Callable[[str], str]  # rotation_filename(): the default backup name -> the real one
    move: Callable[[str, str], None]  # rotate(): move the log to its backup name
    plain: Callable[[], bool]  # True while backups have the default names (no namer set)
    report: Callable[[logging.LogRecord], None]  # handleError()
    # What names and moves the backups now (the namer and rotator, or a subclass's methods):
    # two handlers of one path must agree on them, or make two series of backups.
    identity: Callable[[], tuple[object, object]] = _no_identity


class RotationPolicy:
    """Size and/or time rotation, retention and compression of one log."""

    __slots__ = (
        "config", "hooks", "perms", "started", "files", "size", "time", "naming", "steps", "limit", "renames",
        "shards_of", "_retry_at", "_failing", "_disagreed",
    )  # fmt: skip

    def __init__(
        self,
        config: RotationConfig,
        hooks: RotationHooks,
        perms: Perms | None = None,
        started: float | None = None,
        files: BackupFiles = FILES,
        shards_of: str | None = None,
    ) -> None:
        self.hooks = hooks
        # per-process: the log whose shards this policy rotates (one each process); the steps
        # that span every shard look beyond the one being rotated.
        self.shards_of = shards_of
        self.perms = perms  # of compressed backups
        self.started = started
        self.files = files
        self._retry_at = 0.0
        self._failing = False
        self._disagreed = False
        self._compile(config)

    def _compile(self, config: RotationConfig) -> None:
        self.config = config
        timing = config.timing
        # Whether a rotation moves the log to a backup: time rotation always does (backups named
        # by period, backup_count=0 keeps them all); size rotation needs backup_count.
        self.renames = timing is not None or config.backup_count > 0
        self.time = None if timing is None else TimeTrigger(timing, self.started)
        # A size limit without backups rotates nothing, but would_rotate() still answers for it.
        self.size = SizeTrigger(config.max_bytes) if config.max_bytes and self.renames else None
        # The size at which a file is due: the strategies compare with it per record.
        self.limit: float = math.inf if self.size is None else self.size.limit
        self.naming: Naming = (
            NumberedNames(self.hooks, config.backup_count) if timing is None else DatedNames(self.hooks, timing)
        )
        steps: list[Step] = []
        if timing is not None and config.backup_count > 0:
            steps.append(KeepCount(config.backup_count))
        if config.max_age is not None:
            steps.append(KeepAge(config.max_age))
        if config.max_total_bytes:
            steps.append(KeepTotal(config.max_total_bytes))
        if config.codec is not None:
            steps.append(Compress(config.codec, config.delay_compress, self.perms))
        if steps:
            steps.insert(len(steps) - (config.codec is not None), Leftovers())
        self.steps = tuple(steps)

    @property
    def configured(self) -> bool:
        """False for a log with no rotation option at all (none until ``maxBytes`` or
        ``backupCount`` is assigned); a size limit without backups is one, for the stdlib's
        ``shouldRollover()``, though it rotates nothing."""
        config = self.config
        return config.timing is not None or config.max_bytes > 0 or config.backup_count > 0

    def hand_over(self, hooks: RotationHooks) -> None:
        """Rotate through another handler's hooks (the one that owned these was closed)."""
        self.hooks = hooks
        self._compile(self.config)

    def resize(self, max_bytes: int, backup_count: int) -> None:
        """New ``maxBytes``/``backupCount`` values, effective from the next record."""
        self._compile(dataclasses.replace(self.config, max_bytes=max_bytes, backup_count=backup_count))

    # -- per file -------------------------------------------------------------------------------

    def period_end(self, period: float | None) -> float:
        """When the file of ``period`` is due by time: infinity without time rotation,
        :data:`.triggers.UNKNOWN` while the period is not known."""
        return math.inf if self.time is None else self.time.end(period)

    def start_period(self, mtime: float | None, created: float) -> float | None:
        """The period of a file last written at ``mtime`` (None: empty or missing) that this
        process did not create by rotating, found by a record at ``created``; None without
        time rotation."""
        return None if self.time is None else self.time.start_period(mtime, created)

    # -- per record, once the strategy's cheap test passed --------------------------------------

    def due(self, size: int, nbytes: int, created: float, period_end: float = math.inf) -> int:
        """Which trigger finds a file of ``size`` bytes whose period ends at ``period_end`` due
        before a record of ``nbytes`` at ``created``: ``TIME``, ``SIZE``, or 0. After a rename
        failed, nothing is due until the retry interval has passed."""
        if self.time is not None and self.time.due(created, period_end):
            kind = TIME
        elif self.size is not None and self.size.due(size, nbytes):
            kind = SIZE
        else:
            return 0
        return kind if monotonic() >= self._retry_at else 0

    def would_rotate(self, size: int, nbytes: int, created: float, period_end: float) -> bool:
        """``shouldRollover()``: the stdlib's pure question, whether the record's time reached
        the end of the period or the record would bring the file to ``maxBytes``, whatever
        ``backupCount`` says (with 0 it is asked, and the stdlib's rotation then renames
        nothing). An empty file counts as the running interpreter's stdlib counts it (before
        3.13 it does); :meth:`due` never rotates one."""
        if created >= period_end:
            return True
        limit = self.config.max_bytes
        return bool(limit and (size > 0 or _ASKS_EMPTY) and size + nbytes >= limit)

    # -- at configuration -----------------------------------------------------------------------

    def created_names(self, target: str) -> list[tuple[str, str]]:
        """What and where the files rotating ``target`` creates are, at their longest, so that a
        name over the file system's limit fails at configuration instead of every rotation.

        Size backups go up to ``.<backup_count>``; a period's backups up to ``.9999`` with a
        size limit (``.1`` without: the repeated DST hour). With a namer, its name for that
        default name; a namer that cannot name it yet (a subclass not fully built) is not
        checked.
        """
        config = self.config
        if not self.configured:
            return []
        default = self.naming.longest(target, self.size is not None, time.time())
        try:
            backup = self.hooks.name(default)
        except Exception:
            return []
        names = [("backup", backup)]
        if config.codec is not None:
            names.append(("compressed backup", backup + config.codec.ext))
        if config.codec is not None or self.time is None or config.backup_count or config.max_age is not None:
            names += work_names(backup, config.codec)
        return names

    # -- under the strategy's exclusion ---------------------------------------------------------

    def rotate(
        self, path: str, trigger: int, size: int, period: float | None, created: float
    ) -> tuple[float | None, str] | None:
        """Move ``path`` to its backup name; return the new file's period and the backup name,
        or None when the rename failed (the caller then writes on to the current file).

        A time boundary reached by an empty file starts the new period without a backup: a
        machine that was down for a week rotates once, and only if something was written.
        Under the stdlib's rule (``when=``, no size limit) a time rotation whose backup name
        exists already starts the new period without renaming, as the stdlib does since 3.13:
        the file goes on into the next period and is named after that one. (With a size limit
        a period has numbered parts anyway, and the next number is taken.) The backup name is
        empty then, as for an empty file.
        """
        new_period = period
        if trigger == TIME and self.time is not None:
            new_period = self.time.following(created)
        if size == 0:
            return new_period, ""
        try:
            with self._across_shards():
                dest = self._make_room(path, trigger, period, created)
                if dest is None:
                    return new_period, ""
                self.hooks.move(path, dest)
        except OSError:
            self._failed(path)
            return None
        self._failing = False
        return new_period, dest

    def _make_room(self, path: str, trigger: int, period: float | None, created: float) -> str | None:
        """The backup name for the file now at ``path``, after the renames that free it."""
        naming = self.naming
        now = created if self.time is None else self.time.timing.now(created)
        # The stdlib's rule skips a rotation whose backup exists; a size limit numbers the parts.
        dated_only = self.time is not None and not self.time.timing.aligned and self.size is None
        numbered = not (trigger == TIME and dated_only)
        backups = self.listing(path)[0] if naming.lists(numbered) else {}
        dest, moves = naming.next(path, period, now, backups, self.files.exists, numbered)
        for source, target in moves:
            if target:
                self.files.replace(source, target)
            else:
                self.files.trash(source)
        return dest

    def _failed(self, path: str) -> None:
        self._retry_at = monotonic() + RETRY_INTERVAL
        if not self._failing:
            self._failing = True
            # One report per failure burst, with the traceback of this error; the record that
            # found the file due is still written, to the current file.
            self.report("safelog: cannot rotate %s; writing on to it, retrying every %.0f s", path, RETRY_INTERVAL)

    def report(self, msg: str, *args: Any) -> None:
        """Report a failure through the handler's ``handleError`` (from an ``except`` block: it
        shows the error being handled)."""
        self.hooks.report(
            logging.makeLogRecord(
                {"name": "safelog", "levelno": logging.ERROR, "levelname": "ERROR", "msg": msg, "args": args}
            )
        )

    def after_rotation(self, path: str, now: float, guard: Callable[[], AbstractContextManager[Any]]) -> None:
        """The steps that follow a rotation (retention, cleanup, queueing compression), in order.

        Runs once per rotation, in the rotating process, under its exclusion, so two processes
        never delete concurrently. Failures are reported and do not fail the record.
        """
        if not self.steps:
            return
        try:
            with self._across_shards():
                self._run_steps(path, now, guard)
        except OSError:
            # The rotation itself is done and stays done (the stdlib, too, has rotated when its
            # os.remove fails); report, keep the record, and try again at the next rotation.
            self.report("safelog: cannot remove old backups of %s; retrying at the next rotation", path)

    def _run_steps(self, path: str, now: float, guard: Callable[[], AbstractContextManager[Any]]) -> None:
        try:
            backups, tmps = self.listing(path)
        except OSError as exc:
            _report_listing(path, exc)
            return
        listing = Listing(path, now, backups, tmps, guard, lambda src, key: self.locate(path, src, key))
        if self._sharded():
            listing.others = lambda: self._other_shards(path)
            # A compression's last renames change a shard's backups too: under the same lock.
            listing.guard = lambda: _both(guard, self._across_shards)
        for step in self.steps:
            step.run(listing, self.files)

    def _sharded(self) -> bool:
        """Whether a step spans every shard of the log: then every change to any shard's
        backups (a rotation's renames, the steps, a compression's renames) happens under one
        lock file beside the log, taken at rotation only (writers take no lock)."""
        return self.shards_of is not None and self.config.max_total_bytes > 0

    def _across_shards(self) -> AbstractContextManager[Any]:
        if not self._sharded():
            return nullcontext()
        assert self.shards_of is not None
        return self.files.exclusive(shards_lock_path(self.shards_of), self.perms)

    def _other_shards(self, own: str) -> list[Series]:
        """The log's other shards (a dead process's too) and their backups. A shard is known by
        any of its files: between its rotation's rename and the reopen, only its backups exist."""
        assert self.shards_of is not None
        directory, log = os.path.split(self.shards_of)
        shards = set()
        for entry in os.listdir(directory or "."):
            found = parse_shard_name(log, entry)
            if found is not None:
                shards.add(shard_path(self.shards_of, int(found["pid"] or 0), found["host"]))
        shards.discard(own)
        return [(shard, self.listing(shard)[0]) for shard in sorted(shards)]

    def files_to_delete(self, path: str) -> list[str]:
        """``TimedRotatingFileHandler.getFilesToDelete()``: the backups of ``path`` that retention
        by ``backup_count`` removes at the next rotation, oldest first."""
        backups, _ = self.listing(path)
        keep = [s for s in self.steps if isinstance(s, KeepCount)]
        doomed = keep[0].select(backups) if keep else set()
        return [f for k in sorted(doomed) for f in sorted(backups[k])]

    # -- agreeing with the other processes -----------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        """This policy as the processes writing the log must agree on it (the hooks as they are
        now: a namer assigned after construction counts)."""
        return fingerprint_of(self.config, self.hooks.identity())

    def join(self, path: str, records: Sequence[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        """At this process's first write, under the log's exclusion, given the records other
        processes left beside the log (oldest first): whether to rotate now (``rotate_on_start``:
        the first write of a new start), and what to record for the others (empty: nothing).

        The policy in force is the last one recorded. One that differs from this process's is
        reported once per process, naming both, and this process records its own: each process
        rotates by its own settings (a rolling deploy is never stopped by its log settings),
        and the newest one recorded is what the next process to start is compared with.
        """
        note: dict[str, Any] = {}
        rotate = False
        if self.config.rotate_on_start:
            who = starts.identity()
            token, rotate, record = starts.decide(records, who)
            if record:
                note.update(start=token, parent=who.parent, member=who.me)
        note.update(self.agree(path, records))
        return rotate, note

    def agree(self, path: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Compare this process's policy with the last one among ``records`` (oldest first): warn
        once per process if they differ, and return the record to append (empty when they agree:
        processes that agree do not make the records grow)."""
        note: dict[str, Any] = {}
        mine = self.fingerprint()
        policies = [r for r in records if isinstance(r.get("policy"), str) and isinstance(r.get("settings"), dict)]
        theirs = policies[-1] if policies else None
        if theirs is None or theirs["policy"] != mine.digest:
            note.update(policy=mine.digest, settings=mine.settings)
            if theirs is not None:
                self._disagree(path, mine, Fingerprint(theirs["policy"], theirs["settings"]), theirs)
        return note

    def _disagree(self, path: str, mine: Fingerprint, theirs: Fingerprint, record: dict[str, Any]) -> None:
        if self._disagreed:
            return
        self._disagreed = True
        ours, others = mine.differences(theirs)
        who = f"pid {record.get('pid', '?')} on {record.get('host', '?')}"
        text = (
            f"safelog: {path} is written with another rotation policy: this process has {ours}, {who} "
            f"recorded {others}; each process rotates by its own settings until they agree (this "
            f"process's policy is now the one recorded)"
        )
        # A warning, not handleError(): there is no exception to show, and the record is fine.
        # Under -W error it would raise into emit(): it goes to stderr instead.
        try:
            warnings.warn(text, RuntimeWarning, stacklevel=2)
        except Exception:
            if sys.stderr:
                sys.stderr.write(f"--- {text}\n")

    # -- recognising our own backups ------------------------------------------------------------

    def listing(self, path: str) -> tuple[Backups, list[str]]:
        """This log's backups, keyed so that sorting the keys orders them oldest first, and the
        temp files of their compression."""
        directory = os.path.dirname(self.hooks.name(f"{path}.1")) or "."
        return self.files.listing(path, directory, self.naming.key_of(path))

    def locate(self, path: str, src: str, key: tuple[int, int]) -> str | None:
        """Where the backup of ``path`` first named ``src`` (inode ``key``) is now: size
        rotations in other processes shift names. Called under the log's exclusion."""
        for c in self._candidates(path, src):
            if self.files.identity(c) == key:
                return c
        return None

    def _candidates(self, path: str, src: str) -> Iterator[str]:
        yield src
        yield from self.naming.candidates(path, src, lambda: self.listing(path)[0])


def policy_record_path(log: str) -> str:
    """Where the processes writing the per-process log ``log`` record their rotation policy
    (see ``PerProcessStrategy``); ``flock`` records it in its lock file."""
    directory, name = os.path.split(log)
    return os.path.join(directory, f".{name}.policy")


def shards_lock_path(log: str) -> str:
    """The lock file of the steps that span every shard of the per-process log ``log``."""
    directory, name = os.path.split(log)
    return os.path.join(directory, f".{name}.shards.lock")


@contextmanager
def _both(
    first: Callable[[], AbstractContextManager[Any]], second: Callable[[], AbstractContextManager[Any]]
) -> Iterator[None]:
    with first(), second():
        yield


def _report_listing(path: str, exc: BaseException) -> None:
    if logging.raiseExceptions and sys.stderr:
        sys.stderr.write(f"--- safelog: retention could not list the backups of {path}: {type(exc).__name__}: {exc}\n")
