"""The figures pipeline: a throughput.py run's JSON becomes the README's paragraph, the tables and the chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import chart  # noqa: E402 - benchmarks/chart.py

PAGE = """before
<!-- throughput-summary -->
old figures
<!-- /throughput-summary -->
middle
<!-- throughput-ratios -->
<!-- /throughput-ratios -->
<!-- throughput-tables -->
<!-- /throughput-tables -->
after
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSON of a tiny real throughput.py run (one repetition, three rows, two cases)."""
    out = tmp_path_factory.mktemp("bench") / "throughput.json"
    subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--reps", "1", "--records", "400", "--cases", "1x1,2x2",
         "--rows", "stdlib_file,stdlib_rotating,safelog_flock", "--out", str(out), "--markdown"],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    return out


def test_update_rewrites_only_the_marked_blocks(result: Path, tmp_path: Path) -> None:
    """--update replaces the summary, the ratios table (a column per case) and the full tables between
    their markers and leaves the rest of the page alone."""
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    assert chart.main([str(result), "--no-chart", "--update", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "old figures" not in text
    assert [line for line in text.splitlines() if line in ("before", "middle", "after")] == ["before", "middle", "after"]
    summary = text.split("<!-- throughput-summary -->\n")[1].split("<!-- /throughput-summary -->")[0]
    tables = text.split("<!-- throughput-tables -->\n")[1].split("<!-- /throughput-tables -->")[0]
    assert summary.startswith("2 processes × 2 threads sharing one log with 1 MB rotation:")
    assert "of 400 records" in summary and "safelog `flock` ran at" in summary
    assert "| stdlib FileHandler (no rotation) |" in tables and "**1 process × 1 thread**" in tables
    ratios = text.split("<!-- throughput-ratios -->\n")[1].split("<!-- /throughput-ratios -->")[0]
    head, rule, *rows = ratios.split("\n\n")[0].splitlines()
    assert head == "| handler | 1 × 1 | 2 × 2 | lost, 2 × 2 |", ratios
    assert rows[0].startswith("| stdlib FileHandler (no rotation) | 1.00× | 1.00× |") and len(rows) == 3, ratios
    assert chart.main([str(result), "--no-chart", "--update", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == text  # a second update of the same run changes nothing


def test_every_figure_says_where_it_comes_from(result: Path) -> None:
    """The summary names the command, the date, the CPU model, the Python and the commit of the run."""
    meta = json.loads(result.read_text(encoding="utf-8"))["meta"]
    summary = " ".join(chart.summary_text(json.loads(result.read_text(encoding="utf-8"))).split())
    for fact in (meta["command"], meta["date"][:10], meta["cpu_model"], meta["python"], meta["commit"]):
        assert fact in summary, fact


def test_stdlib_losses_are_the_worst_run(result: Path) -> None:
    """The stdlib handler's loss in the summary is the worst repetition's exact count, out of the records of a run."""
    data = json.loads(result.read_text(encoding="utf-8"))
    data["runs"] = [dict(r, lost=17) if r["row"] == "stdlib_rotating" and r["case"] == "2x2" else r for r in data["runs"]]
    text = " ".join(chart.summary_text(data).split())
    assert "lost up to 17 of 400 records (4%; records were lost in 1 of 1 runs)" in text


def test_update_fails_on_a_page_without_markers(result: Path, tmp_path: Path) -> None:
    """A file given to --update that has no marked block is an error, not a silent no-op."""
    page = tmp_path / "plain.md"
    page.write_text("no markers here\n", encoding="utf-8")
    assert chart.main([str(result), "--no-chart", "--update", str(page)]) == 1


def test_chart_is_a_png(result: Path, tmp_path: Path) -> None:
    """With matplotlib installed the chart is drawn as a PNG file."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert chart.main([str(result), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_breakdown_names_every_part_and_splits_a_record() -> None:
    """benchmarks/breakdown.py measures each part of a record and splits a flock record and a
    FileHandler record into them (a tiny run: the figures are not judged, only that every part
    is measured and the split adds up)."""
    out = subprocess.run(
        [sys.executable, "benchmarks/breakdown.py", "--slices", "1", "--calls", "200"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    parts = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].replace(".", "").isdigit():
            parts[cells[0]] = float(cells[1])
    assert set(parts) == {
        "record", "Formatter.format", "fast format", "flock SH+UN", "lseek", "os.write",
        "FileHandler", "safelog flock", "safelog thread", "safelog per-process",
    }, out
    assert all(v > 0 for v in parts.values()), parts
    split = next(line for line in out.splitlines() if line.startswith("safelog flock = "))
    numbers = [float(w) for w in split.replace("(", " ").split() if w.replace(".", "").replace("-", "").isdigit()]
    record, fmt, syscalls, own = numbers[0], numbers[1], numbers[2], numbers[-1]
    assert abs(record + fmt + syscalls + own - parts["safelog flock"]) <= 0.03, (split, parts)
