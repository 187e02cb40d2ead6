"""Every Python snippet of the README and the docs runs as written.

A ```python block is run in a fresh interpreter in an empty directory. An HTML comment on the
line before it can say otherwise, and only these:

- ``<!-- snippet: fragment (why) -->``: not a whole program (one entry of a dict, say); not run;
- ``<!-- snippet: python>=3.12 -->``: run on Python 3.12 and newer only;
- ``<!-- snippet: needs MODULE -->``: run where MODULE can be imported.

A block that only includes a file of ``config-examples/`` (``--8<-- "path"``) must compile; the
integration suite runs those files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^(?:<!-- snippet: (?P<mark>.*?) -->\n)?```python\n(?P<code>.*?)^```", re.M | re.S)
MARK = re.compile(r"fragment \(.+\)|python>=3\.(?P<minor>\d+)|needs (?P<module>[\w.]+)")
INCLUDE = re.compile(r'--8<-- "(?P<path>[^"]+)"\n')


def snippets() -> list[tuple[str, str | None, str]]:
    """(page:line, mark, code) for every Python block of every page."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("code"))
            out.append((f"{page.relative_to(ROOT)}:{line}", m.group("mark"), m.group("code")))
    return out


SNIPPETS = snippets()


def test_every_python_block_is_found_and_marked_correctly() -> None:
    """The test sees every ```python block of the pages (none hidden by a stray marker), and every marker is one it knows."""
    blocks = sum(page.read_text(encoding="utf-8").count("```python\n") for page in PAGES)
    assert len(SNIPPETS) == blocks >= 15
    for where, mark, _ in SNIPPETS:
        assert mark is None or MARK.fullmatch(mark), f"{where}: unknown snippet marker {mark!r}"
    fragments = [where for where, mark, _ in SNIPPETS if mark and mark.startswith("fragment")]
    assert len(fragments) <= 2, f"make these whole programs instead: {fragments}"


@pytest.mark.parametrize(("where", "mark", "code"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet_runs(where: str, mark: str | None, code: str, tmp_path: Path) -> None:
    """The snippet runs without error in a fresh interpreter (or, if it includes an example file, that file compiles)."""
    m = MARK.fullmatch(mark or "")
    if m and mark and mark.startswith("fragment"):
        pytest.skip(f"{where}: {mark}")
    if m and m.group("minor") and sys.version_info < (3, int(m.group("minor"))):
        pytest.skip(f"{where}: needs Python 3.{m.group('minor')}+")
    if m and m.group("module"):
        pytest.importorskip(m.group("module"))
    include = INCLUDE.fullmatch(code)
    if include:
        path = ROOT / include.group("path")
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, f"{where} printed an error:\n{proc.stderr}"
