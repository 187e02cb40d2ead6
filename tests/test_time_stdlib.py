"""Time rotation under the stdlib's rule (``when=``, ``interval``, ``atTime``): the running
interpreter's ``computeRollover`` and ``rolloverAt``, the DST hours, the log's mtime at start-up,
a backup name that exists already, a cleanup that fails, and several processes agreeing on the
boundaries through ``flock``'s lock file.

The clock is controlled: ``time.time`` is patched (as CPython's own tests do) and every record
carries the same time as ``created``; child processes get the time through ``record.created``.
"""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import rotation_lines
from test_time_rotation import PATTERN, RECORDS, files_by_name, run_phases

import safelog
from safelog import audit, log_files

US = "EST+05EDT,M3.2.0,M11.1.0"  # DST from 2 a.m. on the second Sunday of March to the first of November
DT = datetime.datetime


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """``time.time()`` reads ``clock[0]``."""
    now = [0.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    yield now


def emit(handler: logging.Handler, clock: list[float], rid: str, t: float) -> None:
    """One record made at ``t``, with the clock reading ``t``."""
    clock[0] = t
    handler.handle(logging.makeLogRecord({"msg": f"id={rid}", "created": t}))


def stamps(directory: Any, name: str = "app.log") -> list[str]:
    """The backup suffixes of ``name`` (or of its shards) in ``directory``, sorted."""
    rx = re.compile(re.escape(name) + r"(?:\.[^.]+\.\d+\.shard)?\.(\d{4}-.+)$")
    return sorted(m.group(1) for n in os.listdir(directory) if (m := rx.match(n)))


def current(directory: Any) -> str:
    """The file a handler of ``app.log`` writes now (the log, or this process's shard)."""
    names = [n for n in os.listdir(directory) if re.fullmatch(r"app\.log(?:\.[^.]+\.\d+\.shard)?", n)]
    assert len(names) == 1, names
    return os.path.join(directory, names[0])


# -- computeRollover and rolloverAt are the running stdlib's ------------------------------------

WHENS = ["S", "M", "H", "D", "MIDNIGHT"] + [f"W{d}" for d in range(7)]


@pytest.mark.parametrize("utc", [True, False])
@pytest.mark.parametrize("when", WHENS)
def test_compute_rollover_is_the_running_stdlibs(tmp_path: Any, tz: Any, when: str, utc: bool) -> None:
    """computeRollover(t) returns what this interpreter's logging.handlers returns, for every
    when, interval 1 and 3, each atTime, at times through both DST changes of a year."""
    tz(US)
    times = [0.0, 1e9]
    for day in (DT(2012, 3, 9), DT(2012, 11, 2), DT(2026, 3, 6), DT(2026, 10, 30)):
        times += [day.timestamp() + k * 1741 for k in range(4 * 86400 // 1741)]
    ats = [None] if when not in ("MIDNIGHT",) and not when.startswith("W") else [
        None, datetime.time(0), datetime.time(1, 30), datetime.time(2), datetime.time(2, 30), datetime.time(12)
    ]  # fmt: skip
    for interval in (1, 3):
        for at in ats:
            kwargs = {"when": when, "interval": interval, "utc": utc, "atTime": at, "delay": True}
            ours = safelog.TimedRotatingFileHandler(str(tmp_path / "ours.log"), strategy="thread", **kwargs)
            theirs = logging.handlers.TimedRotatingFileHandler(str(tmp_path / "theirs.log"), **kwargs)
            try:
                assert ours.interval == theirs.interval
                for t in times:
                    assert ours.computeRollover(t) == theirs.computeRollover(t), (interval, at, time.ctime(t))
            finally:
                ours.close()
                theirs.close()


DIFFERENTIAL = [
    ("H", 1, None),
    ("M", 7, None),
    ("D", 2, None),
    ("MIDNIGHT", 1, None),
    ("MIDNIGHT", 3, datetime.time(12)),
    ("W0", 1, None),
    ("W6", 2, datetime.time(1, 30)),
]


@pytest.mark.parametrize(("when", "interval", "at"), DIFFERENTIAL)
def test_rollover_at_and_backup_names_follow_the_stdlib(
    tmp_path: Any, tz: Any, clock: list[float], make_handler: Any, strategy: str, when: str, interval: int, at: Any
) -> None:
    """Driven by the same clock through the autumn DST change, safelog's rolloverAt equals the
    stdlib handler's after every record, and the backups carry the stdlib's names."""
    tz(US)
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    start = DT(2012, 10, 20, 10, 17).timestamp()
    clock[0] = start
    # delay=True: the stdlib reads the mtime of a file it has just created otherwise, which is
    # the real clock's, not the one patched here.
    kwargs = {"when": when, "interval": interval, "atTime": at, "delay": True}
    ours = make_handler(str(tmp_path / "ours" / "app.log"), cls=safelog.TimedRotatingFileHandler, strategy=strategy, **kwargs)
    theirs = logging.handlers.TimedRotatingFileHandler(str(tmp_path / "theirs" / "app.log"), **kwargs)
    try:
        assert ours.rolloverAt == theirs.rolloverAt
        step = 3 * 3600 + 11 * 60 + 0.5 if when != "M" else 173.25
        t = start
        for i in range(160):
            emit(ours, clock, str(i), t)
            theirs.handle(logging.makeLogRecord({"msg": f"id={i}", "created": t}))
            assert ours.rolloverAt == theirs.rolloverAt, time.ctime(t)
            t += step
    finally:
        theirs.close()
    ours.close()
    assert stamps(tmp_path / "ours") == stamps(tmp_path / "theirs")
    assert stamps(tmp_path / "ours")  # it did rotate


# -- the DST hours -------------------------------------------------------------------------------


def test_records_in_the_repeated_hour_do_not_rotate_each_other(
    tmp_path: Any, tz: Any, clock: list[float], make_handler: Any, strategy: str
) -> None:
    """when='midnight', atTime=01:30, records at 01:00-01:04 EST on 4 Nov 2012 (the hour DST
    ends, second pass): one file, no backup (the boundary worked out lies ahead, at 01:30 EST)."""
    tz(US)
    clock[0] = DT(2012, 11, 4, 1, 0, fold=1).timestamp()
    h = make_handler(str(tmp_path / "app.log"), cls=safelog.TimedRotatingFileHandler, when="midnight", atTime="01:30", strategy=strategy)
    for m in range(5):
        t = DT(2012, 11, 4, 1, m, fold=1).timestamp()
        emit(h, clock, str(m), t)
        assert h.rolloverAt == DT(2012, 11, 4, 1, 30, fold=1).timestamp() > t
    h.close()
    assert stamps(tmp_path) == []
    assert audit(log_files(str(tmp_path / "app.log")), [str(m) for m in range(5)], PATTERN).ok


# (when, atTime) → rotations the stdlib's rule makes from Saturday 12:00 to Tuesday 12:00, and
# the same with the grid of rotate_every=.
DST_CASES = [
    ("midnight", None, 3, "daily"),
    ("midnight", "01:30", 3, "daily at 01:30"),
    ("midnight", "02:30", 3, "daily at 02:30"),
    ("W6", None, 1, "sunday"),
    ("W6", "01:30", 1, "sunday at 01:30"),
    ("W6", "02:30", 1, "sunday at 02:30"),
    ("W0", None, 1, "monday"),
    ("W0", "01:30", 1, "monday at 01:30"),
]


@pytest.mark.parametrize("rule", ["when", "rotate_every"])
@pytest.mark.parametrize("change", ["spring", "autumn"])
@pytest.mark.parametrize(("when", "at", "rotations", "every"), DST_CASES)
def test_dst_weekends_rotate_once_per_boundary(
    tmp_path: Any, tz: Any, clock: list[float], make_handler: Any, strategy: str,
    when: str, at: str | None, rotations: int, every: str, change: str, rule: str,
) -> None:
    """Records every 10 minutes over the weekend a DST change falls on (both directions, the
    skipped and the repeated hour, atTime in them or not): each boundary rotates exactly once,
    with the stdlib's rule and with the clock grid, and every record is in exactly one file."""
    tz(US)
    saturday = DT(2012, 3, 10, 12) if change == "spring" else DT(2012, 11, 3, 12)
    clock[0] = saturday.timestamp()
    path = str(tmp_path / "app.log")
    if rule == "when":
        h = make_handler(path, cls=safelog.TimedRotatingFileHandler, when=when, atTime=at, strategy=strategy)
    else:
        h = make_handler(path, rotate_every=every, strategy=strategy)
    t = saturday.timestamp()
    ids = []
    while t < saturday.timestamp() + 3 * 86400:
        emit(h, clock, str(len(ids)), t)
        if rule == "when":
            assert h.rolloverAt > t
        ids.append(str(len(ids)))
        t += 600
    h.close()
    assert len(stamps(tmp_path)) == rotations, stamps(tmp_path)
    assert audit(log_files(path), ids, PATTERN).ok
    # Name order is age order: the records of each backup come before those of the next.
    files = [os.path.join(tmp_path, n) for n in sorted(os.listdir(tmp_path)) if ".lock" not in n]
    files = sorted(files, key=lambda f: (f == current(tmp_path), f))
    order = [sorted(int(i) for i in audit([f], [], PATTERN).unexpected) for f in files]
    assert [x for chunk in order for x in chunk] == list(range(len(ids)))


def test_several_processes_through_the_repeated_hour_rotate_once(tmp_path: Any, tz: Any) -> None:
    """Three flock writers with when='midnight', atTime=01:30 through the night DST ends; one
    starts in the repeated hour, where on its own it would compute 01:30 EST: it reads the
    boundary from the lock file instead. One rotation (at 01:30 EDT), exact audit."""
    tz(US)
    path = str(tmp_path / "app.log")
    times = [DT(2012, 11, 4, h, m, fold=f).timestamp() for h, m, f in
             [(0, 50, 0), (1, 20, 0), (1, 40, 0), (1, 0, 1), (1, 20, 1), (1, 40, 1), (2, 10, 0)]]  # fmt: skip
    plan = {"a": list(range(7)), "b": list(range(7)), "c": [3, 4, 5, 6]}

    def before(k: int) -> None:
        if k == 3:  # the log as the real clock would have left it: last written at 01:40 EDT
            os.utime(path, (times[2], times[2]))

    kwargs = {"strategy": "flock", "when": "midnight", "atTime": "01:30"}
    ids = run_phases(path, kwargs, times, plan, before=before)
    assert audit(log_files(path), ids, PATTERN).ok
    files = files_by_name(path)
    assert sorted(files) == ["app.log", "app.log.2012-11-03"]
    assert {rid.split("-")[1] for rid in files["app.log.2012-11-03"]} == {"0", "1"}
    with open(path + ".lock", "rb") as f:
        lock = f.read()
    assert len(rotation_lines(path + ".lock")) == 2, lock  # the period established, one rotation


# -- processes started at different times agree ----------------------------------------------


def test_a_later_process_takes_the_boundary_the_first_one_recorded(tmp_path: Any) -> None:
    """when='H' counts an hour from the start: the first flock writer starts at :00:05 and
    records that the file is due at 01:00:05; a second one started at :30 would compute 01:30
    on its own. Alone at 01:00:06 it rotates, at 01:00:02 nobody does: one boundary for all."""
    path = str(tmp_path / "app.log")
    b = 1_795_651_200.0  # 2026-11-26 00:00:00 UTC
    times = [b + 5, b + 1800, b + 3602, b + 3606, b + 3607]
    plan = {"first": [0, 1, 2, 4], "later": [1, 2, 3, 4]}
    ids = run_phases(path, {"strategy": "flock", "when": "H", "utc": True}, times, plan)
    assert audit(log_files(path), ids, PATTERN).ok
    files = files_by_name(path)
    assert sorted(files) == ["app.log", "app.log.2026-11-26_00"]
    assert {rid.split("-")[1] for rid in files["app.log.2026-11-26_00"]} == {"0", "1", "2"}
    assert rotation_lines(path + ".lock") == [b"%d" % (b + 5), b"%d" % (b + 3606)]


# -- the log's mtime at start-up ------------------------------------------------------------


@pytest.mark.parametrize("weekly", [False, True])
def test_a_log_left_from_the_previous_period_rotates_when_a_handler_starts(
    tmp_path: Any, clock: list[float], make_handler: Any, strategy: str, weekly: bool
) -> None:
    """CPython's test_rollover_at_midnight, every strategy: three handlers write within the second
    of atTime; the log's mtime is then set one second before it, and the next handler rotates it
    into app.log.<the day before> (a week before for W<today>); the one after does not."""
    now = DT(2026, 11, 26, 10, 20, 30).timestamp() + 0.5
    when = f"W{DT.fromtimestamp(now).weekday()}" if weekly else "MIDNIGHT"
    path = str(tmp_path / "app.log")
    at = DT.fromtimestamp(now).time().replace(microsecond=0)

    def run(i: int, rid: str) -> None:
        clock[0] = now
        h = make_handler(path, cls=safelog.TimedRotatingFileHandler, when=when, atTime=at, strategy=strategy)
        emit(h, clock, rid, now)
        h.close()

    for i in range(3):
        run(i, f"first-{i}")
    os.utime(current(tmp_path), (now - 1.5, now - 1.5))
    for i in range(2):
        run(i, f"second-{i}")
    before = DT.fromtimestamp(now) - datetime.timedelta(days=7 if weekly else 1)
    assert stamps(tmp_path) == [f"{before:%Y-%m-%d}"]
    backup = [n for n in os.listdir(tmp_path) if n.endswith(f"{before:%Y-%m-%d}")][0]
    assert audit([str(tmp_path / backup)], [f"first-{i}" for i in range(3)], PATTERN).ok
    assert audit([current(tmp_path)], [f"second-{i}" for i in range(2)], PATTERN).ok


@pytest.mark.parametrize("lock_file", ["kept", "removed"])
def test_processes_starting_together_on_yesterdays_log_rotate_it_once(tmp_path: Any, lock_file: str) -> None:
    """A flock log last written yesterday (its lock file recording today's period, as a log
    put back or touched would have; or no lock file at all): four processes start at once and
    write. Exactly one backup, app.log.<yesterday>, holding yesterday's records; exact audit."""
    path = str(tmp_path / "app.log")
    today = 1_795_651_200.0 + 10 * 3600  # 2026-11-26 10:00 UTC
    times = [today - 5, today + 60]

    def before(k: int) -> None:
        if k == 1:
            os.utime(path, (today - 19 * 3600, today - 19 * 3600))  # 2026-11-25 15:00
            if lock_file == "removed":
                os.unlink(path + ".lock")

    plan = {"old": [0], "w0": [1], "w1": [1], "w2": [1], "w3": [1]}
    kwargs = {"strategy": "flock", "when": "midnight", "utc": True}
    ids = run_phases(path, kwargs, times, plan, before=before)
    assert audit(log_files(path), ids, PATTERN).ok
    files = files_by_name(path)
    assert sorted(files) == ["app.log", "app.log.2026-11-25"]
    assert {rid.split("-")[0] for rid in files["app.log.2026-11-25"]} == {"old"}
    assert len(files["app.log"]) == 4 * RECORDS
    lines = rotation_lines(path + ".lock")
    # Yesterday's period recorded once (over today's, or into the new lock file), one rotation.
    assert len(lines) == (3 if lock_file == "kept" else 2), lines
    assert lines[-2] == b"%d" % (today - 10 * 3600 - 86400)


# -- an existing backup name; a failed cleanup ----------------------------------------------


@pytest.mark.parametrize("max_bytes", [0, 10_000])
def test_a_rotation_whose_backup_name_exists_is_skipped(
    tmp_path: Any, clock: list[float], make_handler: Any, strategy: str, max_bytes: int
) -> None:
    """CPython 3.14's test_rollover_existing_backup: the backup name of the current period is
    taken, so the rotation is skipped (the file is never overwritten) and the file goes on into
    the next period, whose name it gets. With a size limit as well, the next number is taken."""
    b = 1_000_000_000.0
    clock[0] = b
    path = str(tmp_path / "app.log")
    h = make_handler(path, cls=safelog.TimedRotatingFileHandler, when="S", utc=True, strategy=strategy, maxBytes=max_bytes)
    emit(h, clock, "a", b)
    stem = current(tmp_path) + "." + time.strftime(h.suffix, time.gmtime(h.rolloverAt - h.interval))
    with open(stem, "w") as f:
        f.write("id=existing\n")
    emit(h, clock, "b", b + 2)
    assert h.rolloverAt > b + 2
    next_stem = current(tmp_path) + "." + time.strftime(h.suffix, time.gmtime(h.rolloverAt - h.interval))
    emit(h, clock, "c", b + 4)
    h.close()
    with open(stem) as f:
        assert f.read() == "id=existing\n"
    if max_bytes:
        assert audit([stem + ".1"], ["a"], PATTERN).ok and audit([next_stem], ["b"], PATTERN).ok
    else:
        assert audit([next_stem], ["a", "b"], PATTERN).ok
    assert audit([current(tmp_path)], ["c"], PATTERN).ok
    # flock's lock file, per-process's policy record
    assert len(os.listdir(tmp_path)) == 3 + bool(max_bytes) + (strategy in ("flock", "per-process"))


def test_a_failed_cleanup_is_reported_and_the_rotation_stands(
    tmp_path: Any, clock: list[float], make_handler: Any, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention that cannot remove a surplus backup reports it once through handleError; the
    rotation has happened, the record is written, and the next rotation removes the backup."""
    b = 1_000_000_000.0
    clock[0] = b
    path = str(tmp_path / "app.log")
    h = make_handler(path, cls=safelog.TimedRotatingFileHandler, when="S", utc=True, backupCount=1, strategy=strategy)
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(h, "handleError", errors.append)
    for i, rid in enumerate("ab"):
        emit(h, clock, rid, b + 2 * i)
    oldest = current(tmp_path) + ".2001-09-09_01-46-40"
    assert files_by_name(path)[os.path.basename(oldest)] == {"a"}
    rename = os.rename

    def refuse(src: Any, dst: Any) -> None:
        if os.fspath(src) == oldest:
            raise PermissionError(13, "Permission denied", src)
        rename(src, dst)

    monkeypatch.setattr(os, "rename", refuse)
    emit(h, clock, "c", b + 4)
    assert len(errors) == 1 and "cannot remove old backups" in errors[0].getMessage()
    assert stamps(tmp_path) == ["2001-09-09_01-46-40", "2001-09-09_01-46-42"]
    monkeypatch.setattr(os, "rename", rename)
    emit(h, clock, "d", b + 6)
    h.close()
    assert len(errors) == 1
    assert stamps(tmp_path) == ["2001-09-09_01-46-44"]
    assert audit(log_files(path), ["c", "d"], PATTERN).ok


def test_reading_rollover_at_opens_nothing(tmp_path: Any, clock: list[float], make_handler: Any, strategy: str) -> None:
    """rolloverAt of a handler that has not written yet (delay=True) is the stdlib's, worked out
    when the handler was built, and reading it creates no file; after close() it is what a new
    stdlib handler would start with, and reading it reopens nothing."""
    clock[0] = 1_000_000_000.0
    path = str(tmp_path / "app.log")
    theirs = logging.handlers.TimedRotatingFileHandler(str(tmp_path / "theirs.log"), when="M", delay=True)
    ours = make_handler(path, cls=safelog.TimedRotatingFileHandler, when="M", delay=True, strategy=strategy)
    assert ours.rolloverAt == theirs.rolloverAt == 1_000_000_060
    assert os.listdir(tmp_path) == []
    emit(ours, clock, "a", 1_000_000_030.0)  # the first record, later: the boundary stays
    assert ours.rolloverAt == 1_000_000_060
    ours.close()
    theirs.close()
    files = sorted(os.listdir(tmp_path))
    if strategy != "per-process":  # (a closed handler no longer knows its shard)
        fresh = logging.handlers.TimedRotatingFileHandler(path, when="M", delay=True)
        assert ours.rolloverAt == fresh.rolloverAt
        fresh.close()
    assert ours.rolloverAt > 0
    assert sorted(os.listdir(tmp_path)) == files
