"""Cohorts: which units are controls in which years, and the effect of each batch.

Inputs
    A unit-year panel as in :mod:`pipeline.compare.did` (``treated`` marks the batch under test), and a
    *schedule*: one row per unit and batch with the batch's dates in that unit
    (:func:`unit_schedule`, from the sites located in units by :func:`pipeline.compare.county.site_schedule`).
Outputs
    :class:`ControlExclusion` records (``did.json`` ``excluded_controls``), :func:`clean_did`
    (the 2x2 estimate of :mod:`pipeline.compare.did` on clean controls), and :func:`group_time_effects`
    (:class:`CohortEffects`: one estimate per batch and year, their aggregate and a joint
    pre-trend test). Pure: pandas/numpy in, frozen dataclasses out; nothing is read or written
    (the sites are located in units by :func:`pipeline.compare.county.site_schedule`).

Method (``docs/research/methods_policy.md``, by section):

* **Controls that are controls.** The policy builds about 20 factories a year, so the counties
  of the next batch are under construction (or already inaugurated) while the batch under test
  is compared. A county building in a compared year has its own change in light; among the
  controls it biases the estimate towards zero and inflates the false-rejection rate. For the
  years compared (``baseline..target``) a unit is a control only if it holds no site whose
  construction started by the target year: §2.6 (Callaway & Sant'Anna: never- or
  *not-yet-treated* controls), §4.2 item 2 (the 2025 cohort is a control "only for 2024",
  having broken ground by 28 Feb 2025) and §3.2 (R ``did`` PR #266: already-treated units must
  not enter the comparison). Building starts at the earliest groundbreaking month of the
  batch's sites in the unit; a batch with no groundbreaking date starts in its batch year (the
  year in its label, the policy's year of groundbreaking); with neither, the unit is never a
  control. Years, not months: a yearly value mixes the months of its year, so a unit breaking
  ground in any month of the target year is left out.
* **Group-time effects** (§2.6, Callaway & Sant'Anna 2021; §2.2 Huang et al. for a staggered
  design with few treated units). For batch ``g`` starting to build in year ``s_g``, the effect
  in year ``t`` is the 2x2 estimate of :mod:`pipeline.compare.did` from the base year ``s_g - 1`` (before
  groundbreaking: a "universal" base, so every year is measured from the same clean year) to
  ``t``, against units neither of the batch nor building by ``max(t, s_g - 1)``: never-treated
  and not-yet-treated units. Inference per cell is that module's randomization inference.
* **Aggregate.** The mean of the post-groundbreaking cells (``t >= s_g``) weighted by each
  cell's number of treated units (the "simple" aggregation of Callaway & Sant'Anna; weights
  reported). Its randomization test draws, per placebo world, disjoint placebo batches of the
  batches' sizes and provinces from the units that are clean controls in every cell, then
  recomputes every cell (the within-province estimate of :mod:`pipeline.compare.did`, by
  :func:`within_stats`) and the weighted mean, so the cells' shared controls are accounted for
  (§4.2 item 6: stratified by province). The interval inverts that test on the coefficient.
* **Joint pre-trend test.** Cells with ``t < s_g - 1`` should show nothing; their sum of squared
  cell t-statistics (the Welch t of province-centred log changes of :mod:`pipeline.compare.did`;
  over all batches, and per batch in ``pretrend_by_batch``: each batch's event study before
  groundbreaking) is compared with the same sum in the same placebo worlds (Roth 2022,
  "pretest with caution", §2.6: a pass is not proof of parallel trends).

Longer than most modules because the control rule, the group-time effects with their joint
placebo worlds and the robustness checks beside the main result share the same panel helpers.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.compare.did import (
    DEFAULT_DRAWS,
    DEFAULT_SEED,
    DidResult,
    critical_value,
    estimate_did,
    ri_p_value,
    unit_log_change_set,
    welch_t,
)
from pipeline.errors import ComparisonError

log = logging.getLogger(__name__)

SCHEDULE_COLUMNS = (
    "unit_id",
    "batch",
    "batch_year",
    "groundbreaking",
    "inauguration",
    "start_year",
    "start_from",
)
CONTROL_RULE = (
    "a unit is a control for the years compared only if it holds no site of the batch under test and "
    "no site of another batch whose construction started by the target year (groundbreaking date; "
    "without one, the batch's year); never-treated and not-yet-building units only"
)
_YEAR = re.compile(r"(?<!\d)(19\d{2}|20\d{2})(?!\d)")
_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})")


def batch_year(label: object) -> int | None:
    """The year in a batch label (``2025``, ``"2025"``, ``"2025 batch"``), else None."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return None
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return int(label)
    m = _YEAR.search(str(label))
    return int(m.group(1)) if m else None


