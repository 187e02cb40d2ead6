"""What a merge reports: :class:`MergeReport`, its :class:`Problem` entries, and :class:`MergeError`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MergeError", "Problem", "MergeReport"]


class MergeError(Exception):
    """The merge could not run at all (no such directory, another merge running, output not
    writable). Problems in the shards themselves are reported in :class:`MergeReport`."""


@dataclass
class Problem:
    """Something wrong in one input file; ``lineno`` 0 means the file as a whole."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}" if self.lineno else f"{self.path}: {self.message}"


@dataclass
class MergeReport:
    """What a merge did. ``ok`` is false when some input could not be merged whole."""

    output: str
    records: int = 0
    shards: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    rotated: str = ""  # the backup the output was rotated to before this batch
    #: Set when the path names no per-process log (no shard, never merged): what was found
    #: there instead. Nothing was merged, and nothing was created.
    absent: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.absent:
            return self.absent
        parts = [f"merged {self.records} records from {len(self.shards)} shard file(s) into {self.output}"]
        if self.removed:
            parts.append(f"removed {len(self.removed)}")
        if self.moved:
            parts.append(f"moved {len(self.moved)} damaged aside")
        if self.rotated:
            parts.append(f"rotated the old output to {self.rotated}")
        if self.live:
            parts.append(f"{len(self.live)} live")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return "; ".join(parts)
