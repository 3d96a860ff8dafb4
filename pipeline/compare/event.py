"""Event study: each site's monthly light around its inauguration, relative to the controls.

Inputs
    Site-month values (``site_id``, ``month`` as Period, Timestamp or "YYYY-MM", ``value``),
    each site's inauguration month, and a control series per month (the mean of the control
    units, indexed by month).
Outputs
    :func:`site_relative`: one row per site and month in the window with the normalised
    outcome. :func:`event_study`: one row per relative month with exactly the columns
    ``relative_month``, ``estimate``, ``ci_low``, ``ci_high``, ``n_sites`` (``event_study.csv``).

Method (references in ``docs/research/methods_policy.md``, by section):

* **Outcome** ``y = ln(site + eps_site) - ln(control + eps_control)``: the site relative to the
  control mean that month, so national swings (power shortages, moonlight, snow, calibration)
  cancel. Each series gets its own floor, 1% of its median lit month, because a site buffer and
  a county mean differ in scale by orders of magnitude (the floor of :mod:`pipeline.compare.did`).
* **Reference: the mean of months -12..-1**, not month -1. A single monthly VIIRS composite
  varies by 15-20% for a stable light (README, Method 7) and is often cloud-filled, so a
  one-month reference adds its noise to every later estimate; the twelve months before cover
  every calendar month once, so a seasonal difference between site and control averages out;
  and month -1 is the most exposed to anticipation (lighting for the ceremony, construction:
  groundbreaking vs completion, §4.2 item 1). The pre-period estimates then show the pre-trend
  as a check (Rambachan & Roth 2023 warn against reading too much into it, §2.6). A site needs
  ``min_pre`` months in -12..-1 to be normalised; others are left out (logged).
* **Pooling and band.** Per relative month, the mean over sites with data, with a Student-t
  interval over sites (``mean ± t(n-1) sd / sqrt(n)``). Sites are the independent units (one
  value per site and month); with about 20 sites, and fewer at the window edges, a percentile
  bootstrap over sites is too narrow (it ignores that the spread itself is estimated), whereas
  the t interval is exact for normal site effects and widens honestly when few sites remain.
  ``band="bootstrap"`` (seeded, over sites) is available for comparison. One site: no band.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.errors import ComparisonError as EventStudyError

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("relative_month", "estimate", "ci_low", "ci_high", "n_sites")
FLOOR_FRACTION = 0.01
DEFAULT_SEED = 20240228


def _month_index(values: object) -> np.ndarray:
    """Months as integers ``year * 12 + month - 1`` (Period, Timestamp or "YYYY-MM")."""
    s = pd.Series(values)
    if isinstance(s.dtype, pd.PeriodDtype):
        p = s
    elif len(s) and s.map(lambda v: isinstance(v, str)).all():
        # dates of different precision ("2024-12-20", "2025-01") in one column: the month is enough
        try:
            p = pd.to_datetime(s.str.strip().str[:7], format="%Y-%m").dt.to_period("M")
        except (ValueError, TypeError) as exc:
            raise EventStudyError(
                f"event study: months must be Periods, Timestamps or 'YYYY-MM' ({exc})"
            ) from exc
    else:
        try:
            p = pd.to_datetime(s.astype(str) if s.dtype == object else s).dt.to_period("M")
        except (ValueError, TypeError) as exc:
            raise EventStudyError(
                f"event study: months must be Periods, Timestamps or 'YYYY-MM' ({exc})"
            ) from exc
    return (p.dt.year * 12 + p.dt.month - 1).to_numpy(int)


def _floor(values: np.ndarray) -> float:
    lit = values[np.isfinite(values) & (values > 0)]
    return FLOOR_FRACTION * float(np.median(lit)) if len(lit) else 1.0


def site_relative(
    site_months: pd.DataFrame,
    inauguration: Mapping[str, object] | pd.Series,
    control: pd.Series,
    *,
    window: int = 12,
    eps: float | None = None,
    min_pre: int = 3,
) -> pd.DataFrame:
    """Per site and month in ``-window..window``: ``site_id``, ``relative_month``, ``outcome``.

    ``outcome`` is ``ln(site + eps) - ln(control + eps)`` minus the site's mean of it over
    months ``-window..-1``. Sites without an inauguration month, or with fewer than
    ``min_pre`` pre-period months, are left out.
    """
    missing = [c for c in ("site_id", "month", "value") if c not in site_months.columns]
    if missing:
        raise EventStudyError(f"event study: site-month table lacks column(s) {', '.join(missing)}")
    inaug = pd.Series(inauguration, dtype=object).dropna()
    if inaug.empty:
        raise EventStudyError("no site of the batch has an inauguration month")
    ctrl = pd.Series(control.to_numpy(float), index=_month_index(control.index)).clip(lower=0)
    ctrl = ctrl[~ctrl.index.duplicated()]
    ctrl_eps = _floor(ctrl.to_numpy()) if eps is None else eps

    frame = site_months[site_months["site_id"].isin(inaug.index)]
    frame = pd.DataFrame(
        {
            "site_id": frame["site_id"].to_numpy(),
            "m": _month_index(frame["month"]) if len(frame) else np.array([], int),
            "value": frame["value"].to_numpy(float),
        }
    )
    frame["relative_month"] = frame["m"] - frame["site_id"].map(
        pd.Series(_month_index(inaug.to_numpy()), index=inaug.index)
    ).to_numpy(int)
    frame["control"] = frame["m"].map(ctrl)
    frame = frame[
        frame["relative_month"].abs().le(window) & frame["value"].notna() & frame["control"].notna()
    ]
    out = []
    for site, g in frame.groupby("site_id", sort=True):
        v = g["value"].clip(lower=0).to_numpy(float)
        y = np.log(v + (_floor(v) if eps is None else eps)) - np.log(
            g["control"].to_numpy() + ctrl_eps
        )
        pre = (g["relative_month"] < 0).to_numpy()
        if pre.sum() < min_pre:
            log.info(
                "event study: site %s has %d pre-period month(s) (< %d); left out",
                site,
                pre.sum(),
                min_pre,
            )
            continue
        out.append(
            pd.DataFrame(
                {
                    "site_id": site,
                    "relative_month": g["relative_month"].to_numpy(),
                    "outcome": y - y[pre].mean(),
                }
            )
        )
    if not out:
        raise EventStudyError(
            f"event study: no site has {min_pre} or more months of data in the "
            f"{window} months before its inauguration (and a control value)"
        )
    return pd.concat(out, ignore_index=True).sort_values(
        ["site_id", "relative_month"], ignore_index=True
    )


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_cdf(t: float, df: float) -> float:
    """Student-t distribution function (numpy-only; scipy is not a dependency)."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile by bisection on :func:`t_cdf` (to 1e-12)."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    lo, hi = -1e3, 1e3
    while t_cdf(hi, df) < p:
        hi *= 10
    while t_cdf(lo, df) > p:
        lo *= 10
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def event_study(
    site_months: pd.DataFrame,
    inauguration: Mapping[str, object] | pd.Series,
    control: pd.Series,
    *,
    window: int = 12,
    eps: float | None = None,
    min_pre: int = 3,
    band: Literal["t", "bootstrap"] = "t",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Pooled site-minus-control light by month relative to inauguration, with a band.

    One row per relative month in ``-window..window`` that has data, columns
    :data:`EVENT_COLUMNS`. See the module docstring for the outcome, reference and band.
    """
    rel = site_relative(site_months, inauguration, control, window=window, eps=eps, min_pre=min_pre)
    alpha = 1 - confidence
    rng = np.random.default_rng(seed)
    rows = []
    for r, g in rel.groupby("relative_month", sort=True):
        y = g["outcome"].to_numpy(float)
        n, est = len(y), float(y.mean())
        lo = hi = float("nan")
        if n >= 2 and band == "t":
            half = t_quantile(1 - alpha / 2, n - 1) * float(y.std(ddof=1)) / math.sqrt(n)
            lo, hi = est - half, est + half
        elif n >= 2:
            means = y[rng.integers(0, n, (n_boot, n))].mean(axis=1)
            lo, hi = (float(q) for q in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
        rows.append((int(r), est, lo, hi, n))
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
