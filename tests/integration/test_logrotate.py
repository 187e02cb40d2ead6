"""External rotation by the real logrotate (Debian's package) while processes keep logging.

Each logrotate run has its own configuration and state file (``-s``) in the test's directory and
is forced (``-f``); the writers are forked processes with two threads each, configured through
dictConfig. Every record carries the number of reopen signals its process had handled when it
was logged ("phase"), so the audit can tell where each record was allowed to land.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from safelog import log_files

pytestmark = pytest.mark.integration

FORK = multiprocessing.get_context("fork")
THREADS = 2
PAD = "x" * 80
LINE_RE = re.compile(r"id=(?P<id>(?P<k>\d+)-(?P<t>\d+)-(?P<i>\d+)) phase=(?P<phase>\d+) " + PAD)
# Records each writer process logs in a phase before the next step (a handshake, not a timer).
PER_PHASE = 300


@pytest.fixture(scope="module")
def logrotate() -> str:
    """The logrotate executable, or the module is skipped with the reason."""
    found = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.access("/usr/sbin/logrotate", os.X_OK) else None)
    if found is None:
        pytest.skip("logrotate is not installed (Debian: apt-get install logrotate; .ci/run does)")
    return found


def _writer(path: str, handler: dict[str, Any], k: int, progress: Any, stop: Any, out: Any) -> None:
    phase = [0]

    def mark(signum: int, frame: Any) -> None:
        phase[0] += 1  # installed before the handler: safelog's own chains it, after its request

    signal.signal(signal.SIGUSR1, mark)
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {"file": {"class": "safelog.SafeFileHandler", "filename": path, "formatter": "plain", **handler}},
        "loggers": {"rot": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    })  # fmt: skip
    log = logging.getLogger("rot")
    # When each record's write began and ended: a record is in the file after its end, and not
    # before its beginning.
    times: list[list[tuple[float, float]]] = [[] for _ in range(THREADS)]
    counts = [[0] * 8 for _ in range(THREADS)]

    def loop(t: int) -> None:
        i = 0
        while not stop.is_set():
            p = phase[0]
            began = time.time()
            log.info("id=%d-%d-%d phase=%d %s", k, t, i, p, PAD)
            times[t].append((began, time.time()))
            i += 1
            counts[t][p] += 1
            # What the parent waits on: the phase both threads have reached, and how many
            # records the slower one logged in it.
            q = min(max((j for j, c in enumerate(c_) if c), default=0) for c_ in counts)
            progress[0], progress[1] = q, min(c_[q] for c_ in counts)

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    out.send(times)


class Writers:
    """``procs`` forked writer processes logging until stopped."""

    def __init__(self, path: Path, handler: dict[str, Any], procs: int) -> None:
        self.stop = FORK.Event()
        self.kids = []
        for k in range(procs):
            progress = FORK.Array("i", [0, 0])
            recv, send = FORK.Pipe(duplex=False)
            p = FORK.Process(target=_writer, args=(str(path), handler, k, progress, self.stop, send))
            p.start()
            self.kids.append((p, progress, recv))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _, _ in self.kids]

    def logged(self) -> int:
        """The fewest records any thread has logged in its process's current phase."""
        return min(pr[1] for _, pr, _ in self.kids)

    def wait_phase(self, phase: int, count: int = PER_PHASE, deadline: float = 60) -> None:
        """Until every thread of every process logged ``count`` records in ``phase`` (or is past it)."""
        end = time.monotonic() + deadline
        while not all(pr[0] >= phase and (pr[0] > phase or pr[1] >= count) for _, pr, _ in self.kids):
            for p, _, _ in self.kids:
                assert p.is_alive(), f"writer {p.pid} died (exit {p.exitcode})"
            assert time.monotonic() < end, f"writers did not reach phase {phase}: {[tuple(pr) for _, pr, _ in self.kids]}"
            time.sleep(0.01)

    def finish(self) -> list[list[list[tuple[float, float]]]]:
        """Stop them; the creation time of every record, per process and thread."""
        self.stop.set()
        times = [recv.recv() for _, _, recv in self.kids]
        for p, _, _ in self.kids:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
            assert p.exitcode == 0, f"writer {p.pid} exit {p.exitcode}"
        return times

    def kill(self) -> None:
        self.stop.set()
        for p, _, _ in self.kids:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()


