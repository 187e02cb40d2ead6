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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from safelog._audit import AuditReport, audit, log_files
from safelog._shard import FrameError, iter_records

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
                raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.output()}")
            if time.monotonic() > end:
                raise AssertionError(f"server not ready after {deadline}s:\n{server.output()}")
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
    while not predicate():
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited while waiting for {what}:\n{server.output()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}:\n{server.output()}")
        time.sleep(0.05)


# -- reading logs back ----------------------------------------------------------------------


def files_to_audit(path: Path, strategy: str) -> list[str]:
    """The files holding everything written to the log ``path``.

    ``per-process`` shards are audited directly (the audit decodes their framing). When
    ``safelog merge`` exists, merge them here and return the merged file instead, so every
    per-process test checks the merge too.
    """
    files = log_files(str(path))
    if strategy == "per-process":
        return [f for f in files if ".shard" in os.path.basename(f)]
    return files


def audit_log(path: Path, strategy: str, expected: Iterable[str], pattern: re.Pattern[str]) -> AuditReport:
    report = audit(files_to_audit(path, strategy), expected, pattern)
    assert report.records > 0, f"nothing logged in {path}"
    return report


def assert_exact(report: AuditReport, what: str) -> None:
    assert report.ok, (
        f"{what}: {report.summary()}; lost {report.lost[:5]}, duplicated "
        f"{list(report.duplicated.items())[:5]}, unexpected {report.unexpected[:5]}, malformed "
        f"{report.malformed[:5]}"
    )


def records(path: Path, strategy: str) -> Iterator[tuple[str, str]]:
    """(file, record text) for every record of the log ``path``, shards decoded."""
    for f in files_to_audit(path, strategy):
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
    would grow it past the limit. Returns how many rotations happened."""
    rotated = [f for f in files_to_audit(path, strategy) if re.search(r"\.\d+$", f)]
    over = {f: os.path.getsize(f) for f in rotated if os.path.getsize(f) > MAX_BYTES}
    assert not over, f"rotated files over {MAX_BYTES} bytes: {over}"
    return len(rotated)
