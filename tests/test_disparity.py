"""Disparity indices against direct computations and known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.compare.disparity import (
    DISPARITY_COLUMNS,
    between_group_pvalue,
    default_floor,
    disparity_table,
    gini,
    gini_without_top,
    lorenz,
    lorenz_curve,
    theil,
    theil_decomposition,
    top_share,
)


def mean_abs_difference_gini(x: np.ndarray) -> float:
    """The textbook definition, O(n^2): sum_i sum_j |x_i - x_j| / (2 n^2 mean)."""
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


@pytest.fixture
def lights() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = np.exp(rng.normal(6, 1.5, 181))
    x[0] = 5e5  # a capital
    x[1:6] = 0.0  # dark counties
    return x


def test_gini_equals_the_mean_absolute_difference(lights):
    assert gini(lights) == pytest.approx(mean_abs_difference_gini(lights), abs=1e-10)
    assert gini_without_top(lights) == pytest.approx(
        mean_abs_difference_gini(np.sort(lights)[:-1]), abs=1e-10
    )
    assert gini_without_top(lights) < gini(lights)


def test_gini_known_cases():
    assert gini(np.full(10, 7.0)) == pytest.approx(0.0, abs=1e-12)
    assert gini([0, 0, 0, 0, 5.0]) == pytest.approx(4 / 5)
    assert gini([np.nan, 1.0, 1.0]) == pytest.approx(0.0, abs=1e-12)  # NaN is "no data"
    assert np.isnan(gini([0.0, 0.0]))
    assert gini([-3.0, 0.0, 5.0]) == pytest.approx(2 / 3)  # negatives clipped, not abs()


def test_top_share_and_lorenz(lights):
    assert top_share([1, 1, 2]) == pytest.approx(0.5)
    curve = lorenz(lights)
    assert len(curve) == 182
    assert curve.iloc[0].tolist() == [0.0, 0.0] and curve.iloc[-1].tolist() == pytest.approx([1, 1])
    assert (np.diff(curve["light_share"]) >= 0).all()
    # the area between the diagonal and the curve is half the Gini (trapezoid rule is exact)
    area = np.sum(
        (curve["light_share"].iloc[1:].to_numpy() + curve["light_share"].iloc[:-1].to_numpy())
        / 2
        * np.diff(curve["unit_share"])
    )
    assert 1 - 2 * area == pytest.approx(gini(lights), abs=1e-10)
    # the last step is the capital's share
    assert 1 - curve["light_share"].iloc[-2] == pytest.approx(top_share(lights))


def test_theil_known_cases_and_floor(lights):
    assert theil(np.full(5, 3.0)) == pytest.approx(0.0, abs=1e-12)
    # one of n holds all (others at a negligible floor): T -> ln n
    assert theil([0, 0, 0, 10.0], floor=1e-12) == pytest.approx(np.log(4), abs=1e-9)
    direct = np.maximum(lights, default_floor(lights))
    r = direct / direct.mean()
    assert theil(lights) == pytest.approx(np.mean(r * np.log(r)), abs=1e-12)
    assert default_floor(lights) == pytest.approx(0.01 * np.median(lights[lights > 0]))


def test_theil_decomposition_sums_exactly(lights):
    groups = np.zeros(len(lights), dtype=bool)
    groups[np.random.default_rng(1).choice(len(lights), 20, replace=False)] = True
    dec = theil_decomposition(lights, groups)
    assert dec["between"] + dec["within"] == pytest.approx(dec["total"], abs=1e-12)
    assert dec["total"] == pytest.approx(theil(lights), abs=1e-12)
    assert dec["between"] >= 0 and dec["within"] >= 0
    # groups with identical values inside: all inequality is between them
    two = theil_decomposition([1, 1, 1, 4, 4], ["a", "a", "a", "b", "b"])
    assert two["within"] == pytest.approx(0.0, abs=1e-12)
    assert two["between"] == pytest.approx(two["total"], abs=1e-12) and two["total"] > 0


def make_panel() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frames = []
    for year in (2023, 2024, 2025):
        x = np.exp(rng.normal(6, 1.2, 30))
        x[0] = 1e5
        frames.append(
            pd.DataFrame(
                {
                    "unit_id": [f"u{i:02d}" for i in range(30)],
                    "year": year,
                    "sum_lights": x,
                    "treated": np.arange(30) % 5 == 1,
                }
            )
        )
    panel = pd.concat(frames, ignore_index=True)
    panel.loc[(panel["year"] == 2025) & (panel["unit_id"] == "u07"), "sum_lights"] = np.nan
    return panel


def test_disparity_table_has_one_row_per_year_with_stable_columns():
    panel = make_panel()
    table = disparity_table(panel)
    assert tuple(table.columns) == DISPARITY_COLUMNS
    assert table["year"].tolist() == [2023, 2024, 2025]
    assert table["n_units"].tolist() == [30, 30, 29]
    assert (table["top_unit_id"] == "u00").all()
    y25 = panel[(panel["year"] == 2025)].dropna()
    row = table.iloc[-1]
    assert row["gini"] == pytest.approx(
        mean_abs_difference_gini(y25["sum_lights"].to_numpy()), abs=0.01
    )
    assert row["theil_between"] + row["theil_within"] == pytest.approx(row["theil"], abs=1e-12)
    assert row["n_group"] == 6
    assert row["group_share"] == pytest.approx(
        y25.loc[y25["treated"], "sum_lights"].sum() / y25["sum_lights"].sum()
    )
    assert lorenz_curve(panel, 2025)["unit_share"].iloc[1] == pytest.approx(1 / 29)


def test_between_group_permutation_pvalue_detects_a_real_gap():
    rng = np.random.default_rng(8)
    x = np.exp(rng.normal(5, 1, 160))
    g = np.zeros(160, dtype=bool)
    g[:20] = True
    assert between_group_pvalue(x, g, seed=1) > 0.05  # labels unrelated to light
    brighter = np.where(g, x * 3, x)
    assert between_group_pvalue(brighter, g, seed=1) < 0.01
    # no random split of the units comes near a threefold gap: the smallest possible p-value
    assert between_group_pvalue(brighter, g, seed=2, n_draws=50) == pytest.approx(1 / 51)
