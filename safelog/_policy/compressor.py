"""The compressor: the one background worker of a process that compresses rotated backups and
unlinks removed ones, outside every lock, atomically; its lifecycle (started on demand after
the lock is released, gone when idle, drained at exit, reset in a forked child) is its own.

Why it cannot hurt a writer:

* It starts after the rotation that produced the backup, and it only ever reads a *backup*.
  With ``flock`` the rotating process renamed the file and appended to the lock file (the
  rotation counter) while holding the exclusive lock; every writer appends only while holding
  that lock and compares the counter first, so its next write after the rename goes to the new
  file. Once the rotating process releases the lock, no process can append to the backup any
  more. With ``thread`` and ``per-process`` the only writer reopened before releasing its thread
  lock. So the backup is complete before a byte of it is compressed.
* Compressing takes no lock: writers never wait for it (the codecs release the GIL on each
  chunk, so even the writers of this process keep going). Only creating (and locking) the temp
  file and the two renames at the end run under the log's lock, for a few microseconds each:
  a cleanup must never see an unlocked temp file, and a size rotation in another process may
  be shifting ``app.log.1`` to ``app.log.2`` at the same moment as the renames: the backup is
  found again by its inode, and its compressed form takes the name it has *now*.
* The compressed file appears whole or not at all: it is written to a hidden temp file in the
  same directory (created with ``O_EXCL|O_NOFOLLOW``), fsynced, then ``os.replace``-d over the
  target; the uncompressed backup is removed only after that rename is durable. A crash at any
  point leaves the uncompressed backup (and maybe a stale temp file, which the next rotation
  removes once no live process holds its lock); never a truncated ``.gz``. The original is
  renamed away under the lock and unlinked afterwards (see :meth:`Compressor.trash`).

The temp-file + fsync + ``os.replace`` steps are a private helper here; they are the same as the
shared atomic-replace helper and can move there.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .._primitives.atomic import create_temp, fsync_dir
from .._primitives.codec import Codec
from .._primitives.fileio import open_input
from .._primitives.lock import LOCK_EX, flock, hold, release
from .._primitives.perms import Perms
from .._primitives.reentry import section
from .compress import trash_name

__all__ = ["Compressor", "COMPRESSOR", "report_error"]

_CHUNK = 1 << 20

Locate = Callable[[str, "tuple[int, int]"], "str | None"]
Guard = Callable[[], AbstractContextManager[Any]]
OnError = Callable[[str, BaseException], None]


class _Job:
    __slots__ = ("src", "codec", "locate", "guard", "perms", "on_error")

    def __init__(
        self, src: str, codec: Codec | None, locate: Locate, guard: Guard, perms: Perms | None, on_error: OnError
    ) -> None:
        self.src = src
        self.codec = codec
        self.locate = locate
        self.guard = guard
        self.perms = perms
        self.on_error = on_error


def _nowhere(src: str, key: tuple[int, int]) -> str | None:
    return None


def _no_guard() -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def report_error(src: str, exc: BaseException) -> None:
    """Default error report of the worker (no log record to hand to ``handleError``)."""
    if logging.raiseExceptions and sys.stderr:
        sys.stderr.write(f"--- safelog: compressing {src} failed, left uncompressed: {type(exc).__name__}: {exc}\n")


class Compressor:
    """A queue of backups to compress (or unlink) and the one thread that works it off.

    The thread is started by the rotation that queued the work, right after that writer
    released the log's lock (:meth:`start`): queueing under the lock is a deque append, never a
    thread start. It exits when the queue is empty, so a process that forks later (a pool, a
    gunicorn master after a rotation) does not fork with a thread running. A normal interpreter
    exit waits for the queue (:meth:`drain`); a killed process leaves the uncompressed backup,
    which the next rotation queues again. A forked child starts with an empty queue
    (:meth:`after_fork`): the parent's work is the parent's.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._busy = 0
        self._worker: threading.Thread | None = None
        self._inflight: set[tuple[int, int]] = set()
        # Reports a failed job that has no handler to report to (tests replace it).
        self.report: OnError = report_error
        # Tests stop the worker half-way through a file (crash simulation): called after each chunk.
        self.chunk_hook: Callable[[str], None] | None = None
        # Tests hold the worker between creating a temp file and locking it: called with its path.
        self.temp_hook: Callable[[str], None] | None = None

    # -- the queue ------------------------------------------------------------------------------

    def submit(self, src: str, codec: Codec, locate: Locate, guard: Guard, perms: Perms | None) -> None:
        """Queue ``src`` for compression; returns at once."""
        self._queue(_Job(src, codec, locate, guard, perms, self._report))

    def discard(self, path: str) -> None:
        """Unlink ``path`` (a name nobody else uses: see :meth:`trash`) in the background."""
        self._queue(_Job(path, None, _nowhere, _no_guard, None, self._report))

    def trash(self, path: str) -> None:
        """Remove ``path`` without making the caller wait for the file system to free its blocks.

        Unlinking a 50 MB file can take tens of milliseconds; done under the log's lock, every
        writer would wait that long. So under the lock the file is only renamed to a hidden name of
        its own (cheap, and it leaves the backup names at once), and the unlink happens in the
        background. A crash in between leaves a ``.<name>.<random>.del`` file that the next
        rotation removes.
        """
        directory, name = os.path.split(path)
        hidden = os.path.join(directory, trash_name(name))
        try:
            os.rename(path, hidden)
        except FileNotFoundError:
            return
        self.discard(hidden)

    def _report(self, src: str, exc: BaseException) -> None:
        self.report(src, exc)

    def _queue(self, job: _Job) -> None:
        with self.cond:
            if any(j.src == job.src for j in self._jobs):
                return
            self._jobs.append(job)
            self.cond.notify_all()

    # -- the lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker if jobs wait and it is not running (call outside log locks)."""
        with self.cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._worker is None and self._jobs:
            self._worker = threading.Thread(target=self._run, name="safelog-compress", daemon=True)
            self._worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued backup is compressed (tests, orderly shutdown)."""
        with section(), self.cond:
            self._start_locked()
            return self.cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def drain(self) -> None:
        """At interpreter exit: the last rotation's backup is compressed before the process
        exits. Bounded, so that a worker stuck on a lock held by a hung process cannot keep the
        process alive; what it leaves is safe."""
        if self._worker is not None or self._jobs:
            self.wait(300)

    def after_fork(self) -> None:
        """In a forked child: the worker thread does not exist there; the queue is the parent's."""
        self.cond = threading.Condition()
        self._jobs.clear()
        self._inflight.clear()
        self._worker = None
        self._busy = 0

    def _run(self) -> None:
        # Not niced, on purpose: this thread shares the GIL with the application's threads, and
        # a low-priority thread preempted while holding it makes them wait (measured: worst emit
        # 37 ms with nice +10 on a loaded 2-core machine, 9 ms without).
        #
        # Each job is a section (see _primitives/reentry.py): a finalizer the garbage collector
        # runs in this thread while it holds the queue's lock or the log's lock must not log
        # then (a writer rotating under its lock waits for the queue's lock: a lock-order
        # cycle); its records are written after the job.
        while True:
            with section():
                if not self._one_job():
                    return

    def _one_job(self) -> bool:
        """Take and do one job; False when there is none left (the worker is gone)."""
        with self.cond:
            if not self._jobs:
                self._worker = None
                self.cond.notify_all()
                return False
            job = self._jobs.popleft()
            self._busy += 1
        try:
            if job.codec is None:
                try:
                    os.unlink(job.src)
                except FileNotFoundError:
                    pass
            else:
                self.compress_file(job)
        except BaseException as exc:  # the backup stays uncompressed; say why, keep going
            try:
                job.on_error(job.src, exc)
            except Exception:
                pass
        finally:
            with self.cond:
                self._busy -= 1
                self.cond.notify_all()
        return True

    # -- one backup -----------------------------------------------------------------------------

    def compress_file(self, job: _Job) -> None:
        """Compress one backup to ``<its current name><ext>`` and then remove it."""
        try:
            # Under the rule of _primitives.fileio: a backup name another user filled (a link, a
            # hard link to a file elsewhere, a file of theirs) is not compressed (reported).
            fd, _ = open_input(job.src)
            hold(fd)  # released with release(): see lock.hold
        except FileNotFoundError:
            return  # removed by retention, or already compressed by another process
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            with self.cond:
                if key in self._inflight:
                    return
                self._inflight.add(key)
            try:
                self._compress_fd(job, fd, st, key)
            finally:
                with self.cond:
                    self._inflight.discard(key)
        finally:
            release(fd)


    def _compress_fd(self, job: _Job, fd: int, st: os.stat_result, key: tuple[int, int]) -> None:
        assert job.codec is not None
        directory, name = os.path.split(job.src)
        # The source's inode in the temp name tells other processes this backup is being compressed.
        # The temp file's lock tells a later cleanup that its writer is alive, so no cleanup may see
        # the name before the lock is on it: it would take the file for a dead writer's leftover and
        # delete it under us (the backup then stays uncompressed). Every cleanup runs under the log's
        # exclusion (RotationPolicy.after_rotation), so the file is created and locked under it too.
        with job.guard():
            # 0600 until it is complete: its lock tells a cleanup that its writer is alive, and a
            # user who could open it could hold that lock (the backup would never be compressed).
            tmp, tfd = create_temp(directory, name + job.codec.ext, 0o600, tag=f"{st.st_ino:x}-")
            # A child forked while the lock is on must not keep it (the temp file would look live
            # to every cleanup for as long as the child lives): see lock.hold.
            hold(tfd)
            try:
                if self.temp_hook is not None:
                    self.temp_hook(tmp)
                flock(tfd, LOCK_EX)
            except BaseException:
                release(tfd)
                os.unlink(tmp)
                raise
        try:
            with io.FileIO(tfd, "wb", closefd=False) as raw:
                with job.codec.writer(raw, name, st.st_mtime) as out:
                    while True:
                        chunk = os.read(fd, _CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        if self.chunk_hook is not None:
                            self.chunk_hook(job.src)
            _set_perms(tfd, job.perms, st.st_mode)
            os.fsync(tfd)
            with job.guard():
                where = job.locate(job.src, key)
                if where is None:
                    os.unlink(tmp)
                    return
                os.replace(tmp, where + job.codec.ext)
                tmp = ""
                # Back to back, so that a process killed here leaves both names (same records
                # twice) only for the width of one syscall; the next rotation of this log
                # recompresses and removes the plain one. Journaling file systems commit renames
                # in the same directory in order, so after a power cut the original is gone only
                # if the compressed file is there.
                self.trash(where)
            fsync_dir(directory)
        except BaseException:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            raise
        finally:
            release(tfd)


def _set_perms(fd: int, perms: Perms | None, mode: int) -> None:
    """The compressed backup's owner and mode: the ``chmod``/``owner`` options, else the mode
    of the backup it replaces (compressing must not widen who can read it)."""
    if perms is not None and perms.active:
        perms.apply(fd)
    if (perms is None or perms.chmod is None) and hasattr(os, "fchmod"):
        os.fchmod(fd, mode & 0o7777)


# One per process: every log of the process queues its backups here.
COMPRESSOR = Compressor()
# Registered after logging's own atexit hook, so it runs before it.
atexit.register(COMPRESSOR.drain)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=COMPRESSOR.after_fork)
