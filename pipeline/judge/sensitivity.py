"""Sensitivity: how much of the verdict is method, and how much change is chance.

Inputs
    The zone-by-month table holding every pixel rule and radius variant (one extraction
    pass: weights once, variants reuse the table), the site table, the zone names.
Outputs
    * ``sensitivity``: one row per method variant (threshold, radius, statistic, month
      window, absolute or ring-adjusted, pixel rule) with its class counts;
    * ``robustness``: a summary for ``verdict.json``;
    * ``calibration``: the change that control towns (lit places away from every site)
      show between the year before the baseline and the baseline year, away from every site, and
      how often the default rule would call them changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.config import PIXEL_RULES
from pipeline.judge.change import (
    ChangeSettings,
    ZoneSeries,
    classify,
    classify_arrays,
    count_classes,
    site_changes,
    year_matrix,
)
from pipeline.read.claims import DEFAULT_CLAIM, Claim
from pipeline.read.sites import geodesic_circles

THRESHOLDS = (0.10, 0.18, 0.25, 0.35)
RADII_M = (1000.0, 2000.0, 3000.0)
# The sum of lights is not a separate variant: over a fixed footprint (filled at the mean) its
# log ratio equals the mean's exactly, so it would only duplicate rows.
STATISTICS = ("median", "mean")
VARIANT_BOOT = 500  # resamples per variant: a 95% interval's ends to about +-0.02 in ln ratio
WINDOWS: dict[str, tuple[int, ...]] = {"all": tuple(range(1, 13)), "feb-dec": tuple(range(2, 13))}
RULES = PIXEL_RULES  # every pixel rule is a variant
CONTROL_SPACING_DEG = 0.03  # lattice of candidate control places (~3 km)
CONTROL_EXCLUSION_M = 10_000.0  # candidates this close to a site are not controls
CONTROL_REACH_M = 40_000.0  # ... and controls stay this close to some site (same region)
MAX_CONTROLS = 4000
CONTROL_MIN_RADIANCE = 0.5  # nW/cm2/sr: a "lit" control (rural background is ~0.1-0.3)


@dataclass(frozen=True)
class ZoneNames:
    """Which zone of the table holds each site's polygon, per radius, and its ring."""

    by_radius: dict[float, list[str]]
    ring: list[str]


def sensitivity_table(
    table: pd.DataFrame,
    sites: pd.DataFrame,
    zones: ZoneNames,
    base: ChangeSettings,
    claim_mask: np.ndarray,
    headline: tuple[float, str] | None = None,
) -> pd.DataFrame:
    """Counts over the variant grid, over the claim's sites (all sites when none are in the run).

    The costly part (bootstrap) runs once per radius, statistic, window and rule;
    thresholds and adjustments only re-classify. Variants use :data:`VARIANT_BOOT`
    resamples, except the one with the headline's ``(radius, pixel rule)``, statistic and
    months, which uses the headline's, so that row reproduces the headline exactly.
    """
    needed = {z for names in zones.by_radius.values() for z in names} | set(zones.ring)
    table = table[table["zone"].isin(needed)]
    series = {rule: ZoneSeries.from_table(table[table["pixel_rule"] == rule]) for rule in RULES}
    scope = claim_mask if claim_mask.any() else np.ones(len(sites), dtype=bool)
    rows = []
    for radius, statistic, window, rule in itertools.product(
        zones.by_radius, STATISTICS, WINDOWS, RULES
    ):
        is_headline = (
            (radius, rule) == headline
            and statistic == base.statistic
            and WINDOWS[window] == base.months
        )
        settings = ChangeSettings(
            **{
                **base.__dict__,
                "statistic": statistic,
                "months": WINDOWS[window],
                "n_boot": base.n_boot if is_headline else min(base.n_boot, VARIANT_BOOT),
            }
        )
        ch = site_changes(series[rule], sites, zones.by_radius[radius], zones.ring, settings)[scope]
        for threshold, adjust in itertools.product(THRESHOLDS, ("absolute", "ring")):
            prefix = "adjusted_" if adjust == "ring" else ""
            n_col = "n_months_adjusted" if adjust == "ring" else "n_months"
            classes = classify_arrays(
                ch[f"{prefix}log_ratio"].to_numpy(float),
                ch[f"{prefix}log_ci_low"].to_numpy(float),
                ch[f"{prefix}log_ci_high"].to_numpy(float),
                ch[n_col].to_numpy(),
                threshold,
                base.min_matched_months,
            )
            rows.append(
                {
                    "threshold": threshold,
                    "radius_m": radius,
                    "statistic": statistic,
                    "month_window": window,
                    "adjustment": adjust,
                    "pixel_rule": rule,
                    "n_sites": int(scope.sum()),
                    **count_classes(pd.Series(classes, dtype=object)),
                }
            )
    return pd.DataFrame(rows)


