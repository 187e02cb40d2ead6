"""Time rotation: option parsing, the period grid (DST, UTC) and exactly-once rollover per boundary.

The clock is controlled, never waited for: every record carries the time a test gives it
(``record.created``, set by a logging filter from a shared ``multiprocessing.Value``), and
safelog decides rotation from that time.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._policy.timing import TimePolicy, parse_time_policy

PATTERN = r"id=(?P<id>\S+)"
RECORDS = 40


def local(*fields: int) -> float:
    """A local wall-clock time (Y, m, d, H, M, S) as seconds since the epoch."""
    return time.mktime(tuple(fields) + (0,) * (6 - len(fields)) + (0, 0, -1))  # type: ignore[arg-type]


def emit(handler: logging.Handler, rid: str, created: float) -> None:
    handler.handle(logging.makeLogRecord({"msg": f"id={rid}", "created": created}))


def files_by_name(path: str) -> dict[str, set[str]]:
    """Base name of each log file → the record ids it holds."""
    out = {}
    for f in log_files(path):
        report = audit([f], [], PATTERN)
        assert not report.malformed, report.malformed
        out[os.path.basename(f)] = set(report.unexpected)
    return out


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"when": "h"}, ("H", 1, None)),
        ({"when": "MIDNIGHT", "atTime": datetime.time(3, 30)}, ("MIDNIGHT", 1, datetime.time(3, 30))),
        ({"when": "W6", "interval": 2}, ("W6", 2, None)),
        ({"when": "m", "interval": "15"}, ("M", 15, None)),
        ({"rotate_every": "1 hour"}, ("H", 1, None)),
        ({"rotate_every": "30 minutes"}, ("M", 30, None)),
        ({"rotate_every": "daily"}, ("MIDNIGHT", 1, None)),
        ({"rotate_every": "00:00"}, ("MIDNIGHT", 1, datetime.time(0, 0))),
        ({"rotate_every": "daily at 04:15"}, ("MIDNIGHT", 1, datetime.time(4, 15))),
        ({"rotate_every": "monday at 09:00"}, ("W0", 1, datetime.time(9, 0))),
        ({"rotate_every": "weekly"}, ("W0", 1, None)),
        ({"rotate_every": datetime.timedelta(hours=6)}, ("H", 6, None)),
        ({"rotate_every": datetime.timedelta(minutes=90)}, ("M", 90, None)),
    ],
)
def test_time_options_parse_once_into_a_policy(kwargs: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """stdlib options and readable rotate_every values become the same (when, interval, atTime)."""
    args = {"when": None, "interval": 1, "utc": False, "at_time": None, "rotate_every": None}
    args.update({"at_time" if k == "atTime" else k: v for k, v in kwargs.items()})
    policy = parse_time_policy(**args)
    assert policy is not None
    assert (policy.when, policy.interval, policy.at_time) == expected


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"when": "fortnightly"}, "when"),
        ({"when": "W7"}, "when"),
        ({"when": "H", "interval": 0}, "interval"),
        ({"when": "H", "atTime": "03:00"}, "atTime"),
        ({"when": "midnight", "atTime": "25:00"}, "atTime"),
        ({"rotate_every": "1 fortnight"}, "rotate_every"),
        ({"rotate_every": "every blue moon"}, "rotate_every"),
        ({"rotate_every": datetime.timedelta(0)}, "rotate_every"),
        ({"rotate_every": "1 hour", "when": "H"}, "rotate_every"),
        ({"compress": "zip", "when": "H"}, "compress"),
        ({"retention": "14 fortnights", "when": "H"}, "retention"),
        ({"compress": "gzip"}, "compress"),
    ],
)
def test_bad_time_values_fail_at_construction_naming_the_option(
    tmp_path: Any, kwargs: dict[str, Any], named: str
) -> None:
    """A bad value raises ValueError at configuration time, naming the option and the value."""
    with pytest.raises(ValueError, match=named):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), **kwargs)


# -- the grid ----------------------------------------------------------------------------------


def test_boundaries_are_aligned_to_the_clock_not_to_the_start_time() -> None:
    """Hourly periods start on the hour whatever time a process starts, so processes agree."""
    p = TimePolicy("H", utc=True)
    start = p.period_start(1_795_000_123.5)
    assert start % 3600 == 0 and start <= 1_795_000_123.5 < p.next_boundary(start) == start + 3600
    every6 = TimePolicy("H", 6, utc=True)
    assert {time.gmtime(every6.period_start(t)).tm_hour for t in range(1_795_000_000, 1_795_200_000, 977)} == {0, 6, 12, 18}


def test_midnight_with_attime_and_weekday_boundaries(tz: Any) -> None:
    """'midnight' with atTime rotates at that time of day; W0 on Mondays at atTime."""
    tz("Europe/Berlin")
    p = TimePolicy("MIDNIGHT", at_time=datetime.time(3, 0))
    t = local(2026, 11, 26, 2, 59, 59)
    assert p.period_start(t) == local(2026, 11, 25, 3) and p.next_boundary(p.period_start(t)) == local(2026, 11, 26, 3)
    w = TimePolicy("W0", at_time=datetime.time(9, 0))
    s = w.period_start(local(2026, 11, 26, 12))  # a Thursday
    assert s == local(2026, 11, 23, 9) and w.next_boundary(s) == local(2026, 11, 30, 9)
    assert w.stamp(s) == "2026-11-23"


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe"])
@pytest.mark.parametrize(
    ("when", "interval", "at"),
    [("H", 1, None), ("M", 30, None), ("MIDNIGHT", 1, None), ("H", 2, None), ("MIDNIGHT", 1, datetime.time(1, 30)),
     ("MIDNIGHT", 1, datetime.time(2, 30)), ("W6", 1, datetime.time(1, 30)), ("W6", 1, datetime.time(2, 30))],
)  # fmt: skip
def test_period_grid_is_consistent_across_dst_changes(
    tz: Any, zone: str, when: str, interval: int, at: datetime.time | None
) -> None:
    """Through both DST changes of a year every instant lies in exactly one period, periods never
    go back, and rolling over at next_boundary visits exactly the periods period_start reports;
    also with atTime in the repeated or the skipped hour (a day, or a week, starts once)."""
    tz(zone)
    p = TimePolicy(when, interval, at_time=at)
    for day in range(0, 366, 1):
        t0 = local(2026, 1, 1) + day * 86400
        if time.localtime(t0).tm_gmtoff == time.localtime(t0 + 86400).tm_gmtoff:
            continue  # no offset change that day: nothing DST-specific to check
        t = t0 - 3 * 3600
        current = p.period_start(t)
        end = p.next_boundary(current)
        while t < t0 + 30 * 3600:
            s = p.period_start(t)
            assert s <= t < p.next_boundary(s)
            if t >= end:
                assert s > current
                assert p.step < 86400 or s - current >= 22 * 3600  # a day is never cut short
                current, end = s, p.next_boundary(s)
            assert s == current
            t += 300


def test_hourly_rotation_through_the_fall_back_night_gives_one_file_per_real_hour(
    tmp_path: Any, tz: Any, make_handler: Any
) -> None:
    """New York, 1 Nov 2026: 01:00-02:00 happens twice; each real hour gets its own file, the
    second 01 hour as app.log.2026-11-01_01.1, and every record lands in the file of its hour."""
    tz("America/New_York")
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="thread", rotate_every="1 hour")
    start = local(2026, 11, 1, 0, 0)
    ids = []
    for i in range(5 * 6):  # every 10 minutes for five real hours
        emit(h, f"{i}", start + i * 600)
        ids.append(str(i))
    h.close()
    files = files_by_name(path)
    assert sorted(files) == [
        "app.log",
        "app.log.2026-11-01_00",
        "app.log.2026-11-01_01",
        "app.log.2026-11-01_01.1",
        "app.log.2026-11-01_02",
    ]
    for name, got in files.items():
        assert got == {str(i) for i in range(len(ids)) if (i // 6) == _hour_index(name)}, name
    assert audit(log_files(path), ids, PATTERN).ok


def _hour_index(name: str) -> int:
    return {"app.log.2026-11-01_00": 0, "app.log.2026-11-01_01": 1, "app.log.2026-11-01_01.1": 2,
            "app.log.2026-11-01_02": 3, "app.log": 4}[name]  # fmt: skip


def test_daily_rotation_over_the_spring_forward_day_rotates_once_per_day(
    tmp_path: Any, tz: Any, make_handler: Any
) -> None:
    """The 23-hour day of 8 March 2026 (New York) is one file, rotated at local midnight."""
    tz("America/New_York")
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="thread", rotate_every="daily")
    t = local(2026, 3, 7, 12)
    ids = []
    while t < local(2026, 3, 9, 12):
        emit(h, str(len(ids)), t)
        ids.append(str(len(ids)))
        t += 1800
    h.close()
    files = files_by_name(path)
    assert sorted(files) == ["app.log", "app.log.2026-03-07", "app.log.2026-03-08"]
    assert len(files["app.log.2026-03-08"]) == 46  # 23 hours of half-hourly records
    assert audit(log_files(path), ids, PATTERN).ok


def test_utc_true_rotates_on_utc_boundaries_in_a_local_zone(tmp_path: Any, tz: Any, make_handler: Any) -> None:
    """utc=True: daily periods start at 00:00 UTC and backups carry the UTC date, whatever TZ says."""
    tz("Asia/Kolkata")  # UTC+05:30, no DST: local and UTC days differ by 5.5 hours
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="thread", when="midnight", utc=True)
    base = 1_795_651_200.0  # 2026-11-26 00:00:00 UTC
    emit(h, "a", base - 60)
    emit(h, "b", base + 60)  # 05:31 local on the 26th, but a new UTC day: rotates
    emit(h, "c", base + 19 * 3600)  # 00:30 local on the 27th, still the 26th in UTC: no rotation
    h.close()
    files = files_by_name(path)
    assert files == {"app.log.2026-11-25": {"a"}, "app.log": {"b", "c"}}


def test_size_and_time_together_rotate_on_whichever_comes_first(tmp_path: Any, make_handler: Any) -> None:
    """Within an hour the size limit rotates to app.log.<hour>, .1, .2 in order; the hour's end
    rotates too; no backup is ever overwritten."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="thread", when="H", utc=True, max_bytes=120)  # three 38-byte records
    base = 1_795_651_200.0
    ids = [f"{i:03d}-{'x' * 30}" for i in range(12)]
    for i, rid in enumerate(ids):
        emit(h, rid, base + i * 300)  # 12 records, 5 minutes apart: one hour
    emit(h, "next-hour", base + 3600)
    h.close()
    files = files_by_name(path)
    assert sorted(files) == ["app.log"] + [f"app.log.2026-11-26_00{s}" for s in ("", ".1", ".2", ".3")]
    assert files["app.log"] == {"next-hour"}
    # Name order is time order: the unnumbered backup holds the oldest records.
    order = [files[f"app.log.2026-11-26_00{s}"] for s in ("", ".1", ".2", ".3")]
    assert [sorted(x) for x in order] == [ids[0:3], ids[3:6], ids[6:9], ids[9:12]]


