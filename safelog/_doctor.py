"""``safelog doctor``: what a log's files say about the deployment writing it, on one screen.

It only looks: it lists the log's directory, stats files, reads ``/proc/locks``, the mount
table and ``/proc/<pid>/fd``; it takes no lock and changes nothing.

What it checks
    the strategy the files show (shards: ``per-process``; a lock file: ``flock``; a log alone:
    ``thread`` or a handler of the stdlib); the file system and whether ``flock`` and
    ``O_APPEND`` hold there; who holds a lock on the log's files now (pid, command line, state:
    a stopped process holding the lock exclusively stops every writer); which processes have
    them open, and whether several write a log that has no lock file; the policies processes
    recorded (:func:`recorded_policies`); files named like the log that are none of its files
    (retention never removes them); leftovers of processes that died (compression temp files
    nobody holds, backups renamed away and never unlinked, a merge's temp files, a merge
    journal with a step pending); shards of processes that are gone (their records wait for a
    merge); disk use of the log, its backups and shards, and the space left.

What it cannot know
    processes on other hosts (a network file system shows no remote locks or open files, and
    another host's pids mean nothing here); processes in other pid namespaces (a container's
    locks show pid 0 or a pid of another namespace) or of other users when ``/proc`` hides them;
    whether a lock holder is stuck or just busy for a moment; backups named by a namer; a
    ``flock`` lock file kept elsewhere (``lock_dir``) unless it is given; what nothing has
    written yet.

The JSON form (``--json``) is a stable schema, version 1; see docs/operating.md.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from ._diagnosis import SCHEMA, Diagnosis, Finding, PolicySeen
from ._merge import LOCK_SUFFIX, TMP_INFIX
from ._merge.journal import DAMAGED_SUFFIX, STATE_SUFFIX
from ._policy.fingerprint import Fingerprint
from ._policy.naming import backup_name, work_file
from ._policy.rotation import policy_record_path, shards_lock_path
from ._primitives.fileio import READ_NOFOLLOW
from ._primitives.fsdetect import is_network, mount
from ._primitives.procid import is_alive
from ._primitives.shard import hostname, parse_shard_name
from ._proc import alive, proc_locks, process, writes
from ._sinks.flock import lock_path_for
from ._sinks.lockfile import read_notes

__all__ = ["diagnose", "Diagnosis", "Finding", "PolicySeen", "recorded_policies", "DoctorError", "SCHEMA"]

# A backup renamed away to be unlinked is gone in milliseconds; one older than this was left.
TRASH_GRACE = 60.0


class DoctorError(Exception):
    """The diagnosis cannot run at all (no such directory)."""


def recorded_policies(log: str, lock_dir: str | None = None) -> list[PolicySeen]:
    """The rotation policies the processes writing ``log`` recorded, in its ``flock`` lock file
    or in the policy record beside a ``per-process`` log: the one in force (the last recorded)
    and every other one recorded by a process that still runs on this host. A process records
    its policy at its first write when it differs from the one in force, so processes that
    agreed with it are not listed one by one; ``thread`` logs record none (one writing process)."""
    shown = []
    for path in (lock_path_for(log, lock_dir), policy_record_path(log)):
        recorded = [n for n in _notes(path) if isinstance(n.get("policy"), str) and isinstance(n.get("settings"), dict)]
        shown += [n for n in recorded[:-1] if is_alive(str(n.get("key", "")))] + recorded[-1:]
    return [
        PolicySeen(int(n.get("pid", 0)), str(n.get("host", "")), p, Fingerprint(p, n["settings"]).summary())
        for n in shown
        for p in (n["policy"],)
    ]


def _notes(path: str) -> list[dict[str, Any]]:
    """The records in the file ``path`` (none if it is missing, a link or unreadable)."""
    try:
        fd = os.open(path, READ_NOFOLLOW)
    except OSError:
        return []
    try:
        return read_notes(fd, os.fstat(fd).st_size)
    except OSError:
        return []
    finally:
        os.close(fd)


def diagnose(logfile: str, lock_dir: str | None = None, now: float | None = None) -> Diagnosis:
    """Look at ``logfile``'s files and the processes around them (see the module docstring)."""
    now = time.time() if now is None else now
    log = os.path.abspath(logfile)
    directory, name = os.path.split(log)
    if not os.path.isdir(directory):
        raise DoctorError(f"no such directory: {directory}")
    if os.path.isdir(log):
        raise DoctorError(f"{log} is a directory; give the log path the handler was configured with")
    d = Diagnosis(log)
    files = _classify(directory, name, lock_path_for(log, lock_dir), d)
    holders = _lock_holders(files, d)
    _open_by(files, d)
    _strategy(files, d)
    _filesystem(log, d)
    _shards(files, holders, d)
    _leftovers(files, holders, d, now, log)
    _policies(log, lock_dir, d)
    _disk(files, directory, d)
    return d