def _shares(sens: pd.DataFrame, claim: Claim) -> dict[str, Any]:
    b = sens["brightened"]
    k, n = claim.brightened, claim.n_sites
    judged = (sens["n_sites"] == n) & (sens["insufficient_data"] == 0)
    exactly = float(((b == k) & judged).mean())
    at_most = float(((b <= k) & judged).mean())
    undetermined = float((~judged).mean())
    return {
        "n_variants": len(sens),
        "brightened_min": int(b.min()),
        "brightened_max": int(b.max()),
        "brightened_median": float(b.median()),
        # a variant counts only where all n claim sites could be classified, as the verdict does;
        # the named keys (share_exactly_5_of_20 for the default claim) and the generic ones agree
        "claim_k": k,
        "claim_n": n,
        f"share_exactly_{k}_of_{n}": exactly,
        f"share_at_most_{k}": at_most,
        "share_exactly_k_of_n": exactly,
        "share_at_most_k": at_most,
        "share_undetermined": undetermined,
    }


def robustness_summary(
    sens: pd.DataFrame, claim_scope: bool = True, claim: Claim = DEFAULT_CLAIM
) -> dict[str, Any]:
    """How the brightened count moves across defensible variants, against the claim's k of n.

    ``claim_scope`` False means the run had no sites of the claim's batch: counts are over
    all sites and the shares against "k of n" are not meaningful (None). They are None too
    when a variant has another number of claim sites than the claim's n.
    """
    k, n = claim.brightened, claim.n_sites
    scope = (
        f"the claim's batch-{claim.batch} sites"
        if claim_scope
        else f"all sites (no batch-{claim.batch} sites in this run)"
    )
    out: dict[str, Any] = {"scope": scope, **_shares(sens, claim)}
    if not claim_scope or not (sens["n_sites"] == n).all():  # "k of n" needs the n
        out |= {
            key: None
            for key in (
                f"share_exactly_{k}_of_{n}",
                f"share_at_most_{k}",
                "share_exactly_k_of_n",
                "share_at_most_k",
                "share_undetermined",
            )
        }
    if "adjustment" in sens:
        out["by_adjustment"] = {adj: _shares(g, claim) for adj, g in sens.groupby("adjustment")}
    out["dimensions"] = {
        "threshold": list(THRESHOLDS),
        "radius_m": sorted({float(r) for r in sens.get("radius_m", RADII_M)}),
        "statistic": list(STATISTICS),
        "month_window": list(WINDOWS),
        "adjustment": ["absolute", "ring"],
        "pixel_rule": list(RULES),
    }
    if "statistic" in sens and not set(sens["statistic"]) <= set(
        STATISTICS
    ):  # annual composites' rows
        out["dimensions"]["statistic"] = list(pd.unique(sens["statistic"]))
        out["dimensions"]["month_window"] = list(pd.unique(sens["month_window"]))
    if "product" in sens:  # more than one product for the same years (monthly and annual)
        out["dimensions"]["product"] = list(pd.unique(sens["product"]))
        out["by_product"] = {p: _shares(g, claim) for p, g in sens.groupby("product", sort=False)}
    return out


