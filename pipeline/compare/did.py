"""Difference-in-differences: did the designated units change differently from the rest?

Inputs
    A unit-year panel (one row per unit and year) with columns ``unit_id``, ``province``,
    ``year``, ``sum_lights`` (the yearly value, already computed) and ``treated`` (bool).
Outputs
    :class:`DidResult` (``to_dict()`` is the content of ``did.json``), a pre-trend table from
    :func:`pretrend_placebos`, and :class:`CountPlacebo` for a "k of n brightened" claim.

Method (references are in ``docs/research/methods_policy.md``, cited by section):

* **Estimate.** Each unit's log change ``d = ln((S_target + eps) / (S_base + eps))``, compared
  within provinces: ``sum_p h_p (mean(d | treated, p) - mean(d | control, p)) / sum_p h_p`` with
  ``h_p = n_T,p n_C,p / n_p``, which is the coefficient of a two-way fixed-effects regression with
  unit and province x year effects (§4.2 item 5, the analogue of region x year in Huang et al.,
  §2.2), every unit counting once within its province (a 2x2 DiD on logs, the design of the
  Kaesong closure study, Kim, Gibson & Boe-Gibson 2024, §2.1). A province without a treated unit,
  or without a control, carries no weight. Unstratified (``stratify=False``) it is the plain
  difference ``mean(d | treated) - mean(d | control)``, which is always reported beside it
  (``estimate_log_unadjusted``). Negative sums are clipped to 0 (VIIRS negatives, §4.1 item 2).
* **Floor.** ``eps`` defaults to 1% of the median baseline-year ``sum_lights`` over the units
  with light: the Lessmann & Seidel (2017, §1.1) "+0.01 when zero" idea made scale-free,
  because a sum of lights is in nW/cm²/sr x (fractional) pixels and its size depends on
  the units and the source. The same ``eps`` is used for every unit and both years, so a
  unit dark in both years has ``d = 0`` and a dark-to-lit unit a large but bounded ``d``.
  Log effects with zeros depend on this floor (Chen & Roth 2024, §2.6): it is reported.
* **Inference: a stratified permutation test.** With ~20 treated units asymptotic standard
  errors over-reject (MacKinnon & Webb 2016/2020, §2.6), so the reference distribution is the
  randomization distribution itself: each draw re-assigns treatment within every province
  among the treated *and* control units, keeping the treated count of each province (§4.2
  item 6: stratified by province), and recomputes the statistic. The observed assignment is one
  such draw under "no effect", so ``p = (1 + #{|drawn| >= |obs|}) / (1 + B)`` rejects a true null
  at most ``alpha`` of the time whenever ``alpha (1 + B)`` is a whole number. (Until issue 23's
  size check the sets were drawn from the controls only, as Conley & Taber do, §2.6: within a
  province where the treated are many, that takes ``n_T,p`` of the ``n_C,p`` controls instead of
  the ``n_p`` units, narrowing the spread, and it shifts the distribution's centre by
  ``n_C / (n_C - n_T)``; it rejected 6.2% of true nulls at 5% on 4000 planted panels.)
* **Statistic.** By default the Welch t of the log changes centred on their province's mean
  (over treated and controls, so the centring is the same in every draw): its numerator is the
  estimate above times a constant, so the test is centred where the estimate is, the province
  mix of the treated set does not shift it, and the Welch standard error keeps the test near its
  size when the treated units are noisier than the controls. Not the coefficient: the designated
  units are selected, hence atypical, and coefficient-based randomization inference fails when
  treated units are atypical (MacKinnon & Webb, §2.6; recommended in §4.2 item 6).
  ``statistic="coef"`` is available and the coefficient p-value is always reported beside it
  (``p_value_coef``).
* **Interval.** Inverting the test under a constant additive effect ``tau`` on the treated:
  ``tau`` is in the interval when the test of "the treated units' ``d`` minus ``tau`` show no
  effect" does not reject, every draw recomputed. The statistics' sums are linear in ``tau``,
  so each ``tau`` costs one pass over the draws; the ends are found on a grid and refined to
  rounding (:func:`_invert`), and the interval excludes 0 exactly when ``p <= 0.05`` (unless the
  non-rejected set has a hole, which the hull then covers).
* **Power.** From the same draws: each re-drawn set is the treated set of a world without the
  effect (the estimate taken out of the treated units); a world with a constant effect ``tau``
  has its coefficient moved by exactly ``tau``, and it is rejected when
  ``|coef + tau| / se > q``, ``q`` the test's critical value and ``se`` the world's standard
  error without the effect. The power at ``tau`` is the share of worlds rejected; ``mde_log`` is
  the smallest ``tau > 0`` (``mde_log_negative`` the largest ``tau < 0``) reaching 80% at the
  test's 5% level (§2.6: with few treated units only the panel's own randomization distribution
  is trustworthy, so no normal approximation is used).

Longer than most modules because the randomization test, its inversion and its power share the
sums of :class:`GroupStats`, and the panel checks, pre-trend pairs and the site-count placebo
live beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.errors import ComparisonError

MIN_CONTROLS = 5
DEFAULT_DRAWS = 2000
DEFAULT_SEED = 20240228
EPS_FRACTION = 0.01
MDE_POWER = 0.8
PANEL_COLUMNS = ("unit_id", "province", "year", "sum_lights", "treated")
Statistic = Literal["t", "coef"]


@dataclass(frozen=True)
class DidResult:
    """One difference-in-differences estimate with its randomization inference."""

    estimate_log: float
    ci_low: float
    ci_high: float
    p_value: float
    n_treated: int
    n_control: int
    n_placebo: int
    method: str
    baseline_year: int
    target_year: int
    eps: float
    statistic: str
    p_value_coef: float
    se: float
    confidence: float
    seed: int
    stratify: bool
    n_fallback: int  # treated units in a province without a control (no weight in the estimate)
    excluded: tuple[str, ...]
    n_dropped: int  # units without a value in one of the two years
    # the estimate for every re-drawn treated set, without an effect (the randomization distribution)
    placebo: tuple[float, ...] = field(default=(), repr=False, compare=False)
    mde_log: float | None = (
        None  # smallest log effect > 0 detected with MDE_POWER (None: too few draws)
    )
    mde_log_negative: float | None = None  # the same for dimming (< 0)
    mde_power: float = 0.8
    # the plain difference of mean log changes, every unit once (``estimate_log`` compares within provinces)
    estimate_log_unadjusted: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Everything but the placebo draws, JSON-ready (``did.json``)."""
        out = asdict(self)
        out.pop("placebo")
        out["excluded"] = list(self.excluded)
        return out


