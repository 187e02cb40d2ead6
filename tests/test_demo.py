"""The demo command: stdlib, concurrent-log-handler and every strategy, audited, in one table."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import safelog._demo
from safelog import AuditReport
from safelog._cli import main

LABEL_WIDTH = 26  # the table's first column
LABELS = ["stdlib RotatingFileHandler", "concurrent-log-handler", "safelog flock", "safelog per-process", "safelog thread"]
SAFELOG_ROWS = ["safelog flock", "safelog per-process", "safelog thread"]
SMALL = ["--processes", "2", "--threads", "2", "--records", "300", "--max-bytes", "16 KB"]
MERGED_OK = re.compile(r"time-ordered log in [\d.]+ s: 1,200 records; audit OK \(0 lost, 0 dup, 0 torn\)")


def table(out: str) -> dict[str, list[str]]:
    """The table's rows by label, in the order printed, each as the list of its other cells
    (files, records, lost, dup, torn, rec/s, audit)."""
    rows = {}
    for line in out.splitlines():
        cells = line[LABEL_WIDTH:].split()
        if line[:LABEL_WIDTH].strip() in LABELS and len(cells) == 7 and cells[0].isdigit():
            rows[line[:LABEL_WIDTH].strip()] = cells
    return rows


def test_demo_compares_stdlib_and_peer_with_every_strategy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table has the stdlib, concurrent-log-handler and every safelog row, each safelog audit passes, and it fits 80 columns."""
    rc = main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = table(out)
    assert list(rows) == LABELS, out
    for label in ["concurrent-log-handler", *SAFELOG_ROWS]:
        assert rows[label][-1] == "OK", out
        assert rows[label][2:5] == ["0", "0", "0"], out  # lost, dup, torn
    assert MERGED_OK.search(out), out
    assert all(float(cells[-2].replace(",", "")) > 0 for cells in rows.values()), out  # records/s
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80, out
    # rotation really happened, for the stdlib handler and for safelog
    assert (tmp_path / "stdlib-rotating" / "app.log.1").exists()
    assert (tmp_path / "flock" / "app.log.1").exists()


def test_stdlib_losses_are_counted_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stdlib row's records and lost columns match an independent count of the ids in the files it left."""
    rc = main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"])
    out = capsys.readouterr().out
    assert rc == 0, out
    cells = table(out)["stdlib RotatingFileHandler"]
    files, found, lost = (int(c.replace(",", "")) for c in cells[0:3])
    paths = sorted((tmp_path / "stdlib-rotating").glob("app.log*"))
    ids = [m.group(1) for p in paths for m in re.finditer(r" id=(\d+-\d+-\d+) ", p.read_text())]
    expected = {f"{w}-{t}-{i}" for w in range(2) for t in range(2) for i in range(300)}
    assert (files, found, lost) == (len(paths), len(ids), len(expected - set(ids))), out
    verdict = "OK" if lost == 0 and len(ids) == len(set(ids)) else "FAILED"
    assert cells[-1] == verdict, out
    if lost:
        assert f"{lost:,} of 1,200 records lost" in out, out
    else:
        assert "stdlib RotatingFileHandler lost nothing this time" in out, out


def test_demo_tells_where_the_files_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --dir the demo names each handler's log path, and every named path has its files."""
    main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"])
    out = capsys.readouterr().out
    named = [line.strip().rstrip("*") for line in out.splitlines() if line.startswith(f"  {tmp_path}")]
    assert [os.path.basename(os.path.dirname(p)) for p in named] == [
        "stdlib-rotating", "concurrent-log-handler", "thread", "flock", "per-process"
    ], out
    for path in named:
        assert any(f.name.startswith("app.log") for f in Path(path).parent.iterdir()), path


def test_without_dir_the_files_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --dir the demo works in a temporary directory and removes it afterwards."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert main(["demo", *SMALL, "--start-method", "fork"]) == 0
    assert "--dir DIR keeps them" in capsys.readouterr().out
    assert [p for p in tmp_path.iterdir() if p.name.startswith("safelog-demo-")] == []


def test_demo_skips_concurrent_log_handler_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without concurrent-log-handler installed its row is left out, with a note saying how to add it."""
    monkeypatch.setitem(sys.modules, "concurrent_log_handler", None)  # import raises ImportError
    rc = main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert list(table(out)) == [label for label in LABELS if label != "concurrent-log-handler"], out
    assert "concurrent-log-handler is not installed: its row is skipped. To add it:" in out
    assert "  pip install concurrent-log-handler, then run the demo again" in out


def test_a_failed_safelog_audit_fails_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A lost record in a safelog row makes the demo exit 1; losses of the stdlib row alone do not."""
    real = safelog._demo.audit

    def lose_one_of_flock(files: list[str], expected: list[str], pattern: str) -> AuditReport:
        report = real(files, expected, pattern)
        if any(os.sep + "flock" + os.sep in f for f in files):
            report.lost.append("0-0-0")
        return report

    monkeypatch.setattr(safelog._demo, "audit", lose_one_of_flock)
    rc = main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert table(out)["safelog flock"][-1] == "FAILED", out
    assert out.splitlines()[-1] == "Exit status 1: safelog flock failed the audit.", out


