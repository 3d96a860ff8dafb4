"""Difference-in-differences: did the designated units change differently from the rest?

Inputs
    A unit-year panel (one row per unit and year) with columns ``unit_id``, ``province``,
    ``year``, ``sum_lights`` (the yearly value, already computed) and ``treated`` (bool).
Outputs
    :class:`DidResult` (``to_dict()`` is the content of ``did.json``), a pre-trend table from
    :func:`pretrend_placebos`, and :class:`CountPlacebo` for a "k of n brightened" claim.

Method (references are in ``docs/research/methods_policy.md``, cited by section):

* **Estimate.** Each unit's log change ``d = ln((S_target + eps) / (S_base + eps))``; the
  effect is ``mean(d | treated) - mean(d | control)``, every unit counting once (a 2x2 DiD on
  logs, the design of the Kaesong closure study, Kim, Gibson & Boe-Gibson 2024, §2.1).
  Negative sums are clipped to 0 (VIIRS negatives, §4.1 item 2).
* **Floor.** ``eps`` defaults to 1% of the median baseline-year ``sum_lights`` over the units
  with light: the Lessmann & Seidel (2017, §1.1) "+0.01 when zero" idea made scale-free,
  because a sum of lights is in nW/cm²/sr x (fractional) pixels and its size depends on
  the units and the source. The same ``eps`` is used for every unit and both years, so a
  unit dark in both years has ``d = 0`` and a dark-to-lit unit a large but bounded ``d``.
  Log effects with zeros depend on this floor (Chen & Roth 2024, §2.6): it is reported.
* **Inference: randomization over placebo sets drawn from the controls.** With ~20 treated
  units asymptotic standard errors over-reject (MacKinnon & Webb 2016/2020, §2.6). Each
  draw picks as many controls as there are treated units, with the same number per province
  as the treated set (§4.2 item 6: stratified by province; a province with too few controls
  lends its shortfall to the pooled remaining controls), and compares them with the other
  controls. Placebos come from the controls only, not from all units: under an effect the
  treated units would otherwise carry that effect into the placebo distribution and widen it
  (Conley & Taber 2011 take the null distribution from control units, §2.6), and it makes the
  interval below an exact, closed-form inversion. ``p = (1 + #{|placebo| >= |obs|}) / (1 + B)``.
* **Statistic.** By default the Welch t-statistic, not the coefficient: the designated units
  are selected, hence atypical, and coefficient-based RI fails when treated units are atypical
  (MacKinnon & Webb, §2.6; recommended in §4.2 item 6). ``statistic="coef"`` is available and
  the coefficient p-value is always reported beside it (``p_value_coef``).
* **Interval.** Inverting the randomization test under a constant additive effect ``tau`` on
  the treated: subtracting ``tau`` from the treated log changes moves the observed statistic
  to ``(est - tau) / se`` (the treated variance is unchanged) and leaves the control-only
  placebo distribution untouched, so the set of ``tau`` not rejected at 5% is exactly
  ``est ± q·se`` with ``q`` the critical |placebo| value; no grid is needed and the interval
  excludes 0 exactly when ``p <= 0.05``.
* **Power.** The same inversion gives the power against a constant effect ``tau`` from the
  placebo draws themselves: a placebo set plus ``tau`` is rejected when
  ``|coef + tau| / se > q``, so the power at ``tau`` is the share of placebo sets for which that
  holds, and ``mde_log`` is the smallest ``tau > 0`` (``mde_log_negative`` the largest
  ``tau < 0``) reaching 80% at the test's 5% level (§2.6: with few treated units only the
  panel's own placebo distribution is trustworthy, so no normal approximation is used).
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
    n_fallback: int  # treated units whose province had too few controls (drawn from the pool)
    excluded: tuple[str, ...]
    n_dropped: int  # units without a value in one of the two years
    placebo: tuple[float, ...] = field(default=(), repr=False, compare=False)  # coefficient scale
    mde_log: float | None = (
        None  # smallest log effect > 0 detected with MDE_POWER (None: too few draws)
    )
    mde_log_negative: float | None = None  # the same for dimming (< 0)
    mde_power: float = 0.8

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


def placebo_sets(
    control_strata: np.ndarray, treated_strata: np.ndarray, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A (draws x controls) indicator matrix of placebo treated sets, and the fallback count.

    Each row holds ``len(treated_strata)`` controls: per stratum as many as the treated set
    has there, and any shortfall (a stratum with too few controls) drawn from the remaining
    controls of all strata.
    """
    n_c = len(control_strata)
    keys = rng.random((n_draws, n_c))
    chosen = np.zeros((n_draws, n_c), dtype=bool)
    rows = np.arange(n_draws)[:, None]
    shortfall = 0
    wanted = pd.Series(treated_strata).value_counts(sort=False)
    for stratum, k in wanted.items():
        cols = np.flatnonzero(control_strata == stratum)
        take = min(int(k), len(cols))
        shortfall += int(k) - take
        if take:
            pick = np.argsort(keys[:, cols], axis=1)[:, :take]
            chosen[rows, cols[pick]] = True
    if shortfall:
        # fresh keys: the leftovers of a stratum are those with the larger first keys
        pick = np.argsort(np.where(chosen, np.inf, rng.random((n_draws, n_c))), axis=1)[
            :, :shortfall
        ]
        chosen[rows, pick] = True
    return chosen, shortfall


