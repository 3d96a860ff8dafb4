"""Annual: yearly change from annual composites (EOG VNL v2, VNP46A4), with a pixel-based interval.

Inputs
    The zone table of :mod:`pipeline.measure.zonal` read from :class:`~pipeline.read.sources.AnnualRaster`
    (one "month" per year, labelled ``YYYY``: the extraction is the monthly one), the annual
    rasters themselves (for the pixel spread), the zones and the change settings.
Outputs
    Per-site rows with the columns of :func:`pipeline.judge.change.site_changes`, plus
    ``se_log_ratio`` and ``n_pixels_eff``; the annual sensitivity grid and calibration.

Method. The yearly value is the annual composite's coverage-weighted mean over valid pixels
(the zone table's ``mean_radiance``); a site-year counts when ``min_valid_fraction`` of its
weight is valid. With one value per year a bootstrap over months is impossible, so the
interval comes from the site's pixels: the change ``d = ln((T + eps) / (B + eps))`` of two
coverage-weighted means is linearised (delta method) into per-pixel residuals
``r = (T_p - T) / (T + eps) - (B_p - B) / (B + eps)`` on the pixels valid in both years
(paired: a pixel bright in both years adds no uncertainty, only how unevenly the site's
pixels changed does), ``Var(d) = deff * sum(w^2 r^2) / sum(w)^2 * n / (n - 1)``. Pixels are not
independent: the DNB footprint (about 750 m at nadir, data_sources.md §3.7, S32) spans about
2 x 1.6 pixels of the 15" grid at 40N (355 m x 463 m, §2a) and light blooms into neighbours,
so the variance is inflated by ``deff`` = pixels per footprint (at least 1). The interval is
``d +- z * sqrt(Var)``; the ring-adjusted change adds the ring's variance (its pixels are 4-8
km away: independent). Classes use the same rule as months (:func:`pipeline.judge.change.classify_arrays`).
A bootstrap over pixels would give the same centre but treat neighbouring pixels as independent
unless blocked by footprint, and sites hold only tens of footprints; the closed form is
transparent, seed-free and cheap enough for the variant grid and thousands of controls.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.judge.change import (
    CLASSES,
    ChangeSettings,
    ZoneSeries,
    classify_arrays,
    count_classes,
    log_ratio,
)
from pipeline.measure.weights import coverage_weights, rule_weights
from pipeline.read.sources import MonthlyRaster, read_window, valid_mask

FOOTPRINT_M = 750.0  # VIIRS DNB ground footprint at nadir (data_sources.md S32)
ANNUAL_STATISTIC = "annual"  # the sensitivity table's statistic for annual composites


def footprint_deff(grid: Any, lat: np.ndarray) -> np.ndarray:
    """Pixels per DNB footprint at each latitude (at least 1): the variance inflation for
    spatially correlated pixels."""
    a = grid.affine
    if grid.crs.is_geographic:
        w = abs(a.a) * 111_320.0 * np.cos(np.radians(lat))
        h = abs(a.e) * 110_574.0
    else:
        w, h = abs(a.a), abs(a.e)
    return np.maximum((FOOTPRINT_M / w) * (FOOTPRINT_M / h), 1.0)


def pixel_variances(
    rasters: Sequence[MonthlyRaster],
    zones: gpd.GeoDataFrame,
    rules: Sequence[str],
    years: tuple[int, int],
    epsilon: float,
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per rule: (Var of d, effective number of independent pixels) for every zone, between two years.

    NaN where a zone has fewer than two pixels valid in both years.
    """
    by_year = {r.year: r for r in rasters}
    nz = len(zones)
    nan = {rule: (np.full(nz, np.nan), np.full(nz, np.nan)) for rule in rules}
    if years[0] not in by_year or years[1] not in by_year:
        return nan
    rb, rt = by_year[years[0]], by_year[years[1]]
    bounds = zones.to_crs("EPSG:4326").geometry.bounds
    lat = ((bounds["miny"] + bounds["maxy"]) / 2).to_numpy() if nz else np.zeros(0)
    paired = rb.grid == rt.grid
    out = {}
    pix = _pixels(rb, rt, zones, min_cf_cvg, bm_quality, paired)
    for rule in rules:
        var, neff = np.full(nz, np.nan), np.full(nz, np.nan)
        for (
            grid,
            zone,
            cov,
            vals,
        ) in pix:  # one grid when paired; else each year's, variances adding up
            w = rule_weights(cov, rule)
            deff = footprint_deff(grid, lat)
            var_g, n_g = _linearised(zone, w, vals, nz, epsilon, paired)
            ok = np.isfinite(var_g)
            var[ok] = np.nan_to_num(var[ok]) + var_g[ok] * deff[ok]
            neff[ok] = np.fmin(neff[ok], n_g[ok] / deff[ok])
        out[rule] = (var, neff)
    return out


