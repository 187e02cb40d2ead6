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

import datetime
import errno
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ._merge.discovery import discover
from ._merge.follow import DRAIN, STOP, Control
from ._merge.journal import STATE_SUFFIX
from ._merge.live import LiveMerge
from ._merge.output import write_spans
from ._merge.report import MergeReport
from ._policy.options import parse_duration
from ._primitives.shard import time_key
from ._tail import ALL, FollowError, PlainTail, Problems

__all__ = ["follow", "Signals", "parse_since", "FollowError", "more_descriptors"]


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
    problems = Problems(err if err is not None else sys.stderr)
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
            lines, since = ALL, None
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
    problems: Problems,
) -> int:
    live = LiveMerge(directory, name, lag)
    report = MergeReport(os.path.join(directory, name))
    command: str | None = None
    try:
        live.refresh()
        if since is not None:
            live.start_since(time_key(since))
        elif lines != ALL:
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