@dataclass(frozen=True)
class CountPlacebo:
    """Where "k of n brightened" falls among the counts of random n-sets of control sites."""

    k: int
    n: int
    n_control_sites: int
    n_control_brightened: int
    expected: float  # mean count in a random n-set
    p_lower: float  # P(count <= k): k is surprisingly low when small
    p_upper: float  # P(count >= k): k is surprisingly high when small
    p_two_sided: float  # min(1, 2 min(p_lower, p_upper))
    percentile: float  # mid-rank percentile of k, 100 (P(count < k) + P(count = k) / 2)
    pmf: tuple[float, ...] = field(repr=False, compare=False)  # P(count = j), j = 0..n

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["pmf"] = list(self.pmf)
        return out


@dataclass(frozen=True)
class _Units:
    d: np.ndarray
    treated: np.ndarray
    strata: np.ndarray
    eps: float
    n_dropped: int


def _check_panel(panel: pd.DataFrame) -> None:
    missing = [c for c in PANEL_COLUMNS if c not in panel.columns]
    if missing:
        raise ComparisonError(
            f"unit panel: missing column(s) {', '.join(missing)}; "
            f"it needs {', '.join(PANEL_COLUMNS)}"
        )
    if panel.duplicated(["unit_id", "year"]).any():
        dup = panel.loc[panel.duplicated(["unit_id", "year"]), "unit_id"].iloc[0]
        raise ComparisonError(
            f"unit panel: unit {dup!r} has several rows for one year; "
            "give one row per unit and year"
        )
    if (panel.groupby("unit_id")["treated"].nunique() > 1).any():
        raise ComparisonError(
            "unit panel: a unit is treated in some years and not in others; "
            "'treated' must be constant per unit"
        )


