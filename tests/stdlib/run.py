"""CPython's own logging tests, run against safelog's drop-ins: the stdlib is the contract.

    python tests/stdlib/run.py [--json FILE]

The running interpreter's ``test.test_logging`` is run twice, at the same time, in two child
processes of this one: once as it is ("stdlib"), once with ``logging.FileHandler`` and
``logging.handlers.{Watched,Rotating,TimedRotating}FileHandler`` replaced by safelog's classes
before the test module is imported ("safelog"). The run fails when a test passes on the stdlib
and not on safelog, unless ``deliberate.py`` lists it with its reason. A test that fails on the
stdlib too is reported, not counted (some multiprocessing tests fail so in containers), and so is
one the swap itself breaks (``deliberate.SWAP``).

The interpreter needs its ``test`` package: pyenv's builds have it; for Debian's,
``debian-python-tests.sh`` adds it. Each child runs in a fresh temporary directory (some tests
write to the current one). ``--json`` writes every outcome and the summary, for tooling.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, TextIO

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# The classes the issue table counts ("handler test classes"), then the other ones that build
# file handlers, each reported on its own line.
HANDLER_CLASSES = ("RotatingFileHandlerTest", "TimedRotatingFileHandlerTest")
OTHER_CLASSES = ("FileHandlerTest", "HandlerTest", "BasicConfigTest", "ConfigFileTest", "ConfigDictTest")

# A test that runs longer than this is taken for hung: the child dumps every thread's stack and
# exits, and the run fails naming the test.
TEST_TIMEOUT = 300.0
# And a whole run (a hang outside a test, in a class or module fixture), after which it is killed.
RUN_TIMEOUT = 1800.0
# Outcomes that count as passing. A skip does not: a test safelog makes skip was not passed.
PASSED = ("ok", "expected-failure")

SWAPS = (
    ("logging", "FileHandler"),
    ("logging.handlers", "WatchedFileHandler"),
    ("logging.handlers", "RotatingFileHandler"),
    ("logging.handlers", "TimedRotatingFileHandler"),
)


# -- the child: one run of the suite ---------------------------------------------------------


def swap() -> None:
    """Put safelog's drop-ins where ``test.test_logging`` (and ``logging.config``,
    ``basicConfig``) will look them up; must run before the test module is imported."""
    import importlib
    import logging.handlers  # noqa: F401 - the module the swap edits

    import safelog

    if "test.test_logging" in sys.modules:
        raise RuntimeError("test.test_logging was imported before the swap")
    for module, name in SWAPS:
        setattr(importlib.import_module(module), name, getattr(safelog, name))


class _Recorder(unittest.TestResult):
    """Writes one JSON line per test as soon as it ends, so a crash loses nothing before it."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out
        self._outcome: dict[str, tuple[str, str]] = {}

    def _set(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        key = test.id()
        # A failing subtest fails the test; the first failure's detail is kept.
        if key not in self._outcome or self._outcome[key][0] in PASSED + ("skipped",):
            self._outcome[key] = (outcome, detail)

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
        self._write({"start": test.id()})

    def stopTest(self, test: unittest.TestCase) -> None:
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        outcome, detail = self._outcome.pop(test.id(), ("ok", ""))
        self._write({"test": test.id(), "outcome": outcome, "detail": detail})

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        detail = self._exc_info_to_string(err, test)
        if isinstance(test, unittest.TestCase):
            self._set(test, "error", detail)
        else:
            # setUpClass/setUpModule failed: unittest reports it on a stand-in, not a test.
            self._write({"test": str(test), "outcome": "error", "detail": detail})

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "failure", self._exc_info_to_string(err, test))

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failure" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest.id()}\n{self._exc_info_to_string(err, test)}")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(test, "skipped", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._set(test, "expected-failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "unexpected-success")

    def _write(self, line: dict[str, str]) -> None:
        self._out.write(json.dumps(line) + "\n")
        self._out.flush()


def child(which: str, out_path: str) -> int:
    if which == "safelog":
        swap()
    from test import test_logging

    suite = unittest.defaultTestLoader.loadTestsFromModule(test_logging)
    with open(out_path, "w", encoding="utf-8") as out:
        suite.run(_Recorder(out))
        out.write(json.dumps({"done": True}) + "\n")
    return 0


# -- the parent: both runs, compared ---------------------------------------------------------


def _read(path: str) -> tuple[dict[str, dict[str, str]], str | None, bool]:
    """Outcomes by short test id, the test that started and never ended (hung or crashed), and
    whether the run reached its end."""
    outcomes: dict[str, dict[str, str]] = {}
    started = None
    done = False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                item = json.loads(line)
                if "start" in item:
                    started = _short(item["start"])
                elif "test" in item:
                    outcomes[_short(item["test"])] = item
                    started = None
                elif item.get("done"):
                    done = True
    except FileNotFoundError:
        pass
    return outcomes, started, done


def _short(test_id: str) -> str:
    return test_id.replace("test.test_logging.", "")


def _class_of(test: str) -> str:
    return test.split(".")[0]


def compare(
    stdlib: dict[str, dict[str, str]], ours: dict[str, dict[str, str]], deliberate: dict[str, str]
) -> dict[str, Any]:
    """Sort every test of the stdlib run: passed on both, a regression, a listed difference,
    failing on the stdlib too."""
    regressions, differences, both_fail, stale = [], [], [], []
    for test, item in sorted(stdlib.items()):
        mine = ours.get(test, {"outcome": "missing", "detail": "not run with safelog's classes"})
        if item["outcome"] not in PASSED:
            if item["outcome"] != "skipped":
                both_fail.append(test)
            continue
        if mine["outcome"] in PASSED:
            if test in deliberate:
                stale.append(test)
            continue
        (differences if test in deliberate else regressions).append(test)
    classes = {}
    for cls in HANDLER_CLASSES + OTHER_CLASSES:
        tests = [t for t in ours if _class_of(t) == cls]
        classes[cls] = {
            "total": len(tests),
            "passed": sum(ours[t]["outcome"] in PASSED for t in tests),
            "stdlib_passed": sum(stdlib.get(t, {}).get("outcome") in PASSED for t in tests),
        }
    return {
        "regressions": regressions,
        "deliberate": differences,
        "fail_on_stdlib": both_fail,
        "listed_but_passing": stale,
        "classes": classes,
        "tests": len(stdlib),
    }


def _load_deliberate() -> dict[str, str]:
    """Every listed test with its reason (a swap artifact's reason says so)."""
    sys.path.insert(0, HERE)
    try:
        from deliberate import DELIBERATE, SWAP
    finally:
        sys.path.remove(HERE)
    return {**DELIBERATE, **{test: "(the swap) " + why for test, why in SWAP.items()}}


def report(result: dict[str, Any], stdlib: dict[str, Any], ours: dict[str, Any], deliberate: dict[str, str]) -> None:
    version = platform.python_version()
    p = print
    c = result["classes"]
    handler_passed = sum(c[k]["passed"] for k in HANDLER_CLASSES)
    handler_total = sum(c[k]["total"] for k in HANDLER_CLASSES)
    p(f"\nCPython {version} test_logging, {result['tests']} tests, stdlib vs safelog's drop-ins")
    for cls in HANDLER_CLASSES + OTHER_CLASSES:
        if c[cls]["total"]:
            p(f"  {cls:30} {c[cls]['passed']:3} of {c[cls]['total']:3} pass with safelog "
              f"({c[cls]['stdlib_passed']} with the stdlib)")  # fmt: skip
    for test in result["regressions"]:
        detail = ours.get(test, {}).get("detail", "").strip().splitlines()
        p(f"  REGRESSION {test}: {detail[-1] if detail else 'not run'}")
    for test in result["deliberate"]:
        p(f"  deliberate {test}: {deliberate[test]}")
    for test in result["fail_on_stdlib"]:
        p(f"  not counted {test}: {stdlib[test]['outcome']} on the stdlib too ({ours.get(test, {}).get('outcome', 'not run')} on safelog)")
    for test in result["listed_but_passing"]:
        p(f"  note: {test} is in deliberate.py but passes here")
    p(f"| {version} | {handler_passed} of {handler_total} | {len(result['regressions'])} |"
      f"  (handler classes Rotating+Timed with safelog; whole-suite regressions)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write every outcome and the summary to this file")
    parser.add_argument("--child", choices=("stdlib", "safelog"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out)

    try:
        import test.test_logging  # noqa: F401 - only checks that it exists; the children run it
    except ImportError as exc:
        print(f"error: {sys.executable} has no test.test_logging ({exc}); pyenv builds ship it, "
              f"debian-python-tests.sh adds it to a Debian build", file=sys.stderr)  # fmt: skip
        return 2
    deliberate = _load_deliberate()
    env = dict(os.environ)
    # safelog from this checkout, in the children and in any process they start.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="stdlib-suite-") as tmp:
        procs = {}
        started = time.monotonic()
        for which in ("stdlib", "safelog"):
            cwd = os.path.join(tmp, which)
            os.mkdir(cwd)
            log = open(os.path.join(tmp, which + ".log"), "wb")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", which, "--out", os.path.join(tmp, which + ".jsonl")]
            procs[which] = (subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        broken = []
        runs = {}
        for which, (proc, log) in procs.items():
            try:
                rc = proc.wait(max(RUN_TIMEOUT - (time.monotonic() - started), 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.close()
            outcomes, hung, done = _read(os.path.join(tmp, which + ".jsonl"))
            runs[which] = outcomes
            if not done:
                with open(os.path.join(tmp, which + ".log"), encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-4000:]
                where = f" in {hung}" if hung else ""
                broken.append(f"the {which} run stopped{where} (exit {rc}) after {len(outcomes)} tests:\n{tail}")
        elapsed = time.monotonic() - started
    result = compare(runs["stdlib"], runs["safelog"], deliberate)
    report(result, runs["stdlib"], runs["safelog"], deliberate)
    print(f"  ({elapsed:.0f} s, both runs at once)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": platform.python_version(), "summary": result, "runs": runs}, f, indent=1)
    sys.stdout.flush()
    for problem in broken:
        print(f"error: {problem}", file=sys.stderr)
    if not runs["stdlib"] or not runs["safelog"]:
        print("error: a run recorded no test", file=sys.stderr)
        return 1
    if broken or result["regressions"]:
        print(f"error: {len(result['regressions'])} test(s) pass on the stdlib and fail on safelog "
              f"(list a deliberate difference in tests/stdlib/deliberate.py, with its reason)"
              if result["regressions"] else "error: a run did not finish", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
