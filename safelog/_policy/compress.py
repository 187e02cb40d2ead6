"""Compression of rotated backups: in a background thread, outside every lock, atomically.

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
  renamed away under the lock and unlinked afterwards (see :func:`trash`).

The temp-file + fsync + ``os.replace`` steps are a private helper here; they are the same as the
shared atomic-replace helper and can move there.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import secrets
import sys
import threading
from collections import deque
from contextlib import AbstractContextManager
from typing import Any, Callable

from .._primitives.atomic import TMP_SUFFIX, create_temp, fsync_dir, temp_name
from .._primitives.codec import CODECS as CODECS, EXTENSIONS as EXTENSIONS, Codec as Codec
from .._primitives.fileio import open_input
from .._primitives.lock import LOCK_EX, flock, hold, release
from .._primitives.perms import Perms
from .._primitives.reentry import section

__all__ = ["Codec", "CODECS", "EXTENSIONS", "parse_compress", "submit", "trash", "trash_name", "work_names", "discard", "wait", "TMP_SUFFIX", "DEL_SUFFIX"]

_CHUNK = 1 << 20
DEL_SUFFIX = ".del"
_ALIASES = {"gz": "gzip", "bzip2": "bz2", "lzma": "xz"}


def parse_compress(value: Any) -> Codec | None:
    """``compress``: ``"gzip"``, ``"bz2"``, ``"xz"`` (or ``None``/``False`` for none)."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        name = _ALIASES.get(value.strip().lower(), value.strip().lower())
        if name in CODECS:
            return CODECS[name]
        if name in ("", "none", "no", "false"):
            return None
    raise ValueError(f"compress must be one of 'gzip', 'bz2', 'xz' or None; got {value!r}")


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


# At most one worker thread per process, started by the rotation that queued the work, right
# after that writer released the log's lock (see Sink.write): queueing under the lock is a deque
# append, never a thread start. It exits when the queue is empty. A normal interpreter exit
# waits for the queue (atexit); a killed process leaves the uncompressed backup, which the next
# rotation queues again.
_cond = threading.Condition()
_jobs: deque[_Job] = deque()
_busy = 0
_worker: threading.Thread | None = None
_inflight: set[tuple[int, int]] = set()

# Tests stop the worker half-way through a file (crash simulation): called after each chunk.
_chunk_hook: Callable[[str], None] | None = None
# Tests hold the worker between creating a temp file and locking it: called with its path.
_temp_hook: Callable[[str], None] | None = None


def submit(src: str, codec: Codec, locate: Locate, guard: Guard, perms: Perms | None, on_error: OnError) -> None:
    """Queue ``src`` for compression; returns at once."""
    _queue(_Job(src, codec, locate, guard, perms, on_error))


def discard(path: str) -> None:
    """Unlink ``path`` (a name nobody else uses: see :func:`trash`) in the background."""
    _queue(_Job(path, None, _nowhere, _no_guard, None, report_error))


def trash(path: str) -> None:
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
    discard(hidden)


def trash_name(name: str, token: str | None = None) -> str:
    """The hidden name :func:`trash` gives ``name`` until it is unlinked."""
    return f".{name}.{secrets.token_hex(6) if token is None else token}{DEL_SUFFIX}"


def work_names(backup: str, codec: Codec | None) -> list[tuple[str, str]]:
    """What and where the hidden files made beside ``backup`` are, at their longest: the temp
    file ``codec`` compresses it into (tagged with the backup's inode), and the name a backup
    (compressed or not) is renamed to when it is removed. For the name-length check."""
    directory, name = os.path.split(backup)
    ext = "" if codec is None else codec.ext
    names = [("removed backup", os.path.join(directory, trash_name(name + ext, "0" * 12)))]
    if codec is not None:
        tag = "f" * 16 + "-"  # the inode, in hex: 64 bits at most
        names.append(("compression temp file", os.path.join(directory, temp_name(name + ext, tag, "0" * 12))))
    return names


def _nowhere(src: str, key: tuple[int, int]) -> str | None:
    return None


def _no_guard() -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _queue(job: _Job) -> None:
    with _cond:
        if any(j.src == job.src for j in _jobs):
            return
        _jobs.append(job)
        _cond.notify_all()


def start_worker() -> None:
    """Start this process's worker if jobs wait and it is not running (call outside log locks)."""
    with _cond:
        _start_locked()