def unit_log_change_set(
    panel: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    eps: float | None,
    exclude: Iterable[str],
) -> _Units:
    _check_panel(panel)
    exclude = tuple(exclude)
    ids = panel["unit_id"].astype(str)
    unknown = sorted(set(exclude) - set(ids))
    if unknown:
        raise ComparisonError(
            f"unit panel: cannot exclude unknown unit(s) {', '.join(map(str, unknown))}"
        )
    years = set(panel["year"])
    for label, y in (("baseline", baseline_year), ("target", target_year)):
        if y not in years:
            raise ComparisonError(
                f"unit panel: no data for the {label} year {y} "
                f"(years present: {', '.join(map(str, sorted(years)))})"
            )
    p = panel[~ids.isin(exclude)]
    wide = p.pivot(index="unit_id", columns="year", values="sum_lights")
    info = p.groupby("unit_id").agg(treated=("treated", "first"), province=("province", "first"))
    base = wide[baseline_year].clip(lower=0)
    targ = wide[target_year].clip(lower=0)
    ok = base.notna() & targ.notna()
    if eps is None:
        lit = base[ok & (base > 0)]
        eps = EPS_FRACTION * float(lit.median()) if len(lit) else 1.0
    if not eps > 0:
        raise ComparisonError(f"eps must be positive, got {eps}")
    d = np.log((targ[ok] + eps) / (base[ok] + eps)).to_numpy(float)
    info = info.loc[ok[ok].index]
    strata = info["province"].astype("string").fillna("").to_numpy(str)
    return _Units(d, info["treated"].astype(bool).to_numpy(), strata, float(eps), int((~ok).sum()))


def welch_t(mean_a, ss_a, n_a, mean_b, ss_b, n_b):
    """Welch t of a - b from means and centred sums of squares (arrays or floats)."""
    var = np.maximum(ss_a, 0) / (n_a - 1) / n_a + np.maximum(ss_b, 0) / (n_b - 1) / n_b
    se = np.sqrt(var)
    return (mean_a - mean_b) / np.maximum(se, 1e-300), se


def critical_value(abs_placebo: np.ndarray, alpha: float) -> float:
    """Largest |statistic| not rejected: the m-th largest |placebo|, m = floor(alpha (1+B) - 1) + 1.

    ``p(x) = (1 + #{|s| >= x}) / (1 + B) > alpha`` holds exactly when at least m placebo values
    reach ``x``, i.e. when ``x`` is at most the m-th largest one. With ``m < 1`` (too few draws:
    ``1 / (1 + B) > alpha``) nothing is ever rejected and the critical value is infinite.
    """
    b = len(abs_placebo)
    m = math.floor(alpha * (1 + b) - 1) + 1
    if m < 1:
        return math.inf
    if m > b:
        return 0.0
    return float(np.sort(abs_placebo)[::-1][m - 1])


def ri_p_value(abs_placebo: np.ndarray, observed: float) -> float:
    # A relative tolerance so that ties (e.g. a placebo set equal to the treated set) count.
    hits = np.count_nonzero(abs_placebo >= abs(observed) * (1 - 1e-12))
    return float((1 + hits) / (1 + len(abs_placebo)))


def minimum_detectable_effect(
    coef: np.ndarray, se: np.ndarray, critical: float, power: float = MDE_POWER
) -> float | None:
    """Smallest ``tau > 0`` whose share of rejected placebo sets ``|coef + tau| / se > critical`` reaches ``power``.

    ``coef``/``se`` are the placebo sets' coefficients and standard errors (``se = 1`` for the
    coefficient statistic). A placebo set is rejected for ``tau > a = critical·se − coef`` or
    ``tau < b = −critical·se − coef`` (disjoint when ``se > 0``), so the power just above each
    ``a`` is exact; None when the test can never reject (``critical`` infinite, too few draws).
    For the negative side pass ``-coef`` and negate the result.
    """
    coef, se = np.asarray(coef, float), np.asarray(se, float)
    if not math.isfinite(critical) or len(coef) == 0:
        return None
    a, b = np.sort(critical * se - coef), np.sort(-critical * se - coef)
    n = len(a)
    cand = np.concatenate([[0.0], a[a > 0]])
    above_a = np.searchsorted(a, cand, side="right")  # a < tau (tau just above the candidate)
    below_b = n - np.searchsorted(b, cand, side="right")  # b > tau
    ok = np.flatnonzero((above_a + below_b) >= power * n - 1e-9)
    return float(cand[ok[0]]) if len(ok) else None