def _month(value: object) -> str | None:
    """``YYYY-MM`` from ``YYYY-MM`` or ``YYYY-MM-DD`` text (or a Timestamp), else None."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return f"{value.year:04d}-{value.month:02d}"
    m = _MONTH.match(str(value))
    return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}" if m else None


def _label(value: object) -> str | None:
    """The batch label as given (the site reader has already spelt it, :func:`pipeline.read.sites.batch_label`);
    None without one. The statistics never read the site files themselves."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip() or None


def unit_schedule(sites: pd.DataFrame) -> pd.DataFrame:
    """One row per unit and batch: the earliest groundbreaking and latest inauguration month, and
    when building starts (``start_year``; ``start_from`` says from what).

    ``sites`` needs ``unit_id`` and ``batch``; ``groundbreaking``/``inauguration`` are optional
    (``YYYY-MM`` or ``YYYY-MM-DD``). Sites outside every unit (no ``unit_id``) are dropped.
    """
    missing = [c for c in ("unit_id", "batch") if c not in sites.columns]
    if missing:
        raise ComparisonError(f"site schedule: missing column(s) {', '.join(missing)}")
    # a site without a batch is a place a user measures, not a cohort of the policy: it treats nothing
    s = sites[
        sites["unit_id"].notna()
        & pd.Series([_label(b) is not None for b in sites["batch"]], index=sites.index)
    ]
    frame = pd.DataFrame(
        {
            "unit_id": s["unit_id"].astype(str).to_numpy(),
            "batch": [_label(b) for b in s["batch"]],
            "groundbreaking": [
                _month(v) for v in s.get("groundbreaking", pd.Series([None] * len(s)))
            ],
            "inauguration": [_month(v) for v in s.get("inauguration", pd.Series([None] * len(s)))],
        }
    )
    rows = []
    for (unit, batch), g in frame.groupby(["unit_id", "batch"], sort=True):
        gb = min((v for v in g["groundbreaking"] if isinstance(v, str)), default=None)
        inaug = max((v for v in g["inauguration"] if isinstance(v, str)), default=None)
        year = batch_year(batch)
        if gb is not None:
            start, source = int(gb[:4]), "groundbreaking"
        elif year is not None:
            start, source = year, "batch year"
        elif inaug is not None:
            start, source = int(inaug[:4]), "inauguration"
        else:
            start, source = None, "unknown"
        rows.append((unit, batch, year, gb, inaug, start, source))
    return pd.DataFrame(rows, columns=list(SCHEDULE_COLUMNS))


@dataclass(frozen=True)
class ControlExclusion:
    """A unit left out of the controls of one comparison, and why."""

    unit_id: str
    batch: str
    start_year: int | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def building_exclusions(
    schedule: pd.DataFrame, treated: Iterable[str], years: tuple[int, int]
) -> tuple[ControlExclusion, ...]:
    """Units not in ``treated`` that are building (or built) by the last of ``years``.

    One record per unit (its earliest-starting batch), sorted by unit id.
    """
    first, last = min(years), max(years)
    treated = set(map(str, treated))
    out: dict[str, ControlExclusion] = {}
    s = schedule[~schedule["unit_id"].astype(str).isin(treated)]
    s = s.assign(_key=s["start_year"].fillna(-1)).sort_values(["unit_id", "_key"])
    for r in s.itertuples(index=False):
        unit = str(r.unit_id)
        if unit in out:
            continue
        start = None if pd.isna(r.start_year) else int(r.start_year)
        if start is not None and start > last:
            continue
        if r.start_from == "groundbreaking":
            built = isinstance(r.inauguration, str) and int(r.inauguration[:4]) <= last
            done = f" and was inaugurated {r.inauguration}" if built else ""
            reason = f"batch {r.batch} broke ground {r.groundbreaking}{done}"
        elif r.start_from == "batch year":
            reason = f"batch {r.batch} has no groundbreaking date; taken as building from its batch year {start}"
        elif r.start_from == "inauguration":
            reason = (
                f"batch {r.batch} has no groundbreaking date nor year; inaugurated {r.inauguration}"
            )
        else:
            reason = f"batch {r.batch} has no dates and no year in its label; it cannot be shown to be untreated"
        if start is not None:
            reason += f": building by {last}, so not a control for {first}\u2013{last}"
        out[unit] = ControlExclusion(unit, str(r.batch), start, reason)
    return tuple(out[u] for u in sorted(out))


