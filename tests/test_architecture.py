"""The package's shape: no import cycles (imports inside functions count), layers point inwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).parent
LIMIT = 600  # lines as ruff formats them (about 1.4x the dense style this limit once counted); a longer module says why


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every pipeline module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline")
        ):
            found.add(node.module)
            for a in node.names:  # "from pipeline.fetch import eog" imports the submodule
                sub = f"{node.module}.{a.name}"
                if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").exists():
                    found.add(sub)
    return found


def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        m: {i for i in _imports(p) if i in modules and i != m} - {"pipeline"}
        for m, p in modules.items()
    }


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n] if n in stack else [m, n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_layers_point_inwards():
    """The core never imports publish/ (only acquire may call the fetch dispatcher); fetch/ never
    imports its own dispatcher back, nor publish/."""
    g = graph()
    for m, deps in g.items():
        if m.startswith("pipeline.publish") or m == "pipeline.cli":
            continue
        assert not {d for d in deps if d.startswith("pipeline.publish")}, m
        if m.startswith("pipeline.fetch."):
            assert "pipeline.fetch" not in deps, m
        elif not m.startswith("pipeline.fetch") and m != "pipeline.acquire":
            assert not {d for d in deps if d.startswith("pipeline.fetch")}, m


def test_long_modules_say_why():
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > LIMIT:
            assert "Longer than" in (ast.get_docstring(ast.parse(text)) or ""), (
                f"{p}: over {LIMIT} lines"
            )


def test_the_graph_sees_lazy_imports():
    """The check above would be hollow if imports inside functions were missed."""
    assert "pipeline.fetch" in graph()["pipeline.acquire"]  # imported inside acquire()
    assert "pipeline.publish" in graph()["pipeline.cli"]
