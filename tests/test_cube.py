"""Study cube: same answers as reading the files, built once, only where sites are, rebuilt on change."""

from __future__ import annotations

import dataclasses
import os
import warnings

import geopandas as gpd
import numpy as np
import pytest
from rasterio.windows import Window
from shapely.geometry import Point, box

from pipeline.measure.cube import CHUNK, load_chunks, open_cube
from pipeline.measure.zonal import (
    SPLIT_BYTES,
    STATS,
    coverage_weights,
    plan_parts,
    zone_month_table,
)
from pipeline.read.sources import find_monthly_rasters, read_window
from tests.conftest import RES, write_eog_month, write_tif

WEST, NORTH = 125.0, 40.0
H, W = 200, 300  # 4 x 5 chunks, the last row and column partial


def _eog_months(folder, rng, n=3):
    for m in range(1, n + 1):
        rad = rng.gamma(2.0, 1.5, (H, W)).astype("float32")
        rad[rng.uniform(size=(H, W)) < 0.05] = -0.3  # negative values are clipped to 0
        rad[rng.uniform(size=(H, W)) < 0.02] = np.nan  # unusable
        cvg = rng.integers(0, 12, (H, W)).astype("uint16")
        write_eog_month(folder, 2024, m, rad, cvg, WEST, NORTH)
    return find_monthly_rasters(folder)


