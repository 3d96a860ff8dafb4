"""Analysis: chain the stages, from sites and monthly rasters to a verdict.

Inputs
    Sites (:func:`pipeline.read.sites.read_sites`), monthly rasters
    (:func:`pipeline.read.sources.find_monthly_rasters`), :class:`pipeline.config.Params`.
Outputs
    :class:`Results`: the site-by-month table, per-site changes, the sensitivity
    table, each county's change (when counties are given) and the verdict mapping.
    Nothing is written here (see :mod:`pipeline.outputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.config import Params
from pipeline.digest import digest
from pipeline.judge.change import ChangeSettings, ZoneSeries, site_changes
from pipeline.judge.sensitivity import (
    RADII_M,
    RULES,
    ZoneNames,
    calibration,
    control_zones,
    robustness_summary,
    sensitivity_table,
)
from pipeline.judge.verdict import make_verdict
from pipeline.measure.zonal import zone_month_table
from pipeline.read.claims import DEFAULT_CLAIM, Claim
from pipeline.read.sites import CHANGE_META_COLUMNS, background_rings, in_batch, with_radius
from pipeline.read.sources import MonthlyRaster, describe_inputs
from pipeline.results import Results

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

SITE_MONTH_COLUMNS = [
    "site_id",
    "month",
    "mean_radiance",
    "sum_radiance",
    "valid_fraction",
    "is_valid",
    "weight",
    "n_pixels",
    "mean_obs",
    "ring_mean_radiance",
    "ring_valid_fraction",
]


def build_zones(
    sites: gpd.GeoDataFrame, params: Params, radii: Sequence[float] = ()
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
            frames.append(
                ([n for n, x in zip(names, redo, strict=True) if x], list(variant.geometry.values))
            )
    zones = gpd.GeoDataFrame(
        {"zone": [n for names, _ in frames for n in names]},
        geometry=[g for _, geoms in frames for g in geoms],
        crs=sites.crs,
    )
    return zones, ZoneNames(by_radius, [f"{s}@ring" for s in ids])


def site_month_view(
    table: pd.DataFrame, sites: pd.DataFrame, rule: str, min_valid_fraction: float
) -> pd.DataFrame:
    """The published site-by-month table: headline pixel rule, site polygon, ring beside it."""
    t = table[table["pixel_rule"] == rule]
    ring = t[t["zone"].str.endswith("@ring")].assign(site_id=lambda d: d["zone"].str[:-5])
    ring = ring[["site_id", "month", "mean_radiance", "valid_fraction"]].rename(
        columns={"mean_radiance": "ring_mean_radiance", "valid_fraction": "ring_valid_fraction"}
    )
    own = t[t["zone"].isin(set(sites["site_id"]))].rename(columns={"zone": "site_id"})
    out = own.merge(ring, on=["site_id", "month"], how="left")
    out["is_valid"] = (out["valid_fraction"] >= min_valid_fraction) & out["mean_radiance"].notna()
    order = {s: i for i, s in enumerate(sites["site_id"])}
    out = out.sort_values(
        ["site_id", "month"], key=lambda c: c.map(order) if c.name == "site_id" else c
    )
    return out[SITE_MONTH_COLUMNS].reset_index(drop=True)


def extract_sites(
    sites: gpd.GeoDataFrame,
    rasters: Sequence[MonthlyRaster],
    params: Params,
    *,
    progress: bool = True,
    cube_dir: Path | None = None,
) -> pd.DataFrame:
    """Only the site-by-month table (``nightlights extract``): the sites' own polygons, no rings."""
    zones = gpd.GeoDataFrame(
        {"zone": sites["site_id"]}, geometry=sites.geometry.values, crs=sites.crs
    )
    table = zone_month_table(
        rasters,
        zones,
        (params.pixel_rule,),
        params.min_cf_cvg,
        params.bm_quality,
        progress=progress,
        cube_dir=cube_dir,
    )
    view = site_month_view(table, sites, params.pixel_rule, params.min_valid_fraction)
    return view.drop(columns=["ring_mean_radiance", "ring_valid_fraction"])


