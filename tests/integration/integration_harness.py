"""Start real servers from config-examples/, drive requests at them, and read back their logs.

Everything here is a handshake with a deadline: readiness is a request that got its answer,
"workers replaced" is the lines gunicorn wrote about it. Nothing waits on a bare sleep.
"""

from __future__ import annotations

import calendar
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from safelog import AuditReport, audit, log_files, merge
from safelog._merge import STATE_SUFFIX
from safelog._primitives.shard import FrameError, iter_records, parse_shard_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config-examples"
BIN = Path(sys.executable).parent

# Small enough that every run rotates each log several times while it is being written.
MAX_BYTES = 32 * 1024
# Keep every backup: an exact audit needs all of them.
BACKUPS = 10_000

TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
# What the example apps log for each request (Flask, Django and the ASGI app alike).
APP_RE = re.compile(TS + r" (?P<pid>\d+) INFO (?P<logger>[\w.]+): request id=(?P<id>[\w-]+)")
GUNICORN_ACCESS_RE = re.compile(
    TS + r' (?P<pid>\d+) 127\.0\.0\.1 "GET /log\?id=(?P<id>[\w-]+) HTTP/1\.[01]" 200 \d+ "(?P=id)" \d+ms'
)
UVICORN_ACCESS_RE = re.compile(
    TS + r' (?P<pid>\d+) 127\.0\.0\.1:\d+ - "GET /log\?id=(?P<id>[\w-]+) HTTP/1\.1" 200'
)
# Server logs (gunicorn.error, uvicorn.error): any text, but whole lines in the common format.
SERVER_RE = re.compile(TS + r" (?P<pid>\d+) (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<id>.*)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(log_dir: Path, strategy: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONDONTWRITEBYTECODE="1",
        LOG_DIR=str(log_dir),
        SAFELOG_STRATEGY=strategy,
        LOG_MAX_BYTES=str(MAX_BYTES),
        LOG_BACKUPS=str(BACKUPS),
        # asctime is local time; pin it so the tests can compare it with their own clock.
        TZ="UTC",
    )
    env.update(extra)
    return env


class Server:
    """A server process in its own session; stopped with SIGTERM, never left behind."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict[str, str], out: Path) -> None:
        self.argv = list(argv)
        self.out = out
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(
                self.argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out.read_text(errors="replace")[-6000:]

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 60) -> int:
        """Graceful stop (SIGTERM to the master, which stops its workers); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._kill_group()

    def _kill_group(self) -> None:
        # Only this server's own session: workers orphaned by a crashed master must not linger.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()


def get(port: int, rid: str, timeout: float = 30) -> None:
    """One request carrying ``rid`` (query and X-Request-ID); the app answers with it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", f"/log?id={rid}", headers={"X-Request-ID": rid, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode("latin-1")
    finally:
        conn.close()
    if resp.status != 200 or body != rid:
        raise AssertionError(f"request {rid}: HTTP {resp.status} {body[:200]!r}")


def wait_ready(server: Server, port: int, deadline: float = 90) -> list[str]:
    """Poll until the server answers a request; return the ids of the probes it logged.

    Only a refused connection is retried, so a probe either never reached the app or was
    answered (and logged) exactly once: the probes join the exact audit.
    """
    end = time.monotonic() + deadline
    n = 0
    while True:
        rid = f"probe-{n}"
        n += 1
        try:
            get(port, rid)
            return [rid]
        except ConnectionRefusedError:
            if server.proc.poll() is not None:
                raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.output()}") from None
            if time.monotonic() > end:
                raise AssertionError(f"server not ready after {deadline}s:\n{server.output()}") from None
            time.sleep(0.05)


def new_ids(prefix: str, n: int) -> list[str]:
    # Random part: ids of two runs can never be confused, and lines get a realistic length.
    return [f"{prefix}-{i:05d}-{uuid.uuid4().hex}" for i in range(n)]


def drive(port: int, ids: Iterable[str], threads: int = 16, progress: Callable[[], None] | None = None) -> None:
    """Send one request per id from ``threads`` client threads; raise on the first failure."""

    def one(rid: str) -> None:
        get(port, rid)
        if progress is not None:
            progress()

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, ids):
            pass


class Load:
    """Requests sent from a background thread, in phases the test releases one by one."""

    def __init__(self, port: int, phases: Sequence[Sequence[str]], threads: int = 16) -> None:
        self.port = port
        self.phases = phases
        self.threads = threads
        self.done = [threading.Event() for _ in phases]
        self.release = [threading.Event() for _ in phases]
        self.error: BaseException | None = None
        self.completed = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i, ids in enumerate(self.phases):
                if not self.release[i].wait(120):
                    raise AssertionError(f"phase {i} never released")
                drive(self.port, ids, self.threads, self._progress)
                self.done[i].set()
        except BaseException as exc:  # reported by wait()/join() in the test thread
            self.error = exc
            for ev in self.done:
                ev.set()
            with self._cond:
                self._cond.notify_all()

    def _progress(self) -> None:
        with self._cond:
            self.completed += 1
            self._cond.notify_all()

    def wait_completed(self, n: int, timeout: float = 120) -> None:
        """Block until ``n`` requests (over all phases) have been answered: the load is flowing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.completed >= n or self.error is not None, timeout):
                raise AssertionError(f"only {self.completed} of {n} requests answered in {timeout}s")
        if self.error is not None:
            raise self.error

    def run_phase(self, i: int, timeout: float = 120) -> None:
        self.release[i].set()
        self.wait_phase(i, timeout)

    def wait_phase(self, i: int, timeout: float = 120) -> None:
        if not self.done[i].wait(timeout):
            raise AssertionError(f"phase {i} did not finish in {timeout}s")
        if self.error is not None:
            raise self.error

    def join(self) -> None:
        for ev in self.release:  # never leave the thread blocked, whatever happened
            ev.set()
        self._thread.join(120)


