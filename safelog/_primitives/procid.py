"""Who a process is, in a form that outlives pid reuse: its pid, the instant it started and the
boot it belongs to (Linux ``/proc``), and the host.

``pid`` alone names a different process once it is reused; the start time (clock ticks since
boot, field 22 of ``/proc/<pid>/stat``) and the boot id tell them apart. Where ``/proc`` is
missing the key is the pid alone, and a reused pid is taken for the same process.
"""

from __future__ import annotations

import os

from .shard import hostname

__all__ = ["process_key", "is_alive", "host", "same_program", "stat_fields"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def host() -> str:
    """This machine's name, as shard names spell it (one name for a host across safelog)."""
    return hostname()


def _boot() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()[:8]
    except OSError:
        return ""


def stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first), [] when it
    cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name in parentheses may contain spaces and ")": split after the last.
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _started(pid: int) -> str:
    fields = stat_fields(pid)
    return fields[19].decode() if len(fields) > 19 else ""


def process_key(pid: int) -> str:
    """``host:pid.start.boot`` for the process ``pid`` ("" parts where ``/proc`` cannot say)."""
    return f"{host()}:{pid}.{_started(pid)}.{_boot()}"


def is_alive(key: str) -> bool:
    """True if the process ``key`` names still runs on this host (False for another host's)."""
    where, _, rest = key.partition(":")
    pid, _, _ = rest.partition(".")
    if where != host() or not pid.isdigit():
        return False
    return process_key(int(pid)) == key


def same_program(pid: int, other: int) -> bool:
    """True when the two processes run the same executable with the same command line: one was
    forked from the other without an ``exec`` (gunicorn's workers from its master, a fork pool's
    workers). False where ``/proc`` cannot tell, or when a process renamed itself."""
    try:
        exe = [os.readlink(f"/proc/{p}/exe") for p in (pid, other)]
        cmd = []
        for p in (pid, other):
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd.append(f.read())
    except OSError:
        return False
    return exe[0] == exe[1] and cmd[0] == cmd[1] and bool(cmd[0])