@dataclass
class _File:
    path: str
    kind: str  # log, lock file, merge journal, merge lock, backup, shard, shard backup, damaged, temp, trash,
    # policy record, shards lock, unknown
    st: os.stat_result
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int]:
        return (os.major(self.st.st_dev), os.minor(self.st.st_dev), self.st.st_ino)


def _classify(directory: str, name: str, lock_path: str, d: Diagnosis) -> list[_File]:
    """Every file that belongs to the log, by its name; names that look like its files but fit
    none of its naming are reported."""
    found: list[_File] = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise DoctorError(f"cannot list {directory}: {exc.strerror or exc}") from None
    for entry in entries:
        path = os.path.join(directory, entry)
        kind, detail = _kind(name, entry, path, lock_path)
        if kind is None:
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        found.append(_File(path, kind, st, detail))
    if os.path.dirname(lock_path) != directory:
        try:
            found.append(_File(lock_path, "lock file", os.lstat(lock_path)))
        except FileNotFoundError:
            pass
    for f in found:
        d.files.append({"path": f.path, "kind": f.kind, "bytes": f.st.st_size, **f.detail})
        if f.kind == "unknown":
            d.add(
                "problem",
                "unknown-name",
                "named like a file of this log but fits none of its names (a backup renamed by hand "
                "or by a namer, another program's file): retention never removes it",
                f.path,
            )
    return found


def _kind(name: str, entry: str, path: str, lock_path: str) -> tuple[str | None, dict[str, Any]]:
    if path == lock_path:
        return "lock file", {}
    if entry == name:
        return "log", {}
    if entry == name + STATE_SUFFIX:
        return "merge journal", {}
    if entry == name + LOCK_SUFFIX:
        return "merge lock", {}
    if entry.startswith("." + name):
        return _hidden_kind(name, entry)
    if not entry.startswith(name + "."):
        return None, {}
    parts = parse_shard_name(name, entry)
    if parts is not None:
        plain = not parts["n"] and not parts["period"] and not parts["ext"]
        return ("shard" if plain else "shard backup"), {"host": parts["host"], "pid": int(str(parts["pid"]))}
    if re.search(re.escape(DAMAGED_SUFFIX) + r"(?:\.\d+)?\Z", entry):  # \Z: "$" matches before a final "\n"
        base = re.sub(re.escape(DAMAGED_SUFFIX) + r"(?:\.\d+)?\Z", "", entry)
        if parse_shard_name(name, base) is not None:
            return "damaged", {}
    if backup_name(name, entry) is not None:
        return "backup", {}
    return "unknown", {}


def _hidden_kind(name: str, entry: str) -> tuple[str | None, dict[str, Any]]:
    """What a hidden file beside the log ``name`` is: a merge's or a compressor's temp file, a
    backup being removed, a ``per-process`` log's policy record or lock of its shards, or nothing
    of the log's (None)."""
    if entry == os.path.basename(policy_record_path(name)):
        return "policy record", {}
    if entry == os.path.basename(shards_lock_path(name)):
        return "shards lock", {}
    if entry.startswith(f".{name}{TMP_INFIX}") and entry.endswith(".tmp"):
        return "temp", {"of": "merge"}
    work = work_file(entry)
    if work is not None and _belongs(name, work[1]):
        return ("temp" if work[0] == "compression" else "trash"), {"of": work[1]}
    return None, {}


def _belongs(name: str, target: str) -> bool:
    return target == name or backup_name(name, target) is not None or parse_shard_name(name, target) is not None


# -- processes ----------------------------------------------------------------------------------


def _lock_holders(files: list[_File], d: Diagnosis) -> dict[tuple[int, int, int], list[dict[str, Any]]]:
    """The lock entries of /proc/locks on the log's files, by file."""
    by_key = {f.key: f for f in files}
    held: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    try:
        seen = proc_locks()
    except OSError:
        d.add("note", "no-proc-locks", "cannot read /proc/locks: lock holders unknown")
        return held
    for m in seen:
        key = (int(m["major"], 16), int(m["minor"], 16), int(m["ino"]))
        f = by_key.get(key)
        if f is None:
            continue
        pid = int(m["pid"])
        command, state = process(pid) if pid > 0 else ("", "")
        entry = {
            "pid": pid,
            "command": command,
            "state": state,
            "path": f.path,
            "role": f.kind,
            "type": m["type"],
            "mode": "exclusive" if m["mode"] == "WRITE" else "shared",
            "waiting": bool(m["waiting"]),
        }
        held.setdefault(key, []).append(entry)
        d.locks.append(entry)
    for entry in d.locks:
        if entry["role"] == "lock file" and entry["mode"] == "exclusive" and not entry["waiting"]:
            if entry["state"].startswith("stopped"):
                d.add(
                    "problem",
                    "stopped-lock-holder",
                    f"process {entry['pid']} ({entry['command'] or '?'}) is stopped while holding the "
                    f"lock exclusively: every writer of the log waits for it (SIGCONT or end it)",
                    entry["path"],
                )
            else:
                d.add(
                    "warning",
                    "lock-held",
                    f"process {entry['pid']} holds the lock exclusively right now (a rotation, or a "
                    f"process slow to let go); run doctor again to see whether it stays",
                    entry["path"],
                )
    return held


