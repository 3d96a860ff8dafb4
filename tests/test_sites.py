"""Sites: the shipped 2024 file, metric buffering, radius_m, rings, mixed geometry files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shapely.geometry import Point

from pipeline.sites import (
    background_rings,
    buffer_metres,
    local_metric_crs,
    read_sites,
    slugify,
    with_radius,
)
from tests.conftest import point_feature, polygon_feature, write_sites

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("site_id", "name", "name_ko", "province", "batch", "location_confidence", "source")


def _area_m2(geom, lon, lat) -> float:
    import geopandas as gpd

    return float(gpd.GeoSeries([geom], crs=4326).to_crs(local_metric_crs(lon, lat)).area.iloc[0])


def test_shipped_2024_sites_are_complete():
    doc = json.loads((ROOT / "aoi" / "sites_2024.geojson").read_text(encoding="utf-8"))
    feats = doc["features"]
    assert len(feats) == 20
    for f in feats:
        p = f["properties"]
        assert all(p.get(k) not in (None, "") for k in REQUIRED), p
        assert p["batch"] == 2024 and slugify(p["site_id"]) == p["site_id"]
    sites = read_sites([ROOT / "aoi" / "sites_2024.geojson"], 2000.0)
    assert sites["site_id"].is_unique and len(sites) == 20
    assert sites["from_point"].all()
    assert set(sites["name_ko"].str[-1]) <= {"군", "시"}


def test_point_buffer_is_metres_not_degrees():
    lon, lat = 126.0, 41.0
    circle = buffer_metres(Point(lon, lat), 2000.0, (lon, lat))
    assert _area_m2(circle, lon, lat) == pytest.approx(math.pi * 2000.0**2, rel=2e-3)
    w, s, e, n = circle.bounds
    # a degree of longitude is shorter than a degree of latitude at 41 N
    assert (e - w) / (n - s) == pytest.approx(1 / math.cos(math.radians(lat)), rel=0.01)


def test_points_polygons_and_radius_property(tmp_path):
    f = write_sites(tmp_path / "mix.geojson", [
        point_feature("a", 126.0, 40.0),
        point_feature("b", 126.1, 40.0, radius_m=500),
        polygon_feature("c", [(126.2, 40.0), (126.21, 40.0), (126.21, 40.01), (126.2, 40.01), (126.2, 40.0)]),
        {"type": "Feature", "properties": {"site_id": "d"},
         "geometry": {"type": "MultiPolygon", "coordinates": [[[[126.3, 40.0], [126.31, 40.0], [126.31, 40.01],
                                                                [126.3, 40.0]]]]}},
    ])
    sites = read_sites([f], 1500.0).set_index("site_id")
    assert _area_m2(sites.loc["a", "geometry"], 126.0, 40.0) == pytest.approx(math.pi * 1500**2, rel=2e-3)
    assert _area_m2(sites.loc["b", "geometry"], 126.1, 40.0) == pytest.approx(math.pi * 500**2, rel=2e-3)
    assert list(sites["from_point"]) == [True, True, False, False]
    assert sites.loc["c", "geometry"].equals_exact(
        read_sites([f], 1.0).set_index("site_id").loc["c", "geometry"], 1e-12)


def test_union_of_two_files_and_duplicate_ids(tmp_path):
    a = write_sites(tmp_path / "a.geojson", [point_feature("x", 126.0, 40.0)])
    b = write_sites(tmp_path / "b.geojson", [point_feature("y", 127.0, 40.0)])
    assert list(read_sites([a, b], 2000.0)["site_id"]) == ["x", "y"]
    dup = write_sites(tmp_path / "dup.geojson", [point_feature("x", 128.0, 40.0)])
    with pytest.raises(Exception, match="duplicate site_id 'x'"):
        read_sites([a, dup], 2000.0)


def test_rings_exclude_other_sites_and_radius_variants(tmp_path):
    f = write_sites(tmp_path / "s.geojson", [point_feature("a", 126.0, 40.0), point_feature("b", 126.06, 40.0)])
    sites = read_sites([f], 2000.0)
    rings = background_rings(sites, 4000.0, 8000.0)
    assert not rings.iloc[0].intersects(sites.geometry.iloc[0])
    assert rings.iloc[0].intersection(sites.geometry.iloc[1]).area == pytest.approx(0.0, abs=1e-12)
    full = math.pi * (8000**2 - 4000**2)
    assert _area_m2(rings.iloc[0], 126.0, 40.0) < full * 0.999  # b's polygon was cut out
    bigger = with_radius(sites, 3000.0)
    assert _area_m2(bigger.geometry.iloc[0], 126.0, 40.0) == pytest.approx(math.pi * 3000**2, rel=2e-3)


def test_multipoint_keeps_its_circles_in_variants_and_rings(tmp_path):
    f = write_sites(tmp_path / "mp.geojson", [{
        "type": "Feature", "properties": {"site_id": "pair"},
        "geometry": {"type": "MultiPoint", "coordinates": [[126.0, 40.0], [126.2, 40.0]]}}])
    sites = read_sites([f], 2000.0)
    assert not sites["from_point"].iloc[0] and sites["radius_m"].iloc[0] == 2000.0
    assert sites.geometry.iloc[0].geom_type == "MultiPolygon"
    again = with_radius(sites, 3000.0)
    assert again.geometry.iloc[0].equals(sites.geometry.iloc[0])  # not one circle between the points
    ring = background_rings(sites, 4000.0, 8000.0).iloc[0]
    assert ring.contains(Point(126.0, 40.08))  # 8.9 km from a point: 6.9 km from its circle's edge
    assert ring.intersection(sites.geometry.iloc[0]).area == pytest.approx(0.0, abs=1e-12)
