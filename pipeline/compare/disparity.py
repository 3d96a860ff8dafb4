"""Disparity: how unequally light is spread over units, and how much of it lies between groups.

Inputs
    Per-unit values (arrays) or the unit-year panel of :mod:`pipeline.compare.did` (``unit_id``,
    ``year``, ``sum_lights``, and a boolean group column, by default ``treated``).
Outputs
    Index values, Lorenz points, and :func:`disparity_table` with one row per year and the
    columns of :data:`DISPARITY_COLUMNS`.

Choices (references in ``docs/research/methods_policy.md``, by section):

* **Unweighted**, each unit counting once, over the units with data (NaN dropped), as in
  PySAL ``inequality`` (§3.1); population weights would need a population layer the project
  does not ship. Negative values are clipped to 0 rather than taken as absolute values (the
  ``photutils`` pitfall, §3.1).
* **Gini** ``sum_i sum_j |x_i - x_j| / (2 n^2 mean)``, the population form without the
  ``n/(n-1)`` correction (the formula of Lessmann & Seidel 2017 with equal weights, §1.1): 0 when
  all are equal, ``(n-1)/n`` when one unit holds everything. It is defined with zeros, hence
  the headline (§4.1 item 3). Also without the brightest unit (Pyongyang, §4.1 item 5).
* **Theil T** ``(1/n) sum (x_i/mean) ln(x_i/mean)`` with values below a **floor** raised to it:
  by default 1% of the year's median lit unit, the floor used for the log changes in
  :mod:`pipeline.compare.did`. (Zeros have a limit in Theil T, so the floor barely moves it, but it
  keeps every group mean positive; §4.1 item 3 asks for a stated floor.)
* **Between/within** for two groups (designated vs not): ``T = sum_g s_g ln(mean_g/mean) +
  sum_g s_g T_g`` with ``s_g`` the group's share of light. Both parts are computed directly,
  never one as the total minus the other (PySAL issue #15: a within part computed as a
  remainder came out negative), so their sum equalling the total is a real check.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

FLOOR_FRACTION = 0.01

DISPARITY_COLUMNS = (
    "year",  # calendar year
    "n_units",  # units with data that year
    "n_dark",  # units at or below the Theil floor (zero light)
    "total_lights",  # sum over units (negatives clipped)
    "gini",  # Gini over all units with data
    "gini_without_top",  # Gini without the brightest unit
    "top_unit_id",  # the brightest unit
    "top_share",  # its share of all light
    "theil",  # Theil T with the floor
    "theil_floor",  # the floor used (sum_lights units)
    "theil_between",  # between the two groups
    "theil_within",  # within the two groups
    "between_share",  # theil_between / theil
    "n_group",  # units in the group (designated)
    "group_share",  # the group's share of all light
)


def _clean(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(
        list(values) if not isinstance(values, np.ndarray | pd.Series) else values, dtype=float
    )
    return np.clip(x[~np.isnan(x)], 0, None)


def gini(values: Iterable[float]) -> float:
    """Unweighted Gini of non-negative values (NaN dropped); NaN when no unit has light."""
    x = np.sort(_clean(values))
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def gini_without_top(values: Iterable[float]) -> float:
    """The Gini without the single brightest unit."""
    x = np.sort(_clean(values))
    return gini(x[:-1])


def top_share(values: Iterable[float]) -> float:
    """The brightest unit's share of the total."""
    x = _clean(values)
    return float(x.max() / x.sum()) if len(x) and x.sum() > 0 else float("nan")


def default_floor(values: Iterable[float]) -> float:
    """1% of the median lit unit (1.0 when none is lit)."""
    x = _clean(values)
    lit = x[x > 0]
    return FLOOR_FRACTION * float(np.median(lit)) if len(lit) else 1.0


def _theil(x: np.ndarray) -> float:
    r = x / x.mean()
    return float(np.mean(r * np.log(r)))


def theil(values: Iterable[float], floor: float | None = None) -> float:
    """Theil T with values below ``floor`` raised to it (default :func:`default_floor`)."""
    x = _clean(values)
    if len(x) == 0:
        return float("nan")
    floor = default_floor(x) if floor is None else floor
    return _theil(np.maximum(x, floor))


