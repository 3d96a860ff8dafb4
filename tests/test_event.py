"""Event study: a planted inauguration spike and decay is recovered; a null shows nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.compare.did import ComparisonError
from pipeline.compare.event import EVENT_COLUMNS, event_study, site_relative, t_cdf, t_quantile

MONTHS = pd.period_range("2023-01", "2025-12", freq="M")


def truth(r: np.ndarray, spike: float) -> np.ndarray:
    """A jump of ``spike`` log points at the inauguration month, decaying with a 3-month scale."""
    return np.where(r >= 0, spike * np.exp(-np.clip(r, 0, None) / 3), 0.0)


def scenario(
    seed: int, spike: float = 0.8, n_sites: int = 20, noise: float = 0.10
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Sites that share the national seasonal cycle and monthly shocks with the controls."""
    rng = np.random.default_rng(seed)
    season = 0.3 * np.cos(2 * np.pi * MONTHS.month.to_numpy() / 12)
    shock = rng.normal(0, 0.15, len(MONTHS))
    control = pd.Series(50 * np.exp(season + shock), index=MONTHS)
    starts = pd.period_range("2024-03", "2025-04", freq="M")
    inaug = pd.Series({f"s{i:02d}": starts[rng.integers(len(starts))] for i in range(n_sites)})
    rows = []
    for site, m0 in inaug.items():
        r = np.array([(m - m0).n for m in MONTHS])
        level = np.exp(rng.normal(3, 1))
        v = level * np.exp(season + shock + truth(r, spike) + rng.normal(0, noise, len(MONTHS)))
        rows.append(pd.DataFrame({"site_id": site, "month": MONTHS, "value": v}))
    return pd.concat(rows, ignore_index=True), inaug, control


def test_planted_spike_and_decay_are_recovered():
    sites, inaug, control = scenario(1)
    es = event_study(sites, inaug, control)
    assert tuple(es.columns) == EVENT_COLUMNS
    assert es["relative_month"].tolist() == list(range(-12, 13))
    es = es.set_index("relative_month")
    want = truth(es.index.to_numpy(), 0.8)
    assert np.abs(es["estimate"] - want).max() < 0.1
    assert es.loc[0, "estimate"] == pytest.approx(0.8, abs=0.08)
    assert es.loc[0, "estimate"] > es.loc[3, "estimate"] > es.loc[9, "estimate"]
    assert es.loc[0, "ci_low"] > 0.5  # clearly above zero at the spike
    assert es.loc[-12:-1, "estimate"].abs().max() < 0.08  # flat before
    covered = (es["ci_low"] <= want) & (want <= es["ci_high"])
    assert covered.sum() >= 21  # nominal 95% of 25


def test_null_shows_nothing_with_bands_covering_zero():
    sites, inaug, control = scenario(2, spike=0.0)
    es = event_study(sites, inaug, control)
    assert es["estimate"].abs().max() < 0.1
    assert ((es["ci_low"] <= 0) & (es["ci_high"] >= 0)).sum() >= 21


def test_sites_count_only_where_they_have_data():
    sites, inaug, control = scenario(3)
    es = event_study(sites, inaug, control).set_index("relative_month")
    r_last = np.array([(MONTHS[-1] - m0).n for m0 in inaug])  # months of data after each start
    for r in (0, 6, 12):
        assert es.loc[r, "n_sites"] == (r_last >= r).sum()
    # the control missing for a month drops that month for every site, not the site
    holed = control.drop(pd.Period("2024-12", "M"))
    rel = site_relative(sites, inaug, holed)
    assert rel["site_id"].nunique() == 20
    assert (
        len(rel)
        == len(site_relative(sites, inaug, control))
        - (np.abs([(pd.Period("2024-12", "M") - m0).n for m0 in inaug]) <= 12).sum()
    )


def test_outcome_is_the_normalised_log_ratio_for_one_site():
    sites, inaug, control = scenario(4, n_sites=1)
    rel = site_relative(sites, inaug, control, eps=0.5)
    m0 = inaug.iloc[0]
    window = [m0 + k for k in range(-12, 13)]
    v = sites.set_index("month")["value"].reindex(window).to_numpy()
    y = np.log(v + 0.5) - np.log(control.reindex(window).to_numpy() + 0.5)
    np.testing.assert_allclose(rel["outcome"].to_numpy(), y - y[:12].mean(), atol=1e-12)
    es = event_study(sites, inaug, control, eps=0.5)
    assert es["n_sites"].eq(1).all() and es["ci_low"].isna().all()  # one site: no band


def test_month_types_give_the_same_answer():
    sites, inaug, control = scenario(5, n_sites=5)
    base = event_study(sites, inaug, control)
    as_ts = event_study(
        sites.assign(month=sites["month"].dt.to_timestamp()),
        inaug.map(lambda p: p.to_timestamp()),
        control.set_axis(control.index.to_timestamp()),
    )
    as_str = event_study(
        sites.assign(month=sites["month"].astype(str)),
        inaug.astype(str),
        control.set_axis(control.index.astype(str)),
    )
    pd.testing.assert_frame_equal(base, as_ts)
    pd.testing.assert_frame_equal(base, as_str)


def test_t_band_is_wider_than_a_bootstrap_with_few_sites():
    sites, inaug, control = scenario(6, n_sites=4)
    t_band = event_study(sites, inaug, control)
    boot = event_study(sites, inaug, control, band="bootstrap", n_boot=4000, seed=1)
    width = lambda e: (e["ci_high"] - e["ci_low"]).to_numpy()  # noqa: E731
    assert (width(t_band) > width(boot)).mean() > 0.9
    np.testing.assert_allclose(t_band["estimate"], boot["estimate"])


def test_t_quantiles_match_tables():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(0.975, 19) == pytest.approx(2.0930, abs=1e-4)
    assert t_quantile(0.025, 10) == pytest.approx(-2.2281, abs=1e-4)
    assert t_cdf(0.0, 7) == pytest.approx(0.5)


def test_bad_inputs_raise_comparison_errors():
    sites, inaug, control = scenario(7, n_sites=3)
    late = inaug.map(lambda p: MONTHS[0])  # no month before the inauguration
    with pytest.raises(ComparisonError, match="months of data"):
        event_study(sites, late, control)
    with pytest.raises(ComparisonError, match="lacks column"):
        event_study(sites.drop(columns="value"), inaug, control)
    with pytest.raises(ComparisonError, match="no site of the batch has an inauguration"):
        event_study(sites, pd.Series(dtype=object), control)


def test_inauguration_dates_of_mixed_precision():
    """Site files give days for some inaugurations and only months for others ("2025-01")."""
    sites, inaug, control = scenario(4)
    mixed = pd.Series(
        {s: (f"{m}-15" if i % 2 else str(m)) for i, (s, m) in enumerate(inaug.items())}
    )
    months = sites.assign(month=sites["month"].astype(str))
    pd.testing.assert_frame_equal(
        event_study(months, mixed, control), event_study(sites, inaug, control)
    )
