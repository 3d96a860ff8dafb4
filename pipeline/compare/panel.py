"""Panel: the one unit-by-year table every county number comes from.

Inputs
    The zone-by-month table of :mod:`pipeline.measure.zonal` holding the units' zones (``unit:<id>``),
    the unit polygons' attributes and :class:`~pipeline.config.Params`.
Outputs
    ``unit_months`` and ``unit_years`` (the panel), the panel's log floor, and each unit's change
    between two years (``county_changes.csv``, the county map).

One definition of a county's change, so ``county_changes.csv``, ``unit_years.csv``, ``did.json``
and the county map cannot disagree (issue 20): the yearly value ``S`` is the mean of the valid
monthly sums of lights among ``Params.months`` (methods_policy.md §4.1 item 2), and the change is
``ln((S_target + eps) / (S_baseline + eps))`` with ``eps`` = 1% of the median lit baseline unit,
exactly the difference-in-differences outcome of :mod:`pipeline.compare.did`. Earlier ``county_changes.csv``
compared mean radiance over calendar months valid in both years; that matched the sites' rule but
gave a second number for the same county beside ``unit_years.csv``. The DiD needs one value per
unit and year for every year (pre-trends, event time, cohorts), which matched months cannot give,
so the yearly value is the one kept; ``docs/method.md`` says so.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from pipeline.compare.did import EPS_FRACTION
from pipeline.config import Params

UNIT_ZONE = "unit:"  # zone-name prefix of a unit (county) in the zone table
UNIT_YEAR_COLUMNS = [
    "unit_id",
    "name",
    "province",
    "year",
    "sum_lights",
    "mean_radiance",
    "valid_fraction",
    "n_months",
    "treated",
]
UNIT_MONTH_COLUMNS = [
    "unit_id",
    "month",
    "sum_lights",
    "mean_radiance",
    "valid_fraction",
    "is_valid",
    "treated",
]
CHANGE_COLUMNS = [
    "unit_id",
    "name",
    "name_ko",
    "province",
    "baseline_mean",
    "target_mean",
    "n_months",
    "log_change",
    "floor",
]


def unit_tables(
    table: pd.DataFrame, units: pd.DataFrame, treated: Collection[str], params: Params
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``unit_months`` and ``unit_years`` from the zone-by-month table (headline pixel rule).

    A unit-month's ``sum_lights`` is the coverage-weighted sum of radiance with unobserved pixels
    at the observed mean (zonal's ``sum_radiance``); the month counts when ``min_valid_fraction``
    of the unit was observed (clouds are missing, not dark). The year's value is the mean of its
    valid months among ``Params.months``; ``n_months`` says how many.
    """
    t = table[table["zone"].str.startswith(UNIT_ZONE)]
    if "pixel_rule" in t:
        t = t[t["pixel_rule"] == params.pixel_rule]
    months = pd.DataFrame(
        {
            "unit_id": t["zone"].str[len(UNIT_ZONE) :].to_numpy(),
            "month": t["month"].to_numpy(),
            "sum_lights": t["sum_radiance"].to_numpy(float),
            "mean_radiance": t["mean_radiance"].to_numpy(float),
            "valid_fraction": t["valid_fraction"].to_numpy(float),
        }
    )
    months["is_valid"] = (months["valid_fraction"] >= params.min_valid_fraction) & months[
        "mean_radiance"
    ].notna()
    months["treated"] = months["unit_id"].isin(set(treated))
    month = months["month"].astype(str)
    # "YYYY-MM", or "YYYY" for an annual composite (one value for the whole year)
    cal = pd.to_numeric(month.str[5:7], errors="coerce").fillna(1).astype(int)
    counted = cal.isin(params.months) | (month.str.len() == 4)
    use = months[months["is_valid"] & counted].assign(year=lambda d: d["month"].str[:4].astype(int))
    yearly = use.groupby(["unit_id", "year"]).agg(
        sum_lights=("sum_lights", "mean"),
        mean_radiance=("mean_radiance", "mean"),
        n_months=("month", "size"),
    )
    frac = (
        months.assign(year=month.str[:4].astype(int))[counted]
        .groupby(["unit_id", "year"])["valid_fraction"]
        .mean()
    )
    years = sorted({int(m[:4]) for m in month})
    grid = pd.MultiIndex.from_product(
        [list(units["unit_id"].astype(str)), years], names=["unit_id", "year"]
    )
    panel = pd.DataFrame(index=grid).join(yearly).join(frac).reset_index()
    panel["n_months"] = panel["n_months"].fillna(0).astype(int)
    meta = pd.DataFrame(
        {
            "unit_id": units["unit_id"].astype(str),
            "name": units["name"],
            "province": units["province"].fillna("").astype(str),
        }
    )
    panel = panel.merge(meta, on="unit_id", how="left")
    panel["treated"] = panel["unit_id"].isin(set(treated))
    order = {u: i for i, u in enumerate(units["unit_id"].astype(str))}
    panel = panel.sort_values(
        ["unit_id", "year"], key=lambda c: c.map(order) if c.name == "unit_id" else c
    )
    return (
        months[UNIT_MONTH_COLUMNS].reset_index(drop=True),
        panel[UNIT_YEAR_COLUMNS].reset_index(drop=True),
    )


def panel_floor(panel: pd.DataFrame, baseline_year: int) -> float:
    """The log floor ``eps``: :data:`EPS_FRACTION` of the median lit unit in the baseline year
    (every unit of the panel, so every estimate and table of a run shares it); 1 when none is lit."""
    base = panel.loc[panel["year"] == baseline_year, "sum_lights"].clip(lower=0)
    lit = base[base > 0]
    return EPS_FRACTION * float(lit.median()) if len(lit) else 1.0


def unit_changes(
    panel: pd.DataFrame,
    units: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    eps: float,
) -> pd.DataFrame:
    """Each unit's change ``ln((S_t + eps) / (S_b + eps))`` from the panel (``county_changes.csv``).

    ``baseline_mean``/``target_mean`` are the panel's ``sum_lights`` of the two years, ``n_months``
    the fewer valid months of the two; ``log_change`` is NaN when either year has no valid month.
    """
    wide = panel.pivot(index="unit_id", columns="year", values="sum_lights")
    count = panel.pivot(index="unit_id", columns="year", values="n_months")
    ids = units["unit_id"].astype(str)
    col = {
        y: (wide[y] if y in wide else pd.Series(np.nan, index=wide.index))
        for y in (baseline_year, target_year)
    }
    n = {
        y: (count[y] if y in count else pd.Series(0, index=count.index))
        for y in (baseline_year, target_year)
    }
    base = col[baseline_year].reindex(ids).to_numpy(float)
    targ = col[target_year].reindex(ids).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.log((np.clip(targ, 0, None) + eps) / (np.clip(base, 0, None) + eps))
    months = np.minimum(
        n[baseline_year].reindex(ids).fillna(0).to_numpy(int),
        n[target_year].reindex(ids).fillna(0).to_numpy(int),
    )
    out = pd.DataFrame(
        {
            "unit_id": ids.to_numpy(),
            "name": units["name"].to_numpy() if "name" in units else None,
            "name_ko": units["name_ko"].to_numpy() if "name_ko" in units else None,
            "province": units["province"].to_numpy() if "province" in units else None,
            "baseline_mean": base,
            "target_mean": targ,
            "n_months": months,
            "log_change": change,
            "floor": eps,
        }
    )
    return out[CHANGE_COLUMNS]
