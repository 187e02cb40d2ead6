"""``safelog follow``: print a log's records as they are written, like ``tail -F`` but exact.

Which log
    A ``per-process`` log (shards beside the log path, or a merge journal there) is followed
    as the live merge of all its shards (``_merge.live``): records come out as ``safelog
    merge`` writes them, in time order after a lag. Any other log (``thread``, ``flock``, the
    stdlib's handlers) is followed by its lines, file by file.

A plain log, across rotations
    The file being read is held open. When the path names another file, the held one was
    renamed (or removed) under the writers' exclusion, so nobody appends to it any more: it is
    read to its end, then the backups made since are found, newest first, back to the one last
    read (by inode while it is held, by size and first 4 KiB once only a compressed copy of it
    is left), read oldest first (compressed ones decoded), and the new file is taken up from
    its start. Backups are recognised by the default names of any size or time policy
    (``naming.backup_name``); a namer's names are not. Lines appended to the previous file
    after its rename (a writer of another kind that reopens late) are still printed, as long
    as it is the last file read. A partial last line waits for its line end; a file found
    shorter than what was read (truncated in place) is read again from its start.

Where it starts
    ``lines`` records (or lines) before the end, or the first record of time ``since`` or
    later (a plain log: the first line whose leading timestamp, ISO 8601 or logging's
    ``asctime``, local time unless it says otherwise, is that late; files are skipped by their
    modification time).

How it ends
    ``control.wait`` answers STOP (Ctrl-C, or the reader of the output went away: the command
    exits quietly with status 0) or DRAIN (SIGTERM: print everything complete, whatever the
    live merge's lag, then exit).
"""

from __future__ import annotations

import calendar
import datetime
import errno
import hashlib
import os
import re
import select
import signal
import stat
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from ._merge.discovery import Decoded, discover
from ._merge.follow import DRAIN, STOP, Control
from ._merge.journal import STATE_SUFFIX
from ._merge.live import LiveMerge, write_spans
from ._merge.output import write_all
from ._merge.report import MergeReport, Problem
from ._policy.naming import backup_name
from ._policy.options import parse_duration
from ._primitives.codec import DECODE_ERRORS
from ._primitives.fileio import READ, close_quietly
from ._primitives.shard import time_key

__all__ = ["follow", "Signals", "parse_since", "FollowError", "more_descriptors"]

# How much of a plain file names it once it is compressed (with its size).
_PREFIX = 4096
_CHUNK = 1 << 20
# -n of "everything there is".
_ALL = sys.maxsize
# Walks of the backups that found the names moving under them before giving up for this look.
_WALKS = 20
# A leading timestamp: ISO 8601 or logging's asctime ("2026-12-07 10:00:00,123").
_STAMP_RE = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,6})\d*)?\s?(Z|[+-]\d\d:?\d\d)?"
)


class FollowError(Exception):
    """The log cannot be followed (no such directory, not a regular file)."""


def follow(
    logfile: str,
    out: int,
    control: Control,
    *,
    lines: int = 10,
    since: float | None = None,
    lag: float = 0.5,
    interval: float = 0.1,
    err: IO[str] | None = None,
) -> int:
    """Follow ``logfile``, writing its records to the descriptor ``out`` until ``control``
    says stop. Returns 1 when damaged input was reported (on ``err``), else 0."""
    log = os.path.abspath(logfile)
    directory, name = os.path.split(log)
    if not os.path.isdir(directory):
        raise FollowError(f"no such directory: {directory}")
    problems = _Problems(err if err is not None else sys.stderr)
    more_descriptors()
    while True:
        # Nothing written yet: the first file to appear says which kind of log it is, and
        # everything in it is new.
        chains, _ = discover(directory, name)
        if chains or os.path.exists(log + STATE_SUFFIX):
            return _follow_shards(directory, name, out, control, lines, since, lag, interval, problems)
        try:
            st = os.stat(log)
        except FileNotFoundError:
            if control.wait(interval) is not None:
                return problems.status
            lines, since = _ALL, None
            continue
        if not stat.S_ISREG(st.st_mode):
            raise FollowError(f"{log} is not a regular file")
        break
    tail = PlainTail(log, out, problems)
    try:
        tail.start(lines, since)
        while True:
            command = control.wait(interval)
            if command == STOP:
                break
            tail.poll()
            if command == DRAIN:
                break
    finally:
        tail.close()
    return problems.status


