"""The rotation policy's fingerprint, agreed across the processes writing one log: a flock log (in its lock
file) or a per-process log (in its policy record beside the log)."""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import logging
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._diagnosis import Diagnosis
from safelog._doctor import diagnose
from safelog._policy.compress import parse_compress
from safelog._policy.config import RotationConfig
from safelog._policy.fingerprint import describe, fingerprint_of
from safelog._policy.timing import parse_time_policy
from safelog._sinks.lockfile import read_notes
from tests.faults_helpers import flock_waiters, wait_until

DEADLINE = 60
START_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]


def _other_values() -> dict[str, Any]:
    """A value other than its default for every field of the rotation sub-config: given here for
    the structured ones, worked out from the default for plain numbers and flags (so a new
    option such as a size limit needs no edit here)."""
    given = {
        "timing": parse_time_policy(None, 1, False, None, "1 hour"), "codec": parse_compress("gzip"), "max_age": 3600.0,
    }  # fmt: skip
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RotationConfig):
        default = f.default
        if f.name in given:
            values[f.name] = given[f.name]
        elif isinstance(default, bool):
            values[f.name] = not default
        elif isinstance(default, (int, float)):
            values[f.name] = default + 1000
        else:
            raise AssertionError(f"give {f.name} a value other than its default {default!r} here")
    return values


def test_every_field_of_the_rotation_config_changes_the_fingerprint() -> None:
    """Each field of RotationConfig (and the namer/rotator) is part of the digest, spelled without an address."""
    base = fingerprint_of(RotationConfig())
    others = _other_values()
    for name, value in others.items():
        changed = fingerprint_of(dataclasses.replace(RotationConfig(), **{name: value}))
        assert changed.digest != base.digest, name
        spelled = [v for k, v in changed.settings.items() if v != base.settings.get(k)]
        assert "0x" not in repr(spelled), f"{name} is spelled with an address: {spelled!r}"
    assert fingerprint_of(RotationConfig(), (_namer, None)).digest != base.digest
    assert describe(RotationConfig(), (_namer, None))["namer"] == f"{__name__}._namer"
    assert describe(RotationConfig(timing=others["timing"]))["time"]["aligned"] is True
    assert describe(RotationConfig(timing=parse_time_policy("midnight", 1, False, datetime.time(3), None)))["time"]["atTime"] == "03:00:00"


def _namer(name: str) -> str:
    return name + ".x"


