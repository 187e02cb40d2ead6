"""The lock file of a ``flock`` log: the exclusive lock, the rotation counter and periods, and the
pool of descriptors the fast path takes shared locks on.

The lock file holds the rotation state of the log. Its size is the rotation counter: every
rotation appends one line. With time rotation the line is the key of the period of the new
current file (seconds since the epoch: the start of a grid period, or rolloverAt - interval
under the stdlib's rule), so every process, including one started late or restarted, learns
from the last line when the file is due, and the first writer past that rotates; the others see
the counter move, reopen, read the new period and find nothing due. A machine that was down for
days rotates once: the new period is the one of the record that found the file due. Under the
stdlib's rule the boundaries depend on when the period began (the first process to record it
decides), not on the clock alone: the lock file is what makes every process rotate at the same
instant.

Lines starting with ``#`` are records, not rotations: a JSON object per line, written by a
process at its first write when the others must learn something from it (its rotation policy's
fingerprint when it differs from the last one recorded, the start it belongs to with
``rotate_on_start``). Each is followed by the current period line again, so the last line is
always the period of the current file (an older release reads the lock file the same way) and
the counter moves, which makes every writer reopen the same file once: harmless. Only the last
``NOTES_WINDOW`` bytes are read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._primitives.fileio import ATTEMPTS, LOCKFILE_REOPEN, Place, close_quietly, gave_up, open_lockfile
from .._primitives.lock import LOCK_EX, LOCK_UN, flock, hold, release
from .._primitives.perms import Perms
from .._primitives.procid import host, process_key
from .strategy import Retired

__all__ = ["LockFile", "lock_path_for", "note_line", "read_notes"]

# How much of the lock file's end is read for the records of other processes (at a process's
# first write only): a year of hourly rotations takes about 100 kB.
NOTES_WINDOW = 1 << 20
# The readable part of a lock file's name in lock_dir, in bytes (the end of the log's path).
_LOCK_NAME_ROOM = 200


def lock_path_for(path: str, lock_dir: str | None) -> str:
    """``app.log`` → ``app.log.lock`` beside it, or in ``lock_dir`` when the log's own directory
    must stay clean (or is not writable for lock files).

    In ``lock_dir`` the name is the log's whole path with its separators as ``_`` (cut from the
    left to fit a file name), then a hash of the whole path: ``var_log_app_app.log.<16 hex>.lock``.
    The flattened path alone is not enough: ``/x/a_b/app.log`` and ``/x/a/b_app.log`` would
    share one lock file, and two logs sharing a lock mix their rotation records.
    """
    if lock_dir is None:
        return path + ".lock"
    raw = os.fsencode(path)
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
    flat = raw.strip(b"/\\").replace(b"/", b"_").replace(b"\\", b"_").replace(b":", b"_")
    return os.path.join(lock_dir, f"{os.fsdecode(flat[-_LOCK_NAME_ROOM:])}.{digest}.lock")


class LockFile:
    """The lock file as one process holds it (used under the strategy's thread lock, except the
    fast path's pool)."""

    __slots__ = ("path", "place", "perms", "fd", "ino", "gen", "pool", "busy", "drained", "closing", "retired")

    def __init__(self, path: str, place: Place, perms: Perms | None) -> None:
        self.path = path
        self.place = place
        self.perms = perms
        self.fd = -1
        self.ino = -1
        self.gen = -1  # the counter this process last caught up with (-1: reopen the log)
        self.pool: list[int] = []  # idle descriptors for the fast path's shared locks
        self.busy: set[int] = set()  # pool descriptors in use by a fast-path writer
        # close() waits on this for the writers in flight; they notify only while closing is set.
        self.drained = threading.Condition(threading.Lock())
        self.closing = False
        self.retired = False

    def open(self) -> None:
        if self.retired:
            raise Retired(self.path)
        fd = open_lockfile(self.path, self.perms, place=self.place)
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        # Pool descriptors of an earlier lock file must not serve the new one.
        self.drop_pool()

    def lost(self) -> None:
        """flock() failed on our descriptor (closed behind our back, or the kernel is out of
        locks): start over with a new one. The number is not closed: it may no longer be ours."""
        self.fd = -1
        self.gen = -1
        self.drop_pool()

    def verify(self) -> None:
        """Make sure the held lock is the one the lock path names; if the lock file was deleted
        or replaced, take the current one (keeping the old one held until the new is ours)."""
        for _ in range(ATTEMPTS):
            try:
                if os.stat(self.path).st_ino == self.ino:
                    return
            except FileNotFoundError:
                pass
            # Fast-path writers may take the new file's shared lock before we hold it
            # exclusively: the counter they compare with must already be invalid then.
            self.gen = -1
            old = self.fd
            self.open()
            flock(self.fd, LOCK_EX)
            flock(old, LOCK_UN)
            close_quietly(old)
        raise gave_up(self.path, "locked")

    def counter(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_END)

    def read_period(self) -> float | None:
        """The period the last rotation line recorded (None: none, or only size rotation)."""
        end = self.gen
        if end <= 0:
            return None
        n = min(end, 32)
        os.lseek(self.fd, end - n, os.SEEK_SET)
        tail = os.read(self.fd, n)
        if tail.endswith(b"\n"):
            line = tail[:-1].rsplit(b"\n", 1)[-1]
            if line.lstrip(b"-").isdigit():
                return float(int(line))
        return None

    def notes(self) -> list[dict[str, Any]]:
        """The records in the lock file's last ``NOTES_WINDOW`` bytes, oldest first (under the
        exclusive lock, caught up)."""
        return read_notes(self.fd, self.gen)

    def note(self, entry: dict[str, Any]) -> None:
        """Append a record and the current period line after it, in one write."""
        period = self.read_period()
        os.write(self.fd, note_line(entry) + (b"\n" if period is None else b"%d\n" % period))
        self.gen = os.lseek(self.fd, 0, os.SEEK_END)

    def record(self, period: float | None) -> None:
        """Append one rotation line (the counter moves, every writer reopens)."""
        os.write(self.fd, b"\n" if period is None else b"%d\n" % period)
        self.gen = os.lseek(self.fd, 0, os.SEEK_END)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """The log's exclusive lock on a descriptor of its own: flock locks belong to the open
        file description, so this excludes this process's writers too, without their thread
        lock (the compressor must never hold that)."""
        # Held by a background thread while another one may fork: registered so that a child
        # closes its copy, and released with LOCK_UN, which frees it for every copy (a copy the
        # child kept would otherwise hold the lock, and stop every writer, for as long as the
        # child lives).
        for _ in range(ATTEMPTS):
            # A Place of its own: this runs in the compressor's thread, and a strategy's Place
            # is used under its thread lock only.
            fd = hold(open_lockfile(self.path, self.perms))
            try:
                flock(fd, LOCK_EX)
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                release(fd)
                raise
            if same:
                break
            release(fd)
        else:
            raise gave_up(self.path, "locked")
        try:
            yield
        finally:
            release(fd)

    # -- the fast path's descriptors ------------------------------------------------------------

    def pool_fd(self) -> int:
        """A new descriptor of the current lock file for the fast path, or -1 (none open yet:
        the exclusive path creates the lock file; or it was replaced: the exclusive path
        follows)."""
        ino = self.ino
        if self.fd < 0:
            return -1
        try:
            fd = os.open(self.path, LOCKFILE_REOPEN)
        except OSError:
            return -1
        try:
            if os.fstat(fd).st_ino == ino:
                return fd
        except OSError:
            pass
        close_quietly(fd)
        return -1

    def drop_pool(self) -> None:
        """Retire the fast path's lock descriptors: idle ones are closed now, the ones in use
        by their thread when it is done."""
        old, self.pool = self.pool, []
        while True:
            try:
                close_quietly(old.pop())
            except IndexError:
                return

    def drain(self, timeout: float) -> bool:
        """Retire the pool and wait until no fast-path writer of this process uses one of its
        descriptors (later arrivals decline); False if one was still busy after ``timeout``."""
        self.drop_pool()
        with self.drained:
            self.closing = True
            try:
                return self.drained.wait_for(lambda: not self.busy, timeout)
            finally:
                self.closing = False

    def close(self) -> None:
        fd, self.fd = self.fd, -1  # forgotten first: see LogFile.open
        close_quietly(fd)
        self.gen = -1
        self.drop_pool()

    def after_fork(self) -> None:
        # The threads that were writing at fork time do not exist here: their descriptors are
        # this process's to close (they share the parent's open lock, so must not stay open).
        for fd in self.busy:
            close_quietly(fd)
        self.busy = set()
        self.drained = threading.Condition(threading.Lock())
        self.closing = False


def note_line(entry: dict[str, Any]) -> bytes:
    """``entry`` as a record line, signed with who wrote it (pid, host and the process's key,
    which tells a live writer from a reused pid)."""
    entry = {**entry, "pid": os.getpid(), "host": host(), "key": process_key(os.getpid())}
    return b"#" + json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def read_notes(fd: int, end: int) -> list[dict[str, Any]]:
    """The ``#`` records among the last ``NOTES_WINDOW`` bytes before ``end`` of the lock file
    (or the policy record file of a ``per-process`` log) ``fd``; a line cut by the window, or not
    JSON, is skipped."""
    start = max(0, end - NOTES_WINDOW)
    os.lseek(fd, start, os.SEEK_SET)
    chunks = []
    left = end - start
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    lines = b"".join(chunks).split(b"\n")
    if start:
        lines = lines[1:]
    found = []
    for line in lines:
        if line.startswith(b"#"):
            try:
                entry = json.loads(line[1:])
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
    return found
