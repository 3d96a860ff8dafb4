"""Change and classification: rules, matched months, and planted-truth recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from exactextract import exact_extract

from pipeline.analysis import analyse
from pipeline.config import Params
from pipeline.judge.change import ChangeSettings, classify, log_ratio, paired_change, site_changes
from tests.scenarios import planted

SETTINGS = ChangeSettings.from_params(Params())


@pytest.mark.parametrize(
    "d, lo, hi, n, expected",
    [
        (0.40, 0.10, 0.70, 12, "brightened"),
        (0.40, -0.05, 0.70, 12, "unchanged"),  # past the threshold, but the interval reaches zero
        (0.20, 0.05, 0.35, 12, "unchanged"),  # interval excludes zero, but below the threshold
        (-0.30, -0.50, -0.10, 8, "dimmed"),
        (-0.30, -0.50, -0.10, 5, "insufficient_data"),  # too few matched months, never 'unchanged'
        (float("nan"), float("nan"), float("nan"), 12, "insufficient_data"),
    ],
)
def test_classify_rules(d, lo, hi, n, expected):
    assert classify(d, lo, hi, n, threshold=0.25, min_months=6) == expected


def test_log_ratio_is_symmetric_and_tame_at_zero():
    assert log_ratio(2.0, 1.0, 0.0) == pytest.approx(-log_ratio(1.0, 2.0, 0.0))
    assert np.isfinite(log_ratio(0.0, 0.0, 0.1)) and log_ratio(0.0, 0.0, 0.1) == 0


def test_bootstrap_interval_is_seeded_and_contains_estimate():
    base = np.array([3.0, 3.2, 2.9, 3.1, 3.4, 2.8, 3.0, 3.3])
    targ = base * 1.5
    a = paired_change(base, targ, SETTINGS, "site")
    b = paired_change(base, targ, SETTINGS, "site")
    assert a == b
    assert a["log_ci_low"] <= a["log_ratio"] <= a["log_ci_high"]
    assert a["log_ratio"] == pytest.approx(
        np.log((np.median(targ) + 0.1) / (np.median(base) + 0.1))
    )


def _table(
    values: dict[str, dict[str, float]], valid: dict[str, dict[str, float]] | None = None
) -> pd.DataFrame:
    rows = []
    for zone, months in values.items():
        for month, v in months.items():
            vf = 1.0 if valid is None else valid.get(zone, {}).get(month, 1.0)
            rows.append(
                {
                    "zone": zone,
                    "month": month,
                    "mean_radiance": v,
                    "sum_radiance": v * 10,
                    "valid_fraction": vf,
                    "weight": 10.0,
                }
            )
    return pd.DataFrame(rows)


def test_matched_months_cancel_identical_snow_season():
    """Snow brightens Dec-Feb in both years; a baseline missing its winter must not look dimmer."""
    season = {m: (2.0 if m in (1, 2, 12) else 1.0) for m in range(1, 13)}
    site = {f"2024-{m:02d}": 4.0 * season[m] for m in range(1, 13)}
    site |= {f"2025-{m:02d}": 4.0 * season[m] for m in range(1, 13)}
    # 2025 winter months unobserved: comparing all valid months would show a fall
    valid = {"a": {f"2025-{m:02d}": 0.0 for m in (1, 2, 12)}}
    t = _table({"a": site}, valid)
    out = site_changes(
        t,
        pd.DataFrame({"site_id": ["a"]}),
        ["a"],
        None,
        SETTINGS.__class__(**{**SETTINGS.__dict__, "statistic": "mean"}),
    )
    assert out.loc[0, "n_months"] == 9
    assert out.loc[0, "log_ratio"] == pytest.approx(0.0)
    assert out.loc[0, "class"] == "unchanged"


def test_too_few_valid_months_is_insufficient_data():
    site = {f"{y}-{m:02d}": 2.0 + (y == 2025) * 3.0 for y in (2024, 2025) for m in range(1, 13)}
    valid = {"a": {f"2025-{m:02d}": 0.2 for m in range(1, 8)}}  # 7 months mostly clouded
    out = site_changes(
        _table({"a": site}, valid), pd.DataFrame({"site_id": ["a"]}), ["a"], None, SETTINGS
    )
    assert out.loc[0, "n_months"] == 5
    assert out.loc[0, "class"] == "insufficient_data"


def test_zero_coverage_months_do_not_count_as_dark():
    site = {f"{y}-{m:02d}": 3.0 for y in (2024, 2025) for m in range(1, 13)}
    for m in (3, 4, 5, 6):  # unobserved: radiance 0 with no valid weight
        site[f"2025-{m:02d}"] = 0.0
    valid = {"a": {f"2025-{m:02d}": 0.0 for m in (3, 4, 5, 6)}}
    out = site_changes(
        _table({"a": site}, valid), pd.DataFrame({"site_id": ["a"]}), ["a"], None, SETTINGS
    )
    assert out.loc[0, "class"] == "unchanged" and out.loc[0, "n_months"] == 8
    assert out.loc[0, "log_ratio"] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return planted(tmp_path_factory.mktemp("planted"))


def test_planted_classes_recovered(scenario):
    sites, rasters, truth, _ = scenario
    r = analyse(
        sites,
        rasters,
        Params(),
        source="local",
        data_kind="synthetic",
        sensitivity=False,
        progress=False,
    )
    got = r.changes.set_index("site_id")["class"]
    want = truth.set_index("site_id")["planted_class"]
    assert len(want) == 40 and set(want) == {"brightened", "unchanged", "dimmed"}
    assert (got[want.index] == want).sum() >= 39


def test_planted_site_means_equal_exactextract(scenario):
    sites, rasters, _, _ = scenario
    r = analyse(
        sites,
        rasters[:3],
        Params(),
        source="local",
        data_kind="synthetic",
        sensitivity=False,
        progress=False,
    )
    raster = rasters[0]
    # exactextract on the same month, with unobserved pixels masked as nodata like ours
    import rasterio

    with rasterio.open(raster.radiance) as ds, rasterio.open(raster.aux) as cv:
        rad, cvg, profile = ds.read(1).astype("float64"), cv.read(1), ds.profile
    rad = np.where(cvg >= Params().min_cf_cvg, np.maximum(rad, 0), np.nan)
    masked = raster.radiance.parent.parent / "masked.tif"
    profile.update(dtype="float64", nodata=np.nan)
    with rasterio.open(masked, "w", **profile) as ds:
        ds.write(rad, 1)
    theirs = exact_extract(str(masked), sites, ["mean"], include_cols=["site_id"], output="pandas")
    ours = r.site_months[r.site_months["month"] == raster.month].set_index("site_id")[
        "mean_radiance"
    ]
    np.testing.assert_allclose(
        ours[theirs["site_id"]].to_numpy(), theirs["mean"].to_numpy(), rtol=1e-4
    )


def test_region_wide_dimming_removed_by_ring_adjustment(tmp_path):
    sites, rasters, truth, _ = planted(tmp_path, regional_change=np.log(0.6))
    r = analyse(
        sites,
        rasters,
        Params(),
        source="local",
        data_kind="synthetic",
        sensitivity=False,
        progress=False,
    )
    ch = r.changes.set_index("site_id")
    want = truth.set_index("site_id")["planted_class"]
    unchanged = want[want == "unchanged"].index
    # absolute change sees the grid-wide fall: most truly unchanged sites look dimmed
    assert (ch.loc[unchanged, "class"] == "dimmed").mean() > 0.8
    # relative to their background ring they are recovered
    assert (ch.loc[want.index, "class_ring_adjusted"] == want).sum() >= 38


def test_a_site_result_does_not_depend_on_the_other_sites(scenario):
    """Seeds are per site and batches group by month count: order and company change nothing."""
    sites, rasters, _, _ = scenario
    r = analyse(
        sites,
        rasters,
        Params(),
        source="local",
        data_kind="synthetic",
        sensitivity=False,
        progress=False,
    )
    t = r.zone_table[r.zone_table["pixel_rule"] == "exact"]
    few = sites.iloc[[7, 3]]
    alone = site_changes(
        t, few, list(few["site_id"]), [f"{s}@ring" for s in few["site_id"]], SETTINGS
    )
    both = r.changes.set_index("site_id").loc[list(few["site_id"])]
    for col in ("log_ratio", "log_ci_low", "log_ci_high", "adjusted_log_ci_high"):
        np.testing.assert_array_equal(alone[col].to_numpy(), both[col].to_numpy())


def test_interval_excludes_zero_only_for_a_real_change():
    rng = np.random.default_rng(3)
    base = 3.0 * rng.lognormal(0, 0.15, 12)
    same = paired_change(base, 3.0 * rng.lognormal(0, 0.15, 12), SETTINGS, "a")
    up = paired_change(base, 6.0 * rng.lognormal(0, 0.15, 12), SETTINGS, "b")
    assert same["log_ci_low"] < 0 < same["log_ci_high"]
    assert 0 < up["log_ci_low"] < np.log(2) < up["log_ci_high"]