def theil_decomposition(
    values: Iterable[float], groups: Iterable[object], floor: float | None = None
) -> dict[str, float]:
    """Theil T split into between- and within-group parts, each computed directly.

    Returns ``total``, ``between``, ``within`` and ``floor``; NaN values are dropped with
    their group labels.
    """
    x = np.asarray(
        list(values) if not isinstance(values, np.ndarray | pd.Series) else values, dtype=float
    )
    g = np.asarray(list(groups) if not isinstance(groups, np.ndarray | pd.Series) else groups)
    if len(g) != len(x):
        raise ValueError("values and groups differ in length")
    keep = ~np.isnan(x)
    x, g = np.clip(x[keep], 0, None), g[keep]
    if len(x) == 0:
        return {
            "total": float("nan"),
            "between": float("nan"),
            "within": float("nan"),
            "floor": float("nan"),
        }
    floor = default_floor(x) if floor is None else floor
    x = np.maximum(x, floor)
    mean, total_sum = x.mean(), x.sum()
    between = within = 0.0
    for label in pd.unique(g):
        xg = x[g == label]
        share = xg.sum() / total_sum
        between += share * np.log(xg.mean() / mean)
        within += share * _theil(xg)
    return {
        "total": _theil(x),
        "between": float(between),
        "within": float(within),
        "floor": float(floor),
    }


def lorenz(values: Iterable[float]) -> pd.DataFrame:
    """Lorenz points from (0, 0) to (1, 1): ``unit_share`` (poorest first) and ``light_share``."""
    x = np.sort(_clean(values))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        return pd.DataFrame({"unit_share": [0.0, 1.0], "light_share": [0.0, 1.0]})
    return pd.DataFrame(
        {
            "unit_share": np.arange(n + 1) / n,
            "light_share": np.concatenate([[0.0], np.cumsum(x) / x.sum()]),
        }
    )


def lorenz_curve(panel: pd.DataFrame, year: int, value: str = "sum_lights") -> pd.DataFrame:
    """:func:`lorenz` of one year of the unit panel."""
    return lorenz(panel.loc[panel["year"] == year, value])


def disparity_table(
    panel: pd.DataFrame,
    group: str = "treated",
    value: str = "sum_lights",
    floor: float | None = None,
) -> pd.DataFrame:
    """One row per year (ascending) with :data:`DISPARITY_COLUMNS`.

    ``group`` is a boolean column (designated or not) for the Theil decomposition; ``floor``
    fixes the Theil floor for every year (default: each year's :func:`default_floor`).
    """
    rows = []
    for year, frame in panel.groupby("year", sort=True):
        f = frame[frame[value].notna()]
        x = np.clip(f[value].to_numpy(float), 0, None)
        in_group = f[group].astype(bool).to_numpy()
        dec = theil_decomposition(x, in_group, floor)
        top = int(np.argmax(x)) if len(x) else None
        total = float(x.sum())
        rows.append(
            {
                "year": int(year),
                "n_units": len(x),
                "n_dark": int((x <= dec["floor"]).sum()) if len(x) else 0,
                "total_lights": total,
                "gini": gini(x),
                "gini_without_top": gini_without_top(x),
                "top_unit_id": f["unit_id"].iloc[top] if top is not None else None,
                "top_share": top_share(x),
                "theil": dec["total"],
                "theil_floor": dec["floor"],
                "theil_between": dec["between"],
                "theil_within": dec["within"],
                "between_share": dec["between"] / dec["total"]
                if dec["total"] > 0
                else float("nan"),
                "n_group": int(in_group.sum()),
                "group_share": float(x[in_group].sum() / total) if total > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=list(DISPARITY_COLUMNS))


def between_group_pvalue(
    values: Iterable[float],
    in_group: Iterable[bool],
    *,
    n_draws: int = 2000,
    seed: int = 20240228,
    floor: float | None = None,
) -> float:
    """Permutation p-value of the between-group Theil for two groups (PySAL ``TheilDSim``, §3.1).

    Group labels are permuted over the units (same group size); the p-value is
    ``(1 + #{between_perm >= between_obs}) / (1 + draws)``: is the designated-vs-other gap
    larger than a random split of the same units would give? Vectorised: a draws x units
    indicator matrix times the values.
    """
    x = np.asarray(
        list(values) if not isinstance(values, np.ndarray | pd.Series) else values, dtype=float
    )
    g = np.asarray(
        list(in_group) if not isinstance(in_group, np.ndarray | pd.Series) else in_group, dtype=bool
    )
    keep = ~np.isnan(x)
    x, g = np.clip(x[keep], 0, None), g[keep]
    k, n = int(g.sum()), len(x)
    if k == 0 or k == n:
        return float("nan")
    x = np.maximum(x, default_floor(x) if floor is None else floor)

    def between(group_sum: np.ndarray | float) -> np.ndarray:
        total, mean = x.sum(), x.mean()
        s1, s0 = group_sum / total, 1 - group_sum / total
        return s1 * np.log(group_sum / k / mean) + s0 * np.log((total - group_sum) / (n - k) / mean)

    rng = np.random.default_rng(seed)
    members = np.argsort(rng.random((n_draws, n)), axis=1)[:, :k]
    perm = between(x[members].sum(axis=1))
    obs = float(between(x[g].sum()))
    return float((1 + np.count_nonzero(perm >= obs * (1 - 1e-12))) / (1 + n_draws))