def permutation_sets(
    strata: np.ndarray, treated: np.ndarray, n_draws: int, rng: np.random.Generator
) -> np.ndarray:
    """A (draws x units) indicator of treated sets re-drawn within each stratum.

    Each row holds, in every stratum, as many units as the treated set has there, drawn
    uniformly from all the stratum's units (treated and controls): the stratified permutation
    distribution of the assignment, of which the observed treated set is one draw.
    """
    strata, treated = np.asarray(strata), np.asarray(treated, bool)
    keys = rng.random((n_draws, len(strata)))
    chosen = np.zeros((n_draws, len(strata)), dtype=bool)
    rows = np.arange(n_draws)[:, None]
    for stratum in pd.unique(strata[treated]):
        cols = np.flatnonzero(strata == stratum)
        k = int(treated[cols].sum())
        pick = np.argsort(keys[:, cols], axis=1)[:, :k]
        chosen[rows, cols[pick]] = True
    return chosen


@dataclass(frozen=True)
class Centred:
    """Log changes centred within strata, and how they move with a constant effect on the treated.

    ``a`` is ``d`` minus its stratum's mean (over treated and controls alike, so it is the same for
    every re-drawn treated set); subtracting an effect ``tau`` from the treated units' ``d`` turns it
    into ``a - tau * g`` with ``g = treated - c``, ``c`` the treated share of the unit's stratum.
    The difference of the treated and control means of ``a`` is ``scale`` times the within-stratum
    estimate ``sum_s h_s (mean_T,s - mean_C,s) / sum_s h_s``, ``h_s = n_T,s n_C,s / n_s`` (the
    coefficient of a regression with stratum x year fixed effects); strata without treated units or
    without controls get no weight.
    """

    a: np.ndarray
    g: np.ndarray
    scale: float
    n_no_control: int  # treated units in strata without a control (weight 0)

    @classmethod
    def of(cls, d: np.ndarray, treated: np.ndarray, strata: np.ndarray) -> Centred:
        d, treated = np.asarray(d, float), np.asarray(treated, bool)
        _, idx = np.unique(np.asarray(strata).astype(str), return_inverse=True)
        size = np.bincount(idx).astype(float)
        n_tr = np.bincount(idx, weights=treated.astype(float))
        c = (n_tr / size)[idx]
        a = d - (np.bincount(idx, weights=d) / size)[idx]
        n_t, n_c = int(treated.sum()), int((~treated).sum())
        h = float((n_tr * (size - n_tr) / size).sum())
        lone = int(n_tr[n_tr == size].sum())
        return cls(a, treated - c, (1 / n_t + 1 / n_c) * h, lone)


