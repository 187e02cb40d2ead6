"""``safelog merge``: exact audits of merged per-process logs, crashes, hostile input, live shards."""

from __future__ import annotations

import bz2
import gc
import gzip
import logging
import lzma
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._cli import main
from safelog._merge import discovery, journal, output, parallel, reader
from safelog._merge import run as _merge
from safelog._primitives.shard import ShardFrame
from tests.helpers import take_lock

ROOT = str(Path(__file__).resolve().parent.parent)

# -- helpers ------------------------------------------------------------------------------------


def shard_time(created: float) -> str:
    """The shard header time of ``created``, computed exactly as ShardFrame does."""
    sec = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((created - sec) * 1_000_000):06d}Z"


class ShardTimeFormatter(logging.Formatter):
    """Puts the shard time in front of each record, so the test can check the merged order."""

    def format(self, record: logging.LogRecord) -> str:
        record.shardtime = shard_time(record.created)
        return super().format(record)


FORMAT = "%(shardtime)s %(process)d id=%(message)s"
RECORD_RE = re.compile(r"(?P<t>\S+) (?P<pid>\d+) id=(?P<id>\S+)")
TRACEBACK_RE = re.compile(
    r"Traceback \(most recent call last\):\n(?:  .*\n)+ValueError: boom (?P<id>\S+)$"
)


def _count_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on merge's forked worker: the returned list gets a 1 for each worker started.

    Merge forks it only from a process with one thread: first wait until the background
    threads earlier tests left in this process (a compression finishing) are gone."""
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join(60)
    assert threading.active_count() == 1, f"threads left running: {threading.enumerate()}"
    workers: list[int] = []
    real_worker = parallel.Worker

    def spy(*args: Any) -> Any:
        workers.append(1)
        return real_worker(*args)

    monkeypatch.setattr(parallel, "Worker", spy)
    return workers


def write_shard(path: Path, records: list[tuple[float, str]], opener: Callable[..., Any] = open) -> None:
    """A shard file written with the real encoder."""
    frame = ShardFrame("utf-8", "strict")
    with opener(path, "wb") as f:
        for created, text in records:
            f.write(frame.encode(text, created))


def parse_output(path: Path) -> list[tuple[str, str, str]]:
    """(time, id, rest) per record of a merged log; a record is a RECORD_RE line plus the
    lines that follow it up to the next such line."""
    records: list[tuple[str, str, str]] = []
    for line in path.read_text().split("\n")[:-1]:
        m = RECORD_RE.fullmatch(line)
        if m:
            records.append((m.group("t"), m.group("id"), ""))
        else:
            assert records, f"output starts with a continuation: {line!r}"
            t, i, rest = records[-1]
            records[-1] = (t, i, rest + line + "\n")
    return records


def child_logs(path: str, name: str, n: int, ready: Any = None, go: Any = None) -> None:
    """A worker: ``n`` records through a per-process handler, every 10th with a traceback."""
    handler = safelog.PerProcessFileHandler(path)
    handler.setFormatter(ShardTimeFormatter(FORMAT))
    log = logging.getLogger(f"merge-test-{name}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(n):
        rid = f"{name}-{i}"
        if i % 10 == 3:
            try:
                raise ValueError(f"boom {rid}")
            except ValueError:
                log.exception(rid)
        else:
            log.info(rid)
    if ready is not None:
        ready.set()
        go.wait(30)
        log.info(f"{name}-{n}")
    handler.close()


def audit_merged(out: Path, expected: set[str]) -> None:
    """Every id once, time order, and every traceback whole and after its own record."""
    records = parse_output(out)
    ids = [r[1] for r in records]
    assert len(ids) == len(set(ids)), "duplicated records"
    assert set(ids) == expected
    times = [r[0] for r in records]
    assert times == sorted(times), "not in time order"
    for _, rid, rest in records:
        if int(rid.rsplit("-", 1)[1]) % 10 == 3:
            m = TRACEBACK_RE.fullmatch(rest.rstrip("\n"))
            assert m is not None and m.group("id") == rid, f"traceback of {rid} torn: {rest!r}"
        else:
            assert rest == "", f"{rid} has stray lines {rest!r}"


def shards(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".shard" in p.name)


# -- real multi-process runs -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocess_run_merges_exactly(tmp_path: Path, method: str) -> None:
    """Shards of 4 fork/spawn workers merge into one file: every id once, time order, tracebacks whole."""
    ctx = multiprocessing.get_context(method)
    log = tmp_path / "app.log"
    procs = [ctx.Process(target=child_logs, args=(str(log), f"w{k}", 500)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert len(shards(tmp_path)) == 4
    report = safelog.merge(log)
    assert report.ok and report.records == 2000 and len(report.removed) == 4
    assert shards(tmp_path) == []
    audit_merged(log, {f"w{k}-{i}" for k in range(4) for i in range(500)})


def test_second_merge_appends_new_batch(tmp_path: Path) -> None:
    """A later run's shards are appended after the earlier batch; the earlier content is kept byte for
    byte."""
    log = tmp_path / "app.log"
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=child_logs, args=(str(log), "a", 50))
    p.start()
    p.join()
    safelog.merge(log)
    first = log.read_bytes()
    p = ctx.Process(target=child_logs, args=(str(log), "b", 50))
    p.start()
    p.join()
    assert safelog.merge(log).records == 50
    assert log.read_bytes().startswith(first)
    ids = [r[1] for r in parse_output(log)]
    assert ids == [f"a-{i}" for i in range(50)] + [f"b-{i}" for i in range(50)]


# -- order, framing, discovery -----------------------------------------------------------------


def test_tie_order_is_host_pid_position(tmp_path: Path) -> None:
    """Records with the same time come out by host, then pid, then the writer's order."""
    t = 1_800_000_000.5
    write_shard(tmp_path / "app.log.hostb.7.shard", [(t, "b7-1"), (t, "b7-2")])
    write_shard(tmp_path / "app.log.hosta.20.shard", [(t, "a20-1"), (t + 1, "a20-2")])
    write_shard(tmp_path / "app.log.hosta.3.shard", [(t - 1, "a3-0"), (t, "a3-1"), (t, "a3-2")])
    safelog.merge(tmp_path / "app.log")
    assert (tmp_path / "app.log").read_text().split("\n") == [
        "a3-0", "a3-1", "a3-2", "a20-1", "b7-1", "b7-2", "a20-2", "",
    ]


