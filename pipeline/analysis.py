"""Analysis: chain the stages, from sites and monthly rasters to a verdict.

Inputs
    Sites (:func:`pipeline.sites.read_sites`), monthly rasters
    (:func:`pipeline.sources.find_monthly_rasters`), :class:`pipeline.config.Params`.
Outputs
    :class:`Results`: the site-by-month table, per-site changes, the sensitivity
    table and the verdict mapping. Nothing is written here (see :mod:`pipeline.outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.change import ChangeSettings, site_changes
from pipeline.claims import DEFAULT_CLAIM, Claim
from pipeline.config import Params
from pipeline.sensitivity import (
    RADII_M,
    RULES,
    ZoneNames,
    calibration,
    control_zones,
    robustness_summary,
    sensitivity_table,
)
from pipeline.sites import background_rings, with_radius
from pipeline.sources import MonthlyRaster
from pipeline.verdict import make_verdict
from pipeline.zonal import zone_month_table

if TYPE_CHECKING:
    from pipeline.compare import Comparison

SITE_MONTH_COLUMNS = ["site_id", "month", "mean_radiance", "sum_radiance", "valid_fraction", "is_valid",
                      "weight", "n_pixels", "mean_obs", "ring_mean_radiance", "ring_valid_fraction"]


@dataclass
class Results:
    sites: gpd.GeoDataFrame
    site_months: pd.DataFrame
    changes: pd.DataFrame
    verdict: dict[str, Any]
    sensitivity: pd.DataFrame | None = None
    zone_table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    rasters: list[MonthlyRaster] = field(default_factory=list, repr=False)
    comparison: Comparison | None = field(default=None, repr=False)  # the county comparison (compare)


def build_zones(sites: gpd.GeoDataFrame, params: Params, radii: Sequence[float] = ()
                ) -> tuple[gpd.GeoDataFrame, ZoneNames]:
    """Every polygon to extract: each site, its background ring, and its radius variants.

    Zone names: ``<site_id>``, ``<site_id>@ring``, ``<site_id>@r<metres>``. A variant
    re-buffers a point site from its centre unless the site already has that radius;
    drawn polygons have no radius, so their variants reuse the site's own zone.
    """
    ids = list(sites["site_id"])
    rings = background_rings(sites, params.ring_inner_m, params.ring_outer_m)
    frames = [(ids, list(sites.geometry.values)), ([f"{s}@ring" for s in ids], list(rings.values))]
    from_point = sites["from_point"].to_numpy(bool)
    own = sites["radius_m"].to_numpy(float)
    by_radius: dict[float, list[str]] = {}
    for r in radii:
        redo = from_point & ~np.isclose(own, r)
        names = [f"{s}@r{int(r)}" if x else s for s, x in zip(ids, redo, strict=True)]
        by_radius[r] = names
        if redo.any():
            variant = with_radius(sites[redo], r)
            frames.append(([n for n, x in zip(names, redo, strict=True) if x], list(variant.geometry.values)))
    zones = gpd.GeoDataFrame({"zone": [n for names, _ in frames for n in names]},
                             geometry=[g for _, geoms in frames for g in geoms], crs=sites.crs)
    return zones, ZoneNames(by_radius, [f"{s}@ring" for s in ids])


def site_month_view(table: pd.DataFrame, sites: pd.DataFrame, rule: str, min_valid_fraction: float) -> pd.DataFrame:
    """The published site-by-month table: headline pixel rule, site polygon, ring beside it."""
    t = table[table["pixel_rule"] == rule]
    ring = t[t["zone"].str.endswith("@ring")].assign(site_id=lambda d: d["zone"].str[:-5])
    ring = ring[["site_id", "month", "mean_radiance", "valid_fraction"]].rename(
        columns={"mean_radiance": "ring_mean_radiance", "valid_fraction": "ring_valid_fraction"})
    own = t[t["zone"].isin(set(sites["site_id"]))].rename(columns={"zone": "site_id"})
    out = own.merge(ring, on=["site_id", "month"], how="left")
    out["is_valid"] = (out["valid_fraction"] >= min_valid_fraction) & out["mean_radiance"].notna()
    order = {s: i for i, s in enumerate(sites["site_id"])}
    out = out.sort_values(["site_id", "month"], key=lambda c: c.map(order) if c.name == "site_id" else c)
    return out[SITE_MONTH_COLUMNS].reset_index(drop=True)


def extract_sites(sites: gpd.GeoDataFrame, rasters: Sequence[MonthlyRaster], params: Params, *,
                  progress: bool = True, cube_dir: Path | None = None) -> pd.DataFrame:
    """Only the site-by-month table (``nightlights extract``): the sites' own polygons, no rings."""
    zones = gpd.GeoDataFrame({"zone": sites["site_id"]}, geometry=sites.geometry.values, crs=sites.crs)
    table = zone_month_table(rasters, zones, (params.pixel_rule,), params.min_cf_cvg, params.bm_quality,
                             progress=progress, cube_dir=cube_dir)
    view = site_month_view(table, sites, params.pixel_rule, params.min_valid_fraction)
    return view.drop(columns=["ring_mean_radiance", "ring_valid_fraction"])


