"""``safelog follow`` and ``safelog merge --follow``: real writers, real rotations, exact audits."""

from __future__ import annotations

import gzip
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog import audit
from safelog._merge import journal
from safelog._merge import live as live_module
from safelog._merge.live import SETTLE, LiveMerge
from safelog._merge.output import write_spans
from safelog._merge.report import MergeReport
from safelog._primitives.shard import ShardFrame, time_key
from tests.helpers import drop_lock, take_lock, try_take_lock

ROOT = str(Path(__file__).resolve().parent.parent)
FORK = multiprocessing.get_context("fork")
RECORD = r"(?P<id>w\d+-\d+)(?: x*)?"
# Deadlines are failure bounds, never the synchronisation.
DEADLINE = 120.0

# -- helpers ------------------------------------------------------------------------------------


def write_records(path: str, name: str, n: int, ready: Any = None, go: Any = None, **options: Any) -> None:
    """A writer process: ``n`` records ``<name>-<i> x...`` through a SafeFileHandler; with ``ready``
    and ``go`` it writes half, says so, and waits for ``go`` before the rest."""
    handler = safelog.SafeFileHandler(path, **options)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger(f"follow-test-{name}")
    log.addHandler(handler)
    for i in range(n):
        if ready is not None and i == n // 2:
            ready.set()
            assert go.wait(DEADLINE)
        log.info("%s-%d %s", name, i, "x" * (i % 40))
    handler.close()


def threads_write(path: str, names: list[str], n: int, **options: Any) -> None:
    """One process, a thread per name, one shared handler (the thread strategy)."""
    handler = safelog.SafeFileHandler(path, **options)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger("follow-test-threads")
    log.addHandler(handler)

    def run(name: str) -> None:
        for i in range(n):
            log.info("%s-%d %s", name, i, "x" * (i % 40))

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handler.close()


class Follower:
    """``python -m safelog <args>`` with its stdout read as it comes (a thread collects lines)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "safelog", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        _started.append(self)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> None:
        """Until ``predicate(lines)`` holds; the deadline only bounds a failure."""
        end = time.monotonic() + DEADLINE
        with self._cond:
            while not predicate(self.lines):
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"waiting for {what}: {len(self.lines)} lines, rc={self.proc.poll()}")
                self._cond.wait(min(left, 1.0))

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``signum``; the exit status and stderr once it has exited."""
        self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(DEADLINE)
        assert self.proc.stderr is not None
        return rc, self.proc.stderr.read().decode()


_started: list[Follower] = []


@pytest.fixture(autouse=True)
def no_follower_left() -> Iterator[None]:
    """A test that fails half-way still ends the commands it started, and their reader threads:
    left running, they kept this worker's later tests from forking merge's second process (it
    needs a process with one thread)."""
    yield
    while _started:
        f = _started.pop()
        if f.proc.poll() is None:
            f.proc.kill()
        f.proc.wait()
        f._reader.join(DEADLINE)
        for stream in (f.proc.stdout, f.proc.stderr):
            if stream is not None:
                stream.close()


def merging(log: Path) -> None:
    """Until a merge holds the merge lock of ``log`` (its signal handlers are in place by then)."""
    lock = str(log) + ".merge.lock"
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                if not try_take_lock(fd):
                    return
                drop_lock(fd)
            finally:
                os.close(fd)
        time.sleep(0.01)  # polls kernel state; the deadline bounds a failure
    raise AssertionError(f"no merge took {lock}")


def audited(lines: list[str], expected: set[str], tmp_path: Path) -> None:
    """Every expected id exactly once, nothing else, each writer's records in the order it wrote them."""
    out = tmp_path / "followed.txt"
    out.write_text("".join(line + "\n" for line in lines))
    report = audit([str(out)], expected, RECORD)
    assert report.ok, report.summary() + f" lost {report.lost[:5]} dup {list(report.duplicated)[:5]} bad {report.malformed[:3]}"
    last: dict[str, int] = {}
    for line in lines:
        name, i = line.split(" ", 1)[0].split("-")
        assert int(i) > last.get(name, -1), f"{name}-{i} after {name}-{last[name]}"
        last[name] = int(i)


def ids(names: list[str], n: int) -> set[str]:
    return {f"{name}-{i}" for name in names for i in range(n)}


