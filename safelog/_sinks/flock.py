"""``flock`` strategy: many processes append to one file, serialised by a lock file.

Per record, under the lock: one ``lseek`` on the lock file (has anyone rotated?), one ``lseek``
on the log (its size), one ``write``. That is the whole cross-process cost, about 2 µs.

How rotation stays exactly-once: the rotating process re-checks under the exclusive lock that
its descriptor still names the path, renames, then appends one byte to the lock file. The lock
file's size is a rotation counter every writer reads under the lock; when it moved, the writer
reopens the path before writing, so after a rotation nobody appends to the renamed backup.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from time import monotonic
from typing import Any, ClassVar

from .._policy.config import FileConfig
from .._policy.rotation import SIZE, RotationPolicy
from .._primitives.fileio import Place, close_quietly
from .._primitives.fsdetect import warn_if_network
from .._primitives.lock import LOCK_EX, LOCK_SH, LOCK_UN, flock
from .._primitives.paths import resolve_log_path
from .lockfile import LockFile, lock_path_for
from .regular import FileCore
from .strategy import Render

__all__ = ["FlockStrategy", "lock_path_for"]

# Bound once: this is the per-record path, and module attribute lookups are measurable there.
_flock, _LOCK_EX, _LOCK_SH, _LOCK_UN = flock, LOCK_EX, LOCK_SH, LOCK_UN
_lseek, _SEEK_END, _monotonic, _INF = os.lseek, os.SEEK_END, monotonic, math.inf

# Records up to FAST_RECORD bytes that leave the file more than FAST_MARGIN below max_bytes are
# written under a shared lock (see FlockStrategy._write_shared); everything else under the
# exclusive lock with an exact size check. With max_bytes of 4 x FAST_MARGIN or more the
# exclusive path counts the file full at the same point (FlockStrategy._due), so only the record
# that finds it full takes the exclusive lock, and rotates.
#
# Why files stay within max_bytes: a shared-lock writer reads the size and writes its record
# while holding the lock, so what it cannot see is at most one record per other writer in
# flight at that moment; FAST_MARGIN covers 16 concurrent writers of FAST_RECORD bytes (64 of
# 256 bytes).
FAST_RECORD = 1024
FAST_MARGIN = 16 * FAST_RECORD
# How long close() waits for this process's fast-path writers in flight (seconds).
CLOSE_WAIT = 10.0


class FlockStrategy:
    name: ClassVar[str] = "flock"
    regular: ClassVar[bool] = True
    lazy: ClassVar[bool] = False
    own_file: ClassVar[bool] = False

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        self.path = path
        self.options = options
        self.policy = policy
        self.refs = 0
        self.core = core = FileCore(path, options, policy)
        self.file = core.file
        self._encoding, self._errors = options.encoding, options.errors  # read per record
        self.lock = threading.Lock()
        # Resolved once, like the log's path: the lock file is then opened without following a
        # link at any component (a lock_dir such as /var/lock is often a symlink itself).
        lock_dir = None if options.lock_dir is None else resolve_log_path(options.lock_dir, "lock_dir")
        place = self.file.place if lock_dir is None else Place(lock_dir)
        self.lockfile = LockFile(lock_path_for(path, lock_dir), place, options.set_perms)
        # Until this process has held the lock with time rotation once: the start-up check of
        # the log's mtime against the period in the lock file is still to do.
        self._starting = True
        # Until this process's first write: agreeing on the policy (and the start) with the
        # others, through the records in the lock file (see _join).
        self._joining = True
        # mode='w': truncated under the exclusive lock (see _truncate_log), not by O_TRUNC, which
        # would cut a record another process is writing under its shared lock.
        self._truncate_pending, self.file.truncate = self.file.truncate, False
        # flock's promise does not hold on NFS/SMB/FUSE: worth one warning per network mount
        # and process, pointing at the code that built the handler.
        warn_if_network(path, "log file")
        if options.lock_dir is not None:
            warn_if_network(self.lockfile.path, "lock file")

    @property
    def watching(self) -> bool:
        return self.file.watching

    @watching.setter
    def watching(self, value: bool) -> None:
        self.file.watching = value

    @property
    def opened(self) -> bool:
        return self.file.fd >= 0

    def target(self) -> str:
        return self.file.target

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        return self.core.names("log file", self.path, [("lock file", self.lockfile.path)], policy)

    # -- the fast path: a shared lock -----------------------------------------------------------

    def _encode(self, msg: str, created: float) -> bytes:
        return (msg + "\n").encode(self._encoding, self._errors)

    def write(self, msg: str, created: float) -> None:
        # Encoding needs no lock here (no per-shard numbering), so it happens before any.
        data = (msg + "\n").encode(self._encoding, self._errors)
        if len(data) <= FAST_RECORD and self._write_shared(data, created):
            return
        core = self.core
        with self.lock:
            core.write_one(data, created, self._append, self._forget)
        if core.rotated:
            core.after_write()

    def write_record(self, render: Render, record: logging.LogRecord) -> None:
        # Formatting happens before any lock: the fast path takes none of this process's.
        msg = render(record)
        if msg is not None:
            self.write(msg, record.created)

    def write_many(self, items: Sequence[tuple[str, float]]) -> list[tuple[int, Exception]]:
        core = self.core
        with self.lock:
            rejected = core.write_many(items, self._encode, self._append_many, self._forget)
        if core.rotated:
            core.after_write()
        return rejected

    def _write_shared(self, data: bytes, created: float) -> bool:
        """The fast path: write a small record under a *shared* lock; False when it must take
        the exclusive path instead (nothing of the record was written then).

        Shared holders never wait for each other: an exclusive lock per record made 4
        processes queue behind whichever was descheduled while holding it (half the throughput
        of an unlocked FileHandler); ``O_APPEND`` keeps concurrent writes whole. A rotation
        takes the lock exclusively, so it waits until no write is in flight, and every writer
        sees its counter before its next write.

        Each thread takes a lock descriptor of its own from a pool: flock locks belong to the
        open file description, so threads of this process exclude each other exactly as
        processes do, and no thread lock is held across the ``write()`` (two threads convoying
        on one ran at 0.6x FileHandler). The descriptors and state the fast path reads change
        only under the exclusive lock, which waits for every shared holder in this process too.
        """
        lockfile = self.lockfile
        pool = lockfile.pool
        try:
            lockfd = pool.pop()
        except IndexError:  # another thread may empty the pool at any moment: no test first
            lockfd = lockfile.pool_fd()
            if lockfd < 0:
                return False
        busy = lockfile.busy
        busy.add(lockfd)
        try:
            _flock(lockfd, _LOCK_SH)
        except OSError:
            busy.discard(lockfd)
            close_quietly(lockfd)
            return False
        try:
            file, core = self.file, self.core
            fd = file.fd
            if (
                pool is not lockfile.pool
                or fd < 0
                or file.torn
                or _lseek(lockfd, 0, _SEEK_END) != lockfile.gen
                or (_monotonic() >= file.next_check and not self._paths_unchanged())
                # The room left (see regular.py): the period's end, and the size limit less the
                # room for other writers' records in flight (no lseek without a size limit).
                or created >= core.period_end
                or (core.limit != _INF and _lseek(fd, 0, _SEEK_END) + len(data) + FAST_MARGIN >= core.limit)
            ):
                return False
            n = os.write(fd, data)
            if n == len(data):
                return True
            # Part of the record reached the file (disk full, size limit): take it back under
            # the exclusive lock, so nobody appends after the fragment meanwhile, and let the
            # exclusive path write the whole record (or report the error).
            _flock(lockfd, _LOCK_EX)
            file.untear(fd, n)
            return False
        except OSError:
            return False  # os.write raised: nothing was written; the exclusive path retries
        finally:
            # Inline, not a method: this runs for every record. The descriptor goes back to its
            # pool (closed, if the pool was retired meanwhile), and close() is told when it
            # waits for this one.
            try:
                _flock(lockfd, _LOCK_UN)
            except OSError:
                pass
            if pool is lockfile.pool:
                pool.append(lockfd)
                busy.discard(lockfd)  # last: close() waits for this
            else:
                # Not busy before it is closed: a child forked in between closes the busy
                # descriptors, and this number may be someone else's by then.
                busy.discard(lockfd)
                close_quietly(lockfd)
            if lockfile.closing:
                with lockfile.drained:
                    lockfile.drained.notify_all()

    def _paths_unchanged(self) -> bool:
        """The once-a-second check, under the shared lock: do the log and lock paths still name
        the files we hold? If so, carry on here; if not, the exclusive path follows them."""
        file = self.file
        requests = file.requests
        try:
            same = os.stat(self.path).st_ino == file.ino and os.stat(self.lockfile.path).st_ino == self.lockfile.ino
        except OSError:
            return False
        if same:
            file.schedule_check()
            if file.requests != requests:
                # request_reopen() ran since the stat (a signal, maybe in this very thread): its
                # "check now" must not be overwritten.
                file.next_check = 0.0
        return same

    # -- the exclusive path ---------------------------------------------------------------------

    def _append(self, data: bytes, created: float) -> None:
        # The exclusive path (under the thread lock): rotation, reopening, large records, the
        # last FAST_MARGIN bytes before the limit, and every record the fast path declined.
        with self._held(created):
            if self.core.may_rotate() and self._due(_lseek(self.file.fd, 0, _SEEK_END), len(data), created):
                self._rotate(len(data), created)
            self.file.write_all(data)

    def _append_many(self, datas: list[bytes], createds: list[float]) -> None:
        # _append's exclusive path, for a whole batch under one lock acquisition.
        with self._held(createds[0]):

            def rotate(trigger: int, nbytes: int, created: float, size: int) -> int:
                self._rotate(nbytes, created)
                return _lseek(self.file.fd, 0, _SEEK_END)

            size = _lseek(self.file.fd, 0, _SEEK_END) if self.core.may_rotate() else 0
            self.core.write_batch(datas, createds, size, rotate, self._due)

    @contextmanager
    def _held(self, created: float | None) -> Iterator[None]:
        """The exclusive lock for a write, caught up with the others: paths followed, the file
        reopened after another process's rotation, its period known (unless ``created`` is
        None: a reopen, no record)."""
        lockfile = self.lockfile
        if lockfile.fd < 0:
            lockfile.open()
        try:
            _flock(lockfile.fd, _LOCK_EX)
        except OSError:
            lockfile.lost()
            raise
        try:
            self._catch_up(periods=created is not None)
            if created is not None and self.policy.time is not None and (self.core.period is None or self._starting):
                self._establish_period(created)
            if created is not None and self._joining:
                self._join(created)
            yield
        finally:
            # _check_paths/_rotate may have moved to a new lock file (the old one is already
            # released then): release the one held now.
            _flock(lockfile.fd, _LOCK_UN)

    def _catch_up(self, force: bool = False, periods: bool = True) -> None:
        """Under the exclusive lock: follow a moved path or lock file (once per CHECK_INTERVAL,
        or now with ``force``) and reopen after another process's rotation (and with
        ``periods``, learn the new file's period from the lock file)."""
        file, lockfile = self.file, self.lockfile
        if force or _monotonic() >= file.next_check:
            file.schedule_check()
            lockfile.verify()
            if file.fd >= 0 and file.moved():
                file.forget()
        gen = lockfile.counter()
        if gen != lockfile.gen or file.fd < 0:
            file.open()
            lockfile.gen = gen
            if self._truncate_pending:
                self._truncate_log()
            if periods and self.policy.time is not None:
                self.core.set_period(lockfile.read_period())

    def _due(self, size: int, nbytes: int, created: float) -> int:
        # With a limit of 4 x FAST_MARGIN or more, a file counts as full once the next record
        # would take it into its last FAST_MARGIN bytes: that is where the shared-lock path
        # stops, so the record that finds it full rotates at once, instead of every record
        # of the last FAST_MARGIN bytes taking the exclusive lock (under steady shared traffic
        # an exclusive request waits, and 4 processes ran at 0.6x FileHandler). The margin is
        # the room for records in flight; files still never pass max_bytes.
        if size and self.core.limit >= 4 * FAST_MARGIN:
            size += FAST_MARGIN
        return self.core.due(size, nbytes, created)

    def _open_files(self) -> None:
        lockfile = self.lockfile
        if lockfile.fd < 0:
            lockfile.open()
        self.file.open()
        if self._truncate_pending:
            _flock(lockfile.fd, _LOCK_EX)
            try:
                self._truncate_log()
            finally:
                _flock(lockfile.fd, _LOCK_UN)

    def _truncate_log(self) -> None:
        """mode='w', under the exclusive lock: empty the log once, when this process's handler
        opens it. Other processes' records are whole (they write under the shared lock), their
        ``O_APPEND`` descriptors write on at the new end, and the inode stays, so nobody
        reopens. A forked child never truncates (``after_fork``)."""
        self._truncate_pending = False
        os.ftruncate(self.file.fd, 0)

    # -- rotation -------------------------------------------------------------------------------

    def _establish_period(self, created: float) -> None:
        """At this process's first hold of the lock with time rotation: work out the file's
        period if no process has recorded it yet (new lock file, or a log that had only size
        rotation so far), and record it for all.

        If one is recorded, the log's own start-up period still counts when the log was last
        written before the recorded period began and ends earlier: such a log (put back, touched,
        left from a run whose lock file was elsewhere) is due as the stdlib finds it at start-up,
        from its mtime. Recording that period makes the processes starting together agree on
        it, so exactly one of them rotates. A file written in its period never qualifies, so a
        process (re)started in normal operation changes nothing.
        """
        self._catch_up(force=True)
        self._starting = False
        core = self.core
        recorded = core.period
        fd = self.file.fd
        size = os.lseek(fd, 0, os.SEEK_END)
        if recorded is not None and (not size or os.fstat(fd).st_mtime >= recorded):
            return
        period = core.first_period(size, created)
        if recorded is not None and self.policy.period_end(period) >= core.period_end:
            return
        self.lockfile.record(period)
        core.set_period(period)

    def _join(self, created: float) -> None:
        """At this process's first write, under the exclusive lock: compare its policy with the
        one in force, and with ``rotate_on_start`` rotate if it begins a start (see
        ``RotationPolicy.join``); record what the others need to know. A fork child that
        inherits a strategy that did this already is of the same start, with the same policy."""
        self._joining = False
        rotate, note = self.policy.join(self.path, self.lockfile.notes())
        if rotate:
            self._rotate(0, created, force=True)
        if note:
            self.lockfile.note(note)

    def rotate_now(self, created: float) -> None:
        # doRollover(): under the exclusive lock, caught up with the others' rotations, so a
        # process that finds the file another one just rotated sees it empty and leaves it.
        with self.lock, self._held(created):
            self._rotate(0, created, force=True)
        if self.core.rotated:
            self.core.after_write()

    def rotation_due(self, nbytes: int, created: float) -> bool:
        with self.lock:
            return self.core.rotation_due(nbytes, created, self._open_files)

    def rotates_at(self, now: float) -> float:
        with self.lock:
            return self.core.rotates_at(now, self.target())

    def resize(self, max_bytes: int, backup_count: int) -> None:
        self.core.check_resize(max_bytes, backup_count, self.names)
        with self.lock:
            self.core.resize(max_bytes, backup_count)

    def _rotate(self, nbytes: int, created: float, force: bool = False) -> None:
        # Two processes can both find the file due; only the first one through the lock
        # rotates. The second arrives here after the counter moved and has reopened, so it sees
        # the new, small file of the new period and does not rotate again. What remains to rule
        # out is a lock file replaced while we hold the old one, which would let another process
        # rotate at the same time: the forced catch-up verifies we hold the lock the path names.
        self._catch_up(force=True)
        core = self.core
        if core.period is None and self.policy.time is not None:
            self._establish_period(created)
        size = os.lseek(self.file.fd, 0, os.SEEK_END)
        trigger = (SIZE if size else 0) if force else self._due(size, nbytes, created)
        if not trigger:
            return
        done = self.policy.rotate(self.path, trigger, size, core.period, created)
        if done is None:
            return  # could not rename: nothing changed, write on to the current file
        period, _ = done
        self.lockfile.record(period)  # None without time rotation: an empty line, the counter moves
        self.file.open()
        # Retention runs here, still under the lock, so only this process deletes; the
        # compression it queues runs in a background thread after the lock is released.
        core.after_rotation(self.path, period, created, self.rotation_guard)

    def rotation_guard(self) -> AbstractContextManager[Any]:
        return self.lockfile.exclusive()

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        with self.lock:
            if self.file.fd < 0:
                self._open_files()

    def identity(self) -> tuple[int, int]:
        with self.lock:
            return self.file.identity()

    def request_reopen(self) -> None:
        # The "check now" alone can be undone: a fast-path thread whose stat came just before
        # the rename notes the next check time after this ran, and until it sees the request
        # and takes that back, another thread's record goes to the renamed file. The rotation
        # counter is the other thing every record compares, and only the exclusive path, which
        # waits for every shared holder, sets it: invalidated, the next record of every thread
        # takes that path and reopens (a file the path still names is reopened, harmlessly).
        self.file.request_check()
        self.lockfile.gen = -1

    def reopen(self) -> None:
        # Under the exclusive lock, like every change of the descriptors the fast path uses.
        with self.lock:
            if self.file.fd < 0:
                return
            self._forget()
            with self._held(None):
                pass  # _catch_up reopened the log: the counter no longer matched

    def _forget(self) -> None:
        # Only under the exclusive lock may the descriptors change (fast-path writers use them
        # under the shared lock): the retry's _catch_up reopens the log there.
        self.lockfile.gen = -1
        self.file.next_check = 0.0

    def retire(self) -> None:
        with self.lock:  # a write in progress (a rotation, say) finishes first
            self.file.retired = self.lockfile.retired = True
        self.close()

    def close(self) -> None:
        with self.lock:
            # Fast-path writers of this process use the descriptors without the thread lock:
            # retire the pool (later arrivals decline and take the exclusive path, which waits
            # for this lock and reopens), wait until the ones in flight are done, then close.
            # Other processes are not waited for.
            if not self.lockfile.drain(CLOSE_WAIT):
                # A writer is stuck on the lock (a process holding it was stopped): leave the
                # descriptors open rather than close one it may still write to.
                self.file.fd = self.lockfile.fd = -1
                self.lockfile.gen = -1
                return
            self._close_files()

    def _close_files(self) -> None:
        self.file.close()
        self.lockfile.place.close()
        self.lockfile.close()

    def after_fork(self) -> None:
        self.lockfile.after_fork()
        self._truncate_pending = False
        self.lock = threading.Lock()
        self.file.truncate = False
        self._close_files()
