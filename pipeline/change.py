"""Change: yearly luminosity change per site, its uncertainty, and its class.

Inputs
    The zone-by-month table from :mod:`pipeline.zonal` (one pixel rule), the site
    table, and the names of each site's zone and background-ring zone.
Outputs
    One row per site: the yearly statistic in both years over *matched* calendar
    months, the log ratio ``d = ln((T + eps) / (B + eps))`` and ``change_pct``, a paired
    bootstrap interval, the class, and the same for the ring-adjusted change
    ``d_site - d_ring``.

Method (defaults in :class:`pipeline.config.Params`, rationale in the README):

* a site-month counts only when at least ``min_valid_fraction`` of the site's weight is
  on observed pixels (cloud-free count / quality), so clouds never read as darkness;
* baseline and target are compared on the calendar months valid in both years, because
  snow, stray light and moonlight differ by season; fewer than ``min_matched_months``
  makes the site ``insufficient_data``, never ``unchanged``;
* the yearly value is the median of the matched months (robust to fires, boats and
  single bad composites; mean and sum of lights are options);
* the interval resamples matched months in pairs (the same calendar months for both
  years), seeded per site so results do not depend on the order of sites;
* brightened: ``d >= threshold`` and the interval's lower end above 0; dimmed: the
  mirror image; otherwise unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

CLASSES = ("brightened", "unchanged", "dimmed", "insufficient_data")


@dataclass(frozen=True)
class ChangeSettings:
    """The subset of :class:`~pipeline.config.Params` the change stage uses."""

    baseline_year: int
    target_year: int
    months: tuple[int, ...]
    statistic: str
    epsilon: float
    threshold: float
    min_valid_fraction: float
    min_matched_months: int
    confidence: float
    n_boot: int
    seed: int

    @classmethod
    def from_params(cls, p: object, **overrides: object) -> ChangeSettings:
        values = {f: getattr(p, f) for f in cls.__dataclass_fields__}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ZoneSeries:
    """The zone-by-month table of one pixel rule as arrays (zone, month), built once.

    Sensitivity variants slice it instead of re-pivoting the long table.
    """

    zone_index: dict[str, int]
    months: tuple[str, ...]
    values: dict[str, np.ndarray]  # column -> (zone, month)
    valid_fraction: np.ndarray
    weight: np.ndarray  # per zone

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> ZoneSeries:
        if table.duplicated(["zone", "month"]).any():
            raise ValueError("the table has several rows for one zone and month (several pixel rules?); "
                             "pass one pixel rule")
        zones = pd.Index(pd.unique(table["zone"]))
        months = pd.Index(sorted(pd.unique(table["month"])))
        zi, mi = zones.get_indexer(table["zone"]), months.get_indexer(table["month"])

        def grid(col: str) -> np.ndarray:
            out = np.full((len(zones), len(months)), np.nan)
            out[zi, mi] = table[col].to_numpy(dtype="float64")
            return out

        weight = np.zeros(len(zones))
        weight[zi] = table["weight"].to_numpy(dtype="float64")
        return cls({z: i for i, z in enumerate(zones)}, tuple(months),
                   {c: grid(c) for c in ("mean_radiance", "sum_radiance")}, grid("valid_fraction"), weight)

    def rows(self, zones: list[str]) -> np.ndarray:
        return np.array([self.zone_index.get(z, -1) for z in zones], dtype="int64")

    def weights(self, zones: list[str]) -> np.ndarray:
        """Each zone's weight (pixels covered), 0 for zones not in the table."""
        rows = self.rows(zones)
        return np.where(rows >= 0, self.weight[np.maximum(rows, 0)], 0.0)


def year_matrix(table: pd.DataFrame | ZoneSeries, zones: list[str], year: int, months: tuple[int, ...],
                column: str, min_valid_fraction: float) -> np.ndarray:
    """Array (zone, 12) of ``column`` for one year; NaN where the zone-month is not valid."""
    series = table if isinstance(table, ZoneSeries) else ZoneSeries.from_table(table)
    out = np.full((len(zones), 12), np.nan)
    rows = series.rows(zones)
    have = rows >= 0
    for j, month in enumerate(series.months):
        if not month.startswith(f"{year}-") or int(month[5:7]) not in months:
            continue
        vals = series.values[column][rows[have], j]
        ok = series.valid_fraction[rows[have], j] >= min_valid_fraction
        out[have, int(month[5:7]) - 1] = np.where(ok, vals, np.nan)
    return out