def analyse(
    sites: gpd.GeoDataFrame,
    rasters: Sequence[MonthlyRaster],
    params: Params,
    *,
    source: str,
    data_kind: str,
    sensitivity: bool = True,
    progress: bool = True,
    cube_dir: Path | None = None,
    claim: Claim = DEFAULT_CLAIM,
    alternatives: Mapping[str, Sequence[MonthlyRaster]] | None = None,
    extra_zones: gpd.GeoDataFrame | None = None,
    table: pd.DataFrame | None = None,
) -> Results:
    """The whole analysis on already-located inputs (see :mod:`pipeline.cli` for I/O).

    With ``sensitivity``, one extraction pass also covers the radius variants, every
    pixel rule and the calibration controls, so variants cost no extra reading. With
    ``cube_dir`` pixels are read through the study cube there (:mod:`pipeline.measure.cube`).
    ``claim`` is judged on the sites of its batch (variants count over them too).
    Annual composites (:class:`~pipeline.read.sources.AnnualRaster`) are compared as composites
    (:mod:`pipeline.judge.annual`). ``alternatives``: the other product's rasters for the same
    years (product -> rasters); their variants join the sensitivity table with a ``product`` column.
    ``extra_zones`` (another stage's, e.g. the comparison's) join the same extraction; ``table``:
    that extraction already made by the caller (:func:`pipeline.study.run_study`), so no zone is
    read twice. Counties are not measured here: their change comes from the unit panel
    (:mod:`pipeline.compare.panel`).
    """
    zones, names, controls = analysis_zones(sites, params, sensitivity)
    if extra_zones is not None and len(extra_zones):
        known = set(zones["zone"])
        extra = extra_zones[~extra_zones["zone"].isin(known)].to_crs(zones.crs)
        zones = gpd.GeoDataFrame(
            pd.concat([zones, extra], ignore_index=True), geometry="geometry", crs=zones.crs
        )
    claim_mask = in_batch(sites, claim.batch)
    stage = _Stage(sites, zones, names, controls, params, claim_mask, progress, cube_dir)
    table, changes, sens, calib = stage.run(rasters, sensitivity, calibrate=True, table=table)
    changes = _annotate(changes, sites)
    products = {params.product: rasters, **{k: v for k, v in (alternatives or {}).items() if v}}
    if sens is not None and len(products) > 1:
        parts = [sens.assign(product=params.product)]
        for product, alt in products.items():
            alt_sens = (
                stage.run(alt, True, calibrate=False)[2] if product != params.product else None
            )
            if alt_sens is not None:
                parts.append(alt_sens.assign(product=product))
        sens = pd.concat(parts, ignore_index=True)
    robust = (
        robustness_summary(sens, claim_scope=bool(claim_mask.any()), claim=claim)
        if sens is not None
        else None
    )
    inputs = describe_inputs(rasters)
    verdict = make_verdict(
        changes,
        sites,
        params.to_dict(),
        data_kind=data_kind,
        source=source,
        inputs=inputs,
        robustness=robust,
        calibration=calib,
        version=__version__,
        claim=claim,
        product=params.product,
        products=sorted({r.product for r in rasters}),
    )
    months = site_month_view(table, sites, params.pixel_rule, params.min_valid_fraction)
    return Results(sites, months, changes, verdict, sens, table, list(rasters))


def analysis_zones(
    sites: gpd.GeoDataFrame, params: Params, sensitivity: bool = True
) -> tuple[gpd.GeoDataFrame, ZoneNames, gpd.GeoDataFrame]:
    """The analysis's zones (sites, rings, radius variants and, with ``sensitivity``, the
    calibration controls), their names, and the controls alone.

    A study asks twice (to plan its one extraction, then to analyse): the second answer, for the
    same sites and parameters, is the first's (copies), since drawing controls costs ~0.4 s."""
    try:
        key = digest("analysis_zones", sites, params, sensitivity)
    except TypeError:  # a site column without a content digest: made afresh
        return _analysis_zones(sites, params, sensitivity)
    if key not in _ZONES:
        if len(_ZONES) >= 4:
            _ZONES.clear()
        _ZONES[key] = _analysis_zones(sites, params, sensitivity)
    zones, names, controls = _ZONES[key]
    return zones.copy(), names, controls.copy()


