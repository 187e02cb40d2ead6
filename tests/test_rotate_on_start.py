"""rotate_on_start: a non-empty log rotated exactly once per start of the application, never
rotating away records of the current start (real processes; gunicorn and uvicorn are in
tests/integration/test_start_servers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safelog import merge
from safelog._policy.starts import ENV, Identity, decide

APP = Path(__file__).with_name("start_app.py")
OLD = [f"old {i}" for i in range(50)]


def run_app(path: Path, strategy: str, tag: str, n: int, method: str = "fork", who: str = "alone") -> None:
    """One start of the application (a process of its own, no start inherited from the test)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    subprocess.run(
        [sys.executable, str(APP), str(path), strategy, tag, str(n), method, who], env=env, check=True, timeout=120
    )


def lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


def expected(tag: str, n: int, parent: bool = True) -> list[str]:
    return sorted([f"{tag} {i}" for i in range(n)] + ([f"{tag} parent"] if parent else []))


def backups(path: Path) -> list[str]:
    return sorted(f.name for f in path.parent.iterdir() if f.name.startswith(path.name + ".") and not f.name.endswith(".lock"))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("who", ["parent", "workers"])
def test_a_pool_rotates_once_per_start(tmp_path: Path, method: str, who: str) -> None:
    """A pool whose parent configured the handler (inherited start), or whose workers each configure it
    (siblings), rotates the previous run's log once; every record of this start is in the new file once."""
    log = tmp_path / "app.log"
    log.write_text("".join(f"{line}\n" for line in OLD))
    run_app(log, "flock", "run1", 300, method, who)
    assert backups(log) == ["app.log.1"]
    assert lines(log.with_name("app.log.1")) == sorted(OLD)
    assert lines(log) == expected("run1", 300, parent=who == "parent")


@pytest.mark.parametrize("strategy", ["flock", "thread"])
def test_each_run_of_a_cron_job_is_a_start(tmp_path: Path, strategy: str) -> None:
    """Two runs of a script from the same parent (a cron-like runner): each run rotates once, so each
    run's records are in a file of their own."""
    log = tmp_path / "app.log"
    run_app(log, strategy, "run1", 20)
    assert backups(log) == []  # nothing to rotate at the first start
    run_app(log, strategy, "run2", 20)
    run_app(log, strategy, "run3", 20)
    assert backups(log) == ["app.log.1", "app.log.2"]
    assert lines(log.with_name("app.log.2")) == expected("run1", 20)
    assert lines(log.with_name("app.log.1")) == expected("run2", 20)
    assert lines(log) == expected("run3", 20)


def test_per_process_starts_leave_earlier_shards_to_the_merge(tmp_path: Path) -> None:
    """per-process: each run writes a shard of its own; the merge finds every record of both runs once."""
    log = tmp_path / "app.log"
    run_app(log, "per-process", "run1", 20)
    run_app(log, "per-process", "run2", 20)
    merge(str(log))
    assert lines(log) == sorted(expected("run1", 20) + expected("run2", 20))


ME, PARENT, OTHER = "h:10.1.b", "h:1.1.b", "h:20.1.b"


def test_the_rule_for_starts() -> None:
    """decide(): inherited starts join, siblings join a live start of the same parent, anything else begins one."""
    none: list[dict[str, str]] = []
    assert decide(none, Identity(None, ME, PARENT)) == (ME, True, True)
    assert decide(none, Identity(OTHER, ME, PARENT)) == (OTHER, True, True)
    started = [{"start": OTHER, "parent": PARENT, "member": OTHER}]
    assert decide(started, Identity(OTHER, ME, PARENT)) == (OTHER, False, False)
    # A sibling: same parent, the start's process alive -> joins; dead -> a new start.
    assert decide(started, Identity(None, ME, PARENT), alive=lambda k: True) == (OTHER, False, True)
    assert decide(started, Identity(None, ME, PARENT), alive=lambda k: False) == (ME, True, True)
    # Forked from that parent without exec (gunicorn's master): joins even with every member gone.
    assert decide(started, Identity(None, ME, PARENT, forked=True), alive=lambda k: False) == (OTHER, False, True)
    # Another parent (a cron run, a restarted master): a new start even while the old one runs.
    assert decide(started, Identity(None, ME, "h:2.1.b"), alive=lambda k: True) == (ME, True, True)
    # Inherited from a process that joined the start as a sibling: the same start.
    joined = started + [{"start": OTHER, "parent": PARENT, "member": "h:30.1.b"}]
    assert decide(joined, Identity("h:30.1.b", ME, "h:30.1.b")) == (OTHER, False, False)
    # Children that configured before their parent: the parent joins them.
    assert decide([{"start": OTHER, "parent": ME, "member": OTHER}], Identity(None, ME, PARENT), alive=lambda k: False) == (OTHER, False, True)


def test_rotate_on_start_is_checked_at_configuration(tmp_path: Path) -> None:
    """rotate_on_start needs a backup to rotate to, and a bool; both refused at configuration, naming the option."""
    import safelog

    with pytest.raises(ValueError, match=r"rotate_on_start=True with backup_count=0"):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), rotate_on_start=True)
    with pytest.raises(TypeError, match="rotate_on_start"):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), rotate_on_start="maybe", backup_count=2)
    assert not (tmp_path / "app.log").exists()