def shard(path: Path, records: list[tuple[float, str]], frame: ShardFrame | None = None, mode: str = "ab") -> ShardFrame:
    """Append records to a shard with the real encoder (one frame per writer)."""
    frame = frame or ShardFrame("utf-8", "strict")
    with open(path, mode) as f:
        for created, text in records:
            f.write(frame.encode(text, created))
    return frame


def step(live: LiveMerge, now: float, out: Path, drain: bool = False) -> MergeReport:
    """One look of the live merge at time ``now``, appended to ``out``."""
    report = MergeReport(str(out))
    live.refresh()
    spans = live.plan(now, drain)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        write_spans(spans, fd, report)
    finally:
        os.close(fd)
    live.emitted(spans)
    live.release()
    return report


def texts(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def _settle(live: LiveMerge) -> None:
    """Age every file's last change past SETTLE as the live merge sees it (it notes a change
    when it looks), instead of waiting: these tests tell the merge the time."""
    for t in live.tracks():
        t.changed -= SETTLE


# -- follow: a plain log ------------------------------------------------------------------------


@pytest.mark.parametrize("strategy, codec, ext", [("flock", "gzip", "gz"), ("thread", "gzip", "gz"), ("flock", "zstd", "zst")])
def test_plain_log_rotated_and_compressed_under_writers_is_printed_once(tmp_path: Path, strategy: str, codec: str, ext: str) -> None:
    """Writers rotate (every 16 KiB) and compress their backups in the background while follow runs:
    every line is printed exactly once, each writer's in its order, across dozens of renamed and
    compressed files."""
    log = tmp_path / "app.log"
    options = dict(strategy=strategy, max_bytes="16 KiB", backup_count=500, compress=codec)
    # -n: everything, whether the writers or the follower start first.
    follower = Follower("follow", "-n", "100000000", "--interval", "0.02", str(log))
    n = 4000
    if strategy == "flock":
        names = [f"w{k}" for k in range(4)]
        procs = [FORK.Process(target=write_records, args=(str(log), name, n), kwargs=options) for name in names]
    else:
        names = [f"w{k}" for k in range(3)]
        procs = [FORK.Process(target=threads_write, args=(str(log), names, n), kwargs=options)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    follower.wait_for(lambda lines: len(lines) >= len(names) * n, "every record")
    rc, err = follower.stop()
    assert rc == 0 and "Traceback" not in err, err
    # It did cross many renamed files, compressed ones among them.
    assert len(list(tmp_path.glob("app.log.[0-9]*"))) > 10 and list(tmp_path.glob(f"app.log.*.{ext}"))
    audited(follower.lines, ids(names, n), tmp_path)


def paced_records(path: str, name: str, n: int, **options: Any) -> None:
    """A writer that spreads ``n`` records over more than a second (time rotation needs the clock to
    pass a boundary; the audit does not depend on how many it passes)."""
    handler = safelog.SafeFileHandler(path, **options)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger(f"follow-test-{name}")
    log.addHandler(handler)
    for i in range(n):
        log.info("%s-%d", name, i)
        if i % 100 == 99:
            time.sleep(0.03)
    handler.close()


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_time_and_size_rotated_log_is_printed_once(tmp_path: Path, strategy: str) -> None:
    """Every second and every 8 KiB a new file (backups app.log.<second>[.N].gz, or the shards'
    .shard.<second>[.N].gz): follow prints every record once, in each writer's order."""
    log = tmp_path / "app.log"
    options = dict(strategy=strategy, when="S", max_bytes="8 KiB", backup_count=1000, compress="gzip")
    follower = Follower("follow", "-n", "100000000", "--interval", "0.02", "--lag", "0.2s", str(log))
    n = 5000
    procs = [FORK.Process(target=paced_records, args=(str(log), f"w{k}", n), kwargs=options) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    follower.wait_for(lambda lines: len(lines) >= 3 * n, "every record")
    rc, err = follower.stop()
    assert rc == 0 and "Traceback" not in err, err
    stamped = re.compile(r".*\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(\.\d+)?\.gz")
    assert any(stamped.fullmatch(name) for name in os.listdir(tmp_path))
    audited(follower.lines, ids(["w0", "w1", "w2"], n), tmp_path)


def test_plain_log_backup_compressed_and_unlinked_while_held_is_read_on(tmp_path: Path) -> None:
    """The file being followed is renamed, compressed and its plain name unlinked before the follower
    looks again: the lines are read through the descriptor it holds, once; the .gz is not read again."""
    from safelog._tail import PlainTail, Problems

    log = tmp_path / "app.log"
    log.write_text("w0-0\nw0-1\n")
    out = tmp_path / "out.txt"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    errors: list[str] = []
    problems = Problems(_Sink(errors))
    tail = PlainTail(str(log), fd, problems)
    try:
        tail.start(10, None)
        with open(log, "a") as f:
            f.write("w0-2\n")
        os.rename(log, tmp_path / "app.log.1")
        with open(tmp_path / "app.log.1", "rb") as src, gzip.open(tmp_path / "app.log.1.gz", "wb") as dst:
            dst.write(src.read())
        os.unlink(tmp_path / "app.log.1")
        # Another rotation meanwhile: a whole file the follower never saw as the current one.
        (tmp_path / "app.log.1").write_text("w0-3\n")
        os.rename(tmp_path / "app.log.1.gz", tmp_path / "app.log.2.gz")
        log.write_text("w0-4\n")
        tail.poll()
        with open(log, "a") as f:
            f.write("w0-5\n")
        tail.poll()
    finally:
        tail.close()
        os.close(fd)
    assert texts(out) == [f"w0-{i}" for i in range(6)] and errors == []


@pytest.mark.parametrize("when", ["start", "poll"])
def test_plain_log_rotated_between_the_listing_and_the_opening_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A rotation after the follower listed the directory and before it opened the file at the path
    (a follower descheduled in between; time backups, whose names never shift): the file renamed
    then is read, before the new one."""
    from safelog import _tail
    from safelog._tail import PlainTail, Problems

    log = tmp_path / "app.log"
    (tmp_path / "app.log.2026-12-07_10-00-00").write_text("w0-0\n")
    log.write_text("w0-1\n")
    written = [1]

    def rotate() -> None:
        os.rename(log, tmp_path / f"app.log.2026-12-07_10-00-0{written[0]}")
        written[0] += 1
        log.write_text(f"w0-{written[0]}\n")

    real_open = _tail._open

    def rotated_first(path: str, ext: str) -> Any:
        if path == str(log):
            monkeypatch.setattr(_tail, "_open", real_open)
            rotate()
        return real_open(path, ext)

    out = tmp_path / "out.txt"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    errors: list[str] = []
    tail = PlainTail(str(log), fd, Problems(_Sink(errors)))
    try:
        if when == "poll":
            tail.start(10, None)
            rotate()
        monkeypatch.setattr(_tail, "_open", rotated_first)
        if when == "start":
            tail.start(10, None)
        tail.poll()
        tail.poll()
    finally:
        tail.close()
        os.close(fd)
    assert texts(out) == [f"w0-{i}" for i in range(written[0] + 1)] and errors == []


def test_plain_log_truncated_in_place_is_read_again(tmp_path: Path) -> None:
    """A log truncated in place (copytruncate) is read again from its start, with a warning."""
    from safelog._tail import PlainTail, Problems

    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    out = tmp_path / "out.txt"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    errors: list[str] = []
    tail = PlainTail(str(log), fd, Problems(_Sink(errors)))
    try:
        tail.start(10, None)
        with open(log, "r+") as f:
            f.truncate(0)
        with open(log, "a") as f:
            f.write("c\n")
        tail.poll()
    finally:
        tail.close()
        os.close(fd)
    assert texts(out) == ["a", "b", "c"]
    assert any("truncated in place" in e for e in errors)


def test_plain_log_start_positions(tmp_path: Path) -> None:
    """-n counts complete lines back across a backup (a partial last line is not one); --since finds
    the first line stamped that late (logging's asctime, local time)."""
    from safelog._tail import PlainTail, Problems

    (tmp_path / "app.log.1").write_text("2026-01-01 10:00:00,000 a\n2026-01-01 10:00:01,000 b\n")
    (tmp_path / "app.log").write_text("2026-01-01 10:00:02,500 c\n  continued\n2026-01-01 10:00:03,000 d\npart")

    def run(lines: int, since: float | None) -> list[str]:
        out = tmp_path / f"out-{lines}-{since}.txt"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT)
        tail = PlainTail(str(tmp_path / "app.log"), fd, Problems(_Sink([])))
        try:
            tail.start(lines, since)
        finally:
            tail.close()
            os.close(fd)
        return [line.split(" ")[-1] for line in texts(out)]

    assert run(2, None) == ["continued", "d"]
    assert run(4, None) == ["b", "c", "continued", "d"]
    assert run(0, None) == []
    since = time.mktime((2026, 1, 1, 10, 0, 1, 0, 0, -1)) + 0.5
    assert run(10, since) == ["c", "continued", "d"]


class _Sink:
    """A text stream that keeps what is written (for _Problems)."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, text: str) -> int:
        self.into.append(text)
        return len(text)

    def flush(self) -> None:
        pass


# -- follow: a per-process log ------------------------------------------------------------------


def test_per_process_follow_with_processes_starting_and_exiting(tmp_path: Path) -> None:
    """Writers of a per-process log start and exit while follow runs (rotating and compressing their
    shards): each wave is seen through the follower's output before the next one starts; at the end
    every record was printed once, each writer's in order, and as merge writes it."""
    log = tmp_path / "app.log"
    options = dict(strategy="per-process", max_bytes="16 KiB", backup_count=500, compress="gzip")
    n = 3000
    first = [FORK.Process(target=write_records, args=(str(log), f"w{k}", n), kwargs=options) for k in range(2)]
    ready, go = FORK.Event(), FORK.Event()
    # w2 writes half, then waits: it is still running when the third wave starts and the first ends.
    second = FORK.Process(target=write_records, args=(str(log), "w2", n, ready, go), kwargs=options)
    for p in first:
        p.start()
    follower = Follower("follow", "-n", "100000000", "--interval", "0.02", "--lag", "0.2s", str(log))
    follower.wait_for(lambda lines: any(line.startswith("w0-") for line in lines), "the first wave")
    second.start()
    assert ready.wait(DEADLINE)
    for p in first:
        p.join()
    third = [FORK.Process(target=write_records, args=(str(log), f"w{k}", n), kwargs=options) for k in (3, 4)]
    for p in third:
        p.start()
    follower.wait_for(lambda lines: any(line.startswith("w3-") for line in lines), "the third wave")
    go.set()
    for p in [second, *third]:
        p.join()
    for p in [*first, second, *third]:
        assert p.exitcode == 0
    names = [f"w{k}" for k in range(5)]
    follower.wait_for(lambda lines: len(lines) >= len(names) * n, "every record")
    rc, err = follower.stop()
    assert rc == 0 and "Traceback" not in err, err
    audited(follower.lines, ids(names, n), tmp_path)
    # The same records as a one-shot merge of the same shards writes (the order may differ only for
    # records written more than the lag after their time).
    assert safelog.merge(str(log), str(tmp_path / "merged.log"), keep=True).ok
    assert sorted(follower.lines) == sorted(texts(tmp_path / "merged.log"))


def test_follow_prints_what_merge_writes_byte_for_byte(tmp_path: Path) -> None:
    """Finished shards of three writers (a backup, a compressed backup, tracebacks, tabs, ties):
    follow from the first record prints exactly the bytes of a one-shot merge."""
    t = time.time() - 3600  # in the past: past the lag at once
    a = shard(tmp_path / "app.log.h.1.shard.1", [(t, "a0"), (t + 2, "a1\nTraceback:\n  line\n\tTab")])
    shard(tmp_path / "app.log.h.1.shard", [(t + 3, "a2"), (t + 5, "a3")], a)
    with gzip.open(tmp_path / "app.log.h.2.shard.1.gz", "wb") as f:
        b = ShardFrame("utf-8", "strict")
        f.write(b.encode("b0", t + 1) + b.encode("\tb1 starts with a tab", t + 3))
    shard(tmp_path / "app.log.h.2.shard", [(t + 4, "b2")], b)
    shard(tmp_path / "app.log.g.7.shard", [(t + 3, "g0 tie"), (t + 6, "g1")])
    merged = safelog.merge(str(tmp_path / "app.log"), str(tmp_path / "merged.log"), keep=True)
    assert merged.ok and merged.records == 9
    out = tmp_path / "followed.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "safelog", "follow", "--since", "2 hours", str(tmp_path / "app.log")],
            stdout=f, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
        )  # fmt: skip
        deadline = time.monotonic() + DEADLINE
        while out.stat().st_size < (tmp_path / "merged.log").stat().st_size and time.monotonic() < deadline:
            time.sleep(0.02)  # polls a file for a failure bound; the size is the handshake
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    assert out.read_bytes() == (tmp_path / "merged.log").read_bytes()


def test_live_merge_lag_rule_and_late_records(tmp_path: Path) -> None:
    """A record is emitted once its time is lag in the past, in merge order across writers; one that
    reaches its shard later than that comes with the next look, after newer ones: late, once."""
    t = 1_800_000_000.0
    s1, s2 = tmp_path / "app.log.h.1.shard", tmp_path / "app.log.h.2.shard"
    f1 = shard(s1, [(t + 0.0, "p1-a"), (t + 1.0, "p1-b")])
    shard(s2, [(t + 0.5, "p2-a"), (t + 2.0, "p2-b")])
    out = tmp_path / "out.txt"
    live = LiveMerge(str(tmp_path), "app.log", lag=1.0)
    live.refresh()
    _settle(live)
    step(live, t + 1.6, out)  # watermark t+0.6
    assert texts(out) == ["p1-a", "p2-a"]
    shard(s1, [(t + 2.5, "p1-c")], f1)
    # A process whose record of t+0.3 reaches the disk after the watermark passed t+0.3.
    shard(tmp_path / "app.log.h.3.shard", [(t + 0.3, "p3-late")])
    live.refresh()
    _settle(live)
    step(live, t + 3.2, out)  # watermark t+2.2
    assert texts(out) == ["p1-a", "p2-a", "p3-late", "p1-b", "p2-b"]
    live.refresh()
    _settle(live)
    step(live, t + 3.2, out, drain=True)
    assert texts(out) == ["p1-a", "p2-a", "p3-late", "p1-b", "p2-b", "p1-c"]
    live.close()


def test_live_merge_holds_back_a_record_being_written(tmp_path: Path) -> None:
    """The last record of a live shard is emitted only once its line end is there and the file has
    stopped changing (a reader can see part of a write that ends in a line break of a multi-line
    record); one without its line end waits while its writer lives, and is reported cut short once
    the writer is gone."""
    t = 1_800_000_000.0
    s = tmp_path / "app.log.h.1.shard"
    frame = shard(s, [(t, "first")])
    record = frame.encode("second\nline two", t + 0.1)
    cut = record.index(b"\n") + 1  # a prefix that ends in a line break
    with open(s, "ab") as f:
        f.write(record[:cut])
    writer = os.open(s, os.O_RDONLY)
    take_lock(writer, shared=True)  # the writer is alive
    out = tmp_path / "out.txt"
    live = LiveMerge(str(tmp_path), "app.log", lag=0.0)
    try:
        step(live, t + 10, out)
        assert texts(out) == ["first"]  # followed by a header: complete; the prefix is not
        with open(s, "ab") as f:
            f.write(record[cut:])
        step(live, t + 10, out)
        assert texts(out) == ["first"]  # whole now, but the file changed since the last look
        _settle(live)
        step(live, t + 10, out)
        assert texts(out) == ["first", "second", "line two"]
        torn = frame.encode("third", t + 0.2)[:20]
        with open(s, "ab") as f:
            f.write(torn)
        step(live, t + 10, out)
        _settle(live)
        report = step(live, t + 10, out)
        assert texts(out) == ["first", "second", "line two"] and report.problems == []
    finally:
        os.close(writer)  # the writer is gone
    report = step(live, t + 10, out)
    assert texts(out) == ["first", "second", "line two"]
    assert [p.message for p in report.problems] == ["truncated record (no line end: writer killed mid-write?)"]
    live.close()


def test_live_merge_reads_a_backup_compressed_under_it_once(tmp_path: Path) -> None:
    """A shard renamed to a backup, compressed (temp + replace) and its plain file unlinked between
    two looks is read on through the descriptor held; the .gz copy is recognised and not read."""
    t = 1_800_000_000.0
    s = tmp_path / "app.log.h.1.shard"
    frame = shard(s, [(t, "r0"), (t + 1, "r1")])
    out = tmp_path / "out.txt"
    live = LiveMerge(str(tmp_path), "app.log", lag=0.0)
    live.refresh()
    _settle(live)
    step(live, t + 0.5, out)
    assert texts(out) == ["r0"]
    shard(s, [(t + 2, "r2")], frame)
    os.rename(s, tmp_path / "app.log.h.1.shard.1")
    with open(tmp_path / "app.log.h.1.shard.1", "rb") as src, gzip.open(tmp_path / ".tmp.gz", "wb") as dst:
        dst.write(src.read())
    os.replace(tmp_path / ".tmp.gz", tmp_path / "app.log.h.1.shard.1.gz")
    os.unlink(tmp_path / "app.log.h.1.shard.1")
    shard(s, [(t + 3, "r3")], frame, mode="wb")
    live.refresh()
    _settle(live)
    step(live, t + 10, out)
    step(live, t + 10, out, drain=True)
    assert texts(out) == ["r0", "r1", "r2", "r3"]
    live.close()


@pytest.mark.parametrize("change", ["rotated", "compressed"])
def test_live_merge_keeps_a_writers_order_when_its_files_change_during_a_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """A writer that rotates its shard (or whose compressor replaces a backup by its .gz) after a
    look listed the directory and before the look opened what it listed (a follower descheduled
    in between): none of that writer's newer records come out before the older file's."""
    t = 1_800_000_000.0
    s = tmp_path / "app.log.h.1.shard"
    backup = tmp_path / "app.log.h.1.shard.1"
    frame = shard(s, [(t, "r0"), (t + 1, "r1")])
    if change == "compressed":
        os.rename(s, backup)
        shard(s, [(t + 2, "r2"), (t + 3, "r3")], frame, mode="wb")
    real_discover = live_module.discover

    def changed_after_the_listing(directory: str, logname: str) -> Any:
        listing = real_discover(directory, logname)
        monkeypatch.setattr(live_module, "discover", real_discover)
        if change == "rotated":
            os.rename(s, backup)
            shard(s, [(t + 2, "r2"), (t + 3, "r3")], frame, mode="wb")
        else:
            with open(backup, "rb") as src, gzip.open(tmp_path / ".tmp.gz", "wb") as dst:
                dst.write(src.read())
            os.replace(tmp_path / ".tmp.gz", str(backup) + ".gz")
            os.unlink(backup)
        return listing

    monkeypatch.setattr(live_module, "discover", changed_after_the_listing)
    out = tmp_path / "out.txt"
    live = LiveMerge(str(tmp_path), "app.log", lag=0.0)
    step(live, t + 10, out)
    step(live, t + 10, out)
    _settle(live)
    step(live, t + 10, out, drain=True)
    assert texts(out) == ["r0", "r1", "r2", "r3"]
    live.close()


def test_live_merge_start_positions(tmp_path: Path) -> None:
    """-n N starts with the last N complete records of all writers together, across a backup; --since
    with the first record of that time or later."""
    t = 1_800_000_000.0
    f1 = shard(tmp_path / "app.log.h.1.shard.1", [(t + i, f"a{i}") for i in range(5)])
    shard(tmp_path / "app.log.h.1.shard", [(t + 5 + i, f"a{5 + i}") for i in range(2)], f1)
    shard(tmp_path / "app.log.h.2.shard", [(t + i + 0.5, f"b{i}") for i in range(7)])

    def run(start: Callable[[LiveMerge], None]) -> list[str]:
        out = tmp_path / "out.txt"
        out.unlink(missing_ok=True)
        live = LiveMerge(str(tmp_path), "app.log", lag=0.0)
        live.refresh()
        start(live)
        _settle(live)
        step(live, t + 100, out, drain=True)
        live.close()
        return texts(out)

    assert run(lambda live: live.start_last(3)) == ["b5", "a6", "b6"]
    assert run(lambda live: live.start_last(6)) == ["a4", "b4", "a5", "b5", "a6", "b6"]
    assert run(lambda live: live.start_last(0)) == []
    assert run(lambda live: live.start_since(time_key(t + 4.5))) == ["b4", "a5", "b5", "a6", "b6"]


# -- merge --follow -----------------------------------------------------------------------------


def test_merge_follow_killed_and_restarted_neither_loses_nor_repeats(tmp_path: Path) -> None:
    """merge --follow is SIGKILLed twice while writers rotate and compress their shards, and started
    again each time: the merged log holds every record once, each writer's in order; every shard merged
    is removed."""
    log = tmp_path / "app.log"
    options = dict(strategy="per-process", max_bytes="16 KiB", backup_count=500, compress="gzip")
    names = [f"w{k}" for k in range(3)]
    n = 6000
    procs = [FORK.Process(target=write_records, args=(str(log), name, n), kwargs=options) for name in names]
    for p in procs:
        p.start()
    merged = 0
    for _ in range(2):
        merger = Follower("merge", "--follow", "--interval", "0.02", "--lag", "0.1s", str(log))
        end = time.monotonic() + DEADLINE
        # Handshake: the merged log has grown since the last run (a batch was committed or in flight).
        while (log.stat().st_size if log.exists() else 0) <= merged and time.monotonic() < end:
            time.sleep(0.01)
        merger.proc.kill()
        merger.proc.wait()
        merged = log.stat().st_size
    for p in procs:
        p.join()
        assert p.exitcode == 0
    merger = Follower("merge", "--follow", "--interval", "0.02", "--lag", "0.1s", str(log))
    merging(log)
    rc, err = merger.stop()  # SIGTERM: merge everything complete, then exit
    assert rc == 0, err
    audited(texts(log), ids(names, n), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if ".shard" in p.name and not p.name.startswith(".")) == []


def _merge_follow_until_killed(log: str, kill_at: int) -> None:
    """In a child: merge --follow, SIGKILLed by itself at the ``kill_at``-th journal write."""
    calls = [0]
    real = journal.save_state

    def save(path: str, state: dict[str, Any], *args: Any) -> None:
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, state, *args)

    journal.save_state = save  # type: ignore[assignment]

    class Forever:
        def wait(self, seconds: float) -> str | None:
            time.sleep(seconds)
            return None

    from safelog._merge.follow import merge_follow

    merge_follow(log, control=Forever(), lag=0.0, interval=0.01)


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5, 6, 7])
def test_merge_follow_killed_at_each_journal_step_then_restarted(tmp_path: Path, kill_at: int) -> None:
    """SIGKILL at each of the journal writes of the first batches (before and after the append, at the
    commit with removals): the next run truncates or finishes, and every record is merged once."""
    t = time.time() - 3600
    f = shard(tmp_path / "app.log.h.1.shard.1", [(t + i, f"w1-{i}") for i in range(50)])
    shard(tmp_path / "app.log.h.1.shard", [(t + 50 + i, f"w1-{50 + i}") for i in range(50)], f)
    shard(tmp_path / "app.log.h.2.shard", [(t + i + 0.5, f"w2-{i}") for i in range(80)])
    child = FORK.Process(target=_merge_follow_until_killed, args=(str(tmp_path / "app.log"), kill_at))
    child.start()
    child.join(DEADLINE)
    assert child.exitcode == -signal.SIGKILL
    merger = Follower("merge", "--follow", "--interval", "0.02", str(tmp_path / "app.log"))
    merging(tmp_path / "app.log")
    rc, err = merger.stop()
    assert rc == 0, err
    audited(texts(tmp_path / "app.log"), {f"w1-{i}" for i in range(100)} | {f"w2-{i}" for i in range(80)}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if ".shard" in p.name and not p.name.startswith(".")) == []


