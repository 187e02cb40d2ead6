"""What a "start" of the application is, for ``rotate_on_start``.

The rule, in two parts:

1. **Inherited**: the first process that configures a handler with ``rotate_on_start`` and
   finds no ``SAFELOG_START`` in its environment puts its own key there (see
   :mod:`.._primitives.procid`). Every process it starts afterwards (fork, spawn, forkserver,
   ``subprocess``) inherits it and belongs to the same start: gunicorn ``--preload`` and
   ``logconfig_dict`` (the master configures), a multiprocessing pool, uvicorn's workers when
   its ``log_config`` names the handler. A deployment may set ``SAFELOG_START`` itself to name a
   start (any string unique per start).
2. **Siblings**: a process that configures the handler on its own (no inherited key: gunicorn
   workers without ``--preload``, uvicorn workers configuring in the app) joins the start
   recorded beside the log when that start's processes have the same parent as it (pid and
   start time) and either one of them still runs, or it was forked from that parent without an
   ``exec`` (same executable and command line: the parent is the application itself, as
   gunicorn's master is); otherwise it begins a new start. So N workers configuring at once are
   one start, and a worker restarted later by ``max_requests`` joins it; a cron job's runs, or
   a service restarted by its supervisor (the parent runs another program), find every process
   of the previous start gone and each begins one.

The first process of a new start to write rotates the log, if it is not empty, under the log's
exclusion, and records the start; the others of that start find it recorded and leave the log.
The decision is :func:`decide`, a pure function of the records and the process's keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .._primitives.procid import is_alive, process_key, same_program

__all__ = ["ENV", "claim", "Identity", "identity", "decide", "inherited"]

ENV = "SAFELOG_START"


def claim() -> None:
    """At configuration: name this process's start for the processes it starts, unless an
    ancestor (or the deployment) did."""
    if not os.environ.get(ENV):
        os.environ[ENV] = process_key(os.getpid())


class Identity(NamedTuple):
    """Who is asking: the start named by an ancestor (None: none), this process and its parent."""

    inherited: str | None
    me: str
    parent: str
    forked: bool = False  # from the parent, without exec: the parent is the application too


def identity() -> Identity:
    me = process_key(os.getpid())
    named = os.environ.get(ENV) or None
    ppid = os.getppid()
    return Identity(None if named == me else named, me, process_key(ppid), same_program(os.getpid(), ppid))


def inherited() -> bool:
    """True when an ancestor named this process's start: it is not a start of its own (for a
    log only this process writes, nothing else is needed to decide)."""
    return identity().inherited is not None


def decide(
    records: Sequence[dict[str, Any]], who: Identity, alive: Callable[[str], bool] = is_alive
) -> tuple[str, bool, bool]:
    """The start ``who`` belongs to, given the start records of the log (oldest first):
    ``(token, new, record)``: ``new`` when it begins a start (the log is rotated), ``record``
    when the process must be recorded as one of the start's (a sibling that joined)."""
    starts = [r for r in records if isinstance(r.get("start"), str)]
    current = starts[-1]["start"] if starts else None
    members = [r for r in starts if r["start"] == current]
    if who.inherited is not None:
        # Named by an ancestor: the current start if it is that one, or one the ancestor joined.
        if current == who.inherited or any(r.get("member") == who.inherited for r in members):
            return str(current), False, False
        return who.inherited, True, True
    if current is not None:
        kin = [r for r in members if r.get("parent") == who.parent]
        siblings = bool(kin) and (who.forked or any(alive(str(r.get("member"))) for r in kin))
        # Or its own children started it before it wrote (it configured late).
        if siblings or any(r.get("parent") == who.me for r in members):
            return str(current), False, True
    return who.me, True, True