def _yearly(values: np.ndarray, statistic: str, axis: int = -1) -> np.ndarray:
    """The yearly value of matched months (never NaN here: unmatched months are dropped first)."""
    if statistic == "median":
        return np.median(values, axis=axis)
    if statistic == "mean":
        return np.mean(values, axis=axis)
    if statistic == "sol":
        return np.sum(values, axis=axis)
    raise ValueError(f"statistic {statistic!r} not valid; must be one of median, mean, sol")


def log_ratio(target: np.ndarray | float, baseline: np.ndarray | float, eps: np.ndarray | float) -> np.ndarray:
    """``ln((T + eps) / (B + eps))``: symmetric, scale-free, tame near zero."""
    return np.log((np.asarray(target) + eps) / (np.asarray(baseline) + eps))


def _eps(settings: ChangeSettings, weight: float, n: int) -> float:
    # The sum of lights is a total over a zone's pixels and months: scale eps by that zone's own
    # weight and month count, so eps means the same radiance floor for every zone and statistic.
    return settings.epsilon * (weight * n if settings.statistic == "sol" else 1.0)


def paired_change(base: np.ndarray, targ: np.ndarray, settings: ChangeSettings, key: str,
                  weight: float = 1.0, ring_base: np.ndarray | None = None,
                  ring_targ: np.ndarray | None = None, ring_weight: float = 1.0) -> dict[str, float]:
    """Change of one zone over matched months (1-D arrays of equal length, no NaN).

    With ring arrays, the change is ``d_site - d_ring`` on the same resampled months.
    The interval is the bootstrap percentile interval, widened if needed to contain the
    estimate itself (a median of few months can fall outside its own percentile band).
    """
    n = base.size
    eps, ring_eps = _eps(settings, weight, n), _eps(settings, ring_weight, n)
    stat = settings.statistic
    d = float(log_ratio(_yearly(targ, stat), _yearly(base, stat), eps))
    if ring_base is not None:
        d -= float(log_ratio(_yearly(ring_targ, stat), _yearly(ring_base, stat), ring_eps))
    rng = np.random.default_rng([settings.seed, zlib.crc32(key.encode())])
    idx = rng.integers(0, n, size=(settings.n_boot, n))
    boot = log_ratio(_yearly(targ[idx], stat), _yearly(base[idx], stat), eps)
    if ring_base is not None:
        boot = boot - log_ratio(_yearly(ring_targ[idx], stat), _yearly(ring_base[idx], stat), ring_eps)
    alpha = (1 - settings.confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return {"log_ratio": d, "log_ci_low": float(min(lo, d)), "log_ci_high": float(max(hi, d))}


def classify(d: float, lo: float, hi: float, n_months: int, threshold: float, min_months: int) -> str:
    """Brightened / dimmed only when past the threshold *and* the interval excludes zero."""
    if n_months < min_months or not np.isfinite(d):
        return "insufficient_data"
    if d >= threshold and lo > 0:
        return "brightened"
    if d <= -threshold and hi < 0:
        return "dimmed"
    return "unchanged"


def classify_arrays(d: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_months: np.ndarray, threshold: float,
                    min_months: int) -> np.ndarray:
    """:func:`classify` over arrays (the sensitivity grid classifies thousands of rows)."""
    out = np.full(d.shape, "unchanged", dtype=object)
    out[(d >= threshold) & (lo > 0)] = "brightened"
    out[(d <= -threshold) & (hi < 0)] = "dimmed"
    out[(n_months < min_months) | ~np.isfinite(d)] = "insufficient_data"
    return out


_EMPTY = {"log_ratio": np.nan, "log_ci_low": np.nan, "log_ci_high": np.nan}


def site_changes(table: pd.DataFrame | ZoneSeries, sites: pd.DataFrame, site_zone: list[str],
                 ring_zone: list[str] | None, settings: ChangeSettings) -> pd.DataFrame:
    """One row per site: yearly values, change, interval, class; ring-adjusted beside it.

    ``table`` holds one pixel rule. ``site_zone[i]`` / ``ring_zone[i]`` name the zones
    of ``sites.iloc[i]``.
    """
    series = table if isinstance(table, ZoneSeries) else ZoneSeries.from_table(table)
    column = "sum_radiance" if settings.statistic == "sol" else "mean_radiance"
    args = (settings.months, column, settings.min_valid_fraction)
    sb = year_matrix(series, site_zone, settings.baseline_year, *args)
    st = year_matrix(series, site_zone, settings.target_year, *args)
    weight = series.weights(site_zone)
    if ring_zone is not None:
        rb = year_matrix(series, ring_zone, settings.baseline_year, *args)
        rt = year_matrix(series, ring_zone, settings.target_year, *args)
        ring_weight = series.weights(ring_zone)
    rows = []
    for i, sid in enumerate(sites["site_id"]):
        matched = np.isfinite(sb[i]) & np.isfinite(st[i])
        n = int(matched.sum())
        row: dict[str, object] = {
            "site_id": sid,
            "n_months": n,
            "months_matched": ",".join(str(m + 1) for m in np.flatnonzero(matched)),
            "baseline_value": float(_yearly(sb[i, matched], settings.statistic)) if n else np.nan,
            "target_value": float(_yearly(st[i, matched], settings.statistic)) if n else np.nan,
        }
        row |= paired_change(sb[i, matched], st[i, matched], settings, sid, weight[i]) if n else _EMPTY
        row["class"] = classify(row["log_ratio"], row["log_ci_low"], row["log_ci_high"], n,
                                settings.threshold, settings.min_matched_months)
        if ring_zone is not None:
            row |= _ring_columns(sb[i], st[i], rb[i], rt[i], settings, sid, weight[i], ring_weight[i])
        rows.append(row)
    out = pd.DataFrame(rows, columns=None if rows else ["site_id", "n_months", "log_ratio", "log_ci_low",
                                                        "log_ci_high", "class"])
    for col in ("log_ratio", "log_ci_low", "log_ci_high"):
        out[col.replace("log_ratio", "change_pct").replace("log_ci", "ci")] = 100 * np.expm1(out[col])
    return out


def _ring_columns(sb: np.ndarray, st: np.ndarray, rb: np.ndarray, rt: np.ndarray, settings: ChangeSettings,
                  sid: str, weight: float, ring_weight: float) -> dict[str, object]:
    """Ring values and the ring-adjusted change, all on the months valid for site and ring in both years."""
    matched = np.isfinite(sb) & np.isfinite(st) & np.isfinite(rb) & np.isfinite(rt)
    n = int(matched.sum())
    stat = settings.statistic
    ring: dict[str, object] = {
        "ring_baseline_value": float(_yearly(rb[matched], stat)) if n else np.nan,
        "ring_target_value": float(_yearly(rt[matched], stat)) if n else np.nan,
    }
    ring["ring_log_ratio"] = (float(log_ratio(ring["ring_target_value"], ring["ring_baseline_value"],
                                              _eps(settings, ring_weight, n))) if n else np.nan)
    adj = (paired_change(sb[matched], st[matched], settings, sid + "@ring", weight, rb[matched], rt[matched],
                         ring_weight) if n else _EMPTY)
    ring |= {"adjusted_log_ratio": adj["log_ratio"], "adjusted_log_ci_low": adj["log_ci_low"],
             "adjusted_log_ci_high": adj["log_ci_high"], "n_months_adjusted": n,
             "class_ring_adjusted": classify(adj["log_ratio"], adj["log_ci_low"], adj["log_ci_high"], n,
                                             settings.threshold, settings.min_matched_months)}
    return ring


def count_classes(classes: pd.Series) -> dict[str, int]:
    counts = classes.value_counts()
    return {c: int(counts.get(c, 0)) for c in CLASSES}
