"""Render the queue benchmark table as a PNG for the README.

    pip install 'safelog[chart]'        # matplotlib
    python benchmarks/chart.py benchmarks/results/queue.json -o docs/benchmarks.png

Three panels from ``benchmarks/queue_bench.py`` results: caller-side cost per record as wall
time and as the calling thread's CPU time (1 process × 1 thread, lower is better) and throughput (4 processes × 2 threads, higher is better),
sync and queue mode side by side for every strategy, with the figures printed on the bars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def render(results: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
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
    for ax, (case, key, title, fmt) in zip(axes, panels):
        for j, (mode, color) in enumerate((("sync", "#9aa5b1"), ("queue", "#2f7ed8"))):
            xs, ys = [], []
            for i, s in enumerate(strategies):
                row = by.get((case, s, mode))
                if row is not None:
                    xs.append(i + (j - 0.5) * width)
                    ys.append(row[key])
            bars = ax.bar(xs, ys, width, label=f"{mode}", color=color)
            for bar, y in zip(bars, ys):
                ax.annotate(fmt.format(y), (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(strategies)))
        ax.set_xticklabels(strategies)
        ax.set_title(title, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=9)
    fig.suptitle(
        f"safelog non-blocking mode vs synchronous writes — Python {meta['python']}, {meta['cpus']} CPUs, "
        f"median of {meta['reps']} runs, {meta['records']:,} records, exact audits clean"
        if all(r["lost"] == r["duplicated"] == r["malformed"] == 0 for r in rows)
        else f"safelog non-blocking mode vs synchronous writes — Python {meta['python']} (audit found problems: see JSON)",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON written by benchmarks/queue_bench.py")
    p.add_argument("-o", "--out", default="docs/benchmarks.png", help="PNG to write (default docs/benchmarks.png)")
    args = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("chart.py needs matplotlib: pip install 'safelog[chart]'", file=sys.stderr)
        return 2
    with open(args.results, encoding="utf-8") as f:
        render(json.load(f), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
