"""Long soak: 8 processes x 4 threads with rotation, workers SIGKILLed and restarted at random,
audited exactly at the end.

Marked ``soak`` (90 s of chaos plus the audits, about two minutes): ``-m "not soak"`` skips it
locally, CI runs it. ``SAFELOG_SOAK_SECONDS`` changes the duration of the chaos.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from safelog import SafeFileHandler, log_files
from safelog._policy.options import parse_size
from tests.faults_helpers import FORK, exact, join_all, make_logger, start_ready, wait_until

SOAK_SECONDS = float(os.environ.get("SAFELOG_SOAK_SECONDS", "90"))
PROCESSES, THREADS = 8, 4
MAX_WORKERS = PROCESSES + 400  # room for the replacements of killed workers

# The handler options under test; one line per option. Retention must keep every file, or the
# audit cannot be exact. Compression and time rotation join here once the handler has them.
SOAK_OPTIONS: dict[str, object] = {
    "max_bytes": "256 KB",
    "backup_count": 1_000_000,
}

# strategy -> share of SOAK_SECONDS
SHARES = {"flock": 0.6, "per-process": 0.4}


def _worker(path: str, strategy: str, wid: int, done, stop, started) -> None:
    h = SafeFileHandler(path, strategy=strategy, **SOAK_OPTIONS)
    log = make_logger(h, f"soak.{wid}")

    def run(t: int) -> None:
        slot = wid * THREADS + t
        i = 0
        pad = "s" * (20 + (slot * 7) % 60)
        while not stop.value:
            log.info("rec w%dt%d-%d %s", wid, t, i, pad)
            i += 1
            done[slot] = i  # after emit() returned

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    started.set()
    for th in threads:
        th.join()
    h.close()


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_SECONDS * 3) + 300)
@pytest.mark.parametrize("strategy", sorted(SHARES))
def test_soak(tmp_path, strategy):
    """Writers run flat out with rotation while random ones are SIGKILLed and replaced: at the
    end every record whose emit() returned is present exactly once, nothing is torn or
    malformed, and no file overshoots the size limit."""
    path = str(tmp_path / "app.log")
    done = FORK.Array("q", MAX_WORKERS * THREADS, lock=False)
    # A raw flag, not an Event: an Event takes a cross-process lock on every check, and a
    # worker SIGKILLed while holding it would stall everyone (a test artefact, not safelog's).
    stop = FORK.RawValue("b", 0)
    rng = random.Random(2026)
    live: dict[int, object] = {}
    finished = []

    def start(wid: int) -> None:
        live[wid] = start_ready(_worker, path, strategy, wid, done, stop, timeout=60)

    for wid in range(PROCESSES):
        start(wid)
    next_wid, kills = PROCESSES, 0
    deadline = time.monotonic() + SOAK_SECONDS * SHARES[strategy]
    while time.monotonic() < deadline and next_wid < MAX_WORKERS:
        # Pacing of the chaos, not a synchronisation: any moment is a valid moment to kill.
        time.sleep(rng.uniform(0.2, 2.0))
        victim = rng.choice(sorted(live))
        p = live.pop(victim)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        finished.append(p)
        kills += 1
        start(next_wid)
        next_wid += 1
    # The survivors stop cleanly (their handlers close normally).
    progress = {s: done[s] for s in range(len(done))}
    wait_until(lambda: all(done[w * THREADS] > progress[w * THREADS] for w in live), 60, "progress")
    stop.value = 1
    join_all(list(live.values()) + finished, timeout=120)
    assert all(p.exitcode == 0 for p in live.values())
    assert kills >= 3

    must, maybe = [], []
    for wid in range(next_wid):
        for t in range(THREADS):
            n = done[wid * THREADS + t]
            must += [f"w{wid}t{t}-{i}" for i in range(n)]
            maybe.append(f"w{wid}t{t}-{n}")  # in flight when its process was killed
    report = exact(path, must, maybe=maybe, killed_pids=[p.pid for p in finished])
    assert report.files > 10, "the soak must have rotated many times"
    limit = parse_size("max_bytes", SOAK_OPTIONS["max_bytes"])
    for f in log_files(path):
        assert os.path.getsize(f) <= limit, f"{f} overshot max_bytes"
    print(f"soak[{strategy}]: {report.summary()}, {kills} workers killed")
