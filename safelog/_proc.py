"""What ``/proc`` says about processes and locks (Linux): a process's command line and state,
whether it lives, whether a descriptor of it writes, and the table of file locks."""

from __future__ import annotations

import os
import re

from ._primitives.procid import stat_fields

__all__ = ["PROC_LOCKS", "process", "read_proc_locks", "proc_locks", "writes", "alive"]

PROC_LOCKS = "/proc/locks"
_LOCK_RE = re.compile(
    r"^(?P<ordinal>\d+):\s+(?P<waiting>->\s+)?(?P<type>\S+)\s+\S+\s+(?P<mode>\S+)\s+(?P<pid>-?\d+)\s+"
    r"(?P<major>[0-9a-f]+):(?P<minor>[0-9a-f]+):(?P<ino>\d+)\s"
)


def process(pid: int) -> tuple[str, str]:
    """(command line, state in words) of ``pid``, ("", "") when it cannot be seen."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        command = ""
    fields = stat_fields(pid)
    code = fields[0].decode() if fields else ""
    states = {"R": "running", "S": "sleeping", "D": "in I/O", "T": "stopped", "t": "stopped (traced)", "Z": "zombie"}
    return command, states.get(code, code)


def read_proc_locks() -> list[str]:
    with open(PROC_LOCKS) as fh:
        return fh.read().splitlines()


def proc_locks() -> list[re.Match[str]]:
    """The lock entries of ``/proc/locks``, each once, from two readings taken together.

    The kernel hands the table out a page per read() and finds its place again by counting
    entries: a lock taken or let go by any process between two pages shifts the rest, so one
    reading can show an entry twice or miss one (seen with a busy machine's few hundred locks).
    An entry is known by everything but its ordinal; one missed by a reading is nearly always
    in the other (a lock let go meanwhile may then be shown: doctor's view is of a moment anyway).
    """
    found: dict[str, re.Match[str]] = {}
    for _ in range(2):
        for line in read_proc_locks():
            m = _LOCK_RE.match(line)
            if m is not None:
                found.setdefault(line[m.end("ordinal") :].strip(), m)
    return list(found.values())


def writes(pid: str, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR) != 0
    except (OSError, ValueError):
        pass
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
