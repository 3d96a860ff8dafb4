"""Results: what a study gives back, and an output folder read back into it.

:class:`Results` is built by :func:`pipeline.study.run_study` (the command line and
:func:`pipeline.analyse`) and read by ``publish/``; :func:`load_results` rebuilds it from a run's
output folder (``nightlights figures``, notebooks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from pipeline.judge.verdict import Verdict
from pipeline.read.sites import CHANGE_META_COLUMNS, SITE_COLUMNS, batch_labels
from pipeline.read.sources import MonthlyRaster, inputs_absolute, rasters_from_inputs

if TYPE_CHECKING:
    from pipeline.compare.county import Comparison


@dataclass
class Results:
    sites: gpd.GeoDataFrame
    site_months: pd.DataFrame
    changes: pd.DataFrame
    verdict: Verdict
    sensitivity: pd.DataFrame | None = None
    zone_table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    rasters: list[MonthlyRaster] = field(default_factory=list, repr=False)
    unit_changes: pd.DataFrame | None = (
        None  # county_changes.csv (see pipeline.compare.panel.unit_changes)
    )
    comparison: Comparison | None = field(
        default=None, repr=False
    )  # the county comparison (compare)

    def classified(self) -> gpd.GeoDataFrame:
        """The sites with their class and change, one row per site (``sites_classified.*``)."""
        return classified_sites(self)

    def open_pixels(self, bounds: tuple[float, float, float, float] | None = None) -> Any:
        """The monthly pixels read by this run as a lazy ``xarray.Dataset`` (see :func:`pipeline.measure.pixels.open_pixels`)."""
        from pipeline.measure.pixels import open_pixels

        return open_pixels(
            self.rasters,
            bounds or _padded_bounds(self.sites),
            self.verdict.get("data_kind", ""),
            min_cf_cvg=int(self.verdict["parameters"].get("min_cf_cvg", 3)),
        )


def _padded_bounds(sites: gpd.GeoDataFrame, pad: float = 0.1) -> tuple[float, float, float, float]:
    w, s, e, n = (float(v) for v in sites.to_crs("EPSG:4326").total_bounds)
    return w - pad, s - pad, e + pad, n + pad


def load_results(out: str | os.PathLike[str]) -> Results:
    """Rebuild :class:`Results` from a run's output folder (``nightlights figures``; notebooks)."""
    import json

    out = Path(out)
    from pipeline.compare.county import load_comparison
    from pipeline.errors import ConfigError
    from pipeline.outputs import uninert_csv

    need = ["verdict.json", "site_changes.csv", "sites_classified.geojson"]
    missing = [n for n in need if not (out / n).exists()]
    if missing:
        raise ConfigError(
            f"{out}: no {', '.join(missing)}; run 'nightlights run --out {out}' first"
        )
    doc = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    doc["inputs"] = inputs_absolute(doc.get("inputs", []), out)
    verdict = Verdict.from_dict(doc)
    changes = uninert_csv(pd.read_csv(out / "site_changes.csv", dtype={"batch": str})).drop(
        columns=["data_kind"], errors="ignore"
    )
    if "batch" in changes:
        changes["batch"] = batch_labels(changes)
    gdf = gpd.read_file(out / "sites_classified.geojson")
    if "batch" in gdf:
        gdf["batch"] = batch_labels(gdf)
    keep = [
        c
        for c in (*SITE_COLUMNS, "county", "county_id")
        if c in gdf and c not in ("source_file", "geometry")
    ]
    sites = gpd.GeoDataFrame(gdf[keep], geometry=gdf.geometry, crs=gdf.crs)
    if (out / "site_months.parquet").exists():
        months = pd.read_parquet(out / "site_months.parquet")
    else:
        months = uninert_csv(pd.read_csv(out / "site_months.csv"))
    months = months.drop(columns=["data_kind"], errors="ignore")
    sens = (
        pd.read_csv(out / "sensitivity.csv").drop(columns=["data_kind"], errors="ignore")
        if (out / "sensitivity.csv").exists()
        else None
    )
    rasters = rasters_from_inputs(
        verdict.get("inputs", []),
        out / "verdict.json",
        annual=verdict.get("product") == "annual",
        eog_config=verdict["parameters"].get("eog_config", "vcmslcfg"),
    )
    units = (
        pd.read_csv(out / "county_changes.csv", dtype={"unit_id": str}).drop(
            columns=["data_kind"], errors="ignore"
        )
        if (out / "county_changes.csv").exists()
        else None
    )
    return Results(
        sites,
        months,
        changes,
        verdict,
        sens,
        rasters=rasters,
        unit_changes=units,
        comparison=load_comparison(out),
    )


def classified_sites(results: Results) -> gpd.GeoDataFrame:
    """Sites with their class and change, one row per site, for GIS users."""
    sites = results.sites.drop(columns=[c for c in ("source_file",) if c in results.sites])
    ch = results.changes.drop(
        columns=[
            c
            for c in (*CHANGE_META_COLUMNS[1:], "data_kind")
            if c in results.changes and (c == "data_kind" or c in results.sites)
        ]
    )
    gdf = sites.merge(ch, on="site_id", how="left")
    gdf["data_kind"] = results.verdict["data_kind"]
    added = [
        c for c in ("county", "county_id") if c in gdf
    ]  # newer columns after the existing ones
    gdf = gdf[[c for c in gdf.columns if c not in added and c != "geometry"] + added + ["geometry"]]
    return gpd.GeoDataFrame(gdf, geometry="geometry", crs=results.sites.crs)
