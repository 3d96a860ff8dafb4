"""Change: yearly luminosity change per site, its uncertainty, and its class.

Inputs
    The zone-by-month table from :mod:`pipeline.measure.zonal` (one pixel rule), the site
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

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.memo import remembered

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
        return cls(**values)


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
            raise ValueError(
                "the table has several rows for one zone and month (several pixel rules?); "
                "pass one pixel rule"
            )
        zones = pd.Index(pd.unique(table["zone"]))
        months = pd.Index(sorted(pd.unique(table["month"])))
        zi, mi = zones.get_indexer(table["zone"]), months.get_indexer(table["month"])

        def grid(col: str) -> np.ndarray:
            out = np.full((len(zones), len(months)), np.nan)
            out[zi, mi] = table[col].to_numpy(dtype="float64")
            return out

        weight = np.zeros(len(zones))
        weight[zi] = table["weight"].to_numpy(dtype="float64")
        return cls(
            {z: i for i, z in enumerate(zones)},
            tuple(months),
            {c: grid(c) for c in ("mean_radiance", "sum_radiance")},
            grid("valid_fraction"),
            weight,
        )

    def rows(self, zones: list[str]) -> np.ndarray:
        return np.array([self.zone_index.get(z, -1) for z in zones], dtype="int64")

    def weights(self, zones: list[str]) -> np.ndarray:
        """Each zone's weight (pixels covered), 0 for zones not in the table."""
        rows = self.rows(zones)
        return np.where(rows >= 0, self.weight[np.maximum(rows, 0)], 0.0)


def year_matrix(
    table: pd.DataFrame | ZoneSeries,
    zones: list[str],
    year: int,
    months: tuple[int, ...],
    column: str,
    min_valid_fraction: float,
) -> np.ndarray:
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


