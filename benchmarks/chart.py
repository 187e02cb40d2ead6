"""Turn a benchmark's JSON result into the charts and figures the README and the docs show.

    pip install 'safelog-handlers[chart]'                                   # matplotlib
    python benchmarks/throughput.py                                # writes benchmarks/results/throughput.json
    python benchmarks/chart.py benchmarks/results/throughput.json --update README.md docs/index.md docs/benchmarks.md benchmarks/README.md

From a ``throughput.py`` result it draws ``docs/img/throughput.png`` (records lost by each
rotating handler shared by several processes, and records/s against the stdlib
``FileHandler``), and with ``--update`` rewrites the marked blocks of the given Markdown files:
``<!-- throughput-summary -->`` (one paragraph of figures, for the README and the docs' home
page), ``<!-- throughput-ratios -->`` (one table of records/s against the stdlib
``FileHandler`` per case, narrow enough for the docs page) and ``<!-- throughput-tables -->``
(the full tables, for ``benchmarks/README.md``), each closed by ``<!-- /NAME -->``. Every figure
comes with the command, date, CPU model and Python of the run.

From a ``queue_bench.py`` result it draws the queue-mode chart (``-o`` to choose the file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
THROUGHPUT_PNG = os.path.join(REPO, "docs", "img", "throughput.png")
QUEUE_PNG = os.path.join(REPO, "docs", "img", "queue.png")

# Rows of the picture, in order: the rotating handlers people choose between, and the
# unrotated stdlib FileHandler every ratio is taken against.
LOSS_ROWS = ["stdlib_rotating", "clh", "safelog_flock", "safelog_per_process"]
RATE_ROWS = ["stdlib_file", "stdlib_rotating", "clh", "safelog_flock", "safelog_per_process"]
SAFE_COLOR, UNSAFE_COLOR, BASE_COLOR, PEER_COLOR = "#2f7ed8", "#d9534f", "#9aa5b1", "#f0ad4e"


# -- the figures, from the JSON (no matplotlib needed) -------------------------------------------


def _case_key(case: str) -> tuple[int, int]:
    procs, threads = (int(n) for n in case.split("x"))
    return procs, threads


def _case_title(case: str) -> str:
    procs, threads = _case_key(case)
    return f"{procs} process{'es' if procs > 1 else ''} × {threads} thread{'s' if threads > 1 else ''}"


def multi_case(result: dict[str, Any]) -> str:
    """The case with the most processes (then threads): where rotation races lose records."""
    return max(result["summary"], key=_case_key)


def rows_by_key(result: dict[str, Any], case: str) -> dict[str, dict[str, Any]]:
    return {row["row"]: row for row in result["summary"][case]}


def lost_records(result: dict[str, Any], case: str, key: str) -> list[int]:
    """Records lost by ``key`` in each repetition of ``case``."""
    return [run["lost"] for run in result["runs"] if run["row"] == key and run["case"] == case]


def records_per_run(result: dict[str, Any], case: str) -> int:
    return int(next(run["records"] for run in result["runs"] if run["case"] == case))


def caption(meta: dict[str, Any]) -> str:
    """Where the figures come from: command, date, CPU model, Python, repetitions."""
    return (
        f"`{meta['command']}`, {meta.get('date', '?')[:10]}, {meta['cpus']} × "
        f"{meta.get('cpu_model', 'CPU model not recorded')}, Python {meta['python']}, "
        f"medians of {meta['reps']} repetitions of {meta['records']:,} records, safelog {meta['commit']}"
    )


def summary_text(result: dict[str, Any]) -> str:
    """One paragraph of the run's headline figures, as ratios and medians."""
    meta = result["meta"]
    case = multi_case(result)
    by = rows_by_key(result, case)
    mb = meta["max_bytes"] / (1024 * 1024)
    rotation = f"{mb:g} MB" if mb >= 1 else f"{meta['max_bytes'] // 1024} KiB"
    parts = [f"{_case_title(case)} sharing one log with {rotation} rotation:"]
    if "stdlib_rotating" in by:
        lost = lost_records(result, case, "stdlib_rotating")
        total = records_per_run(result, case)
        lossy = sum(1 for n in lost if n)
        if lossy:
            parts.append(
                f"the stdlib `RotatingFileHandler` lost up to {max(lost):,} of {total:,} records "
                f"({100 * max(lost) / total:.0f}%; records were lost in {lossy} of {len(lost)} runs);"
            )
        else:
            # Its loss needs two processes' rotations to interleave badly: with few rotations per
            # run it can miss. Say so rather than print a bare zero.
            parts.append(
                f"the stdlib `RotatingFileHandler` lost no record in these {len(lost)} runs of {total:,} "
                "(its losses need rotations of two processes to interleave, which few rotations per run "
                "can miss; `python -m safelog demo` rotates more often);"
            )
    safe = [k for k in ("safelog_flock", "safelog_per_process") if k in by]
    if safe:
        names = " and ".join(f"`{by[k]['label'].removeprefix('safelog ')}`" for k in safe)
        clean = all(by[k]["lost"] == by[k]["duplicated"] == by[k]["malformed"] == by[k]["unexpected"] == 0
                    for k in safe)
        parts.append(f"safelog {names} lost none, duplicated none, tore none." if clean else
                     f"the audit of safelog {names} found problems: see the tables.")
    if "safelog_flock" in by:
        flock = by["safelog_flock"]["median_rate"]
        ratios = [f"{flock / by['stdlib_file']['median_rate']:.2f}× the records/s of the stdlib `FileHandler` "
                  "without rotation"]
        if "clh" in by:
            ratios.append(f"{flock / by['clh']['median_rate']:.1f}× concurrent-log-handler")
        parts.append(f"safelog `flock` ran at {' and '.join(ratios)}.")
    parts.append(f"({caption(meta)}.)")
    return _wrap(" ".join(parts))


