"""One merge run: lock the output, recover, plan, append, commit, remove (see the package's
docstring for the whole)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from typing import Any

from .._policy.config import RotationConfig
from .._primitives.atomic import fsync_dir, temp_name
from .._primitives.fileio import Place, open_append, open_lockfile
from .._primitives.lock import LOCK_EX, try_lock, unlock_and_close
from .._primitives.paths import name_too_long, resolve_log_path
from .._primitives.perms import Perms, parse_chmod, parse_owner
from .._primitives.shard import parse_shard_name
from . import journal, parallel
from .discovery import File, discover, open_inputs
from .journal import STATE_SUFFIX, apply, output_id
from .output import merge_into
from .reader import Progress, Reader, Span, chunk_size
from .report import MergeError, MergeReport, Problem
from .rotate import Rotator, parse_policy

__all__ = ["merge", "MergeReport", "MergeError", "Problem", "created_names"]

LOCK_SUFFIX = ".merge.lock"
# Temp files of a merge are ".<output>.merge-<random>.tmp" (the second core's side file; the
# journal's temp ".<output>.merge-state.<random>.tmp" shares the prefix, so leftovers of both
# are cleaned).
TMP_INFIX = ".merge-"


def _side_name(out: str, token: str) -> str:
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}{TMP_INFIX}{token}-upper.tmp")


def created_names(out: str) -> list[tuple[str, str]]:
    """What and where the files a merge into ``out`` creates beside it are, at their longest:
    for the check that every one of them fits the file system's name limit."""
    directory, name = os.path.split(out)
    return [
        ("merge journal", out + STATE_SUFFIX),
        ("merge lock", out + LOCK_SUFFIX),
        ("merge journal's temp file", os.path.join(directory, temp_name(name + STATE_SUFFIX, token="0" * 12))),
        ("merge side file", _side_name(out, "0" * 12)),
    ]

# An action on a merged input once the output is durable: [op, path, size, identity] (op "rm"
# or "mv", see journal.apply), with the descriptor the merge holds it by (or -1).
_Action = tuple[list[Any], int]


def merge(
    logfile: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    keep: bool = False,
    include_live: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_bytes: int | str | None = None,
    backup_count: int | None = None,
    compress: str | None = None,
    retention: Any = None,
    chmod: int | str | None = None,
    owner: str | None = None,
) -> MergeReport:
    """Merge the shards of the ``per-process`` log ``logfile`` into ``output`` (default: the
    log path itself), appending one time-ordered batch to it in place.

    Finished shards are removed once the output is durable (``keep=True`` leaves them; a
    re-run then skips what was merged). Live shards are skipped, or with ``include_live``
    read up to their last complete record and left in place. Damaged input is reported in
    :attr:`MergeReport.problems` (file and line); every good record is still merged and the
    damaged file is moved aside to ``<name>.damaged`` instead of being removed.
    ``progress(done, total)`` is called now and then with input bytes.

    ``max_bytes`` and ``backup_count`` rotate the merged log before a batch that would take it
    to ``max_bytes`` or past it (backups ``<output>.1`` … ``.N``, as the handler names them);
    ``compress`` and ``retention`` compress and prune those backups. They take the handler's
    values (``"10 MB"``, ``"gzip"``, ``"14 days"``); a bad one raises ValueError or TypeError.
    ``chmod`` and ``owner`` (the handler's options) set the mode and owner of a merged log this
    merge creates, as a handler's do for its log (``merge_on_exit`` passes the handler's own);
    without them it gets ``0o666`` minus the umask.

    The paths are resolved once, as a handler's: your own (and root's) symlinks are followed;
    another user's symlink in a directory others can write is refused. Every file the merge
    opens beside them is opened without following links, and one another user may have put
    there is skipped (an input) or refused (the output, the journal, the lock): see the threat
    model in the docs (``guarantees.md``).
    Raises :class:`MergeError` when the merge cannot run at all.
    """
    policy = parse_policy(max_bytes, backup_count, compress, retention)
    perms = Perms(parse_chmod(chmod), *parse_owner(owner))
    directory, logname, out = resolve(logfile, output)
    report = MergeReport(out)
    absent = _no_log(os.path.join(directory, logname), directory, logname, out)
    if absent is not None:
        # Nothing to merge and no earlier merge to finish: touch nothing (no lock, no state).
        report.absent = absent
        return report
    place = Place(directory)
    out_place = place if os.path.dirname(out) == directory else Place(os.path.dirname(out))
    chains: list[list[File]] = []
    try:
        lock_fd = lock_output(out, perms, out_place)
        try:
            # Finish (or undo) a merge that crashed before looking at the shards: its removals
            # change what there is to find.
            state = journal.load_state(out + STATE_SUFFIX, out_place)
            journal.recover(state, out, out + STATE_SUFFIX, report, shards_of(directory, logname), perms)
            chains, twins = discover(directory, logname)
            m = _Merge(out, state, report, keep, include_live, progress, lock_fd, policy, perms, out_place)
            _run(m, chains, twins, place)
        except OSError as exc:
            raise MergeError(f"merge into {out} failed: {exc}") from None
        finally:
            # Unlocked, not only closed: a child forked meanwhile (by another thread of a
            # process merging at exit) shares these locks, and would otherwise hold them while
            # it lives.
            for chain in chains:
                for f in chain:
                    if f.fd >= 0:
                        unlock_and_close(f.fd)
                        f.fd = -1
            unlock_and_close(lock_fd)
    finally:
        place.close()
        out_place.close()
    return report


