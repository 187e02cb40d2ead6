"""``reopen_signal``: a signal that makes every handler configured with it reopen its log.

External rotation (logrotate's ``create`` with ``postrotate kill -USR1``, the gunicorn/uWSGI
recipe) renames the log and signals the processes. Without the signal a writer notices the rename
at its next once-a-second path check; with it, the next record of every thread goes to the new
file. Opt-in only: a signal's handler belongs to the application, so safelog installs one only
when asked, and then chains the Python handler that was there before (not SIG_DFL, whose action
for these signals is to end the process, nor SIG_IGN).
"""

from __future__ import annotations

import signal
import threading
import weakref
from types import FrameType
from typing import Any, Protocol

__all__ = ["watch", "unwatch", "Reopens"]


class Reopens(Protocol):
    """A handler, as the signal sees it."""

    def request_reopen(self) -> None: ...


# signal number → weak references to the handlers it reopens. Replaced whole, never changed in
# place: the signal handler iterates it between two bytecodes of any code, maybe of watch().
_targets: dict[int, tuple[weakref.ref[Reopens], ...]] = {}
_previous: dict[int, Any] = {}
_running: set[int] = set()
_lock = threading.Lock()


def watch(handler: Reopens, signum: int) -> None:
    """Make ``signum`` reopen ``handler``'s log; install the process's signal handler once."""
    with _lock:
        _targets[signum] = tuple(r for r in _targets.get(signum, ()) if r() is not None) + (weakref.ref(handler),)
        current = signal.getsignal(signum)
        if current is not _on_signal:
            # First use, or someone replaced ours since: chain what is there now.
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def unwatch(handler: Reopens) -> None:
    """``handler`` closed: the signal no longer reopens it (the signal handler stays, chaining)."""
    with _lock:
        for signum, refs in list(_targets.items()):
            _targets[signum] = tuple(r for r in refs if r() is not None and r() is not handler)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if signum in _running:
        return  # a handler we chain to called us back (it had chained ours)
    _running.add(signum)
    try:
        for ref in _targets.get(signum, ()):
            handler = ref()
            if handler is not None:
                handler.request_reopen()
        previous = _previous.get(signum)
        if callable(previous):
            previous(signum, frame)
    finally:
        _running.discard(signum)