def _yearly_rows(values: np.ndarray, matched: np.ndarray, statistic: str) -> np.ndarray:
    """:func:`_yearly` of each row's matched months at once; NaN for rows with none."""
    masked = np.where(matched, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no matched month
        if statistic == "median":
            out = np.nanmedian(masked, axis=1)
        elif statistic == "mean":
            out = np.nanmean(masked, axis=1)
        else:
            out = np.nansum(masked, axis=1)
    return np.where(matched.any(axis=1), out, np.nan)


def log_ratio(
    target: np.ndarray | float, baseline: np.ndarray | float, eps: np.ndarray | float
) -> np.ndarray:
    """``ln((T + eps) / (B + eps))``: symmetric, scale-free, tame near zero."""
    return np.log((np.asarray(target) + eps) / (np.asarray(baseline) + eps))


def _eps(settings: ChangeSettings, weight: float, n: int) -> float:
    # The sum of lights is a total over a zone's pixels and months: scale eps by that zone's own
    # weight and month count, so eps means the same radiance floor for every zone and statistic.
    return settings.epsilon * (weight * n if settings.statistic == "sol" else 1.0)


def paired_change(
    base: np.ndarray,
    targ: np.ndarray,
    settings: ChangeSettings,
    key: str,
    weight: float = 1.0,
    ring_base: np.ndarray | None = None,
    ring_targ: np.ndarray | None = None,
    ring_weight: float = 1.0,
) -> dict[str, float]:
    """Change of one zone over matched months (1-D arrays of equal length, no NaN).

    With ring arrays, the change is ``d_site - d_ring`` on the same resampled months.
    """
    ring = (
        None
        if ring_base is None or ring_targ is None
        else (ring_base[None], ring_targ[None], np.array([ring_weight]))
    )
    d, lo, hi = paired_changes(base[None], targ[None], settings, [key], np.array([weight]), ring)
    return {"log_ratio": float(d[0]), "log_ci_low": float(lo[0]), "log_ci_high": float(hi[0])}


def paired_changes(
    base: np.ndarray,
    targ: np.ndarray,
    settings: ChangeSettings,
    keys: list[str],
    weight: np.ndarray,
    ring: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    batch: int = 128,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Changes and intervals of many zones with the same number of matched months.

    ``base``/``targ``: arrays (zone, month) without NaN; ``ring``: the same for each
    zone's ring, with the ring weights. Each zone's resamples come from its own seed
    (``key``), so a result does not depend on which other zones are computed with it.
    The interval is the bootstrap percentile interval, widened if needed to contain the
    estimate itself (a median of few months can fall outside its own percentile band).
    Kept by :func:`~pipeline.memo.remembered` under all it reads, which is not the threshold.
    """
    s = settings
    parts = (
        *("paired_changes", base, targ, keys, weight, ring),
        *(s.statistic, s.confidence, s.epsilon, s.seed, s.n_boot),
    )
    out = remembered(parts, lambda: np.stack(_paired(base, targ, s, keys, weight, ring, batch)))
    return out[0], out[1], out[2]


def _paired(
    base: np.ndarray,
    targ: np.ndarray,
    settings: ChangeSettings,
    keys: list[str],
    weight: np.ndarray,
    ring: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    batch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = base.shape[1]
    stat, alpha = settings.statistic, (1 - settings.confidence) / 2
    eps = np.array([_eps(settings, w, n) for w in weight])[:, None]
    d = log_ratio(_yearly(targ, stat), _yearly(base, stat), eps[:, 0])
    if ring is not None:
        ring_eps = np.array([_eps(settings, w, n) for w in ring[2]])[:, None]
        d = d - log_ratio(_yearly(ring[1], stat), _yearly(ring[0], stat), ring_eps[:, 0])
    lo, hi = np.empty(len(keys)), np.empty(len(keys))
    for s in range(0, len(keys), batch):  # bounded memory: batch x n_boot x months
        sl = slice(s, s + batch)
        idx = np.stack(
            [
                np.random.default_rng([settings.seed, zlib.crc32(k.encode())]).integers(
                    0, n, size=(settings.n_boot, n)
                )
                for k in keys[sl]
            ]
        )

        def draw(a: np.ndarray, sl: slice = sl, idx: np.ndarray = idx) -> np.ndarray:
            return _yearly(np.take_along_axis(a[sl][:, None, :], idx, axis=2), stat)

        boot = log_ratio(draw(targ), draw(base), eps[sl])
        if ring is not None:
            boot = boot - log_ratio(draw(ring[1]), draw(ring[0]), ring_eps[sl])
        lo[sl], hi[sl] = np.quantile(boot, [alpha, 1 - alpha], axis=1)
    return d, np.minimum(lo, d), np.maximum(hi, d)


def classify(
    d: float, lo: float, hi: float, n_months: int, threshold: float, min_months: int
) -> str:
    """Brightened / dimmed only when past the threshold *and* the interval excludes zero."""
    if n_months < min_months or not np.isfinite(d):
        return "insufficient_data"
    if d >= threshold and lo > 0:
        return "brightened"
    if d <= -threshold and hi < 0:
        return "dimmed"
    return "unchanged"


def classify_arrays(
    d: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n_months: np.ndarray,
    threshold: float,
    min_months: int,
) -> np.ndarray:
    """:func:`classify` over arrays (the sensitivity grid classifies thousands of rows)."""
    out = np.full(d.shape, "unchanged", dtype=object)
    out[(d >= threshold) & (lo > 0)] = "brightened"
    out[(d <= -threshold) & (hi < 0)] = "dimmed"
    out[(n_months < min_months) | ~np.isfinite(d)] = "insufficient_data"
    return out


def _changes_by_months(
    vals: list[np.ndarray],
    mask: np.ndarray,
    settings: ChangeSettings,
    keys: list[str],
    weight: np.ndarray,
    ring_weight: np.ndarray | None = None,
) -> np.ndarray:
    """(d, lo, hi) for every zone, batching zones by their number of matched months.

    ``vals``: base and target (and ring base and target) arrays (zone, 12); ``mask``: the
    matched months of each zone. Rows without matched months stay NaN.
    """
    out = np.full((3, mask.shape[0]), np.nan)
    n_by_zone = mask.sum(axis=1)
    for n in np.unique(n_by_zone[n_by_zone > 0]):
        rows = np.flatnonzero(n_by_zone == n)
        picked = [v[rows][mask[rows]].reshape(rows.size, n) for v in vals]
        ring = None if ring_weight is None else (picked[2], picked[3], ring_weight[rows])
        out[:, rows] = paired_changes(
            picked[0], picked[1], settings, [keys[i] for i in rows], weight[rows], ring
        )
    return out


def site_changes(
    table: pd.DataFrame | ZoneSeries,
    sites: pd.DataFrame,
    site_zone: list[str],
    ring_zone: list[str] | None,
    settings: ChangeSettings,
) -> pd.DataFrame:
    """One row per site: yearly values, change, interval, class; ring-adjusted beside it.

    ``table`` holds one pixel rule. ``site_zone[i]`` / ``ring_zone[i]`` name the zones
    of ``sites.iloc[i]``.
    """
    series = table if isinstance(table, ZoneSeries) else ZoneSeries.from_table(table)
    column = "sum_radiance" if settings.statistic == "sol" else "mean_radiance"
    args = (settings.months, column, settings.min_valid_fraction)
    sb = year_matrix(series, site_zone, settings.baseline_year, *args)
    st = year_matrix(series, site_zone, settings.target_year, *args)
    ids = [str(s) for s in sites["site_id"]]
    matched = np.isfinite(sb) & np.isfinite(st)
    n = matched.sum(axis=1)
    yearly_b = _yearly_rows(sb, matched, settings.statistic)
    yearly_t = _yearly_rows(st, matched, settings.statistic)
    d, lo, hi = _changes_by_months([sb, st], matched, settings, ids, series.weights(site_zone))
    out = pd.DataFrame(
        {
            "site_id": ids,
            "n_months": n,
            "months_matched": [
                ",".join(str(m + 1) for m in np.flatnonzero(row)) for row in matched
            ],
            "baseline_value": yearly_b,
            "target_value": yearly_t,
            "log_ratio": d,
            "log_ci_low": lo,
            "log_ci_high": hi,
            "class": classify_arrays(d, lo, hi, n, settings.threshold, settings.min_matched_months),
        }
    )
    if ring_zone is not None:
        out = pd.concat(
            [out, _ring_frame(series, sb, st, ring_zone, settings, ids, series.weights(site_zone))],
            axis=1,
        )
    for col in ("log_ratio", "log_ci_low", "log_ci_high"):
        out[col.replace("log_ratio", "change_pct").replace("log_ci", "ci")] = 100 * np.expm1(
            out[col]
        )
    return out


def _ring_frame(
    series: ZoneSeries,
    sb: np.ndarray,
    st: np.ndarray,
    ring_zone: list[str],
    settings: ChangeSettings,
    ids: list[str],
    weight: np.ndarray,
) -> pd.DataFrame:
    """Ring values and the ring-adjusted change, all on the months valid for site and ring in both years."""
    args = (
        settings.months,
        "sum_radiance" if settings.statistic == "sol" else "mean_radiance",
        settings.min_valid_fraction,
    )
    rb = year_matrix(series, ring_zone, settings.baseline_year, *args)
    rt = year_matrix(series, ring_zone, settings.target_year, *args)
    ring_weight = series.weights(ring_zone)
    matched = np.isfinite(sb) & np.isfinite(st) & np.isfinite(rb) & np.isfinite(rt)
    n = matched.sum(axis=1)
    stat = settings.statistic
    ring_b = _yearly_rows(rb, matched, stat)
    ring_t = _yearly_rows(rt, matched, stat)
    ring_eps = np.array([_eps(settings, w, k) for w, k in zip(ring_weight, n, strict=True)])
    d, lo, hi = _changes_by_months(
        [sb, st, rb, rt], matched, settings, [f"{i}@ring" for i in ids], weight, ring_weight
    )
    return pd.DataFrame(
        {
            "ring_baseline_value": ring_b,
            "ring_target_value": ring_t,
            "ring_log_ratio": np.where(n > 0, log_ratio(ring_t, ring_b, ring_eps), np.nan),
            "adjusted_log_ratio": d,
            "adjusted_log_ci_low": lo,
            "adjusted_log_ci_high": hi,
            "n_months_adjusted": n,
            "class_ring_adjusted": classify_arrays(
                d, lo, hi, n, settings.threshold, settings.min_matched_months
            ),
        }
    )


def count_classes(classes: pd.Series) -> dict[str, int]:
    counts = classes.value_counts()
    return {c: int(counts.get(c, 0)) for c in CLASSES}
