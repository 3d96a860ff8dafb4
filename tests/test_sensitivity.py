"""Sensitivity and calibration: variant grid counts and the placebo test on control places."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from pipeline.config import Params
from pipeline.judge.change import ChangeSettings
from pipeline.judge.sensitivity import (
    CONTROL_EXCLUSION_M,
    CONTROL_REACH_M,
    calibration,
    control_zones,
    robustness_summary,
)

SETTINGS = ChangeSettings.from_params(Params())


def _controls_table(changes: list[float], rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i, d in enumerate(changes):
        level = rng.uniform(1.0, 5.0)
        for year, factor in ((2023, 1.0), (2024, np.exp(d))):
            for m in range(1, 13):
                v = level * factor * rng.lognormal(0, 0.15)
                rows.append(
                    {
                        "zone": f"@control{i:05d}",
                        "month": f"{year}-{m:02d}",
                        "mean_radiance": v,
                        "sum_radiance": v * 12,
                        "valid_fraction": 1.0,
                        "weight": 12.0,
                    }
                )
    return pd.DataFrame(rows)


def test_calibration_on_stable_controls_has_no_false_positives(rng):
    table = _controls_table([0.0] * 30, rng)
    names = sorted(table["zone"].unique())
    c = calibration(table, names, SETTINGS)
    assert c["n_controls"] == 30
    assert c["false_positive_rate_at_default"] == 0.0
    assert c["abs_log_ratio_p95"] < 0.25 and c["threshold_exceeds_p95"]


def test_calibration_counts_changed_controls(rng):
    table = _controls_table([0.0] * 10 + [0.8] * 10, rng)
    c = calibration(table, sorted(table["zone"].unique()), SETTINGS)
    assert c["false_positive_rate_at_default"] == pytest.approx(0.5)


def test_calibration_needs_the_year_before_the_baseline(rng):
    table = _controls_table([0.0] * 5, rng)
    table["month"] = table["month"].str.replace("2023", "2025")
    assert calibration(table, sorted(table["zone"].unique()), SETTINGS) is None


def test_controls_keep_their_distance():
    sites = gpd.GeoDataFrame(
        {"center_lon": [126.0, 126.3], "center_lat": [40.0, 40.1]},
        geometry=[Point(126.0, 40.0), Point(126.3, 40.1)],
        crs="EPSG:4326",
    )
    c = control_zones(sites, 2000.0)
    assert len(c) > 100
    b = c.geometry.bounds
    cent = np.column_stack([(b["minx"] + b["maxx"]) / 2, (b["miny"] + b["maxy"]) / 2])
    d = np.min(
        [
            np.hypot((cent[:, 0] - x) * 111_320 * np.cos(np.radians(y)), (cent[:, 1] - y) * 110_574)
            for x, y in zip(sites["center_lon"], sites["center_lat"], strict=True)
        ],
        axis=0,
    )
    assert d.min() >= CONTROL_EXCLUSION_M * 0.99 and d.max() <= CONTROL_REACH_M * 1.01


def test_robustness_summary_shares():
    sens = pd.DataFrame(
        {
            "brightened": [3, 5, 5, 7, 5],
            "n_sites": [20, 20, 20, 20, 20],
            "insufficient_data": [0, 0, 0, 0, 2],
            "adjustment": ["absolute", "absolute", "ring", "ring", "absolute"],
        }
    )
    r = robustness_summary(sens)
    assert (r["n_variants"], r["brightened_min"], r["brightened_max"]) == (5, 3, 7)
    # the last variant has 5 brightened but 2 sites undetermined: it is not "5 of 20"
    assert r["share_exactly_5_of_20"] == pytest.approx(2 / 5)
    assert r["share_at_most_5"] == pytest.approx(3 / 5)
    assert r["share_undetermined"] == pytest.approx(1 / 5)
    assert r["by_adjustment"]["ring"]["brightened_max"] == 7
    assert robustness_summary(sens, claim_scope=False)["share_exactly_5_of_20"] is None


def test_variants_change_what_they_claim(tmp_path):
    """Radius, rule and window variants give different numbers; thresholds only re-classify."""
    from pipeline.analysis import analyse
    from tests.scenarios import planted

    sites, rasters, _, _ = planted(tmp_path, n_sites=8)
    r = analyse(sites, rasters, Params(), source="local", data_kind="synthetic", progress=False)
    t = r.zone_table
    one = t[(t["month"] == "2024-03") & (t["zone"].str.startswith("s00"))].set_index(
        ["zone", "pixel_rule"]
    )
    weights = one["weight"]
    assert (
        weights[("s00@r1000", "exact")]
        < weights[("s00", "exact")]
        < weights[("s00@r3000", "exact")]
    )
    assert weights[("s00", "exact")] < weights[("s00", "all_touched")]
    assert weights[("s00", "exact")] == pytest.approx(
        np.pi * 2000**2 / (463.3 * 357.0), rel=0.1
    )  # 15" pixel at 39.5 N
    sens = r.sensitivity
    assert len(sens) == 4 * 3 * 2 * 2 * 2 * 3
    b = sens.groupby("threshold")["brightened"].mean()
    assert b.is_monotonic_decreasing  # a higher threshold never brightens more sites on average
