"""The Python API: one call from site files (or a GeoDataFrame) to :class:`~pipeline.results.Results`.

    import pipeline
    results = pipeline.analyse("aoi/sites_2024.geojson", source="demo")
    results.changes            # pandas DataFrame, one row per site (site_changes.csv)
    results.classified()       # GeoDataFrame with class and change
    results.verdict            # the verdict.json mapping
    results.open_pixels()      # lazy xarray.Dataset (time, y, x) of the pixels read

The same study as ``nightlights run`` (:func:`pipeline.study.run_study`: claim, counties,
rasters, analysis, comparison), with the same defaults; nothing is written except the demo
or download caches under ``data_dir``. Save outputs with
``nightlights figures``-compatible files by calling the CLI, or use the DataFrames directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Params, Source


def analyse(
    sites: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Any = "aoi",
    *,
    source: Source = "auto",
    rasters: str | os.PathLike[str] | None = None,
    claim: str | os.PathLike[str] | Any | None = None,
    params: Params | None = None,
    data_dir: str | os.PathLike[str] = "data",
    cache_dir: str | os.PathLike[str] | None = None,
    sensitivity: bool = True,
    progress: bool = False,
    compare: bool = True,
    **overrides: Any,
) -> Any:
    """Run the analysis and return :class:`~pipeline.results.Results`.

    Parameters
    ----------
    sites
        A site GeoJSON path, a folder (every ``*.geojson`` in it), several paths, or a
        GeoDataFrame already read with :func:`pipeline.read.sites.read_sites`.
    source
        ``auto`` (EOG or Black Marble when credentials are configured, else the labelled
        synthetic demo), ``demo``, ``local`` (with ``rasters``), ``eog`` or ``blackmarble``.
    claim
        A claim YAML path or a :class:`pipeline.read.claims.Claim`; default the shipped JoongAng claim.
    params, overrides
        :class:`pipeline.config.Params`, or any of its fields as keywords
        (``analyse(..., threshold=0.18, target_year=2025)``).
    cache_dir
        Cache of the study cube and of each stage's results (a re-run reads them back); default
        ``<data_dir>/cache``; ``"none"`` reads files directly and computes everything afresh.
    compare
        As ``run``: the county comparison (``Results.comparison``) whenever the shipped boundaries
        cover the sites; it reads ``Params.compare_years`` (from 2020 by default). False: ``--no-compare``.
    """
    import geopandas as gpd

    from pipeline.read.claims import Claim, default_claim, load_claim
    from pipeline.read.sites import read_sites
    from pipeline.study import StudySpec, claim_years, run_study

    the_claim = (
        claim
        if isinstance(claim, Claim)
        else load_claim(Path(claim))
        if claim is not None
        else default_claim()
    )
    # the claim's years are the run's unless given (in params or as keywords), as on the command line
    base = params or claim_years(the_claim)
    params = base.replace(**overrides) if overrides else base
    if isinstance(sites, gpd.GeoDataFrame):
        site_table, files = sites, []
    else:
        paths = [Path(sites)] if isinstance(sites, str | os.PathLike) else [Path(p) for p in sites]
        files = [f for p in paths for f in (sorted(p.glob("*.geojson")) if p.is_dir() else [p])]
        site_table = read_sites(files, params.default_radius_m)
    cache = Path(data_dir) / "cache" if cache_dir is None else Path(cache_dir)
    spec = StudySpec(
        sites=site_table,
        params=params,
        claim=the_claim,
        claim_path=None if claim is None or isinstance(claim, Claim) else Path(claim),
        source=source,
        rasters_dir=Path(rasters) if rasters else None,
        data_dir=Path(data_dir),
        cube_dir=None if str(cache).lower() == "none" else cache / "cube",
        memo_dir=None if str(cache).lower() == "none" else cache / "results",
        sensitivity=sensitivity,
        compare=compare,
        progress=progress,
        site_files=files,
    )
    return run_study(spec)
