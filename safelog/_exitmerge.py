"""``merge_on_exit``: merge a per-process log's shards when the process that configured it exits.

Part of the public shell: it ties the strategy registry (close this process's own shard) to
:func:`safelog.merge`, so that neither of them needs to know the other.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from ._merge import created_names as merge_names
from ._merge import merge
from ._primitives.paths import name_too_long
from ._primitives.reentry import section
from ._sinks.registry import close_path

__all__ = ["merge_at_exit", "check_merge_names"]

_at_exit: set[str] = set()


def merge_at_exit(path: str, chmod: Any = None, owner: Any = None) -> None:
    """Merge the shards of the log ``path`` when this process exits; a merged log it creates
    gets the handler's ``chmod`` and ``owner``, as the handler's files do (a merge must not
    widen who can read the records).

    Only this process merges: fork children inherit atexit hooks (gunicorn workers, os.fork)
    and multiprocessing children re-create handlers (spawn, forkserver); their merges would
    race the parent's and each other's.
    """
    if path in _at_exit:
        return
    _at_exit.add(path)
    atexit.register(_merge_now, path, os.getpid(), chmod, owner)


def _merge_now(path: str, pid: int, chmod: Any = None, owner: Any = None) -> None:
    import multiprocessing

    if os.getpid() != pid or multiprocessing.parent_process() is not None:
        return
    # Python joins non-daemonic children at exit anyway, but after this hook (atexit runs in
    # reverse order of registration); join them first so their shards are finished.
    for child in multiprocessing.active_children():
        if not child.daemon:
            child.join()
    # This process's own shard is live while open: close it (a later record reopens it). Found
    # by path: the handler may have been closed and replaced by a reconfiguration.
    close_path("per-process", os.path.realpath(path))
    try:
        # A section (see _primitives/reentry.py): a record logged by a finalizer meanwhile
        # would reopen this process's shard while the merge holds it; it waits for the merge.
        with section():
            report = merge(path, chmod=chmod, owner=owner)
    except Exception as exc:  # at exit there is no caller left to handle it
        print(f"safelog: merge at exit: {exc}", file=sys.stderr)
        return
    for p in report.problems:
        print(f"safelog: merge at exit: {p}", file=sys.stderr)


def check_merge_names(given: str, real: str) -> None:
    """ValueError when a file the merge at exit creates beside the log (its journal, lock, temp
    files) has a name over the file system's limit: found when the handler is built, not at
    exit, when there is no one left to tell."""
    for what, name in merge_names(real):
        problem = name_too_long(name)
        if problem is not None:
            raise ValueError(
                f"filename={given!r}: merge_on_exit: the {what} {name!r} cannot be created: "
                f"{problem}; use a shorter filename"
            )
