"""Difference-in-differences with randomization inference: planted effects, null twins, exact checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.compare.did import (
    ComparisonError,
    count_placebo,
    estimate_did,
    estimate_did_excluding,
    permutation_sets,
    pretrend_pairs,
    pretrend_placebos,
)
from pipeline.errors import NightlightsError

YEARS = tuple(range(2020, 2026))


def make_panel(
    seed: int,
    effect: float = 0.3,
    n_units: int = 181,
    n_treated: int = 20,
    n_provinces: int = 12,
    years: tuple[int, ...] = YEARS,
    target: int = 2025,
    noise: float = 0.10,
) -> pd.DataFrame:
    """Units in provinces with multiplicative yearly noise, a national and a province shock per
    year, and a log effect ``effect`` on the treated units in the target year only."""
    rng = np.random.default_rng(seed)
    prov = np.arange(n_units) % n_provinces
    treated = np.zeros(n_units, dtype=bool)
    treated[rng.choice(n_units, n_treated, replace=False)] = True
    level = rng.normal(7.0, 1.5, n_units)
    level[0] = 13.0  # a capital far brighter than the rest
    frames = []
    for y in years:
        log_s = (
            level
            + rng.normal(0, 0.1)
            + rng.normal(0, 0.05, n_provinces)[prov]
            + rng.normal(0, noise, n_units)
            + effect * treated * (y == target)
        )
        frames.append(
            pd.DataFrame(
                {
                    "unit_id": [f"u{i:03d}" for i in range(n_units)],
                    "province": [f"P{p:02d}" for p in prov],
                    "year": y,
                    "sum_lights": np.exp(log_s),
                    "treated": treated,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def direct_estimate(panel: pd.DataFrame, base: int, target: int, eps: float) -> float:
    wide = panel.pivot(index="unit_id", columns="year", values="sum_lights")
    d = np.log((wide[target] + eps) / (wide[base] + eps))
    treated = panel.groupby("unit_id")["treated"].first()
    return float(d[treated].mean() - d[~treated].mean())


def direct_within(panel: pd.DataFrame, base: int, target: int, eps: float) -> float:
    """Treated minus control mean within each province, weighted by n_T n_C / n (fixed effects' weights)."""
    wide = panel.pivot(index="unit_id", columns="year", values="sum_lights")
    units = panel.groupby("unit_id")[["treated", "province"]].first()
    units["d"] = np.log((wide[target] + eps) / (wide[base] + eps))
    num = den = 0.0
    for _, g in units.groupby("province"):
        t, c = g.loc[g["treated"], "d"], g.loc[~g["treated"], "d"]
        if len(t) and len(c):
            h = len(t) * len(c) / len(g)
            num, den = num + h * (t.mean() - c.mean()), den + h
    return num / den


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return make_panel(1, effect=0.3)


@pytest.fixture(scope="module")
def null() -> pd.DataFrame:
    return make_panel(1, effect=0.0)


def test_planted_effect_is_recovered_and_significant(planted):
    r = estimate_did(planted, 2024, 2025)
    assert abs(r.estimate_log - 0.3) < 0.08
    assert r.p_value < 0.05
    assert r.ci_low < 0.3 < r.ci_high and r.ci_low > 0
    assert (r.n_treated, r.n_control, r.n_placebo) == (20, 161, 2000)
    assert r.estimate_log == pytest.approx(direct_within(planted, 2024, 2025, r.eps), abs=1e-12)
    assert r.estimate_log_unadjusted == pytest.approx(
        direct_estimate(planted, 2024, 2025, r.eps), abs=1e-12
    )
    flat = estimate_did(planted, 2024, 2025, stratify=False, n_draws=200)
    assert flat.estimate_log == pytest.approx(r.estimate_log_unadjusted, abs=1e-12)


def test_null_twin_is_not_significant_and_its_interval_covers_zero(null):
    r = estimate_did(null, 2024, 2025)
    assert r.p_value >= 0.05 and r.p_value_coef >= 0.05
    assert r.ci_low < 0 < r.ci_high
    assert abs(r.estimate_log) < 0.08


@pytest.mark.parametrize("which", ["planted", "null"])
def test_pretrend_placebos_show_nothing(which, request):
    panel = request.getfixturevalue(which)
    table = pretrend_placebos(panel, 2024, n_draws=1000)
    assert list(table[["baseline_year", "target_year"]].itertuples(index=False, name=None)) == [
        (2020, 2021),
        (2021, 2022),
        (2022, 2023),
        (2023, 2024),
    ]
    assert (table["estimate_log"].abs() < 0.08).all()
    assert ((table["ci_low"] < 0) & (table["ci_high"] > 0)).sum() >= 3


def test_pretrend_pairs_keep_the_gap_and_stop_at_the_baseline():
    assert pretrend_pairs([2019, 2020, 2021, 2022, 2023], 2022, gap=2) == [
        (2019, 2021),
        (2020, 2022),
    ]
    assert pretrend_pairs([2024, 2025], 2024) == []


def test_eps_default_is_one_percent_of_the_median_lit_baseline(planted):
    r = estimate_did(planted, 2024, 2025)
    base = planted.loc[planted["year"] == 2024, "sum_lights"]
    assert r.eps == pytest.approx(0.01 * base.median())
    assert estimate_did(planted, 2024, 2025, eps=5.0).eps == 5.0


def test_interval_is_the_exact_inversion_of_the_test():
    """tau is inside the interval exactly when the test of 'effect = tau' is not rejected.

    With a negligible eps, scaling the treated units' target-year light by exp(-tau) shifts
    their log change by exactly -tau, so each tau can be tested by re-running the estimator.
    """
    panel = make_panel(3, effect=0.2, n_units=90, n_treated=10, n_provinces=6)
    kw = dict(eps=1e-9, n_draws=999, seed=5)
    r = estimate_did(panel, 2024, 2025, **kw)
    treated_target = panel["treated"] & (panel["year"] == 2025)
    taus = np.concatenate(
        [
            np.linspace(r.ci_low - 0.1, r.ci_high + 0.1, 25),
            [r.ci_low - 1e-4, r.ci_low + 1e-4, r.ci_high - 1e-4, r.ci_high + 1e-4],
        ]
    )
    for tau in taus:
        shifted = panel.copy()
        shifted.loc[treated_target, "sum_lights"] *= np.exp(-tau)
        p = estimate_did(shifted, 2024, 2025, **kw).p_value
        assert (p > 0.05) == (r.ci_low <= tau <= r.ci_high), tau


@pytest.mark.parametrize("statistic", ["t", "coef"])
def test_p_value_and_interval_agree(planted, null, statistic):
    for panel in (planted, null):
        r = estimate_did(panel, 2024, 2025, statistic=statistic, n_draws=1000)
        assert (r.p_value <= 0.05) == (not r.ci_low <= 0 <= r.ci_high)


def test_excluding_a_unit_matches_a_direct_computation(planted):
    r = estimate_did_excluding(planted, 2024, 2025, ["u000"], eps=2.0)
    rest = planted[planted["unit_id"] != "u000"]
    assert r.estimate_log == pytest.approx(direct_within(rest, 2024, 2025, 2.0), abs=1e-12)
    assert r.n_treated + r.n_control == 180 and r.excluded == ("u000",)
    numeric = planted.assign(unit_id=planted["unit_id"].str[1:].astype(int))
    assert estimate_did(numeric, 2024, 2025, exclude=["0"], eps=2.0).estimate_log == pytest.approx(
        r.estimate_log, abs=1e-12
    )
    with pytest.raises(ComparisonError, match="unknown unit"):
        estimate_did(planted, 2024, 2025, exclude=["nowhere"])


def test_permutation_sets_redraw_the_treated_within_provinces():
    rng = np.random.default_rng(0)
    strata = np.array(["A"] * 10 + ["B"] * 10 + ["C"] * 4)
    treated = np.zeros(24, bool)
    treated[[0, 1, 10, 20, 21, 22]] = True  # two in A, one in B, three of C's four
    sets = permutation_sets(strata, treated, 3000, rng)
    assert (sets[:, strata == "A"].sum(axis=1) == 2).all()
    assert (sets[:, strata == "B"].sum(axis=1) == 1).all()
    assert (sets[:, strata == "C"].sum(axis=1) == 3).all()
    # every unit of a stratum, treated or not, equally likely: 2/10 in A, 3/4 in C
    assert np.abs(sets[:, strata == "A"].mean(axis=0) - 0.2).max() < 0.03
    assert np.abs(sets[:, strata == "C"].mean(axis=0) - 0.75).max() < 0.03


def test_a_province_without_controls_carries_no_weight():
    panel = make_panel(6, effect=0.3, n_units=60, n_treated=10, n_provinces=6)
    only = panel["unit_id"].isin([f"u{i:03d}" for i in range(5, 60, 6)])  # province P05
    lone = panel.assign(treated=panel["treated"] | only)  # every unit of P05 treated
    r = estimate_did(lone, 2024, 2025, n_draws=200, eps=1.0)
    assert r.n_fallback == 10 and "carry no weight" in r.method
    rest = lone[~only]
    assert r.estimate_log == pytest.approx(direct_within(rest, 2024, 2025, 1.0), abs=1e-12)


def test_randomization_p_values_are_roughly_uniform_under_the_null():
    p = np.array(
        [
            estimate_did(make_panel(100 + s, effect=0.0), 2024, 2025, n_draws=400, seed=s).p_value
            for s in range(40)
        ]
    )
    assert (p <= 0.05).sum() <= 6  # expected 2 of 40
    assert 10 <= (p <= 0.5).sum() <= 30  # expected 20 of 40
    assert 0.35 < p.mean() < 0.65


def test_small_sample_interval_covers_the_planted_effect():
    hits = 0
    for s in range(40):
        panel = make_panel(200 + s, effect=0.3, n_units=48, n_treated=8, n_provinces=4, noise=0.15)
        r = estimate_did(panel, 2024, 2025, n_draws=400, seed=s)
        hits += r.ci_low <= 0.3 <= r.ci_high
    assert hits >= 34  # nominal 38 of 40


def test_result_is_json_ready(planted):
    out = json.loads(json.dumps(estimate_did(planted, 2024, 2025, n_draws=100).to_dict()))
    for key in (
        "estimate_log",
        "ci_low",
        "ci_high",
        "p_value",
        "n_treated",
        "n_control",
        "n_placebo",
        "method",
        "baseline_year",
        "target_year",
        "eps",
        "seed",
    ):
        assert key in out
    assert "placebo" not in out


def test_bad_panels_raise_one_line_comparison_errors(planted):
    few = make_panel(4, n_units=10, n_treated=6, n_provinces=2)
    cases = [
        (few, "at least"),
        (planted.assign(treated=False), "no treated unit"),
        (planted.drop(columns="province"), "missing column"),
        (pd.concat([planted, planted.iloc[:1]]), "several rows"),
    ]
    for panel, message in cases:
        with pytest.raises(ComparisonError, match=message) as info:
            estimate_did(panel, 2024, 2025)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, NightlightsError)
    with pytest.raises(ComparisonError, match="target year 2030"):
        estimate_did(planted, 2024, 2030)