def tables_text(result: dict[str, Any]) -> str:
    """The full tables of the run, as throughput.py prints them."""
    sys.path.insert(0, HERE)
    import throughput  # beside this script

    summary = {case: [throughput.Summary(**row) for row in rows] for case, rows in result["summary"].items()}
    checks = []
    for t in result.get("targets", []):
        op, goal = t["goal"].split()
        checks.append((t["target"], t["measured"], op, float(goal), t["met"]))
    return throughput.markdown(summary, result["meta"], checks).rstrip("\n")


def ratios_text(result: dict[str, Any]) -> str:
    """One table a reader can take in: records/s ÷ the stdlib FileHandler, a column per case,
    and the records each handler lost in the multi-process case (worst repetition)."""
    cases = sorted(result["summary"], key=_case_key)
    multi = multi_case(result)
    total = records_per_run(result, multi)
    head = ["handler", *(c.replace("x", " × ") for c in cases), f"lost, {multi.replace('x', ' × ')}"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for key in RATE_ROWS:
        cells = []
        label = None
        for c in cases:
            by = rows_by_key(result, c)
            if key in by:
                label = by[key]["label"]
                cells.append(f"{by[key]['median_rate'] / by['stdlib_file']['median_rate']:.2f}×")
            else:
                cells.append("")
        if label is None:
            continue
        lost = lost_records(result, multi, key)
        cells.append(f"{max(lost):,}" if lost else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\nColumns: processes × threads. Each cell is the handler's records/s ÷ the stdlib `FileHandler` "
        f"(no rotation) in the same run, medians of {result['meta']['reps']}; lost: records lost of "
        f"{total:,}, worst repetition, from an exact audit of every file. "
        f"({caption(result['meta'])}.)"
    )


def _wrap(text: str, width: int = 96) -> str:
    """Fill ``text`` to ``width`` columns, never breaking inside a `code span`."""
    nbsp = "\u00a0"
    text = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", nbsp), text)
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line]).replace(nbsp, " ")