def _pixels(
    rb: MonthlyRaster,
    rt: MonthlyRaster,
    zones: gpd.GeoDataFrame,
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
    paired: bool,
) -> list[tuple[Any, np.ndarray, np.ndarray, list]]:
    """Weight entries and their values: (grid, zone, coverage, [(B, valid), (T, valid)]) per grid."""
    out = []
    for grids in ([rb, rt],) if paired else ([rb], [rt]):
        weights = coverage_weights(zones.geometry, grids[0].grid, grids[0].radiance)
        zone: list[np.ndarray] = []
        cov: list[np.ndarray] = []
        per_year: list[list[Any]] = [[], []] if paired else [[]]
        for b in weights.blocks:
            zone.append(b.zone)
            cov.append(b.coverage)
            for k, r in enumerate(grids):
                rad, aux = read_window(r, b.window)
                ok = valid_mask(aux, r.aux_kind, min_cf_cvg, bm_quality).ravel()[b.pixel]
                per_year[k].append((rad.ravel()[b.pixel], ok))
        if not zone:
            continue
        vals = [
            (np.concatenate([v for v, _ in y]), np.concatenate([o for _, o in y])) for y in per_year
        ]
        out.append((grids[0].grid, np.concatenate(zone), np.concatenate(cov), vals))
    return out