def run_logrotate(exe: str, tmp: Path, body: str, *, absent_retries: int = 0) -> tuple[float, float]:
    """One forced logrotate run with its own config and state file; its start and end times.

    ``absent_retries``: for a handler that also rotates by size itself, the log's name is absent
    for the instant between its rename and the open of the new file; a logrotate run that stats
    it then says "stat of … failed: No such file or directory" and does nothing else (no copy, no
    truncate). Such a run is run again, and the window returned is the run that did the work.
    """
    conf = tmp / "logrotate.conf"
    conf.write_text(body)
    conf.chmod(0o644)
    for attempt in range(absent_retries + 1):
        start = time.time()
        proc = subprocess.run([exe, "-f", "-s", str(tmp / "logrotate.state"), str(conf)], capture_output=True, text=True, timeout=120)
        end = time.time()
        absent = proc.returncode == 1 and re.fullmatch(r"error: stat of \S+ failed: No such file or directory", proc.stderr.strip())
        if not absent or attempt == absent_retries:
            break
    assert proc.returncode == 0 and not proc.stderr.strip(), f"logrotate failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return start, end


def read(files: Sequence[str]) -> tuple[dict[str, list[tuple[str, int]]], list[tuple[str, str]]]:
    """id → [(file, phase)] over ``files``; and the lines that are not whole records."""
    import gzip

    where: dict[str, list[tuple[str, int]]] = defaultdict(list)
    bad = []
    for f in files:
        opener: Any = gzip.open if f.endswith(".gz") else open
        with opener(f, "rb") as fh:
            lines = fh.read().split(b"\n")
        if lines.pop():
            bad.append((f, "the last line has no line end"))
        for line in lines:
            m = LINE_RE.fullmatch(line.decode("utf-8", "replace"))
            if m is None:
                bad.append((f, line.decode("utf-8", "replace")[:100]))
            else:
                where[m.group("id")].append((f, int(m.group("phase"))))
    return where, bad


def all_ids(times: list[list[list[tuple[float, float]]]]) -> list[str]:
    return [f"{k}-{t}-{i}" for k, per in enumerate(times) for t, ts in enumerate(per) for i in range(len(ts))]


@pytest.mark.parametrize("strategy,procs", [("flock", 3), ("thread", 1)])
def test_create_and_signal_lose_nothing(logrotate: str, tmp_path: Path, strategy: str, procs: int) -> None:
    """logrotate renames the live log, creates a new one and sends SIGUSR1 (reopen_signal), twice,
    while the writers keep logging; with compress + delaycompress it gzips the older backup. Every
    record is in exactly one file, and none logged after its process handled a signal is in the
    file that signal's rotation renamed away."""
    logs = tmp_path / "logs"
    path = logs / "app.log"
    writers = Writers(path, {"strategy": strategy, "reopen_signal": "SIGUSR1"}, procs)
    body = f"""{path} {{
    rotate 5
    create 0640
    compress
    delaycompress
    postrotate
        kill -USR1 {' '.join(map(str, writers.pids))}
    endscript
}}
"""
    try:
        writers.wait_phase(0)
        run_logrotate(logrotate, tmp_path, body)  # app.log -> app.log.1
        writers.wait_phase(1)
        run_logrotate(logrotate, tmp_path, body)  # app.log.1 -> app.log.2.gz, app.log -> app.log.1
        writers.wait_phase(2)
        times = writers.finish()
    finally:
        writers.kill()
    files = log_files(str(path))
    assert [os.path.basename(f) for f in files] == ["app.log", "app.log.1", "app.log.2.gz"]
    where, bad = read(files)
    assert not bad, bad[:5]
    expected = all_ids(times)
    lost = [i for i in expected if i not in where]
    dup = {i: w for i, w in where.items() if len(w) > 1}
    assert not lost and not dup, f"{len(lost)} lost {lost[:5]}, {len(dup)} duplicated {list(dup.items())[:3]}"
    assert len(where) == len(expected)
    # The file renamed by rotation n holds only records logged before their process handled
    # signal n: app.log.2.gz phase 0, app.log.1 phases 0-1.
    limit = {str(path) + ".2.gz": 0, str(path) + ".1": 1, str(path): 2}
    late = [(i, f, p) for i, [(f, p)] in where.items() if p > limit[f]]
    assert not late, f"{len(late)} records logged after the signal went to the renamed file: {late[:5]}"