def test_text_is_exactly_what_the_formatter_produced(tmp_path: Path) -> None:
    """Framing is stripped and continuation lines restored, including leading tabs, blank lines and non-
    ASCII."""
    texts = ["plain", "\tstarts with a tab", "two\n\tlines", "", "a\n\nb\n", "ünï 💡", "x 12 y"]
    write_shard(tmp_path / "app.log.h.1.shard", [(1_800_000_000 + i, t) for i, t in enumerate(texts)])
    safelog.merge(tmp_path / "app.log")
    assert (tmp_path / "app.log").read_text() == "".join(t + "\n" for t in texts)


def test_rotated_and_compressed_backups_are_one_chain(tmp_path: Path) -> None:
    """`.shard.N` backups, gzip/bz2/xz ones, and a plain+compressed twin are each merged once, in order."""
    base = 1_800_000_000.0
    recs = [(base + i, f"r{i}") for i in range(12)]
    d = tmp_path
    write_shard(d / "app.log.h.5.shard.4.xz", recs[0:3], lzma.open)
    write_shard(d / "app.log.h.5.shard.3.bz2", recs[3:6], bz2.open)
    write_shard(d / "app.log.h.5.shard.2", recs[6:8])
    write_shard(d / "app.log.h.5.shard.2.gz", recs[6:8], gzip.open)  # compressor not done yet
    write_shard(d / "app.log.h.5.shard.1.gz", recs[8:10], gzip.open)
    write_shard(d / "app.log.h.5.shard", recs[10:12])
    write_shard(d / "app.log.h.6.shard", [(base + 5.5, "other")])
    (d / "app.log.1").write_text("a rotated plain log, not a shard\n")
    report = safelog.merge(d / "app.log")
    assert report.ok, report.problems
    lines = (d / "app.log").read_text().split("\n")[:-1]
    assert lines == [f"r{i}" for i in range(6)] + ["other"] + [f"r{i}" for i in range(6, 12)]
    assert shards(d) == []
    assert (d / "app.log.1").exists()


def test_many_records_stream_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny chunks (many refills, records crossing chunk edges) the result is the same sorted merge."""
    monkeypatch.setattr(reader, "CHUNK_MAX", 64)
    monkeypatch.setattr(reader, "CHUNK_MIN", 64)
    expected = []
    for k in range(5):
        recs = [
            (1_800_000_000 + i * 0.37 + k * 0.05, f"s{k}-{i}" + ("\n\tdetail" if i % 7 == 0 else ""))
            for i in range(300)
        ]
        write_shard(tmp_path / f"app.log.h.{k}.shard", recs)
        expected += [(shard_time(t), k, i, text) for i, (t, text) in enumerate(recs)]
    safelog.merge(tmp_path / "app.log")
    assert (tmp_path / "app.log").read_text() == "".join(e[3] + "\n" for e in sorted(expected))


@pytest.mark.parametrize("two_cores", [False, True])
def test_records_longer_than_the_read_buffer_give_the_exact_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_cores: bool
) -> None:
    """Records longer than a chunk and than the room kept for a cut record, equal times across
    shards, tabs after line breaks, a text starting with a tab, many output blocks per step: the
    output is exactly the sorted records, in one process and in two."""
    import random

    monkeypatch.setattr(reader, "CHUNK_MAX", 4096)
    monkeypatch.setattr(reader, "CHUNK_MIN", 4096)
    monkeypatch.setattr(reader, "SLACK", 512)
    monkeypatch.setattr(output, "BLOCK", 7)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0 if two_cores else 1 << 60)
    rng = random.Random(3)
    expected = []
    for k in range(4):
        t = 1_800_000_000.0
        recs = []
        for i in range(400):
            t += rng.choice([0.0, 0.001, 0.002])
            text = f"s{k}-{i}"
            if i % 37 == 5:
                text += "".join(f"\n\tline {j} " + "x" * rng.randrange(900) for j in range(rng.randrange(1, 30)))
            elif i % 53 == 7:
                text += " " + "y" * rng.randrange(600, 9000)
            elif i == 11 * k + 3:
                text = "\tstarts with a tab " + text
            recs.append((t, text))
        write_shard(tmp_path / f"app.log.h.{k}.shard", recs)
        expected += [(shard_time(t), k, i, text) for i, (t, text) in enumerate(recs)]
    workers = _count_workers(monkeypatch)
    report = safelog.merge(tmp_path / "app.log")
    assert report.ok and report.records == 1600
    assert workers == ([1] if two_cores else [])
    assert (tmp_path / "app.log").read_text() == "".join(e[3] + "\n" for e in sorted(expected))


# -- crashes -----------------------------------------------------------------------------------


def _make_run(d: Path, runs: int = 3, n: int = 40) -> set[str]:
    ids = set()
    for k in range(runs):
        recs = [(1_800_000_000 + i * 0.01 + k * 0.003, f"k{k}-{i}") for i in range(n)]
        write_shard(d / f"app.log.h.{100 + k}.shard", recs)
        ids |= {t for _, t in recs}
    return ids


def _ids(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


class Crash(Exception):
    pass


def _is_output(fd: int, name: str = "app.log") -> bool:
    """Whether ``fd`` is this process's descriptor of the merged log."""
    return os.readlink(f"/proc/self/fd/{fd}").endswith("/" + name)


