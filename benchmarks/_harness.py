"""What every benchmark script does the same way: start worker processes, collect, reap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_workers(ctx: Any, target: Callable[..., None], args: Sequence[tuple[Any, ...]], label: str) -> list[Any]:
    """Start one process per ``args`` entry running ``target(*args, results)``; return the one
    item each puts on ``results``. Children are always joined; a hung one is killed, and any
    child that did not exit cleanly makes the run fail rather than report a partial figure."""
    results = ctx.Queue()
    children = [ctx.Process(target=target, args=(*a, results)) for a in args]
    for c in children:
        c.start()
    got = []
    try:
        for _ in children:
            got.append(results.get(timeout=600))
    finally:
        for c in children:
            c.join(timeout=60)
            if c.is_alive():
                c.kill()
                c.join()
    failed = [c.exitcode for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"{label}: child exit codes {failed}")
    return got
