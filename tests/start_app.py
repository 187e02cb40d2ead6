"""An application run by tests/test_rotate_on_start.py in a process of its own: it configures a
rotate_on_start handler (in the parent, in each pool worker, or both) and logs ``n`` records.

    python start_app.py PATH STRATEGY TAG N METHOD WHO    (WHO: parent | workers | alone)

Every pool worker waits at a barrier before its first record, so all of them write.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from typing import Any

import safelog

log = logging.getLogger("app")
_barrier: Any = None


def configure(path: str, strategy: str) -> None:
    handler = safelog.SafeFileHandler(path, strategy=strategy, backup_count=10, rotate_on_start=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def setup(barrier: Any, path: str, strategy: str, own: bool) -> None:
    global _barrier
    _barrier = barrier
    if own:
        configure(path, strategy)


def work(tag_i: tuple[str, int]) -> int:
    global _barrier
    if _barrier is not None:
        _barrier.wait(60)
        _barrier = None
    log.info("%s %d", *tag_i)
    return os.getpid()


def main() -> None:
    path, strategy, tag, n, method, who = sys.argv[1:]
    if who in ("parent", "alone"):
        configure(path, strategy)
        log.info("%s parent", tag)
    items = [(tag, i) for i in range(int(n))]
    if who == "alone":
        for item in items:
            work(item)
        return
    ctx = multiprocessing.get_context(method)
    # A forked worker inherits the parent's handler; any other worker configures its own.
    own = who == "workers" or method != "fork"
    with ctx.Pool(3, initializer=setup, initargs=(ctx.Barrier(3), path, strategy, own)) as pool:
        pids = set(pool.map(work, items, chunksize=5))
    assert len(pids) == 3, f"one worker did all the work: {pids}"


if __name__ == "__main__":
    main()