def test_namer_hook_names_time_backups(tmp_path: Any, make_handler: Any) -> None:
    """The stdlib namer hook gets the default time-suffixed name and its result is used."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", when="H", utc=True)
    h.namer = lambda name: name.replace("app.log.", "app-") + ".log"
    emit(h, "a", 1_795_651_200.0)
    emit(h, "b", 1_795_651_200.0 + 3600)
    h.close()
    assert sorted(os.listdir(tmp_path)) == ["app-2026-11-26_00.log", "app.log", "app.log.lock"]


def test_restart_after_downtime_rotates_once(tmp_path: Any, make_handler: Any) -> None:
    """A single-writer log last written three days ago rotates once when written again, into a
    backup named after the period of its last write, not one file per missed day."""
    path = str(tmp_path / "app.log")
    base = 1_795_651_200.0
    h = make_handler(path, strategy="thread", when="D", utc=True)
    emit(h, "old", base + 100)
    h.close()
    os.utime(path, (base + 100, base + 100))  # as the real clock would have left it
    h2 = make_handler(path, strategy="thread", when="D", utc=True)
    emit(h2, "new", base + 3 * 86400 + 5)
    emit(h2, "new2", base + 3 * 86400 + 6)
    h2.close()
    assert files_by_name(path) == {"app.log.2026-11-26": {"old"}, "app.log": {"new", "new2"}}


# -- many processes ---------------------------------------------------------------------------


class _Clock(logging.Filter):
    """Stamps each record with the shared fake time."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def filter(self, record: logging.LogRecord) -> bool:
        record.created = self.value.value
        return True


