"""The demo command: every strategy audited, merge included, verdict table printed."""

from __future__ import annotations

import os
import subprocess
import sys

from safelog._cli import main


def test_demo_passes_and_prints_a_verdict_for_every_strategy(tmp_path, capsys):
    """`safelog demo` runs all strategies, audits them and exits 0 with an OK row for each."""
    rc = main(["demo", "--dir", str(tmp_path), "--processes", "2", "--threads", "2",
               "--records", "300", "--max-bytes", "16 KB", "--start-method", "fork"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("OK", "FAILED"))]
    assert [r.split()[0] for r in rows] == ["thread", "flock", "per-process", "+"]
    assert all(r.rstrip().endswith("OK") for r in rows), out
    # rotation really happened during the demo
    assert os.path.exists(tmp_path / "flock" / "app.log.1")


def test_demo_runs_as_a_module_with_spawned_children(tmp_path):
    """`python -m safelog demo` works from a fresh interpreter with spawn children."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", "safelog", "demo", "--dir", str(tmp_path), "--processes", "2",
         "--records", "200", "--start-method", "spawn"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout and proc.stdout.count(" OK") == 4
