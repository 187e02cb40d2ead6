"""The rotation policy's decisions, asked without a file: triggers, backup names, the steps after a
rotation. (The rest of the suite checks them on real files, through the handlers.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from safelog._policy.backups import BackupFiles
from safelog._policy.compress import CODECS
from safelog._policy.config import RotationConfig
from safelog._policy.naming import DatedNames, NumberedNames
from safelog._policy.rotation import SIZE, TIME, RotationHooks, RotationPolicy
from safelog._policy.steps import Compress, KeepAge, KeepCount, Leftovers
from safelog._policy.timing import TimePolicy
from safelog._policy.triggers import UNKNOWN, SizeTrigger, TimeTrigger


def _hooks(moved: list[tuple[str, str]] | None = None, namer: Any = None) -> RotationHooks:
    return RotationHooks(
        name=namer or (lambda name: name),
        move=lambda source, dest: (moved if moved is not None else []).append((source, dest)),
        plain=lambda: namer is None,
        report=lambda record: None,
    )


class _NoFiles(BackupFiles):
    """Rotation's file side, answered from memory: what exists, and what was done."""

    def __init__(self, backups: dict[Any, list[str]], names: set[str]) -> None:
        self.backups = backups
        self.names = names
        self.done: list[tuple[str, ...]] = []

    def listing(self, path: str, directory: str, key_of: Any) -> Any:
        return dict(self.backups), []

    def exists(self, name: str) -> bool:
        return name in self.names

    def replace(self, source: str, dest: str) -> None:
        self.done.append(("replace", source, dest))

    def trash(self, name: str) -> None:
        self.done.append(("trash", name))


def test_a_size_trigger_never_finds_an_empty_file_due() -> None:
    """Due at the limit or past it (the stdlib's >=), never for an empty file, whatever the record."""
    size = SizeTrigger(100)
    assert [size.due(0, 500), size.due(60, 39), size.due(60, 40), size.due(99, 1)] == [False, False, True, True]


def test_a_time_trigger_answers_by_the_period_end() -> None:
    """Due once the record's time reaches the end of the period; the end of an unknown period is
    UNKNOWN, before every instant, so the strategy's cheap test sends the record to work it out."""
    trigger = TimeTrigger(TimePolicy("H", aligned=True))
    end = trigger.end(trigger.start_period(None, 7200.5))
    assert end == 10800.0
    assert (trigger.due(10799.9, end), trigger.due(10800.0, end)) == (False, True)
    assert trigger.end(None) == UNKNOWN and 0.0 >= trigger.end(None)


def test_the_policy_compiles_the_room_left_and_its_steps() -> None:
    """The size a file is due at is infinite when size rotation cannot rename (no backups), and
    the steps follow the options in their order: retention, leftovers, compression."""
    hooks = _hooks()
    assert RotationPolicy(RotationConfig(max_bytes=100), hooks).limit == math.inf
    assert RotationPolicy(RotationConfig(max_bytes=100, backup_count=2), hooks).limit == 100
    timed = RotationConfig(
        max_bytes=100, backup_count=3, timing=TimePolicy("H"), codec=CODECS["gzip"], max_age=60.0
    )
    policy = RotationPolicy(timed, hooks)
    assert [type(s) for s in policy.steps] == [KeepCount, KeepAge, Leftovers, Compress]
    assert policy.period_end(None) == UNKNOWN and RotationPolicy(RotationConfig(), hooks).period_end(None) == math.inf
    assert RotationPolicy(RotationConfig(max_bytes=100, backup_count=2), hooks).steps == ()


def test_due_asks_time_first_and_waits_out_a_failed_rename() -> None:
    """due() names the trigger that fired (time before size); after a rename failed, nothing is
    due until the retry interval has passed."""
    config = RotationConfig(max_bytes=100, timing=TimePolicy("H"))
    files = _NoFiles({}, set())
    policy = RotationPolicy(config, _hooks(), files=files)
    assert policy.due(50, 10, 3599.0, 3600.0) == 0
    assert policy.due(95, 10, 3599.0, 3600.0) == SIZE
    assert policy.due(95, 10, 3600.0, 3600.0) == TIME

    def refuse(source: str, dest: str) -> None:
        raise PermissionError(13, "no", dest)

    failing = RotationPolicy(RotationConfig(max_bytes=100, backup_count=2), _hooks()._replace(move=refuse), files=files)
    assert failing.rotate("app.log", SIZE, 120, None, 0.0) is None
    assert failing.due(120, 10, 0.0) == 0