def _start_locked() -> None:
    global _worker
    if _worker is None and _jobs:
        _worker = threading.Thread(target=_run, name="safelog-compress", daemon=True)
        _worker.start()


def wait(timeout: float | None = None) -> bool:
    """Block until every queued backup is compressed (tests, orderly shutdown)."""
    with section(), _cond:
        _start_locked()
        return _cond.wait_for(lambda: not _jobs and not _busy, timeout)


def _run() -> None:
    # Not niced, on purpose: this thread shares the GIL with the application's threads, and a
    # low-priority thread preempted while holding it makes them wait (measured: worst emit 37 ms
    # with nice +10 on a loaded 2-core machine, 9 ms without).
    #
    # Each job is a section (see _primitives/reentry.py): a finalizer the garbage collector runs
    # in this thread while it holds _cond or the log's lock must not log then (a writer rotating
    # under its lock waits for _cond: a lock-order cycle); its records are written after the job.
    while True:
        with section():
            if not _one_job():
                return


def _one_job() -> bool:
    """Take and do one job; False when there is none left (the worker is gone)."""
    global _busy, _worker
    with _cond:
        if not _jobs:
            # Gone when idle: a process that forks later (a pool, a gunicorn master after
            # a rotation) does not fork with a thread running.
            _worker = None
            _cond.notify_all()
            return False
        job = _jobs.popleft()
        _busy += 1
    try:
        if job.codec is None:
            try:
                os.unlink(job.src)
            except FileNotFoundError:
                pass
        else:
            compress_file(job)
    except BaseException as exc:  # the backup stays uncompressed; say why, keep going
        try:
            job.on_error(job.src, exc)
        except Exception:
            pass
    finally:
        with _cond:
            _busy -= 1
            _cond.notify_all()
    return True


def compress_file(job: _Job) -> None:
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
        with _cond:
            if key in _inflight:
                return
            _inflight.add(key)
        try:
            _compress_fd(job, fd, st, key)
        finally:
            with _cond:
                _inflight.discard(key)
    finally:
        release(fd)


def _compress_fd(job: _Job, fd: int, st: os.stat_result, key: tuple[int, int]) -> None:
    assert job.codec is not None
    directory, name = os.path.split(job.src)
    # The source's inode in the temp name tells other processes this backup is being compressed.
    # The temp file's lock tells a later cleanup that its writer is alive, so no cleanup may see
    # the name before the lock is on it: it would take the file for a dead writer's leftover and
    # delete it under us (the backup then stays uncompressed). Every cleanup runs under the log's
    # exclusion (Rollover.after_rollover), so the file is created and locked under it too.
    with job.guard():
        # 0600 until it is complete: its lock tells a cleanup that its writer is alive, and a
        # user who could open it could hold that lock (the backup would never be compressed).
        tmp, tfd = create_temp(directory, name + job.codec.ext, 0o600, tag=f"{st.st_ino:x}-")
        # A child forked while the lock is on must not keep it (the temp file would look live
        # to every cleanup for as long as the child lives): see lock.hold.
        hold(tfd)
        try:
            if _temp_hook is not None:
                _temp_hook(tmp)
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
                    if _chunk_hook is not None:
                        _chunk_hook(job.src)
        perms = job.perms
        if perms is not None and perms.active:
            perms.apply(tfd)
        if perms is None or perms.chmod is None:
            # The backup keeps the log's permission bits: compressing must not widen who can
            # read it.
            if hasattr(os, "fchmod"):
                os.fchmod(tfd, st.st_mode & 0o7777)
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
            trash(where)
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


def report_error(src: str, exc: BaseException) -> None:
    """Default error report of the worker (no log record to hand to ``handleError``)."""
    import logging

    if logging.raiseExceptions and sys.stderr:
        sys.stderr.write(f"--- safelog: compressing {src} failed, left uncompressed: {type(exc).__name__}: {exc}\n")


@atexit.register
def _drain() -> None:
    # Registered after logging's own atexit hook, so it runs before it: the last rotation's
    # backup is compressed before the process exits. Bounded, so that a worker stuck on a
    # lock held by a hung process cannot keep the process alive; what it leaves is safe.
    if _worker is not None or _jobs:
        wait(300)


def _reinit_after_fork() -> None:
    # The worker thread does not exist in a forked child; its queue is the parent's business.
    global _cond, _worker, _busy
    _cond = threading.Condition()
    _jobs.clear()
    _inflight.clear()
    _worker = None
    _busy = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