_ZONES: dict[str, tuple[gpd.GeoDataFrame, ZoneNames, gpd.GeoDataFrame]] = {}


def _analysis_zones(
    sites: gpd.GeoDataFrame, params: Params, sensitivity: bool
) -> tuple[gpd.GeoDataFrame, ZoneNames, gpd.GeoDataFrame]:
    radii = (
        sorted({*RADII_M, params.default_radius_m}) if sensitivity else [params.default_radius_m]
    )
    zones, names = build_zones(sites, params, radii)
    controls = (
        control_zones(sites, params.default_radius_m, params.seed)
        if sensitivity
        else zones.iloc[:0]
    )
    zones = gpd.GeoDataFrame(
        pd.concat([zones, controls], ignore_index=True), geometry="geometry", crs=zones.crs
    )
    return zones, names, controls


def analysis_rules(params: Params, sensitivity: bool) -> tuple[str, ...]:
    """The pixel rules the analysis extracts: every rule for the sensitivity table, else the headline."""
    rules = tuple(RULES) if sensitivity else (params.pixel_rule,)
    return rules if params.pixel_rule in rules else (*rules, params.pixel_rule)


@dataclass
class _Stage:
    """Extraction, change, variants and calibration of one product on the run's zones."""

    sites: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    names: ZoneNames
    controls: gpd.GeoDataFrame
    params: Params
    claim_mask: np.ndarray
    progress: bool
    cube_dir: Path | None

    def run(
        self,
        rasters: Sequence[MonthlyRaster],
        sensitivity: bool,
        calibrate: bool,
        table: pd.DataFrame | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, dict[str, Any] | None]:
        p, sites, names = self.params, self.sites, self.names
        rules = analysis_rules(p, sensitivity)
        if table is None:
            table = zone_month_table(
                rasters,
                self.zones,
                rules,
                p.min_cf_cvg,
                p.bm_quality,
                self.progress,
                cube_dir=self.cube_dir,
            )
        settings = ChangeSettings.from_params(p)
        headline_table = table[table["pixel_rule"] == p.pixel_rule]
        ids = list(sites["site_id"])
        sens = calib = None
        if any(r.period == "year" for r in rasters):
            from pipeline.judge.annual import (
                annual_calibration,
                annual_sensitivity_table,
                annual_site_changes,
                pixel_variances,
            )

            if p.months != tuple(range(1, 13)):
                log.warning(
                    "months %s ignored: an annual composite covers the whole year", list(p.months)
                )
            years = (p.baseline_year, p.target_year)
            var = pixel_variances(
                rasters, self.zones, rules, years, p.epsilon, p.min_cf_cvg, p.bm_quality
            )
            zone_names = list(self.zones["zone"])
            changes = annual_site_changes(
                ZoneSeries.from_table(headline_table),
                var[p.pixel_rule],
                zone_names,
                sites,
                ids,
                names.ring,
                settings,
            )
            if sensitivity:
                sens = annual_sensitivity_table(
                    table,
                    var,
                    zone_names,
                    sites,
                    names.by_radius,
                    names.ring,
                    settings,
                    self.claim_mask,
                )
            if calibrate:
                calib = annual_calibration(
                    headline_table, rasters, self.controls, settings, p.min_cf_cvg, p.bm_quality
                )
            return table, changes, sens, calib
        changes = site_changes(headline_table, sites, ids, names.ring, settings)
        if sensitivity:
            sens = sensitivity_table(
                table,
                sites,
                names,
                settings,
                self.claim_mask,
                headline=(p.default_radius_m, p.pixel_rule),
            )
        if calibrate:
            calib = calibration(headline_table, list(self.controls["zone"]), settings)
        return table, changes, sens, calib


def _annotate(changes: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    meta = sites[[c for c in CHANGE_META_COLUMNS if c in sites]]
    out = meta.merge(changes, on="site_id", how="right")
    first = [
        "site_id",
        "name",
        "baseline_value",
        "target_value",
        "change_pct",
        "ci_low",
        "ci_high",
        "class",
        "n_months",
    ]
    last = [
        c for c in ("county", "county_id") if c in out
    ]  # added columns go after the existing ones
    return out[first + [c for c in out.columns if c not in first + last] + last]