class _Problems:
    """Reports problems on stderr as they are found, each once."""

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.status = 0

    def report(self, problem: Problem | str, warning: bool = False) -> None:
        if not warning:
            self.status = 1
        self.err.write(f"safelog follow: {'warning: ' if warning else ''}{problem}\n")
        self.err.flush()

    def take(self, report: MergeReport) -> None:
        for p in report.problems:
            self.report(p)
        for w in report.warnings:
            self.report(w, warning=True)
        report.problems.clear()
        report.warnings.clear()


# -- per-process --------------------------------------------------------------------------------


def _follow_shards(
    directory: str,
    name: str,
    out: int,
    control: Control,
    lines: int,
    since: float | None,
    lag: float,
    interval: float,
    problems: _Problems,
) -> int:
    live = LiveMerge(directory, name, lag)
    report = MergeReport(os.path.join(directory, name))
    command: str | None = None
    try:
        live.refresh()
        if since is not None:
            live.start_since(time_key(since))
        elif lines != _ALL:
            live.start_last(lines)
        while True:
            spans = live.plan(time.time(), drain=command == DRAIN)
            try:
                write_spans(spans, out, report, alive=lambda: control.wait(0) != STOP)
            except OSError as exc:
                if is_broken_pipe(exc) or control.wait(0) != STOP:
                    raise
                break  # Ctrl-C in the middle of a long catch-up
            finally:
                problems.take(report)
                problems.take(live.report)
            live.emitted(spans)
            if command is not None:
                break
            command = control.wait(interval)
            if command == STOP:
                break
            if command == DRAIN:
                live.settle()
            else:
                live.refresh()
    finally:
        live.close()
    return problems.status


# -- a plain log --------------------------------------------------------------------------------


class _Read:
    """A file being read: its descriptor, how far, and what names it once it is compressed."""

    def __init__(self, fd: int, ext: str, path: str) -> None:
        self.fd = fd
        self.ext = ext
        self.path = path
        st = os.fstat(fd)
        self.ino = (st.st_dev, st.st_ino)
        self.pos = 0  # bytes read (decoded)
        self.partial = b""  # an incomplete last line
        self.prefix = b""  # the first _PREFIX bytes
        self.data = Decoded(fd, ext)

    def close(self) -> None:
        self.data.close()
        close_quietly(self.fd)

    def identity(self) -> tuple[int, str]:
        return self.pos, hashlib.blake2b(self.prefix, digest_size=16).hexdigest()


