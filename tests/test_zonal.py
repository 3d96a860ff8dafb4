"""Zonal statistics: planted values, sub-pixel polygons, and exactextract cross-checks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from exactextract import exact_extract
from shapely.geometry import Point, box

from pipeline.measure.zonal import coverage_weights, rule_weights, zone_month_table
from pipeline.read.sources import find_monthly_rasters
from tests.conftest import RES, write_eog_month, write_tif

WEST, NORTH = 125.0, 40.0


def _zones(geoms) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"zone": [f"z{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:4326"
    )


def _px(col: float, row: float) -> tuple[float, float]:
    """Coordinates of a fractional pixel position on the test grid."""
    return WEST + col * RES, NORTH - row * RES


def _one_month(tmp_path, rad, cvg=None):
    cvg = np.full(rad.shape, 10) if cvg is None else cvg
    write_eog_month(tmp_path, 2024, 1, rad, cvg, WEST, NORTH)
    return find_monthly_rasters(tmp_path)


def test_polygon_covering_half_a_pixel(tmp_path):
    rad = np.zeros((10, 10))
    rad[4, 4] = 8.0
    rasters = _one_month(tmp_path, rad)
    x0, y0 = _px(4, 4)
    half = box(x0, y0 - RES, x0 + RES / 2, y0)  # left half of pixel (row 4, col 4)
    t = zone_month_table(rasters, _zones([half]), progress=False)
    row = t.iloc[0]
    assert row["mean_radiance"] == pytest.approx(8.0)
    assert row["weight"] == pytest.approx(0.5)
    assert row["sum_radiance"] == pytest.approx(4.0)
    assert row["n_pixels"] == 1
    assert row["valid_fraction"] == pytest.approx(1.0)


def test_site_straddling_four_pixels(tmp_path):
    rad = np.zeros((10, 10))
    rad[2:4, 2:4] = [[1.0, 2.0], [3.0, 4.0]]
    rasters = _one_month(tmp_path, rad)
    # a square from pixel position (2.5, 2.5) to (3.75, 3.75): covers 0.25, 0.375, 0.375, 0.5625 of the pixels
    (xa, ya), (xb, yb) = _px(2.5, 2.5), _px(3.75, 3.75)
    t = zone_month_table(rasters, _zones([box(xa, yb, xb, ya)]), progress=False)
    w = np.array([0.25, 0.375, 0.375, 0.5625])
    v = np.array([1.0, 2.0, 3.0, 4.0])
    assert t["mean_radiance"].iloc[0] == pytest.approx((w * v).sum() / w.sum())
    assert t["weight"].iloc[0] == pytest.approx(w.sum())


def test_unobserved_pixels_are_missing_not_dark(tmp_path):
    rad = np.full((10, 10), 5.0)
    cvg = np.full((10, 10), 10)
    rad[:, :5] = 0.0  # cloud: EOG writes 0 radiance where nothing was observed
    cvg[:, :5] = 0
    rasters = _one_month(tmp_path, rad, cvg)
    (xa, ya), (xb, yb) = _px(3, 3), _px(7, 7)
    t = zone_month_table(rasters, _zones([box(xa, yb, xb, ya)]), progress=False)
    assert t["mean_radiance"].iloc[0] == pytest.approx(5.0)
    assert t["valid_fraction"].iloc[0] == pytest.approx(0.5)


def test_negative_radiance_is_clipped_to_zero(tmp_path):
    rad = np.full((6, 6), -1.0)
    rad[:, 3:] = 3.0
    rasters = _one_month(tmp_path, rad)
    (xa, ya), (xb, yb) = _px(2, 1), _px(4, 3)
    t = zone_month_table(rasters, _zones([box(xa, yb, xb, ya)]), progress=False)
    assert t["mean_radiance"].iloc[0] == pytest.approx(1.5)


def test_site_outside_the_raster_is_missing(tmp_path):
    rasters = _one_month(tmp_path, np.ones((10, 10)))
    far = Point(10.0, 50.0).buffer(0.01)
    t = zone_month_table(rasters, _zones([far, box(*_px(1, 3), *_px(3, 1))]), progress=False)
    outside, inside = t.iloc[0], t.iloc[1]
    assert (
        np.isnan(outside["mean_radiance"])
        and outside["weight"] == 0
        and outside["valid_fraction"] == 0
    )
    assert inside["mean_radiance"] == pytest.approx(1.0)


def test_weights_are_computed_per_grid(tmp_path):
    """Months on two different grids (a re-cropped download) give the same site means."""
    rad = np.arange(400, dtype="float64").reshape(20, 20)
    write_eog_month(tmp_path, 2024, 1, rad, np.full(rad.shape, 9), WEST, NORTH)
    # February: the same pixels, cropped 5 columns and 3 rows in.
    write_eog_month(
        tmp_path, 2024, 2, rad[3:, 5:], np.full((17, 15), 9), WEST + 5 * RES, NORTH - 3 * RES
    )
    rasters = find_monthly_rasters(tmp_path)
    assert rasters[0].grid != rasters[1].grid
    site = Point(*_px(10.3, 9.6)).buffer(2.2 * RES)
    t = zone_month_table(rasters, _zones([site]), progress=False)
    assert t["mean_radiance"].iloc[0] == pytest.approx(t["mean_radiance"].iloc[1], rel=1e-9)


@pytest.mark.parametrize(
    "rule, op",
    [
        ("exact", "mean"),
        ("centroid", "mean(min_coverage_frac=0.5,coverage_weight=none)"),
        ("all_touched", "mean(coverage_weight=none)"),
    ],
)
def test_means_equal_exactextract(tmp_path, rng, rule, op):
    """Our weights applied to a file equal exactextract's coverage-weighted mean to 1e-4."""
    rad = rng.gamma(1.5, 2.0, size=(60, 80)).astype("float32")
    path = write_tif(tmp_path / "2024-03.tif", rad, WEST, NORTH)
    centers = rng.uniform([WEST + 0.02, NORTH - 0.23], [WEST + 0.31, NORTH - 0.02], size=(25, 2))
    radii = rng.uniform(0.2, 4.0, size=25) * RES  # from a fifth of a pixel to four pixels
    zones = _zones([Point(x, y).buffer(r) for (x, y), r in zip(centers, radii, strict=True)])
    ours = zone_month_table(find_monthly_rasters(tmp_path), zones, (rule,), progress=False)
    theirs = exact_extract(str(path), zones, [op], include_cols=["zone"], output="pandas")
    np.testing.assert_allclose(
        ours["mean_radiance"].to_numpy(), theirs.iloc[:, -1].to_numpy(), rtol=1e-4
    )


