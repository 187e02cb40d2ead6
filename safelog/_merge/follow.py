"""``safelog merge --follow``: the live merge (see ``live``) appended to the merged log in place,
batch by batch, with merge's journal, so that a ``per-process`` deployment has one growing file.

Each step is a small merge: under the merge lock, the batch is appended to the same inode with
the journal's "append" entry written first and the new offsets after the fsync (the commit), so
a merge killed at any point and started again truncates a partial batch away and goes on from
the offsets: no record is lost or written twice. Files emitted to their end (backups, shards
of processes that are gone) are removed as a one-shot merge removes them, through a "commit"
entry; the names of removed files are remembered for an hour (``merged`` in the journal), so a
compressed copy that a writer's compressor finishes just after the removal is not merged again.
The merged log is rotated, compressed and pruned as a one-shot merge does it (``rotate``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from .._primitives.atomic import fsync_dir
from .._primitives.fileio import Place
from .._primitives.lock import LOCK_EX, try_lock, unlock_and_close
from .._primitives.perms import Perms, parse_chmod, parse_owner
from . import journal
from .journal import STATE_SUFFIX, output_id
from .live import FORGET, LiveMerge
from .output import write_spans
from .report import MergeError, MergeReport
from .rotate import parse_policy
from .run import (
    _fd_id,
    _Merge,
    _no_log,
    _open_output,
    _remove_leftovers,
    _remove_merged,
    _rotate,
    _undo_append,
    lock_output,
    resolve,
    shards_of,
)

__all__ = ["merge_follow", "Control", "STOP", "DRAIN", "FORGET_AFTER"]

STOP = "stop"
DRAIN = "drain"
# How long the names of removed files are remembered (see the module docstring).
FORGET_AFTER = FORGET
# How often retention of the merged log's backups runs when nothing rotates.
_TIDY_EVERY = 60.0


class Control(Protocol):
    """How a caller paces and ends a live merge."""

    def wait(self, seconds: float) -> str | None:
        """Return after ``seconds``, or at once with :data:`STOP` (end now) or :data:`DRAIN`
        (write everything complete, whatever its time, then end)."""


def merge_follow(
    logfile: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    control: Control,
    lag: float = 0.5,
    interval: float = 0.1,
    keep: bool = False,
    max_bytes: Any = None,
    backup_count: Any = None,
    compress: Any = None,
    retention: Any = None,
    chmod: int | str | None = None,
    owner: str | None = None,
    notify: Callable[[MergeReport], None] | None = None,
) -> MergeReport:
    """Merge the shards of ``logfile`` into ``output`` (default: the log path) as they are
    written, until ``control`` says stop; see the module docstring. The options are those of
    :func:`safelog.merge`. ``notify(report)`` is called after every step (the report
    accumulates). Raises :class:`MergeError` when the merge cannot run at all."""
    policy = parse_policy(max_bytes, backup_count, compress, retention)
    perms = Perms(parse_chmod(chmod), *parse_owner(owner))
    directory, logname, out = resolve(logfile, output)
    log = os.path.join(directory, logname)
    absent = _no_log(log, directory, logname, out)
    if absent is not None and os.path.lexists(log):
        # A log that exists and is no per-process log (a flock log, a typo): touch nothing. One
        # that does not exist yet is waited for.
        raise MergeError(absent)
    report = MergeReport(out)
    place = Place(directory)
    out_place = place if os.path.dirname(out) == directory else Place(os.path.dirname(out))
    m: _Merge | None = None
    live: LiveMerge | None = None
    try:
        lock_fd = lock_output(out, perms, out_place)
        try:
            state = journal.load_state(out + STATE_SUFFIX, out_place)
            journal.recover(state, out, out + STATE_SUFFIX, report, shards_of(directory, logname), perms)
            _remove_leftovers(out)
            m = _Merge(out, state, report, keep, True, None, lock_fd, policy, perms, out_place)
            offsets = state.get("offsets") or {}
            if offsets and state.get("output") != output_id(out):
                offsets = {}  # the output was replaced: what the offsets describe is not in it
            merged = _recent(state.get("merged") or {}, time.time())
            live = LiveMerge(
                directory,
                logname,
                lag,
                offsets={k: int(v["offset"]) for k, v in offsets.items()},
                gone=set(merged),
                hold=not keep,
                place=place,
            )
            state["merged"] = merged
            _open_output(m)
            if m.created:
                fsync_dir(os.path.dirname(out))
            if state.get("output") != _fd_id(m.fd):
                state.update(output=_fd_id(m.fd), offsets={})
                m.save()
            _follow(m, live, control, interval, notify)
        except OSError as exc:
            raise MergeError(f"merge into {out} failed: {exc}") from None
        finally:
            if live is not None:
                live.close()
            if m is not None and m.fd >= 0:
                os.close(m.fd)
            unlock_and_close(lock_fd)  # unlocked for a child forked meanwhile too (see merge())
    finally:
        place.close()
        out_place.close()
    return report


def _follow(
    m: _Merge, live: LiveMerge, control: Control, interval: float, notify: Callable[[MergeReport], None] | None
) -> None:
    """The steps, until ``control`` says stop (after a last one that drains, on DRAIN)."""
    tidied = time.monotonic()
    command: str | None = None
    while True:
        if command == DRAIN:
            live.settle()
        else:
            live.refresh()
        spans = live.plan(time.time(), drain=command == DRAIN)
        rotated = _step(m, live, spans)
        live.release()
        m.report.problems += live.report.problems
        live.report.problems.clear()
        if m.rotator is not None and (rotated or time.monotonic() - tidied > _TIDY_EVERY):
            m.rotator.tidy(rotated, wait=False)
            tidied = time.monotonic()
        if notify is not None:
            notify(m.report)
        if command is not None:
            break
        command = control.wait(interval)
        if command == STOP:
            break
    if m.rotator is not None:
        m.rotator.tidy(False)


def _recent(merged: dict[str, float], now: float) -> dict[str, float]:
    return {k: t for k, t in merged.items() if now - t < FORGET_AFTER}


def _step(m: _Merge, live: LiveMerge, spans: list[list[Any]]) -> bool:
    """Append one batch and commit it; remove what was emitted to its end. True when the
    merged log was rotated first."""
    rotated = False
    if spans:
        if m.rotator is not None:
            incoming = sum((sp.stop if sp.stop >= 0 else sp.file.size) - sp.start for c in spans for sp in c)
            if m.rotator.due(m.size, incoming):
                m.report.rotated = ""
                _rotate(m)
                rotated = bool(m.report.rotated)
        m.state["pending"] = {"stage": "append", "output": _fd_id(m.fd), "size": m.size}
        m.save()
        try:
            m.report.records += write_spans(spans, m.fd, m.report)
            os.fsync(m.fd)
        except BaseException:
            _undo_append(m)
            raise
        live.emitted(spans)
    actions = [] if m.keep else _removals(live)
    if not spans and not actions:
        return rotated
    offsets = {t.f.identity: {"offset": t.f.start, "name": os.path.basename(t.f.path)} for t in live.tracks()
               if t.f.identity and t.f.start}  # fmt: skip
    removed = {a[3] for a, _ in actions if a[3]}
    for ident in removed:
        offsets.pop(ident, None)
    merged = _recent(m.state.get("merged") or {}, time.time())
    m.state["merged"] = merged
    if actions:
        now = time.time()
        merged.update((ident, now) for ident in removed)
        end = os.fstat(m.fd).st_size
        m.state["pending"] = {
            "stage": "commit", "output": _fd_id(m.fd), "size": end, "end": end, "offsets": offsets,
            "actions": [a for a, _ in actions],
        }  # fmt: skip
        m.save()
        _remove_merged(actions, offsets, m.report)
        for ident in removed:
            if ident in offsets:
                merged.pop(ident, None)  # not removed after all: followed on from its offset
    m.size = os.fstat(m.fd).st_size
    m.state.update(output=_fd_id(m.fd), offsets=offsets, pending=None)
    m.save()
    return rotated


def _removals(live: LiveMerge) -> list[tuple[list[Any], int]]:
    """Remove (or move aside, when damaged) the files emitted to their end, and their
    compressed copies, each through the descriptor the live merge holds (journal.apply checks
    that its name still holds it)."""
    actions: list[tuple[list[Any], int]] = []
    for t in live.finished():
        f = t.f
        held = [(f.path, f.fd, f.identity)] if f.fd >= 0 else []
        held += [(path, fd, "") for fd, path in t.copies.values()]
        for path, fd, ident in held:
            if path in t.removing:
                continue
            t.removing.add(path)
            if fd == f.fd and not f.ext and not t.locked:
                if not try_lock(fd, LOCK_EX):
                    continue  # taken up again (a process with the same pid): followed on
                t.locked = True
            size = f.start if fd == f.fd and not f.ext else os.fstat(fd).st_size
            op = "mv" if f.damaged and fd == f.fd else "rm"
            actions.append(([op, path, size, ident], fd))
    return actions
