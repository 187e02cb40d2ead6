"""The journal (``<output>.merge-state``): how far kept shards are merged, and what an
interrupted merge had done, so that a re-run undoes or finishes it.

The merged log is appended to in place (same inode, ``O_APPEND``: whoever tails it by name or
by inode reads each record once). A merge moves through these entries, each written atomically
(temp file, fsync, ``os.replace``) before the step it guards:

``{"stage": "rotate", "output": [dev, ino]}``
    the output is about to be rotated (renamed to its first backup). A re-run finds whether the
    rename happened and adopts the new output, so the offsets of kept shards stay valid.
``{"stage": "append", "output": [dev, ino], "size": S}``
    records are about to be appended to an output of ``S`` bytes. A re-run truncates the same
    file back to ``S``: the shards are all still there, and are merged again.
``{"stage": "commit", ..., "offsets": ..., "actions": [...]}``
    the batch is durable (fsynced). This entry is the commit point: a re-run finishes the
    removals of merged shards and keeps the new offsets.

``pending`` is null between merges. The version-1 entry of a merge that wrote a temp copy and
replaced the output (``"tmp"``) is still finished or undone the way it was meant to be.

The journal says which files a merge removes, so it is trusted only as far as the rule of
``_primitives.fileio`` allows: read without following a link, only if it belongs to a user who
may write the directory; replaced (never written through) with the mode of a file nobody else
may open; and a removal it asks for is carried out only for a shard of this log.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from typing import Any

from .._primitives.atomic import replacing
from .._primitives.codec import DECODE_ERRORS, codec_for
from .._primitives.fileio import OUTPUT_REPAIR, Place, open_input
from .._primitives.lock import LOCK_EX, try_lock, unlock_and_close
from .._primitives.perms import Perms
from .discovery import first_line_fd, line_digest
from .report import MergeError, MergeReport, Problem

__all__ = ["load_state", "save_state", "recover", "apply", "output_id", "STATE_SUFFIX", "DAMAGED_SUFFIX"]

STATE_SUFFIX = ".merge-state"
DAMAGED_SUFFIX = ".damaged"


def load_state(path: str, place: Place | None = None) -> dict[str, Any]:
    """The journal at ``path`` (an empty one if there is none)."""
    try:
        fd, _ = open_input(path, place)
        with open(fd, "rb") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("unknown version")
        return state
    except FileNotFoundError:
        return {"version": 1, "output": None, "offsets": {}, "pending": None}
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read the merge state {path}: {exc}; move it aside to start over") from None


def save_state(path: str, state: dict[str, Any], perms: Perms | None = None) -> None:
    """Replace the journal at ``path`` atomically and durably, as a file only its owner (and
    the group, when ``chmod`` gives it write) may open."""
    with replacing(path, perms=(perms or Perms()).private()) as f:
        f.write(json.dumps(state, indent=1, sort_keys=True).encode())


def output_id(path: str) -> list[int] | None:
    """``[st_dev, st_ino]`` of the file at ``path``, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def recover(
    state: dict[str, Any],
    output: str,
    statefile: str,
    report: MergeReport,
    ours: Callable[[str], bool],
    perms: Perms | None = None,
) -> None:
    """Undo or finish what a crashed merge left pending (see the module docstring). ``ours``
    tells whether a path the journal names is an input of this log (only those are removed)."""
    pending = state.get("pending")
    if not pending:
        return
    stage = pending.get("stage")
    if stage == "append":
        _truncate_back(output, pending["output"], pending["size"], report)
    elif stage == "rotate":
        if output_id(output) != pending["output"]:
            # The rename happened: the offsets describe the new output from now on.
            state["output"] = output_id(output)
    elif stage == "commit":
        _finish_removals(state, pending, report, ours)
        state["output"] = pending["output"]
    elif "tmp" in pending:
        _recover_replaced(state, pending, output, report, ours)
    state["pending"] = None
    save_state(statefile, state, perms)


def _truncate_back(output: str, ident: list[int], size: int, report: MergeReport) -> None:
    """Remove the part of a batch that an interrupted merge appended to ``output``."""
    try:
        fd = os.open(output, OUTPUT_REPAIR)
    except FileNotFoundError:
        return
    try:
        st = os.fstat(fd)
        if [st.st_dev, st.st_ino] != ident or not stat.S_ISREG(st.st_mode):
            # Moved away or replaced since (by hand, or logrotate): the partial batch went with
            # the old file, and the shards are merged again into this one.
            msg = "replaced after an interrupted merge; the file it appended to may end in a partial batch"
            report.warnings.append(Problem(output, 0, msg))
            return
        if st.st_size > size:
            os.ftruncate(fd, size)
            os.fsync(fd)
    finally:
        os.close(fd)


