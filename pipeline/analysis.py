"""Analysis: chain the stages, from sites and monthly rasters to a verdict.

Inputs
    Sites (:func:`pipeline.sites.read_sites`), monthly rasters
    (:func:`pipeline.sources.find_monthly_rasters`), :class:`pipeline.config.Params`.
Outputs
    :class:`Results`: the site-by-month table, per-site changes, the sensitivity
    table, each county's change (when counties are given) and the verdict mapping.
    Nothing is written here (see :mod:`pipeline.outputs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.change import ChangeSettings, ZoneSeries, site_changes
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
from pipeline.sites import background_rings, batch_labels, in_batch, with_radius
from pipeline.sources import MonthlyRaster
from pipeline.verdict import Verdict, make_verdict
from pipeline.zonal import zone_month_table

if TYPE_CHECKING:
    from pipeline.compare import Comparison

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


@dataclass
class Results:
    sites: gpd.GeoDataFrame
    site_months: pd.DataFrame
    changes: pd.DataFrame
    verdict: Verdict
    sensitivity: pd.DataFrame | None = None
    zone_table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    rasters: list[MonthlyRaster] = field(default_factory=list, repr=False)
    unit_changes: pd.DataFrame | None = None  # county_changes.csv (see pipeline.panel.unit_changes)
    comparison: Comparison | None = field(
        default=None, repr=False
    )  # the county comparison (compare)

    def classified(self) -> gpd.GeoDataFrame:
        """The sites with their class and change, one row per site (``sites_classified.*``)."""
        return classified_sites(self)

    def open_pixels(self, bounds: tuple[float, float, float, float] | None = None) -> Any:
        """The monthly pixels read by this run as a lazy ``xarray.Dataset`` (see :func:`pipeline.pixels.open_pixels`)."""
        from pipeline.pixels import open_pixels

        return open_pixels(
            self.rasters,
            bounds or _padded_bounds(self.sites),
            self.verdict.get("data_kind", ""),
            min_cf_cvg=int(self.verdict["parameters"].get("min_cf_cvg", 3)),
        )


def _padded_bounds(sites: gpd.GeoDataFrame, pad: float = 0.1) -> tuple[float, float, float, float]:
    w, s, e, n = (float(v) for v in sites.to_crs("EPSG:4326").total_bounds)
    return w - pad, s - pad, e + pad, n + pad


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
    ``cube_dir`` pixels are read through the study cube there (:mod:`pipeline.cube`).
    ``claim`` is judged on the sites of its batch (variants count over them too).
    Annual composites (:class:`~pipeline.sources.AnnualRaster`) are compared as composites
    (:mod:`pipeline.annual`). ``alternatives``: the other product's rasters for the same
    years (product -> rasters); their variants join the sensitivity table with a ``product`` column.
    ``extra_zones`` (another stage's, e.g. the comparison's) join the same extraction; ``table``:
    that extraction already made by the caller (:func:`pipeline.study.run_study`), so no zone is
    read twice. Counties are not measured here: their change comes from the unit panel
    (:mod:`pipeline.panel`).
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
    inputs = [
        {
            "month": r.month,
            "file": r.radiance.name,
            "aux": r.aux.name if r.aux else None,
            "product": r.product,
            "folder": str(r.radiance.parent),
        }
        for r in rasters
    ]
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
    calibration controls), their names, and the controls alone."""
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
            from pipeline.annual import (
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
    cols = [
        "site_id",
        "name",
        "name_ko",
        "province",
        "batch",
        "location_confidence",
        "radius_m",
        "county",
        "county_id",
    ]
    meta = sites[[c for c in cols if c in sites]]
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


def load_results(out: str | os.PathLike[str]) -> Results:
    """Rebuild :class:`Results` from a run's output folder (``nightlights figures``; notebooks)."""
    import json

    out = Path(out)
    from pipeline.compare import load_comparison
    from pipeline.errors import ConfigError, SourceError
    from pipeline.outputs import uninert_csv
    from pipeline.sources import find_annual_rasters, find_monthly_rasters

    need = ["verdict.json", "site_changes.csv", "sites_classified.geojson"]
    missing = [n for n in need if not (out / n).exists()]
    if missing:
        raise ConfigError(
            f"{out}: no {', '.join(missing)}; run 'nightlights run --out {out}' first"
        )
    verdict = Verdict.from_dict(json.loads((out / "verdict.json").read_text(encoding="utf-8")))
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
        for c in (
            "site_id",
            "name",
            "name_ko",
            "province",
            "batch",
            "location_confidence",
            "source",
            "groundbreaking",
            "inauguration",
            "inauguration_by",
            "radius_m",
            "center_lon",
            "center_lat",
            "from_point",
            "county",
            "county_id",
        )
        if c in gdf
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
    rasters = []
    inputs = [i for i in verdict.get("inputs", []) if isinstance(i, dict)]
    wanted = {i.get("file") for i in inputs}
    for folder in sorted({str(i.get("folder")) for i in inputs}):
        # only the files verdict.json names are read, never a scan of a folder it names ("/")
        mine = [i for i in inputs if str(i.get("folder")) == folder]
        names = sorted({str(i.get("file")) for i in mine})
        if not Path(folder).is_dir():
            raise SourceError(
                f"{folder}: raster folder named in {out / 'verdict.json'} not found; run from the "
                "folder the run was made in, or re-run 'nightlights run'"
            )
        bad = [
            n
            for n in names
            if Path(n).name != n or n.startswith(".") or not (Path(folder) / n).is_file()
        ]
        if bad:
            raise SourceError(
                f"{folder}: raster folder named in {out / 'verdict.json'} does not hold {bad[0]} "
                f"({len(bad)} of the {len(names)} files it names missing); re-run 'nightlights run'"
            )
        aux = {
            str(i["aux"])
            for i in mine
            if i.get("aux") and Path(str(i["aux"])).name == str(i["aux"])
        }
        files = [Path(folder) / n for n in sorted({*names, *aux})]
        find = find_annual_rasters if verdict.get("product") == "annual" else find_monthly_rasters
        found = find(
            folder, eog_config=verdict["parameters"].get("eog_config", "vcmslcfg"), files=files
        )
        rasters += [r for r in found if r.radiance.name in wanted]
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
        rasters=sorted(rasters, key=lambda r: r.month),
        unit_changes=units,
        comparison=load_comparison(out),
    )


def classified_sites(results: Results) -> gpd.GeoDataFrame:
    """Sites with their class and change, one row per site, for GIS users."""
    sites = results.sites.drop(columns=[c for c in ("source_file",) if c in results.sites])
    ch = results.changes.drop(
        columns=[
            c
            for c in (
                "name",
                "name_ko",
                "province",
                "batch",
                "location_confidence",
                "county",
                "county_id",
                "data_kind",
            )
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
