"""A real dask.distributed cluster on 127.0.0.1 gives exactly the local scheduler's answers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.measure.zonal import STATS, zone_month_table
from pipeline.read.sources import find_monthly_rasters
from tests.conftest import point_feature, write_eog_month, write_sites

distributed = pytest.importorskip("distributed")

WEST, NORTH = 125.0, 40.0


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def rasters_and_sites(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(3)
    for m in range(1, 7):
        rad = rng.gamma(2.0, 1.5, (240, 360)).astype("float32")
        write_eog_month(tmp / "r", 2024, m, rad, rng.integers(0, 10, (240, 360)), WEST, NORTH)
    points = [
        (f"s{i}", WEST + 0.1 + 0.12 * (i % 6), NORTH - 0.1 - 0.2 * (i // 6)) for i in range(12)
    ]
    sites = write_sites(tmp / "sites.geojson", [point_feature(s, x, y) for s, x, y in points])
    return tmp, sites, points


def _zones(points):
    from shapely.geometry import Point

    geoms = [Point(x, y).buffer(0.02) for _, x, y in points]
    return gpd.GeoDataFrame({"zone": [s for s, _, _ in points]}, geometry=geoms, crs="EPSG:4326")


def _computed_on(cluster) -> int:
    """How many extraction tasks the cluster's workers have finished so far."""
    prefix = cluster.scheduler.task_prefixes.get("part_stats")
    return prefix.state_counts["memory"] if prefix is not None else 0


def test_zone_month_table_on_a_cluster_equals_local(cluster, rasters_and_sites):
    tmp, _, points = rasters_and_sites
    rasters = find_monthly_rasters(tmp / "r")
    zones = _zones(points)
    rules = ("exact", "centroid", "all_touched")
    local = zone_month_table(rasters, zones, rules, progress=False)
    before = _computed_on(cluster)
    with distributed.Client(cluster.scheduler_address):
        remote = zone_month_table(rasters, zones, rules, progress=False)
        cubed = zone_month_table(rasters, zones, rules, progress=False, cube_dir=tmp / "cache")
    assert _computed_on(cluster) > before  # the work ran on the cluster's workers
    assert any((tmp / "cache").glob("cube-*.zarr/radiance/c/0/*/*"))  # workers built the cube
    for other in (remote, cubed):
        pd.testing.assert_frame_equal(local, other, check_exact=True)
    assert local["mean_radiance"].notna().all() and set(local["pixel_rule"]) == set(rules)
    assert list(local.columns) == ["zone", "month", "pixel_rule", *STATS]


def test_extract_with_scheduler_flag_equals_local(cluster, rasters_and_sites, tmp_path):
    tmp, sites, _ = rasters_and_sites
    args = ["extract", "-q", "--sites", str(sites), "--rasters", str(tmp / "r")]
    assert main([*args, "--out", str(tmp_path / "local.csv")]) == 0
    before = _computed_on(cluster)
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "cluster.csv"),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        == 0
    )
    assert _computed_on(cluster) > before
    local, remote = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "cluster.csv")
    assert len(local) == 12 * 6
    pd.testing.assert_frame_equal(local, remote, check_exact=True)


def test_two_workers_filling_the_same_chunks_of_one_cube(cluster, rasters_and_sites):
    """Each worker process loads the same chunks into one new cube at once: both get the files' values."""
    from pipeline.measure.cube import load_chunks, open_cube

    tmp, _, _ = rasters_and_sites
    rasters = find_monthly_rasters(tmp / "r")
    chunks = np.array([[r, c] for r in range(4) for c in range(6)])
    cube = open_cube(tmp / "shared-cube", rasters)
    want = load_chunks(rasters, chunks, open_cube(None, rasters))
    with distributed.Client(cluster.scheduler_address) as client:
        workers = list(client.scheduler_info()["workers"])
        assert len(workers) == 2
        futures = [
            client.submit(
                load_chunks,
                rasters,
                chunks,
                cube,
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )
            for w in workers
        ]
        results = client.gather(futures)
    again = load_chunks(rasters, chunks, cube)  # and what they left in the cube reads back the same
    for rad, aux in [*results, again]:
        assert np.array_equal(rad, want[0], equal_nan=True) and np.array_equal(aux, want[1])
    assert len(list((tmp / "shared-cube").glob("cube-*.zarr/radiance/c/0/*/*"))) == len(chunks)