def control_zones(sites: gpd.GeoDataFrame, radius_m: float, seed: int = 0) -> gpd.GeoDataFrame:
    """Candidate control places: lattice points 10-40 km from a site and 10 km from all.

    At most :data:`MAX_CONTROLS`, drawn with a fixed seed, so a run over sites spread
    across continents stays cheap. Circles are the sites' own (:func:`pipeline.read.sites.geodesic_circles`).
    Which candidates are lit is decided from the data by :func:`calibration`.
    """
    centres = np.column_stack(
        [sites["center_lon"].to_numpy(float), sites["center_lat"].to_numpy(float)]
    )
    centres = centres[np.isfinite(centres).all(axis=1)]
    if not len(centres):
        return gpd.GeoDataFrame({"zone": []}, geometry=[], crs="EPSG:4326")
    step = CONTROL_SPACING_DEG
    reach = int(
        np.ceil(
            CONTROL_REACH_M / 111_000 / step / np.cos(np.radians(min(abs(centres[:, 1]).max(), 80)))
        )
    )
    offsets = np.arange(-reach, reach + 1)
    cells = (
        np.unique(
            np.concatenate(
                [
                    np.column_stack([a.ravel(), b.ravel()])
                    for a, b in (
                        np.meshgrid(
                            np.round(c[0] / step) + offsets, np.round(c[1] / step) + offsets
                        )
                        for c in centres
                    )
                ]
            ),
            axis=0,
        )
        * step
    )
    nearest = np.full(len(cells), np.inf)
    for c in centres:  # equirectangular distance: accurate to <0.5% at these ranges
        dx = (cells[:, 0] - c[0]) * 111_320 * np.cos(np.radians(c[1]))
        dy = (cells[:, 1] - c[1]) * 110_574
        nearest = np.minimum(nearest, np.hypot(dx, dy))
    cells = cells[
        (nearest >= CONTROL_EXCLUSION_M) & (nearest <= CONTROL_REACH_M) & (abs(cells[:, 1]) < 85)
    ]
    if len(cells) > MAX_CONTROLS:
        cells = cells[
            np.sort(np.random.default_rng(seed).choice(len(cells), MAX_CONTROLS, replace=False))
        ]
    geoms = geodesic_circles(cells[:, 0], cells[:, 1], radius_m)
    return gpd.GeoDataFrame(
        {"zone": [f"@control{i:05d}" for i in range(len(cells))]}, geometry=geoms, crs="EPSG:4326"
    )


def calibration(
    table: pd.DataFrame, control_names: Sequence[str], base: ChangeSettings
) -> dict[str, Any] | None:
    """Placebo test: lit control places, the year before the baseline against the baseline year.

    The distribution of their |d| is the change a place shows by chance (plus whatever
    real change happened there, so it is conservative); the share the default rule calls
    changed is its false-positive rate. None when the earlier year is absent.
    """
    y0, y1 = base.baseline_year - 1, base.baseline_year
    if not control_names or not table["month"].str.startswith(f"{y0}-").any():
        return None
    from pipeline.judge.change import paired_change

    names = list(control_names)
    series = ZoneSeries.from_table(table[table["zone"].isin(set(names))])
    args = (
        base.months,
        "sum_radiance" if base.statistic == "sol" else "mean_radiance",
        base.min_valid_fraction,
    )
    b = year_matrix(series, names, y0, *args)
    t = year_matrix(series, names, y1, *args)

    # "lit" on the mean radiance of both years: selecting on one year alone would pick places at a
    # chance high and inflate their apparent change (regression to the mean)
    mb = year_matrix(series, names, y0, base.months, "mean_radiance", base.min_valid_fraction)
    mt = year_matrix(series, names, y1, base.months, "mean_radiance", base.min_valid_fraction)
    lit = np.zeros(len(names), dtype=bool)
    seen = np.isfinite(mb).any(axis=1) & np.isfinite(mt).any(axis=1)
    lit[seen] = (
        np.minimum(np.nanmedian(mb[seen], axis=1), np.nanmedian(mt[seen], axis=1))
        >= CONTROL_MIN_RADIANCE
    )
    weight = series.weights(names)
    ds, called = [], 0
    for i in np.flatnonzero(lit):
        m = np.isfinite(b[i]) & np.isfinite(t[i])
        if m.sum() < base.min_matched_months:
            continue
        r = paired_change(b[i, m], t[i, m], base, control_names[int(i)], weight[i])
        ds.append(r["log_ratio"])
        called += classify(
            r["log_ratio"],
            r["log_ci_low"],
            r["log_ci_high"],
            int(m.sum()),
            base.threshold,
            base.min_matched_months,
        ) in ("brightened", "dimmed")
    if not ds:
        return None
    a = np.abs(np.asarray(ds))
    return {
        "controls": (
            f"{len(ds)} lit places (median >= {CONTROL_MIN_RADIANCE} nW/cm2/sr in both years) on a "
            f"{CONTROL_SPACING_DEG} deg lattice, {CONTROL_EXCLUSION_M / 1000:.0f}-{CONTROL_REACH_M / 1000:.0f} km "
            f"from the sites, "
            f"{y0} vs {y1}"
        ),
        "n_controls": len(ds),
        "abs_log_ratio_p50": float(np.percentile(a, 50)),
        "abs_log_ratio_p95": float(np.percentile(a, 95)),
        "abs_log_ratio_max": float(a.max()),
        "false_positive_rate_at_default": called / len(ds),
        "default_threshold": base.threshold,
        "threshold_exceeds_p95": bool(base.threshold > np.percentile(a, 95)),
    }