def _writer(path: str, kwargs: dict[str, Any], name: str, clock: Any, go: list[Any], phases: list[int], done: Any) -> None:
    handler = safelog.SafeFileHandler(path, **kwargs)
    log = logging.Logger(name)
    log.addFilter(_Clock(clock))
    log.addHandler(handler)
    for k in phases:
        go[k].wait()
        for i in range(RECORDS):
            log.info("id=%s-%d-%d", name, k, i)
        done.put((name, k))
    handler.close()
    safelog.wait_for_compression()


def run_phases(
    path: str,
    kwargs: dict[str, Any],
    times: list[float],
    plan: dict[str, list[int]],
    method: str = "fork",
    before: Callable[[int], None] | None = None,
) -> list[str]:
    """Run one writer process per ``plan`` entry (name → the phases it writes in; a process
    starts just before its first phase and exits after its last). In phase k the shared clock
    reads ``times[k]``; all writers of a phase write concurrently. ``before(k)`` runs before
    phase k's new processes start. Returns the expected ids."""
    ctx: Any = multiprocessing.get_context(method)
    clock = ctx.Value("d", times[0])
    go = [ctx.Event() for _ in times]
    done = ctx.Queue()
    procs: dict[str, Any] = {}
    try:
        for k, t in enumerate(times):
            if before is not None:
                before(k)
            for name, phases in plan.items():
                if phases[0] == k:
                    procs[name] = ctx.Process(target=_writer, args=(path, kwargs, name, clock, go, phases, done))
                    procs[name].start()
            clock.value = t
            go[k].set()
            writers = [n for n, ph in plan.items() if k in ph]
            got = sorted(done.get(timeout=60)[0] for _ in writers)
            assert got == sorted(writers)
            for name, phases in plan.items():
                if phases[-1] == k:
                    procs[name].join(60)
                    assert procs[name].exitcode == 0, name
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
            p.join()
    return [f"{n}-{k}-{i}" for n, phases in plan.items() for k in phases for i in range(RECORDS)]