def _open_by(files: list[_File], d: Diagnosis) -> None:
    """Processes that have the log's files open (those whose /proc/<pid>/fd can be read)."""
    wanted = {(f.st.st_dev, f.st.st_ino): f for f in files if f.kind in ("log", "lock file", "shard")}
    if not wanted:
        return
    hidden = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            hidden += 1
            continue
        except OSError:
            continue  # exited meanwhile
        seen = _files_open(entry, fds, wanted)
        if seen:
            command, state = process(int(entry))
            d.writers.append(
                {"pid": int(entry), "command": command, "state": state, "files": sorted(seen),
                 "writing": sorted(p for p, w in seen.items() if w)}
            )  # fmt: skip
    if hidden:
        d.add("note", "hidden-processes", f"{hidden} processes could not be looked into (other users)")
    log = next((f for f in files if f.kind == "log"), None)
    has_lock = any(f.kind == "lock file" for f in files)
    if log is not None and not has_lock:
        writing = [w for w in d.writers if log.path in w["writing"]]
        if len(writing) > 1:
            d.add(
                "problem",
                "uncoordinated-writers",
                f"{len(writing)} processes ({', '.join(str(w['pid']) for w in writing)}) have it open for "
                f"writing and it has no lock file: their writes and rotations are not coordinated "
                f"(the thread strategy serves one process; use flock or per-process, or give "
                f"--lock-dir if the lock file is elsewhere)",
                log.path,
            )


def _files_open(pid: str, fds: list[str], wanted: dict[tuple[int, int], _File]) -> dict[str, bool]:
    """Which of the ``wanted`` files process ``pid`` has open among its descriptors ``fds``,
    and whether it writes each."""
    seen: dict[str, bool] = {}
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        f = wanted.get((st.st_dev, st.st_ino))
        if f is None:
            continue
        seen[f.path] = seen.get(f.path, False) or writes(pid, fd)
    return seen


# -- the checks ---------------------------------------------------------------------------------


def _strategy(files: list[_File], d: Diagnosis) -> None:
    kinds = {f.kind for f in files}
    shards = [f for f in files if f.kind in ("shard", "shard backup")]
    writers = {(f.detail["host"], f.detail["pid"]) for f in shards}
    found = []
    if shards:
        found.append("per-process")
        d.evidence.append(f"{len(shards)} shard file(s) of {len(writers)} process(es)")
    if "merge journal" in kinds:
        if not shards:
            found.append("per-process")
        d.evidence.append("merged before (a merge journal)")
    if "policy record" in kinds and "per-process" not in found:
        found.append("per-process")
        d.evidence.append("a per-process policy record")
    if "lock file" in kinds:
        found.append("flock")
        d.evidence.append("a lock file")
    if not found and "log" in kinds:
        found.append("thread")
        d.evidence.append("a log without lock file or shards (thread, or a stdlib handler)")
    backups = sum(1 for f in files if f.kind == "backup")
    if backups:
        d.evidence.append(f"{backups} backup(s)")
    if not found:
        d.strategy = "none"
        d.add("note", "nothing-written", "no file of this log exists yet")
    elif len(found) == 1:
        d.strategy = found[0]
    else:
        d.strategy = "mixed"
        d.add(
            "warning",
            "mixed-strategies",
            f"files of several strategies ({', '.join(found)}): the configuration changed, or two "
            f"configurations write this path",
        )


def _filesystem(log: str, d: Diagnosis) -> None:
    point, kind = mount(log)
    network = is_network(kind)
    d.filesystem = {
        "type": kind,
        "mount": point,
        "network": network,
        "flock_safe": not network,
        "append_safe": not network,
    }
    if network and d.strategy in ("flock", "thread", "mixed"):
        d.add(
            "problem",
            "network-fs",
            f"the log is on a network file system ({kind}): flock() and O_APPEND do not hold across "
            f"hosts there; use strategy='per-process'",
            log,
        )


