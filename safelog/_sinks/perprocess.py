"""``per-process`` strategy: every process appends to its own shard; nothing is shared.

No lock is taken at write time, so this is the fastest strategy and the only one that is safe
on network file systems (each file has exactly one writer). The shard is opened lazily, in the
process that writes, so a handler created before ``fork()`` gives each child its own shard.
While open, the shard carries a shared ``flock``: a merge that cannot take it exclusively knows
a live process still appends to it. So the shard is created so that no other user can open it
(``Perms.private``): anyone who can read a shard can hold a lock on it.

The processes still share a rotation policy (``max_total_bytes`` spans every shard, and the
merged log is one), so each records its own beside the log at its first shard opening, in the
hidden file ``.LOG.policy``, when it differs from the last one recorded there (see
``RotationPolicy.agree``). Reading, comparing and appending happen under an exclusive ``flock``
on that file: of two processes that start together with different policies, the second one
reads the first one's record and warns. Without the lock both could read the file before either
appends, and neither would warn.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._policy.rotation import policy_record_path
from .._primitives.fileio import ATTEMPTS, READ_NOFOLLOW, close_quietly, gave_up, open_lockfile
from .._primitives.lock import LOCK_EX, LOCK_SH, flock, hold, release
from .._primitives.shard import ShardFrame, shard_path
from .lockfile import note_line, read_notes
from .thread import ThreadStrategy

if TYPE_CHECKING:
    from .._policy.config import FileConfig
    from .._policy.rotation import RotationPolicy

__all__ = ["PerProcessStrategy"]

# How much of an existing shard's end is read to find its last record header on reopen.
_TAIL = 64 * 1024


def _longest_pid() -> int:
    """The largest process id this system hands out (children get any of them)."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read()) - 1
    except (OSError, ValueError):
        return 4_194_303  # Linux's largest pid_max, less one; other systems stay below it


class PerProcessStrategy(ThreadStrategy):
    name = "per-process"
    lazy = True
    own_file = True

    def __init__(self, path: str, options: FileConfig, policy: RotationPolicy) -> None:
        super().__init__(path, options, policy)
        self.file.target = ""  # this process's shard: named when first opened
        self._frame = ShardFrame(options.encoding, options.errors)
        # Until this process's first shard opening: its policy is compared with the recorded one
        # (a fork child inherits a strategy that did this already: the same policy).
        self._agreeing = True

    def encode(self, msg: str, created: float) -> bytes:
        if self.file.fd < 0:
            # Open before framing: reopening an existing shard resumes its clamp and numbering.
            self._open_files()
        return self._frame.encode(msg, created)

    def target(self) -> str:
        file = self.file
        if not file.target:
            file.target = shard_path(self.path)
        return file.target

    def names(self, policy: RotationPolicy | None = None) -> list[tuple[str, str]]:
        return self.core.names("shard", shard_path(self.path, pid=_longest_pid()), [], policy)

    def _open_files(self) -> None:
        shard = self.target()
        for _ in range(ATTEMPTS):
            super()._open_files()
            flock(self.file.fd, LOCK_SH)
            # A merge holds LOCK_EX on a finished shard until it has removed it; a process
            # that reuses that pid waits above and would then append to the removed file.
            # Only a shard the path still names is ours.
            try:
                if os.stat(shard).st_ino == self.file.ino:
                    break
            except FileNotFoundError:
                pass
        else:
            raise gave_up(shard, "opened")
        if self._agreeing:
            self._agree()
        if self._frame.seq == 0 and self._size > 0:
            # Read through a descriptor of its own (ours is write-only), checked to be the
            # same file: nothing is read through a link.
            fd = os.open(shard, READ_NOFOLLOW)
            try:
                if os.fstat(fd).st_ino == self.file.ino:
                    os.lseek(fd, max(self._size - _TAIL, 0), os.SEEK_SET)
                    self._frame.resume(os.read(fd, _TAIL))
            finally:
                close_quietly(fd)

    def _agree(self) -> None:
        """Compare this process's rotation policy with the one recorded beside the log, and
        record it if it differs; a failure (a planted symlink, another user's file) is reported
        and logging goes on."""
        self._agreeing = False
        record = policy_record_path(self.path)
        try:
            # Private and never through a link, like every lock file (anyone who can open it can
            # hold its lock); registered with hold() for a fork from another thread meanwhile.
            fd = hold(open_lockfile(record, self.policy.perms))
            try:
                flock(fd, LOCK_EX)
                note = self.policy.agree(self.path, read_notes(fd, os.fstat(fd).st_size))
                if note:
                    os.write(fd, note_line(note))  # O_APPEND, one write: a whole line or none
            finally:
                release(fd)
        except OSError:
            what = "safelog: cannot record the rotation policy of %s in %s; logging goes on"
            self.policy.report(what, self.path, record)

    def after_fork(self) -> None:
        super().after_fork()
        self.file.target = ""
        self._frame = ShardFrame(self.options.encoding, self.options.errors)