def _writer(
    path: str, options: dict[str, Any], tag: str, n: int, wrote: Any, done: Any, out: Any, strategy: str = "flock"
) -> None:
    """Configure a handler, write ``n`` records, report the warnings seen, wait for ``done``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler = safelog.SafeFileHandler(path, strategy=strategy, **options)
        log = logging.Logger(tag)
        log.addHandler(handler)
        for i in range(n):
            log.info("%s %d", tag, i)
    out.send([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
    wrote.set()
    done.wait(DEADLINE)
    for i in range(n, 2 * n):
        log.info("%s %d", tag, i)
    handler.close()


def run_two(
    method: str, path: str, strategy: str, first: dict[str, Any], second: dict[str, Any]
) -> tuple[list[Any], list[list[str]], Diagnosis]:
    """Writer "a" with ``first``, then writer "b" with ``second``, 200 records each; while both run, doctor's
    diagnosis; then 200 more each. The processes, the warnings each saw, the diagnosis."""
    ctx = multiprocessing.get_context(method)
    procs, pipes, done = [], [], ctx.Event()
    try:
        for tag, options in (("a", first), ("b", second)):
            wrote = ctx.Event()
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_writer, args=(path, options, tag, 200, wrote, done, theirs, strategy))
            p.start()
            procs.append(p)
            pipes.append(mine)
            assert wrote.wait(DEADLINE), f"writer {tag} did not write"
        warned = [pipe.recv() for pipe in pipes]
        found = diagnose(path)
    finally:
        done.set()
        for p in procs:
            p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    return procs, warned, found


@pytest.mark.parametrize("method", START_METHODS)
def test_two_processes_with_different_settings_are_reported_and_keep_logging(tmp_path: Path, method: str) -> None:
    """A second process with another max_bytes/compress warns once, naming both settings, records its policy,
    keeps logging (every record exactly once), and doctor shows both policies as a mismatch while both run."""
    path = str(tmp_path / "app.log")
    first = {"max_bytes": "1 MB", "backup_count": 3}
    second = {"max_bytes": "2 MB", "backup_count": 3, "compress": "gzip"}
    procs, warned, found = run_two(method, path, "flock", first, second)
    assert warned[0] == []
    [message] = warned[1]
    assert "has compress='gzip', max_bytes=2000000" in message and "recorded compress=None, max_bytes=1000000" in message
    assert f"pid {procs[0].pid}" in message
    [mismatch] = [f for f in found.findings if f.code == "policy-mismatch"]
    assert f"(pid {procs[0].pid})" in mismatch.message and f"(pid {procs[1].pid})" in mismatch.message
    lines = Path(path).read_text().splitlines()
    assert sorted(lines) == sorted(f"{t} {i}" for t in "ab" for i in range(400))
    # Two records, each followed by the period line again: the counter and the periods keep their meaning.
    lock = Path(path + ".lock").read_bytes()
    assert lock.count(b"\n#") + lock.startswith(b"#") == 2 and lock.endswith(b"}\n\n")


def test_processes_that_agree_record_the_policy_once(tmp_path: Path) -> None:
    """Processes with the same settings leave one record: the lock file does not grow per process start."""
    path = str(tmp_path / "app.log")
    for _ in range(3):
        p = multiprocessing.get_context("spawn").Process(target=_write_one, args=(path, {"max_bytes": "1 MB", "backup_count": 2}))
        p.start()
        p.join(DEADLINE)
        assert p.exitcode == 0
    fd = os.open(path + ".lock", os.O_RDONLY)
    try:
        notes = read_notes(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    assert [n["settings"]["max_bytes"] for n in notes] == [1_000_000]
    assert diagnose(path).ok


def _write_one(path: str, options: dict[str, Any]) -> None:
    handler = safelog.SafeFileHandler(path, strategy="flock", **options)
    logging.Logger("one").addHandler(handler)
    handler.handle(logging.makeLogRecord({"msg": "one", "levelno": logging.INFO}))
    handler.close()


def test_a_record_keeps_the_time_period_in_force(tmp_path: Path) -> None:
    """With time rotation, the record a newcomer appends is followed by the current period, so every
    process still reads the same period from the lock file's last line and nobody rotates early."""
    path = str(tmp_path / "app.log")
    _write_one(path, {"rotate_every": "1 hour"})
    before = Path(path + ".lock").read_bytes().splitlines()[-1]
    assert before.isdigit()
    with pytest.warns(RuntimeWarning, match="has retention=86400.0, .* recorded retention=None"):
        _write_one(path, {"rotate_every": "1 hour", "retention": "1 day"})
    lines = Path(path + ".lock").read_bytes().splitlines()
    assert lines[-2].startswith(b"#") and lines[-1] == before
    assert sorted(os.listdir(tmp_path)) == ["app.log", "app.log.lock"]


# -- per-process: the policy record beside the log ---------------------------------------------

RECORD = ".app.log.policy"
FIRST = {"max_bytes": "1 MB", "backup_count": 3, "max_total_bytes": "5 MB"}
SECOND = {"max_bytes": "1 MB", "backup_count": 3, "max_total_bytes": "8 MB", "compress": "gzip"}


