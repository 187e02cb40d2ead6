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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._handler import SafeFileHandler

__all__ = ["parse_reopen_signal", "watch", "unwatch"]

_NAMES = ("SIGHUP", "SIGUSR1", "SIGUSR2")

# signal number → weak references to the handlers it reopens. Replaced whole, never changed in
# place: the signal handler iterates it between two bytecodes of any code, maybe of watch().
_targets: dict[int, tuple[weakref.ref[SafeFileHandler], ...]] = {}
_previous: dict[int, Any] = {}
_running: set[int] = set()
_lock = threading.Lock()


def parse_reopen_signal(value: Any) -> int | None:
    """``reopen_signal``: ``"SIGHUP"``, ``"SIGUSR1"``, ``"SIGUSR2"`` (or ``"USR1"``, or a
    ``signal.Signals``); None for none. Checked at configuration: only the main thread may
    install a signal handler."""
    if value is None:
        return None
    name = value.name if isinstance(value, signal.Signals) else value
    if not isinstance(name, str):
        raise TypeError(f"reopen_signal must be a signal name such as 'SIGUSR1', not {value!r}")
    name = name.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in _NAMES:
        raise ValueError(f"reopen_signal must be one of {', '.join(map(repr, _NAMES))}; got {value!r}")
    signum = getattr(signal, name, None)
    if signum is None:
        raise ValueError(f"reopen_signal={value!r}: {name} does not exist on this platform")
    if threading.current_thread() is not threading.main_thread():
        raise ValueError(
            f"reopen_signal={value!r} can only be set up from the main thread (Python runs signal "
            f"handlers there); configure logging in the main thread, or call handler.reopen() "
            f"from a signal handler of your own"
        )
    return int(signum)


def watch(handler: SafeFileHandler, signum: int) -> None:
    """Make ``signum`` reopen ``handler``'s log; install the process's signal handler once."""
    with _lock:
        _targets[signum] = tuple(r for r in _targets.get(signum, ()) if r() is not None) + (weakref.ref(handler),)
        current = signal.getsignal(signum)
        if current is not _on_signal:
            # First use, or someone replaced ours since: chain what is there now.
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def unwatch(handler: SafeFileHandler) -> None:
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
                handler._sink.request_reopen()
        previous = _previous.get(signum)
        if callable(previous):
            previous(signum, frame)
    finally:
        _running.discard(signum)