def _wmean(zone: np.ndarray, w: np.ndarray, x: np.ndarray, nz: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(zone, w * x, nz) / np.bincount(zone, w, nz)


def _spread(
    zone: np.ndarray, w: np.ndarray, resid: np.ndarray, nz: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sandwich variance of a weighted mean of residuals, with n/(n-1), and Kish's effective n."""
    sw, sw2 = np.bincount(zone, w, nz), np.bincount(zone, w * w, nz)
    n = np.bincount(zone, (w > 0) * 1.0, nz)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.bincount(zone, w * w * resid * resid, nz) / sw**2 * n / (n - 1)
        neff = sw**2 / sw2
    return np.where(n >= 2, var, np.nan), np.where(n >= 2, neff, np.nan)


def _linearised(
    zone: np.ndarray, w: np.ndarray, vals: list, nz: int, eps: float, paired: bool
) -> tuple[np.ndarray, np.ndarray]:
    if paired:
        (b, vb), (t, vt) = vals
        both = vb & vt
        wb, wt = w * vb, w * vt
        mb, mt = _wmean(zone, wb, b, nz), _wmean(zone, wt, t, nz)
        resid = (t - mt[zone]) / (mt[zone] + eps) - (b - mb[zone]) / (mb[zone] + eps)
        return _spread(zone, w * both, np.where(both, resid, 0.0), nz)
    # different grids: years cannot be paired pixel by pixel; the variances add (conservative)
    x, v = vals[0]
    m = _wmean(zone, w * v, x, nz)
    var, neff = _spread(zone, w * v, np.where(v, (x - m[zone]) / (m[zone] + eps), 0.0), nz)
    return var, neff


def annual_site_changes(
    series: ZoneSeries,
    variances: tuple[np.ndarray, np.ndarray],
    zone_names: list[str],
    sites: pd.DataFrame,
    site_zone: list[str],
    ring_zone: list[str] | None,
    settings: ChangeSettings,
) -> pd.DataFrame:
    """One row per site, as :func:`pipeline.judge.change.site_changes` gives for months."""
    index = {z: i for i, z in enumerate(zone_names)}
    z = NormalDist().inv_cdf(0.5 + settings.confidence / 2)
    ids = [str(s) for s in sites["site_id"]]
    b, t, var, neff = _zone_values(series, variances, index, site_zone, settings)
    ok = np.isfinite(b) & np.isfinite(t)
    d = np.where(ok, log_ratio(t, b, settings.epsilon), np.nan)
    se = np.sqrt(np.where(ok, np.nan_to_num(var, nan=0.0), np.nan))
    n = np.where(ok, 12, 0)
    out = pd.DataFrame(
        {
            "site_id": ids,
            "n_months": n,
            "months_matched": np.where(ok, "annual", ""),
            "baseline_value": np.where(ok, b, np.nan),
            "target_value": np.where(ok, t, np.nan),
            "log_ratio": d,
            "log_ci_low": d - z * se,
            "log_ci_high": d + z * se,
            "class": classify_arrays(
                d, d - z * se, d + z * se, n, settings.threshold, settings.min_matched_months
            ),
            "se_log_ratio": se,
            "n_pixels_eff": neff,
        }
    )
    if ring_zone is not None:
        rb, rt, rvar, _ = _zone_values(series, variances, index, ring_zone, settings)
        rok = ok & np.isfinite(rb) & np.isfinite(rt)
        ring_d = np.where(rok, log_ratio(rt, rb, settings.epsilon), np.nan)
        adj = d - ring_d
        ase = np.sqrt(
            np.where(rok, np.nan_to_num(var, nan=0.0) + np.nan_to_num(rvar, nan=0.0), np.nan)
        )
        na = np.where(rok, 12, 0)
        out = out.assign(
            ring_baseline_value=np.where(rok, rb, np.nan),
            ring_target_value=np.where(rok, rt, np.nan),
            ring_log_ratio=ring_d,
            adjusted_log_ratio=adj,
            adjusted_log_ci_low=adj - z * ase,
            adjusted_log_ci_high=adj + z * ase,
            n_months_adjusted=na,
            class_ring_adjusted=classify_arrays(
                adj,
                adj - z * ase,
                adj + z * ase,
                na,
                settings.threshold,
                settings.min_matched_months,
            ),
        )
    for col in ("log_ratio", "log_ci_low", "log_ci_high"):
        out[col.replace("log_ratio", "change_pct").replace("log_ci", "ci")] = 100 * np.expm1(
            out[col]
        )
    return out


def _zone_values(
    series: ZoneSeries,
    variances: tuple[np.ndarray, np.ndarray],
    index: dict[str, int],
    zones: list[str],
    settings: ChangeSettings,
) -> tuple[np.ndarray, ...]:
    """Baseline and target composite means (NaN when not valid), Var(d) and effective pixels."""
    rows = series.rows(zones)
    out = []
    for year in (settings.baseline_year, settings.target_year):
        label = str(year)
        vals = np.full(len(zones), np.nan)
        if label in series.months:
            j = series.months.index(label)
            have = rows >= 0
            v = series.values["mean_radiance"][rows[have], j]
            ok = series.valid_fraction[rows[have], j] >= settings.min_valid_fraction
            vals[have] = np.where(ok, v, np.nan)
        out.append(vals)
    pos = np.array([index.get(z, -1) for z in zones], dtype="int64")
    var = np.where(pos >= 0, variances[0][np.maximum(pos, 0)], np.nan)
    neff = np.where(pos >= 0, variances[1][np.maximum(pos, 0)], np.nan)
    return out[0], out[1], var, neff


def annual_sensitivity_table(
    table: pd.DataFrame,
    variances: dict[str, tuple[np.ndarray, np.ndarray]],
    zone_names: list[str],
    sites: pd.DataFrame,
    by_radius: dict[float, list[str]],
    ring: list[str],
    base: ChangeSettings,
    claim_mask: np.ndarray,
) -> pd.DataFrame:
    """Counts over threshold x radius x adjustment x pixel rule (statistic and months do not
    apply to one composite per year), with the monthly table's columns."""
    scope = claim_mask if claim_mask.any() else np.ones(len(sites), dtype=bool)
    rows = []
    for radius, rule in itertools.product(by_radius, variances):
        series = ZoneSeries.from_table(table[table["pixel_rule"] == rule])
        ch = annual_site_changes(
            series, variances[rule], zone_names, sites, by_radius[radius], ring, base
        )[scope]
        for threshold, adjust in itertools.product((0.10, 0.18, 0.25, 0.35), ("absolute", "ring")):
            p = "adjusted_" if adjust == "ring" else ""
            n_col = "n_months_adjusted" if adjust == "ring" else "n_months"
            classes = classify_arrays(
                ch[f"{p}log_ratio"].to_numpy(float),
                ch[f"{p}log_ci_low"].to_numpy(float),
                ch[f"{p}log_ci_high"].to_numpy(float),
                ch[n_col].to_numpy(),
                threshold,
                base.min_matched_months,
            )
            rows.append(
                {
                    "threshold": threshold,
                    "radius_m": radius,
                    "statistic": ANNUAL_STATISTIC,
                    "month_window": "all",
                    "adjustment": adjust,
                    "pixel_rule": rule,
                    "n_sites": int(scope.sum()),
                    **count_classes(pd.Series(classes, dtype=object)),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "threshold",
            "radius_m",
            "statistic",
            "month_window",
            "adjustment",
            "pixel_rule",
            "n_sites",
            *CLASSES,
        ],
    )


def annual_calibration(
    table: pd.DataFrame,
    rasters: Sequence[MonthlyRaster],
    controls: gpd.GeoDataFrame,
    base: ChangeSettings,
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> dict[str, Any] | None:
    """:func:`pipeline.judge.sensitivity.calibration` for annual composites: lit controls, the year
    before the baseline against the baseline year, classified by the annual rule."""
    from pipeline.judge.sensitivity import (
        CONTROL_EXCLUSION_M,
        CONTROL_MIN_RADIANCE,
        CONTROL_REACH_M,
        CONTROL_SPACING_DEG,
    )

    y0, y1 = base.baseline_year - 1, base.baseline_year
    names = list(controls["zone"])
    if not names or str(y0) not in set(table["month"]):
        return None
    series = ZoneSeries.from_table(table[table["zone"].isin(set(names))])
    var = pixel_variances(
        rasters, controls, ("exact",), (y0, y1), base.epsilon, min_cf_cvg, bm_quality
    )["exact"]
    settings = ChangeSettings(**{**base.__dict__, "baseline_year": y0, "target_year": y1})
    fake = pd.DataFrame({"site_id": names})
    ch = annual_site_changes(series, var, names, fake, names, None, settings)
    lit = np.minimum(ch["baseline_value"], ch["target_value"]) >= CONTROL_MIN_RADIANCE
    ch = ch[lit & np.isfinite(ch["log_ratio"])]
    if ch.empty:
        return None
    a = np.abs(ch["log_ratio"].to_numpy(float))
    called = ch["class"].isin(("brightened", "dimmed")).mean()
    return {
        "controls": (
            f"{len(ch)} lit places (annual mean >= {CONTROL_MIN_RADIANCE} nW/cm2/sr in both years) on a "
            f"{CONTROL_SPACING_DEG} deg lattice, {CONTROL_EXCLUSION_M / 1000:.0f}-"
            f"{CONTROL_REACH_M / 1000:.0f} km from the sites, {y0} vs {y1}, annual composites"
        ),
        "n_controls": len(ch),
        "abs_log_ratio_p50": float(np.percentile(a, 50)),
        "abs_log_ratio_p95": float(np.percentile(a, 95)),
        "abs_log_ratio_max": float(a.max()),
        "false_positive_rate_at_default": float(called),
        "default_threshold": base.threshold,
        "threshold_exceeds_p95": bool(base.threshold > np.percentile(a, 95)),
    }
