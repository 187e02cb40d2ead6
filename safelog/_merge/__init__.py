"""``safelog merge``: join the shards of a ``per-process`` log into one time-ordered file.

Inputs
    Every shard of the log, for every host and pid, with its rotated backups
    (``app.log.<host>.<pid>.shard[.N][.gz|.bz2|.xz]``). The files of one writer process form one
    *chain*, oldest backup first; within a chain the shard format guarantees non-decreasing
    times, so each chain is a sorted run and the merge is a streaming k-way merge over chains.

Order
    By time (the shard header, microseconds, UTC); ties by host name, then pid, then position
    in the writer's chain (that is, the order the writer wrote them). The order is total and
    does not depend on directory listing order, so a re-run produces the same bytes.

Output
    The records exactly as the user's formatter produced them: framing stripped, continuation
    lines restored. The default output is the log path itself (``app.log``): the
    ``per-process`` strategy never writes it, and it is where people look. If it exists, the
    new records are appended *after* its content: each merge adds one time-ordered batch.

Atomicity and idempotence
    The new output is written to a temp file beside the output (``os.open`` with ``O_EXCL``),
    fsynced, and ``os.replace``-d over the output; only then are merged shards removed. A
    small state file (``<output>.merge-state``) is the journal: before the replace it records
    the temp file's inode and what the merge will remove; a re-run after a crash compares that
    inode with the output's and either finishes the removals (the replace happened) or
    discards the temp file (it did not). It also records how far each shard that stays on disk
    (``keep=True``, live shards, damaged ones) has been merged, so no record is written twice.

Live shards
    A writer holds ``LOCK_SH`` on its shard while it has it open; a merge that cannot take
    ``LOCK_EX`` knows the shard is live. Live shards are skipped by default; with
    ``include_live`` they are read up to their last record known to be complete (the final
    record of a live shard is held back: it may still be being written) and never removed.

Speed and memory
    Memory is bounded by the number of chains (one read buffer of at most 256 KiB each), not
    by their size. Large inputs of plain shards are merged on two cores: the key range is
    split at a record boundary in every shard, a forked worker merges the upper part into a
    side file, and the two parts are concatenated (this process copies what the worker has
    written while the worker is still merging); the bytes are the same as from one process.

Where it lives
    ``discovery`` finds and opens the shards; ``reader`` decodes one writer's chain (through
    the shard format in ``_primitives.shard``); ``output`` is the k-way merge step and the
    writing; ``parallel`` the second core; ``journal`` the state file, recovery and removals;
    ``report`` what a merge reports. This module runs them in order.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .._primitives.atomic import create_temp, fsync_dir
from .._primitives.fileio import open_lockfile
from .._primitives.lock import LOCK_EX, try_lock
from .._primitives.shard import parse_shard_name
from . import journal, parallel
from .discovery import File, discover, open_inputs
from .journal import STATE_SUFFIX, apply, output_id
from .output import append_file, merge_into
from .reader import Progress, Reader, Span, chunk_size
from .report import MergeError, MergeReport, Problem

__all__ = ["merge", "MergeReport", "MergeError", "Problem"]

LOCK_SUFFIX = ".merge.lock"
# Temp files of a merge are ".<output>.merge-<random>.tmp" (the journal's atomic_write temp
# ".<output>.merge-state.<random>.tmp" shares the prefix, so leftovers of both are cleaned).
TMP_INFIX = ".merge-"

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
) -> MergeReport:
    """Merge the shards of the ``per-process`` log ``logfile`` into ``output`` (default: the
    log path itself), appending one time-ordered batch after what the output already holds.

    Finished shards are removed once the output is durable (``keep=True`` leaves them; a
    re-run then skips what was merged). Live shards are skipped, or with ``include_live``
    read up to their last complete record and left in place. Damaged input is reported in
    :attr:`MergeReport.problems` (file and line); every good record is still merged and the
    damaged file is moved aside to ``<name>.damaged`` instead of being removed.
    ``progress(done, total)`` is called now and then with input bytes.
    Raises :class:`MergeError` when the merge cannot run at all.
    """
    log = os.path.abspath(os.fspath(logfile))
    out = os.path.abspath(os.fspath(output)) if output is not None else log
    directory, logname = os.path.split(log)
    if not os.path.isdir(directory):
        raise MergeError(f"no such directory: {directory}")
    if os.path.isdir(out):
        raise MergeError(f"output {out} is a directory")
    if os.path.dirname(out) == directory and parse_shard_name(logname, os.path.basename(out)):
        raise MergeError(f"output {out} is a shard of the log")
    report = MergeReport(out)
    lock_path = out + LOCK_SUFFIX
    try:
        lock_fd = open_lockfile(lock_path, 0o666)
    except OSError as exc:
        raise MergeError(f"cannot create {lock_path}: {exc.strerror or exc}") from None
    chains: list[list[File]] = []
    try:
        # Two merges at once would each write a batch with the same records.
        if not try_lock(lock_fd, LOCK_EX):
            raise MergeError(f"another merge into {out} is running (it holds {lock_path})")
        # Finish (or undo) a merge that crashed before looking at the shards: its removals
        # change what there is to find.
        state = journal.load_state(out + STATE_SUFFIX)
        journal.recover(state, out, out + STATE_SUFFIX, report)
        chains, twins = discover(directory, logname)
        _run(chains, twins, out, state, report, keep, include_live, progress, lock_fd)
    except OSError as exc:
        raise MergeError(f"merge into {out} failed: {exc}") from None
    finally:
        for chain in chains:
            for f in chain:
                if f.fd >= 0:
                    os.close(f.fd)
                    f.fd = -1
        os.close(lock_fd)
    return report


def _run(
    chains: list[list[File]],
    twins: list[tuple[File, str]],
    out: str,
    state: dict[str, Any],
    report: MergeReport,
    keep: bool,
    include_live: bool,
    progress_cb: Callable[[int, int], None] | None,
    lock_fd: int,
) -> None:
    _remove_leftovers(out)
    offsets: dict[str, Any] = state.get("offsets") or {}
    if offsets and state.get("output") != output_id(out):
        # The offsets describe an output that is gone or was replaced by someone else: what
        # the kept shards hold is not in this output, so merge them again from the start.
        offsets = {}
    total = open_inputs(chains, offsets, include_live, report)
    files = [f for chain in chains for f in chain]
    tmp, st = _write_temp(chains, files, out, total, report, include_live, progress_cb, lock_fd)
    new_offsets, actions = _plan(files, twins, offsets, keep)
    statefile = out + STATE_SUFFIX
    if report.records == 0:
        # Nothing new to write: leave the output alone; what is removed holds no record that
        # is not in the output already.
        os.unlink(tmp)
        _remove_merged(actions, new_offsets, report)
        if new_offsets != (state.get("offsets") or {}):
            state.update(offsets=new_offsets, pending=None)
            journal.save_state(statefile, state)
        return
    # The journal entry, then the commit point (the replace), then the removals.
    state["pending"] = {
        "tmp": tmp,
        "output": [st.st_dev, st.st_ino, st.st_size],
        "offsets": new_offsets,
        "actions": [a for a, _ in actions],
    }
    journal.save_state(statefile, state)
    os.replace(tmp, out)
    fsync_dir(os.path.dirname(out))
    _remove_merged(actions, new_offsets, report)
    journal.save_state(
        statefile,
        {"version": 1, "output": [st.st_dev, st.st_ino], "offsets": new_offsets, "pending": None},
    )


def _remove_leftovers(out: str) -> None:
    """Remove what a merge that died before its journal entry left (its output and side files,
    and a half-written journal): never part of the output."""
    out_dir = os.path.dirname(out)
    prefix = "." + os.path.basename(out) + TMP_INFIX
    for entry in os.listdir(out_dir):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, entry))
            except OSError:
                pass


def _write_temp(
    chains: list[list[File]],
    files: list[File],
    out: str,
    total: int,
    report: MergeReport,
    include_live: bool,
    progress_cb: Callable[[int, int], None] | None,
    lock_fd: int,
) -> tuple[str, os.stat_result]:
    """Write the temp output: what the output holds now, then this merge's batch (on two cores
    when the input is large). Returns the temp file and its durable state."""
    readable = [[f for f in c if f.identity and (include_live or not f.live)] for c in chains]
    chunk = chunk_size(sum(1 for c in readable if c))
    spans = [[Span(f, f.start) for f in c] for c in readable if c]
    upper = parallel.partition(spans, total)
    if upper:
        total = sum((sp.stop if sp.stop >= 0 else sp.file.size) - sp.start for c in spans for sp in c)
    prog = Progress(total, progress_cb)
    readers = [Reader(c, chunk, report, prog) for c in spans if c]
    out_dir = os.path.dirname(out)
    tmp, fd = create_temp(out_dir, os.path.basename(out), 0o666, tag=TMP_INFIX[1:])
    try:
        try:
            with open(out, "rb") as old:
                if hasattr(os, "fchmod"):
                    # The merged log keeps the permissions someone gave the old one.
                    os.fchmod(fd, os.fstat(old.fileno()).st_mode & 0o7777)
                append_file(fd, old)
        except FileNotFoundError:
            pass
        worker = parallel.Worker(upper, chunk, files, tmp, lock_fd) if upper else None
        try:
            report.records = merge_into(readers, fd)
            if worker is not None:
                # Flush the lower half to disk while the worker may still be busy.
                os.fsync(fd)
                report.records += worker.finish(fd, report)
        finally:
            for r in readers:
                r.close()
            if worker is not None:
                worker.kill()
        os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if progress_cb is not None:
        progress_cb(prog.done, max(total, prog.done))
    return tmp, st


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
        if not apply(action[0], action[1], action[2], report, held):
            new_offsets[action[3]] = {"offset": action[2], "name": os.path.basename(action[1])}
    if actions:
        fsync_dir(os.path.dirname(actions[0][0][1]))