def analyse(sites: gpd.GeoDataFrame, rasters: Sequence[MonthlyRaster], params: Params, *, source: str,
            data_kind: str, sensitivity: bool = True, progress: bool = True,
            cube_dir: Path | None = None, claim: Claim = DEFAULT_CLAIM) -> Results:
    """The whole analysis on already-located inputs (see :mod:`pipeline.cli` for I/O).

    With ``sensitivity``, one extraction pass also covers the radius variants, every
    pixel rule and the calibration controls, so variants cost no extra reading. With
    ``cube_dir`` pixels are read through the study cube there (:mod:`pipeline.cube`).
    ``claim`` is judged on the sites of its batch (variants count over them too).
    """
    radii = sorted({*RADII_M, params.default_radius_m}) if sensitivity else [params.default_radius_m]
    zones, names = build_zones(sites, params, radii)
    controls = control_zones(sites, params.default_radius_m, params.seed) if sensitivity else zones.iloc[:0]
    zones = gpd.GeoDataFrame(pd.concat([zones, controls], ignore_index=True), geometry="geometry", crs=zones.crs)
    rules = RULES if sensitivity else (params.pixel_rule,)
    if params.pixel_rule not in rules:
        rules = (*rules, params.pixel_rule)
    table = zone_month_table(rasters, zones, rules, params.min_cf_cvg, params.bm_quality, progress,
                             cube_dir=cube_dir)
    settings = ChangeSettings.from_params(params)
    headline_table = table[table["pixel_rule"] == params.pixel_rule]
    changes = site_changes(headline_table, sites, list(sites["site_id"]), names.ring, settings)
    changes = _annotate(changes, sites)
    claim_mask = (pd.to_numeric(sites["batch"], errors="coerce") == claim.batch).to_numpy()
    sens = robust = None
    if sensitivity:
        sens = sensitivity_table(table, sites, names, settings, claim_mask,
                                 headline=(params.default_radius_m, params.pixel_rule))
        robust = robustness_summary(sens, claim_scope=bool(claim_mask.any()), claim=claim)
    calib = calibration(headline_table, list(controls["zone"]), settings)
    inputs = [{"month": r.month, "file": r.radiance.name, "aux": r.aux.name if r.aux else None,
               "product": r.product, "folder": str(r.radiance.parent)} for r in rasters]
    verdict = make_verdict(changes, sites, params.to_dict(), data_kind=data_kind, source=source, inputs=inputs,
                           robustness=robust, calibration=calib, version=__version__, claim=claim)
    months = site_month_view(table, sites, params.pixel_rule, params.min_valid_fraction)
    return Results(sites, months, changes, verdict, sens, table, list(rasters))


def _annotate(changes: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    meta = sites[["site_id", "name", "name_ko", "province", "batch", "location_confidence", "radius_m"]]
    out = meta.merge(changes, on="site_id", how="right")
    first = ["site_id", "name", "baseline_value", "target_value", "change_pct", "ci_low", "ci_high", "class",
             "n_months"]
    return out[first + [c for c in out.columns if c not in first]]


def load_results(out: Path) -> Results:
    """Rebuild :class:`Results` from a run's output folder (``nightlights figures``; notebooks)."""
    import json

    from pipeline.compare import load_comparison
    from pipeline.errors import ConfigError, SourceError
    from pipeline.sources import find_monthly_rasters

    need = ["verdict.json", "site_changes.csv", "sites_classified.geojson"]
    missing = [n for n in need if not (out / n).exists()]
    if missing:
        raise ConfigError(f"{out}: no {', '.join(missing)}; run 'nightlights run --out {out}' first")
    verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    changes = pd.read_csv(out / "site_changes.csv").drop(columns=["data_kind"], errors="ignore")
    gdf = gpd.read_file(out / "sites_classified.geojson")
    keep = [c for c in ("site_id", "name", "name_ko", "province", "batch", "location_confidence", "source",
                        "groundbreaking", "inauguration", "radius_m", "center_lon", "center_lat", "from_point")
            if c in gdf]
    sites = gpd.GeoDataFrame(gdf[keep], geometry=gdf.geometry, crs=gdf.crs)
    if (out / "site_months.parquet").exists():
        months = pd.read_parquet(out / "site_months.parquet")
    else:
        months = pd.read_csv(out / "site_months.csv")
    months = months.drop(columns=["data_kind"], errors="ignore")
    sens = pd.read_csv(out / "sensitivity.csv").drop(columns=["data_kind"], errors="ignore") \
        if (out / "sensitivity.csv").exists() else None
    rasters = []
    wanted = {i["file"] for i in verdict.get("inputs", [])}
    for folder in sorted({i["folder"] for i in verdict.get("inputs", [])}):
        if not Path(folder).is_dir():
            raise SourceError(f"{folder}: raster folder named in {out / 'verdict.json'} not found; run from the "
                              "folder the run was made in, or re-run 'nightlights run'")
        found = find_monthly_rasters(folder, eog_config=verdict["parameters"].get("eog_config", "vcmslcfg"))
        rasters += [r for r in found if r.radiance.name in wanted]
    return Results(sites, months, changes, verdict, sens, rasters=sorted(rasters, key=lambda r: r.month),
                   comparison=load_comparison(out))
