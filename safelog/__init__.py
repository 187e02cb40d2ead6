"""safelog: logging handlers that many threads, processes or an event loop can share safely.

Change one handler entry in ``dictConfig`` and pick a strategy::

    "file": {"class": "safelog.SafeFileHandler", "filename": "logs/app.log",
             "strategy": "flock", "max_bytes": "10 MB", "backup_count": 10}

Layers, top to bottom; a module imports only its own layer and the layers below it
(``tests/test_layering.py`` enforces this):

1. shell: this module, the handler classes (``_handler``), the CLI, the demo, the audit;
2. delivery (``_delivery``): rendering, failure bursts, the non-blocking queue;
3. sinks (``_sinks``: one module per strategy, and their registry), and beside them merge
   (``_merge``): the shard format and the primitives, plus the policy layer's parsers and
   rotation to bound the merged log (``_merge/rotate.py``); sinks and merge never import each other;
4. policy (``_policy``): the parsed config, rotation, time periods, compression;
5. primitives (``_primitives``): locking, file opening, paths, atomic write, fs detection, shards.
"""

from __future__ import annotations

from ._audit import AuditReport, audit, log_files
from ._dropin import (
    FileHandler,
    FlockFileHandler,
    PerProcessFileHandler,
    RotatingFileHandler,
    ThreadFileHandler,
    TimedRotatingFileHandler,
    WatchedFileHandler,
)
from ._handler import STRATEGIES, SafeFileHandler
from ._merge import MergeError, MergeReport, merge
from ._policy.compressor import COMPRESSOR
from ._primitives.atomic import atomic_write
from ._primitives.fsdetect import NetworkFileSystemWarning

__all__ = [
    "SafeFileHandler",
    "FileHandler",
    "WatchedFileHandler",
    "RotatingFileHandler",
    "TimedRotatingFileHandler",
    "ThreadFileHandler",
    "FlockFileHandler",
    "PerProcessFileHandler",
    "STRATEGIES",
    "merge",
    "MergeReport",
    "MergeError",
    "NetworkFileSystemWarning",
    "atomic_write",
    "wait_for_compression",
    "audit",
    "AuditReport",
    "log_files",
]


def wait_for_compression(timeout: float | None = None) -> bool:
    """Wait until every backup queued for compression in this process is compressed.

    Compression runs in a background thread after each rotation; a normal interpreter exit
    waits for it (at most 5 minutes). Call this where a program must know the ``.gz`` files
    are complete before it goes on (a test, a job that ships its backups next). Returns False
    if ``timeout`` seconds passed first.
    """
    return COMPRESSOR.wait(timeout)

__version__ = "0.1.0"