def check_one_file_per_period(path: str, policy: TimePolicy, times: list[float], ids: list[str]) -> dict[str, set[str]]:
    """Exact audit, and: every file holds the records of exactly one period, each period with
    records has exactly one file, and each backup is named after its period."""
    assert audit(log_files(path), ids, PATTERN).ok, audit(log_files(path), ids, PATTERN).summary()
    files = files_by_name(path)
    periods_with_records = {policy.period_start(t) for t in times}
    assert len(files) == len(periods_with_records), sorted(files)
    for name, got in files.items():
        phases = {int(rid.split("-")[1]) for rid in got}
        periods = {policy.period_start(times[k]) for k in phases}
        assert len(periods) == 1, (name, phases)
        if name != "app.log":
            assert name == "app.log." + policy.stamp(periods.pop())
        else:
            assert periods.pop() == policy.period_start(times[-1])
    return files


def test_many_processes_rotate_exactly_once_per_boundary(tmp_path: Any) -> None:
    """Four flock writers cross several minute boundaries together; a late starter joins, a
    worker is restarted, one jump skips three periods: one file per period, exact audit."""
    path = str(tmp_path / "app.log")
    b = 1_795_651_200.0  # a whole minute
    times = [b + 10, b + 30, b + 61, b + 62, b + 125, b + 130, b + 245, b + 300, b + 301]
    plan = {
        "w0": list(range(9)),
        "w1": list(range(9)),
        "w2": [0, 1, 2, 3],  # exits ...
        "w2b": [4, 5, 6, 7, 8],  # ... and is restarted
        "late": [6, 7, 8],  # starts after four boundaries
    }
    ids = run_phases(path, {"strategy": "flock", "rotate_every": "1 minute", "utc": True}, times, plan)
    check_one_file_per_period(path, TimePolicy("M", utc=True), times, ids)


def test_late_starter_alone_finds_the_boundary_and_rotates_once(tmp_path: Any) -> None:
    """A process started after a boundary that nobody crossed yet rotates once; the idle
    processes that wrote before reopen and write to the new file without rotating again."""
    path = str(tmp_path / "app.log")
    b = 1_795_651_200.0
    times = [b + 5, b + 3600 + 5, b + 3600 + 6]
    plan = {"a": [0, 2], "b": [0, 2], "late": [1]}
    ids = run_phases(path, {"strategy": "flock", "rotate_every": "1 hour", "utc": True}, times, plan)
    files = check_one_file_per_period(path, TimePolicy("H", utc=True), times, ids)
    assert len(files["app.log"]) == 3 * RECORDS


