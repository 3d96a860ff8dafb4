"""Shared fixtures: tiny rasters and site files built from code, with known values."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.fetch.demo import eog_name

RES = 1 / 240

# Charts drawn in the test process: the tests' charts are small, so starting worker processes
# (an import of the chart stack each) costs more than it saves, all the more beside pytest-xdist's
# own workers. Tests of the worker processes ask for them (jobs=2); the fault tests' command-line
# runs drop this setting and draw as a user's run does.
os.environ.setdefault("NIGHTLIGHTS_JOBS", "1")


def write_tif(
    path: Path,
    array: np.ndarray,
    west: float,
    north: float,
    res: float = RES,
    crs: str = "EPSG:4326",
    nodata: float | None = None,
) -> Path:
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=crs,
        transform=from_origin(west, north, res, res),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array, 1)
    return path


def write_eog_month(
    folder: Path, year: int, month: int, rad: np.ndarray, cvg: np.ndarray, west: float, north: float
) -> Path:
    """An EOG-named avg_rade9h / cf_cvg pair on a 15 arc-second grid."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tif(folder / eog_name(year, month, "avg_rade9h"), rad.astype("float32"), west, north)
    write_tif(folder / eog_name(year, month, "cf_cvg"), cvg.astype("uint16"), west, north)
    return folder


def write_sites(path: Path, features: list[dict]) -> Path:
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
    )
    return path


def point_feature(site_id: str, lon: float, lat: float, **props) -> dict:
    return {
        "type": "Feature",
        "properties": {"site_id": site_id, "name": site_id, **props},
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
    }


def polygon_feature(site_id: str, ring: list[tuple[float, float]], **props) -> dict:
    return {
        "type": "Feature",
        "properties": {"site_id": site_id, "name": site_id, **props},
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
    }


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``xdist_group`` working under pytest's structured node ids (pytest-xdist issue 1386:
    its ``--dist loadgroup`` still writes the old ``_nodeid`` field, which pytest 9.2 no longer
    reads, so every group was silently spread over the workers and each worker made the shared
    synthetic run again). Runs after xdist's hook and adds the ``@group`` suffix it meant to."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
            continue
        item._id = type(item._id).parse(item.nodeid + suffix)
    items.sort(key=_longest_first)  # stable: the rest keep their order


# The work units that take minutes, longest first. xdist hands out units in collection order and
# gives a worker another unit while it has two tests or fewer waiting, so the last long unit
# used to start last and run on alone (the property runs and the users' runs, 2.5 and 2 min on a
# quiet machine, ended on one worker). First, the users' runs take one worker; the property test
# (one test) and the shared synthetic run's group the other; every other unit fills in after.
LONGEST_FIRST = ("@users_path", "tests/test_property_inputs.py::", "@pubdata")


def _longest_first(item: pytest.Item) -> int:
    for rank, key in enumerate(LONGEST_FIRST):
        if item.nodeid.endswith(key) or item.nodeid.startswith(key):
            return rank
    return len(LONGEST_FIRST)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="session", autouse=True)
def _font_subsets_once():
    """Subset the Korean font once per set of glyphs in each test process. A publication subsets
    it for report.html, report.ko.html and explore.html (about a second each, without a cache
    folder), and the tests publish the same small run many times: the subset of a font file for
    given glyphs is always the same bytes, so a repeated one is taken from memory. Runs in other
    processes (the command-line tests) subset as a user's run does."""
    import pipeline.publish.report as report

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "_font_css", functools.cache(report._font_css))
        yield


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path_factory, monkeypatch):
    """Run every test from a scratch folder, so defaults like data/ never touch the repository."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