@pytest.mark.parametrize("strategy,procs", [("flock", 3), ("thread", 1)])
def test_copytruncate_loses_only_its_own_window(logrotate: str, tmp_path: Path, strategy: str, procs: int) -> None:  # noqa: C901 - one scenario, read top to bottom
    """logrotate's copytruncate, twice, against live writers. copytruncate copies the file and
    then truncates it: what is appended between the end of the copy and the truncate is lost, by
    design, and a record being appended while the copy read the end may be cut in the copy. So
    the bound checked, exactly: every record is present once, except, per writer thread and per
    logrotate run, at most one run of consecutive records, all written while that logrotate ran
    (the first one's write ended after logrotate started, the last one's began before it ended); the copy may end in one cut line (such a record counts as
    lost); nothing else is lost, duplicated or torn, and no NUL bytes appear (O_APPEND writes
    land at the new end of file). With the thread strategy the handler also rotates by size
    itself: its backups must be full (its size counter followed the truncate) or empty (a backup
    renamed while logrotate copied it is what logrotate then truncated)."""
    logs = tmp_path / "logs"
    path = logs / "app.log"
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    max_bytes = 20_000
    handler: dict[str, Any] = {"strategy": strategy}
    if strategy == "thread":
        handler.update(max_bytes=max_bytes, backup_count=10_000)
    writers = Writers(path, handler, procs)
    body = f"""{path} {{
    rotate 5
    copytruncate
    nocompress
    olddir {rotated}
}}
"""
    windows = []
    try:
        writers.wait_phase(0)
        for _ in range(2):
            windows.append(run_logrotate(logrotate, tmp_path, body, absent_retries=3 if strategy == "thread" else 0))
            # More records after each truncate (with the thread strategy: several of its own
            # size rotations' worth).
            writers.wait_phase(0, writers.logged() + PER_PHASE)
        times = writers.finish()
    finally:
        writers.kill()
    copies = sorted(str(p) for p in rotated.iterdir())
    assert [os.path.basename(c) for c in copies] == ["app.log.1", "app.log.2"]
    own = log_files(str(path))
    for f in own + copies:
        with open(f, "rb") as fh:
            assert b"\0" not in fh.read(), f"NUL bytes in {f}"
    # A copy may end in a cut line: the rest of that record was truncated away.
    cut = {}
    for c in copies:
        data = Path(c).read_bytes()
        if data and not data.endswith(b"\n"):
            head, _, tail = data.rpartition(b"\n")
            cut[c] = tail.decode()
            Path(c).write_bytes(head + b"\n" if head else b"")
    where, bad = read(own + copies)
    assert not bad, bad[:5]
    dup = {i: w for i, w in where.items() if len(w) > 1}
    assert not dup, f"duplicated: {list(dup.items())[:3]}"
    expected = all_ids(times)
    assert not set(where) - set(expected)
    lost = set(expected) - set(where)
    runs = 0
    for k, per in enumerate(times):
        for t, ts in enumerate(per):
            gone = sorted(i for i in range(len(ts)) if f"{k}-{t}-{i}" in lost)
            # Consecutive runs of lost records of this thread.
            groups: list[list[int]] = []
            for i in gone:
                if groups and i == groups[-1][-1] + 1:
                    groups[-1].append(i)
                else:
                    groups.append([i])
            used = []
            for g in groups:
                runs += 1
                # Written after the copy began and before the truncate: while logrotate ran.
                hits = [w for w, (s, e) in enumerate(windows) if s <= ts[g[0]][1] and ts[g[-1]][0] <= e]
                assert hits, (
                    f"records {k}-{t}-{g[0]}..{g[-1]} were lost but written outside every logrotate run: "
                    f"{ts[g[0]]}..{ts[g[-1]]}, runs {windows}"
                )
                used.append(hits[0])
            assert len(used) == len(set(used)), f"thread {k}-{t} lost more than one run in one logrotate run: {groups}"
    for c, tail in cut.items():
        assert any(f"id={i} phase=0 {PAD}".startswith(tail) for i in lost), f"{c} ends in {tail!r}, not a lost record"
    print(f"\ncopytruncate {strategy}: {len(expected)} records, {len(lost)} lost in {runs} window runs, "
          f"{len(cut)} cut line(s)")  # fmt: skip
    if strategy == "thread":
        backups = [f for f in own if f != str(path)]
        assert backups, "the handler never rotated"
        record = len(f"id=0-0-00000 phase=0 {PAD}\n")
        sizes = {os.path.basename(f): os.path.getsize(f) for f in backups}
        short = {n: s for n, s in sizes.items() if 0 < s <= max_bytes - 2 * record}
        assert not short, f"backups rotated before the file was full (stale size counter): {short}"