def test_numbered_names_shift_from_the_listing_only() -> None:
    """Making room for .1 moves each existing backup (and its compressed form) one up, highest
    first, and removes the one that would pass the count; numbers that do not exist cost nothing."""
    names = NumberedNames(_hooks(), 3)
    backups = {(-3,): ["app.log.3"], (-2,): ["app.log.2", "app.log.2.gz"], (-1,): ["app.log.1"]}
    first, moves = names.shift("app.log", backups)
    assert first == "app.log.1"
    assert moves == [
        ("app.log.3", ""), ("app.log.2", "app.log.3"), ("app.log.2.gz", "app.log.3.gz"), ("app.log.1", "app.log.2"),
    ]
    key = names.key_of("app.log")
    assert [key("app.log.2"), key("app.log.4"), key("app.log.02x")] == [(-2,), None, None]


def test_dated_names_never_number_below_an_existing_backup() -> None:
    """A new backup of a period takes the number after the highest one listed (retention may
    have removed the ones below it), and skips a name that exists outside the listing."""
    timing = TimePolicy("D", utc=True)
    names = DatedNames(_hooks(), timing)
    stamp = timing.stamp(0.0)
    backups = {(stamp, 2): [f"app.log.{stamp}.2"]}
    taken = {f"app.log.{stamp}.3"}
    assert names.choose("app.log", 0.0, 10.0, backups, taken.__contains__, numbered=True) == f"app.log.{stamp}.4"
    assert names.choose("app.log", 0.0, 10.0, {}, set().__contains__, numbered=True) == f"app.log.{stamp}"
    assert names.choose("app.log", 0.0, 10.0, {}, {f"app.log.{stamp}"}.__contains__, numbered=False) is None


def test_the_steps_select_from_the_listing() -> None:
    """Retention by count keeps the newest, by age removes the old, compression skips the
    compressed ones and, with delay, the newest backup."""
    backups = {(1,): ["b.1"], (2,): ["b.2.gz"], (3,): ["b.3"], (4,): ["b.4"]}
    assert KeepCount(2).select(backups) == {(1,), (2,)}
    assert KeepAge(60).select({(1,): 10.0, (2,): 100.0}, now=100.0) == {(1,)}
    assert Compress(CODECS["gzip"], False, None).select(backups) == ["b.1", "b.3", "b.4"]
    assert Compress(CODECS["gzip"], True, None).select(backups) == ["b.1", "b.3"]


def test_rotate_renames_through_the_hooks_and_the_file_side() -> None:
    """A size rotation shifts the listed backups through the file side and moves the log with
    the handler's rotator, all from the policy's decisions."""
    moved: list[tuple[str, str]] = []
    files = _NoFiles({(-1,): ["app.log.1"]}, set())
    policy = RotationPolicy(RotationConfig(max_bytes=100, backup_count=2), _hooks(moved), files=files)
    assert policy.rotate("app.log", SIZE, 150, None, 0.0) == (None, "app.log.1")
    assert files.done == [("replace", "app.log.1", "app.log.2")]
    assert moved == [("app.log", "app.log.1")]
    assert policy.rotate("app.log", SIZE, 0, None, 0.0) == (None, "")  # an empty file: no backup


@pytest.mark.parametrize("max_bytes", [0, 100])
def test_would_rotate_answers_for_a_limit_without_backups(max_bytes: int) -> None:
    """shouldRollover()'s question counts maxBytes even when backupCount=0 renames nothing."""
    policy = RotationPolicy(RotationConfig(max_bytes=max_bytes), _hooks())
    assert policy.would_rotate(90, 20, 0.0, math.inf) is bool(max_bytes)
    assert policy.due(90, 20, 0.0) == 0
