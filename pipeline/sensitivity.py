"""Sensitivity: how much of the verdict is method, and how much change is chance.

Inputs
    The zone-by-month table holding every pixel rule and radius variant (one extraction
    pass: weights once, variants reuse the table), the site table, the zone names.
Outputs
    * ``sensitivity``: one row per method variant (threshold, radius, statistic, month
      window, absolute or ring-adjusted, pixel rule) with its class counts;
    * ``robustness``: a summary for ``verdict.json``;
    * ``calibration``: the change that stable control places (background rings) show
      between the two years before the baseline, and how often the default rule would
      wrongly call them changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.change import ChangeSettings, classify, count_classes, site_changes, year_matrix
from pipeline.verdict import CLAIM

THRESHOLDS = (0.10, 0.18, 0.25, 0.35)
RADII_M = (1000.0, 2000.0, 3000.0)
STATISTICS = ("median", "mean", "sol")
WINDOWS: dict[str, tuple[int, ...]] = {"all": tuple(range(1, 13)), "feb-dec": tuple(range(2, 13))}
RULES = ("exact", "centroid", "all_touched")
VARIANT_BOOT = 400  # resamples per variant: enough for a 95% interval's ends to +-0.02


@dataclass(frozen=True)
class ZoneNames:
    """Which zone of the table holds each site's polygon, per radius, and its ring."""

    by_radius: dict[float, list[str]]
    ring: list[str]


def sensitivity_table(table: pd.DataFrame, sites: pd.DataFrame, zones: ZoneNames,
                      base: ChangeSettings, claim_mask: np.ndarray) -> pd.DataFrame:
    """Counts over the variant grid; the costly part (bootstrap) runs once per non-threshold variant."""
    rows = []
    for radius, statistic, window, rule in itertools.product(zones.by_radius, STATISTICS, WINDOWS, RULES):
        settings = ChangeSettings(**{**base.__dict__, "statistic": statistic, "months": WINDOWS[window],
                                     "n_boot": VARIANT_BOOT})
        t = table[table["pixel_rule"] == rule]
        ch = site_changes(t, sites, zones.by_radius[radius], zones.ring, settings)
        for threshold, adjust in itertools.product(THRESHOLDS, ("absolute", "ring")):
            prefix = "adjusted_" if adjust == "ring" else ""
            n_col = "n_months_adjusted" if adjust == "ring" else "n_months"
            classes = pd.Series([
                classify(r[f"{prefix}log_ratio"], r[f"{prefix}log_ci_low"], r[f"{prefix}log_ci_high"],
                         r[n_col], threshold, base.min_matched_months)
                for _, r in ch.iterrows()
            ])
            scope = classes[claim_mask] if claim_mask.any() else classes
            rows.append({"threshold": threshold, "radius_m": radius, "statistic": statistic,
                         "month_window": window, "adjustment": adjust, "pixel_rule": rule,
                         "n_sites": len(scope), **count_classes(scope)})
    return pd.DataFrame(rows)


def robustness_summary(sens: pd.DataFrame) -> dict[str, Any]:
    """How the brightened count moves across defensible variants, against the claim's 5."""
    b = sens["brightened"]
    full = sens["n_sites"] == CLAIM["n_sites"]
    return {
        "n_variants": len(sens),
        "brightened_min": int(b.min()),
        "brightened_max": int(b.max()),
        "brightened_median": float(b.median()),
        "share_exactly_5_of_20": float(((b == CLAIM["brightened"]) & full).mean()),
        "share_at_most_5": float((b <= CLAIM["brightened"]).mean()),
        "dimensions": {"threshold": list(THRESHOLDS), "radius_m": sorted({float(r) for r in sens["radius_m"]}),
                       "statistic": list(STATISTICS), "month_window": list(WINDOWS),
                       "adjustment": ["absolute", "ring"], "pixel_rule": list(RULES)},
    }


def calibration(table: pd.DataFrame, ring_zones: Sequence[str], base: ChangeSettings) -> dict[str, Any] | None:
    """Placebo: background rings between the two years before the baseline (nothing was built).

    Their |d| distribution is the change a stable place shows by chance; the share the
    default rule calls changed is its false-positive rate. None when those years are absent.
    """
    y0, y1 = base.baseline_year - 1, base.baseline_year
    if not table["month"].str.startswith(f"{y0}-").any():
        return None
    args = (base.months, "sum_radiance" if base.statistic == "sol" else "mean_radiance", base.min_valid_fraction)
    b = year_matrix(table, list(ring_zones), y0, *args)
    t = year_matrix(table, list(ring_zones), y1, *args)
    from pipeline.change import paired_change  # local: keeps the module's public surface small

    ds, called = [], 0
    for i, z in enumerate(ring_zones):
        m = np.isfinite(b[i]) & np.isfinite(t[i])
        if m.sum() < base.min_matched_months:
            continue
        r = paired_change(b[i, m], t[i, m], base, z + "@placebo")
        ds.append(r["log_ratio"])
        called += classify(r["log_ratio"], r["log_ci_low"], r["log_ci_high"], int(m.sum()),
                           base.threshold, base.min_matched_months) in ("brightened", "dimmed")
    if not ds:
        return None
    a = np.abs(np.asarray(ds))
    return {
        "controls": f"background rings, {y0} vs {y1}",
        "n_controls": len(ds),
        "abs_log_ratio_p50": float(np.percentile(a, 50)),
        "abs_log_ratio_p95": float(np.percentile(a, 95)),
        "abs_log_ratio_max": float(a.max()),
        "false_positive_rate_at_default": called / len(ds),
        "default_threshold": base.threshold,
        "threshold_exceeds_p95": bool(base.threshold > np.percentile(a, 95)),
    }