def welch_t(mean_a, ss_a, n_a, mean_b, ss_b, n_b):
    """Welch t of a - b from means and centred sums of squares (arrays or floats)."""
    var = np.maximum(ss_a, 0) / (n_a - 1) / n_a + np.maximum(ss_b, 0) / (n_b - 1) / n_b
    se = np.sqrt(var)
    return (mean_a - mean_b) / np.maximum(se, 1e-300), se


def critical_value(abs_placebo: np.ndarray, alpha: float) -> float:
    """Largest |statistic| not rejected: the m-th largest |placebo|, m = floor(alpha (1+B) - 1) + 1.

    ``p(x) = (1 + #{|s| >= x}) / (1 + B) > alpha`` holds exactly when at least m placebo values
    reach ``x``, i.e. when ``x`` is at most the m-th largest one.
    """
    b = len(abs_placebo)
    m = math.floor(alpha * (1 + b) - 1) + 1
    if m > b:
        return math.inf
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
    d_t, d_c = u.d[u.treated], u.d[~u.treated]
    est = float(d_t.mean() - d_c.mean())
    ss = lambda x: float(((x - x.mean()) ** 2).sum())  # noqa: E731
    t_obs, se = welch_t(d_t.mean(), ss(d_t), n_t, d_c.mean(), ss(d_c), n_c)

    strata_c = u.strata[~u.treated] if stratify else np.zeros(n_c, dtype=str)
    strata_t = u.strata[u.treated] if stratify else np.zeros(n_t, dtype=str)
    chosen, fallback = placebo_sets(strata_c, strata_t, n_draws, np.random.default_rng(seed))
    m = chosen.astype(float)
    s1, s2 = m @ d_c, m @ (d_c**2)
    r1, r2, n_r = d_c.sum() - s1, (d_c**2).sum() - s2, n_c - n_t
    mean_p, mean_r = s1 / n_t, r1 / n_r
    coef = mean_p - mean_r
    alpha = 1 - confidence
    p_coef = ri_p_value(np.abs(coef), est)
    if statistic == "t":
        t_pl, se_pl = welch_t(mean_p, s2 - n_t * mean_p**2, n_t, mean_r, r2 - n_r * mean_r**2, n_r)
        p = ri_p_value(np.abs(t_pl), float(t_obs))
        crit = critical_value(np.abs(t_pl), alpha)
        half = crit * float(se)
    else:
        p = p_coef
        crit = half = critical_value(np.abs(coef), alpha)
        se_pl = np.ones_like(coef)
    mde = minimum_detectable_effect(coef, se_pl, crit)
    mde_neg = minimum_detectable_effect(-coef, se_pl, crit)
    strat = (
        "stratified by province"
        + (f", {fallback} drawn from the pooled controls" if fallback else "")
        if stratify
        else "unstratified"
    )
    method = (
        f"difference of mean log changes ln((S{target_year}+eps)/(S{baseline_year}+eps)), treated "
        f"minus control; randomization inference on the {'Welch t' if statistic == 't' else 'coefficient'}"
        f" with {n_draws} placebo sets of {n_t} drawn from the {n_c} controls ({strat}); "
        f"{confidence:.0%} interval by inverting the test under a constant additive effect"
    )
    return DidResult(
        estimate_log=est,
        ci_low=est - half,
        ci_high=est + half,
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
        se=float(se),
        confidence=confidence,
        seed=seed,
        stratify=stratify,
        n_fallback=fallback,
        excluded=excluded,
        n_dropped=u.n_dropped,
        placebo=tuple(coef.tolist()),
        mde_log=mde,
        mde_log_negative=None if mde_neg is None else -mde_neg,
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
