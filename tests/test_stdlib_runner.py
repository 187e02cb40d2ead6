"""The CPython-suite gate (tests/stdlib/run.py) fails on a regression and swaps the right classes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

RUN = Path(__file__).parent / "stdlib" / "run.py"


def _runner() -> Any:
    spec = importlib.util.spec_from_file_location("stdlib_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcomes(**tests: str) -> dict[str, dict[str, str]]:
    return {name.replace("__", "."): {"outcome": outcome, "detail": ""} for name, outcome in tests.items()}


def test_a_test_the_stdlib_passes_and_safelog_fails_is_a_regression_unless_listed() -> None:
    """Only a test passing on the stdlib and failing (or skipped, or missing) on safelog counts,
    and not when it is listed; one failing on the stdlib too is reported apart."""
    run = _runner()
    stdlib = _outcomes(
        A__test_ok="ok", A__test_broken="ok", A__test_listed="ok", A__test_both="failure",
        A__test_skipped="ok", A__test_missing="ok", A__test_stale="ok",
    )  # fmt: skip
    ours = _outcomes(
        A__test_ok="ok", A__test_broken="failure", A__test_listed="error", A__test_both="failure",
        A__test_skipped="skipped", A__test_stale="ok",
    )  # fmt: skip
    result = run.compare(stdlib, ours, {"A.test_listed": "why", "A.test_stale": "why"})
    assert result["regressions"] == ["A.test_broken", "A.test_missing", "A.test_skipped"]
    assert result["deliberate"] == ["A.test_listed"]
    assert result["fail_on_stdlib"] == ["A.test_both"]
    assert result["listed_but_passing"] == ["A.test_stale"]


def test_the_swap_puts_the_drop_ins_where_logging_and_its_config_look() -> None:
    """After the swap, the names test_logging, basicConfig and dictConfig resolve are safelog's."""
    code = textwrap.dedent(
        f"""
        import importlib.util, logging, logging.config, logging.handlers, safelog
        spec = importlib.util.spec_from_file_location("stdlib_run", {str(RUN)!r})
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
        run.swap()
        assert logging.FileHandler is safelog.FileHandler
        for name in ("WatchedFileHandler", "RotatingFileHandler", "TimedRotatingFileHandler"):
            assert getattr(logging.handlers, name) is getattr(safelog, name), name
        assert logging.config._resolve("logging.handlers.RotatingFileHandler") is safelog.RotatingFileHandler
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_deliberate_difference_is_explained_in_the_docs() -> None:
    """Each test tests/stdlib/deliberate.py lets safelog fail is named, with its reason, in the
    docs' deliberate differences, and the swap's own artifact is named there too."""
    spec = importlib.util.spec_from_file_location("stdlib_deliberate", RUN.parent / "deliberate.py")
    assert spec is not None and spec.loader is not None
    deliberate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deliberate)
    docs = (RUN.parents[2] / "docs" / "options.md").read_text(encoding="utf-8")
    section = docs[docs.index("### Deliberate differences") :]
    section = section[: section.index("\n### ", 1)]
    for test in [*deliberate.DELIBERATE, *deliberate.SWAP]:
        assert f"`{test}`" in section, test
    assert all(reason.strip() for reason in {**deliberate.DELIBERATE, **deliberate.SWAP}.values())