class PlainTail:
    """Follows a log written in place and rotated by renaming (see the module docstring)."""

    def __init__(self, path: str, out: int, problems: _Problems) -> None:
        self.path = path
        self.directory, self.name = os.path.split(path)
        self.out = out
        self.problems = problems
        self.cur: _Read | None = None
        self.last: _Read | None = None  # the file read before cur: held, watched for late lines
        self.history: deque[tuple[int, str]] = deque(maxlen=256)

    # -- start ----------------------------------------------------------------------------------

    def start(self, lines: int, since: float | None) -> None:
        """Print the chosen past, then follow from the end of the newest file."""
        files = self._snapshot()
        if files is None:
            return
        current, backups = files
        everything = backups + ([current] if current is not None else [])
        if since is not None:
            at, offset = _since_position(everything, since)
        else:
            at, offset = _last_lines_position(everything, lines)
        for i, f in enumerate(everything):
            if i < at:
                if f is backups[-1]:
                    # The newest backup names where the next walk stops (older ones are behind it).
                    _skip_to_end(f)
                    self._finished(f, emit=False)
                elif f is not current:
                    f.close()
                continue
            if i == at:
                f.pos = offset
                _prime_prefix(f)
            self._drain(f)
            if f is not current:
                self._finished(f)
        self.cur = current

    # -- looking again --------------------------------------------------------------------------

    def poll(self) -> None:  # noqa: C901 - not split yet (see docs/architecture.md, what is left)
        if self.cur is not None:
            self._drain(self.cur)
        if self.last is not None:
            self._late_lines()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        cur = self.cur
        if cur is not None and st is not None and (st.st_dev, st.st_ino) == cur.ino:
            if st.st_size < cur.pos:
                self.problems.report(f"{self.path}: truncated in place; reading it again from its start", True)
                cur.pos, cur.partial = 0, b""
                self._drain(cur)
            return
        if cur is not None:
            # Renamed (or removed): nobody appends to it any more; read it to its end.
            self._drain(cur)
            self._finished(cur)
            self.cur = None
        if st is None:
            return
        files = self._snapshot()
        if files is None:
            return
        current, backups = files
        unread: list[_Read] = []
        for f in reversed(backups):  # newest first, back to the last file read
            if self._known(f):
                break
            unread.append(f)
        for f in backups:
            if f not in unread:
                f.close()
        for f in reversed(unread):
            self._drain(f)
            self._finished(f)
        self.cur = current
        if current is not None:
            self._drain(current)

    def _known(self, f: _Read) -> bool:
        if self.last is not None and f.ino == self.last.ino:
            return True
        size = _decoded_size_if(f, lambda n: any(n == s for s, _ in self.history))
        if size < 0:
            return False
        prefix = _read_at(f, 0, _PREFIX)
        return (size, hashlib.blake2b(prefix, digest_size=16).hexdigest()) in self.history

    def _snapshot(self) -> tuple[_Read | None, list[_Read]] | None:
        """The current file and the backups, oldest first, all opened; names verified after
        opening, so that a rotation during the listing is not misread. None if the names kept
        moving.

        The directory is listed again after the opening, names with inodes: a rotation between
        the listing and the opening of the current file would otherwise go unseen (the file
        the listing had at the path is then a backup under a name the listing lacks, and the
        path names the newer file), and that file would never be read."""
        for _ in range(_WALKS):
            listed = self._listing()
            named: list[tuple[Any, str, str]] = []
            for entry, _ino in listed:
                parsed = backup_name(self.name, entry)
                if parsed is not None:
                    named.append((parsed[0], entry, parsed[1]))
            named.sort(key=lambda n: (n[0], n[2] != ""))  # the plain form of a twin first
            opened: list[_Read] = []
            keys: set[Any] = set()
            ok = True
            for key, entry, ext in named:
                if key in keys:
                    continue  # the compressed twin of a plain backup: the same lines
                f = _open(os.path.join(self.directory, entry), ext)
                if f is None:
                    ok = False
                    break
                keys.add(key)
                opened.append(f)
            current = _open(self.path, "") if ok else None
            if ok and os.path.lexists(self.path) and current is None:
                ok = False
            if (
                ok
                and all(_still(f) for f in opened)
                and (current is None or _still(current))
                and self._listing() == listed
            ):
                return current, opened
            for f in opened + ([current] if current is not None else []):
                f.close()
        self.problems.report(f"{self.path}: its backups kept moving while being listed; trying again", True)
        return None

    def _listing(self) -> set[tuple[str, int]]:
        """(name, inode) of the log and its backups, from one listing (no stat)."""
        with os.scandir(self.directory) as entries:
            return {
                (e.name, e.inode())
                for e in entries
                if e.name == self.name or backup_name(self.name, e.name) is not None
            }

    # -- reading --------------------------------------------------------------------------------

    def _drain(self, f: _Read) -> None:
        """Print the complete lines of ``f`` from where it was read to."""
        while True:
            data = _advance(f)
            if not data:
                return
            data = f.partial + data
            end = data.rfind(b"\n") + 1
            f.partial = data[end:]
            if end:
                write_all(self.out, memoryview(data)[:end])

    def _finished(self, f: _Read, emit: bool = True) -> None:
        """``f`` is read to its end and nobody writes it any more."""
        if f.partial and emit:
            self.problems.report(f"{f.path}: its last line has no line end (a write cut short)", True)
            write_all(self.out, f.partial + b"\n")
        f.partial = b""
        self.history.append(f.identity())
        if self.last is not None:
            self.last.close()
        self.last = f

    def _late_lines(self) -> None:
        last = self.last
        assert last is not None
        if not last.ext and os.fstat(last.fd).st_size > last.pos:
            self.problems.report(f"{last.path}: lines appended after it was rotated", True)
            self._drain(last)
            self.history.append(last.identity())

    def close(self) -> None:
        for f in (self.cur, self.last):
            if f is not None:
                f.close()


