"""Rotation policy, parsed once: when a file is due, how backups are named, which ones to keep.

The policy is a value built in the handler's constructor. A strategy asks :meth:`Rollover.due`
per record (two comparisons, no parsing, no syscall), and while it holds whatever exclusion
makes it the only rotating writer, calls :meth:`Rollover.rollover` (the rename) and
:meth:`Rollover.after_rollover` (retention, and queueing compression, which runs later in a
background thread outside the lock). That is what makes each rotation happen exactly once.

Backup names, as in ``logging.handlers``:

* size only: ``app.log.1`` (newest) … ``app.log.N`` (oldest), shifted on every rotation;
* time (with or without a size limit): ``app.log.<period>`` with the stdlib suffix of ``when``
  (``app.log.2026-11-26_18`` hourly, ``app.log.2026-11-26`` daily), named after the period the
  file covered. A second backup of the same period (the size limit was reached, or the hour
  repeated when DST ends) gets ``.1``, ``.2`` … in time order: a new backup always takes the
  number after the highest of its period, so name order is age order. A backup is never
  overwritten.

Compressed backups add the codec's extension (``app.log.1.gz``); the ``namer`` hook names every
backup, and retention only ever considers names this policy (with that namer) produces.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sys
import time
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, NamedTuple

from . import compress as _compress
from .compress import DEL_SUFFIX, EXTENSIONS, TMP_SUFFIX, Codec, work_names
from .._primitives.fileio import open_input
from .._primitives.lock import LOCK_EX, try_lock
from .timing import ANY_STAMP, TimePolicy

if TYPE_CHECKING:
    from .._primitives.perms import Perms

__all__ = ["Rollover", "RotationHooks", "SIZE", "TIME", "backup_name", "work_file"]

SIZE = 1
TIME = 2
_FORMS = ("",) + EXTENSIONS
# Names are matched whole (fullmatch), never with "$", which also matches before a trailing
# line break: a stray "app.log.2\n" would pass for backup 2, and rotation would fail on it forever.
_TMP_RE = re.compile(
    r"\.(?P<name>.+?)(?:" + "|".join(map(re.escape, EXTENSIONS)) + r")\.(?:(?P<ino>[0-9a-f]+)-)?[0-9a-f]{12}"
    + re.escape(TMP_SUFFIX)
)
_DEL_RE = re.compile(r"\.(?P<name>.+?)\.[0-9a-f]{12}" + re.escape(DEL_SUFFIX))

# After a failed rotation (log directory not writable, a backup name taken by a directory),
# records go on to the current file and the rotation is retried this often: losing records
# because the file cannot be renamed would be worse than a file over its size limit.
RETRY_INTERVAL = 1.0
# RotatingFileHandler.shouldRollover() of 3.10-3.12 answers True for an empty file whose first
# record reaches maxBytes; 3.13 stopped rotating empty files (gh-116263).
_ASKS_EMPTY = sys.version_info < (3, 13)
# Names tried for a time backup beyond the one the directory listing gives (bounds the search
# when a namer maps several default names to one existing name).
_NAME_ATTEMPTS = 100


class RotationHooks(NamedTuple):
    """What rotation needs from the handler that owns it, handed in when it is built: the
    ``logging.handlers.BaseRotatingHandler`` hooks, and where to report a failure."""

    name: Callable[[str], str]  # rotation_filename(): the default backup name -> the real one
    move: Callable[[str, str], None]  # rotate(): move the log to its backup name
    plain: Callable[[], bool]  # True while backups have the default names (no namer set)
    report: Callable[[logging.LogRecord], None]  # handleError()


class Rollover:
    """Size and/or time rotation, retention and compression of one handler's log."""

    __slots__ = (
        "max_bytes", "limit", "backup_count", "timing", "codec", "max_age", "perms", "delay_compress", "_hooks",
        "_retry_at", "_failing", "started",
    )

    def __init__(
        self,
        hooks: RotationHooks,
        max_bytes: int,
        backup_count: int,
        timing: TimePolicy | None = None,
        codec: Codec | None = None,
        max_age: float | None = None,
        perms: Perms | None = None,
        delay_compress: bool = False,
        started: float | None = None,
    ) -> None:
        self.timing = timing
        # When the handler was built: the stdlib works out its first boundary then, from the
        # clock when the log is new or empty (delay=True included), not at the first record.
        self.started = started
        # limit: the size limit as given (maxBytes); max_bytes: the one rotation acts on.
        self.max_bytes = self.limit = self.backup_count = 0
        self.resize(max_bytes, backup_count)
        self.codec = codec
        self.max_age = max_age
        self.perms = perms
        self.delay_compress = delay_compress
        self._hooks = hooks
        self._retry_at = 0.0
        self._failing = False

    # -- per record -----------------------------------------------------------------------------

    def due(self, size: int, nbytes: int, created: float, rollover_at: float = math.inf) -> int:
        """``TIME`` when the record's time reached the end of the file's period, ``SIZE`` when
        appending ``nbytes`` to a file of ``size`` bytes would bring it to the limit or past it
        (``RotatingFileHandler``'s ``pos + len(msg) >= maxBytes``), else 0.

        An empty file is never due for size (the stdlib's rule since 3.13, gh-116263, followed
        on every version), so a single record larger than the limit is written whole instead of
        producing an endless series of empty files.
        """
        if created >= rollover_at and self.timing is not None and self.timing.now(created) >= rollover_at:
            kind = TIME
        elif self.max_bytes and size > 0 and size + nbytes >= self.max_bytes:
            kind = SIZE
        else:
            return 0
        return kind if monotonic() >= self._retry_at else 0

    def would_rotate(self, size: int, nbytes: int, created: float, rollover_at: float) -> bool:
        """``shouldRollover()``: the stdlib's pure question, whether the record's time reached
        the end of the period or the record would bring the file to ``limit``, whatever
        ``backup_count`` says (with 0 it is asked, and the stdlib's rotation then renames
        nothing). An empty file counts as the running interpreter's stdlib counts it (before
        3.13 it does); :meth:`due` never rotates one."""
        if created >= rollover_at:
            return True
        return bool(self.limit and (size > 0 or _ASKS_EMPTY) and size + nbytes >= self.limit)

    def resize(self, max_bytes: int, backup_count: int) -> None:
        """New ``maxBytes``/``backupCount`` values, effective from the next record. ``max_bytes``
        (what the strategies compare with) is 0 when size rotation cannot rename anything: a
        size limit without backups only answers :meth:`would_rotate`, as in the stdlib."""
        self.limit = max_bytes
        self.backup_count = backup_count
        self.max_bytes = max_bytes if self.renames else 0

    @property
    def renames(self) -> bool:
        """Whether a rotation moves the log to a backup: time rotation always does (backups named
        by period, ``backup_count=0`` keeps them all); size rotation needs ``backup_count``."""
        return self.timing is not None or self.backup_count > 0

    # -- periods --------------------------------------------------------------------------------

    def first_period(self, fd: int, size: int, created: float) -> float | None:
        """The period of a file this process did not create by rotating, at its first record
        (``created``): an existing file belongs to the period of its last write (its mtime, as
        the stdlib reads it at start-up), an empty one to the period that starts now."""
        return self.start_period(os.fstat(fd).st_mtime if size > 0 else None, created)

    def start_period(self, mtime: float | None, created: float) -> float | None:
        """The period of a log last written at ``mtime`` (None: empty or missing), found by a
        record at ``created``: what :meth:`first_period` works out from an open file."""
        timing = self.timing
        if timing is None:
            return None
        now = timing.now(created)
        if not timing.aligned and self.started is not None:
            now = min(now, self.started)
        return timing.first(now, mtime)

    def boundary(self, period: float | None) -> float:
        """When the file of ``period`` is due (infinity without time rotation)."""
        if self.timing is None or period is None:
            return math.inf
        return self.timing.end(period)

    # -- at configuration -----------------------------------------------------------------------

    def created_names(self, target: str) -> list[tuple[str, str]]:
        """What and where the files rotating ``target`` creates are, at their longest, so that a
        name over the file system's limit fails at configuration instead of every rotation.

        Size backups go up to ``.<backup_count>``; a period's backups up to ``.9999`` with a
        size limit (``.1`` without: the repeated DST hour). With a namer, its name for that
        default name; a namer that cannot name it yet (a subclass not fully built) is not
        checked.
        """
        if self.timing is None:
            default = f"{target}.{self.backup_count}"
        else:
            now = time.time()
            stamp = self.timing.stamp(self.timing.first(now, None), now)
            default = f"{target}.{stamp}.{9999 if self.max_bytes else 1}"
        try:
            backup = self._hooks.name(default)
        except Exception:
            return []
        names = [("backup", backup)]
        if self.codec is not None:
            names.append(("compressed backup", backup + self.codec.ext))
        if self.codec is not None or self.timing is None or self.backup_count or self.max_age is not None:
            names += work_names(backup, self.codec)
        return names

    # -- under the strategy's exclusion ---------------------------------------------------------

    def rollover(
        self, path: str, kind: int, size: int, period: float | None, created: float
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
        timing = self.timing
        new_period = period
        if kind == TIME and timing is not None:
            new_period = timing.following(timing.now(created))
        if size == 0:
            return new_period, ""
        h = self._hooks
        try:
            if timing is None:
                dest = self._shift(path)
            else:
                assert period is not None
                skip = kind == TIME and not timing.aligned and not self.max_bytes
                found = self._free_name(path, period, timing.now(created), numbered=not skip)
                if found is None:
                    return new_period, ""
                dest = found
            h.move(path, dest)
        except OSError:
            self._retry_at = monotonic() + RETRY_INTERVAL
            if not self._failing:
                self._failing = True
                # One report per failure burst, with the traceback of this error; the record
                # that found the file due is still written, to the current file.
                h.report(
                    logging.makeLogRecord(
                        {"name": "safelog", "levelno": logging.ERROR, "levelname": "ERROR",
                         "msg": "safelog: cannot rotate %s; writing on to it, retrying every %.0f s",
                         "args": (path, RETRY_INTERVAL)}
                    )
                )  # fmt: skip
            return None
        self._failing = False
        return new_period, dest

    def _name(self, path: str, i: int) -> str:
        return self._hooks.name(f"{path}.{i}")

    def _shift(self, path: str) -> str:
        """``path.1 … path.N-1`` → ``path.2 … path.N`` (with their compressed forms).

        Only the backups that exist are touched (one directory listing), so a large
        ``backup_count`` costs nothing per rotation.
        """
        n = self.backup_count
        first = self._name(path, 1)
        backups, _ = self.list_backups(path)
        for key in sorted(backups):  # (-i,): the highest number first
            i = -key[0]
            src = self._name(path, i)
            # Each file is the backup's name, or that name with a compression extension.
            for ext in (f[len(src) :] for f in backups[key]):
                if i >= n:
                    _compress.trash(src + ext)
                else:
                    # os.replace overwrites atomically: no moment where the older backup is
                    # gone and the newer one not yet in place.
                    os.replace(src + ext, self._name(path, i + 1) + ext)
        return first

    def _free_name(self, path: str, period: float, now: float, numbered: bool = True) -> str | None:
        """The backup name of the file of ``period`` rotated at ``now``: ``path.<stamp>``, or the
        number after the highest one of that period that exists (``.1``, ``.2`` ...); None when
        ``path.<stamp>`` exists and not ``numbered``.

        Never a lower number than an existing backup of the period, even when retention removed
        the ones below it: then name order is age order, and retention, which keeps the last
        ``backup_count`` names of that order, keeps the newest backups. (Taking the lowest free
        number made a new backup sort as the oldest, and retention delete it at once.)
        """
        assert self.timing is not None
        stamp = self.timing.stamp(period, now)
        stem = f"{path}.{stamp}"
        if not numbered:
            dest = self._hooks.name(stem)
            return None if any(os.path.lexists(dest + ext) for ext in _FORMS) else dest
        backups, _ = self.list_backups(path)
        key = self.timing.sort_key(stamp)
        numbers = [n for s, n in backups if s == key]
        n = max(numbers) + 1 if numbers else 0
        for _ in range(_NAME_ATTEMPTS):
            dest = self._hooks.name(stem if n == 0 else f"{stem}.{n}")
            if not any(os.path.lexists(dest + ext) for ext in _FORMS):
                return dest
            n += 1  # a name the listing did not count as ours (a namer that maps two to one)
        raise FileExistsError(errno.EEXIST, f"no free backup name after {_NAME_ATTEMPTS} tries", stem)

    def after_rollover(self, path: str, now: float, guard: Callable[[], ContextManager[Any]]) -> None:
        """Retention, then queue the uncompressed backups for compression (in the background).

        Runs once per rotation, in the rotating process, under its exclusion, so two processes
        never delete concurrently. Failures are reported and do not fail the record.
        """
        if not (self.codec is not None or self.max_age is not None or (self.timing and self.backup_count)):
            return
        try:
            backups, tmps = self.list_backups(path)
        except OSError as exc:
            _report(path, exc)
            return
        doomed = self._surplus(backups)
        if self.max_age is not None:
            limit = now - self.max_age
            for k, files in backups.items():
                try:
                    if max(os.stat(f).st_mtime for f in files) < limit:
                        doomed.add(k)
                except OSError:
                    pass
        try:
            for k in sorted(doomed):
                for f in backups.pop(k):
                    _compress.trash(f)
        except OSError:
            # The rotation itself is done and stays done (the stdlib, too, has rotated when its
            # os.remove fails); report, keep the record, and try again at the next rotation.
            self._hooks.report(
                logging.makeLogRecord(
                    {"name": "safelog", "levelno": logging.ERROR, "levelname": "ERROR",
                     "msg": "safelog: cannot remove old backups of %s; retrying at the next rotation",
                     "args": (path,)}
                )
            )  # fmt: skip
            return
        busy = set()
        for t in tmps:
            if t.endswith(DEL_SUFFIX):
                _compress.discard(t)
            elif _temp_is_live(t):
                m = _TMP_RE.fullmatch(os.path.basename(t))
                if m and m.group("ino"):
                    busy.add(int(m.group("ino"), 16))
        if self.codec is None:
            return

        def locate(src: str, key: tuple[int, int]) -> str | None:
            return self.locate(path, src, key)

        if self.delay_compress and backups:
            # The backup this rotation made stays plain until the next one: a shipper that
            # follows the renamed file by its inode has a whole rotation to read it to the end.
            del backups[max(backups)]
        for files in backups.values():
            for f in files:
                if f.endswith(EXTENSIONS):
                    continue
                # The new backup, or one a dead process left uncompressed. One that a live
                # process (maybe another one) is compressing right now is left to it.
                try:
                    if os.stat(f).st_ino in busy:
                        continue
                except OSError:
                    continue
                _compress.submit(f, self.codec, locate, guard, self.perms, _compress.report_error)

    def _surplus(self, backups: dict[tuple[Any, ...], list[str]]) -> set[tuple[Any, ...]]:
        """The keys of the oldest time backups beyond ``backup_count`` (size rotation never has
        more than ``backup_count``: shifting drops the oldest)."""
        if self.timing is None or self.backup_count <= 0:
            return set()
        return set(sorted(backups)[: -self.backup_count])

    def files_to_delete(self, path: str) -> list[str]:
        """``TimedRotatingFileHandler.getFilesToDelete()``: the backups of ``path`` that retention
        by ``backup_count`` removes at the next rotation, oldest first."""
        backups, _ = self.list_backups(path)
        return [f for k in sorted(self._surplus(backups)) for f in sorted(backups[k])]

    # -- recognising our own backups ------------------------------------------------------------

    def list_backups(self, path: str) -> tuple[dict[tuple[Any, ...], list[str]], list[str]]:
        """This log's backups, keyed so that sorting the keys orders them oldest first, and the
        temp files of their compression. Nothing else in the directory can match."""
        sample = self._name(path, 1)
        directory = os.path.dirname(sample) or "."
        backups: dict[tuple[Any, ...], list[str]] = {}
        tmps = []
        key_of = self._key_function(path)
        for entry in os.listdir(directory):
            full = os.path.join(directory, entry)
            if entry.startswith("."):
                # Leftovers of a process that died half-way: a compression temp file, or a
                # backup renamed away to be unlinked (see _compress.trash).
                m = _TMP_RE.fullmatch(entry) or _DEL_RE.fullmatch(entry)
                if m and _recognise(key_of, os.path.join(directory, m.group("name"))) is not None:
                    tmps.append(full)
                continue
            key = _recognise(key_of, full)
            if key is not None:
                backups.setdefault(key, []).append(full)
        return backups, tmps

    def _key_function(self, path: str) -> Callable[[str], tuple[Any, ...] | None]:
        h = self._hooks
        if self.timing is None:
            # Size backups: exactly the names .1 … .N (through the namer).
            n = self.backup_count
            if h.plain():
                srx = re.compile(re.escape(path) + r"\.([1-9]\d*)")

                def size_key(p: str) -> tuple[Any, ...] | None:
                    m = srx.fullmatch(p)
                    return (-int(m.group(1)),) if m and int(m.group(1)) <= n else None

                return size_key
            digits = re.compile(r"\d+")

            def size_key_named(p: str) -> tuple[Any, ...] | None:
                # A name is ours if the namer turns one of our default names into exactly it.
                # Only the numbers written in the name are tried (the default name has its
                # number in decimal, and a namer keeps it), so the namer is asked about the
                # files that exist, not about every number up to backup_count: with 10**6 that
                # cost 0.65 s per rotation, under the lock.
                for m in digits.finditer(os.path.basename(p)):
                    i = int(m.group())
                    if 1 <= i <= n and self._name(path, i) == p:
                        return (-i,)
                return None

            return size_key_named
        stamp = self.timing.stamp_re
        order = self.timing.sort_key
        if h.plain():
            rx = re.compile(re.escape(path) + r"\.(" + stamp + r")(?:\.(\d+))?")

            def key(p: str) -> tuple[Any, ...] | None:
                m = rx.fullmatch(p)
                return None if m is None else (order(m.group(1)), int(m.group(2) or 0))

            return key
        srx = re.compile(stamp)

        def key_named(p: str) -> tuple[Any, ...] | None:
            # With a namer the stamp can sit anywhere: accept a name only if the namer turns
            # one of our own default names into exactly it.
            for m in srx.finditer(os.path.basename(p)):
                stem = f"{path}.{m.group(0)}"
                if h.name(stem) == p:
                    return (order(m.group(0)), 0)
                for n in re.findall(r"\d+", os.path.basename(p)[m.end() :]):
                    if h.name(f"{stem}.{int(n)}") == p:
                        return (order(m.group(0)), int(n))
            return None

        return key_named

    def locate(self, path: str, src: str, key: tuple[int, int]) -> str | None:
        """Where the backup of ``path`` first named ``src`` (inode ``key``) is now: size
        rotations in other processes shift names. Called under the log's exclusion."""
        for c in self._candidates(path, src):
            try:
                st = os.stat(c)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key:
                return c
        return None

    def _candidates(self, path: str, src: str) -> Iterator[str]:
        yield src
        if self.timing is None:
            # Shifts only ever move a backup to a higher number. The uncompressed backups that
            # exist, from one listing: probing every number up to backup_count cost a stat (and
            # with a namer a call) each.
            key = self._key_function(path)(src)
            start = -key[0] + 1 if key else 1
            backups, _ = self.list_backups(path)
            found = sorted(
                (-k[0], f) for k, files in backups.items() if -k[0] >= start for f in files if not _split_ext(f)[1]
            )
            for _, full in found:
                yield full


def backup_name(logname: str, filename: str) -> tuple[tuple[Any, ...], str] | None:
    """``(age key, compression extension)`` when ``filename`` is a backup of the log ``logname``
    (base names) under the default names of *some* size or time policy, else None.

    For readers that do not know the policy (``safelog follow``, ``safelog doctor``). Keys sort
    oldest first: size backups ``.N`` … ``.1``, then time backups by stamp and number. A namer's
    names are not recognised."""
    if not filename.startswith(logname + "."):
        return None
    plain, ext = _split_ext(filename)
    m = _ANY_BACKUP_RE.fullmatch(plain, len(logname) + 1)
    if m is None:
        return None
    if m.group("size"):
        return (0, -int(m.group("size"))), ext
    return (1, m.group("stamp"), int(m.group("n") or 0)), ext


def work_file(entry: str) -> tuple[str, str] | None:
    """``("compression", name)`` for a temp file that ``name`` is being compressed into,
    ``("trash", name)`` for a backup renamed away to be unlinked (see ``compress.trash``), else
    None; ``name`` is the base name of the file it belongs to (without its codec extension)."""
    m = _TMP_RE.fullmatch(entry)
    if m is not None:
        return "compression", _split_ext(m.group("name"))[0]
    m = _DEL_RE.fullmatch(entry)
    if m is not None:
        return "trash", _split_ext(m.group("name"))[0]
    return None


_ANY_BACKUP_RE = re.compile(r"(?P<size>[1-9]\d*)|(?P<stamp>" + ANY_STAMP + r")(?:\.(?P<n>[1-9]\d*))?")


def _recognise(key_of: Callable[[str], tuple[Any, ...] | None], name: str) -> tuple[Any, ...] | None:
    """The key of a backup's file ``name``: a backup's name, or one compressed by safelog (the
    name and a codec's extension). The name itself is tried second, for a namer whose names end
    in such an extension (the stdlib docs' namer appending ``.gz`` for a compressing rotator)."""
    plain, ext = _split_ext(name)
    key = key_of(plain)
    if key is None and ext:
        key = key_of(name)
    return key


def _split_ext(name: str) -> tuple[str, str]:
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def _temp_is_live(path: str) -> bool:
    """True when a live process is writing this compression temp file (it holds its lock);
    otherwise its writer died: remove it."""
    try:
        # A temp name another user filled is not ours: neither live nor removed.
        fd, _ = open_input(path)
    except OSError:
        return False
    try:
        if not try_lock(fd, LOCK_EX):
            return True
        os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def _report(path: str, exc: BaseException) -> None:
    import logging

    if logging.raiseExceptions and sys.stderr:
        sys.stderr.write(f"--- safelog: retention could not list the backups of {path}: {type(exc).__name__}: {exc}\n")