def wait_for(predicate: Callable[[], bool], what: str, server: Server, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not _holds(predicate):
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited while waiting for {what}:\n{server.output()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}:\n{server.output()}")
        time.sleep(0.05)


def _holds(predicate: Callable[[], bool]) -> bool:
    try:
        return predicate()
    except FileNotFoundError:
        # A predicate that reads a live log lists its files, then opens them: a rotation in
        # between renames one away (a shifted backup). Not there yet: look again.
        return False


# -- reading logs back ----------------------------------------------------------------------

SHARD_RE = re.compile(r"\.shard(?:\.\d+)?(?:\.(?:gz|bz2|xz|zst))?$")
# The CLI's one-line summary (stderr) of a merge that found nothing wrong.
MERGE_SUMMARY_RE = re.compile(
    r"safelog merge: merged (?P<records>\d+) records from (?P<shards>\d+) shard file\(s\) into (?P<out>.+?)"
    r"(?:; removed (?P<removed>\d+))?"
)
# Every line the example formatters write starts with asctime and the writer's pid.
TIME_PID_RE = re.compile(r"(?P<t>" + TS + r") (?P<pid>\d+) ")


def is_shard(path: str) -> bool:
    return SHARD_RE.search(os.path.basename(path)) is not None


@dataclass
class Merged:
    """A ``per-process`` log whose shards were merged into the log path once its writers stopped."""

    path: Path
    records: int
    # Every shard file (rotated backups included) and its size just before the merge.
    shards: dict[str, int]


# One merge per log: every later look at the log (audits, record scans) reads its result.
_merged: dict[Path, Merged] = {}


def merge_log(path: Path, *, cli: bool = False) -> Merged:
    """Merge the shards of the ``per-process`` log ``path`` into ``path`` and check the merge.

    Only after every writer stopped: the merge must then find no live shard, report no problem,
    leave no shard behind, and write the records in time order. ``cli`` runs
    ``python -m safelog merge`` in a subprocess instead of calling :func:`safelog.merge`.
    """
    path = Path(path)
    if path in _merged:
        return _merged[path]
    shards = {f: os.path.getsize(f) for f in log_files(str(path)) if is_shard(f)}
    assert shards, f"no shards of {path}"
    written = shard_chains(path, list(shards))
    # per-process never writes the log path itself: the merged file is this one batch.
    assert not path.exists(), f"{path} exists before the merge"
    if cli:
        proc = subprocess.run(
            [sys.executable, "-m", "safelog", "merge", str(path)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        # Exit 0 and nothing but the summary: no warning, no problem, no live shard.
        m = MERGE_SUMMARY_RE.fullmatch(proc.stderr.strip())
        assert proc.returncode == 0 and m is not None and proc.stdout == "", (proc.returncode, proc.stderr)
        assert m.group("out") == str(path), proc.stderr
        assert int(m.group("shards")) == len(shards) == int(m.group("removed") or 0), (proc.stderr, shards)
        records = int(m.group("records"))
    else:
        report = merge(path)
        assert report.ok, [str(p) for p in report.problems[:5]]
        assert not report.warnings, [str(p) for p in report.warnings[:5]]
        assert not report.live, f"live shards after the writers stopped: {report.live}"
        assert sorted(report.shards) == sorted(shards), (report.shards, shards)
        assert sorted(report.removed) == sorted(shards), (report.removed, shards)
        assert not report.moved, report.moved
        records = report.records
    left = [f for f in log_files(str(path)) if f != str(path) and not f.endswith(STATE_SUFFIX)]
    assert not left, f"left behind by the merge: {left}"
    assert records > 0 and records == assert_time_ordered(path), (records, path)
    # Every writer's records exactly once, in the order it wrote them: nothing lost, doubled,
    # altered or reordered within a writer (the time-order check relies on the last).
    merged: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            merged[line.split(" ", 3)[2]].append(line[:-1])
    assert set(merged) == set(written), (sorted(merged), sorted(written))
    for pid, texts in written.items():
        assert merged[pid] == texts, f"{path}: records of pid {pid} differ from its shards"
    _merged[path] = Merged(path, records, shards)
    return _merged[path]


def shard_chains(path: Path, shards: list[str]) -> dict[str, list[str]]:
    """pid -> the record texts of its shards in the order it wrote them (oldest backup first).

    The shards must be whole: the writers stopped gracefully. The pid in the text (every
    example formatter writes %(process)d) is the pid in the shard name.
    """
    chains: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for shard in shards:
        parts = parse_shard_name(path.name, os.path.basename(shard))
        assert parts is not None and not parts["ext"], shard
        chains[str(parts["pid"])].append((-int(parts["n"] or 0), shard))
    written: dict[str, list[str]] = {}
    for pid, files in chains.items():
        texts = written[pid] = []
        for _, shard in sorted(files):
            with open(shard, "rb") as fh:
                for item in iter_records(fh):
                    assert not isinstance(item, FrameError), f"{shard}: {item}"
                    text = item.text.decode("utf-8")
                    assert "\n" not in text and text.split(" ", 3)[2] == pid, f"{shard}: {text!r}"
                    texts.append(text)
    return written


def assert_time_ordered(path: Path) -> int:
    """The merged log is in the order of its shard header times; returns its line count.

    The header time is ``record.created`` clamped per shard: a record whose creation time is
    below the latest one its writer already wrote (a gthread worker's threads format in one
    order and write in another) gets that latest time. The merge sorts by that time and keeps
    each writer's records in its write order (``merge_log`` checks that), so the running maximum
    of each pid's own times is its header times, which must never decrease over the file.
    asctime (what the formatters write, in UTC: see ``server_env``) is created truncated to
    milliseconds, a monotone function of it, so the same holds at millisecond resolution.
    """
    latest: dict[str, float] = {}  # pid -> running maximum of its record times
    last = 0.0
    n = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = TIME_PID_RE.match(line)
            assert m is not None, f"{path}:{n}: no time and pid: {line!r}"
            pid = m.group("pid")
            t = max(asctime(m.group("t")), latest.get(pid, 0.0))
            latest[pid] = t
            assert t >= last, f"{path}:{n}: out of time order ({t} after {last}): {line!r}"
            last = t
    return n


def files_to_audit(path: Path, strategy: str, *, live: bool = False) -> list[str]:
    """The files holding everything written to the log ``path``.

    ``per-process`` shards are merged here (once, see :func:`merge_log`) and the merged file is
    returned, so every per-process test checks the merge too. ``live``: the writers are still
    running, so the shards are read as they are (a merge would skip the live ones).
    """
    files = log_files(str(path))
    if strategy != "per-process":
        return files
    if live:
        return [f for f in files if is_shard(f)]
    merge_log(path)
    return [str(path)]


def audit_log(
    path: Path, strategy: str, expected: Iterable[str], pattern: str | re.Pattern[str]
) -> AuditReport:
    report = audit(files_to_audit(path, strategy), expected, pattern)
    assert report.records > 0, f"nothing logged in {path}"
    return report


def assert_exact(report: AuditReport, what: str) -> None:
    assert report.ok, (
        f"{what}: {report.summary()}; lost {report.lost[:5]}, duplicated "
        f"{list(report.duplicated.items())[:5]}, unexpected {report.unexpected[:5]}, malformed "
        f"{report.malformed[:5]}"
    )


def records(path: Path, strategy: str, *, live: bool = False) -> Iterator[tuple[str, str]]:
    """(file, record text) for every record of the log ``path``, shards decoded."""
    for f in files_to_audit(path, strategy, live=live):
        with open(f, "rb") as fh:
            if ".shard" in os.path.basename(f):
                for item in iter_records(fh):
                    if not isinstance(item, FrameError):
                        yield f, item.text.decode("utf-8", "replace")
            else:
                for line in fh:
                    yield f, line.decode("utf-8", "replace").rstrip("\n")


def asctime(text: str) -> float:
    """The epoch time of a record's leading asctime (UTC, millisecond resolution)."""
    stamp, ms = text[:23].split(",")
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000


def assert_backups_within_limit(path: Path, strategy: str) -> int:
    """Every rotated file stays within max_bytes: a writer still appending to a renamed file
    would grow it past the limit. Returns how many rotations happened.

    A ``per-process`` log is checked on its shards as they were just before the merge.
    """
    if strategy == "per-process":
        sizes = merge_log(path).shards
    else:
        sizes = {f: os.path.getsize(f) for f in files_to_audit(path, strategy)}
    rotated = [f for f in sizes if re.search(r"\.\d+$", f)]
    over = {f: sizes[f] for f in rotated if sizes[f] > MAX_BYTES}
    assert not over, f"rotated files over {MAX_BYTES} bytes: {over}"
    return len(rotated)
