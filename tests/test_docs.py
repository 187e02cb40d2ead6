"""The docs cannot drift from the code: the options table, the fault tests, the README's links."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import safelog
from safelog._policy.config import OPTIONS, UNSET

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of ``text`` as rows of cells (header first, separator dropped)."""
    out: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            out.append(current)
            current = []
    return out


def options_table() -> list[list[str]]:
    found = [t for t in tables((DOCS / "options.md").read_text(encoding="utf-8")) if t[0][0] == "option"]
    assert len(found) == 1, "docs/options.md must hold exactly one table headed 'option'"
    return found[0]


def handler_options() -> dict[str, object]:
    """The option table of the code: every keyword and its default (``UNSET``: none)."""
    return dict(OPTIONS)


def test_the_option_table_is_the_handler_signature() -> None:
    """SafeFileHandler.__init__ takes exactly the keywords of the option table, in its order and
    with its defaults, so that the table (the docs' check, the unknown-option message) cannot drift."""
    sig = inspect.signature(safelog.SafeFileHandler.__init__)
    params = {
        name: p.default for name, p in sig.parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    params["filename"] = UNSET
    assert list(params) == list(OPTIONS)
    differ = {n: (params[n], OPTIONS[n]) for n in OPTIONS if params[n] is not OPTIONS[n] and params[n] != OPTIONS[n]}
    assert differ == {}


def test_options_table_lists_exactly_the_handler_options() -> None:
    """The options table names every keyword SafeFileHandler.__init__ accepts, each once, and nothing else."""
    rows = options_table()[1:]
    documented = [name for row in rows for name in re.findall(r"`([A-Za-z_]+)`", row[0])]
    assert len(documented) == len(set(documented)), f"listed twice: {sorted({n for n in documented if documented.count(n) > 1})}"
    accepted = set(handler_options())
    assert set(documented) == accepted, (
        f"missing from the table: {sorted(accepted - set(documented))}; "
        f"not accepted by the handler: {sorted(set(documented) - accepted)}"
    )


def test_options_table_states_the_literal_defaults_of_the_signature() -> None:
    """Where the signature's default is a plain value (not None), the table's default column says the same."""
    header, *rows = options_table()
    column = header.index("default")
    shown = {}
    for row in rows:
        m = re.fullmatch(r"`([^`]+)`(?: \(.*\))?", row[column])
        for name in re.findall(r"`([A-Za-z_]+)`", row[0]):
            shown[name] = ast.literal_eval(m.group(1)) if m else row[column]
    checked = 0
    for name, default in handler_options().items():
        if isinstance(default, (bool, int, str)):
            assert shown[name] == default, f"{name}: table says {shown[name]!r}, code {default!r}"
            checked += 1
    assert checked >= 5  # mode, delay, interval, utc, the boolean switches


def test_only_one_options_table_in_the_docs() -> None:
    """Every option is described in one place: no other page has a table headed 'option'."""
    others = [
        str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p.name != "options.md"
        for t in tables(p.read_text(encoding="utf-8")) if t[0][0].lower() == "option"
    ]
    assert others == []


def fault_tests() -> dict[str, set[str]]:
    out = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out[path.name] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}
    return out


def test_faults_page_lists_every_fault_test() -> None:
    """docs/faults.md names every test of tests/test_faults_*.py and test_soak.py under its file's heading."""
    text = (DOCS / "faults.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### `tests/(test_\w+\.py)`\n(.*?)(?=^### |\Z)", text, re.M | re.S))
    tests = fault_tests()
    for name in [n for n in tests if n.startswith("test_faults_")] + ["test_soak.py"]:
        assert name in sections, f"docs/faults.md has no section for tests/{name}"
        missing = {t for t in tests[name] if f"`{t}`" not in sections[name]}
        assert not missing, f"docs/faults.md does not list {name}: {sorted(missing)}"


def test_every_test_the_docs_name_exists() -> None:
    """Each `test_file.py::test_name` the docs or the README cite is a test in that file (a `…` prefix is a family of them)."""
    tests = fault_tests()
    cited = 0
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for file, name in re.findall(r"(test_\w+\.py)::(\w+)", text):
            cited += 1
            assert file in tests, f"{page.name} cites {file}, which does not exist"
            assert any(t.startswith(name) for t in tests[file]), f"{page.name} cites {file}::{name}, which does not exist"
    assert cited > 10


def test_readme_links_point_at_files_that_exist() -> None:
    """Every relative link and image in the README names a file of the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert relative, "the README links to its docs"
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert missing == []


def test_readme_keeps_the_two_commands() -> None:
    """The README's demo, test and stdlib-suite commands are the ones .ci/run and the packaging
    check run."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -e . && python -m safelog demo" in text
    assert "pip install -e '.[test]' && python -m pytest" in text
    assert "python tests/stdlib/run.py\n" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]' && run_pytest" in ci
    assert "-m safelog demo" in ci
    assert "python tests/stdlib/run.py " in ci
