"""The journal (``<output>.merge-state``): how far kept shards are merged, and what a merge that
was interrupted had committed to, so that a re-run finishes or undoes it."""

from __future__ import annotations

import json
import os
from typing import Any

from .._primitives.atomic import atomic_write
from .._primitives.fileio import READ
from .._primitives.lock import LOCK_EX, try_lock
from .report import MergeError, MergeReport, Problem

__all__ = ["load_state", "save_state", "recover", "apply", "output_id", "STATE_SUFFIX", "DAMAGED_SUFFIX"]

STATE_SUFFIX = ".merge-state"
DAMAGED_SUFFIX = ".damaged"


def load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("unknown version")
        return state
    except FileNotFoundError:
        return {"version": 1, "output": None, "offsets": {}, "pending": None}
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read the merge state {path}: {exc}; move it aside to start over") from None


def save_state(path: str, state: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as f:
        f.write(json.dumps(state, indent=1, sort_keys=True).encode())


def output_id(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def recover(state: dict[str, Any], output: str, statefile: str, report: MergeReport) -> None:
    """Finish or undo the merge a crash interrupted (see the module docstring)."""
    pending = state.get("pending")
    if not pending:
        return
    try:
        st = os.stat(output)
        replaced = [st.st_dev, st.st_ino, st.st_size] == pending["output"]
    except FileNotFoundError:
        replaced = False
    if replaced:
        offsets = pending["offsets"]
        for op, path, size, ident in pending["actions"]:
            if not apply(op, path, size, report):
                # The file changed after that merge (a new process with a reused pid appended):
                # keep it, and remember that its first ``size`` bytes are merged.
                offsets[ident] = {"offset": size, "name": path}
        state["offsets"] = offsets
        state["output"] = pending["output"][:2]
    else:
        try:
            os.unlink(pending["tmp"])
        except FileNotFoundError:
            pass
    state["pending"] = None
    save_state(statefile, state)


def apply(op: str, path: str, size: int, report: MergeReport, fd: int = -1) -> bool:
    """Remove (``rm``) or move aside (``mv``) a merged file, if it is still what was merged.

    ``fd``, when given, is this merge's descriptor of the file, already holding ``LOCK_EX``.
    """
    own = fd < 0
    if own:
        try:
            fd = os.open(path, READ)
        except FileNotFoundError:
            return True
    try:
        if own and not try_lock(fd, LOCK_EX):
            return False
        if os.fstat(fd).st_size != size:
            return False
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
    finally:
        if own:
            os.close(fd)
