"""The core's modules import each other without circles, and each imports on its own.

An import circle works until someone imports the modules in another order; this test reads
every ``import`` of the core (function-level ones included: they run too) and fails on any
circle, naming it. Importing ``a.b.c`` runs ``a.b``'s ``__init__`` first, so a submodule
import counts as an import of its packages as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "pyimgano-core" / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((CORE / "pyimgano").rglob("*.py")):
        parts = list(path.relative_to(CORE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                while target.startswith("pyimgano."):  # the module and the packages above it
                    if target in modules and target != name and not name.startswith(target + "."):
                        deps.add(target)
                    target = target.rpartition(".")[0]
        graph[name] = deps
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_core_has_no_import_circles():
    circles = _circles(_graph(_modules()))
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_check_finds_a_circle():
    graph = {"pyimgano.a": {"pyimgano.b"}, "pyimgano.b": {"pyimgano.c"}, "pyimgano.c": {"pyimgano.a"},
             "pyimgano.d": {"pyimgano.a"}}
    assert _circles(graph) == [["pyimgano.a", "pyimgano.b", "pyimgano.c"]]


@pytest.mark.parametrize("module", ["pyimgano.listing", "pyimgano.plugins", "pyimgano.pipeline.fewshot",
                                    "pyimgano.pipeline.settings", "pyimgano.benchmark.results",
                                    "pyimgano.benchmark.metric_set", "pyimgano.benchmark.few_shot",
                                    "pyimgano.detector"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
