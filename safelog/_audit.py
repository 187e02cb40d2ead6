"""Exact audits of what a run wrote: every record id present exactly once, no malformed line.

Used by ``python -m safelog demo``, the benchmarks and the tests. Plain log files are read line
by line; ``per-process`` shards are decoded first (their framing is checked too), then each
record's text is matched like a line.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._primitives.codec import open_read
from ._primitives.shard import FrameError, iter_records

__all__ = ["AuditReport", "audit", "log_files"]


@dataclass
class AuditReport:
    """What an audit found. ``ok`` is true when nothing was lost, duplicated or malformed."""

    files: int = 0
    records: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, unexpected or malformed."""
        return not (self.lost or self.duplicated or self.unexpected or self.malformed)

    def summary(self) -> str:
        """One line: records, files, and how many of each problem."""
        return (
            f"{self.records} records in {self.files} files: {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {len(self.unexpected)} unexpected, "
            f"{len(self.malformed)} malformed"
        )


def log_files(path: str) -> list[str]:
    """The log at ``path`` and everything it rotated or sharded into (not its lock file)."""
    directory, name = os.path.split(os.path.abspath(path))
    out = []
    for entry in sorted(os.listdir(directory)):
        if entry == name or (entry.startswith(name + ".") and not entry.endswith((".lock", ".merge-state"))):
            out.append(os.path.join(directory, entry))
    return out


def _texts(path: str) -> Iterator[tuple[int, bytes] | FrameError]:
    """(line number, record text) for each record of a file, plain or shard."""
    with open_read(path) as f:
        if ".shard" in os.path.basename(path):
            for item in iter_records(f):
                yield item if isinstance(item, FrameError) else (item.lineno, item.text)
            return
        for lineno, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                yield FrameError(lineno, line, "truncated line (no line end)")
            else:
                yield lineno, line[:-1]


def audit(
    files: str | os.PathLike[str] | Iterable[str], expected: Iterable[str], pattern: str | re.Pattern[str]
) -> AuditReport:
    """Check that a log holds each id of ``expected`` exactly once and nothing malformed.

    ``files`` is a log path (the log, its backups, compressed or not, and its ``per-process``
    shards are read: :func:`log_files`) or a list of files. ``pattern`` must match a whole
    record (``fullmatch``) and capture its id in group ``id``; a record that does not match, a
    torn line and a broken shard frame all count as malformed.
    """
    if isinstance(files, (str, os.PathLike)):
        files = log_files(os.fspath(files))
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    report = AuditReport()
    seen: Counter[str] = Counter()
    for path in files:
        report.files += 1
        for item in _texts(path):
            if isinstance(item, FrameError):
                report.malformed.append((path, item.lineno, item.reason))
                continue
            lineno, raw = item
            text = raw.decode("utf-8", "replace")
            m = rx.fullmatch(text)
            if m is None:
                report.malformed.append((path, lineno, text[:120]))
                continue
            report.records += 1
            seen[m.group("id")] += 1
    want = set(expected)
    report.lost = sorted(want - seen.keys())
    report.duplicated = {k: n for k, n in sorted(seen.items()) if n > 1 and k in want}
    report.unexpected = sorted(k for k in seen if k not in want)
    return report