def test_demo_runs_as_a_module_with_spawned_children(tmp_path: Path) -> None:
    """`python -m safelog demo` works from a fresh interpreter with spawn children and exits 0."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", "safelog", "demo", "--dir", str(tmp_path), "--processes", "2",
         "--records", "200", "--start-method", "spawn"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert all(rows[label][-1] == "OK" for label in SAFELOG_ROWS), proc.stdout
    assert "audit OK (0 lost, 0 dup, 0 torn)" in proc.stdout


class SecondOneFails(logging.FileHandler):
    """A handler whose construction succeeds in the first process and fails in the second."""

    def __init__(self, filename: str) -> None:
        os.close(os.open(filename + ".first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # FileExistsError the second time
        super().__init__(filename)


def test_a_child_that_cannot_configure_fails_its_row_instead_of_hanging(tmp_path: Path) -> None:
    """A child that dies before logging fails the row at once: its peer, left waiting at the barrier, is stopped instead of waited for."""
    row = safelog._demo.Row("broken", "broken", {"class": f"{__name__}.SecondOneFails"}, 2, True)
    started = time.monotonic()
    result = safelog._demo.run_one(str(tmp_path), row, threads=1, records=10, method="fork")
    assert time.monotonic() - started < 30  # the peer's barrier would wait 120 s
    assert not result.report.ok
    assert any("child exit codes" in m[2] for m in result.report.malformed), result.report.malformed
    assert len(result.report.lost) == 20


def test_notes_fit_80_columns_at_their_widest() -> None:
    """The notes under the table stay within 80 columns with a large loss, many emit() errors and no concurrent-log-handler."""
    rows = safelog._demo.rows(64, 256_000, 10, clh=True)
    report = AuditReport(files=10, records=1, lost=[str(i) for i in range(9_999_999)])
    results = [safelog._demo.Result(row, report, 10_000_000, 1.0, 9_999_999) for row in rows if not row.safelog]
    notes = safelog._demo._notes(results, clh=False)
    assert len(notes) == 3 + 2 + 2  # loss, errors, reason (stdlib); loss, errors (peer); skipped, how to add
    assert max(len(line) for line in notes) <= 80, notes


def test_a_lucky_stdlib_run_is_explained_within_80_columns() -> None:
    """When the stdlib handler happened to lose nothing, the demo says why and what to try, in 80 columns."""
    (row,) = [r for r in safelog._demo.rows(4, 65_536, 10, clh=True) if r.key == "stdlib-rotating"]
    notes = safelog._demo._notes([safelog._demo.Result(row, AuditReport(files=3, records=8), 8, 1.0, 0)], clh=True)
    assert notes[0].startswith("stdlib RotatingFileHandler lost nothing this time"), notes
    assert max(len(line) for line in notes) <= 80, notes


def test_the_table_groups_comparable_rows_and_explains_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rows sharing one file across processes form one table; thread (one process) and the
    merge (which logs nothing, so has no records/s) stand apart; a legend says what each column
    means and why the file counts differ; the last line says what the exit status means."""
    assert main(["demo", "--dir", str(tmp_path), *SMALL, "--start-method", "fork"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = lines.index(safelog._demo.HEAD)
    assert lines[head - 1] == "2 processes x 2 threads share one log (1,200 records):"
    shared = lines[head + 2: lines.index("", head)]
    assert [line[:LABEL_WIDTH].strip() for line in shared] == LABELS[:4], out
    thread = lines.index("1 process x 2 threads (600 records): thread is for the threads of one process")
    assert lines[thread + 1].startswith("safelog thread "), out
    merge = next(i for i, line in enumerate(lines) if line.startswith("safelog merge joined the "))
    assert merge > thread and MERGED_OK.fullmatch(lines[merge + 1]), out
    for column in ("files ", "records ", "torn ", "rec/s ", "audit "):
        assert any(line.startswith(column) for line in lines), column
    assert "flock rotates before a file's last 16 KiB" in out
    assert lines[-2:] == [
        "Exit status 0: every safelog row passed the audit (the other rows are there",
        "to compare with: what they lose does not change it).",
    ]
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80, out