def _open(path: str, ext: str) -> _Read | None:
    try:
        fd = os.open(path, READ)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FollowError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return _Read(fd, ext, path)


def _still(f: _Read) -> bool:
    try:
        st = os.stat(f.path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == f.ino


def _read_at(f: _Read, offset: int, n: int) -> bytes:
    try:
        return f.data.read_at(offset, n)
    except DECODE_ERRORS as exc:
        raise FollowError(f"{f.path}: cannot read: {exc}") from None


def _decoded_size_if(f: _Read, plausible: Callable[[int], bool]) -> int:
    """The decoded size of ``f``, or -1 when it is certainly none that ``plausible`` accepts."""
    if not f.ext:
        size = os.fstat(f.fd).st_size
        return size if plausible(size) else -1
    if f.ext == ".gz":
        # The gzip trailer holds the size modulo 2**32: enough to rule most out unread.
        tail = os.pread(f.fd, 4, max(os.fstat(f.fd).st_size - 4, 0))
        if len(tail) == 4 and not any(plausible(s) for s in _candidates(int.from_bytes(tail, "little"))):
            return -1
    size = 0
    while True:
        data = _read_at(f, size, _CHUNK)
        if not data:
            break
        size += len(data)
    return size if plausible(size) else -1


def _candidates(low: int) -> list[int]:
    return [low + (k << 32) for k in range(16)]


def _skip_to_end(f: _Read) -> None:
    if not f.ext:
        f.pos = os.fstat(f.fd).st_size
        f.prefix = _read_at(f, 0, _PREFIX)
        return
    while _advance(f):
        pass


def _advance(f: _Read) -> bytes:
    """The next chunk of ``f`` (b"" at its end); ``pos`` and ``prefix`` move past it."""
    data = _read_at(f, f.pos, _CHUNK)
    if len(f.prefix) < _PREFIX:
        f.prefix += data[: _PREFIX - len(f.prefix)]
    f.pos += len(data)
    return data


def _prime_prefix(f: _Read) -> None:
    f.prefix = _read_at(f, 0, min(_PREFIX, f.pos)) if f.pos else b""


def _last_lines_position(files: list[_Read], n: int) -> tuple[int, int]:
    """(file index, offset) where the last ``n`` complete lines start (a partial last line
    of the newest file is not one of them)."""
    if not files:
        return 0, 0
    need = n
    for i in range(len(files) - 1, -1, -1):
        f = files[i]
        if f.ext:
            data = _read_all(f)
            size = len(data)
        else:
            size = os.fstat(f.fd).st_size
            data = b""
        end = size
        if i == len(files) - 1:
            tail = data[-1:] if f.ext else os.pread(f.fd, 1, max(size - 1, 0))
            if tail != b"\n" and size:
                # The partial last line is not one of the n.
                end = _last_newline(f, data, size) + 1
        pos = end
        while need > 0 and pos > 0:
            j = _last_newline(f, data, pos - 1)  # the line end before the line ending at pos
            pos = j + 1
            need -= 1
        if need <= 0:
            return i, pos
    return 0, 0


def _last_newline(f: _Read, data: bytes, before: int) -> int:
    """The offset of the last line end before ``before`` (-1 if none)."""
    if f.ext:
        return data.rfind(b"\n", 0, before)
    pos = before
    while pos > 0:
        lo = max(pos - _CHUNK, 0)
        chunk = os.pread(f.fd, pos - lo, lo)
        j = chunk.rfind(b"\n")
        if j >= 0:
            return lo + j
        pos = lo
    return -1


def _read_all(f: _Read) -> bytes:
    parts: list[bytes] = []
    pos = 0
    while True:
        data = _read_at(f, pos, _CHUNK)
        if not data:
            return b"".join(parts)
        parts.append(data)
        pos += len(data)


def _since_position(files: list[_Read], since: float) -> tuple[int, int]:
    """(file index, offset) of the first line stamped ``since`` or later; files last written
    before ``since`` are skipped whole."""
    for i, f in enumerate(files):
        if os.fstat(f.fd).st_mtime < since and i < len(files) - 1:
            continue
        pos = 0
        while True:
            data = _read_at(f, pos, _CHUNK)
            if not data:
                break
            end = data.rfind(b"\n") + 1 or len(data)
            start = 0
            while start < end:
                nl = data.find(b"\n", start, end)
                line_end = nl + 1 if nl >= 0 else end
                t = _line_time(data[start:line_end])
                if t is not None and t >= since:
                    return i, pos + start
                start = line_end
            pos += end
        if i == len(files) - 1:
            return i, pos
    return len(files), 0


def _line_time(line: bytes) -> float | None:
    m = _STAMP_RE.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = int((m.group(7) or b"0").ljust(6, b"0")) / 1_000_000
    zone = m.group(8)
    try:
        if zone is None:
            return time.mktime((y, mo, d, h, mi, s, 0, 0, -1)) + frac
        base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac
    except (OverflowError, ValueError):
        return None
    if zone == b"Z":
        return base
    sign = -1 if zone[:1] == b"-" else 1
    digits = zone[1:].replace(b":", b"")
    return base - sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


# -- --since ------------------------------------------------------------------------------------


def parse_since(value: str, now: float | None = None) -> float:
    """``--since``: a moment (ISO 8601, ``2026-12-07 10:00``, local time unless it has ``Z`` or
    an offset) or a duration before now (``10 min``, ``2h``, ``1 day``). Raises ValueError."""
    now = time.time() if now is None else now
    text = value.strip()
    try:
        return now - parse_duration("--since", text)
    except (ValueError, TypeError):
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since must be a time such as '2026-12-07T10:00', '2026-12-07 10:00:00Z' or a "
            f"duration such as '10 min'; got {value!r}"
        ) from None
    return moment.timestamp()


