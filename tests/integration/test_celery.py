"""A Celery prefork worker configured by config-examples/celery_app.py processes queued tasks.

The worker configures logging (through the ``setup_logging`` signal), then forks its pool
children, which inherit the safelog handler; every task's record must be in worker.log once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from integration_harness import (
    BIN,
    EXAMPLES,
    Server,
    assert_backups_within_limit,
    new_ids,
    records,
    server_env,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

pytest.importorskip("celery")

TASKS = 1000
LINE_RE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<pid>\d+) [A-Z]+ (?P<proc>[\w-]+) (?P<logger>[\w.]+): (?P<msg>.*)"
)
TASK_RE = re.compile(r"processed item id=(?P<id>[\w-]+)")


def task_ids(log: Path) -> tuple[Counter[str], set[str], list[str]]:
    """(id -> count, process names that ran tasks, lines not in the configured format)."""
    seen: Counter[str] = Counter()
    procs: set[str] = set()
    bad = []
    for f, text in records(log, "flock"):
        m = LINE_RE.fullmatch(text)
        if m is None:
            bad.append(f"{f}: {text[:120]}")
            continue
        t = TASK_RE.fullmatch(m.group("msg"))
        if t is not None:
            seen[t.group("id")] += 1
            procs.add(m.group("proc"))
    return seen, procs, bad


def test_celery_prefork_worker(tmp_path: Path) -> None:
    """Two prefork children log every task once into one rotating worker.log."""
    env = server_env(tmp_path / "logs", "flock", CELERY_FS_BROKER_DIR=str(tmp_path / "broker"))
    ids = new_ids("task", TASKS)
    # Queue the work first, as the example's docstring shows; the worker then drains it with
    # both children busy at once.
    publish = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom celery_app import process\nfor i in sys.stdin.read().split():\n    process.delay(i)"],
        input="\n".join(ids),
        cwd=EXAMPLES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert publish.returncode == 0, publish.stderr
    argv = [
        str(BIN / "celery"), "-A", "celery_app", "worker",
        "--pool", "prefork", "--concurrency", "2",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "INFO",
    ]
    log = tmp_path / "logs" / "worker.log"
    with Server(argv, EXAMPLES, env, tmp_path / "celery.out") as server:
        wait_for(lambda: log.exists() and sum(task_ids(log)[0].values()) >= TASKS, "all tasks", server, 120)
        # Warm shutdown: the children finish and exit, the worker exits 0.
        assert server.stop() == 0, server.output()

    seen, procs, bad = task_ids(log)
    assert not bad, bad[:5]
    assert set(seen) == set(ids) and set(seen.values()) == {1}, (
        f"lost {len(set(ids) - set(seen))}, duplicated {[k for k, n in seen.items() if n > 1][:5]}"
    )
    assert len(procs) == 2 and all(p.startswith("ForkPoolWorker") for p in procs), procs
    assert assert_backups_within_limit(log, "flock") >= 1