def clean_did(
    panel: pd.DataFrame,
    schedule: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    *,
    exclude: Iterable[str] = (),
    **kwargs: Any,
) -> tuple[DidResult, tuple[ControlExclusion, ...]]:
    """:func:`pipeline.compare.did.estimate_did` with the units building in ``baseline..target`` left out.

    ``exclude`` leaves further units out (e.g. Pyongyang). Returns the result (its ``excluded``
    lists every unit left out) and the building units with their reasons.
    """
    ids = set(panel["unit_id"].astype(str))
    treated = panel.loc[panel["treated"].astype(bool), "unit_id"].astype(str).unique()
    drop = tuple(
        e
        for e in building_exclusions(schedule, treated, (baseline_year, target_year))
        if e.unit_id in ids
    )
    extra = tuple(str(x) for x in exclude)
    all_out = (*extra, *(e.unit_id for e in drop if e.unit_id not in extra))
    return estimate_did(panel, baseline_year, target_year, exclude=all_out, **kwargs), drop


def exclusions_for(
    panel: pd.DataFrame, schedule: pd.DataFrame
) -> Callable[[int, int], tuple[str, ...]]:
    """``exclude_for(baseline, target)`` for :func:`pipeline.compare.did.pretrend_placebos`: the building units."""
    ids = set(panel["unit_id"].astype(str))
    treated = panel.loc[panel["treated"].astype(bool), "unit_id"].astype(str).unique()

    def exclude_for(b: int, t: int) -> tuple[str, ...]:
        return tuple(
            e.unit_id for e in building_exclusions(schedule, treated, (b, t)) if e.unit_id in ids
        )

    return exclude_for


# --------------------------------------------------------------------------- group-time effects


@dataclass(frozen=True)
class CohortEffects:
    """Group-time effects per batch and year, their weighted aggregate and a joint pre-trend test."""

    cells: tuple[
        dict[str, Any], ...
    ]  # batch, start_year, base_year, year, event_time, estimate_log, ...
    aggregate_log: float | None
    aggregate_ci_low: float | None
    aggregate_ci_high: float | None
    aggregate_p_value: float | None
    weights: tuple[dict[str, Any], ...]  # batch, year, n_treated, weight
    pretrend_stat: float | None  # sum of squared pre-period cell t-statistics
    pretrend_p_value: float | None
    n_pretrend_cells: int
    n_placebo: int
    n_pool: int  # units clean in every cell, the placebo pool of the joint tests
    method: str
    skipped: tuple[str, ...] = field(default=())
    pretrend_by_batch: tuple[
        dict[str, Any], ...
    ] = ()  # batch, n_cells, stat, p_value: each batch's joint test

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        for k in ("cells", "weights", "skipped", "pretrend_by_batch"):
            out[k] = list(out[k])
        return out


def _cohorts(schedule: pd.DataFrame, ids: set[str]) -> dict[str, tuple[int, tuple[str, ...]]]:
    """batch -> (start year, its units in the panel); a unit holding sites of several batches
    belongs to its earliest-starting one."""
    s = schedule[schedule["unit_id"].astype(str).isin(ids) & schedule["start_year"].notna()]
    s = s.sort_values(["unit_id", "start_year"]).drop_duplicates("unit_id")
    out: dict[str, tuple[int, tuple[str, ...]]] = {}
    for batch, g in s.groupby("batch", sort=True):
        start = int(g["start_year"].min())  # the batch's groundbreaking year
        out[str(batch)] = (start, tuple(sorted(g["unit_id"].astype(str))))
    return out


