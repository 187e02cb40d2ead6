"""Files removed under a running writer: log directory, log file, lock file.

Writers check once per ``CHECK_INTERVAL`` that the path still names what they hold open; the
tests shorten it (it is read at call time) and measure that recovery happens within it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import pytest

from safelog import STRATEGIES, SafeFileHandler, log_files
from safelog._primitives import fileio
from safelog._sinks import logfile as _logfile
from safelog._sinks.lockfile import LockFile
from safelog._sinks.logfile import LogFile
from tests.faults_helpers import FORK, exact, flock_waiters, join_all, make_logger, wait_until
from tests.helpers import check_paths_every, lock_path

INTERVAL = 0.2


@pytest.fixture
def short_interval(monkeypatch):
    check_paths_every(monkeypatch, INTERVAL)


def _log_until_recovered(log, path: str, first: int, interval: float) -> tuple[int, int]:
    """Log a record every few ms until one appears at ``path`` again; return the id of the first
    record found there and the next id. Fails if that takes longer than the check interval."""
    t0 = time.monotonic()
    i = first
    while True:
        log.info("rec %d", i)
        i += 1
        files = log_files(path) if os.path.isdir(os.path.dirname(path)) else []
        if files:
            text = b"".join(open(f, "rb").read() for f in files)
            if b"rec " in text:
                break
        assert time.monotonic() - t0 < interval + 1.0, "writer did not recover in time"
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    assert elapsed <= interval + 0.5, f"recovery took {elapsed:.2f} s"
    (rec,) = {int(x) for f in log_files(path) for x in re.findall(r"rec (\d+)", open(f).read())}
    return rec, i


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_log_directory_deleted(tmp_path, strategy, short_interval):
    """The log directory is deleted while writing: it is re-created within the check interval,
    and every record from then on is written exactly once."""
    path = str(tmp_path / "logs" / "app.log")
    h = SafeFileHandler(path, strategy=strategy, max_bytes=2000, backup_count=50)
    log = make_logger(h)
    for i in range(100):
        log.info("rec %d", i)
    shutil.rmtree(tmp_path / "logs")
    first, nxt = _log_until_recovered(log, path, 100, INTERVAL)
    for i in range(nxt, nxt + 200):
        log.info("rec %d", i)
    h.close()
    exact(path, [str(i) for i in range(first, nxt + 200)])


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_log_directory_renamed(tmp_path, strategy, short_interval):
    """The log directory is renamed away (as by an archiving job): the writer starts a new one
    within the check interval, and no record is lost: each is in the old or the new one, once."""
    path = str(tmp_path / "logs" / "app.log")
    h = SafeFileHandler(path, strategy=strategy, max_bytes=2000, backup_count=50)
    log = make_logger(h)
    for i in range(100):
        log.info("rec %d", i)
    os.rename(tmp_path / "logs", tmp_path / "logs.old")
    first, nxt = _log_until_recovered(log, path, 100, INTERVAL)
    for i in range(nxt, nxt + 200):
        log.info("rec %d", i)
    h.close()
    files = log_files(path) + log_files(str(tmp_path / "logs.old" / "app.log"))
    exact(path, [str(i) for i in range(nxt + 200)], files=files)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_log_file_deleted(tmp_path, strategy, short_interval):
    """The log file is deleted while writing: it is re-created within the check interval, and
    every record from then on is written exactly once."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy=strategy)
    log = make_logger(h)
    for i in range(100):
        log.info("rec %d", i)
    for f in log_files(path):
        os.unlink(f)
    first, nxt = _log_until_recovered(log, path, 100, INTERVAL)
    for i in range(nxt, nxt + 200):
        log.info("rec %d", i)
    h.close()
    exact(path, [str(i) for i in range(first, nxt + 200)])


