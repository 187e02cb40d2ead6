"""Killed writers: SIGKILL in the middle of writing and in the middle of a rotation.

A worker reports progress through shared memory *after* each ``emit()`` returns, so when it is
killed the test knows exactly which records must be in the files (every reported one, exactly
once) and which one may be (the record in flight, at most once).
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading

import pytest

from safelog import SafeFileHandler, log_files
from tests.faults_helpers import FORK, exact, join_all, make_logger, start_ready, wait_until
from tests.helpers import drop_lock, lock_path, try_take_lock

PAD = " " + "k" * 40


def _worker(path: str, strategy: str, options: dict, wid: int, done, started) -> None:
    h = SafeFileHandler(path, strategy=strategy, **options)
    log = make_logger(h, f"kill.{wid}")
    started.set()
    i = 0
    while True:
        log.info("rec w%d-%d%s", wid, i, PAD)
        i += 1
        done[wid] = i  # after emit() returned: record i-1 is durable in the file


def _expected(done, workers: int) -> tuple[list[str], list[str]]:
    must = [f"w{w}-{i}" for w in range(workers) for i in range(done[w])]
    maybe = [f"w{w}-{done[w]}" for w in range(workers)]
    return must, maybe


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_random_sigkill_loses_no_finished_record(tmp_path, strategy):
    """Four writers with rotation; one after another is SIGKILLed at a random moment and
    replaced: every record whose emit() returned is present exactly once, nothing is torn,
    and the survivors never stall."""
    path = str(tmp_path / "app.log")
    options = {"max_bytes": 20_000, "backup_count": 10_000}
    slots = 10
    done = FORK.Array("q", slots, lock=False)
    rng = random.Random(7)
    live: dict[int, object] = {}
    dead = []

    def start(wid: int) -> None:
        live[wid] = start_ready(_worker, path, strategy, options, wid, done)

    try:
        for wid in range(4):
            start(wid)
        next_id = 4
        while next_id < slots:
            victim = rng.choice(sorted(live))
            floor = done[victim] + rng.randrange(50, 400)
            wait_until(lambda victim=victim, floor=floor: done[victim] >= floor, 30, f"worker {victim} progress")
            others = {w: done[w] for w in live if w != victim}
            p = live.pop(victim)
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            dead.append(p)
            # The survivors keep going: a writer killed while holding the lock does not stall them.
            wait_until(lambda others=others: all(done[w] > n for w, n in others.items()), 30, "survivors progress")
            start(next_id)
            next_id += 1
    finally:
        # Also when a wait above failed: no writer is left running after the test.
        for p in live.values():
            os.kill(p.pid, signal.SIGKILL)
        join_all(list(live.values()) + dead)
    must, maybe = _expected(done, slots)
    killed = [p.pid for p in dead] + [p.pid for p in live.values()]
    report = exact(path, must, maybe=maybe, killed_pids=killed)
    assert report.files > 2, "the run must have rotated"


def _hold_lock_then_wait(path: str, holding, done) -> None:
    h = SafeFileHandler(path, strategy="flock")
    log = make_logger(h)
    log.info("rec before%s", PAD)
    done.value = 1

    def stuck(fd: int, data: bytes) -> int:
        holding.set()
        threading.Event().wait()  # inside the record, holding the lock, until killed
        return 0

    os.write = stuck  # this child process only
    log.info("rec never%s", PAD)


def test_lock_is_free_as_soon_as_the_holder_is_killed(tmp_path):
    """A writer killed while holding the lock mid-record releases it with its death: the lock
    can be taken without waiting the moment the process is reaped, and writing goes on."""
    path = str(tmp_path / "app.log")
    holding, done = FORK.Event(), FORK.Value("i", 0)
    p = FORK.Process(target=_hold_lock_then_wait, args=(path, holding, done))
    p.start()
    assert holding.wait(30)
    fd = os.open(lock_path(path), os.O_RDWR)
    try:
        assert not try_take_lock(fd), "the child must hold the lock"
        p.kill()
        p.join()
        assert try_take_lock(fd), "the lock must be free at once"
        drop_lock(fd)
    finally:
        os.close(fd)
    h = SafeFileHandler(path, strategy="flock")
    make_logger(h).info("rec after%s", PAD)
    h.close()
    exact(path, ["before", "after"])


def _killed_in_rotation(path: str, options: dict, kill_after: int, done) -> None:
    """Write until the first rotation, and die by SIGKILL right after its kill_after-th rename."""
    import safelog._policy.rotation  # noqa: F401  (the renames go through os.replace)

    real_replace = os.replace
    calls = [0]

    def replace(src, dst):  # type: ignore[no-untyped-def]
        real_replace(src, dst)
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # this forked child only
    h = SafeFileHandler(path, strategy="flock", **options)
    log = make_logger(h, "rot.killed")
    i = 0
    while True:
        log.info("rec k-%d%s", i, PAD)
        i += 1
        done.value = i


def _ids_in_order(path: str) -> list[str]:
    """Record ids in write order: oldest backup (highest number) first, the live file last."""
    def age(name: str) -> int:
        m = re.search(r"\.(\d+)$", name)
        return int(m.group(1)) if m else 0

    out = []
    for f in sorted(log_files(path), key=age, reverse=True):
        out += re.findall(r"^rec (\S+)", open(f).read(), re.M)
    return out


@pytest.mark.parametrize("kill_after", [1, 2, 3], ids=["after-first-shift", "mid-shift", "after-last-rename"])
def test_sigkill_mid_rotation(tmp_path, kill_after):
    """A writer SIGKILLed between the renames of a rotation leaves every finished record in
    place exactly once, the lock free, and a live writer of another process rotates on
    correctly, keeping the records in order across the backups."""
    path = str(tmp_path / "app.log")
    options = {"max_bytes": 600, "backup_count": 100}
    # A writer of this process: backups .1 and .2 exist, so a rotation is three renames.
    h = SafeFileHandler(path, strategy="flock", **options)
    log = make_logger(h, "rot.survivor")
    n = 0
    while not os.path.exists(path + ".2"):
        log.info("rec s-%d%s", n, PAD)
        n += 1
    ids_before = [f"s-{i}" for i in range(n)]
    done = FORK.Value("q", 0)
    p = FORK.Process(target=_killed_in_rotation, args=(path, options, kill_after, done))
    p.start()
    join_all([p])  # a child that never reaches its rotation is killed here and fails the test
    assert p.exitcode == -signal.SIGKILL, "the child must have died inside its rotation"
    fd = os.open(lock_path(path), os.O_RDWR)
    assert try_take_lock(fd), "the lock must be free at once"
    drop_lock(fd)
    os.close(fd)
    killed = [f"k-{i}" for i in range(done.value)]
    # The survivor's descriptor may name a file the dead rotation renamed: it must notice.
    m = n
    while not os.path.exists(path + ".6"):
        log.info("rec s-%d%s", m, PAD)
        m += 1
    h.close()
    after = [f"s-{i}" for i in range(n, m)]
    maybe = [f"k-{done.value}"]
    exact(path, ids_before + killed + after, maybe=maybe)
    order = [i for i in _ids_in_order(path) if i not in maybe]
    assert order == ids_before + killed + after, "records out of order across the backups"
    for f in log_files(path):
        assert os.path.getsize(f) <= options["max_bytes"], f"{f} overshot the size limit"
