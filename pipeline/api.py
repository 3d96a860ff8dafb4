"""The Python API: one call from site files (or a GeoDataFrame) to :class:`~pipeline.analysis.Results`.

    import pipeline
    results = pipeline.analyse("aoi/sites_2024.geojson", source="demo")
    results.changes            # pandas DataFrame, one row per site (site_changes.csv)
    results.classified()       # GeoDataFrame with class and change
    results.verdict            # the verdict.json mapping
    results.open_pixels()      # lazy xarray.Dataset (time, y, x) of the pixels read

The same stages as ``nightlights run`` (:func:`pipeline.acquire.acquire` for the rasters,
:func:`pipeline.analysis.analyse` for the science), with the same defaults; nothing is
written except the demo or download caches under ``data_dir``. Save outputs with
``nightlights figures``-compatible files by calling the CLI, or use the DataFrames directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Params, Source


def analyse(sites: str | Path | Sequence[str | Path] | Any = "aoi", *, source: Source = "auto",
            rasters: str | Path | None = None, claim: str | Path | Any | None = None,
            params: Params | None = None, data_dir: str | Path = "data", cache_dir: str | Path | None = None,
            sensitivity: bool = True, progress: bool = False, compare: bool = True, **overrides: Any) -> Any:
    """Run the analysis and return :class:`~pipeline.analysis.Results`.

    Parameters
    ----------
    sites
        A site GeoJSON path, a folder (every ``*.geojson`` in it), several paths, or a
        GeoDataFrame already read with :func:`pipeline.sites.read_sites`.
    source
        ``auto`` (EOG or Black Marble when credentials are configured, else the labelled
        synthetic demo), ``demo``, ``local`` (with ``rasters``), ``eog`` or ``blackmarble``.
    claim
        A claim YAML path or a :class:`pipeline.claims.Claim`; default the shipped JoongAng claim.
    params, overrides
        :class:`pipeline.config.Params`, or any of its fields as keywords
        (``analyse(..., threshold=0.18, target_year=2025)``).
    cache_dir
        Study cube folder; default ``<data_dir>/cache``; ``"none"`` reads files directly.
    compare
        As ``run``: the county comparison (``Results.comparison``) whenever the shipped boundaries
        cover the sites; it reads ``Params.compare_years`` (from 2020 by default). False: ``--no-compare``.
    """
    import geopandas as gpd

    from pipeline.acquire import acquire
    from pipeline.analysis import analyse as analyse_stages
    from pipeline.claims import Claim, default_claim, load_claim
    from pipeline.sites import read_sites

    params = (params or Params()).replace(**overrides) if overrides else (params or Params())
    if isinstance(sites, gpd.GeoDataFrame):
        site_table = sites
    else:
        paths = [Path(sites)] if isinstance(sites, str | Path) else [Path(p) for p in sites]
        files = [f for p in paths for f in (sorted(p.glob("*.geojson")) if p.is_dir() else [p])]
        site_table = read_sites(files, params.default_radius_m)
    the_claim = claim if isinstance(claim, Claim) else load_claim(claim) if claim is not None else default_claim()
    years = (params.baseline_year - 1, params.baseline_year, params.target_year)
    plan = None
    if compare and params.product != "annual":
        from pipeline.compare import plan_comparison

        plan = plan_comparison(site_table)
    got = acquire(source, site_table, params, sorted({*years, *params.compare_years}) if plan else years,
                  rasters_dir=Path(rasters) if rasters else None, data_dir=Path(data_dir), progress=progress,
                  required=(params.baseline_year, params.target_year))
    cache = Path(data_dir) / "cache" if cache_dir is None else Path(cache_dir)
    cube = None if str(cache).lower() == "none" else cache / "cube"
    results = analyse_stages(site_table, [r for r in got.rasters if r.year in years], params, source=got.source,
                             data_kind=got.data_kind, sensitivity=sensitivity, progress=progress, cube_dir=cube,
                             claim=the_claim)
    if plan:
        from pipeline.compare import run_comparison

        results.comparison = run_comparison(plan, site_table, got.rasters, params, data_kind=got.data_kind,
                                            progress=progress, cube_dir=cube)
    return results
