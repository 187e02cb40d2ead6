"""asyncio: with nonblocking=True an event loop keeps ticking while another process holds the
log's lock, and every record it logged arrives once the lock is released."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "config-examples", "asyncio_app.py")
STALL_LIMIT_MS = 5.0
# The lock is held for 1000 ms; a loop that waited for it would stall that long.
BLOCKED_MS = 100.0


def _run_example(path: str, *extra: str) -> dict[str, Any]:
    """Run the example app in a fresh interpreter; it reports its figures as JSON."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, EXAMPLE, path, "--seconds", "1.5", "--hold", "1", "--json", *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example logging for 1.5 s while another process holds app.log.lock for 1 s."""
    return _run_example(str(tmp_path_factory.mktemp("asyncio") / "app.log"))


def test_every_record_arrives_after_the_lock_is_released(run: dict[str, Any]) -> None:
    """Records logged while another process held the lock are all written afterwards (exact audit),
    and mid-hold the urgent record was still unwritten: the writer waited, the loop did not."""
    assert run["audit_ok"], run["audit"]
    # Three records per loop iteration: a loop blocked by its logging for the hold would have
    # logged a handful, a running one hundreds.
    assert run["records_during_hold"] >= 150, run
    assert run["blocked_writer_seen"] is True


def test_event_loop_is_never_blocked_by_the_held_lock(run: dict[str, Any]) -> None:
    """While another process holds the log's lock for 1 s, no tick of the loop waits anywhere near
    that long: logging never blocks the loop on the lock (a synchronous handler stalls it for the
    whole second). The bound is far below the hold and far above scheduling noise."""
    assert run["longest_stall_ms"] < BLOCKED_MS, run


@pytest.mark.timing
def test_event_loop_longest_stall_below_5_ms(run: dict[str, Any], tmp_path: Any) -> None:
    """The loop's longest stall while the lock is held, then drained, stays below 5 ms.

    A millisecond-scale measurement on a shared machine, so it is marked ``timing`` and left out
    of the default run (``pytest -m timing`` runs it). The figure excludes the run-queue wait of
    the loop thread and of the writer thread (time the kernel gave the CPU to other processes).
    A run over the limit is repeated, up to three runs in all; when even the same loop *without
    logging* cannot keep below 5 ms on this machine right now, the test skips and says so.
    """
    runs = [run["longest_stall_ms"]]
    while runs[-1] >= STALL_LIMIT_MS and len(runs) < 3:
        runs.append(_run_example(str(tmp_path / f"again{len(runs)}.log"))["longest_stall_ms"])
    if runs[-1] >= STALL_LIMIT_MS:
        control = _run_example(str(tmp_path / "control.log"), "--control")
        if control["longest_stall_ms"] >= STALL_LIMIT_MS:
            pytest.skip(
                f"machine too noisy to resolve {STALL_LIMIT_MS} ms: the loop without logging stalled "
                f"{control['longest_stall_ms']} ms (with logging: {runs} ms)"
            )
    assert min(runs) < STALL_LIMIT_MS, runs