def resolve(logfile: str | os.PathLike[str], output: str | os.PathLike[str] | None) -> tuple[str, str, str]:
    """(directory, log name, output path) of a merge, resolved and checked."""
    try:
        log = resolve_log_path(os.path.abspath(os.fspath(logfile)), "logfile")
        # Resolved once, like a handler's path: the output is then opened without following
        # links, at any component.
        out = log if output is None else resolve_log_path(os.path.abspath(os.fspath(output)), "output")
    except ValueError as exc:
        raise MergeError(str(exc)) from None
    directory, logname = os.path.split(log)
    if not os.path.isdir(directory):
        raise MergeError(f"no such directory: {directory}")
    if os.path.isdir(log):
        raise MergeError(
            f"{log} is a directory; give the log path the handler was configured with, "
            f"such as {os.path.join(log, 'app.log')}"
        )
    base = shard_of(logname)
    if base is not None:
        raise MergeError(f"{log} is a shard of the log {os.path.join(directory, base)}; give that path instead")
    if os.path.isdir(out):
        raise MergeError(f"output {out} is a directory")
    if os.path.dirname(out) == directory and parse_shard_name(logname, os.path.basename(out)):
        raise MergeError(f"output {out} is a shard of the log")
    for what, name in created_names(out):
        problem = name_too_long(name)
        if problem is not None:
            raise MergeError(f"cannot merge into {out}: its {what} {name!r} cannot be created: {problem}")
    return directory, logname, out


def lock_output(out: str, perms: Perms, place: Place) -> int:
    """The merge lock of ``out``, taken (a descriptor to close when done)."""
    lock_path = out + LOCK_SUFFIX
    try:
        lock_fd = open_lockfile(lock_path, perms, place=place)
    except OSError as exc:
        raise MergeError(f"cannot create {lock_path}: {exc.strerror or exc}") from None
    # Two merges at once would each write a batch with the same records.
    if not try_lock(lock_fd, LOCK_EX):
        os.close(lock_fd)
        raise MergeError(f"another merge into {out} is running (it holds {lock_path})")
    return lock_fd


def shards_of(directory: str, logname: str) -> Callable[[str], bool]:
    """Whether a path (from a journal) names a shard of this log: the only files a recovery
    removes."""

    def ours(path: str) -> bool:
        d, name = os.path.split(path)
        return d == directory and parse_shard_name(logname, name) is not None

    return ours


def shard_of(name: str) -> str | None:
    """The log name whose shard ``name`` is (``app.log`` for ``app.log.web1.42.shard.3.gz``)."""
    at = name.find(".shard")
    while at > 0:
        host_pid = name[:at].rsplit(".", 2)
        if len(host_pid) == 3 and parse_shard_name(host_pid[0], name):
            return host_pid[0]
        at = name.find(".shard", at + 1)
    return None


def _no_log(log: str, directory: str, logname: str, out: str) -> str | None:
    """What ``log`` is when it names no per-process log: no shard of it exists and no merge
    into ``out`` has run before (an earlier merge's state means "merged, nothing new since")."""
    if os.path.exists(out + STATE_SUFFIX):
        return None
    try:
        entries = os.listdir(directory)
    except OSError as exc:
        raise MergeError(f"cannot list {directory}: {exc.strerror or exc}") from None
    if any(parse_shard_name(logname, e) for e in entries):
        return None
    shards = f"{logname}.<host>.<pid>.shard"
    if not os.path.lexists(log):
        return f"no per-process log at {log}: no such file, and no shard {shards} in {directory}"
    return (
        f"{log} has no shards beside it ({shards}) and was never merged: only a log written with "
        f"strategy='per-process' has shards (a 'thread' or 'flock' log needs no merge)"
    )