# -- signals and the reader of the output -------------------------------------------------------


class Signals:
    """A :class:`Control` for the command line: SIGINT stops at once, SIGTERM drains then
    stops, and a closed output (the reader of a pipe went away) stops. The wait wakes on a
    signal at once (``signal.set_wakeup_fd``); the handlers are restored by :meth:`close`."""

    def __init__(self, out: int | None = None) -> None:
        self.out = out
        self.command: str | None = None
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._old: list[tuple[int, Any]] = []
        self._old_wakeup = signal.set_wakeup_fd(self._w)
        for signum, command in ((signal.SIGINT, STOP), (signal.SIGTERM, DRAIN)):
            self._old.append((signum, signal.signal(signum, self._handler(command))))
        self._poll = select.poll()
        self._poll.register(self._r, select.POLLIN)
        if out is not None:
            self._poll.register(out, 0)  # POLLERR/POLLHUP are reported whatever the mask

    def _handler(self, command: str) -> Callable[[int, Any], None]:
        def handle(signum: int, frame: Any) -> None:
            if self.command != STOP:
                self.command = command

        return handle

    def wait(self, seconds: float) -> str | None:
        if self.command is None:
            for fd, events in self._poll.poll(max(seconds, 0) * 1000):
                if fd == self._r:
                    try:
                        os.read(self._r, 512)
                    except BlockingIOError:
                        pass
                elif events & (select.POLLERR | select.POLLHUP):
                    self.command = STOP
        return self.command

    def close(self) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        for signum, old in self._old:
            signal.signal(signum, old)
        os.close(self._r)
        os.close(self._w)


def more_descriptors() -> None:
    """A live merge holds every shard file of the log open: raise this process's limit on open
    descriptors to its hard limit (a directory of a thousand shards passes the usual 1,024)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 16
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - no resource module, or refused
        pass


def quiet_broken_pipe(out: int) -> None:
    """After the reader of ``out`` went away: point it at /dev/null, so that the interpreter's
    last flush at exit does not fail (and print a traceback)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, out)
    finally:
        os.close(null)


def is_broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)