def test_merge_follow_rotates_the_merged_log(tmp_path: Path) -> None:
    """With --max-bytes/--backup-count/--compress the live merged log is rotated between batches and
    its backups gzipped; together they hold every record once, in order."""
    log = tmp_path / "app.log"
    options = dict(strategy="per-process", max_bytes="64 KiB", backup_count=100)
    n = 5000
    halves = [(FORK.Event(), FORK.Event()) for _ in range(2)]
    procs = [
        FORK.Process(target=write_records, args=(str(log), f"w{k}", n, ready, go), kwargs=options)
        for k, (ready, go) in enumerate(halves)
    ]
    merger = Follower(
        "merge", "--follow", "--interval", "0.02", "--lag", "0.1s", "--max-bytes", "32 KiB",
        "--backup-count", "1000", "--compress", "gzip", str(log),
    )  # fmt: skip
    merging(log)
    for p in procs:
        p.start()
    assert all(ready.wait(DEADLINE) for ready, _ in halves)
    # Handshake: the first halves are merged (the merged log is then past --max-bytes); what
    # follows is another batch, which rotates it first.
    end = time.monotonic() + DEADLINE
    while len(merged_lines(log)) < n and time.monotonic() < end:
        time.sleep(0.01)
    for _, go in halves:
        go.set()
    for p in procs:
        p.join()
    rc, err = merger.stop()
    assert rc == 0, err
    assert list(tmp_path.glob("app.log.[0-9]*.gz"))
    audited(merged_lines(log), ids(["w0", "w1"], n), tmp_path)


