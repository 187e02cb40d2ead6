"""The strategies by name, and the one sink per real path per process that their handlers share.

``logging.Handler.handle()`` holds a lock per *handler*: two handlers on one path would not
exclude each other, nor would they agree on rotation. So every handler of a path in a process
gets the same :class:`~.base.Sink`, and a second handler whose options would break the first's
is refused here, by :func:`safelog._policy.config.check_compatible`.

A path that names a FIFO or a device when its first handler is configured gets a
:class:`~.stream.StreamSink`, whatever the strategy: written directly, never rotated; so does a
path that is still a symlink after resolving (see ``resolve_log_path``).
"""

from __future__ import annotations

import os
import threading
import weakref

from .._policy.config import STRATEGY_NAMES, Config, check_compatible
from .._primitives.paths import special_kind
from .base import Sink
from .flock import FlockSink
from .perprocess import PerProcessSink
from .stream import StreamSink
from .thread import ThreadSink

__all__ = ["STRATEGIES", "acquire", "release", "close_path"]

STRATEGIES: dict[str, type[Sink]] = {
    "thread": ThreadSink,
    "flock": FlockSink,
    "per-process": PerProcessSink,
}
assert tuple(STRATEGIES) == STRATEGY_NAMES

_registry: dict[tuple[object, ...], Sink] = {}
# The configurations of the live handlers of each sink, for the compatibility check.
_configs: dict[int, list[Config]] = {}
_registry_lock = threading.Lock()
_all_sinks: weakref.WeakSet[Sink] = weakref.WeakSet()


def acquire(path: str, config: Config) -> Sink:
    """Return the process-wide sink for the real ``path`` with ``config``'s strategy, creating it
    on first use; raise ValueError when ``config`` conflicts with a handler already on it."""
    options = config.file_options()
    key = (path,) + options.key()
    with _registry_lock:
        sink = _registry.get(key)
        if sink is None:
            # A path still a symlink after resolving leads where no path does (/dev/stdout
            # on a pipe, or on a file since deleted): only the stream can be written.
            stream = special_kind(path) is not None or os.path.islink(path)
            cls = StreamSink if stream else STRATEGIES[config.strategy]
        else:
            check_compatible(path, _configs.get(id(sink), []), config)
            cls = type(sink)
        if config.merge_on_exit and not cls.regular:
            raise ValueError(
                f"merge_on_exit=True: filename={config.filename!r} is "
                f"{special_kind(path) or 'not a regular file'}, which every strategy writes "
                f"directly; there are no shards to merge"
            )
        if sink is None:
            sink = cls(path, options)
            _registry[key] = sink
            _all_sinks.add(sink)
        _configs.setdefault(id(sink), []).append(config)
        if config.watch:
            sink.watching = True
        sink.refs += 1
        return sink


def release(sink: Sink, config: Config) -> None:
    """Drop one handler's reference; the last one closes the file."""
    with _registry_lock:
        configs = _configs.get(id(sink), [])
        if config in configs:
            configs.remove(config)
        sink.refs -= 1
        if sink.refs > 0:
            return
        _configs.pop(id(sink), None)
        key = (sink.path,) + sink.options.key()
        if _registry.get(key) is sink:
            del _registry[key]
    sink.retire()


def close_path(kind: str, path: str) -> None:
    """Close every sink of strategy ``kind`` on the real ``path`` in this process (its next
    record reopens it); used to finish this process's own shard before a merge at exit."""
    for sink in list(_all_sinks):
        if sink.kind == kind and sink.path == path:
            sink.close()


def _reinit_after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for sink in list(_all_sinks):
        sink._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