def group_time_effects(
    panel: pd.DataFrame,
    schedule: pd.DataFrame,
    *,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = DEFAULT_SEED,
    eps: float | None = None,
    exclude: Iterable[str] = (),
    confidence: float = 0.95,
    stratify: bool = True,
) -> CohortEffects:
    """Every batch against never- and not-yet-treated units, year by year (see the module docstring).

    The ``treated`` column of ``panel`` is ignored: batches come from ``schedule``. Cells that
    cannot be estimated (too few controls, a year missing) are listed in ``skipped``.
    """
    p = panel.assign(unit_id=panel["unit_id"].astype(str))
    exclude = tuple(str(x) for x in exclude)
    ids = set(p["unit_id"]) - set(exclude)
    years = sorted(int(y) for y in p["year"].unique())
    cohorts = _cohorts(schedule, ids)
    starts = {u: s for s, us in cohorts.values() for u in us}
    alpha = 1 - confidence
    if eps is None:
        base0 = min((s - 1 for s, _ in cohorts.values() if s - 1 in years), default=years[0])
        eps = unit_log_change_set(p.assign(treated=False), base0, base0, None, exclude).eps
    cells: list[dict[str, Any]] = []
    skipped: list[str] = []
    specs: list[Any] = []
    for batch, (start, members) in cohorts.items():
        base = start - 1
        if base not in years:
            skipped.append(
                f"batch {batch}: no data for its base year {base} (the year before groundbreaking)"
            )
            continue
        for t in years:
            if t == base:
                continue
            last = max(t, base)
            controls = [
                u for u in ids if u not in members and (starts.get(u) is None or starts[u] > last)
            ]
            sub = p[p["unit_id"].isin(set(members) | set(controls))].assign(
                treated=lambda d, m=set(members): d["unit_id"].isin(m)
            )
            try:
                with np.errstate(
                    invalid="ignore", divide="ignore"
                ):  # a one-unit batch has no Welch t (coef used)
                    r = estimate_did(
                        sub,
                        base,
                        t,
                        eps=eps,
                        n_draws=n_draws,
                        seed=seed,
                        stratify=stratify,
                        confidence=confidence,
                    )
            except ComparisonError as e:
                skipped.append(f"batch {batch}, {t}: {e}")
                continue
            cells.append(
                {
                    "batch": batch,
                    "start_year": start,
                    "base_year": base,
                    "year": t,
                    "event_time": t - start,
                    "estimate_log": r.estimate_log,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_value": r.p_value,
                    "se": r.se,
                    "mde_log": r.mde_log,
                    "n_treated": r.n_treated,
                    "n_control": r.n_control,
                }
            )
            specs.append((batch, members, controls, base, t))
    post = [i for i, c in enumerate(cells) if c["year"] >= c["start_year"]]
    pre = [i for i, c in enumerate(cells) if c["year"] < c["base_year"]]
    total = sum(cells[i]["n_treated"] for i in post)
    weights = (
        tuple(
            {
                "batch": cells[i]["batch"],
                "year": cells[i]["year"],
                "n_treated": cells[i]["n_treated"],
                "weight": cells[i]["n_treated"] / total,
            }
            for i in post
        )
        if total
        else ()
    )
    method = (
        "group-time 2x2 effects: each batch from the year before its groundbreaking to each year, against "
        "units neither of the batch nor building by then (never- and not-yet-treated); aggregate: mean of the "
        "cells from groundbreaking on, weighted by treated units; joint randomization tests on placebo "
        f"batches drawn {'by province ' if stratify else ''}from the {{pool}} units clean in every cell, "
        f"{n_draws} draws"
    )
    agg = lo = hi = p_agg = stat = p_pre = None
    by_batch: tuple[dict[str, Any], ...] = ()
    pool: list[str] = []
    if specs:
        used = [i for i in range(len(cells)) if i in post or i in pre]
        pool = sorted(set.intersection(*(set(specs[i][2]) for i in used))) if used else []
        joint = _joint(
            p, specs, cells, post, pre, weights, pool, eps, n_draws, seed, alpha, stratify
        )
        if joint is None:
            skipped.append(
                f"joint tests: {len(pool)} units are clean controls in every cell, too few for "
                "placebo batches of the batches' sizes"
            )
        else:
            agg, lo, hi, p_agg, stat, p_pre, by_batch = joint
    return CohortEffects(
        tuple(cells),
        agg,
        lo,
        hi,
        p_agg,
        weights,
        stat,
        p_pre,
        len(pre),
        n_draws,
        len(pool),
        method.replace("{pool}", str(len(pool))),
        tuple(skipped),
        by_batch,
    )