def merged_lines(log: Path) -> list[str]:
    """The lines of a merged log and its backups (app.log.N[.gz], N oldest), oldest first."""
    backups = [p for p in log.parent.glob(log.name + ".[0-9]*") if not p.name.endswith(".tmp")]
    lines: list[str] = []
    for b in sorted(backups, key=lambda p: -int(p.name.split(".")[2])):
        try:
            data = gzip.decompress(b.read_bytes()) if b.name.endswith(".gz") else b.read_bytes()
        except (FileNotFoundError, EOFError):
            return []  # renamed or being written while listed: look again
        lines += data.decode().splitlines()
    return lines + texts(log)


# -- the command line ---------------------------------------------------------------------------


def test_merge_follow_refuses_a_log_that_is_not_per_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """merge --follow on an existing log with no shard and no earlier merge (a flock log, a typo) is an
    error that creates nothing; on a path nothing has written yet it waits for shards."""
    from safelog._cli import main

    log = tmp_path / "app.log"
    write_records(str(log), "w0", 3, strategy="flock")
    before = sorted(os.listdir(tmp_path))
    assert main(["merge", "--follow", str(log)]) == 2
    assert "was never merged" in capsys.readouterr().err and sorted(os.listdir(tmp_path)) == before


def test_follow_into_a_pipe_whose_reader_goes_away_exits_quietly(tmp_path: Path) -> None:
    """`safelog follow app.log | head -n 2`: once head has exited the follower notices (no new record
    needed) and exits with status 0, without a traceback."""
    log = tmp_path / "app.log"
    log.write_text("".join(f"w0-{i}\n" for i in range(5)))
    follower = subprocess.Popen(
        [sys.executable, "-m", "safelog", "follow", "--interval", "0.02", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    assert follower.stdout is not None
    head = subprocess.run(["head", "-n", "2"], stdin=follower.stdout, capture_output=True, timeout=DEADLINE)
    follower.stdout.close()
    assert head.stdout == b"w0-0\nw0-1\n"
    assert follower.wait(DEADLINE) == 0
    assert follower.stderr is not None and follower.stderr.read() == b""


def holds_open(pid: int, path: Path) -> None:
    """Until process ``pid`` has ``path`` open (kernel state; the deadline only bounds a failure)."""
    want = os.stat(path)
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never opened {path}")


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_sigterm_prints_everything_complete_then_exits(tmp_path: Path, strategy: str) -> None:
    """SIGTERM right after the writers finished: the follower prints every record complete by then
    (a per-process log's too, though --lag 1h still holds them all back), then exits with status 0."""
    log = tmp_path / "app.log"
    options = dict(strategy=strategy, max_bytes="8 KiB", backup_count=100)
    first = FORK.Process(target=write_records, args=(str(log), "w0", 10), kwargs=options)
    first.start()
    first.join()
    follower = Follower("follow", "-n", "0", "--lag", "1h", "--interval", "10s", str(log))
    opened = log if strategy == "flock" else next(tmp_path.glob("app.log.*.shard"))
    holds_open(follower.proc.pid, opened)  # its signal handlers are in place by then
    procs = [FORK.Process(target=write_records, args=(str(log), f"w{k}", 1500), kwargs=options) for k in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rc, err = follower.stop()
    assert rc == 0 and "Traceback" not in err, err
    audited(follower.lines, ids(["w1", "w2"], 1500), tmp_path)


def test_follow_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) ends a follow at once: status 0, no traceback."""
    log = tmp_path / "app.log"
    log.write_text("w0-0\n")
    follower = Follower("follow", str(log))
    follower.wait_for(lambda lines: lines == ["w0-0"], "the last line")
    rc, err = follower.stop(signal.SIGINT)
    assert rc == 0 and err == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lag", "soon"], "Cannot parse --lag"),
        (["-n", "-3"], "-n must be a whole number"),
        (["--since", "yesterday-ish"], "--since must be a time"),
        (["--interval", "0"], "--interval must be a positive duration"),
    ],
)
def test_follow_bad_arguments_are_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A bad option value is one line naming it, exit status 2, before anything is read."""
    from safelog._cli import main

    assert main(["follow", *args, str(tmp_path / "app.log")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safelog follow: error:") and message in err and err.count("\n") == 1


def test_follow_refuses_a_missing_directory_and_a_fifo(tmp_path: Path) -> None:
    """No such directory, or a log path that is a FIFO: one error line, exit status 2."""
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    for path, message in ((tmp_path / "nope" / "app.log", "no such directory"), (fifo, "not a regular file")):
        proc = subprocess.run(
            [sys.executable, "-m", "safelog", "follow", str(path)],
            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=DEADLINE,
        )  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