def _recorded(path: Path) -> list[dict[str, Any]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_notes(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _handler(path: str, options: dict[str, Any], tag: str) -> tuple[logging.Handler, logging.Logger]:
    handler = safelog.SafeFileHandler(path, strategy="per-process", **options)
    log = logging.Logger(tag)
    log.addHandler(handler)
    return handler, log


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_per_process_writers_with_different_settings_are_reported(tmp_path: Path, method: str) -> None:
    """A second per-process writer with another max_total_bytes/compress warns once naming both settings,
    keeps logging (every record once in the merged log), and doctor flags the mismatch while both run."""
    path = str(tmp_path / "app.log")
    procs, warned, found = run_two(method, path, "per-process", FIRST, SECOND)
    assert warned[0] == []
    [message] = warned[1]
    assert "has compress='gzip', max_total_bytes=8000000" in message
    assert "recorded compress=None, max_total_bytes=5000000" in message and f"pid {procs[0].pid}" in message
    [mismatch] = [f for f in found.findings if f.code == "policy-mismatch"]
    assert f"(pid {procs[0].pid})" in mismatch.message and f"(pid {procs[1].pid})" in mismatch.message
    assert [n["pid"] for n in _recorded(tmp_path / RECORD)] == [procs[0].pid, procs[1].pid]
    # The record file is a known side file: never merged, never an unknown name, left in place.
    report = safelog.merge(path)
    assert report.ok and report.records == 800
    lines = Path(path).read_text().splitlines()
    assert sorted(lines) == sorted(f"{t} {i}" for t in "ab" for i in range(400))
    assert sorted(os.listdir(tmp_path)) == [RECORD, "app.log", "app.log.merge-state", "app.log.merge.lock"]
    after = diagnose(path)
    assert not [f for f in after.findings if f.code == "unknown-name"]
    assert [f["kind"] for f in after.files if f["path"].endswith(RECORD)] == ["policy record"]


def _write_one_shard(path: str, options: dict[str, Any]) -> None:
    handler, log = _handler(path, options, "one")
    log.info("one %d", os.getpid())
    handler.close()


def test_per_process_writers_that_agree_record_once(tmp_path: Path) -> None:
    """Spawned per-process writers with the same settings leave one record, and doctor finds no mismatch."""
    path = str(tmp_path / "app.log")
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        p = ctx.Process(target=_write_one_shard, args=(path, FIRST))
        p.start()
        p.join(DEADLINE)
        assert p.exitcode == 0
    assert [n["settings"]["max_total_bytes"] for n in _recorded(tmp_path / RECORD)] == [5_000_000]
    assert os.stat(tmp_path / RECORD).st_mode & 0o777 == 0o600
    found = diagnose(path)
    assert not [f for f in found.findings if f.code in ("policy-mismatch", "unknown-name")]
    assert [p.summary for p in found.policies] == ["backup_count=3, max_bytes=1000000, max_total_bytes=5000000"]


def _write_one_warned(path: str, options: dict[str, Any], out: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _write_one_shard(path, options)
    out.send([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])


def test_two_processes_starting_together_are_caught(tmp_path: Path) -> None:
    """Two writers with different settings that reach the record at the same moment read, compare and append
    one after the other (under the record's flock), so the second of them warns."""
    path = str(tmp_path / "app.log")
    record = tmp_path / RECORD
    fd = os.open(record, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    # spawn: a forked child would share this descriptor, and with it the lock it waits for.
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # both writers find the record held, and wait for it
        for options in (FIRST, SECOND):
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_write_one_warned, args=(path, options, theirs))
            p.start()
            procs.append(p)
            pipes.append(mine)
        wait_until(lambda: flock_waiters(str(record)) >= {p.pid for p in procs}, DEADLINE, "both writers at the record")
    finally:
        os.close(fd)
        for p in procs:
            p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    warned = [pipe.recv() for pipe in pipes]
    assert sorted(len(w) for w in warned) == [0, 1]
    assert len(_recorded(record)) == 2
    assert len({p.fingerprint for p in diagnose(path).policies}) == 1  # both ended: the one in force


class _Reporting(safelog.SafeFileHandler):
    """Keeps the messages handleError was given, instead of printing them."""

    reported: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(record.getMessage())


def _symlink_child(path: str) -> None:
    handler = _Reporting(path, strategy="per-process", **FIRST)
    log = logging.Logger("symlink")
    log.addHandler(handler)
    for i in range(50):
        log.info("r %d", i)
    handler.close()
    record = os.path.join(os.path.dirname(path), RECORD)
    assert handler.reported == [f"safelog: cannot record the rotation policy of {path} in {record}; logging goes on"]


def test_a_symlink_in_place_of_the_record_is_refused(tmp_path: Path) -> None:
    """A symlink planted as the policy record is not followed: the failure is reported once and every record
    is still written to the shard."""
    target = tmp_path / "target"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / RECORD)
    path = str(tmp_path / "app.log")
    p = multiprocessing.get_context("fork").Process(target=_symlink_child, args=(path,))
    p.start()
    p.join(DEADLINE)
    assert p.exitcode == 0
    assert target.read_bytes() == b"" and os.path.islink(tmp_path / RECORD)
    report = safelog.merge(path)
    assert report.ok and Path(path).read_text().splitlines() == [f"r {i}" for i in range(50)]


def test_retention_across_shards_keeps_the_record(tmp_path: Path) -> None:
    """max_total_bytes removes old shard backups but never the policy record, and the merge does not take it in."""
    path = str(tmp_path / "app.log")
    options = {"max_bytes": "2 KB", "backup_count": 50, "max_total_bytes": "8 KB"}
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(path, options, tag)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(_recorded(tmp_path / RECORD)) == 1
    safelog.merge(path)
    assert RECORD in os.listdir(tmp_path)
    assert not any(line.startswith("#") for line in Path(path).read_text().splitlines())


def _write_many(path: str, options: dict[str, Any], tag: str) -> None:
    handler, log = _handler(path, options, tag)
    for i in range(500):
        log.info("%s %04d %s", tag, i, "x" * 40)
    handler.close()