def test_default_interval_bounds_recovery(tmp_path):
    """With the shipped CHECK_INTERVAL (1 s), a deleted log file is re-created within it."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy="flock")
    log = make_logger(h)
    log.info("rec 0")
    os.unlink(path)
    first, nxt = _log_until_recovered(log, path, 1, _logfile.CHECK_INTERVAL)
    h.close()
    exact(path, [str(i) for i in range(first, nxt)])


# -- the lock file deleted while held ------------------------------------------------------

PAD = " " + "l" * 50


def _holder(path: str, options: dict, holding, go, done, stats) -> None:
    """Writer A: stops inside a record while holding the lock, then continues into a rotation."""
    _count_rollovers(stats)
    real = LogFile.write_all

    def write_all(self: LogFile, data: bytes) -> None:
        if b"rec a-hold " in data:
            holding.set()
            go.wait()
        real(self, data)

    LogFile.write_all = write_all  # type: ignore[method-assign]
    log = make_logger(SafeFileHandler(path, strategy="flock", **options), "lock.a")
    log.info("rec a-hold%s", PAD)
    log.info("rec a-next%s", PAD)  # due: the file went over the limit meanwhile
    done.set()


def _rotator(path: str, options: dict, inside, go, stats) -> None:
    """Writer B: creates a new lock file, and stops inside its rotation holding that lock."""
    _count_rollovers(stats, inside, go)
    log = make_logger(SafeFileHandler(path, strategy="flock", **options), "lock.b")
    log.info("rec b-0%s", PAD)
    log.info("rec b-1%s", PAD)


def _count_rollovers(stats, inside=None, go=None) -> None:
    from safelog._policy.rotation import RotationPolicy

    real = RotationPolicy.rotate

    def rotate(self: RotationPolicy, p: str, *args: Any) -> Any:
        current, peak, total = stats
        with current.get_lock():
            current.value += 1
            peak.value = max(peak.value, current.value)
            total.value += 1
        try:
            if inside is not None:
                inside.set()
                go.wait()
            return real(self, p, *args)
        finally:
            with current.get_lock():
                current.value -= 1

    RotationPolicy.rotate = rotate  # type: ignore[method-assign]


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "check-disabled"])
def test_lock_file_deleted_while_held_never_two_rotators(tmp_path, verify, monkeypatch):
    """The lock file is deleted while writer A holds it and writer B creates a new one: A may
    finish its append, but it cannot rotate until it holds the lock the path names, so two
    rotations never run at once (with the check disabled, the test sees them overlap)."""
    if not verify:
        monkeypatch.setattr(LockFile, "verify", lambda self: None)
    path = str(tmp_path / "app.log")
    lock = lock_path(path)
    options = {"max_bytes": 1000, "backup_count": 10}
    h = SafeFileHandler(path, strategy="flock", **options)
    log = make_logger(h, "lock.fill")
    for i in range(15):  # 900 bytes: B's second record makes the file due
        log.info("rec f-%d %s", i, "f" * 50)
    h.close()
    holding, a_go, a_done, b_inside, b_go = (FORK.Event() for _ in range(5))
    stats = (FORK.Value("i", 0), FORK.Value("i", 0), FORK.Value("i", 0))
    a = FORK.Process(target=_holder, args=(path, options, holding, a_go, a_done, stats))
    a.start()
    assert holding.wait(30)
    os.unlink(lock)  # deleted while A holds it
    b = FORK.Process(target=_rotator, args=(path, options, b_inside, b_go, stats))
    b.start()
    assert b_inside.wait(30), "B must reach its rotation while A still holds the old lock"
    a_go.set()
    # A finishes its record, then finds its next one due: it must wait for B's lock.
    wait_until(lambda: a.pid in flock_waiters(lock) or a_done.is_set(), 30, "A blocked or done")
    b_go.set()
    join_all([a, b])
    assert a.exitcode == 0 and b.exitcode == 0
    current, peak, total = stats
    if verify:
        assert peak.value == 1 and total.value == 1, (peak.value, total.value)
        exact(path, [f"f-{i}" for i in range(15)] + ["a-hold", "a-next", "b-0", "b-1"])
    else:
        assert peak.value == 2, "with the check disabled the two rotations overlap"


@pytest.mark.timeout(30)
def test_create_or_open_gives_up_on_a_name_that_keeps_disappearing(tmp_path: Any, monkeypatch: Any) -> None:
    """Creating a lock file whose name vanishes every time (as inside /proc, where flock on
    /dev/stdout looked for one) raises after a bounded number of attempts, never spins."""
    calls = []

    def vanishing(path: str, *args: Any, **kwargs: Any) -> int:
        calls.append(path)
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(fileio, "_create_at", vanishing)
    with pytest.raises(FileNotFoundError, match="times in a row"):
        fileio.open_lockfile(str(tmp_path / "app.log.lock"))
    assert len(calls) == fileio.ATTEMPTS