@pytest.mark.parametrize(
    "point", ["append-journal", "write", "fsync-output", "commit", "unlink-1", "unlink-3", "state-final"]
)
def test_crash_then_rerun_neither_loses_nor_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """A merge that fails at a given step, then a clean re-run, leaves every record exactly once, no
    shard, and the merged log in place (same inode); a failure before the commit point takes the
    partial batch back at once."""
    log = tmp_path / "app.log"
    log.write_text("old\n")
    inode = log.stat().st_ino
    ids = _make_run(tmp_path)
    calls = {"unlink": 0, "write": 0, "fsync": 0}
    real_unlink, real_save, real_fsync, real_write = os.unlink, journal.save_state, os.fsync, output.write_all

    def unlink(p: Any, *a: Any, **k: Any) -> None:
        if ".shard" in str(p):
            calls["unlink"] += 1
            if point == f"unlink-{calls['unlink']}":
                raise Crash
        real_unlink(p, *a, **k)

    def save(path: str, state: dict[str, Any], *rest: Any) -> None:
        stage = (state.get("pending") or {}).get("stage")
        if (point, stage) in (("append-journal", "append"), ("commit", "commit")):
            raise Crash
        if point == "state-final" and state.get("pending") is None and state.get("offsets") is not None:
            raise Crash
        real_save(path, state, *rest)

    def fsync(fd: int) -> None:
        if point == "fsync-output" and _is_output(fd) and not calls["fsync"]:
            calls["fsync"] += 1
            raise Crash
        real_fsync(fd)

    def write_all(fd: int, data: Any) -> None:
        calls["write"] += 1
        if point == "write" and calls["write"] == 3:
            real_write(fd, data[: len(data) // 2])
            raise Crash
        real_write(fd, data)

    monkeypatch.setattr(output, "BLOCK", 16)  # several writes per batch
    monkeypatch.setattr(_merge.os, "unlink", unlink)
    monkeypatch.setattr(journal, "save_state", save)
    monkeypatch.setattr(_merge.os, "fsync", fsync)
    monkeypatch.setattr(output, "write_all", write_all)
    with pytest.raises(Crash):
        safelog.merge(log)
    monkeypatch.undo()
    if point in ("write", "fsync-output", "commit"):
        assert log.read_text() == "old\n"  # not committed: taken back before the error propagated
    assert safelog.merge(log).ok
    got = _ids(log)
    assert got[0] == "old" and sorted(got[1:]) == sorted(ids) and len(got) == len(ids) + 1
    assert log.stat().st_ino == inode
    assert shards(tmp_path) == []
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


KILL_POINTS = ["write", "parallel-write", "append-journal", "before-commit", "commit", "after-unlink", "final-state"]

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from safelog._merge import run as _merge
    from safelog._merge import journal, output, parallel
    point = sys.argv[2]
    me = os.getpid()
    def die():
        if os.getpid() == me:  # not in the forked worker of a two-process merge
            os.kill(me, signal.SIGKILL)
    if point == "parallel-write":
        parallel.PARALLEL_MIN = 0
    real_unlink, real_save, real_write = os.unlink, journal.save_state, output.write_all
    n = {"w": 0}
    def write_all(fd, data):
        n["w"] += 1
        real_write(fd, data[: len(data) // 2])
        if point in ("write", "parallel-write") and n["w"] == 1:
            die()
        real_write(fd, data[len(data) // 2 :])
    def save(path, state, *rest):
        stage = (state.get("pending") or {}).get("stage")
        if point == "before-commit" and stage == "commit":
            die()
        real_save(path, state, *rest)
        if (point, stage) in (("append-journal", "append"), ("commit", "commit")):
            die()
        if point == "final-state" and not state.get("pending"):
            die()
    def unlink(p):
        real_unlink(p)
        if point == "after-unlink" and ".shard" in p:
            die()
    output.write_all, journal.save_state, os.unlink = write_all, save, unlink
    _merge.merge(sys.argv[1])
    """
)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkilled_merge_process_then_rerun_is_exact(tmp_path: Path, point: str) -> None:
    """A real merge process SIGKILLed mid-way (mid-write, after the journal entries, before and after
    the commit point, mid-removal) and a re-run give every record once, after what the merged log
    held, in the same file."""
    log = tmp_path / "app.log"
    log.write_text("old\n")
    inode = log.stat().st_ino
    ids = _make_run(tmp_path, runs=4, n=3000)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(log), point], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert main(["merge", str(log), "--quiet"]) == 0
    got = _ids(log)
    assert got[0] == "old" and len(got) == len(ids) + 1 and set(got[1:]) == ids
    assert log.stat().st_ino == inode
    assert shards(tmp_path) == []


# -- hostile input -----------------------------------------------------------------------------


def test_hostile_inputs_are_reported_and_good_records_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Truncated record, garbage lines, binary junk, a foreign file and an empty shard: all good records
    merged, problems named by file:line, exit 1."""
    d = tmp_path
    t = 1_800_000_000.0
    frame = ShardFrame("utf-8", "strict")
    good = [frame.encode(f"g{i}", t + i) for i in range(6)]
    # killed mid-write: the last record lacks its line end
    (d / "app.log.h.1.shard").write_bytes(good[0] + good[1] + good[2][:-5])
    # a garbage line between records, a continuation line that follows no record, and a
    # record glued to NUL bytes
    (d / "app.log.h.2.shard").write_bytes(
        good[3] + b"this is not a record\n" + b"\tstray continuation\n" + b"\0" * 50 + good[4] + good[5]
    )
    # binary junk that starts like no record (not a tab: that would be a continuation line)
    junk = random.Random(7).randbytes(3000).replace(b"\n", b"x").replace(b"\t", b"x")
    (d / "app.log.h.3.shard").write_bytes(b"\x01" + junk + b"\n")
    (d / "app.log.h.4.shard").write_text("Nov 26 18:49:28 host sshd[1]: a syslog line\n")
    (d / "app.log.h.5.shard").write_bytes(b"")
    rc = main(["merge", str(d / "app.log")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    assert (d / "app.log").read_text().split("\n")[:-1] == ["g0", "g1", "g3", "g4", "g5"]
    assert f"{d / 'app.log.h.1.shard'}:3: truncated record" in err
    assert f"{d / 'app.log.h.2.shard'}:2: not a shard record" in err
    assert f"{d / 'app.log.h.2.shard'}:3: continuation line without a record" in err
    assert f"{d / 'app.log.h.2.shard'}:4: not a shard record" in err
    assert f"{d / 'app.log.h.3.shard'}:1: not a shard record" in err
    assert f"{d / 'app.log.h.4.shard'}:1: not a shard record" in err
    # damaged files are moved aside, never deleted; the empty one is removed
    assert shards(d) == [f"app.log.h.{k}.shard.damaged" for k in (1, 2, 3, 4)]
    # a re-run has nothing left to do and does not duplicate anything
    assert main(["merge", str(d / "app.log"), "-q"]) == 0
    assert len(_ids(d / "app.log")) == 5


def test_garbage_lines_that_look_like_a_header_together_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short garbage line and the next one read together have the loose shape of a header (27 bytes,
    a number, a space): both lines are still reported by number, and the good records merged."""
    t = 1_800_000_000.0
    frame = ShardFrame("utf-8", "strict")
    good = [frame.encode(f"g{i}", t + i) for i in range(3)]
    (tmp_path / "app.log.h.1.shard").write_bytes(
        good[0] + b"ab\n" + b"c" * 24 + b" 12 x\n" + good[1] + b"d" * 27 + b" 7 \tx\n" + good[2]
    )
    assert main(["merge", str(tmp_path / "app.log")]) == 1
    err = capsys.readouterr().err
    assert (tmp_path / "app.log").read_text() == "g0\ng1\ng2\n"
    for lineno in (2, 3, 5):
        assert f"{tmp_path / 'app.log.h.1.shard'}:{lineno}: not a shard record" in err


def test_unreadable_shard_is_reported_and_left_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard that cannot be opened (permissions) is reported and kept; the others are merged; exit 1."""
    write_shard(tmp_path / "app.log.h.1.shard", [(1_800_000_000.0, "ok")])
    write_shard(tmp_path / "app.log.h.2.shard", [(1_800_000_001.0, "locked away")])
    (tmp_path / "app.log.h.3.shard").mkdir()  # cannot be read as a file either
    real_open = os.open

    def deny(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if str(path).endswith("h.2.shard"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(_merge.os, "open", deny)
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'app.log.h.2.shard'}: cannot read: Permission denied" in err
    assert f"{tmp_path / 'app.log.h.3.shard'}: cannot read" in err
    assert _ids(tmp_path / "app.log") == ["ok"]
    assert shards(tmp_path) == ["app.log.h.2.shard", "app.log.h.3.shard"]
    monkeypatch.undo()
    (tmp_path / "app.log.h.3.shard").rmdir()
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 0
    assert _ids(tmp_path / "app.log") == ["ok", "locked away"]


def test_corrupt_compressed_backup_keeps_other_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated .gz backup is reported and moved aside; the rest of the chain is merged."""
    old = [(1_800_000_000.0 + i, f"old{i}") for i in range(200)]
    write_shard(tmp_path / "app.log.h.1.shard.1.gz", old, gzip.open)
    data = (tmp_path / "app.log.h.1.shard.1.gz").read_bytes()
    (tmp_path / "app.log.h.1.shard.1.gz").write_bytes(data[: len(data) // 2])
    write_shard(tmp_path / "app.log.h.1.shard", [(1_800_000_999.0, "new")])
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 1
    assert "app.log.h.1.shard.1.gz" in capsys.readouterr().err
    got = _ids(tmp_path / "app.log")
    assert got[-1] == "new" and got[:-1] == [f"old{i}" for i in range(len(got) - 1)]
    assert shards(tmp_path) == ["app.log.h.1.shard.1.gz.damaged"]


# -- live shards -------------------------------------------------------------------------------


def test_live_shard_skipped_or_read_to_a_consistent_point(tmp_path: Path) -> None:
    """A running writer's shard is skipped by default, read up to its last complete record with --include-
    live, never removed, and merged once when finished."""
    ctx = multiprocessing.get_context("spawn")
    log = tmp_path / "app.log"
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=child_logs, args=(str(log), "live", 30, ready, go))
    p.start()
    try:
        assert ready.wait(60)
        write_shard(tmp_path / "app.log.h.1.shard", [(1.0, "done-0")])
        assert main(["merge", str(log), "-q"]) == 0
        assert _ids(log) == ["done-0"]
        assert len(shards(tmp_path)) == 1
        assert main(["merge", str(log), "--include-live", "-q"]) == 0
        # the final record of a live shard is held back: the writer may still be writing it
        assert len(shards(tmp_path)) == 1
        assert log.read_text().startswith("done-0\n")
        assert parse_output_after_first(log) == [f"live-{i}" for i in range(29)]
        # merging again while it is still live adds nothing
        assert main(["merge", str(log), "--include-live", "-q"]) == 0
        assert parse_output_after_first(log) == [f"live-{i}" for i in range(29)]
    finally:
        go.set()
        p.join(60)
    assert p.exitcode == 0
    assert main(["merge", str(log), "-q"]) == 0
    assert parse_output_after_first(log) == [f"live-{i}" for i in range(31)]
    assert shards(tmp_path) == []


def parse_output_after_first(log: Path) -> list[str]:
    text = log.read_text().split("\n", 1)[1]
    tmp = log.with_name("view.log")
    tmp.write_text(text)
    return [r[1] for r in parse_output(tmp)]


def test_keep_leaves_shards_and_rerun_adds_nothing(tmp_path: Path) -> None:
    """--keep merges without removing; a re-run (with or without --keep) writes no record twice."""
    ids = _make_run(tmp_path, runs=2, n=10)
    assert main(["merge", str(tmp_path / "app.log"), "--keep", "-q"]) == 0
    assert len(shards(tmp_path)) == 2
    assert main(["merge", str(tmp_path / "app.log"), "--keep", "-q"]) == 0
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 0
    assert sorted(_ids(tmp_path / "app.log")) == sorted(ids)
    assert shards(tmp_path) == []


# -- merge_on_exit -----------------------------------------------------------------------------

ON_EXIT = textwrap.dedent(
    """
    import logging, multiprocessing, os, sys
    import safelog
    path, method = sys.argv[1], sys.argv[2]

    def work(n):
        logging.getLogger("w").info("child-%d", n)

    if __name__ == "__main__":
        h = safelog.PerProcessFileHandler(path, merge_on_exit=True)
        h.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger().addHandler(h)
        logging.getLogger().setLevel(logging.INFO)
        logging.info("parent-start")
        pid = os.fork()
        if pid == 0:
            logging.info("forked-child")
            sys.exit(0)  # runs atexit hooks: must not merge
        os.waitpid(pid, 0)
        assert not os.path.exists(path), "a fork child merged"
        ctx = multiprocessing.get_context(method)
        if method == "spawn":
            logging.getLogger("w").propagate = True
        with ctx.Pool(2) as pool:
            pool.map(work, range(4))
        logging.info("parent-end")
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_merge_on_exit_runs_once_in_the_parent(tmp_path: Path, method: str) -> None:
    """merge_on_exit=True merges every shard when the creating process exits, and never in a child."""
    log = tmp_path / "app.log"
    env = dict(os.environ, PYTHONPATH=ROOT)
    script = tmp_path / "prog.py"
    script.write_text(ON_EXIT)
    proc = subprocess.run(
        [sys.executable, str(script), str(log), method], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    got = _ids(log)
    expected = ["parent-start", "forked-child", "parent-end"]
    if method == "fork":
        expected += [f"child-{n}" for n in range(4)]
    assert sorted(got) == sorted(expected)
    assert got[0] == "parent-start" and got[-1] == "parent-end"
    assert shards(tmp_path) == []


def test_merge_on_exit_needs_per_process() -> None:
    """merge_on_exit with another strategy fails at construction, naming the option."""
    with pytest.raises(ValueError, match="merge_on_exit"):
        safelog.SafeFileHandler("x.log", strategy="thread", merge_on_exit=True, delay=True)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_output_option_quiet_and_no_progress_off_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o writes elsewhere; the summary goes to stderr, --quiet silences it, and no progress is drawn off a
    terminal."""
    _make_run(tmp_path, runs=2, n=5)
    out = tmp_path / "sub" / "merged.log"
    out.parent.mkdir()
    assert main(["merge", str(tmp_path / "app.log"), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "\r" not in cap.err and "merged 10 records" in cap.err
    assert len(_ids(out)) == 10 and not (tmp_path / "app.log").exists()
    _make_run(tmp_path, runs=1, n=5)
    assert main(["merge", str(tmp_path / "app.log"), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert len(_ids(out)) == 15


def test_cli_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing directory or a merge already running is one error line and exit status 2."""
    assert main(["merge", str(tmp_path / "nope" / "app.log")]) == 2
    assert capsys.readouterr().err.startswith("safelog merge: error: no such directory")
    _make_run(tmp_path, runs=1, n=1)
    fd = os.open(str(tmp_path / "app.log.merge.lock"), os.O_RDWR | os.O_CREAT)
    try:
        take_lock(fd)
        assert main(["merge", str(tmp_path / "app.log")]) == 2
        assert "another merge" in capsys.readouterr().err
    finally:
        os.close(fd)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    """`python -m safelog merge` runs the same command in a real interpreter."""
    _make_run(tmp_path, runs=2, n=3)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "safelog", "merge", str(tmp_path / "app.log")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "merged 6 records" in proc.stderr


def _stderr_on(fd: int, monkeypatch: pytest.MonkeyPatch, argv: list[str], read: int) -> tuple[int, str]:
    """Run the CLI with stderr written to ``fd`` (a pty's slave or a pipe's write end); what arrives
    at ``read`` (the master, or the read end) until it is closed, read by a thread meanwhile so a full
    buffer cannot block the merge."""
    import threading

    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(read, 4096)
            except OSError:  # EIO: a pty's slave side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    err = os.fdopen(fd, "w")
    monkeypatch.setattr(sys, "stderr", err)
    try:
        status = main(argv)
    finally:
        err.close()
        reader.join(60)
        os.close(read)
    return status, b"".join(chunks).decode()


def test_progress_bar_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With stderr on a pseudo-terminal a long merge draws a bar (bytes, rate, time left) and clears it;
    on a pipe, with --quiet, or for a merge quicker than PROGRESS_AFTER nothing is drawn."""
    from safelog import _cli

    _make_run(tmp_path, runs=3, n=200)
    log = str(tmp_path / "app.log")
    monkeypatch.setattr(_cli, "PROGRESS_AFTER", 0.0)
    master, slave = os.openpty()
    status, text = _stderr_on(slave, monkeypatch, ["merge", log, "--keep", "-o", str(tmp_path / "a.log")], master)
    assert status == 0
    bar = re.search(r"\rsafelog merge: \[#{24}\] 100% \d+/\d+ MB [\d.,]+ MB/s 0:00 left", text)
    assert bar is not None, repr(text)
    assert "\r\033[K" in text[bar.end() :] and "merged 600 records" in text
    read, write = os.pipe()
    status, text = _stderr_on(write, monkeypatch, ["merge", log, "--keep", "-o", str(tmp_path / "b.log")], read)
    assert status == 0 and "\r" not in text and "[" not in text and "merged 600 records" in text
    master, slave = os.openpty()
    status, text = _stderr_on(slave, monkeypatch, ["merge", log, "--keep", "-q", "-o", str(tmp_path / "c.log")], master)
    assert status == 0 and text == ""
    monkeypatch.setattr(_cli, "PROGRESS_AFTER", 3600.0)
    master, slave = os.openpty()
    status, text = _stderr_on(slave, monkeypatch, ["merge", log, "--keep", "-o", str(tmp_path / "d.log")], master)
    assert status == 0 and "safelog merge: [" not in text and "merged 600 records" in text


def test_time_going_backwards_in_a_shard_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard whose times step back (pid reused, clock stepped) loses nothing; the step is reported as a
    warning, exit 0."""
    t = 1_800_000_000.0
    # two writers' frames in one file, the second starting earlier
    data = ShardFrame("utf-8", "strict").encode("late-1", t + 10)
    data += ShardFrame("utf-8", "strict").encode("early-1", t)
    (tmp_path / "app.log.h.1.shard").write_bytes(data)
    write_shard(tmp_path / "app.log.h.2.shard", [(t + 5, "middle")])
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 0
    assert sorted(_ids(tmp_path / "app.log")) == ["early-1", "late-1", "middle"]
    assert f"warning: {tmp_path / 'app.log.h.1.shard'}:2: time goes backwards" in capsys.readouterr().err


def test_shard_that_cannot_be_removed_is_not_merged_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If a merged shard cannot be removed (directory not writable) it is reported, and a re-run does not
    merge it again."""
    _make_run(tmp_path, runs=2, n=4)
    real_unlink = os.unlink

    def unlink(p: Any) -> None:
        if str(p).endswith(".101.shard"):
            raise PermissionError(13, "Permission denied", str(p))
        real_unlink(p)

    monkeypatch.setattr(_merge.os, "unlink", unlink)
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 1
    assert "app.log.h.101.shard: merged, but cannot remove: Permission denied" in capsys.readouterr().err
    assert shards(tmp_path) == ["app.log.h.101.shard"]
    monkeypatch.undo()
    assert main(["merge", str(tmp_path / "app.log"), "-q"]) == 0
    assert len(_ids(tmp_path / "app.log")) == 8
    assert shards(tmp_path) == []


def test_two_process_merge_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked upper-half worker produces byte-identical output, ties and tracebacks included, and
    reports its problems by file:line."""
    import random
    import shutil

    rng = random.Random(7)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    for k in range(6):
        t = 1_800_000_000.0
        recs = []
        for i in range(3000):
            t += rng.choice([0.0, 0.0, 0.001, 0.002])  # many equal times, also across shards
            recs.append((t, f"s{k}-{i}" + ("\nTraceback:\n  line\nValueError" if i % 13 == 0 else "")))
        write_shard(a / f"app.log.h{k % 2}.{k}.shard", recs)
    with open(a / "app.log.h1.5.shard", "ab") as f:
        f.write(b"garbage near the end\n" + ShardFrame("utf-8", "strict").encode("tail", 1_800_000_999.0))
    shutil.copytree(a, b)
    workers = _count_workers(monkeypatch)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    ra = safelog.merge(a / "app.log")
    assert workers == [1]
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1 << 60)
    rb = safelog.merge(b / "app.log")
    assert workers == [1]
    assert (a / "app.log").read_bytes() == (b / "app.log").read_bytes()
    assert ra.records == rb.records == 18001
    assert [str(p).replace(str(a), "") for p in ra.problems] == [
        str(p).replace(str(b), "") for p in rb.problems
    ]
    garbage_line = 3000 + (3000 // 13 + 1) * 3 + 1  # records + traceback lines + 1
    assert [str(p) for p in ra.problems] == [
        f"{a / 'app.log.h1.5.shard'}:{garbage_line}: not a shard record: b'garbage near the end'"
    ]
    assert shards(a) == shards(b) == ["app.log.h1.5.shard.damaged"]


def test_merge_on_exit_after_the_handler_was_closed(tmp_path: Path) -> None:
    """A handler closed before exit and replaced by another on the same log still gets every shard merged
    at exit."""
    log = tmp_path / "app.log"
    code = (
        "import logging, safelog, sys\n"
        "h = safelog.PerProcessFileHandler(sys.argv[1], merge_on_exit=True)\n"
        "h.setFormatter(logging.Formatter('%(message)s'))\n"
        "lg = logging.getLogger('x'); lg.addHandler(h); lg.warning('one')\n"
        "h.close(); lg.removeHandler(h)\n"
        "h2 = safelog.PerProcessFileHandler(sys.argv[1])\n"  # a reconfiguration: new handler, same log
        "h2.setFormatter(logging.Formatter('%(message)s')); lg.addHandler(h2); lg.warning('two')\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code, str(log)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert _ids(log) == ["one", "two"] and shards(tmp_path) == []


def test_writer_that_waited_for_a_merge_does_not_write_into_the_removed_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process reusing a merged shard's pid waits for the merge's LOCK_EX and then writes to a new shard,
    not the removed one."""
    import threading

    from safelog._primitives.shard import shard_path
    from safelog._sinks import perprocess as _perprocess

    log = str(tmp_path / "app.log")
    path = shard_path(log)
    write_shard(Path(path), [(1.0, "from the earlier process with this pid")])
    merge_fd = os.open(path, os.O_RDONLY)
    take_lock(merge_fd)  # what a merge holds until it has removed the shard
    waiting = threading.Event()
    real_flock = _perprocess.flock

    def flock_spy(fd: int, op: int) -> None:
        waiting.set()
        real_flock(fd, op)

    monkeypatch.setattr(_perprocess, "flock", flock_spy)
    handler = safelog.PerProcessFileHandler(log)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "new record", None, None)
    t = threading.Thread(target=handler.emit, args=(record,))
    t.start()
    try:
        assert waiting.wait(10)
        os.unlink(path)
        os.close(merge_fd)  # the merge is done: lock released
        t.join(10)
    finally:
        handler.close()
    assert not t.is_alive()
    assert _merge.merge(log).records == 1
    assert _ids(tmp_path / "app.log") == ["new record"]


def test_other_hosts_recent_shards_count_as_live_on_network_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a network file system another host's unlocked shard is merged only once it has been quiet for a
    while (its lock may not reach us)."""
    from safelog._primitives.shard import hostname

    t = 1_800_000_000.0
    write_shard(tmp_path / f"app.log.{hostname()}.1.shard", [(t, "mine")])
    write_shard(tmp_path / "app.log.otherhost.2.shard", [(t + 1, "other, quiet")])
    write_shard(tmp_path / "app.log.otherhost.3.shard", [(t + 2, "other, just written")])
    old = time.time() - 2 * discovery.FOREIGN_QUIET
    os.utime(tmp_path / "app.log.otherhost.2.shard", (old, old))
    monkeypatch.setattr(discovery, "network_fs", lambda path: "nfs4")
    report = safelog.merge(tmp_path / "app.log")
    assert _ids(tmp_path / "app.log") == ["mine", "other, quiet"]
    assert report.live == [str(tmp_path / "app.log.otherhost.3.shard")]
    monkeypatch.setattr(discovery, "network_fs", lambda path: None)
    safelog.merge(tmp_path / "app.log")
    assert _ids(tmp_path / "app.log")[-1] == "other, just written"


def test_merge_leaves_the_shards_of_a_log_whose_name_extends_this_one(tmp_path):
    """Merging app.log must not take (and delete) the shards of a log called app.log.old."""
    import logging as _logging

    for name, n in (("app.log", 3), ("app.log.old", 2)):
        h = safelog.SafeFileHandler(str(tmp_path / name), strategy="per-process", delay=True)
        for i in range(n):
            h.emit(_logging.makeLogRecord({"msg": f"{name} {i}", "created": 1000.0 + i}))
        h.close()
    report = safelog.merge(str(tmp_path / "app.log"))
    assert report.ok and report.records == 3
    assert (tmp_path / "app.log").read_text().splitlines() == ["app.log 0", "app.log 1", "app.log 2"]
    old_shards = [p for p in os.listdir(tmp_path) if p.startswith("app.log.old.") and p.endswith(".shard")]
    assert len(old_shards) == 1
    assert safelog.merge(str(tmp_path / "app.log.old")).records == 2


def test_reopened_shard_continues_the_time_clamp_and_numbering(tmp_path):
    """A handler reopened on the same shard in one process keeps the shard sorted and numbered."""
    import logging as _logging

    from safelog._primitives.shard import iter_records

    path = str(tmp_path / "app.log")
    h = safelog.SafeFileHandler(path, strategy="per-process", delay=True)
    h.emit(_logging.makeLogRecord({"msg": "a", "created": 1000.5}))
    h.emit(_logging.makeLogRecord({"msg": "b", "created": 999.0}))
    h.close()
    h = safelog.SafeFileHandler(path, strategy="per-process", delay=True)
    h.emit(_logging.makeLogRecord({"msg": "c", "created": 999.2}))
    h.close()
    shard = [p for p in os.listdir(tmp_path) if p.endswith(".shard")]
    with open(tmp_path / shard[0], "rb") as f:
        recs = list(iter_records(f))
    assert [(r.text, r.seq) for r in recs] == [(b"a", 1), (b"b", 2), (b"c", 3)]
    assert [r.time for r in recs] == sorted(r.time for r in recs)
    report = safelog.merge(path)
    assert report.ok and not report.warnings
    assert open(path).read().splitlines() == ["a", "b", "c"]


def test_leftover_temp_files_of_a_crashed_merge_are_removed(tmp_path: Path) -> None:
    """A merge that died leaves its hidden temp output and, if it died while saving its journal,
    the journal's temp file; the next merge removes both, and nothing else."""
    t = 1_800_000_000.5
    write_shard(tmp_path / "app.log.hosta.3.shard", [(t, "a3-1")])
    leftovers = [".app.log.merge-0123456789ab.tmp", ".app.log.merge-state.0123456789ab.tmp"]
    for name in leftovers + [".other.log.merge-0123456789ab.tmp"]:
        (tmp_path / name).write_text("half\n")
    safelog.merge(tmp_path / "app.log")
    assert (tmp_path / "app.log").read_text() == "a3-1\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not set(leftovers) & set(left)
    assert ".other.log.merge-0123456789ab.tmp" in left


@pytest.mark.parametrize("replaced", [True, False])
def test_journal_of_a_merge_that_replaced_its_output_is_finished_or_undone(tmp_path: Path, replaced: bool) -> None:
    """A pending entry left by a merge that wrote a temp copy and replaced the output (the journal
    before in-place appends) is still honoured: finished if the replace happened, undone if not."""
    import json

    log = tmp_path / "app.log"
    shard = tmp_path / "app.log.h.1.shard"
    write_shard(shard, [(1_800_000_000.0, "a")])
    tmp = tmp_path / ".app.log.merge-0123456789ab.tmp"
    (log if replaced else tmp).write_text("a\n")
    st = (log if replaced else tmp).stat()
    pending = {
        "tmp": str(tmp),
        "output": [st.st_dev, st.st_ino, st.st_size],
        "offsets": {},
        "actions": [["rm", str(shard), shard.stat().st_size, "h.1:" + discovery.line_digest(shard.read_bytes())]],
    }
    state = {"version": 1, "output": None, "offsets": {}, "pending": pending}
    (tmp_path / "app.log.merge-state").write_text(json.dumps(state))
    report = safelog.merge(log)
    assert report.ok and report.records == (0 if replaced else 1)
    assert _ids(log) == ["a"] and shards(tmp_path) == [] and not tmp.exists()


def test_compressed_inputs_are_closed_not_left_to_the_collector(tmp_path: Path) -> None:
    """Every compressed backup the merge opens (to name it by its first line, to read it) is
    closed by the merge: no ResourceWarning for an unclosed file."""
    base = 1_800_000_000.0
    write_shard(tmp_path / "app.log.h.5.shard.2.xz", [(base, "r0")], lzma.open)
    write_shard(tmp_path / "app.log.h.5.shard.1.gz", [(base + 1, "r1")], gzip.open)
    write_shard(tmp_path / "app.log.h.5.shard", [(base + 2, "r2")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        report = safelog.merge(tmp_path / "app.log")
        gc.collect()
    assert report.ok, report.problems
    assert (tmp_path / "app.log").read_text() == "r0\nr1\nr2\n"
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_time_rotated_shard_backups_are_merged_in_period_order(tmp_path: Path) -> None:
    """Backups of a time-rotated shard (.shard.<period>[.N]) are read in period order before the shard
    being written; none of them is taken for a compressed twin of the shard and removed unmerged."""
    t = 1_800_000_000.0
    frame = ShardFrame("utf-8", "strict")
    files = [
        ("app.log.h.1.shard.2027-01-15_08", [t, t + 1]),
        ("app.log.h.1.shard.2027-01-15_09", [t + 3600]),
        ("app.log.h.1.shard.2027-01-15_09.1", [t + 3601]),
        ("app.log.h.1.shard", [t + 7200, t + 7201]),
    ]
    expected = []
    for name, times in files:
        with open(tmp_path / name, "wb") as f:
            for created in times:
                rid = f"r{len(expected)}"
                expected.append(rid)
                f.write(frame.encode(f"{shard_time(created)} 1 id={rid}", created))
    report = safelog.merge(str(tmp_path / "app.log"))
    assert report.ok and report.records == len(expected)
    assert [r[1] for r in parse_output(tmp_path / "app.log")] == expected
    assert shards(tmp_path) == []


def test_backup_shifted_by_a_rotation_during_the_merge_is_not_removed_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live writer rotates while a merge runs (.shard.1 -> .shard.2, .shard -> .shard.1): the merge
    removes the backup it merged, never the unmerged file that now has its name (same size); a later
    merge finishes the job, every record once."""
    t = 1_800_000_000.0
    backup, live = tmp_path / "app.log.h.1.shard.1", tmp_path / "app.log.h.1.shard"
    frame = ShardFrame("utf-8", "strict")
    frame.seq = 99  # sequence numbers of one width: both files the same size
    for path, first in ((backup, 0), (live, 10)):
        with open(path, "wb") as f:
            for i in range(first, first + 10):
                f.write(frame.encode(f"{shard_time(t + i)} 1 id=r{i:02d}", t + i))
    assert backup.stat().st_size == live.stat().st_size
    writer = os.open(live, os.O_RDONLY)
    take_lock(writer, shared=True)
    real = _merge.merge_into

    def merge_then_rotate(*args: Any, **kwargs: Any) -> int:
        n = real(*args, **kwargs)
        os.rename(backup, tmp_path / "app.log.h.1.shard.2")
        os.rename(live, backup)
        (tmp_path / "app.log.h.1.shard").write_bytes(b"")
        return n

    monkeypatch.setattr(_merge, "merge_into", merge_then_rotate)
    try:
        first = safelog.merge(str(tmp_path / "app.log"))
    finally:
        os.close(writer)
    monkeypatch.setattr(_merge, "merge_into", real)
    assert first.records == 10 and backup.exists()
    second = safelog.merge(str(tmp_path / "app.log"))
    assert second.ok and second.records == 10
    assert [r[1] for r in parse_output(tmp_path / "app.log")] == [f"r{i:02d}" for i in range(20)]
    assert shards(tmp_path) == []