def test_rule_weights_reject_unknown_rule():
    with pytest.raises(ValueError, match="must be one of exact, centroid, all_touched"):
        rule_weights(np.ones(3), "nearest")


def test_coverage_weights_sum_to_polygon_area_in_pixels(tmp_path):
    write_tif(tmp_path / "2024-01.tif", np.zeros((50, 50), "float32"), WEST, NORTH)
    grid = find_monthly_rasters(tmp_path)[0].grid
    square = box(*_px(10.25, 20.5), *_px(17.75, 12.0))  # 7.5 x 8.5 pixels
    w = coverage_weights(_zones([square]).geometry, grid)
    assert sum(b.coverage.sum() for b in w.blocks) == pytest.approx(7.5 * 8.5)


def test_zone_partly_outside_the_raster_counts_the_outside_as_unobserved(tmp_path):
    rad = np.full((10, 10), 2.0)
    rasters = _one_month(tmp_path, rad)
    # a 4 x 4 pixel box, half of it west of the raster's edge
    (xa, ya), (xb, yb) = _px(-2, 3), _px(2, 7)
    t = zone_month_table(rasters, _zones([box(xa, yb, xb, ya)]), progress=False)
    row = t.iloc[0]
    assert row["mean_radiance"] == pytest.approx(2.0)
    assert row["valid_fraction"] == pytest.approx(0.5)
    assert row["sum_radiance"] == pytest.approx(
        2.0 * 16
    )  # the whole zone, unobserved part at the mean


def test_pixel_aligned_box_touches_no_sliver_pixels(tmp_path):
    rasters = _one_month(tmp_path, np.ones((10, 10)))
    (xa, ya), (xb, yb) = _px(3, 3), _px(7, 7)  # exactly 4 x 4 pixels
    t = zone_month_table(
        rasters, _zones([box(xa, yb, xb, ya)]), ("exact", "all_touched"), progress=False
    )
    assert list(t["n_pixels"]) == [16, 16]
    assert list(t["weight"]) == pytest.approx([16.0, 16.0])


def test_extraction_without_a_bar_imports_nothing_it_does_not_use(tmp_path):
    """A silent extraction (as ``bench`` and ``--quiet`` run it), cube and all, in a fresh process:
    no progress bar library, no output writing, no plotting, cluster or zarr modules."""
    import subprocess
    import sys

    _one_month(tmp_path / "rasters", np.full((10, 10), 2.0))
    code = f"""
import sys
import geopandas as gpd
from shapely.geometry import box
from pipeline.measure.zonal import zone_month_table
from pipeline.read.sources import find_monthly_rasters
rasters = find_monthly_rasters({str(tmp_path / "rasters")!r})
zones = gpd.GeoDataFrame({{"zone": ["a"]}}, geometry=[box({WEST + RES}, {NORTH - 3 * RES}, {WEST + 3 * RES}, {NORTH - RES})], crs="EPSG:4326")
t = zone_month_table(rasters, zones, progress=False, cube_dir={str(tmp_path / "cache")!r})
assert t["mean_radiance"].tolist() == [2.0], t
unused = ("tqdm", "pipeline.outputs", "matplotlib", "distributed", "zarr", "xarray", "scipy")
print(sorted(m for m in sys.modules if m.split(".")[0] in unused or m in unused))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
