"""The strategies by name, and the one strategy per real path per process that their handlers share.

``logging.Handler.handle()`` holds a lock per *handler*: two handlers on one path would not
exclude each other, nor would they agree on rotation. So every handler of a path in a process
gets the same :class:`~.strategy.Strategy` object, with one rotation policy compiled from the
first handler's options and hooks, and a second handler whose options or hooks would break the
first's is refused here (:func:`safelog._policy.config.check_compatible`, ``check_same_hooks``).

A path that names a FIFO or a device when its first handler is configured gets a
:class:`~.stream.StreamStrategy`, whatever the strategy: written directly, never rotated; so
does a path that is still a symlink after resolving (see ``resolve_log_path``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import weakref
from typing import NamedTuple

from .._policy.config import STRATEGY_NAMES, Config, check_compatible, check_same_hooks
from .._policy.rotation import RotationHooks, RotationPolicy
from .._policy.starts import claim
from .._primitives.paths import special_kind
from .flock import FlockStrategy
from .perprocess import PerProcessStrategy
from .strategy import Strategy
from .stream import StreamStrategy
from .thread import ThreadStrategy

__all__ = ["STRATEGIES", "registered", "acquire", "release", "close_path"]


def registered(classes: tuple[type[Strategy], ...], names: tuple[str, ...]) -> dict[str, type[Strategy]]:
    """The strategies by their ``name``; RuntimeError unless they are exactly ``names``, in order.

    The policy layer parses ``strategy=`` and cannot import this layer, so it holds the names
    (``STRATEGY_NAMES``) and this is where the two are held to agree: a strategy added on one
    side only fails every import, not a handler much later."""
    strategies = {cls.name: cls for cls in classes}
    if tuple(strategies) != names:
        raise RuntimeError(f"strategies {tuple(strategies)} do not match STRATEGY_NAMES {names}")
    return strategies


# A new strategy is a module, its class here and its name in STRATEGY_NAMES.
STRATEGIES = registered((ThreadStrategy, FlockStrategy, PerProcessStrategy), STRATEGY_NAMES)

_registry: dict[tuple[object, ...], Strategy] = {}
_registry_lock = threading.Lock()
_all_sinks: weakref.WeakSet[Strategy] = weakref.WeakSet()


class _Member(NamedTuple):
    """One handler of a strategy: its configuration and rotation hooks, for the compatibility check
    and for handing the policy's hooks on when the handler that owned them leaves."""

    owner: object  # the handler (identity only)
    config: Config
    hooks: RotationHooks


# The live handlers of each strategy (by id), oldest first.
_members: dict[int, list[_Member]] = {}


def acquire(path: str, config: Config, hooks: RotationHooks, owner: object) -> Strategy:
    """Return the process-wide strategy for the real ``path`` with ``config``'s strategy, creating it
    (and compiling its rotation policy from ``config`` and ``hooks``) on first use; raise
    ValueError when ``config`` or ``hooks`` conflict with a handler already on it."""
    options = config.file
    key = (path, options.lock_dir)
    with _registry_lock:
        strategy = _registry.get(key)
        if strategy is None:
            # A path still a symlink after resolving leads where no path does (/dev/stdout
            # on a pipe, or on a file since deleted): only the stream can be written.
            stream = special_kind(path) is not None or os.path.islink(path)
            cls: type[Strategy] = StreamStrategy if stream else STRATEGIES[config.strategy]
        else:
            policy = strategy.policy
            # The rotation settings as the path's policy has them now (maxBytes may have been
            # assigned since the handlers below were configured).
            members = [dataclasses.replace(m.config, rotation=policy.config) for m in _members.get(id(strategy), [])]
            check_compatible(path, members, config)
            check_same_hooks(path, policy.hooks.identity(), hooks.identity())
            cls = type(strategy)
        if config.merge_on_exit and not cls.regular:
            raise ValueError(
                f"merge_on_exit=True: filename={config.filename!r} is "
                f"{special_kind(path) or 'not a regular file'}, which every strategy writes "
                f"directly; there are no shards to merge"
            )
        if config.rotation.rotate_on_start:
            claim()  # before any child is started: they inherit the start (see _policy.starts)
        if strategy is None:
            # A strategy whose every process writes a file of its own (shards) rotates each one
            # with this policy; a step spanning the log counts all of them.
            shards_of = path if cls.own_file else None
            policy = RotationPolicy(config.rotation, hooks, options.set_perms, started=time.time(), shards_of=shards_of)
            strategy = cls(path, options, policy)
            _registry[key] = strategy
            _all_sinks.add(strategy)
        _members.setdefault(id(strategy), []).append(_Member(owner, config, hooks))
        if config.reopen.watch:
            strategy.watching = True
        strategy.refs += 1
        return strategy


def release(strategy: Strategy, owner: object) -> None:
    """Drop one handler's reference; the last one closes the file."""
    with _registry_lock:
        members = _members.get(id(strategy), [])
        gone = [m for m in members if m.owner is owner][:1]
        for m in gone:
            members.remove(m)
            if strategy.policy.hooks is m.hooks and members:
                # The hooks (namer, rotator, handleError) of a handler still open, from now on.
                strategy.policy.hand_over(members[0].hooks)
        strategy.refs -= 1
        if strategy.refs > 0:
            return
        _members.pop(id(strategy), None)
        for key in [k for k, s in _registry.items() if s is strategy]:
            del _registry[key]
    strategy.retire()


def close_path(name: str, path: str) -> None:
    """Close the strategy ``name`` of the real ``path`` in this process (its next record reopens
    it); used to finish this process's own shard before a merge at exit."""
    for strategy in list(_all_sinks):
        if strategy.name == name and strategy.path == path:
            strategy.close()


def _reinit_after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for strategy in list(_all_sinks):
        strategy.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
