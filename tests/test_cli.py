"""The command line's own checks: bad arguments are one line and exit 2, subcommand usage,
--version, and a merge of a path that names no per-process log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import safelog
from safelog._cli import main
from tests.test_merge import _make_run

ROOT = str(Path(__file__).resolve().parent.parent)


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The single line the command printed on stderr (and nothing on stdout)."""
    cap = capsys.readouterr()
    assert cap.out == "", cap.out
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"safelog {command}: error: "), cap.err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "--processes must be a whole number from 1 to 64, got '0'"),
        (["--threads", "two"], "--threads must be a whole number from 1 to 64, got 'two'"),
        (["--records", "-5"], "--records must be a whole number from 1 to 1,000,000, got '-5'"),
        (["--max-bytes", "10 MBs"], "Cannot parse --max-bytes from '10 MBs'"),
        (["--max-bytes", "0"], "--max-bytes must be at least 1 KiB"),
    ],
)
def test_demo_refuses_bad_workloads_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A bad demo count or size is one line naming the command line's option, exit 2, before any process starts."""
    assert main(["demo", "--dir", str(tmp_path / "d"), *args]) == 2
    assert message in one_error_line(capsys, "demo")
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_directory_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dir under a regular file (unwritable even for root) is one line naming --dir and the reason, exit 2."""
    (tmp_path / "file").write_text("")
    assert main(["demo", "--dir", str(tmp_path / "file" / "logs")]) == 2
    line = one_error_line(capsys, "demo")
    assert f"--dir {tmp_path / 'file' / 'logs'}: cannot write there: Not a directory" in line


def test_an_unknown_option_gets_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`safelog merge app.log --bogus` prints the merge usage, not the top-level one, and exits 2."""
    with pytest.raises(SystemExit) as exc:
        main(["merge", "app.log", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: safelog merge ") and "--backup-count" in err
    assert err.splitlines()[-1] == "safelog merge: error: unrecognized arguments: --bogus"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`safelog --version` prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"safelog {safelog.__version__}\n"


def names(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def test_merge_of_a_missing_log_says_so_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in LOGFILE is an error naming the path and the shards it looked for; no lock or state file appears."""
    _make_run(tmp_path, runs=1, n=2)  # app.log's shards: not the log asked for
    before = names(tmp_path)
    assert main(["merge", str(tmp_path / "ap.log")]) == 2
    line = one_error_line(capsys, "merge")
    assert f"no per-process log at {tmp_path / 'ap.log'}: no such file, and no shard ap.log.<host>.<pid>.shard" in line
    assert names(tmp_path) == before


def test_merge_of_a_log_without_shards_says_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A flock log (a plain file, a lock file, no shard) is not merged: the error says only per-process logs have shards."""
    h = safelog.SafeFileHandler(str(tmp_path / "app.log"), strategy="flock")
    h.close()
    before = names(tmp_path)
    assert main(["merge", str(tmp_path / "app.log")]) == 2
    line = one_error_line(capsys, "merge")
    assert "has no shards beside it" in line and "strategy='per-process'" in line
    assert names(tmp_path) == before


def test_merge_of_a_directory_or_a_shard_names_the_path_to_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory (empty or not) or a shard as LOGFILE is an error that says which path to give instead."""
    (tmp_path / "logs").mkdir()
    assert main(["merge", str(tmp_path / "logs")]) == 2
    assert f"is a directory; give the log path the handler was configured with, such as {tmp_path / 'logs' / 'app.log'}" in one_error_line(capsys, "merge")
    _make_run(tmp_path, runs=1, n=2)
    before = names(tmp_path)
    assert main(["merge", str(tmp_path / "app.log.h.100.shard")]) == 2
    assert f"is a shard of the log {tmp_path / 'app.log'}; give that path instead" in one_error_line(capsys, "merge")
    assert names(tmp_path) == before


def test_merge_again_with_nothing_new_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a merge, a re-run that finds no new shard is not an error: the log was merged before (exit 0)."""
    _make_run(tmp_path, runs=1, n=2)
    assert main(["merge", str(tmp_path / "app.log")]) == 0
    assert main(["merge", str(tmp_path / "app.log")]) == 0
    assert "merged 0 records from 0 shard file(s)" in capsys.readouterr().err


def test_the_function_reports_an_absent_log_without_raising(tmp_path: Path) -> None:
    """safelog.merge() of a path with no shards returns a report saying so (merge_on_exit of a process that logged nothing must stay quiet)."""
    report = safelog.merge(tmp_path / "app.log")
    assert report.absent.startswith("no per-process log at") and report.records == 0 and report.ok
    assert names(tmp_path) == []


def test_errors_are_one_line_without_traceback_in_a_real_interpreter(tmp_path: Path) -> None:
    """`python -m safelog demo --processes 0` in a real interpreter: exit 2, one stderr line, no traceback."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "safelog", "demo", "--processes", "0"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["safelog demo: error: --processes must be a whole number from 1 to 64, got '0'"]
