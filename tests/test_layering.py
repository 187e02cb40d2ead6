"""The package's layering, read from the source: every import of a sibling module points down.

Layers, top to bottom (a module may import its own layer and any layer below it):

1. shell      ``safelog`` itself, ``_handler`` (with ``_attributes``, ``_rotating``, ``_stream``,
              ``_closed``), ``_dropin``, ``_cli``, ``_demo``, ``_audit``, ``_exitmerge``,
              ``_follow`` (with ``_tail``), ``_doctor`` (with ``_diagnosis``, ``_proc``)
2. delivery   ``_delivery``: rendering, failure bursts, the non-blocking queue
3. sinks      ``_sinks``: one module per strategy and their registry;
   merge      ``_merge``, beside the sinks (neither imports the other): shard format and
              primitives, and the policy layer only to rotate the merged log
4. policy     ``_policy``: the parsed config, rotation, time periods, compression
5. primitives ``_primitives``: locking, file opening, paths, atomic write, fs detection, shard format
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "safelog"

RANK = {"_delivery": 2, "_sinks": 3, "_merge": 3, "_policy": 4, "_primitives": 5}
# Pairs of same-rank layers that must not import each other.
APART = {("_sinks", "_merge"), ("_merge", "_sinks")}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """Every safelog module ``name`` imports anywhere in its source: module level, inside
    functions and under ``if TYPE_CHECKING``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from . import x" and "from .pkg import mod" import modules x and mod; other names
            # are attributes of the module (or package) they come from.
            bases = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for b in bases:
            while b and b not in modules:
                b = b.rpartition(".")[0]
            if b and b != name:
                found.add(b)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else ""


def _rank(module: str) -> int:
    return RANK.get(_layer(module), 1)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    names = set(mods)
    return {m: _imports(m, p, names) for m, p in mods.items()}


def test_the_package_has_the_layers_named_here() -> None:
    """Every layer named in the docstring exists, so the rules below cannot pass vacuously."""
    layers = {_layer(m) for m in _modules()}
    assert set(RANK) <= layers


def test_no_module_imports_a_layer_above_it() -> None:
    """No import goes up the layering (or across between sinks and merge)."""
    bad = []
    for mod, deps in _graph().items():
        for dep in deps:
            if _rank(dep) < _rank(mod) or (_layer(mod), _layer(dep)) in APART:
                bad.append(f"{mod} imports {dep}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    """The module import graph (all imports, including deferred ones) has no cycle."""
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d.startswith(m + "."):
                continue  # a package re-exporting its own submodule
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d) :] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from .._sinks.strategy import Strategy", {"safelog._sinks.strategy"}),
        ("from .. import _handler", {"safelog._handler"}),
        ("def f():\n    from .._policy import config", {"safelog._policy.config"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .._handler import X", {"safelog._handler"}),
    ],
)
def test_the_import_reader_sees_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    """The reader counts relative, deferred and TYPE_CHECKING imports, so none escapes the rules."""
    f = tmp_path / "mod.py"
    f.write_text(source)
    names = {"safelog", "safelog._sinks.strategy", "safelog._handler", "safelog._policy.config", "safelog._policy", "safelog._sinks"}
    assert _imports("safelog._delivery.mod", f, names) == expected


def test_no_module_or_function_is_too_long() -> None:
    """No module of the package is over 500 lines and no function over 80, so that each stays
    readable in one sitting."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > 500:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    assert not too_long
