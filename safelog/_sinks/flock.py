"""``flock`` strategy: many processes append to one file, serialised by a lock file.

Per record, under the lock: one ``lseek`` on the lock file (has anyone rotated?), one ``lseek``
on the log (its size), one ``write``. That is the whole cross-process cost, about 2 µs.

How rotation stays exactly-once: the rotating process re-checks under the exclusive lock that
its descriptor still names the path, renames, then appends one byte to the lock file. The lock
file's size is a rotation counter every writer reads under the lock; when it moved, the writer
reopens the path before writing, so after a rotation nobody appends to the renamed backup.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from contextlib import contextmanager
from time import monotonic
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

from .._policy.rotation import SIZE
from .._primitives.fileio import ATTEMPTS, LOCKFILE_REOPEN, Place, close_quietly, gave_up, open_lockfile
from .._primitives.fsdetect import warn_if_network
from .._primitives.paths import resolve_log_path
from .._primitives.lock import LOCK_EX, LOCK_SH, LOCK_UN, flock, hold, release
from .base import CHECK_INTERVAL, Sink, SinkRetired

if TYPE_CHECKING:
    from .._policy.rotation import Rollover

__all__ = ["FlockSink", "lock_path_for"]

# Bound once: this is the per-record path, and module attribute lookups are measurable there.
_flock, _LOCK_EX, _LOCK_SH, _LOCK_UN = flock, LOCK_EX, LOCK_SH, LOCK_UN
_lseek, _SEEK_END, _monotonic = os.lseek, os.SEEK_END, monotonic

# Records up to FAST_RECORD bytes that leave the file more than FAST_MARGIN below max_bytes are
# written under a shared lock (see FlockSink._write_shared); everything else under the exclusive
# lock with an exact size check. With max_bytes of 4 x FAST_MARGIN or more the exclusive path
# counts the file full at the same point (FlockSink._due), so only the record that finds it full
# takes the exclusive lock, and rotates.
#
# Why files stay within max_bytes: a shared-lock writer reads the size and writes its record
# while holding the lock, so what it cannot see is at most one record per other writer in
# flight at that moment; FAST_MARGIN covers 16 concurrent writers of FAST_RECORD bytes (64 of
# 256 bytes).
FAST_RECORD = 1024
FAST_MARGIN = 16 * FAST_RECORD
# How long close() waits for this process's fast-path writers in flight (seconds).
CLOSE_WAIT = 10.0


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


def _no_rotation(kind: int, nbytes: int, created: float, size: int) -> int:  # pragma: no cover - never called without a policy
    raise AssertionError("rotation without a policy")


class FlockSink(Sink):
    kind = "flock"

    def __init__(self, path: str, options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(path, options)
        # Resolved once, like the log's path: the lock file is then opened without following a
        # link at any component (a lock_dir such as /var/lock is often a symlink itself).
        lock_dir = None if options.lock_dir is None else resolve_log_path(options.lock_dir, "lock_dir")
        self.lock_path = lock_path_for(path, lock_dir)
        self._lock_place = self._place if lock_dir is None else Place(lock_dir)
        self._lockfd = -1
        self._lock_ino = -1
        self._gen = -1
        self._pool: list[int] = []
        self._busy: set[int] = set()  # pool descriptors in use by a fast-path writer
        # close() waits on this for the writers in flight; they notify only while it is set.
        self._drained = threading.Condition(threading.Lock())
        self._closing = False
        # Record times before this one are inside the open file's period (see _in_known_period).
        self._fast_until = -math.inf
        # Until this process has held the lock with time rotation once: the start-up check of
        # the log's mtime against the period in the lock file is still to do.
        self._starting = True
        # mode='w': truncated under the exclusive lock (see _truncate_log), not by O_TRUNC, which
        # would cut a record another process is writing under its shared lock.
        self._truncate_pending, self._truncate = self._truncate, False
        # flock's promise does not hold on NFS/SMB/FUSE: worth one warning per network mount
        # and process, pointing at the code that built the handler.
        warn_if_network(path, "log file")
        if options.lock_dir is not None:
            warn_if_network(self.lock_path, "lock file")

    def _own_names(self) -> list[tuple[str, str]]:
        return [("lock file", self.lock_path)]

    def write(self, msg: str, created: float, rollover: Rollover | None) -> None:
        # Encoding needs no lock here (no per-shard numbering), so it happens before any.
        data = (msg + "\n").encode(self._encoding, self._errors)
        if len(data) <= FAST_RECORD and self._write_shared(data, created, rollover):
            return
        with self._tlock:
            self._write_locked(data, created, rollover)
        if self._rotated:
            self._after_write()

    def _write_shared(self, data: bytes, created: float, rollover: Rollover | None) -> bool:
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
        pool = self._pool
        try:
            lockfd = pool.pop()
        except IndexError:
            lockfd = self._pool_fd()
            if lockfd < 0:
                return False
        busy = self._busy
        busy.add(lockfd)
        try:
            _flock(lockfd, _LOCK_SH)
        except OSError:
            busy.discard(lockfd)
            close_quietly(lockfd)
            return False
        try:
            fd = self._fd
            if (
                pool is not self._pool
                or fd < 0
                or self._torn
                or _lseek(lockfd, 0, _SEEK_END) != self._gen
                or (_monotonic() >= self._next_check and not self._paths_unchanged())
            ):
                return False
            if rollover is not None:
                if created >= self._fast_until and not self._in_known_period(rollover, created):
                    return False
                if rollover.max_bytes and _lseek(fd, 0, _SEEK_END) + len(data) + FAST_MARGIN >= rollover.max_bytes:
                    return False
            n = os.write(fd, data)
            if n == len(data):
                return True
            # Part of the record reached the file (disk full, size limit): take it back under
            # the exclusive lock, so nobody appends after the fragment meanwhile, and let the
            # exclusive path write the whole record (or report the error).
            _flock(lockfd, _LOCK_EX)
            self._untear(fd, n)
            return False
        except OSError:
            return False  # os.write raised: nothing was written; the exclusive path retries
        finally:
            try:
                _flock(lockfd, _LOCK_UN)
            except OSError:
                pass
            if pool is self._pool:
                pool.append(lockfd)
                busy.discard(lockfd)  # last: close() waits for this
            else:
                # Not busy before it is closed: a child forked in between closes the busy
                # descriptors, and this number may be someone else's by then.
                busy.discard(lockfd)
                close_quietly(lockfd)
            if self._closing:
                with self._drained:
                    self._drained.notify_all()

    def _paths_unchanged(self) -> bool:
        """The once-a-second check, under the shared lock: do the log and lock paths still name
        the files we hold? If so, carry on here; if not, the exclusive path follows them."""
        requests = self._reopen_requests
        try:
            same = (
                os.stat(self.path).st_ino == self._ino
                and os.stat(self.lock_path).st_ino == self._lock_ino
            )
        except OSError:
            return False
        if same:
            self._next_check = 0.0 if self.watching else _monotonic() + CHECK_INTERVAL
            if self._reopen_requests != requests:
                # request_reopen() ran since the stat (a signal, maybe in this very thread): its
                # "check now" must not be overwritten.
                self._next_check = 0.0
        return same

    def _pool_fd(self) -> int:
        """A new descriptor of the current lock file for the fast path, or -1 (none open yet:
        the exclusive path creates the lock file; or it was replaced: the exclusive path
        follows)."""
        ino = self._lock_ino
        if self._lockfd < 0:
            return -1
        try:
            fd = os.open(self.lock_path, LOCKFILE_REOPEN)
        except OSError:
            return -1
        try:
            if os.fstat(fd).st_ino == ino:
                return fd
        except OSError:
            pass
        close_quietly(fd)
        return -1

    def _drop_pool(self) -> None:
        """Retire the fast path's lock descriptors: idle ones are closed now, the ones in use
        by their thread when it is done."""
        old, self._pool = self._pool, []
        while True:
            try:
                close_quietly(old.pop())
            except IndexError:
                return

    def _append(self, data: bytes, created: float, rollover: Rollover | None) -> None:
        # The exclusive path (under the thread lock): rotation, reopening, large records, the
        # last FAST_MARGIN bytes before the limit, and every record the fast path declined.
        with self._held(rollover, created):
            if rollover is not None and self._due(rollover, _lseek(self._fd, 0, _SEEK_END), len(data), created):
                self._rotate(rollover, len(data), created)
            self._write_all(data)

    @contextmanager
    def _held(self, rollover: Rollover | None, created: float) -> Iterator[None]:
        """The exclusive lock for a write, caught up with the others: paths followed, the file
        reopened after another process's rotation, its period known."""
        if self._lockfd < 0:
            self._open_lock()
        try:
            _flock(self._lockfd, _LOCK_EX)
        except OSError:
            self._lost_lock()
            raise
        try:
            self._catch_up(rollover)
            if rollover is not None and (self._period is None or self._starting) and rollover.timing is not None:
                self._establish_period(rollover, created)
            yield
        finally:
            # _check_paths/_rotate may have moved to a new lock file (the old one is already
            # released then): release the one held now.
            _flock(self._lockfd, _LOCK_UN)

    def _lost_lock(self) -> None:
        """flock() failed on our lock descriptor (closed behind our back, or the kernel is out
        of locks): start over with a new one. The number is not closed: it may no longer be
        ours."""
        self._lockfd = -1
        self._gen = -1
        self._drop_pool()

    def _catch_up(self, rollover: Rollover | None, force: bool = False) -> None:
        """Under the exclusive lock: follow a moved path or lock file (once per CHECK_INTERVAL,
        or now with ``force``) and reopen after another process's rotation."""
        if force or _monotonic() >= self._next_check:
            self._check_paths()
        gen = _lseek(self._lockfd, 0, _SEEK_END)
        if gen != self._gen or self._fd < 0:
            self._open_log()
            self._gen = gen
            if self._truncate_pending:
                self._truncate_log()
            if rollover is not None and rollover.timing is not None:
                self._load_period(rollover)

    def _in_known_period(self, rollover: Rollover, created: float) -> bool:
        """True when no time rotation can be due for a record of time ``created``: the file's
        period is known and has not ended. Remembers until when that holds."""
        if rollover.timing is None:
            self._fast_until = math.inf
        elif self._period is not None and created < self._rollover_at:
            self._fast_until = self._rollover_at
        else:
            return False
        return True

    def _due(self, rollover: Rollover, size: int, nbytes: int, created: float) -> int:
        # With a limit of 4 x FAST_MARGIN or more, a file counts as full once the next record
        # would take it into its last FAST_MARGIN bytes: that is where the shared-lock path
        # stops, so the record that finds it full rotates at once, instead of every record
        # of the last FAST_MARGIN bytes taking the exclusive lock (under steady shared traffic
        # an exclusive request waits, and 4 processes ran at 0.6x FileHandler). The margin is
        # the room for records in flight; files still never pass max_bytes.
        if size and rollover.max_bytes >= 4 * FAST_MARGIN:
            size += FAST_MARGIN
        return rollover.due(size, nbytes, created, self._rollover_at)

    def _set_period(self, rollover: Rollover, period: float | None) -> None:
        super()._set_period(rollover, period)
        self._fast_until = -math.inf  # the next fast-path record runs the full check

    def _append_many(self, datas: list[bytes], createds: list[float], rollover: Rollover | None) -> None:
        # _append's exclusive path, for a whole batch under one lock acquisition.
        with self._held(rollover, createds[0]):
            if rollover is None:
                self._write_batch(datas, createds, None, 0, _no_rotation)
                return

            def rotate(kind: int, nbytes: int, created: float, size: int) -> int:
                assert rollover is not None
                self._rotate(rollover, nbytes, created)
                return _lseek(self._fd, 0, _SEEK_END)

            self._write_batch(datas, createds, rollover, _lseek(self._fd, 0, _SEEK_END), rotate)

    def _open_files(self) -> None:
        if self._lockfd < 0:
            self._open_lock()
        self._open_log()
        if self._truncate_pending:
            _flock(self._lockfd, _LOCK_EX)
            try:
                self._truncate_log()
            finally:
                _flock(self._lockfd, _LOCK_UN)

    def _truncate_log(self) -> None:
        """mode='w', under the exclusive lock: empty the log once, when this process's handler
        opens it. Other processes' records are whole (they write under the shared lock), their
        ``O_APPEND`` descriptors write on at the new end, and the inode stays, so nobody
        reopens. A forked child never truncates (``_after_fork``)."""
        self._truncate_pending = False
        os.ftruncate(self._fd, 0)

    # The lock file holds the rotation state of the log. Its size is the rotation counter: every
    # rotation appends one line. With time rotation the line is the key of the period of the new
    # current file (seconds since the epoch: the start of a grid period, or rolloverAt - interval
    # under the stdlib's rule), so every process, including one started late or restarted,
    # learns from the last line when the file is due, and the first writer past that rotates;
    # the others see the counter move, reopen, read the new period and find nothing due. A
    # machine that was down for days rotates once: the new period is the one of the record that
    # found the file due. Under the stdlib's rule the boundaries depend on when the period began
    # (the first process to record it decides), not on the clock alone: the lock file is what
    # makes every process rotate at the same instant.

    def _load_period(self, rollover: Rollover) -> None:
        period = None
        end = self._gen
        if end > 0:
            n = min(end, 32)
            os.lseek(self._lockfd, end - n, os.SEEK_SET)
            tail = os.read(self._lockfd, n)
            if tail.endswith(b"\n"):
                line = tail[:-1].rsplit(b"\n", 1)[-1]
                if line.lstrip(b"-").isdigit():
                    period = float(int(line))
        self._set_period(rollover, period)

    def _record(self, period: float | None) -> None:
        """Append one rotation line (the counter moves, every writer reopens)."""
        os.write(self._lockfd, b"\n" if period is None else b"%d\n" % period)
        self._gen = os.lseek(self._lockfd, 0, os.SEEK_END)

    def _establish_period(self, rollover: Rollover, created: float) -> None:
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
        self._catch_up(rollover, force=True)
        self._starting = False
        recorded = self._period
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if recorded is not None and (not size or os.fstat(self._fd).st_mtime >= recorded):
            return
        period = rollover.first_period(self._fd, size, created)
        if recorded is not None and rollover.boundary(period) >= self._rollover_at:
            return
        self._record(period)
        self._set_period(rollover, period)

    def _force_rotate(self, rollover: Rollover, created: float) -> None:
        # doRollover(): under the exclusive lock, caught up with the others' rotations, so a
        # process that finds the file another one just rotated sees it empty and leaves it.
        with self._held(rollover, created):
            self._rotate(rollover, 0, created, force=True)

    def _rotate(self, rollover: Rollover, nbytes: int, created: float, force: bool = False) -> None:
        # Two processes can both find the file due; only the first one through the lock
        # rotates. The second arrives here after the counter moved and has reopened, so it sees
        # the new, small file of the new period and does not rotate again. What remains to rule
        # out is a lock file replaced while we hold the old one, which would let another process
        # rotate at the same time: the forced catch-up verifies we hold the lock the path names.
        self._catch_up(rollover, force=True)
        if self._period is None and rollover.timing is not None:
            self._establish_period(rollover, created)
        size = os.lseek(self._fd, 0, os.SEEK_END)
        kind = (SIZE if size else 0) if force else self._due(rollover, size, nbytes, created)
        if not kind:
            return
        done = rollover.rollover(self.path, kind, size, self._period, created)
        if done is None:
            return  # could not rename: nothing changed, write on to the current file
        period, _ = done
        self._record(period if rollover.timing is not None else None)
        self._open_log()
        self._set_period(rollover, period)
        # Retention runs here, still under the lock, so only this process deletes; the
        # compression it queues runs in a background thread after the lock is released.
        rollover.after_rollover(self.path, created, self.rotation_guard)
        self._rotated = True

    def rotation_guard(self) -> ContextManager[Any]:
        return self._exclusive()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The log's exclusive lock on a descriptor of its own: flock locks belong to the open
        file description, so this excludes this process's writers too, without their thread
        lock (the compressor must never hold that)."""
        # Held by a background thread while another one may fork: registered so that a child
        # closes its copy, and released with LOCK_UN, which frees it for every copy (a copy the
        # child kept would otherwise hold the lock, and stop every writer, for as long as the
        # child lives).
        for _ in range(ATTEMPTS):
            # A Place of its own: this runs in the compressor's thread, and a sink's Place is
            # used under the sink's thread lock only.
            fd = hold(open_lockfile(self.lock_path, self.options.perms))
            try:
                flock(fd, LOCK_EX)
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                release(fd)
                raise
            if same:
                break
            release(fd)
        else:
            raise gave_up(self.lock_path, "locked")
        try:
            yield
        finally:
            release(fd)

    def _open_lock(self) -> None:
        if self._retired:
            raise SinkRetired(self.path)
        fd = open_lockfile(self.lock_path, self.options.perms, place=self._lock_place)
        self._lockfd = fd
        self._lock_ino = os.fstat(fd).st_ino
        # Pool descriptors of an earlier lock file must not serve the new one.
        self._drop_pool()

    def _verify_lock(self) -> None:
        """Make sure the held lock is the one the lock path names; if the lock file was deleted
        or replaced, take the current one (keeping the old one held until the new is ours)."""
        for _ in range(ATTEMPTS):
            try:
                if os.stat(self.lock_path).st_ino == self._lock_ino:
                    return
            except FileNotFoundError:
                pass
            # Fast-path writers may take the new file's shared lock before we hold it
            # exclusively: the counter they compare with must already be invalid then.
            self._gen = -1
            old = self._lockfd
            self._open_lock()
            flock(self._lockfd, LOCK_EX)
            flock(old, LOCK_UN)
            close_quietly(old)
        raise gave_up(self.lock_path, "locked")

    def _check_paths(self) -> None:
        self._next_check = 0.0 if self.watching else monotonic() + CHECK_INTERVAL
        self._verify_lock()
        if self._fd >= 0 and self._path_moved():
            self._close_files_log_only()

    def request_reopen(self) -> None:
        # The "check now" alone can be undone: a fast-path thread whose stat came just before
        # the rename notes the next check time after this ran, and until it sees the request
        # and takes that back, another thread's record goes to the renamed file. The rotation
        # counter is the other thing every record compares, and only the exclusive path, which
        # waits for every shared holder, sets it: invalidated, the next record of every thread
        # takes that path and reopens (a file the path still names is reopened, harmlessly).
        super().request_reopen()
        self._gen = -1

    def reopen(self) -> None:
        # Under the exclusive lock, like every change of the descriptors the fast path uses.
        with self._tlock:
            if self._fd < 0:
                return
            self._forget_files()
            with self._held(None, 0.0):
                pass  # _catch_up reopened the log: the counter no longer matched

    def _close_files_log_only(self) -> None:
        fd, self._fd = self._fd, -1  # forgotten first: see Sink._open_log
        close_quietly(fd)

    def _forget_files(self) -> None:
        # Only under the exclusive lock may the descriptors change (fast-path writers use them
        # under the shared lock): the retry's _catch_up reopens the log there.
        self._gen = -1
        self._next_check = 0.0

    def close(self) -> None:
        with self._tlock:
            # Fast-path writers of this process use the descriptors without the thread lock:
            # retire the pool (later arrivals decline and take the exclusive path, which waits
            # for this lock and reopens), wait until the ones in flight are done, then close.
            # Other processes are not waited for.
            self._drop_pool()
            with self._drained:
                self._closing = True
                try:
                    done = self._drained.wait_for(lambda: not self._busy, CLOSE_WAIT)
                finally:
                    self._closing = False
            if not done:
                # A writer is stuck on the lock (a process holding it was stopped): leave the
                # descriptors open rather than close one it may still write to.
                self._fd = self._lockfd = -1
                self._gen = -1
                return
            self._close_files()

    def _after_fork(self) -> None:
        # The threads that were writing at fork time do not exist here: their descriptors are
        # this process's to close (they share the parent's open lock, so must not stay open).
        for fd in self._busy:
            close_quietly(fd)
        self._busy = set()
        self._drained = threading.Condition(threading.Lock())
        self._closing = False
        self._truncate_pending = False
        super()._after_fork()

    def _close_files(self) -> None:
        super()._close_files()
        self._lock_place.close()
        fd, self._lockfd = self._lockfd, -1  # forgotten first: see Sink._open_log
        close_quietly(fd)
        self._gen = -1
        self._drop_pool()
