"""Backup names: which names a rotation gives, and which files in the directory are a log's backups.

Two schemes, as in ``logging.handlers``:

* :class:`NumberedNames` (size only): ``app.log.1`` (newest) … ``app.log.N`` (oldest), shifted on
  every rotation;
* :class:`DatedNames` (time, with or without a size limit): ``app.log.<period>`` with the stdlib
  suffix of ``when`` (``app.log.2026-11-26_18`` hourly, ``app.log.2026-11-26`` daily), named after
  the period the file covered. A second backup of the same period (the size limit was reached,
  or the hour repeated when DST ends) gets ``.1``, ``.2`` … in time order: a new backup always
  takes the number after the highest of its period, so name order is age order. A backup is
  never overwritten.

Compressed backups add the codec's extension (``app.log.1.gz``); the handler's ``namer`` names
every backup (through :class:`Hooks`), and only names a scheme (with that namer) produces are
recognised. Both schemes decide from a directory listing they are given and an ``exists``
question they may ask: they touch no file (:mod:`.backups` does).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from .._primitives.atomic import TMP_SUFFIX
from .._primitives.codec import EXTENSIONS
from .compress import DEL_SUFFIX
from .timing import ANY_STAMP, TimePolicy

__all__ = [
    "Hooks",
    "Backups",
    "Key",
    "NumberedNames",
    "DatedNames",
    "backup_name",
    "work_file",
    "split_ext",
    "DEL_SUFFIX",
    "FORMS",
]

# A backup's name, and that name with each codec's extension.
FORMS = ("",) + EXTENSIONS
# Names are matched whole (fullmatch), never with "$", which also matches before a trailing
# line break: a stray "app.log.2\n" would pass for backup 2, and rotation would fail on it forever.
TMP_RE = re.compile(
    r"\.(?P<name>.+?)(?:" + "|".join(map(re.escape, EXTENSIONS)) + r")\.(?:(?P<ino>[0-9a-f]+)-)?[0-9a-f]{12}"
    + re.escape(TMP_SUFFIX)
)
DEL_RE = re.compile(r"\.(?P<name>.+?)\.[0-9a-f]{12}" + re.escape(DEL_SUFFIX))
# Names tried for a time backup beyond the one the directory listing gives (bounds the search
# when a namer maps several default names to one existing name).
NAME_ATTEMPTS = 100

Key = tuple[Any, ...]
# A log's backups: age key (sorting the keys orders them oldest first) -> the backup's files
# (the name, and its compressed forms).
Backups = dict[Key, list[str]]


class Hooks(Protocol):
    """The part of :class:`.rotation.RotationHooks` naming needs."""

    @property
    def name(self) -> Callable[[str], str]: ...

    @property
    def plain(self) -> Callable[[], bool]: ...


class NumberedNames:
    """``app.log.1`` … ``app.log.<count>``: size rotation's backups."""

    __slots__ = ("count", "_hooks")

    def __init__(self, hooks: Hooks, count: int) -> None:
        self.count = count
        self._hooks = hooks

    def name(self, path: str, i: int) -> str:
        return self._hooks.name(f"{path}.{i}")

    def longest(self, path: str, numbered: bool, now: float) -> str:
        """The longest default name this scheme gives (for the name-length check)."""
        return f"{path}.{self.count}"

    def lists(self, numbered: bool) -> bool:
        """Whether :meth:`next` needs the listing of the backups."""
        return True

    def next(
        self,
        path: str,
        period: float | None,
        now: float,
        backups: Backups,
        exists: Callable[[str], bool],
        numbered: bool,
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """The new backup's name and the renames that make room for it (see :meth:`shift`)."""
        return self.shift(path, backups)

    def shift(self, path: str, backups: Backups) -> tuple[str, list[tuple[str, str]]]:
        """The renames that make room for a new ``.1``: ``.1 … .N-1`` → ``.2 … .N`` (with their
        compressed forms), highest first; a rename to ``""`` removes that file (``.N``, and
        anything beyond). Returns ``.1``'s name and the renames, from the backups that exist:
        a large ``count`` costs nothing per rotation."""
        moves = []
        for key in sorted(backups):  # (-i,): the highest number first
            i = -key[0]
            src = self.name(path, i)
            # Each file is the backup's name, or that name with a compression extension.
            for ext in (f[len(src) :] for f in backups[key]):
                moves.append((src + ext, "" if i >= self.count else self.name(path, i + 1) + ext))
        return self.name(path, 1), moves

    def key_of(self, path: str) -> Callable[[str], Key | None]:
        """The age key of a file name that is one of this log's backups, else None."""
        n = self.count
        if self._hooks.plain():
            rx = re.compile(re.escape(path) + r"\.([1-9]\d*)")

            def plain_key(p: str) -> Key | None:
                m = rx.fullmatch(p)
                return (-int(m.group(1)),) if m and int(m.group(1)) <= n else None

            return plain_key
        digits = re.compile(r"\d+")

        def named_key(p: str) -> Key | None:
            # A name is ours if the namer turns one of our default names into exactly it. Only
            # the numbers written in the name are tried (the default name has its number in
            # decimal, and a namer keeps it), so the namer is asked about the files that exist,
            # not about every number up to count: with 10**6 that cost 0.65 s per rotation,
            # under the lock.
            for m in digits.finditer(os.path.basename(p)):
                i = int(m.group())
                if 1 <= i <= n and self.name(path, i) == p:
                    return (-i,)
            return None

        return named_key

    def candidates(self, path: str, src: str, listing: Callable[[], Backups]) -> Iterator[str]:
        """Where a backup first named ``src`` may be now, besides ``src``: shifts only ever move
        a backup to a higher number. The uncompressed backups that exist (from one listing:
        probing every number up to count cost a stat, and with a namer a call, each)."""
        key = self.key_of(path)(src)
        start = -key[0] + 1 if key else 1
        backups = listing()
        found = sorted(
            (-k[0], f) for k, files in backups.items() if -k[0] >= start for f in files if not split_ext(f)[1]
        )
        for _, full in found:
            yield full


class DatedNames:
    """``app.log.<stamp>[.N]``: time rotation's backups, named after the period they cover."""

    __slots__ = ("timing", "_hooks")

    def __init__(self, hooks: Hooks, timing: TimePolicy) -> None:
        self.timing = timing
        self._hooks = hooks

    def longest(self, path: str, numbered: bool, now: float) -> str:
        """The longest default name: a period's backups go up to ``.9999`` when numbered (a size
        limit), ``.1`` when not (the repeated DST hour)."""
        stamp = self.timing.stamp(self.timing.first(now, None), now)
        return f"{path}.{stamp}.{9999 if numbered else 1}"

    def lists(self, numbered: bool) -> bool:
        """Whether :meth:`next` needs the listing of the backups."""
        return numbered

    def next(
        self,
        path: str,
        period: float | None,
        now: float,
        backups: Backups,
        exists: Callable[[str], bool],
        numbered: bool,
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """The new backup's name (see :meth:`choose`); a dated backup moves no other."""
        assert period is not None
        return self.choose(path, period, now, backups, exists, numbered), []

    def choose(
        self, path: str, period: float, now: float, backups: Backups, exists: Callable[[str], bool], numbered: bool
    ) -> str | None:
        """The backup name of the file of ``period`` rotated at ``now``: ``path.<stamp>``, or the
        number after the highest one of that period in ``backups`` (``.1``, ``.2`` ...); None
        when ``path.<stamp>`` exists and not ``numbered``.

        Never a lower number than an existing backup of the period, even when retention removed
        the ones below it: then name order is age order, and retention, which keeps the last
        ``backup_count`` names of that order, keeps the newest backups. (Taking the lowest free
        number made a new backup sort as the oldest, and retention delete it at once.)
        """
        stamp = self.timing.stamp(period, now)
        stem = f"{path}.{stamp}"
        if not numbered:
            dest = self._hooks.name(stem)
            return None if exists(dest) else dest
        key = self.timing.sort_key(stamp)
        numbers = [n for s, n in backups if s == key]
        n = max(numbers) + 1 if numbers else 0
        for _ in range(NAME_ATTEMPTS):
            dest = self._hooks.name(stem if n == 0 else f"{stem}.{n}")
            if not exists(dest):
                return dest
            n += 1  # a name the listing did not count as ours (a namer that maps two to one)
        raise FileExistsError(errno.EEXIST, f"no free backup name after {NAME_ATTEMPTS} tries", stem)

    def key_of(self, path: str) -> Callable[[str], Key | None]:
        """The age key of a file name that is one of this log's backups, else None."""
        stamp = self.timing.stamp_re
        order = self.timing.sort_key
        h = self._hooks
        if h.plain():
            rx = re.compile(re.escape(path) + r"\.(" + stamp + r")(?:\.(\d+))?")

            def plain_key(p: str) -> Key | None:
                m = rx.fullmatch(p)
                return None if m is None else (order(m.group(1)), int(m.group(2) or 0))

            return plain_key
        srx = re.compile(stamp)

        def named_key(p: str) -> Key | None:
            # With a namer the stamp can sit anywhere: accept a name only if the namer turns
            # one of our own default names into exactly it.
            base = os.path.basename(p)
            for m in srx.finditer(base):
                stem = f"{path}.{m.group(0)}"
                if h.name(stem) == p:
                    return (order(m.group(0)), 0)
                for n in re.findall(r"\d+", base[m.end() :]):
                    if h.name(f"{stem}.{int(n)}") == p:
                        return (order(m.group(0)), int(n))
            return None

        return named_key

    def candidates(self, path: str, src: str, listing: Callable[[], Backups]) -> Iterator[str]:
        """A dated backup keeps its name until it is compressed or removed."""
        return iter(())


def recognise(key_of: Callable[[str], Key | None], name: str) -> Key | None:
    """The key of a backup's file ``name``: a backup's name, or one compressed by safelog (the
    name and a codec's extension). The name itself is tried second, for a namer whose names end
    in such an extension (the stdlib docs' namer appending ``.gz`` for a compressing rotator)."""
    plain, ext = split_ext(name)
    key = key_of(plain)
    if key is None and ext:
        key = key_of(name)
    return key


def split_ext(name: str) -> tuple[str, str]:
    """``(name without a codec's extension, the extension)``."""
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


class Leftover(NamedTuple):
    """A hidden file rotation left beside the log: a compression temp file, or a backup renamed
    away to be unlinked (``.del``)."""

    what: str  # "compression" or "trash"
    name: str  # the base name of the file it belongs to (compressed, for a temp file)
    inode: int | None  # a temp file's source inode, when its name carries one


def leftover(entry: str) -> Leftover | None:
    """What the hidden directory entry ``entry`` is, if rotation made it."""
    m = TMP_RE.fullmatch(entry)
    if m is not None:
        ino = m.group("ino")
        return Leftover("compression", m.group("name"), None if ino is None else int(ino, 16))
    m = DEL_RE.fullmatch(entry)
    if m is not None:
        return Leftover("trash", m.group("name"), None)
    return None


_ANY_BACKUP_RE = re.compile(r"(?P<size>[1-9]\d*)|(?P<stamp>" + ANY_STAMP + r")(?:\.(?P<n>[1-9]\d*))?")


def backup_name(logname: str, filename: str) -> tuple[Key, str] | None:
    """``(age key, compression extension)`` when ``filename`` is a backup of the log ``logname``
    (base names) under the default names of *some* size or time policy, else None.

    For readers that do not know the policy (``safelog follow``, ``safelog doctor``). Keys sort
    oldest first: size backups ``.N`` … ``.1``, then time backups by stamp and number. A namer's
    names are not recognised."""
    if not filename.startswith(logname + "."):
        return None
    plain, ext = split_ext(filename)
    m = _ANY_BACKUP_RE.fullmatch(plain, len(logname) + 1)
    if m is None:
        return None
    if m.group("size"):
        return (0, -int(m.group("size"))), ext
    return (1, m.group("stamp"), int(m.group("n") or 0)), ext


def work_file(entry: str) -> tuple[str, str] | None:
    """``("compression", name)`` for a temp file that ``name`` is being compressed into,
    ``("trash", name)`` for a backup renamed away to be unlinked (see ``Compressor.trash``), else
    None; ``name`` is the base name of the file it belongs to (without its codec extension)."""
    found = leftover(entry)
    return None if found is None else (found.what, split_ext(found.name)[0])
