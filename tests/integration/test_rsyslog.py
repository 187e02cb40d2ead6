"""A real log shipper end to end: rsyslog's imfile tails what 4 processes x 2 threads write through
dictConfig, across size or time rotation with gzip, and forwards it over TCP to a second rsyslog;
the central file must hold every record exactly once.

The harness is validated first with handlers that never rotate (the stdlib FileHandler for one
file, safelog's per-process shards for the glob), so that a failure of the rotating cases points
at the handler, not at the shipper's configuration.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integration_harness import EXAMPLES
from shipper_harness import PAD, Pipeline, ShippedFirst, expected_ids, rsyslogd, run_writers

pytestmark = pytest.mark.integration

PROCS, THREADS, COUNT = 4, 2, 5000
EXPECTED = expected_ids(PROCS, THREADS, COUNT)
EXPECTED_SET = frozenset(EXPECTED)
# Rotation while rsyslog tails the files: by size (256 KB, every couple of hundred milliseconds
# here) and by time (one-second periods), gzip behind both. (Size and time together also produce
# files that live a few milliseconds, from a size rotation just before a period ends: imfile can
# miss such a file altogether, as it never opened it. See docs/shipping.md.)
ROTATIONS = {
    "size": {"max_bytes": "256 KB", "backup_count": 10_000},
    "time": {"when": "S", "backup_count": 10_000},
}
# Each rotating run must rotate this often. Time rotation is paced to span the periods; size
# rotation runs as fast as the writers go. Neither pace is what lets the shipper keep up: a file
# is renamed only once the shipper reads it (ShippedFirst), as the promise to shippers requires.
MIN_BACKUPS = {"size": 10, "time": 3}
SPREAD = {"size": 0.0, "time": 3.5}
# What the central file holds per record: the line as written (per-process shards keep their
# header: time and sequence number).
SHARD_HEADER = r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \d+ )?"
LINE_RE = re.compile(SHARD_HEADER + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ship: id=(?P<id>\S+) " + PAD)
PLAIN = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
# Deadline for the last record to arrive once the writers are done.
ARRIVAL = 120.0


@pytest.fixture(scope="module")
def exe() -> str:
    """rsyslogd, or the module is skipped with the reason."""
    found = rsyslogd()
    if found is None:
        pytest.skip("rsyslogd is not installed (Debian: apt-get install rsyslog; .ci/run does)")
    return found


def log_plain(logger: logging.Logger, rid: str) -> None:
    logger.info("id=%s %s", rid, PAD)


def log_json(logger: logging.Logger, rid: str) -> None:
    logger.info("request done", extra={"rid": rid, "user": "ünï"})


def config(handler: dict[str, Any], formatter: dict[str, Any] = PLAIN) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"f": formatter},
        "handlers": {"file": {**handler, "formatter": "f"}},
        "loggers": {"ship": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def ship(
    exe: str, tmp: Path, handler: dict[str, Any], globs: list[str], *, formatter: dict[str, Any] = PLAIN,
    log: Callable[[logging.Logger, str], None] = log_plain, parse: Callable[[str], str | None] | None = None,
    spread: float = 0.0,
) -> Counter[str]:
    """Run the writers against a fresh edge/central pair; return how often each id arrived.
    Fails on a line of the central file that is not a whole record."""
    pipeline = Pipeline(exe, tmp, globs)
    unshipped = tmp / "unshipped.txt"
    if handler["class"] == "safelog.SafeFileHandler":
        handler = {**handler, "rotator": ShippedFirst(pipeline.received, unshipped)}
    try:
        run_writers(config(handler, formatter), PROCS, THREADS, COUNT, log, spread)
        count, took = pipeline.wait_lines(len(EXPECTED), ARRIVAL)
    finally:
        pipeline.stop()
    assert not unshipped.exists(), (
        f"the shipper never read these files (their first lines) before they were rotated:\n"
        f"{unshipped.read_text(errors='replace')}{pipeline.diagnostics()}"
    )
    assert not list((tmp / "edge" / "work").rglob("imfile-state*")), "imfile kept state files"
    seen: Counter[str] = Counter()
    bad = []
    for line in pipeline.received.read_text(encoding="utf-8").splitlines():
        rid = (parse or _plain_id)(line)
        if rid is None:
            bad.append(line)
        else:
            seen[rid] += 1
    assert not bad, f"{len(bad)} malformed lines at central, e.g. {bad[:3]}\n{pipeline.diagnostics()}"
    return seen


def _plain_id(line: str) -> str | None:
    m = LINE_RE.fullmatch(line)
    return m.group("id") if m else None


def assert_exactly_once(seen: Counter[str], what: str) -> None:
    lost = [i for i in EXPECTED if i not in seen]
    dup = {i: n for i, n in seen.items() if n > 1}
    extra = [i for i in seen if i not in EXPECTED_SET]
    # The figures of every run, for the record (pytest -s shows them).
    print(f"\nrsyslog {what}: sent {len(EXPECTED)}, received {sum(seen.values())}, "
          f"distinct {len(seen)}, lost {len(lost)}, duplicated {len(dup)}")  # fmt: skip
    assert not lost, f"{what}: {len(lost)} of {len(EXPECTED)} records never arrived, e.g. {lost[:5]}"
    assert not dup, f"{what}: {len(dup)} records arrived more than once, e.g. {list(dup.items())[:5]}"
    assert not extra, f"{what}: unknown ids {extra[:5]}"


_validated: dict[str, bool] = {}


def baseline(exe: str, tmp: Path, kind: str) -> None:
    """The harness itself, with handlers that never rotate; run once per glob kind."""
    if kind not in _validated:
        _validated[kind] = False
        logs = tmp / "logs"
        if kind == "file":
            handler = {"class": "logging.FileHandler", "filename": str(logs / "app.log")}
            globs = [str(logs / "app.log")]
            logs.mkdir()
        else:
            handler = {"class": "safelog.SafeFileHandler", "filename": str(logs / "app.log"), "strategy": "per-process"}
            globs = [str(logs / "app.log.*.shard")]
        assert_exactly_once(ship(exe, tmp, handler, globs), f"harness baseline ({kind}, no rotation)")
        _validated[kind] = True
    assert _validated[kind], f"the harness baseline for {kind} failed: fix the shipper setup first"


@pytest.mark.parametrize("kind", ["file", "shards"])
def test_harness_baseline(exe: str, tmp_path: Path, kind: str) -> None:
    """Without rotation every record reaches the central rsyslog exactly once (one file; shards
    found by the glob)."""
    baseline(exe, tmp_path, kind)


@pytest.mark.parametrize("delay_compress", [False, True], ids=["compress", "delay_compress"])
@pytest.mark.parametrize("rotation", list(ROTATIONS))
@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_rotating_logs_reach_the_central_file_exactly_once(
    exe: str, tmp_path: Path, tmp_path_factory: Any, strategy: str, rotation: str, delay_compress: bool
) -> None:
    """Rotation with gzip while rsyslog tails the live file (flock) or every shard (per-process):
    every record arrives once, none twice."""
    baseline(exe, tmp_path_factory.mktemp("baseline"), "file" if strategy == "flock" else "shards")
    logs = tmp_path / "logs"
    handler = {
        "class": "safelog.SafeFileHandler", "filename": str(logs / "app.log"), "strategy": strategy,
        **ROTATIONS[rotation], "compress": "gzip", "delay_compress": delay_compress,
    }  # fmt: skip
    globs = [str(logs / "app.log")] if strategy == "flock" else [str(logs / "app.log.*.shard")]
    seen = ship(exe, tmp_path, handler, globs, spread=SPREAD[rotation])
    backups = [p.name for p in logs.iterdir() if p.name[-1].isdigit() or p.name.endswith(".gz")]
    assert len(backups) >= MIN_BACKUPS[rotation], f"too few rotations to test anything: {sorted(backups)}"
    name = f"{strategy} {rotation} {'delay_compress' if delay_compress else 'compress'} ({len(backups)} backups)"
    assert_exactly_once(seen, name)


def test_json_lines_example_reaches_the_central_file_exactly_once(exe: str, tmp_path: Path, tmp_path_factory: Any) -> None:
    """config-examples/logging_json_lines.json (python-json-logger) with size rotation: every
    line at the central side is one whole JSON object with the record's fields, each id once."""
    pytest.importorskip("pythonjsonlogger")
    baseline(exe, tmp_path_factory.mktemp("baseline"), "file")
    example = json.loads((EXAMPLES / "logging_json_lines.json").read_text())
    logs = tmp_path / "logs"
    handler = {**example["handlers"]["file"], "filename": str(logs / "app.jsonl"), **ROTATIONS["size"]}
    handler.pop("formatter")

    def parse(line: str) -> str | None:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if set(obj) != {"time", "level", "logger", "pid", "message", "rid", "user"} or obj["user"] != "ünï":
            return None
        return str(obj["rid"]) if obj["message"] == "request done" and obj["logger"] == "ship" else None

    seen = ship(
        exe, tmp_path, handler, [str(logs / "app.jsonl")],
        formatter=example["formatters"]["json"], log=log_json, parse=parse,
    )  # fmt: skip
    assert_exactly_once(seen, "flock json-lines (delay_compress, as in the example)")