def _shards(files: list[_File], holders: dict[tuple[int, int, int], list[dict[str, Any]]], d: Diagnosis) -> None:
    """Shards whose process is gone: their records wait for a merge."""
    here = hostname()
    backups: dict[tuple[str, int], int] = {}
    for f in files:
        if f.kind == "shard backup":
            k = (f.detail["host"], f.detail["pid"])
            backups[k] = backups.get(k, 0) + 1
    for f in files:
        if f.kind != "shard":
            continue
        host, pid = f.detail["host"], f.detail["pid"]
        more = backups.pop((host, pid), 0)
        also = f" (and {more} backup(s))" if more else ""
        if host != here:
            why = f"written on host {host}: whether process {pid} is alive cannot be told here"
            d.add("note", "foreign-shard", why, f.path)
            continue
        if any(not h["waiting"] for h in holders.get(f.key, [])):
            continue  # its writer holds it
        merge = f"its records{also} wait for `safelog merge {d.log}`"
        if alive(pid):
            command, _ = process(pid)
            d.add(
                "problem",
                "finished-shard",
                f"process {pid} ({command or '?'}) runs but no longer holds it (the pid was reused, or its "
                f"handler was closed): {merge}",
                f.path,
            )
        else:
            d.add("problem", "dead-shard", f"process {pid} is gone: {merge}", f.path)
    for (host, pid), n in sorted(backups.items()):
        if host == here and not alive(pid):
            d.add("problem", "dead-shard", f"{n} backup(s) of process {pid}, which is gone, wait for a merge")


def _leftovers(
    files: list[_File], holders: dict[tuple[int, int, int], list[dict[str, Any]]], d: Diagnosis, now: float, log: str
) -> None:
    merging = any(
        not h["waiting"] for f in files if f.kind == "merge lock" for h in holders.get(f.key, [])
    )
    if merging:
        d.add("note", "merging", "a merge is running now")
    for f in files:
        if f.kind == "temp":
            if f.detail.get("of") == "merge":
                if not merging:
                    why = "a temp file of a merge that died; the next merge removes it"
                    d.add("problem", "leftover-temp", why, f.path)
            elif not holders.get(f.key):
                d.add(
                    "problem",
                    "leftover-temp",
                    "a compression temp file nobody is writing (its process died); the next rotation "
                    "removes it",
                    f.path,
                )
        elif f.kind == "trash" and now - f.st.st_ctime > TRASH_GRACE:
            d.add(
                "problem",
                "leftover-trash",
                "a backup renamed away to be removed, left by a process that died first; the next "
                "rotation removes it",
                f.path,
            )
        elif f.kind == "damaged":
            why = "set aside by a merge (damaged input): look at it, then remove it"
            d.add("warning", "damaged-shard", why, f.path)
        elif f.kind == "merge journal" and not merging:
            try:
                with open(f.path, "rb") as fh:
                    pending = (json.loads(fh.read()) or {}).get("pending")
            except (OSError, ValueError, AttributeError):
                d.add("problem", "bad-journal", "the merge journal cannot be read: merges refuse to run", f.path)
                continue
            if pending:
                d.add(
                    "problem",
                    "merge-interrupted",
                    f"a merge stopped half-way ({pending.get('stage', '?')}); the next `safelog merge "
                    f"{log}` finishes or undoes it",
                    f.path,
                )


def _policies(log: str, lock_dir: str | None, d: Diagnosis) -> None:
    d.policies = recorded_policies(log, lock_dir)
    if len({p.fingerprint for p in d.policies}) > 1:
        groups: dict[str, list[PolicySeen]] = {}
        for p in d.policies:
            groups.setdefault(p.fingerprint, []).append(p)
        words = "; ".join(
            f"{g[0].summary} (pid {', '.join(str(p.pid) for p in g)})" for g in groups.values()
        )
        d.add("problem", "policy-mismatch", f"processes write it with different settings: {words}", log)


def _disk(files: list[_File], directory: str, d: Diagnosis) -> None:
    sums = {"log": 0, "backups": 0, "shards": 0, "other": 0}
    for f in files:
        if not stat.S_ISREG(f.st.st_mode):
            continue
        group = {"log": "log", "backup": "backups", "shard": "shards", "shard backup": "shards"}.get(f.kind, "other")
        sums[group] += f.st.st_size
    sums["total"] = sum(sums.values())
    try:
        vfs = os.statvfs(directory)
        sums["free"] = vfs.f_bavail * vfs.f_frsize
    except OSError:
        sums["free"] = 0
    d.disk = sums