def _log_change(p: pd.DataFrame, base: int, t: int, eps: float) -> pd.Series:
    wide = (
        p[p["year"].isin((base, t))]
        .pivot(index="unit_id", columns="year", values="sum_lights")
        .clip(lower=0)
    )
    return np.log((wide[t] + eps) / (wide[base] + eps))


def within_stats(
    treated: list[np.ndarray], control: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The within-province estimate and the Welch t of province-centred values, from sums.

    ``treated`` and ``control`` hold the count, the sum and the sum of squares of each group per
    province (arrays ``... x provinces``). The estimate weights each province's treated-minus-control
    difference by ``n_T n_C / n``; the values are centred on their province's mean over both groups.
    These are :func:`pipeline.compare.did.estimate_did`'s ``estimate_log`` and ``estimate_log / se``.
    """
    (nt, st, qt), (nc, sc, qc) = treated, control
    n = nt + nc
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(n > 0, nt * nc / np.where(n > 0, n, 1), 0.0)
        diff = np.where(h > 0, st / nt - sc / nc, 0.0)
        mean = np.where(n > 0, (st + sc) / np.where(n > 0, n, 1), 0.0)
    beta = (h * diff).sum(-1) / np.maximum(h.sum(-1), 1e-300)
    n_t, n_c = nt.sum(-1), nc.sum(-1)
    m_t, m_c = (st - nt * mean).sum(-1) / n_t, (sc - nc * mean).sum(-1) / n_c
    ss_t = (qt - 2 * mean * st + nt * mean**2).sum(-1) - n_t * m_t**2
    ss_c = (qc - 2 * mean * sc + nc * mean**2).sum(-1) - n_c * m_c**2
    t, _ = welch_t(m_t, ss_t, np.maximum(n_t, 2), m_c, ss_c, np.maximum(n_c, 2))
    return beta, t


def disjoint_placebo_sets(
    strata: np.ndarray, wanted: list[np.ndarray], n_draws: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per batch a (draws x pool) indicator of its placebo units; within a draw the batches are
    disjoint, each with its own provinces' counts (a shortfall taken from any remaining unit)."""
    n = len(strata)
    rows = np.arange(n_draws)[:, None]
    taken = np.zeros((n_draws, n), bool)
    out = []
    for want in wanted:
        keys = np.where(taken, np.inf, rng.random((n_draws, n)))
        chosen = np.zeros((n_draws, n), bool)
        short = np.zeros(n_draws, int)
        for stratum, k in pd.Series(want).value_counts(sort=False).items():
            cols = np.flatnonzero(strata == stratum)
            k = min(int(k), len(cols))
            short += int(pd.Series(want).eq(stratum).sum()) - k
            if k:
                pick = np.argsort(keys[:, cols], axis=1)[:, :k]
                ok = np.isfinite(keys[:, cols][rows, pick])
                chosen[rows, cols[pick]] |= ok
                short += k - ok.sum(1)
        if short.any():
            keys2 = np.where(taken | chosen, np.inf, rng.random((n_draws, n)))
            rank = np.argsort(np.argsort(keys2, axis=1), axis=1)
            chosen |= rank < short[:, None]
        taken |= chosen
        out.append(chosen)
    return out


def _joint(
    p: pd.DataFrame,
    specs: list,
    cells: list[dict[str, Any]],
    post: list[int],
    pre: list[int],
    weights: tuple[dict[str, Any], ...],
    pool: list[str],
    eps: float,
    n_draws: int,
    seed: int,
    alpha: float,
    stratify: bool,
) -> tuple[Any, ...] | None:
    """Aggregate and pre-trend statistics with their joint placebo distributions.

    In a placebo world each batch's units are replaced by a placebo batch from ``pool`` (units
    clean in every cell); a cell then compares its batch's placebo units with its own controls
    minus the placebo units of every batch building by the cell's year.
    """
    batches = {s[0]: (s[1], s[3] + 1) for s in specs}  # batch -> (members, start year)
    names = list(batches)
    if not pool or sum(len(m) for m, _ in batches.values()) + 2 > len(pool):
        return None
    province = (
        p.drop_duplicates("unit_id").set_index("unit_id")["province"].astype("string").fillna("")
    )
    pool_arr = np.array(pool)
    flat = (
        (lambda ids: province.reindex(list(ids)).to_numpy(str))
        if stratify
        else (lambda ids: np.zeros(len(ids), str))
    )
    member = dict(
        zip(
            names,
            disjoint_placebo_sets(
                flat(pool_arr),
                [flat(batches[b][0]) for b in names],
                n_draws,
                np.random.default_rng(seed),
            ),
            strict=True,
        )
    )
    in_pool = set(pool)

    memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def stats(i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in memo:
            memo[i] = _stats(i)
        return memo[i]

    labels = np.unique(flat(province.index.to_numpy()))
    onehot = np.eye(len(labels))[np.searchsorted(labels, flat(pool_arr))]

    def _stats(i: int) -> tuple[np.ndarray, np.ndarray]:
        batch, _, controls, base, t = specs[i]
        last = max(t, base)
        d = _log_change(p, base, t, eps)
        dv = d.reindex(pool_arr).to_numpy(float)
        ok = np.isfinite(dv)
        x = np.where(ok, dv, 0.0)
        m = member[batch] & ok
        busy = np.any(
            np.stack([member[b] for b in names if b == batch or batches[b][1] <= last]), axis=0
        )
        rest = ~busy & ok
        outside = [u for u in controls if u not in in_pool]
        e = d.reindex(outside).to_numpy(float)
        where = np.searchsorted(labels, flat(np.array(outside, dtype=object)))[np.isfinite(e)]
        e = e[np.isfinite(e)]
        extra = np.stack(  # controls outside the pool: count, sum and sum of squares per province
            [np.bincount(where, weights=w, minlength=len(labels)) for w in (e**0, e, e * e)]
        )
        return within_stats(
            [(m * v) @ onehot for v in (1.0, x, x * x)],
            [(rest * v) @ onehot + extra[k] for k, v in enumerate((1.0, x, x * x))],
        )

    agg = lo = hi = p_agg = None
    if post:
        wts = [w["weight"] for w in weights]
        obs = float(sum(w * cells[i]["estimate_log"] for w, i in zip(wts, post, strict=True)))
        placebo = np.asarray(sum(w * stats(i)[0] for w, i in zip(wts, post, strict=True)))
        half = critical_value(np.abs(placebo), alpha)
        agg, lo, hi, p_agg = obs, obs - half, obs + half, ri_p_value(np.abs(placebo), obs)

    def pretrend(cells_i: list[int]) -> tuple[float, float]:
        obs_stat = float(
            sum((cells[i]["estimate_log"] / max(cells[i]["se"], 1e-300)) ** 2 for i in cells_i)
        )
        return obs_stat, ri_p_value(np.asarray(sum(stats(i)[1] ** 2 for i in cells_i)), obs_stat)

    stat = p_pre = None
    by_batch = []
    if pre:
        stat, p_pre = pretrend(pre)
        for b in names:
            mine = [i for i in pre if cells[i]["batch"] == b]
            if mine:
                sb, pb = pretrend(mine)
                by_batch.append({"batch": b, "n_cells": len(mine), "stat": sb, "p_value": pb})
    return agg, lo, hi, p_agg, stat, p_pre, tuple(by_batch)


def event_table(effects: CohortEffects, events: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The cells as an event study per batch: ``event_time`` relative to groundbreaking, and,
    given ``events`` (batch -> inauguration year), ``since_inauguration`` beside it."""
    t = pd.DataFrame(list(effects.cells))
    if t.empty:
        return t
    if events:
        t["since_inauguration"] = [
            y - events[b] if b in events else np.nan
            for b, y in zip(t["batch"], t["year"], strict=True)
        ]
    return t.sort_values(["batch", "year"], ignore_index=True)


def _inauguration_years(schedule: pd.DataFrame) -> dict[str, int]:
    """batch -> the year most of its units were inaugurated in (latest month per unit)."""
    s = schedule.dropna(subset=["inauguration"])
    years = s.assign(y=s["inauguration"].str[:4].astype(int)).groupby("batch")["y"]
    return {str(b): int(g.mode().max()) for b, g in years}


def cohort_summary(
    panel: pd.DataFrame,
    schedule: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    *,
    seed: int = DEFAULT_SEED,
    n_draws: int = DEFAULT_DRAWS,
) -> dict[str, Any]:
    """The ``did.json`` additions of issue 23 beside the main estimate: every batch's group-time
    effects (an event study by groundbreaking and by inauguration year, the aggregate, the joint
    pre-trend test) and the batch under test from a baseline before its groundbreaking."""
    out: dict[str, Any] = {}
    try:
        eff = group_time_effects(panel, schedule, seed=seed, n_draws=n_draws)
        table = event_table(eff, _inauguration_years(schedule))
        out["cohort_effects"] = {
            **eff.to_dict(),
            "cells": table.replace({np.nan: None}).to_dict(orient="records"),
        }
    except ComparisonError as e:
        out["cohort_effects"] = {"skipped": str(e)}
    treated = set(panel.loc[panel["treated"].astype(bool), "unit_id"].astype(str))
    mine = schedule[schedule["unit_id"].astype(str).isin(treated) & schedule["start_year"].notna()]
    years = set(int(y) for y in panel["year"].unique())
    early: dict[str, Any] | None = None
    if len(mine):
        base = int(mine["start_year"].min()) - 1
        if base >= baseline_year:
            early = {
                "skipped": f"the baseline {baseline_year} already ends before groundbreaking ({base + 1})"
            }
        elif base not in years:
            early = {"skipped": f"no data for {base}, the year before groundbreaking ({base + 1})"}
        else:
            try:
                r, drop = clean_did(panel, schedule, base, target_year, seed=seed, n_draws=n_draws)
                early = {
                    "note": f"baseline {base}, the last year before the batch broke ground, against "
                    f"{target_year}: construction and operation together",
                    **r.to_dict(),
                    "n_excluded_controls": len(drop),
                }
            except ComparisonError as e:
                early = {"skipped": str(e)}
    out["baseline_before_groundbreaking"] = early
    return out


# --------------------------------------------------------------------------- robustness beside the main result

WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
FLOOR_FACTORS = (0.1, 1.0, 10.0)
NEAR_KM = 10.0


@dataclass(frozen=True)
class WildBootstrap:
    """Restricted wild cluster bootstrap-t of the 2x2 difference (unequal variances allowed)."""

    estimate_log: float
    se_cluster: float
    t: float
    p_value: float
    n_clusters: int
    n_boot: int
    weights: str = "Webb six-point"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _cluster_t(y: np.ndarray, x: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and cluster-robust (CR1) t of ``y`` on ``x``, rows of ``y`` one sample each.

    ``y`` and ``x`` are centred within the fixed-effect strata already (a treated dummy minus its
    stratum's treated share), so the slope is the fixed-effects coefficient; the small-sample factor
    counts the slope and one intercept, as for fixed effects nested in the clusters.
    """
    sxx = float((x * x).sum())
    b = (y * x).sum(axis=1) / sxx
    u = y - b[:, None] * x
    g, n = onehot.shape[1], len(x)
    var = g / (g - 1) * (n - 1) / (n - 2) * (((u * x) @ onehot) ** 2).sum(axis=1) / sxx**2
    return b, b / np.sqrt(np.maximum(var, 1e-300))


def _centre(values: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """``values`` (rows x units) minus their mean within each stratum of ``onehot`` (units x strata)."""
    return values - ((values @ onehot) / onehot.sum(axis=0)) @ onehot.T


def wild_cluster_bootstrap(
    d: np.ndarray,
    treated: np.ndarray,
    clusters: np.ndarray,
    *,
    strata: np.ndarray | None = None,
    n_boot: int = 9999,
    seed: int = DEFAULT_SEED,
) -> WildBootstrap:
    """p-value of "no difference" robust to treated units noisier than controls (§4.2 item 6, secondary).

    The regression of the log changes on a treated dummy (with a fixed effect per stratum when
    ``strata`` are given: the within-province estimate of :func:`pipeline.compare.did.estimate_did`),
    standard errors clustered by province (CR1); the null is imposed (restricted residuals, WCR)
    and residuals are flipped per cluster with Webb's six-point weights, recommended with few
    clusters (MacKinnon & Webb, §2.6; §3.2). Clustering lets the treated group's variance differ,
    which a randomization test cannot (it treats every unit alike).
    """
    d, treated = np.asarray(d, float), np.asarray(treated, bool)
    labels, idx = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    if len(labels) < 3:
        raise ComparisonError(
            f"wild cluster bootstrap: {len(labels)} province(s); it needs at least 3"
        )
    onehot = np.eye(len(labels))[idx]
    _, stratum = np.unique(
        np.zeros(len(d)) if strata is None else np.asarray(strata).astype(str), return_inverse=True
    )
    fe = np.eye(stratum.max() + 1)[stratum]
    x = _centre(treated[None, :].astype(float), fe)[0]
    y = _centre(d[None, :], fe)  # the residuals under the null, fixed effects only
    b, t = _cluster_t(y, x, onehot)
    se = float(b[0] / t[0]) if t[0] else 0.0
    w = WEBB[np.random.default_rng(seed).integers(0, 6, (n_boot, len(labels)))]
    _, tb = _cluster_t(_centre(w[:, idx] * y, fe), x, onehot)
    return WildBootstrap(
        float(b[0]), se, float(t[0]), ri_p_value(np.abs(tb), float(t[0])), len(labels), n_boot
    )


def near_units(units: Any, treated: Iterable[str], km: float = NEAR_KM) -> tuple[str, ...]:
    """Units (not treated) bordering a treated unit or within ``km`` of one (a metric UTM CRS)."""
    treated = set(map(str, treated))
    u = units.to_crs(units.estimate_utm_crs())
    ids = u["unit_id"].astype(str)
    hot = u.geometry[ids.isin(treated).to_numpy()].union_all()
    dist = u.geometry.distance(hot)
    return tuple(sorted(ids[(dist <= km * 1000).to_numpy() & ~ids.isin(treated).to_numpy()]))


def robustness(
    panel: pd.DataFrame,
    schedule: pd.DataFrame,
    main: DidResult,
    *,
    near: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    n_boot: int = 9999,
) -> dict[str, Any]:
    """Beside the main result: unequal variances (wild cluster bootstrap by province), far controls
    only (no unit bordering or within 10 km of a treated one, §4.2 item 3, Butts §2.6), and the log
    floor at 0.1x, 1x and 10x (Chen & Roth, §2.6). Each entry is a result or ``{"skipped": why}``."""
    b, t = main.baseline_year, main.target_year
    kw: dict[str, Any] = {
        "seed": main.seed,
        "n_draws": main.n_placebo,
        "statistic": main.statistic,
        "stratify": main.stratify,
        "confidence": main.confidence,
    }
    out: dict[str, Any] = {}
    try:
        u = unit_log_change_set(panel, b, t, main.eps, main.excluded)
        out["unequal_variance"] = wild_cluster_bootstrap(
            u.d,
            u.treated,
            u.strata,
            strata=u.strata if main.stratify else None,
            n_boot=n_boot,
            seed=main.seed,
        ).to_dict()
    except ComparisonError as e:
        out["unequal_variance"] = {"skipped": str(e)}
    if near is not None:
        near = tuple(near)
        try:
            r, _ = clean_did(panel, schedule, b, t, exclude=(*exclude, *near), **kw)
            out["far_controls"] = {"km": NEAR_KM, "n_near_left_out": len(near), **r.to_dict()}
        except ComparisonError as e:
            out["far_controls"] = {"km": NEAR_KM, "n_near_left_out": len(near), "skipped": str(e)}
    floors = []
    for f in FLOOR_FACTORS:
        r, _ = clean_did(panel, schedule, b, t, exclude=exclude, eps=f * main.eps, **kw)
        floors.append(
            {
                "factor": f,
                "eps": r.eps,
                "estimate_log": r.estimate_log,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "p_value": r.p_value,
                "mde_log": r.mde_log,
            }
        )
    out["log_floor"] = floors
    return out
