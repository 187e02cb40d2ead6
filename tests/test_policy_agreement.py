"""The rotation policy's fingerprint, agreed across the processes writing one flock log."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._doctor import diagnose
from safelog._policy.compress import parse_compress
from safelog._policy.config import RotationConfig
from safelog._policy.fingerprint import describe, fingerprint_of
from safelog._policy.timing import parse_time_policy
from safelog._sinks.lockfile import read_notes

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


def _writer(path: str, options: dict[str, Any], tag: str, n: int, wrote: Any, done: Any, out: Any) -> None:
    """Configure a flock handler, write ``n`` records, report the warnings seen, wait for ``done``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler = safelog.SafeFileHandler(path, strategy="flock", **options)
        log = logging.Logger(tag)
        log.addHandler(handler)
        for i in range(n):
            log.info("%s %d", tag, i)
    out.send([str(w.message) for w in caught])
    wrote.set()
    done.wait(DEADLINE)
    for i in range(n, 2 * n):
        log.info("%s %d", tag, i)
    handler.close()


@pytest.mark.parametrize("method", START_METHODS)
def test_two_processes_with_different_settings_are_reported_and_keep_logging(tmp_path: Path, method: str) -> None:
    """A second process with another max_bytes/compress warns once, naming both settings, records its policy,
    keeps logging (every record exactly once), and doctor shows both policies as a mismatch while both run."""
    ctx = multiprocessing.get_context(method)
    path = str(tmp_path / "app.log")
    first = {"max_bytes": "1 MB", "backup_count": 3}
    second = {"max_bytes": "2 MB", "backup_count": 3, "compress": "gzip"}
    procs, pipes, done = [], [], ctx.Event()
    try:
        for tag, options in (("a", first), ("b", second)):
            wrote = ctx.Event()
            mine, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_writer, args=(path, options, tag, 200, wrote, done, theirs))
            p.start()
            procs.append(p)
            pipes.append(mine)
            assert wrote.wait(DEADLINE), f"writer {tag} did not write"
        warned = [pipe.recv() for pipe in pipes]
        found = diagnose(path)
        done.set()
    finally:
        done.set()
        for p in procs:
            p.join(DEADLINE)
    assert [p.exitcode for p in procs] == [0, 0]
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