class GroupStats:
    """Difference of group means and Welch t of ``a - tau * b`` for many treated sets at any ``tau``.

    ``sets`` is a (rows x units) indicator; the sums the statistics need are linear in the data,
    so they are taken once and every ``tau`` costs O(rows).
    """

    def __init__(self, sets: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        cols = np.column_stack([np.ones_like(a), a, a * a, a * b, b, b * b])
        self.group = sets.astype(float) @ cols
        self.total = cols.sum(axis=0)

    def at(self, tau: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(difference of means, Welch t, Welch standard error) of ``a - tau b``, one per row
        (``tau`` a column of values: one row of results per value)."""

        def moments(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s1 = m[..., 1] - tau * m[..., 4]
            s2 = m[..., 2] - 2 * tau * m[..., 3] + tau * tau * m[..., 5]
            mean = s1 / m[..., 0]
            return m[..., 0], mean, s2 - m[..., 0] * mean**2

        n1, m1, ss1 = moments(self.group)
        n2, m2, ss2 = moments(self.total - self.group)
        with np.errstate(invalid="ignore", divide="ignore"):  # one treated unit: no Welch t
            t, se = welch_t(m1, ss1, n1, m2, ss2, n2)
        return m1 - m2, t, se


def _invert(
    p_at: Callable[[np.ndarray], np.ndarray], centre: float, step: float, alpha: float
) -> tuple[float, float]:
    """The ends of the set of effects the test does not reject at ``alpha``.

    ``p_at(taus)`` gives the p-value of "effect = tau" for each tau; the test does not reject its
    own estimate (``centre``, p = 1). On each side a grid of 160 steps reaches out until its
    outer half is rejected; the step after the last value not rejected is then cut in 64 five
    times over, so the interval is the hull of the non-rejected values on the grid, its ends
    exact to about 1e-10 of ``step``.
    """
    ends = []
    for sign in (-1.0, 1.0):
        reach, grid, ok = 8 * step, np.empty(0), np.empty(0, bool)
        while reach < 1e7 * step:
            grid = centre + sign * reach * np.arange(1, 161) / 160
            ok = p_at(grid) > alpha
            if not ok[80:].any():
                break
            reach *= 4
        else:
            ends.append(sign * math.inf)
            continue
        last = np.flatnonzero(ok)
        inner = float(grid[last[-1]]) if len(last) else centre
        outer = float(grid[last[-1] + 1]) if len(last) else float(grid[0])
        for _ in range(5):
            cut = inner + (outer - inner) * np.arange(1, 64) / 64
            ok = p_at(cut) > alpha
            last = np.flatnonzero(ok)
            if len(last):
                inner = float(cut[last[-1]])
            if len(last) < len(cut):
                outer = float(cut[last[-1] + 1]) if len(last) else float(cut[0])
        ends.append(inner)
    return ends[0], ends[1]


def _estimate(
    u: _Units,
    baseline_year: int,
    target_year: int,
    *,
    n_draws: int,
    seed: int,
    stratify: bool,
    statistic: Statistic,
    confidence: float,
    excluded: tuple[str, ...],
) -> DidResult:
    n_t, n_c = int(u.treated.sum()), int((~u.treated).sum())
    if n_t == 0:
        raise ComparisonError(
            "unit panel: no treated unit has data in both years; nothing to compare"
        )
    if n_c < max(MIN_CONTROLS, n_t + 2):
        raise ComparisonError(
            f"unit panel: {n_c} control unit(s) with data in {baseline_year} and "
            f"{target_year}; the comparison needs at least {max(MIN_CONTROLS, n_t + 2)} "
            f"for {n_t} treated (use more units or a smaller treated set)"
        )
    if n_draws < 1:
        raise ComparisonError(f"the number of placebo draws must be positive, got {n_draws}")
    if statistic == "t" and n_t < 2:
        statistic = "coef"  # a t-statistic needs two treated units
    unadjusted = float(u.d[u.treated].mean() - u.d[~u.treated].mean())
    pooled = np.zeros(len(u.d), dtype=str)
    strata = u.strata if stratify else pooled
    cen = Centred.of(u.d, u.treated, strata)
    fallback = cen.n_no_control
    if not cen.scale > 0:  # no province holds treated and control units: one pooled stratum
        strata, fallback = pooled, n_t
        cen = Centred.of(u.d, u.treated, strata)
    sets = permutation_sets(strata, u.treated, n_draws, np.random.default_rng(seed))
    observed = GroupStats(u.treated[None, :], cen.a, cen.g)
    drawn = GroupStats(sets, cen.a, cen.g)
    use_t = statistic == "t"

    def p_at(taus: np.ndarray) -> np.ndarray:
        """p-values of "effect = tau" (the treated units' d lowered by tau), one per tau."""
        col = np.asarray(taus, float)[:, None]
        obs, perm = observed.at(col), drawn.at(col)
        o, p = (obs[1], perm[1]) if use_t else (obs[0], perm[0])
        hits = np.count_nonzero(np.abs(p) >= np.abs(o) * (1 - 1e-12), axis=1)
        return (1 + hits) / (1 + n_draws)

    diff_o, _, se_o = observed.at(0.0)
    diff_p = drawn.at(0.0)[0]
    est, se = float(diff_o[0]) / cen.scale, float(se_o[0]) / cen.scale
    p = float(p_at(np.array([0.0]))[0])
    p_coef = ri_p_value(np.abs(diff_p), float(diff_o[0]))
    alpha = 1 - confidence
    if 1 / (1 + n_draws) > alpha:  # too few draws to ever reject
        ci_low, ci_high = -math.inf, math.inf
    else:
        step = se if math.isfinite(se) and se > 0 else max(abs(est), 1e-6)
        ci_low, ci_high = _invert(p_at, est, step, alpha)
    # Power: the re-drawn sets as treated sets of worlds without the effect (the estimate taken
    # out of the treated units); a world with effect tau adds tau to its coefficient.
    diff_w, t_w, se_w = drawn.at(est)
    coef_w = diff_w / cen.scale
    crit = critical_value(np.abs(t_w if use_t else coef_w), alpha)
    se_mde = se_w / cen.scale if use_t else np.ones_like(coef_w)
    mde = mde_neg = None
    if math.isfinite(ci_low) or math.isfinite(ci_high):  # else no effect is ever rejected (ties)
        mde = minimum_detectable_effect(coef_w, se_mde, crit)
        mde_neg = minimum_detectable_effect(-coef_w, se_mde, crit)
    if not stratify:
        strat = "unstratified"
    elif fallback == n_t:
        strat = "no province holds both treated and control units, so unstratified"
    else:
        strat = "within provinces" + (
            f"; {fallback} treated in provinces without a control carry no weight"
            if fallback
            else ""
        )
    adjust = "within-province " if stratify and fallback < n_t else ""
    method = (
        f"{adjust}difference of mean log changes ln((S{target_year}+eps)/(S{baseline_year}+eps)), treated "
        f"minus control; randomization inference on the "
        f"{'Welch t' if use_t else 'coefficient'} of {'province-centred ' if adjust else ''}log "
        f"changes with {n_draws} treated sets of {n_t} re-drawn among the {n_t} treated and {n_c} "
        f"control units ({strat}); {confidence:.0%} interval by inverting the test under a constant "
        "additive effect"
    )
    return DidResult(
        estimate_log=est,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p,
        n_treated=n_t,
        n_control=n_c,
        n_placebo=n_draws,
        method=method,
        baseline_year=int(baseline_year),
        target_year=int(target_year),
        eps=u.eps,
        statistic=statistic,
        p_value_coef=p_coef,
        se=se,
        confidence=confidence,
        seed=seed,
        stratify=stratify,
        n_fallback=fallback,
        excluded=excluded,
        n_dropped=u.n_dropped,
        placebo=tuple((diff_p / cen.scale).tolist()),
        mde_log=mde,
        mde_log_negative=None if mde_neg is None else -mde_neg,
        estimate_log_unadjusted=unadjusted,
    )


def estimate_did(
    panel: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    *,
    exclude: Iterable[str] = (),
    eps: float | None = None,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = DEFAULT_SEED,
    stratify: bool = True,
    statistic: Statistic = "t",
    confidence: float = 0.95,
) -> DidResult:
    """The treated-minus-control difference of log changes, with randomization inference.

    ``exclude`` names unit ids left out of both groups (e.g. Pyongyang); ``eps`` overrides
    the floor (default 1% of the median lit baseline unit). Units lacking either year are
    dropped (counted in ``n_dropped``). Raises :class:`ComparisonError` for a panel that
    cannot be compared (missing columns, no treated unit, fewer than 5 controls, ...).
    """
    excluded = tuple(str(x) for x in exclude)
    u = unit_log_change_set(panel, baseline_year, target_year, eps, excluded)
    return _estimate(
        u,
        baseline_year,
        target_year,
        n_draws=n_draws,
        seed=seed,
        stratify=stratify,
        statistic=statistic,
        confidence=confidence,
        excluded=excluded,
    )


def estimate_did_excluding(
    panel: pd.DataFrame,
    baseline_year: int,
    target_year: int,
    units: Sequence[str],
    **kwargs: object,
) -> DidResult:
    """:func:`estimate_did` without the named units (a robustness check, e.g. no Pyongyang)."""
    return estimate_did(panel, baseline_year, target_year, exclude=units, **kwargs)  # type: ignore[arg-type]


PRETREND_COLUMNS = (
    "baseline_year",
    "target_year",
    "estimate_log",
    "ci_low",
    "ci_high",
    "p_value",
    "n_treated",
    "n_control",
    "mde_log",
)


def pretrend_pairs(years: Iterable[int], baseline_year: int, gap: int = 1) -> list[tuple[int, int]]:
    """Year pairs ``(y - gap, y)`` present in ``years`` that end at or before the baseline year."""
    have = set(int(y) for y in years)
    return [(y - gap, y) for y in sorted(have) if y <= baseline_year and y - gap in have]


def pretrend_placebos(
    panel: pd.DataFrame,
    baseline_year: int,
    *,
    gap: int = 1,
    pairs: Sequence[tuple[int, int]] | None = None,
    exclude_for: Callable[[int, int], Iterable[str]] | None = None,
    **kwargs: object,
) -> pd.DataFrame:
    """The same estimator on earlier year pairs, which should show nothing before treatment.

    Default pairs: every ``(y - gap, y)`` in the panel ending at or before ``baseline_year``.
    Every pair uses the main comparison's floor (``eps`` from ``baseline_year``, unless given),
    so only the years differ. Extra keyword arguments go to :func:`estimate_did`. One row per
    pair, columns ``PRETREND_COLUMNS``; an empty table when the panel has no earlier pair.
    ``exclude_for(baseline, target)``: more units to leave out of that pair (units already
    building then, :func:`pipeline.compare.cohorts.building_exclusions`), beside ``exclude``.
    """
    _check_panel(panel)
    if kwargs.get("eps") is None:
        exclude: tuple[str, ...] = tuple(kwargs.get("exclude", ()))  # type: ignore[arg-type]
        kwargs["eps"] = unit_log_change_set(panel, baseline_year, baseline_year, None, exclude).eps
    if pairs is None:
        pairs = pretrend_pairs(panel["year"].unique(), baseline_year, gap)
    rows = []
    for b, t in pairs:
        extra = {}
        if exclude_for is not None:
            extra["exclude"] = (*tuple(kwargs.get("exclude", ())), *exclude_for(b, t))  # type: ignore[arg-type]
        r = estimate_did(panel, b, t, **{**kwargs, **extra})  # type: ignore[arg-type]
        rows.append({c: getattr(r, c) for c in PRETREND_COLUMNS})
    return pd.DataFrame(rows, columns=list(PRETREND_COLUMNS))


def count_placebo(control_brightened: Iterable[bool], k: int, n: int) -> CountPlacebo:
    """Where ``k`` brightened of ``n`` falls among counts of random n-sets of control sites.

    The count in a random n-set (without replacement) of ``N`` control sites, ``K`` of which
    brightened, is hypergeometric, so the distribution is exact rather than simulated
    (the site-level placebo of §4.2 item 8: the "5 of 20" set against the same rule applied to
    random non-designated places). Controls with no class (insufficient data) must be
    dropped by the caller.
    """
    flags = np.asarray(list(control_brightened), dtype=bool)
    big_n, big_k = len(flags), int(flags.sum())
    if not 0 <= k <= n:
        raise ComparisonError(f"the claim's count must satisfy 0 <= k <= n, got k={k}, n={n}")
    if n > big_n:
        raise ComparisonError(
            f"site placebo: {big_n} control site(s) with a class, fewer than the "
            f"claim's n={n}; add control sites or compare a smaller set"
        )
    total = math.comb(big_n, n)
    pmf = np.array(
        [math.comb(big_k, j) * math.comb(big_n - big_k, n - j) / total for j in range(n + 1)]
    )
    p_lower, p_upper = float(pmf[: k + 1].sum()), float(pmf[k:].sum())
    return CountPlacebo(
        k=k,
        n=n,
        n_control_sites=big_n,
        n_control_brightened=big_k,
        expected=n * big_k / big_n if big_n else 0.0,
        p_lower=min(p_lower, 1.0),
        p_upper=min(p_upper, 1.0),
        p_two_sided=min(1.0, 2 * min(p_lower, p_upper)),
        percentile=100 * float(pmf[:k].sum() + pmf[k] / 2),
        pmf=tuple(pmf.tolist()),
    )
