"""A small synthetic run (5 sites, 36 months) published once per test session, for chart and report tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import Params
from pipeline.fetch.demo import DemoSpec, build_demo
from pipeline.outputs import staged
from pipeline.publish import write_publication
from pipeline.publish.style import Style
from pipeline.read.claims import DEFAULT_CLAIM
from pipeline.read.sites import read_sites
from pipeline.results import Results
from pipeline.study import StudySpec, run_study, write_tables
from tests.conftest import point_feature, write_sites

BOUNDS = (125.0, 39.3, 125.9, 39.9)
SITES = [  # id, lon, lat, hangul name, groundbreaking, inauguration
    ("alpha", 125.15, 39.45, "알파군", "2024-02-28", "2024-12-20"),
    ("bravo", 125.35, 39.70, "브라보시", "2024-03-15", None),
    ("charlie", 125.55, 39.50, "찰리군", None, None),
    ("delta", 125.72, 39.75, "델타군", "2024-04-01", "2025-01-10"),
    ("echo", 125.80, 39.40, "에코군", None, "2024-11-30"),
]
EPOCH = "1767225600"  # 2026-01-01 00:00 UTC
CHARTS = ("verdict", "small_multiples", "map", "county_change", "before_after", "robustness")


def make_results(tmp: Path) -> Results:
    feats = [
        point_feature(
            s,
            lon,
            lat,
            name=s.capitalize(),
            name_ko=ko,
            batch=2024,
            province="Test",
            **({"groundbreaking": g} if g else {}),
            **({"inauguration": i} if i else {}),
        )
        for s, lon, lat, ko, g, i in SITES
    ]
    site_file = write_sites(tmp / "sites.geojson", feats)
    spec = DemoSpec(
        seed=5,
        bounds=BOUNDS,
        sites=tuple((s, lon, lat) for s, lon, lat, *_ in SITES),
        n_other_towns=4,
    )
    folder = build_demo(tmp / "rasters", spec, progress=False)
    spec = StudySpec(
        sites=read_sites([site_file], 2000.0),
        params=Params(),
        claim=DEFAULT_CLAIM,
        source="local",
        rasters_dir=folder,
        compare=False,
        progress=False,
        site_files=(site_file,),
    )
    return run_study(spec)


def publish(
    results: Results, out: Path, style: Style | None = None, jobs: int | None = None
) -> Path:
    """What 'nightlights run' writes: tables, verdict, then the publication set."""
    with staged(out) as s:
        write_tables(results, s)
        write_publication(results, s, style, jobs=jobs)
    return out


_CACHE: dict[str, tuple[Results, Path]] = {}


def shared_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """The one synthetic analysis of the session (its rasters in a session folder); tests that need
    other publications of it publish it again, never change it (``dataclasses.replace``)."""
    if "results" not in _CACHE:
        tmp = tmp_path_factory.mktemp("pubdata")
        _CACHE["results"] = (make_results(tmp), tmp)
    return _CACHE["results"][0]


def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Results, Path]:
    """The session's analysis, published with the default style under SOURCE_DATE_EPOCH, once."""
    if "run" in _CACHE:
        return _CACHE["run"]
    results = shared_results(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("pub")
    saved = {k: os.environ.get(k) for k in ("SOURCE_DATE_EPOCH",)}
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        out = publish(results, tmp / "out")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _CACHE["run"] = (results, out)
    return results, out