def update_blocks(path: str, blocks: dict[str, str]) -> list[str]:
    """Replace the text between ``<!-- NAME -->`` and ``<!-- /NAME -->`` for each block found."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    done = []
    for name, body in blocks.items():
        rx = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)", re.S)
        text, n = rx.subn(lambda m, body=body: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)
        if n:
            done.append(name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return done


# -- the pictures ---------------------------------------------------------------------------------


def render_throughput(result: dict[str, Any], out: str) -> None:
    """Two panels, the multi-process case only, sized to be read at the docs' column width
    (about 800 px): records lost, and records/s against the stdlib FileHandler."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    meta = result["meta"]
    case = multi_case(result)
    by = rows_by_key(result, case)
    fig, (lost_ax, rate_ax) = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    keys = [k for k in LOSS_ROWS if k in by]
    # Short labels: the chart is read at about its own width. The caption names the versions.
    labels = [re.sub(r" \d[\d.]*$", "", by[k]["label"]).replace("stdlib ", "stdlib\n") for k in keys]
    ys = range(len(keys))

    total = records_per_run(result, case)
    lost = [max(lost_records(result, case, k)) for k in keys]
    bars = lost_ax.barh(ys, lost, color=[UNSAFE_COLOR if n else SAFE_COLOR for n in lost])
    lost_ax.set_xlim(0, max(max(lost), 1) * 2.2)
    for bar, n in zip(bars, lost, strict=True):
        text = f"{n:,.0f} lost ({100 * n / total:.0f}%)" if n else "none lost"
        lost_ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(5, 0),
                         textcoords="offset points", va="center", fontsize=12)
    lost_ax.set_title(f"records lost of {total:,}", fontsize=13)
    lost_ax.set_xticks([])  # the bars carry their numbers
    lost_ax.spines["bottom"].set_visible(False)
    lost_ax.set_yticks(list(ys), labels, fontsize=12)
    lost_ax.invert_yaxis()

    base = by["stdlib_file"]["median_rate"]
    ratios = [by[k]["median_rate"] / base for k in keys]
    bars = rate_ax.barh(ys, ratios, color=[PEER_COLOR if k in ("stdlib_rotating", "clh") else SAFE_COLOR for k in keys])
    rate_ax.axvline(1.0, color=BASE_COLOR, linewidth=1, linestyle="--")
    rate_ax.set_xlim(0, max(max(ratios), 1.0) * 1.35)
    for bar, r in zip(bars, ratios, strict=True):
        rate_ax.annotate(f"{r:.2f}×", (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(5, 0),
                         textcoords="offset points", va="center", fontsize=12)
    rate_ax.set_title("records/s ÷ stdlib FileHandler", fontsize=13)
    for ax in (lost_ax, rate_ax):
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="x", labelsize=10)
    fig.suptitle(f"{_case_title(case)} sharing one log, rotating", fontsize=14, x=0.01, ha="left")
    fig.text(0.01, 0.01, _wrap(caption(meta).replace("`", ""), 100), fontsize=9, color="#555555")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def render_queue(results: dict[str, Any], out: str) -> None:
    """Three panels from ``queue_bench.py``: caller cost (wall, CPU; 1 × 1) and 4 × 2 throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    meta = results["meta"]
    strategies = [s for s in ("thread", "flock", "per-process") if any(r["strategy"] == s for r in rows)]
    by = {(r["case"], r["strategy"], r["mode"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [
        ("1x1", "caller_wall_us", "caller wall time, µs/record (1×1, lower is better)", "{:.1f}"),
        ("1x1", "caller_cpu_us", "caller thread CPU, µs/record (1×1, lower is better)", "{:.1f}"),
        ("4x2", "rate", "throughput, records/s (4×2, higher is better)", "{:,.0f}"),
    ]
    width = 0.38
    for ax, (case, key, title, fmt) in zip(axes, panels, strict=False):
        for j, (mode, color) in enumerate((("sync", BASE_COLOR), ("queue", SAFE_COLOR))):
            xs, ys = [], []
            for i, s in enumerate(strategies):
                row = by.get((case, s, mode))
                if row is not None:
                    xs.append(i + (j - 0.5) * width)
                    ys.append(row[key])
            bars = ax.bar(xs, ys, width, label=mode, color=color)
            for bar, y in zip(bars, ys, strict=True):
                ax.annotate(fmt.format(y), (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(strategies)), strategies)
        ax.set_title(title, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=9)
    clean = all(r["lost"] == r["duplicated"] == r["malformed"] == 0 for r in rows)
    fig.suptitle(
        f"safelog non-blocking mode vs synchronous writes — Python {meta['python']}, {meta['cpus']} CPUs, "
        f"median of {meta['reps']} runs, {meta['records']:,} records, "
        + ("exact audits clean" if clean else "audit found problems: see JSON"),
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("results", nargs="?", default=os.path.join(HERE, "results", "throughput.json"),
                   help="JSON written by benchmarks/throughput.py or queue_bench.py "
                   "(default benchmarks/results/throughput.json)")
    p.add_argument("-o", "--out", help=f"PNG to write (default {os.path.relpath(THROUGHPUT_PNG, REPO)}, "
                   f"or {os.path.relpath(QUEUE_PNG, REPO)} for a queue_bench result)")
    p.add_argument("--update", nargs="+", default=[], metavar="MARKDOWN",
                   help="rewrite the throughput-summary / -ratios / -tables blocks of these files")
    p.add_argument("--no-chart", action="store_true", help="only --update the text, draw nothing")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        result = json.load(f)
    queue = "rows" in result
    if queue and args.update:
        p.error("--update takes a throughput.py result")
    if not args.no_chart:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("chart.py needs matplotlib to draw: pip install 'safelog-handlers[chart]' (or --no-chart)", file=sys.stderr)
            return 2
        out = args.out or (QUEUE_PNG if queue else THROUGHPUT_PNG)
        (render_queue if queue else render_throughput)(result, out)
        print(f"wrote {os.path.relpath(out)}")
    if args.update:
        blocks = {"throughput-summary": summary_text(result), "throughput-ratios": ratios_text(result),
                  "throughput-tables": tables_text(result)}
        for path in args.update:
            done = update_blocks(path, blocks)
            print(f"updated {path}: {', '.join(done) if done else 'no marked block found'}")
            if not done:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