def _zones(points_px, radius_px=4.0):
    geoms = [
        Point(WEST + (c + 0.3) * RES, NORTH - (r + 0.6) * RES).buffer(radius_px * RES)
        for r, c in points_px
    ]
    return gpd.GeoDataFrame(
        {"zone": [f"z{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:4326"
    )


def _equal(a, b):
    cols = list(STATS)
    assert list(a.columns) == list(b.columns)
    assert (
        a[["zone", "month", "pixel_rule"]].to_numpy()
        == b[["zone", "month", "pixel_rule"]].to_numpy()
    ).all()
    assert np.array_equal(a[cols].to_numpy(), b[cols].to_numpy(), equal_nan=True)


def _filled(cache):
    """Chunks built: those whose radiance file (written last) exists."""
    (cube,) = cache.glob("cube-*.zarr")
    return {
        (int(p.parent.name), int(p.name))
        for p in (cube / "radiance" / "c" / "0").glob("*/*")
        if p.name.isdigit()
    }


def test_cube_answers_equal_reading_the_files(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng)
    # zones inside one chunk, across chunk corners, and on the partial edge chunks
    zones = _zones([(10, 10), (63, 64), (128, 190), (196, 296), (100, 250)])
    rules = ("exact", "centroid", "all_touched")
    direct = zone_month_table(rasters, zones, rules, progress=False)
    cold = zone_month_table(rasters, zones, rules, progress=False, cube_dir=tmp_path / "cache")
    warm = zone_month_table(rasters, zones, rules, progress=False, cube_dir=tmp_path / "cache")
    _equal(direct, cold)
    _equal(direct, warm)
    assert direct["mean_radiance"].notna().all() and (direct["valid_fraction"] < 1).any()


def test_chunks_hold_what_read_window_gives(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cube = open_cube(tmp_path / "cache", rasters)
    chunks = np.array([[3, 4], [0, 0]])
    load_chunks(rasters, chunks, cube)  # builds
    rad, aux = load_chunks(rasters, chunks, cube)  # decodes from the cube
    for t, r in enumerate(rasters):
        want_rad, want_aux = read_window(
            r, Window(4 * CHUNK, 3 * CHUNK, W - 4 * CHUNK, H - 3 * CHUNK)
        )
        h, w = want_rad.shape
        got = rad[0, t, :h, :w]
        usable = ~np.isnan(got)
        assert np.array_equal(np.where(usable, got, 0.0), want_rad)
        assert np.array_equal(aux[0, t, :h, :w], want_aux)
        assert not usable.all()  # the NaN pixels of the source are marked unusable, not dark


def test_months_with_and_without_aux_and_a_nodata_float32_cannot_hold(tmp_path, rng):
    """Two EOG months (with cf_cvg) beside a plain month whose nodata (1e-50) is 0 in float32: the
    plain month is cleaned as read in float64 (its true zeros stay dark, not nodata), the others
    in the chunk buffers; each pixel equals what read_window gives."""
    folder = tmp_path / "r"
    _eog_months(folder, rng, n=2)
    plain = rng.gamma(2.0, 1.5, (H, W)).astype("float32")
    plain[:40, :70] = 0.0  # dark, observed
    plain[100:120, 200:260] = np.nan  # unusable
    write_tif(folder / "lights_2024-03.tif", plain, WEST, NORTH)
    rasters = find_monthly_rasters(folder)
    # GDAL rounds a float32 band's nodata when it writes one; a tag written by another tool need not be
    rasters[2] = dataclasses.replace(rasters[2], nodata=1e-50)
    assert [r.aux_kind for r in rasters] == ["cf_cvg", "cf_cvg", "none"]
    cube = open_cube(tmp_path / "cache", rasters)
    chunks = np.array([[0, 0], [1, 3], [3, 4]])
    built, built_aux = load_chunks(rasters, chunks, cube)
    rad, aux = load_chunks(rasters, chunks, cube)  # decoded from the cube
    assert np.array_equal(rad, built, equal_nan=True) and np.array_equal(aux, built_aux)
    for i, (cy, cx) in enumerate(chunks):
        h, w = min(CHUNK, H - cy * CHUNK), min(CHUNK, W - cx * CHUNK)
        for t, r in enumerate(rasters):
            want_rad, want_aux = read_window(r, Window(cx * CHUNK, cy * CHUNK, w, h))
            got = rad[i, t, :h, :w]
            usable = ~np.isnan(got)
            assert np.array_equal(np.where(usable, got, 0.0), want_rad)
            if r.aux is None:
                assert np.array_equal(usable, want_aux.astype(bool))
            else:
                assert np.array_equal(aux[i, t, :h, :w], want_aux)
    assert (rad[0, 2, :40, :64] == 0).all()  # true zeros of the plain month: observed dark pixels


def test_zarr_reads_our_chunks_and_we_read_chunks_zarr_wrote(tmp_path, rng):
    """The cube is written without the zarr library (its import and per-call costs), in zarr's format:
    zarr (and xarray) must read every chunk as we wrote it, and we must read chunks zarr writes, partial
    edges included."""
    import zarr

    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cube = open_cube(tmp_path / "cache", rasters)
    chunks = np.array([[0, 0], [3, 4], [1, 2]])  # (3, 4): the partial corner chunk
    rad, aux = load_chunks(rasters, chunks, cube)  # built by us
    root = zarr.open_group(cube.path, mode="r+")
    assert root["radiance"].shape == (2, H, W) and root.attrs["months"] == ["2024-01", "2024-02"]
    for i, (cy, cx) in enumerate(chunks):
        ys, xs = (
            slice(cy * CHUNK, min((cy + 1) * CHUNK, H)),
            slice(cx * CHUNK, min((cx + 1) * CHUNK, W)),
        )
        h, w = ys.stop - ys.start, xs.stop - xs.start
        assert np.array_equal(root["radiance"][:, ys, xs], rad[i, :, :h, :w], equal_nan=True)
        assert np.array_equal(root["aux"][:, ys, xs], aux[i, :, :h, :w])
    planted = rng.uniform(0, 9, (2, H - 3 * CHUNK, W - 4 * CHUNK)).astype("float32")
    root["radiance"][:, 3 * CHUNK :, 4 * CHUNK :] = planted  # zarr rewrites the corner chunk
    root["aux"][:, 3 * CHUNK :, 4 * CHUNK :] = 7
    again, again_aux = load_chunks(rasters, chunks[1:2], cube)
    assert np.array_equal(again[0, :, : planted.shape[1], : planted.shape[2]], planted)
    assert (again_aux[0, :, : planted.shape[1], : planted.shape[2]] == 7).all()
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # consolidated metadata: nothing is listed, nothing is unrecognised
        ds = xr.open_zarr(cube.path)  # the cube is a zarr store xarray opens too
    assert ds["radiance"].dims == ("month", "y", "x")
    assert np.array_equal(ds["radiance"][:, 3 * CHUNK :, 4 * CHUNK :].values, planted)


def test_only_chunks_that_zones_touch_are_built_and_new_zones_add_chunks(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cache = tmp_path / "cache"
    zone_month_table(rasters, _zones([(10, 10)]), progress=False, cube_dir=cache)
    assert _filled(cache) == {(0, 0)}
    zone_month_table(rasters, _zones([(10, 10), (100, 150)]), progress=False, cube_dir=cache)
    assert _filled(cache) == {(0, 0), (1, 2)}
    assert len(list(cache.glob("cube-*.zarr"))) == 1


def test_built_and_new_chunks_side_by_side(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cache = tmp_path / "cache"
    zone_month_table(
        rasters, _zones([(30, 96)]), progress=False, cube_dir=cache
    )  # builds chunk (0, 1)
    assert _filled(cache) == {(0, 1)}
    row = _zones([(30, 32), (30, 96), (30, 160)])  # chunks (0, 0), (0, 1), (0, 2): new, built, new
    _equal(
        zone_month_table(rasters, row, progress=False),
        zone_month_table(rasters, row, progress=False, cube_dir=cache),
    )
    assert _filled(cache) == {(0, 0), (0, 1), (0, 2)}


def test_unchanged_inputs_reuse_the_cube_changed_inputs_rebuild(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cache = tmp_path / "cache"
    zones = _zones([(40, 40)])
    first = zone_month_table(rasters, zones, progress=False, cube_dir=cache)
    # Overwrite a month with other values but the same name, size and mtime: the cube is trusted.
    path = rasters[0].radiance
    stat = path.stat()
    write_tif(path, np.full((H, W), 50.0, dtype="float32"), WEST, NORTH)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size or pytest.skip("rewritten file changed size")
    _equal(first, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    # A real change (new mtime) makes a new cube that sees the new values.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rasters = find_monthly_rasters(tmp_path / "r")
    second = zone_month_table(rasters, zones, progress=False, cube_dir=cache)
    assert len(list(cache.glob("cube-*.zarr"))) == 2
    jan = second[second["month"] == "2024-01"]
    assert jan["mean_radiance"].iloc[0] == pytest.approx(50.0)


def test_chunk_cut_off_before_its_radiance_file_is_rebuilt_not_trusted(tmp_path, rng):
    """Radiance is written last: a chunk whose write stopped after its aux file is not built."""
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cache = tmp_path / "cache"
    zones = _zones([(40, 40)])
    want = zone_month_table(rasters, zones, progress=False, cube_dir=cache)
    cube = open_cube(cache, rasters)
    import zarr

    zarr.open_group(cube.path, mode="r+")["aux"][:, 0:CHUNK, 0:CHUNK] = (
        0  # a stale aux layer, checksum valid
    )
    (next(cache.glob("cube-*.zarr")) / "radiance" / "c" / "0" / "0" / "0").unlink()
    _equal(want, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    assert _filled(cache) == {(0, 0)}


def test_plain_files_with_nodata_and_no_aux(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    a = np.full((H, W), 2.0, dtype="float32")
    a[:, :5] = -999.0  # nodata: not observed
    write_tif(folder / "lights_2024-01.tif", a, WEST, NORTH, nodata=-999.0)
    rasters = find_monthly_rasters(folder)
    half = box(WEST, NORTH - 10 * RES, WEST + 10 * RES, NORTH)  # 10 x 10 px, half of them nodata
    zones = gpd.GeoDataFrame({"zone": ["z"]}, geometry=[half], crs="EPSG:4326")
    for cube_dir in (None, tmp_path / "cache"):
        t = zone_month_table(rasters, zones, progress=False, cube_dir=cube_dir)
        assert t["mean_radiance"].iloc[0] == pytest.approx(2.0)
        assert t["valid_fraction"].iloc[0] == pytest.approx(0.5)
    assert (
        open_cube(tmp_path / "cache", rasters).aux_dtype is None
    )  # nothing but radiance is stored


def test_task_memory_is_bounded_whatever_the_number_of_months(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=1)
    zones = _zones([(r, c) for r in range(8, 200, 24) for c in range(8, 300, 24)])
    weights = coverage_weights(zones.geometry, rasters[0].grid)
    for months in (12, 120, 1200):
        parts = plan_parts(weights, months)
        per_chunk = CHUNK * CHUNK * months * 10
        biggest = max(len(p.chunks) for p in parts) * per_chunk
        assert biggest <= SPLIT_BYTES + per_chunk  # a part closes once it passes the budget
        assert (
            sum(p.slot.size for p in parts) == weights.n_entries
        )  # every weight in exactly one part
