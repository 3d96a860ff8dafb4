"""County regime: zones tiling a window are streamed month by month, with the chunked path's answers."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point, box

from pipeline.measure import zonal_stream
from pipeline.measure.zonal import STATS, coverage_weights, zone_month_table
from pipeline.measure.zonal_stream import choose_stream
from pipeline.read.sources import find_monthly_rasters
from tests.conftest import RES, write_eog_month, write_tif

WEST, NORTH = 125.0, 40.0
H, W = 150, 200
RULES = ("exact", "centroid", "all_touched")


def _zones(geoms) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"zone": [f"z{i}" for i in range(len(geoms))]}, geometry=list(geoms), crs="EPSG:4326"
    )


def _voronoi(rng, n, west, north, width_px, height_px) -> list:
    """``n`` Voronoi cells tiling a box (county-like units), in random order."""
    frame = box(west, north - height_px * RES, west + width_px * RES, north)
    seeds = shapely.points(rng.uniform(frame.bounds[:2], frame.bounds[2:], (n, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame))
    return [c.intersection(frame) for c in cells]


def _months(folder, rng):
    """Three EOG months (cf_cvg), two plain months on a shifted, smaller grid with nodata and NaN,
    and one Black Marble month (quality codes) on a third grid."""
    for m in (1, 2, 3):
        rad = rng.gamma(2.0, 1.5, (H, W)).astype("float32")
        rad[rng.uniform(size=(H, W)) < 0.05] = -0.4  # clipped to 0
        rad[rng.uniform(size=(H, W)) < 0.03] = np.nan  # unusable
        write_eog_month(folder, 2024, m, rad, rng.integers(0, 12, (H, W)), WEST, NORTH)
    for m in (4, 5):  # 7 columns and 5 rows in, 20 columns short: zones stick out of this grid
        rad = rng.gamma(2.0, 1.5, (H - 5, W - 27)).astype("float32")
        rad[rng.uniform(size=rad.shape) < 0.1] = -999.0
        rad[rng.uniform(size=rad.shape) < 0.02] = np.nan
        write_tif(
            folder / f"plain_2024-{m:02d}.tif", rad, WEST + 7 * RES, NORTH - 5 * RES, nodata=-999.0
        )
    rad = rng.gamma(2.0, 1.5, (H + 10, W + 10)).astype("float32")
    write_tif(folder / "VNP46A3_2024-06.radiance.tif", rad, WEST - 10 * RES, NORTH + 3 * RES)
    write_tif(
        folder / "VNP46A3_2024-06.quality.tif",
        rng.choice([0, 1, 2, 255], (H + 10, W + 10)).astype("uint8"),
        WEST - 10 * RES,
        NORTH + 3 * RES,
    )
    return find_monthly_rasters(folder)


def _chunked(monkeypatch, *args, **kwargs) -> pd.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(zonal_stream, "STREAM_MIN_COVERAGE", 2.0)  # never stream
        return zone_month_table(*args, **kwargs)


def _assert_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert (
        a[["zone", "month", "pixel_rule"]].to_numpy()
        == b[["zone", "month", "pixel_rule"]].to_numpy()
    ).all()
    for col in STATS:
        np.testing.assert_allclose(
            a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, atol=0, equal_nan=True, err_msg=col
        )
    assert (a["n_pixels"] == b["n_pixels"]).all()


def test_streamed_counties_equal_the_chunked_path(tmp_path, rng, monkeypatch, caplog):
    rasters = _months(tmp_path / "r", rng)
    assert len({r.grid for r in rasters}) == 3 and {r.aux_kind for r in rasters} == {
        "cf_cvg",
        "none",
        "bm_quality",
    }
    # 40 units tiling a window that sticks 6 pixels out of the first grid's west edge, and one
    # zone overlapping several of them (a region over its counties)
    cells = _voronoi(rng, 40, WEST - 6 * RES, NORTH - 4 * RES, 180, 140)
    zones = _zones(
        [*cells, box(WEST + 20 * RES, NORTH - 90 * RES, WEST + 100.5 * RES, NORTH - 30.25 * RES)]
    )
    with caplog.at_level(logging.DEBUG, logger="pipeline.measure.zonal"):
        streamed = zone_month_table(
            rasters, zones, RULES, progress=False, cube_dir=tmp_path / "cache"
        )
    assert (
        sum("streaming path" in m for m in caplog.messages) == 3
    )  # every grid took the streaming path
    assert not (tmp_path / "cache").exists()  # and needed no cube
    chunked = _chunked(monkeypatch, rasters, zones, RULES, progress=False)
    _assert_close(streamed, chunked)
    assert len(streamed) == 6 * 3 * 41
    assert streamed["mean_radiance"].notna().all()
    assert (streamed["valid_fraction"] < 1).all() and (streamed["valid_fraction"] > 0).all()
    inside = streamed[streamed["month"] == "2024-04"]
    assert (
        inside["valid_fraction"].min() < 0.6
    )  # zones partly off the shifted grid count that part unobserved


def test_zones_without_wholly_covered_pixels(tmp_path, rng, monkeypatch):
    """Half-pixel strips (every pixel shared by two zones) in one read block, a box in the next."""
    rad = rng.gamma(2.0, 1.5, (6, 600)).astype("float32")
    write_eog_month(tmp_path, 2024, 1, rad, rng.integers(0, 9, rad.shape), WEST, NORTH)
    rasters = find_monthly_rasters(tmp_path)
    strips = [
        box(WEST, NORTH - (k + 1) * RES / 2, WEST + 512 * RES, NORTH - k * RES / 2)
        for k in range(12)
    ]
    zones = _zones([*strips, box(WEST + 512 * RES, NORTH - 6 * RES, WEST + 600 * RES, NORTH)])
    assert choose_stream(coverage_weights(zones.geometry, rasters[0].grid))[0]
    streamed = zone_month_table(rasters, zones, RULES, progress=False)
    _assert_close(streamed, _chunked(monkeypatch, rasters, zones, RULES, progress=False))
    assert list(streamed.loc[streamed["pixel_rule"] == "exact", "weight"]) == pytest.approx(
        [256.0] * 12 + [528.0]
    )


def test_planted_grid_units(tmp_path):
    """Four units tiling a window, each with its own radiance; a cloud over half of one."""
    rad = np.zeros((40, 60), "float32")
    rad[:20, :30], rad[:20, 30:], rad[20:, :30], rad[20:, 30:] = 1.0, 2.0, 3.0, 4.0
    cvg = np.full(rad.shape, 8)
    cvg[20:, 45:] = 0  # the south-east unit half unobserved (EOG writes radiance 0 there)
    rad[20:, 45:] = 0.0
    write_eog_month(tmp_path, 2024, 1, rad, cvg, WEST, NORTH)
    rasters = find_monthly_rasters(tmp_path)
    x = [WEST + c * RES for c in (0, 30, 60)]
    y = [NORTH - r * RES for r in (0, 20, 40)]
    units = [box(x[i], y[j + 1], x[i + 1], y[j]) for j in (0, 1) for i in (0, 1)]
    assert choose_stream(coverage_weights(_zones(units).geometry, rasters[0].grid))[0]
    t = zone_month_table(rasters, _zones(units), ("exact", "all_touched"), progress=False)
    exact = t[t["pixel_rule"] == "exact"]
    assert list(exact["mean_radiance"]) == pytest.approx([1.0, 2.0, 3.0, 4.0], rel=1e-12)
    assert list(exact["valid_fraction"]) == pytest.approx([1.0, 1.0, 1.0, 0.5], rel=1e-12)
    assert list(exact["sum_radiance"]) == pytest.approx([600.0, 1200.0, 1800.0, 2400.0], rel=1e-12)
    assert list(t["n_pixels"]) == [600] * 8
    assert list(exact["mean_obs"]) == pytest.approx([8.0, 8.0, 8.0, 4.0], rel=1e-12)


def test_scattered_small_sites_keep_the_chunked_path(tmp_path, rng):
    write_tif(tmp_path / "2024-01.tif", np.zeros((H, W), "float32"), WEST, NORTH)
    grid = find_monthly_rasters(tmp_path)[0].grid
    sites = [
        Point(WEST + c * RES, NORTH - r * RES).buffer(4 * RES)
        for r, c in rng.uniform(10, 140, (12, 2))
    ]
    stream, why = choose_stream(coverage_weights(_zones(sites).geometry, grid))
    assert not stream and "chunks they touch" in why
    one_county = _voronoi(rng, 1, WEST + 4 * RES, NORTH - 4 * RES, 120, 120)
    assert choose_stream(coverage_weights(_zones(one_county).geometry, grid))[0]
    # two counties far apart: each is covered, but the window between them would be decoded for nothing
    apart = [
        box(WEST, NORTH - 20 * RES, WEST + 20 * RES, NORTH),
        box(WEST + 180 * RES, NORTH - 150 * RES, WEST + 200 * RES, NORTH - 130 * RES),
    ]
    assert not choose_stream(coverage_weights(_zones(apart).geometry, grid))[0]


def test_streamed_counties_on_a_cluster_equal_local(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    rasters = _months(tmp_path / "r", rng)
    zones = _zones(_voronoi(rng, 25, WEST, NORTH, W, H))
    local = zone_month_table(rasters, zones, RULES, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster.scheduler_address),
    ):
        remote = zone_month_table(rasters, zones, RULES, progress=False)
        done = cluster.scheduler.task_prefixes["stream_stats"].state_counts["memory"]
    assert done >= 3  # the months were streamed on the cluster's workers
    pd.testing.assert_frame_equal(local, remote, check_exact=True)
