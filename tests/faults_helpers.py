"""Shared helpers of the fault tests: children, handshakes on kernel state, exact audits."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from safelog import AuditReport, SafeFileHandler, audit, log_files

FORK = multiprocessing.get_context("fork")

# Every record the fault tests write is "rec <id> <padding>"; the audit counts the id. The
# notice the handler writes after a failure burst, "safelog: N record(s) could not be written
# ...", counts as the id "safelog: N".
RECORD = r"(?:rec )?(?P<id>safelog: \d+|\S+)(?: .*)?"


def make_logger(handler: logging.Handler, name: str | None = None) -> logging.Logger:
    """A private logger that sends everything to ``handler`` only."""
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(name or f"faults.{id(handler)}.{os.getpid()}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def exact(
    path: str,
    expected: Iterable[str],
    *,
    maybe: Iterable[str] = (),
    pattern: str = RECORD,
    files: list[str] | None = None,
    killed_pids: Iterable[int] = (),
) -> AuditReport:
    """Audit ``path`` and its backups: ``expected`` ids exactly once, ``maybe`` ids (records in
    flight when a process was killed) at most once, nothing else, nothing malformed.

    With ``killed_pids``, the last line of a shard of one of those processes may be a cut
    record: the kernel ends a write() short when SIGKILL arrives between two pages of it, and
    that record was in flight (``maybe``). Anywhere else, a cut line is malformed."""
    report = audit(files if files is not None else log_files(path), expected, pattern)
    if killed_pids:
        report.malformed = [m for m in report.malformed if not _cut_tail_of(m, killed_pids)]
    maybe = set(maybe)
    extra = [u for u in report.unexpected if u not in maybe]
    dup = {k: n for k, n in report.duplicated.items()}
    assert not report.lost, f"lost {len(report.lost)}: {report.lost[:10]} ({report.summary()})"
    assert not dup, f"duplicated: {list(dup.items())[:10]}"
    assert not extra, f"unexpected: {extra[:10]}"
    assert not report.malformed, f"malformed: {report.malformed[:5]}"
    return report


def _cut_tail_of(malformed: tuple[str, int, str], pids: Iterable[int]) -> bool:
    path, lineno, reason = malformed
    m = re.search(r"\.(\d+)\.shard(?:\.\d+)?$", path)
    if m is None or int(m.group(1)) not in set(pids) or not reason.startswith("truncated record"):
        return False
    with open(path, "rb") as f:
        return sum(1 for _ in f) == lineno  # the file's last line


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it is true; fail after ``timeout``. For kernel state that offers no
    event to wait on (a process blocked in flock()), not for hoping that time fixes a race."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def flock_waiters(path: str) -> set[int]:
    """PIDs blocked in ``flock()`` on the file ``path`` right now, from ``/proc/locks``."""
    ino = os.stat(path).st_ino
    pids = set()
    with open("/proc/locks") as f:
        for line in f:
            # "3: -> FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": "->" marks a waiter.
            fields = line.split()
            if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK":
                if int(fields[6].rsplit(":", 1)[1]) == ino:
                    pids.add(int(fields[5]))
    return pids


def join_all(procs: Iterable[Any], timeout: float = 60.0) -> None:
    """Join every child; kill and fail on one that does not finish (a hang is a failure)."""
    hung = []
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            hung.append(p.pid)
    assert not hung, f"children hung: {hung}"


class Child:
    """``fn(*args)`` running in a forked child; ``result()`` waits for its return value
    (exceptions re-raised here). Lets the parent act on the child's state while it runs."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._recv, send = FORK.Pipe(duplex=False)

        def run() -> None:
            try:
                send.send((True, fn(*args)))
            except BaseException as exc:  # report everything, including AssertionError
                send.send((False, f"{type(exc).__name__}: {exc}"))

        self.process = FORK.Process(target=run)
        self.process.start()
        send.close()

    def result(self, timeout: float = 60.0) -> Any:
        if not self._recv.poll(timeout):
            self.process.kill()
            self.process.join()
            raise AssertionError(f"child did not answer within {timeout} s (hang)")
        ok, value = self._recv.recv()
        join_all([self.process])
        if not ok:
            raise AssertionError(f"in child: {value}")
        return value


def in_child(fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
    """Run ``fn(*args)`` in a forked child and return its result (exceptions re-raised here)."""
    return Child(fn, *args).result(timeout)


def start_ready(target: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
    """Start ``target(*args, ready)`` in a forked child and return the process once the child
    has set the event ``ready`` (its handler is built); fail if it does not within ``timeout``."""
    ready = FORK.Event()
    p = FORK.Process(target=target, args=(*args, ready))
    p.start()
    if not ready.wait(timeout):
        p.kill()
        p.join()
        raise AssertionError(f"child {p.pid} was not ready within {timeout} s")
    return p


class CountingHandler(SafeFileHandler):
    """Counts handleError calls and remembers which record ids were reported lost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors_reported = 0
        self.failed_ids: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.errors_reported += 1

    def _write_failed(self, record: logging.LogRecord, exc: BaseException) -> None:
        m = re.match(r"rec (\S+)", record.getMessage())
        if m:
            self.failed_ids.append(m.group(1))
        super()._write_failed(record, exc)
