"""Logging from inside logging: a record logged by a thread that is already inside safelog is
written when that thread leaves, right after the work it interrupted.

A signal handler runs between two bytecodes of the main thread, a finalizer wherever the garbage
collector happens to run, a rotator, namer or formatter in the middle of a write. If one of them
logs while its thread holds one of safelog's locks, writing at once would wait for that very
thread (a thread lock; the queue's lock; a ``flock`` held on another open file description of the
same lock file, which excludes the holder's own thread too), or land in the middle of a rotation
that has renamed some backups and not others. The standard library's handlers take an ``RLock``
and write the nested record in the middle; here it waits instead, on a list of its own thread:

* every thread marks itself while inside: ``emit()``, the non-blocking writer's rounds, the
  compressor's steps, ``close()``/``flush()``/``doRollover()``;
* a record logged by a marked thread is appended to that thread's pending list, and its
  ``emit()`` returns;
* when the thread leaves the outermost mark, it writes the pending records, in the order they
  were logged, each as an ordinary outermost record (which may rotate, and may defer again).

Only the logging thread itself ever touches its entry, so no lock is needed, and a signal
handler that runs between two steps of :func:`leave` finds the thread either still marked
(it defers) or not (it writes at once, with no lock held).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["inside", "defer", "leave", "write_all", "section", "get_ident"]

get_ident = threading.get_ident

# Thread ident -> None while the thread is inside; a list of (write, argument) once a record was
# logged meanwhile (the list is made only then: the per-record path allocates nothing).
inside: dict[int, list[tuple[Callable[[Any], Any], Any]] | None] = {}


def defer(me: int, write: Callable[[Any], Any], arg: Any) -> None:
    """Keep ``write(arg)`` for when thread ``me`` (the caller's own, known to be inside) leaves."""
    pending = inside.get(me)
    if pending is None:
        inside[me] = pending = []
    pending.append((write, arg))


def leave(me: int) -> None:
    """Thread ``me`` leaves its outermost mark: write what was logged while it was inside."""
    pending = inside.pop(me, None)
    if pending:
        write_all(me, pending)


# Thread ident -> the records it is writing after leaving. A record written from here may itself
# be interrupted by one more; that one joins the end of this list instead of being written from
# inside the first one's emit(): a chain of them (a rotator that logs, its record rotating again)
# costs no stack depth, and records come out in the order they were logged.
_draining: dict[int, deque[tuple[Callable[[Any], Any], Any]]] = {}


def write_all(me: int, pending: list[tuple[Callable[[Any], Any], Any]]) -> None:
    """Write what :func:`leave` took (for callers that inline it)."""
    queue = _draining.get(me)
    if queue is not None:
        queue.extend(pending)
        return
    _draining[me] = queue = deque(pending)
    error: BaseException | None = None
    try:
        while queue:
            write, arg = queue.popleft()
            try:
                write(arg)
            except BaseException as exc:
                # emit() reports its own failures; whatever else escaped (a handleError that
                # raises) goes on to the caller once the records behind it are written.
                error = error or exc
    finally:
        del _draining[me]
    if error is not None:
        raise error


@contextmanager
def section() -> Iterator[None]:
    """Mark this thread inside for the block (not the per-record path: that inlines it). A
    nested section is part of the outer one."""
    me = get_ident()
    if me in inside:
        yield
        return
    inside[me] = None
    try:
        yield
    finally:
        leave(me)


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child; another thread's ident can be reused by a
    # new thread there, which must not find itself "inside". Records the forking thread had
    # pending belong to the parent, which writes them when it leaves.
    me = get_ident()
    for ident in list(inside):
        if ident != me:
            del inside[ident]
    if inside.get(me):
        inside[me] = None
    for ident in list(_draining):
        if ident != me:
            del _draining[ident]
        else:
            _draining[ident].clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
