"""One log file a strategy appends to: its descriptor and inode, opened under the rules of
``_primitives.fileio``, the check that its path still names it, and appends that never leave a
torn record behind. Strategies hold one (``flock`` a lock file beside it, see :mod:`.lockfile`).

Every method runs under the owning strategy's exclusion, except where a strategy's fast path
says otherwise.
"""

from __future__ import annotations

import os
from time import monotonic

from .._policy.config import FileConfig
from .._primitives.fileio import Place, close_quietly, open_append
from .._primitives.perms import Perms
from .strategy import Retired

__all__ = ["LogFile", "CHECK_INTERVAL"]

# How often a writer checks that the path it writes still names the file it holds open (log
# file deleted, renamed by logrotate, lock file replaced). Checking on every record would cost a
# stat() (~2 µs, 10% of a record); once a second costs nothing and bounds the time records go
# to a file nobody will read.
CHECK_INTERVAL = 1.0


class LogFile:
    """The open file behind a strategy (or none: ``fd`` is -1)."""

    __slots__ = ("target", "options", "own", "fd", "ino", "next_check", "watching", "torn", "retired", "truncate",
                 "place", "requests")  # fmt: skip

    def __init__(self, path: str, options: FileConfig, *, own: bool = False, truncate: bool = False) -> None:
        self.target = path  # the file appended to: the log, or this process's shard
        self.options = options
        # A file only safelog creates (a shard): the full rule of fileio.check_file, and created
        # so that no other user can open it (it carries a lock).
        self.own = own
        self.fd = -1
        self.ino = -1
        self.next_check = 0.0  # when to check next that the path still names the open file
        self.watching = False  # check before every record instead (WatchedFileHandler)
        # Set when a write failed after part of a record reached the file: the next write starts
        # with a line break so the torn fragment cannot glue itself to a good record.
        self.torn = False
        self.retired = False  # set by the strategy's retire(): never opened again
        self.truncate = truncate  # mode='w': emptied when first opened by this process
        self.requests = 0  # reopens requested from a signal handler (see request_check)
        # The log's directory, reached without following links; it remembers the directories
        # of the path it saw first (see Place).
        self.place = Place(os.path.dirname(path))

    def open(self) -> None:
        """(Re)open :attr:`target` for appending, creating it if needed."""
        # Every descriptor is forgotten before it is closed, and kept only once open: a child
        # forked by another thread in between then never closes (in after_fork) a number the
        # kernel has already given to someone else, such as the pipe multiprocessing forks with.
        fd, self.fd = self.fd, -1
        close_quietly(fd)
        if self.retired:
            raise Retired(self.target)
        # Before the open, so that a reopen requested after it (request_check) is not undone.
        self.schedule_check()
        perms = self.options.set_perms
        if self.own:
            perms = (perms or Perms()).private()
        fd = open_append(
            self.target, self.options.create_mode, truncate=self.truncate, perms=perms, place=self.place, own=self.own
        )
        self.truncate = False
        self.fd = fd
        self.ino = os.fstat(fd).st_ino

    def close(self) -> None:
        self.forget()
        self.place.close()

    def forget(self) -> None:
        """Close the descriptor only (the directory's stays)."""
        fd, self.fd = self.fd, -1  # forgotten first: see open
        close_quietly(fd)

    def schedule_check(self) -> None:
        self.next_check = 0.0 if self.watching else monotonic() + CHECK_INTERVAL

    def moved(self) -> bool:
        """True when the path no longer names the open file (deleted, or renamed by someone)."""
        self.schedule_check()
        try:
            return os.stat(self.target).st_ino != self.ino
        except FileNotFoundError:
            return True

    def request_check(self) -> None:
        """Make the next record check the path (from a signal handler: takes no lock)."""
        self.requests += 1
        self.next_check = 0.0

    def identity(self) -> tuple[int, int]:
        if self.fd < 0:
            return -1, -1
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def write_all(self, data: bytes) -> None:
        """One ``write()`` per record; loop only if the kernel took part of it."""
        fd = self.fd
        n = os.write(fd, data)
        if n != len(data):
            self.write_rest(fd, data, n)

    def write_rest(self, fd: int, data: bytes, n: int) -> None:
        """The kernel took only ``n`` bytes of ``data``: write the rest, or take back the part
        written if that fails."""
        try:
            while n < len(data):
                n += os.write(fd, data[n:])
        except OSError:
            self.untear(fd, n)
            raise

    def untear(self, fd: int, written: int) -> None:
        """Remove the ``written`` bytes of a record that failed half-way (disk full, file too
        big), so that the next record, ours or another process's, does not glue onto them.

        Every caller holds the exclusion of its strategy, so the record is the last thing in
        the file. If the file grew past our own write anyway, or cannot be truncated, leave the
        fragment and make the next write start a new line instead.
        """
        try:
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_size == end:
                # Shrinking a file is allowed even at RLIMIT_FSIZE or with the disk full.
                os.ftruncate(fd, end - written)
                return
        except OSError:
            pass
        self.torn = True

    def after_fork(self) -> None:
        """mode='w' truncates in the process that configured the handler only: a child
        inheriting it appends; the parent's descriptors are not this process's to write."""
        self.truncate = False
        self.close()