def test_units_missing_a_year_are_dropped_and_counted(planted):
    gone = planted[~((planted["unit_id"] == "u005") & (planted["year"] == 2025))]
    r = estimate_did(gone, 2024, 2025, n_draws=100)
    assert r.n_dropped == 1 and r.n_treated + r.n_control == 180


def test_count_placebo_is_the_exact_hypergeometric():
    small = count_placebo([True, True, False, False], k=0, n=2)
    assert small.pmf == pytest.approx((1 / 6, 4 / 6, 1 / 6))
    assert small.p_lower == pytest.approx(1 / 6) and small.p_upper == pytest.approx(1.0)
    assert small.percentile == pytest.approx(100 / 12)

    flags = np.zeros(160, dtype=bool)
    flags[:40] = True  # a quarter of the controls brightened
    r = count_placebo(flags, k=5, n=20)
    assert r.expected == pytest.approx(5.0)
    assert r.p_lower + r.p_upper == pytest.approx(1 + r.pmf[5])
    rng = np.random.default_rng(1)
    counts = np.array([flags[rng.choice(160, 20, replace=False)].sum() for _ in range(20000)])
    assert (counts <= 5).mean() == pytest.approx(r.p_lower, abs=0.015)
    low = count_placebo(flags, k=0, n=20)
    assert low.p_lower < 0.01 and low.p_two_sided == pytest.approx(2 * low.p_lower)
    with pytest.raises(ComparisonError, match="fewer than"):
        count_placebo(flags[:10], k=5, n=20)


def test_pretrend_placebos_use_the_main_floor(planted):
    main = estimate_did(planted, 2024, 2025)
    table = pretrend_placebos(planted, 2024, n_draws=200)
    first = estimate_did(planted, 2020, 2021, n_draws=200, eps=main.eps)
    assert table["estimate_log"].iloc[0] == pytest.approx(first.estimate_log, abs=1e-12)


def test_a_test_that_cannot_reject_has_no_interval_and_no_detectable_effect(planted):
    # 10 draws: p is at least 1/11; one treated unit among its province's 15: p is at least 1/15
    one = make_panel(1, effect=0.3, n_treated=1)
    for r in (estimate_did(planted, 2024, 2025, n_draws=10), estimate_did(one, 2024, 2025)):
        assert r.p_value > 0.05 and (r.ci_low, r.ci_high) == (-np.inf, np.inf)
        assert r.mde_log is None and r.mde_log_negative is None
    # unstratified, the one treated unit is drawn among all 181 and the effect is seen
    flat = estimate_did(one, 2024, 2025, stratify=False)
    assert flat.statistic == "coef" and flat.p_value < 0.05 and flat.ci_low > 0
