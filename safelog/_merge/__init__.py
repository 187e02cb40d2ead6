"""``safelog merge``: join the shards of a ``per-process`` log into one time-ordered file.

Inputs
    Every shard of the log, for every host and pid, with its rotated backups
    (``app.log.<host>.<pid>.shard[.N][.gz|.bz2|.xz]``). The files of one writer process form one
    *chain*, oldest backup first; within a chain the shard format guarantees non-decreasing
    times, so each chain is a sorted run and the merge is a streaming k-way merge over chains.

Order
    By time (the shard header, microseconds, UTC); ties by host name, then pid, then position
    in the writer's chain (that is, the order the writer wrote them). The order is total and
    does not depend on directory listing order, so a re-run produces the same bytes.

Output
    The records exactly as the user's formatter produced them: framing stripped, continuation
    lines restored. The default output is the log path itself (``app.log``): the
    ``per-process`` strategy never writes it, and it is where people look. Each merge appends
    one time-ordered batch to it *in place*: same inode, ``O_APPEND``, earlier bytes never
    rewritten, so ``tail -F`` and shippers that follow files by inode read each record once,
    and merging a few records into a large log writes only those. Only merges write it. With
    ``max_bytes``/``backup_count`` it is rotated, compressed and pruned like a handler's log
    (see ``rotate``).

Atomicity and idempotence
    Merged shards are removed only once the batch is durable (fsynced). A small state file
    (``<output>.merge-state``) is the journal: before appending it records the output's size,
    and after the fsync it records what the merge will remove (the commit point). A re-run
    after a crash either truncates the output back to the recorded size (the shards are all
    still there, and are merged again) or finishes the removals (see ``journal``). It also
    records how far each shard that stays on disk (``keep=True``, live shards, damaged ones)
    has been merged, so no record is written twice.

Live shards
    A writer holds ``LOCK_SH`` on its shard while it has it open; a merge that cannot take
    ``LOCK_EX`` knows the shard is live. Live shards are skipped by default; with
    ``include_live`` they are read up to their last record known to be complete (the final
    record of a live shard is held back: it may still be being written) and never removed.

Speed and memory
    Memory is bounded by the number of chains (one read buffer of at most 256 KiB each) plus
    the longest record (held once), not by their size; time is linear in the input, however
    long a record is. Large inputs of plain shards are merged on two cores: the key range is
    split at a record boundary in every shard, a forked worker merges the upper part into a
    side file, and the two parts are concatenated (this process copies what the worker has
    written while the worker is still merging); the bytes are the same as from one process.

Where it lives
    ``discovery`` finds and opens the shards; ``reader`` decodes one writer's chain (through
    the shard format in ``_primitives.shard``); ``output`` is the k-way merge step and the
    writing; ``parallel`` the second core; ``journal`` the state file, recovery and removals;
    ``rotate`` the bounds of the merged log; ``report`` what a merge reports; ``run`` runs
    them in order (``live`` and ``follow``: ``merge --follow``). This package only re-exports.
"""

from __future__ import annotations

from .journal import STATE_SUFFIX
from .report import MergeError, MergeReport, Problem
from .run import LOCK_SUFFIX, TMP_INFIX, created_names, merge

__all__ = ["merge", "MergeReport", "MergeError", "Problem", "created_names", "LOCK_SUFFIX", "TMP_INFIX", "STATE_SUFFIX"]