class _Merge:
    """One merge's settings and the state it carries from step to step."""

    def __init__(
        self,
        out: str,
        state: dict[str, Any],
        report: MergeReport,
        keep: bool,
        include_live: bool,
        progress: Callable[[int, int], None] | None,
        lock_fd: int,
        policy: RotationConfig | None,
        perms: Perms,
        place: Place,
    ) -> None:
        self.out = out
        self.perms = perms
        self.place = place
        self.inputs: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) of every input
        self.statefile = out + STATE_SUFFIX
        self.state = state
        self.report = report
        self.keep = keep
        self.include_live = include_live
        self.progress = progress
        self.lock_fd = lock_fd
        self.rotator = Rotator(policy, out, report) if policy is not None else None
        self.fd = -1  # the output, opened for appending
        self.size = 0  # its size before this merge's batch
        self.created = False  # by this merge

    def save(self) -> None:
        journal.save_state(self.statefile, self.state, self.perms)


def _run(m: _Merge, chains: list[list[File]], twins: list[tuple[File, str]], place: Place) -> None:
    _remove_leftovers(m.out)
    offsets: dict[str, Any] = m.state.get("offsets") or {}
    if offsets and m.state.get("output") != output_id(m.out):
        # The offsets describe an output that is gone or was replaced by someone else: what
        # the kept shards hold is not in this output, so merge them again from the start.
        offsets = {}
    total = open_inputs(chains, offsets, m.include_live, m.report, place)
    files = [f for chain in chains for f in chain]
    m.inputs = {f.inode: f.path for f in files if f.inode != (0, 0)}
    readable = [[f for f in c if f.identity and (m.include_live or not f.live)] for c in chains]
    spans = [[Span(f, f.start) for f in c] for c in readable if c]
    try:
        if spans:
            _open_output(m)
            if m.rotator is not None and m.rotator.due(m.size, sum(f.size - f.start for c in readable for f in c)):
                _rotate(m)
            _append(m, spans, files, total)
        new_offsets, actions = _plan(files, twins, offsets, m.keep)
        if m.report.records:
            _commit(m, new_offsets, actions)
        else:
            # Nothing new was written: what is removed holds no record that is not in the
            # output already.
            if m.created:
                os.unlink(m.out)  # made by this merge: leave no empty log behind
                m.state["output"] = None
            _remove_merged(actions, new_offsets, m.report)
            if m.state.get("pending") or m.created or new_offsets != (m.state.get("offsets") or {}):
                m.state.update(offsets=new_offsets, pending=None)
                m.save()
    finally:
        if m.fd >= 0:
            os.close(m.fd)
    if m.rotator is not None:
        m.rotator.tidy(bool(m.report.rotated))


def _remove_leftovers(out: str) -> None:
    """Remove what a merge that died left beside the output (the second core's side file, a
    half-written journal): never part of the output."""
    out_dir = os.path.dirname(out)
    prefix = "." + os.path.basename(out) + TMP_INFIX
    for entry in os.listdir(out_dir):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, entry))
            except OSError:
                pass


