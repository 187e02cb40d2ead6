"""What tests ask of a handler beyond its public API, in one place: the file it writes now, its
lock file, its descriptors. A test that is not about safelog's internals uses these instead of
reaching into them, so that moving an internal touches this module and the tests about it only.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import safelog
from safelog._primitives import lock as _lock
from safelog._sinks import logfile as _logfile
from safelog._sinks.lockfile import lock_path_for
from safelog._sinks.strategy import Strategy

__all__ = [
    "current_file",
    "lock_file",
    "log_descriptor",
    "lock_descriptor",
    "same_file",
    "strategy_of",
    "check_paths_every",
    "wait_for_compression",
    "rotation_lines",
    "lock_path",
    "take_lock",
    "try_take_lock",
    "drop_lock",
]


def strategy_of(handler: logging.Handler) -> Any:
    """The strategy object writing ``handler``'s file in this process (for tests about it)."""
    sink: Strategy = handler._strategy  # type: ignore[attr-defined]
    return sink


def current_file(handler: logging.Handler) -> str:
    """The file ``handler`` appends to now: its log, or this process's shard (per-process)."""
    return str(strategy_of(handler).target())


def lock_file(handler: logging.Handler) -> str:
    """The lock file of a ``flock`` handler."""
    return str(strategy_of(handler).lockfile.path)


def log_descriptor(handler: logging.Handler) -> int:
    """The descriptor ``handler``'s strategy appends with (-1: none open)."""
    return int(strategy_of(handler).file.fd)


def lock_descriptor(handler: logging.Handler) -> int:
    """The descriptor a ``flock`` handler's strategy holds its lock file with (-1: none open)."""
    return int(strategy_of(handler).lockfile.fd)


def same_file(*handlers: logging.Handler) -> bool:
    """True when the handlers share one strategy object (one per real path per process)."""
    first = strategy_of(handlers[0])
    return all(strategy_of(h) is first for h in handlers[1:])


def check_paths_every(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every strategy check that its paths still name its files this often (the
    documented once a second, otherwise)."""
    monkeypatch.setattr(_logfile, "CHECK_INTERVAL", seconds)


def wait_for_compression(timeout: float = 30) -> None:
    """Fail the test unless every queued backup is compressed within ``timeout`` seconds."""
    assert safelog.wait_for_compression(timeout), f"compression still running after {timeout} s"


def rotation_lines(path: str) -> list[bytes]:
    """The rotation lines of the flock lock file ``path``: without the records processes leave
    there (a line starting with ``#``) and the period line each one repeats after it."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    kept: list[bytes] = []
    skip = False
    for line in lines:
        if line.startswith(b"#"):
            skip = True
        elif skip:
            skip = False
        else:
            kept.append(line)
    return kept


def lock_path(path: str, lock_dir: str | None = None) -> str:
    """The lock file a ``flock`` handler of the log ``path`` (and ``lock_dir``) uses."""
    return lock_path_for(path, lock_dir)


def take_lock(fd: int, shared: bool = False) -> None:
    """Hold the file lock of ``fd`` as a ``flock`` writer (shared) or a rotation (exclusive) does,
    waiting for it."""
    _lock.flock(fd, _lock.LOCK_SH if shared else _lock.LOCK_EX)


def try_take_lock(fd: int) -> bool:
    """Take the exclusive file lock of ``fd`` without waiting; False when another holder has it."""
    return _lock.try_lock(fd, _lock.LOCK_EX)


def drop_lock(fd: int) -> None:
    """Release the file lock of ``fd``."""
    _lock.flock(fd, _lock.LOCK_UN)