def _finish_removals(
    state: dict[str, Any], pending: dict[str, Any], report: MergeReport, ours: Callable[[str], bool]
) -> None:
    offsets = pending["offsets"]
    for op, path, size, ident in pending["actions"]:
        if not ours(path):
            why = "named by the merge state, but not an input of this log: left alone"
            report.problems.append(Problem(path, 0, why))
            continue
        if not apply(op, path, size, report, ident=ident):
            # The file changed after that merge (a new process with a reused pid appended):
            # keep it, and remember that its first ``size`` bytes are merged.
            offsets[ident] = {"offset": size, "name": path}
    state["offsets"] = offsets


def _recover_replaced(
    state: dict[str, Any], pending: dict[str, Any], output: str, report: MergeReport, ours: Callable[[str], bool]
) -> None:
    """A pending entry of a merge that wrote a temp copy and replaced the output (version 1)."""
    try:
        st = os.stat(output)
        replaced = [st.st_dev, st.st_ino, st.st_size] == pending["output"]
    except FileNotFoundError:
        replaced = False
    if replaced:
        pending["output"] = pending["output"][:2]
        _finish_removals(state, pending, report, ours)
        state["output"] = pending["output"]
    elif os.path.dirname(pending["tmp"]) == os.path.dirname(output):
        try:
            os.unlink(pending["tmp"])
        except FileNotFoundError:
            pass


def apply(op: str, path: str, size: int, report: MergeReport, fd: int = -1, ident: str = "") -> bool:
    """Remove (``rm``) or move aside (``mv``) a merged file, if it is still what was merged.

    ``fd``, when given, is this merge's descriptor of the file, already holding ``LOCK_EX``.
    ``ident`` (the identity it was merged under), when given, must still be the first line's.
    """
    own = fd < 0
    if own:
        try:
            fd, _ = open_input(path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            # Not ours to remove (another user's file, a link, not a regular file): left alone.
            report.problems.append(Problem(path, 0, f"not removed: {exc.strerror or exc}"))
            return True
    try:
        if own and not try_lock(fd, LOCK_EX):
            return False
        if not _still_merged(fd, path, size, ident):
            return False
        return _remove(op, path, report)
    finally:
        if own:
            unlock_and_close(fd)


def _still_merged(fd: int, path: str, size: int, ident: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``, at the ``size`` it was merged at
    (and with the identity ``ident``, when given)."""
    st = os.fstat(fd)
    if st.st_size != size:
        return False
    # The name must still be this file: a live writer's rotation renames its backups
    # (.shard.1 -> .shard.2, .shard -> .shard.1) while a merge runs, whatever the merge
    # holds, and the name may hold another one of them now, even of the same size. A
    # file that moved is remembered as merged, and removed by a later merge.
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    if (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
        return False
    return not ident or _is(fd, path, ident)


def _remove(op: str, path: str, report: MergeReport) -> bool:
    """Remove (``rm``) or move aside (``mv``) ``path``; False when it stays (reported)."""
    try:
        if op == "rm":
            os.unlink(path)
            report.removed.append(path)
        else:
            dest = path + DAMAGED_SUFFIX
            i = 1
            while os.path.exists(dest):
                i += 1
                dest = f"{path}{DAMAGED_SUFFIX}.{i}"
            os.rename(path, dest)
            report.moved.append((path, dest))
    except FileNotFoundError:
        pass
    except OSError as exc:
        # Merged but still there (no write permission on the directory): the caller
        # records it as merged up to ``size`` so a re-run does not merge it again.
        verb = "remove" if op == "rm" else "move aside"
        report.problems.append(Problem(path, 0, f"merged, but cannot {verb}: {exc.strerror or exc}"))
        return False
    return True


def _is(fd: int, path: str, ident: str) -> bool:
    """Whether the file open as ``fd`` (named ``path``) is the one named ``ident``."""
    codec = codec_for(path)
    try:
        line = first_line_fd(fd, codec.ext if codec is not None else "")
    except DECODE_ERRORS:
        return False
    return ident.rpartition(":")[2] == line_digest(line)
