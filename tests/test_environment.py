"""pyproject.toml is the one list of dependencies; environment.yml must mirror it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name where they differ.
CONDA_NAMES = {"dask[array]": "dask"}
# Not on conda-forge: these belong in environment.yml's pip: section (checked on anaconda.org, 2026-12).
PIP_ONLY = {
    "pylopdf-fonts-ko",
    "pyfixest",
}  # pyfixest: conda-forge not checked (pyfixest#549), pip is


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    reqs = dict(map(_split, pip_reqs))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(
        _split(d)
        for d in env["dependencies"]
        if isinstance(d, str) and not d.startswith(("python", "pip"))
    )
    assert conda == {CONDA_NAMES.get(n, n): spec for n, spec in reqs.items() if n not in PIP_ONLY}
    pip = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1 and list(pip[0]) == ["pip"], "one pip: section"
    assert dict(map(_split, pip[0]["pip"])) == {
        n: spec for n, spec in reqs.items() if n in PIP_ONLY
    }
    assert "pip" in env["dependencies"], "conda needs pip itself to install the pip: section"


def test_python_version_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == f">={py.split('=')[1]}"
