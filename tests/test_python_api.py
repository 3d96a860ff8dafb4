"""The Python API: docs/python.md runs as written; analyse() matches the command line's run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's folder: the project's aoi/ (2024 sites) and claims/."""
    work = tmp_path_factory.mktemp("notebook")
    (work / "aoi").mkdir()
    shutil.copy(ROOT / "aoi" / "sites_2024.geojson", work / "aoi")
    shutil.copytree(ROOT / "claims", work / "claims")
    return work


@pytest.mark.xdist_group("workdir")  # one worker: the second reads the demo the first made
@pytest.mark.slow
def test_docs_python_md_runs_as_written(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    blocks = _blocks(ROOT / "docs" / "python.md")
    assert len(blocks) >= 4
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "docs/python.md", "exec"), namespace)
    printed = capsys.readouterr().out
    results = namespace["results"]
    assert printed.startswith("synthetic ")  # the demo says what it is, first
    assert len(results.changes) == 20 and set(results.changes["class"]) <= {
        "brightened",
        "unchanged",
        "dimmed",
        "insufficient_data",
    }
    assert (workdir / "sites_classified.gpkg").exists()
    ds = namespace["ds"]
    assert ds.attrs["data_kind"] == "synthetic" and ds.sizes["time"] == 36
    # the composite from the pixels agrees with the tables: the brightest site's pixels are lit
    assert float(namespace["composite"].max()) > 1.0


@pytest.mark.xdist_group("workdir")  # one worker: the second reads the demo the first made
@pytest.mark.slow
def test_analyse_equals_the_command_line(workdir, monkeypatch):
    """Same inputs, same numbers: the API and `nightlights run` share every stage."""
    monkeypatch.chdir(workdir)
    api = pipeline.analyse("aoi", source="demo", sensitivity=False, threshold=0.18)
    assert (
        main(
            [
                "run",
                "--source",
                "demo",
                "--no-sensitivity",
                "--no-figures",
                "--threshold",
                "0.18",
                "--out",
                str(workdir / "out"),
                "-q",
            ]
        )
        == 0
    )
    cli = json.loads((workdir / "out" / "verdict.json").read_text())
    assert api.verdict["claim_sites"] == cli["claim_sites"]
    assert api.verdict["parameters"]["threshold"] == 0.18
    import pandas as pd

    table = pd.read_csv(workdir / "out" / "site_changes.csv")
    merged = table.merge(api.changes, on="site_id", suffixes=("_cli", "_api"))
    assert len(merged) == 20
    np.testing.assert_allclose(merged["log_ratio_cli"], merged["log_ratio_api"], rtol=1e-5)


def test_package_exports_are_lazy_and_typed():
    import subprocess
    import sys

    code = (
        "import sys, pipeline; assert 'geopandas' not in sys.modules; pipeline.analyse; print('ok')"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        == "ok"
    )
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018
    assert pipeline.Params().threshold == 0.25
