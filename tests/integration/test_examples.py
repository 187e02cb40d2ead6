"""The stand-alone examples in config-examples/ run as documented and lose nothing.

Each one starts four spawned processes that log to one file through the configuration it shows
(Python dict, YAML, JSON, INI); the file is then audited exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from integration_harness import EXAMPLES, assert_backups_within_limit, assert_exact, audit_log, server_env

pytestmark = pytest.mark.integration

RECORDS = 2000
LINE_RE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ INFO example: record id=(?P<id>w\d-\d{6})"
EXPECTED = [f"w{w}-{i:06d}" for w in range(4) for i in range(RECORDS)]


def run_example(tmp_path: Path, *args: str, **env: str) -> None:
    # Filenames in the YAML/JSON/INI examples are relative (logs/app.log): run where the test
    # wants the logs.
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=server_env(tmp_path / "logs", "flock", RECORDS=str(RECORDS), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Logging error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_dictconfig_python_dict(tmp_path: Path, strategy: str) -> None:
    """logging_dict.py: four processes, one rotating log (or one shard each, merged), every record once."""
    run_example(tmp_path, str(EXAMPLES / "logging_dict.py"), SAFELOG_STRATEGY=strategy)
    log = tmp_path / "logs" / "app.log"
    assert_exact(audit_log(log, strategy, EXPECTED, LINE_RE), "app.log")
    assert assert_backups_within_limit(log, strategy) >= 1


@pytest.mark.parametrize("config", ["logging.yaml", "logging.json"])
def test_dictconfig_from_file(tmp_path: Path, config: str) -> None:
    """load_config.py with the YAML and the JSON file: every record once, no torn line."""
    if config.endswith(".yaml"):
        pytest.importorskip("yaml")
    run_example(tmp_path, str(EXAMPLES / "load_config.py"), str(EXAMPLES / config))
    assert_exact(audit_log(tmp_path / "logs" / "app.log", "flock", EXPECTED, LINE_RE), config)


def test_fileconfig_ini(tmp_path: Path) -> None:
    """fileconfig.py with logging.ini (args and kwargs as INI strings): every record once."""
    run_example(tmp_path, str(EXAMPLES / "fileconfig.py"))
    assert_exact(audit_log(tmp_path / "logs" / "app.log", "flock", EXPECTED, LINE_RE), "logging.ini")


def test_django_project_checks(tmp_path: Path) -> None:
    """The example Django project passes `manage.py check` with its safelog LOGGING."""
    pytest.importorskip("django")
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=EXAMPLES / "django_project",
        env=server_env(tmp_path / "logs", "flock"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout


def test_cron_job_gets_one_file_per_run(tmp_path: Path) -> None:
    """cron_job.py run twice: each run's lines (its pool workers' included) in a file of their own."""
    for _ in range(2):
        run_example(tmp_path, str(EXAMPLES / "cron_job.py"), SAFELOG_START="")
    logs = tmp_path / "logs"
    assert sorted(os.listdir(logs)) == ["job.log", "job.log.1", "job.log.lock"]
    for name in ("job.log", "job.log.1"):
        text = (logs / name).read_text()
        assert text.count("run started") == 1 and text.count("run finished") == 1
        assert sorted(int(line.rsplit(" ", 2)[1]) for line in text.splitlines() if line.endswith(" done")) == list(range(10))