def _open_output(m: _Merge) -> None:
    """Open (or create, with the merge's perms) the merged log for appending: a regular file,
    under the rule of ``_primitives.fileio`` (no link followed, no other user's file), that is
    none of the inputs (a hard link to a shard would receive its own records)."""
    try:
        st = os.lstat(m.out)
    except FileNotFoundError:
        m.created = True
    else:
        if not stat.S_ISREG(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise MergeError(f"output {m.out} is {what}")
    try:
        m.fd = open_append(m.out, 0o666, perms=m.perms if m.perms.active else None, place=m.place, own=True)
    except OSError as exc:
        raise MergeError(f"cannot open the output {m.out}: {exc.strerror or exc}") from None
    st = os.fstat(m.fd)
    m.size = st.st_size
    same = m.inputs.get((st.st_dev, st.st_ino))
    if same is not None:
        raise MergeError(f"output {m.out} is the same file as the input {same} (a hard link)")


def _fd_id(fd: int) -> list[int]:
    st = os.fstat(fd)
    return [st.st_dev, st.st_ino]


def _rotate(m: _Merge) -> None:
    """Rename the merged log to its first backup and start a new one, journaled so that the
    offsets of kept shards follow the new file even if the merge dies half-way."""
    assert m.rotator is not None
    m.state["pending"] = {"stage": "rotate", "output": _fd_id(m.fd)}
    m.save()
    backup = m.rotator.rotate(m.size)
    if backup:
        os.close(m.fd)
        m.fd = -1
        _open_output(m)
        m.report.rotated = backup
    # Saved with the next journal entry (the append): until then "rotate" is pending.
    m.state["output"] = _fd_id(m.fd)


def _append(m: _Merge, spans: list[list[Span]], files: list[File], total: int) -> None:
    """Append this merge's batch (on two cores when the input is large) and make it durable;
    on failure, truncate the output back to where it was."""
    m.state["pending"] = {"stage": "append", "output": _fd_id(m.fd), "size": m.size}
    m.save()
    try:
        upper = parallel.partition(spans, total)
        if upper:
            total = sum((sp.stop if sp.stop >= 0 else sp.file.size) - sp.start for c in spans for sp in c)
        chunk = chunk_size(len(spans))
        prog = Progress(total, m.progress)
        readers = [Reader(c, chunk, m.report, prog) for c in spans]
        side = _side_name(m.out, secrets.token_hex(6))
        worker = parallel.Worker(upper, chunk, files, side, m.lock_fd) if upper else None
        try:
            m.report.records = merge_into(readers, m.fd)
            if worker is not None:
                # Flush the lower half to disk while the worker may still be busy.
                os.fsync(m.fd)
                m.report.records += worker.finish(m.fd, m.report)
        finally:
            for r in readers:
                r.close()
            if worker is not None:
                worker.kill()
        os.fsync(m.fd)
        if m.created and m.report.records:
            fsync_dir(os.path.dirname(m.out))
    except BaseException:
        _undo_append(m)
        raise
    if m.progress is not None:
        m.progress(prog.done, max(total, prog.done))


def _undo_append(m: _Merge) -> None:
    """Truncate the output back to its size before this merge, unless the batch was committed
    after all; what cannot be undone here is left to the journal."""
    try:
        pending = journal.load_state(m.statefile).get("pending") or {}
        if pending.get("stage") == "commit":
            return  # durable and committed: the next merge finishes the removals
        os.ftruncate(m.fd, m.size)
        os.fsync(m.fd)
        m.state["pending"] = None
        m.save()
    except Exception:
        pass  # the "append" entry stays: the next merge truncates


def _commit(m: _Merge, new_offsets: dict[str, Any], actions: list[_Action]) -> None:
    """The commit point (the journal entry), then the removals."""
    out_id = _fd_id(m.fd)
    m.state["pending"] = {
        "stage": "commit",
        "output": out_id,
        "size": m.size,
        "end": os.fstat(m.fd).st_size,
        "offsets": new_offsets,
        "actions": [a for a, _ in actions],
    }
    try:
        m.save()
    except BaseException:
        _undo_append(m)
        raise
    _remove_merged(actions, new_offsets, m.report)
    m.state = {"version": 1, "output": out_id, "offsets": new_offsets, "pending": None}
    m.save()


def _plan(
    files: list[File], twins: list[tuple[File, str]], offsets: dict[str, Any], keep: bool
) -> tuple[dict[str, Any], list[_Action]]:
    """What to do with each input once the output is durable: the offsets to remember for the
    files that stay, and the removals (or moves aside) of the others."""
    new_offsets = dict(offsets)
    actions: list[_Action] = []
    for f in files:
        if f.damaged and not f.identity:
            continue  # unreadable: left where it is, and reported
        if f.live or keep or not f.complete:
            if f.identity and f.end > 0:
                new_offsets[f.identity] = {"offset": f.end, "name": os.path.basename(f.path)}
            continue
        new_offsets.pop(f.identity, None)
        actions.append((["mv" if f.damaged else "rm", f.path, f.size, f.identity], f.fd))
    removed = {a[1] for a, _ in actions}
    for plain, path in twins:
        if plain.path in removed:
            try:
                actions.append((["rm", path, os.stat(path).st_size, ""], -1))
            except OSError:
                pass
    # Forget files that no longer exist under any name.
    present = {f.identity for f in files if f.identity}
    return {k: v for k, v in new_offsets.items() if k in present}, actions


def _remove_merged(actions: list[_Action], new_offsets: dict[str, Any], report: MergeReport) -> None:
    """Carry out the removals; a file that cannot be removed is remembered as merged."""
    for action, held in actions:
        if not apply(action[0], action[1], action[2], report, held, action[3]):
            new_offsets[action[3]] = {"offset": action[2], "name": os.path.basename(action[1])}
    if actions:
        fsync_dir(os.path.dirname(actions[0][0][1]))