def test_downtime_across_many_periods_rotates_once(tmp_path: Any) -> None:
    """All writers stop; new ones start five periods later (spawned, fresh interpreters): the
    log rotates once into the old period's name, and the lock file records the new period, which
    under the stdlib's rule begins at the rotation (the whole second of the record that rotated)."""
    path = str(tmp_path / "app.log")
    b = 1_795_651_200.0
    times = [b + 5, b + 6, b + 5 * 3600 + 10, b + 5 * 3600 + 20]
    plan = {"a": [0, 1], "b": [0, 1], "c": [2, 3], "d": [2, 3]}
    ids = run_phases(path, {"strategy": "flock", "when": "H", "utc": True}, times, plan, method="spawn")
    files = check_one_file_per_period(path, TimePolicy("H", utc=True), times, ids)
    assert sorted(files) == ["app.log", "app.log.2026-11-26_00"]
    with open(path + ".lock", "rb") as f:
        lines = f.read().splitlines()
    assert lines[-1] == b"%d" % (b + 5 * 3600 + 10)


def test_many_processes_through_dst_end_in_local_time(tmp_path: Any, tz: Any) -> None:
    """Three flock writers log hourly in New York local time through the night DST ends: the
    repeated 01:00 hour gets a file of its own and no boundary rotates twice."""
    tz("America/New_York")
    path = str(tmp_path / "app.log")
    times = [local(2026, 11, 1, 0, 30), local(2026, 11, 1, 1, 30)]
    times += [times[-1] + 3600, times[-1] + 3600 + 60, times[-1] + 7200]  # 01:30 EST, 01:31 EST, 02:30 EST
    ids = run_phases(path, {"strategy": "flock", "rotate_every": "1 hour"}, times, {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4], "c": [1, 2, 3, 4]})
    policy = TimePolicy("H")
    assert audit(log_files(path), ids, PATTERN).ok
    files = files_by_name(path)
    assert sorted(files) == ["app.log", "app.log.2026-11-01_00", "app.log.2026-11-01_01", "app.log.2026-11-01_01.1"]
    assert {rid.split("-")[1] for rid in files["app.log.2026-11-01_01.1"]} == {"2", "3"}
    assert policy.period_start(times[2]) - policy.period_start(times[1]) == 3600


def test_per_process_shards_rotate_on_their_own(tmp_path: Any) -> None:
    """Each shard rotates at the boundaries its own process crosses, named shard.<period>."""
    path = str(tmp_path / "app.log")
    b = 1_795_651_200.0
    times = [b + 1, b + 61, b + 62, b + 200]
    plan = {"a": [0, 1, 2, 3], "b": [0, 2]}
    ids = run_phases(path, {"strategy": "per-process", "when": "M", "utc": True}, times, plan)
    assert audit(log_files(path), ids, PATTERN).ok
    names = sorted(re.sub(r"\.\w+\.\d+\.shard", ".<shard>", n) for n in os.listdir(tmp_path))
    # a crosses two boundaries (two backups), b one.
    assert names == sorted(
        [".app.log.policy"]
        + ["app.log.<shard>"] * 2 + ["app.log.<shard>.2026-11-26_00-00"] * 2 + ["app.log.<shard>.2026-11-26_00-01"]
    )


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_failed_time_rotation_writes_on_and_retries_under_the_old_period(
    tmp_path: Any, make_handler: Any, monkeypatch: Any, strategy: str
) -> None:
    """A rename that fails at a boundary is reported once, the record goes to the current file,
    and the retry names the backup after the period the file was started in."""
    monkeypatch.setattr("safelog._policy.rotation.RETRY_INTERVAL", 0.0)
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, when="H", utc=True)
    reports: list[logging.LogRecord] = []
    monkeypatch.setattr(h, "handleError", reports.append)
    base = 1_795_651_200.0

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    emit(h, "a", base)
    h.rotator = refuse
    emit(h, "b", base + 3600)
    emit(h, "c", base + 3601)
    assert len(reports) == 1 and files_by_name(path) == {"app.log": {"a", "b", "c"}}
    h.rotator = None
    emit(h, "d", base + 3602)
    assert files_by_name(path) == {"app.log.2026-11-26_00": {"a", "b", "c"}, "app.log": {"d"}}
