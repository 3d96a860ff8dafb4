"""The package's shape: no import cycles (imports inside functions count), layers point inwards."""

from __future__ import annotations

import ast
import functools
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


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    """Parsed once per test process (every module's source, about a second): the source does not
    change while the tests run."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        m: frozenset({i for i in _imports(p) if i in modules and i != m} - {"pipeline"})
        for m, p in modules.items()
    }


def graph() -> dict[str, set[str]]:
    return {m: set(deps) for m, deps in _graph().items()}


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


STAGES = ("read", "measure", "judge", "compare", "fetch", "publish")
# what each folder may not import (besides the top-level orchestration: cli, api, study, analysis)
FORBIDDEN = {
    "read": {"measure", "judge", "compare", "fetch", "publish"},
    "measure": {"judge", "compare", "fetch", "publish"},
    "judge": {"measure", "compare", "fetch", "publish"},
    "compare": {"fetch", "publish"},
    "fetch": {"judge", "compare", "publish"},
    "publish": {"measure", "fetch"},
}
STATISTICS = {f"pipeline.compare.{m}" for m in ("panel", "did", "cohorts", "event", "disparity")}
ORCHESTRATION = {"pipeline.cli", "pipeline.api", "pipeline.study", "pipeline.analysis"}
# judge/annual's interval needs the annual composites' pixel spread: the one judge module that reads
PIXEL_READERS_IN_JUDGE = {"pipeline.judge.annual"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_folders_follow_the_flow():
    """read -> measure -> judge -> compare -> publish: no folder imports a later one (fetch stands
    beside them, publish reads results), and the top-level modules are only the orchestration and
    the shared plumbing (config, errors, outputs, provenance, digest and memo, and words: the one table of words, which
    the judge's notes and notices and every chart and report read)."""
    g = graph()
    top = {m for m in g if m.count(".") == 1 and m.split(".")[1] not in STAGES}
    assert top - ORCHESTRATION <= {
        "pipeline.config",
        "pipeline.errors",
        "pipeline.words",
        "pipeline.outputs",
        "pipeline.provenance",
        "pipeline.digest",
        "pipeline.memo",
        "pipeline.results",
        "pipeline.__main__",
    }, sorted(top)
    for m, deps in g.items():
        stage = _stage(m)
        if stage is None:
            continue
        bad = {d for d in deps if _stage(d) in FORBIDDEN[stage]}
        if stage == "judge" and m in PIXEL_READERS_IN_JUDGE:
            bad -= {"pipeline.measure.weights"}
        assert not bad, f"{m} imports {sorted(bad)}"
        assert not deps & ORCHESTRATION, (
            f"{m} imports the orchestration {sorted(deps & ORCHESTRATION)}"
        )


def test_judge_never_reads_pixels_and_the_statistics_take_tables():
    g = graph()
    for m, deps in g.items():
        if _stage(m) == "judge" and m not in PIXEL_READERS_IN_JUDGE:
            base = ROOT.parent / Path(*m.split("."))
            path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            text = path.read_text(encoding="utf-8")
            assert "rasterio" not in text and "read_window" not in text, m
        if m in STATISTICS:
            assert not {d for d in deps if _stage(d) in ("read", "measure")}, m


def test_publish_reads_results_and_only_the_composites_reader_reads_pixels():
    g = graph()
    for m, deps in g.items():
        if _stage(m) == "publish" and m != "pipeline.publish.composites":
            assert not {"pipeline.read.sources", "pipeline.read.units"} & deps, m


def test_fetch_leaves_its_dispatcher_alone():
    """Only acquire calls the fetch dispatcher; the downloaders never import it back."""
    g = graph()
    for m, deps in g.items():
        if m.startswith("pipeline.fetch.") and m != "pipeline.fetch.acquire":
            assert "pipeline.fetch" not in deps, m
        if _stage(m) != "fetch" and m not in ORCHESTRATION | {"pipeline.results"}:
            assert not {d for d in deps if d == "pipeline.fetch" or _stage(d) == "fetch"}, m


def test_long_modules_say_why():
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > LIMIT:
            assert "Longer than" in (ast.get_docstring(ast.parse(text)) or ""), (
                f"{p}: over {LIMIT} lines"
            )


def test_the_graph_sees_lazy_imports():
    """The check above would be hollow if imports inside functions were missed."""
    assert "pipeline.fetch" in graph()["pipeline.fetch.acquire"]  # imported inside acquire()
    assert "pipeline.publish" in graph()["pipeline.cli"]
