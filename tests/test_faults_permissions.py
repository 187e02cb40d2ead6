"""Permissions: an unwritable directory or file gives one clear error, no crash, no busy loop.

Root ignores permission bits, so when the suite runs as root each scenario runs in a forked
child that has dropped to the ``nobody`` user first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from safelog import STRATEGIES, SafeFileHandler
from safelog._policy import rotation as rotation
from tests.faults_helpers import FORK, Child, CountingHandler, exact, in_child, make_logger

NOBODY = 65534


def _drop_privileges() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


@pytest.fixture
def base():
    """A directory the unprivileged child can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="safelog-perm-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _unprivileged(fn):
    """``fn`` preceded, in the child that runs it, by dropping to ``nobody``."""

    def run(*args):
        _drop_privileges()
        return fn(*args)

    return run


def _fix_while_child_waits(fn, path: str, strategy: str, fix) -> dict[str, object]:
    """Run ``fn(path, strategy, failing, fixed)`` unprivileged in a child; once it sets
    ``failing`` (it has met the fault), run ``fix()`` here and set ``fixed``; its result."""
    failing, fixed = FORK.Event(), FORK.Event()
    child = Child(_unprivileged(fn), path, strategy, failing, fixed)
    try:
        assert failing.wait(60), "the child did not reach the fault"
        fix()
    finally:
        fixed.set()
    return child.result()


def _configure(path: str, strategy: str) -> str:
    try:
        SafeFileHandler(path, strategy=strategy)
    except ValueError as exc:
        return str(exc)
    return "no error"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_unwritable_directory_fails_at_configuration(base, strategy):
    """Without delay, a log in a directory the process cannot write fails at construction with
    a ValueError that names the log and the directory at fault, the same for every strategy
    (not flock's lock file), and nothing is created."""
    locked = os.path.join(base, "locked")
    os.mkdir(locked, 0o755)
    path = os.path.join(locked, "sub", "app.log")
    msg = in_child(_unprivileged(_configure), path, strategy)
    assert msg == f"filename={path!r} cannot be opened: directory {locked!r} is not writable"
    assert os.listdir(locked) == []


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_unwritable_file_fails_at_configuration(base, strategy):
    """Without delay, an existing log file the process may not write fails at construction,
    naming the file, and leaves nothing behind (no lock file beside it)."""
    path = os.path.join(base, "app.log")
    open(path, "w").close()
    os.chmod(base, 0o777)
    os.chmod(path, 0o644)  # owned by root
    msg = in_child(_unprivileged(_configure), path, strategy)
    assert msg == f"filename={path!r} cannot be opened: file {path!r} is not writable"
    assert os.listdir(base) == ["app.log"]


def _burst(path: str, strategy: str, failing, fixed) -> dict[str, object]:
    h = CountingHandler(path, strategy=strategy, delay=True)
    log = make_logger(h)
    cpu = time.process_time()
    for i in range(1000):
        log.info("rec x%d", i)
    cpu = time.process_time() - cpu
    failing.set()
    assert fixed.wait(30)
    for i in range(5):
        log.info("rec ok%d", i)
    h.close()
    return {"errors": h.errors_reported, "lost": len(h.failed_ids), "cpu": cpu}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_unwritable_directory_at_emit_time(base, strategy):
    """With delay, 1000 records into an unwritable directory cost one handleError call and
    little CPU (no retry loop); once the directory is writable, logging resumes with a notice
    counting the lost records."""
    locked = os.path.join(base, "locked")
    os.mkdir(locked, 0o755)
    path = os.path.join(locked, "app.log")
    r = _fix_while_child_waits(_burst, path, strategy, lambda: os.chmod(locked, 0o777))
    assert r["errors"] == 1 and r["lost"] == 1000
    assert r["cpu"] < 1.0, f"1000 failing records took {r['cpu']:.2f} s of CPU"
    exact(path, [f"ok{i}" for i in range(5)] + ["safelog: 1000"])


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_unwritable_file_at_emit_time(base, strategy):
    """With delay, an existing log file the process may not write costs one handleError call
    per burst; once it is writable, logging resumes with the notice."""
    os.chmod(base, 0o777)
    path = os.path.join(base, "app.log")
    with open(path, "w") as f:
        f.write("rec old\n")
    os.chmod(path, 0o644)
    r = _fix_while_child_waits(_burst, path, strategy, lambda: os.chmod(path, 0o666))
    assert r["errors"] == 1 and r["lost"] == 1000
    exact(path, ["old"] + [f"ok{i}" for i in range(5)] + ["safelog: 1000"])


def _rotate_blocked(path: str, strategy: str, failing, fixed) -> dict[str, object]:
    # Enough backups for every record: the audit below reads them all.
    h = CountingHandler(path, strategy=strategy, max_bytes=1000, backup_count=10)
    log = make_logger(h)
    for i in range(100):
        log.info("rec r%d %s", i, "p" * 40)
    size = os.path.getsize(path)
    failing.set()
    assert fixed.wait(30)
    time.sleep(rotation.RETRY_INTERVAL)  # the documented retry delay, not a race
    for i in range(100, 200):
        log.info("rec r%d %s", i, "p" * 40)
    h.close()
    return {"errors": h.errors_reported, "lost": len(h.failed_ids), "size": size}


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_unwritable_directory_blocks_rotation_not_records(base, strategy):
    """A writable log file in a directory the process cannot write cannot be rotated: records
    go on to the file past max_bytes, the failure is reported once, and rotation resumes when
    the directory is writable again."""
    locked = os.path.join(base, "locked")
    os.mkdir(locked, 0o755)
    path = os.path.join(locked, "app.log")
    open(path, "w").close()
    os.chmod(path, 0o666)
    # A lock file others can open is refused (they could hold the lock): the child's own.
    open(path + ".lock", "w").close()
    os.chmod(path + ".lock", 0o600)
    os.chown(path + ".lock", NOBODY if os.geteuid() == 0 else -1, -1)

    def fix() -> None:
        assert not os.path.exists(path + ".1")
        os.chmod(locked, 0o777)

    r = _fix_while_child_waits(_rotate_blocked, path, strategy, fix)
    assert r["errors"] == 1 and r["lost"] == 0
    assert r["size"] > 1000, "records must go on to the file while it cannot be rotated"
    exact(path, [f"r{i}" for i in range(200)])
    assert os.path.exists(path + ".1"), "rotation must resume"
