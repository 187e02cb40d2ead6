"""Read the JUnit reports the pytest runs of .ci/run write.

    python .ci/reports.py check REPORT [--no-skips]   # fail on a run that ran nothing (or skipped)
    python .ci/reports.py summary DIR                 # one closing line over every report in DIR
    python .ci/reports.py stdlib DIR                  # the table of tests/stdlib/run.py's runs in DIR
"""

from __future__ import annotations

import glob
import json
import os
import sys
import xml.etree.ElementTree as ET


def counts(path: str) -> dict[str, int]:
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in out:
            out[key] += int(suite.get(key, "0"))
    return out


def check(path: str, no_skips: bool) -> int:
    c = counts(path)
    name = os.path.splitext(os.path.basename(path))[0]
    if c["tests"] - c["skipped"] <= 0:
        print(f"error: {name}: no test ran ({c['tests']} collected, {c['skipped']} skipped)", file=sys.stderr)
        return 1
    if no_skips and c["skipped"]:
        print(f"error: {name}: {c['skipped']} test(s) skipped; this run must run them all", file=sys.stderr)
        return 1
    return 0


def summary(directory: str) -> int:
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    reports = sorted(glob.glob(os.path.join(directory, "*.xml")))
    for path in reports:
        for key, n in counts(path).items():
            total[key] += n
    failed = total["failures"] + total["errors"]
    passed = total["tests"] - failed - total["skipped"]
    print(f"{len(reports)} pytest runs:")
    print(f"ci: {passed} passed, {failed} failed, {total['skipped']} skipped")
    return 1 if failed or not reports else 0


def stdlib_table(directory: str) -> int:
    """One row per CPython of CPython's test_logging against the drop-ins (stdlib-*.json)."""
    rows = []
    for path in glob.glob(os.path.join(directory, "stdlib-*.json")):
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        s = run["summary"]
        classes = [s["classes"][c] for c in ("RotatingFileHandlerTest", "TimedRotatingFileHandlerTest")]
        passed, total = sum(c["passed"] for c in classes), sum(c["total"] for c in classes)
        version = tuple(int(p) for p in run["python"].split(".")[:3] if p.isdigit())
        rows.append((version, f"| {run['python']} | {passed} of {total} | {len(s['regressions'])} | "
                              f"{len(s['deliberate'])} | {len(s['fail_on_stdlib'])} |"))  # fmt: skip
    print("| CPython | Rotating+TimedRotating tests passed | regressions | listed | fail on the stdlib too |")
    print("| --- | --- | --- | --- | --- |")
    for _, row in sorted(rows):
        print(row)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "check":
        return check(argv[1], "--no-skips" in argv[2:])
    if len(argv) == 2 and argv[0] == "summary":
        return summary(argv[1])
    if len(argv) == 2 and argv[0] == "stdlib":
        return stdlib_table(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
