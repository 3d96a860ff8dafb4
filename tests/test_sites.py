"""Sites: the shipped 2024 file, metric buffering, radius_m, rings, mixed geometry files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shapely.geometry import Point

from pipeline.read.sites import (
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
    f = write_sites(
        tmp_path / "mix.geojson",
        [
            point_feature("a", 126.0, 40.0),
            point_feature("b", 126.1, 40.0, radius_m=500),
            polygon_feature(
                "c", [(126.2, 40.0), (126.21, 40.0), (126.21, 40.01), (126.2, 40.01), (126.2, 40.0)]
            ),
            {
                "type": "Feature",
                "properties": {"site_id": "d"},
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[126.3, 40.0], [126.31, 40.0], [126.31, 40.01], [126.3, 40.0]]]
                    ],
                },
            },
        ],
    )
    sites = read_sites([f], 1500.0).set_index("site_id")
    assert _area_m2(sites.loc["a", "geometry"], 126.0, 40.0) == pytest.approx(
        math.pi * 1500**2, rel=2e-3
    )
    assert _area_m2(sites.loc["b", "geometry"], 126.1, 40.0) == pytest.approx(
        math.pi * 500**2, rel=2e-3
    )
    assert list(sites["from_point"]) == [True, True, False, False]
    assert sites.loc["c", "geometry"].equals_exact(
        read_sites([f], 1.0).set_index("site_id").loc["c", "geometry"], 1e-12
    )


def test_union_of_two_files_and_duplicate_ids(tmp_path):
    a = write_sites(tmp_path / "a.geojson", [point_feature("x", 126.0, 40.0)])
    b = write_sites(tmp_path / "b.geojson", [point_feature("y", 127.0, 40.0)])
    assert list(read_sites([a, b], 2000.0)["site_id"]) == ["x", "y"]
    dup = write_sites(tmp_path / "dup.geojson", [point_feature("x", 128.0, 40.0)])
    with pytest.raises(Exception, match="duplicate site_id 'x'"):
        read_sites([a, dup], 2000.0)


def test_rings_exclude_other_sites_and_radius_variants(tmp_path):
    f = write_sites(
        tmp_path / "s.geojson", [point_feature("a", 126.0, 40.0), point_feature("b", 126.06, 40.0)]
    )
    sites = read_sites([f], 2000.0)
    rings = background_rings(sites, 4000.0, 8000.0)
    assert not rings.iloc[0].intersects(sites.geometry.iloc[0])
    assert rings.iloc[0].intersection(sites.geometry.iloc[1]).area == pytest.approx(0.0, abs=1e-12)
    full = math.pi * (8000**2 - 4000**2)
    assert _area_m2(rings.iloc[0], 126.0, 40.0) < full * 0.999  # b's polygon was cut out
    bigger = with_radius(sites, 3000.0)
    assert _area_m2(bigger.geometry.iloc[0], 126.0, 40.0) == pytest.approx(
        math.pi * 3000**2, rel=2e-3
    )


def test_multipoint_keeps_its_circles_in_variants_and_rings(tmp_path):
    f = write_sites(
        tmp_path / "mp.geojson",
        [
            {
                "type": "Feature",
                "properties": {"site_id": "pair"},
                "geometry": {"type": "MultiPoint", "coordinates": [[126.0, 40.0], [126.2, 40.0]]},
            }
        ],
    )
    sites = read_sites([f], 2000.0)
    assert not sites["from_point"].iloc[0] and sites["radius_m"].iloc[0] == 2000.0
    assert sites.geometry.iloc[0].geom_type == "MultiPolygon"
    again = with_radius(sites, 3000.0)
    assert again.geometry.iloc[0].equals(
        sites.geometry.iloc[0]
    )  # not one circle between the points
    ring = background_rings(sites, 4000.0, 8000.0).iloc[0]
    assert ring.contains(Point(126.0, 40.08))  # 8.9 km from a point: 6.9 km from its circle's edge
    assert ring.intersection(sites.geometry.iloc[0]).area == pytest.approx(0.0, abs=1e-12)


def _rings_before_issue_24(sites, inner_m, outer_m):
    """The quadratic reference: each ring minus the union of the sites that reach it."""
    import geopandas as gpd
    import shapely

    polygons = sites.geometry.values
    tree = shapely.STRtree(polygons)
    rings = []
    for row in sites.itertuples():
        c = (row.center_lon, row.center_lat)
        base = Point(c) if row.from_point else row.geometry
        outer = buffer_metres(base, outer_m, c)
        inner = buffer_metres(base, inner_m, c) if inner_m > 0 else shapely.Polygon()
        near = shapely.unary_union(polygons[tree.query(outer)])
        rings.append(outer.difference(inner).difference(near))
    return gpd.GeoSeries(rings, index=sites.index, crs=sites.crs)


@pytest.mark.parametrize(("inner", "outer"), [(4000.0, 8000.0), (0.0, 5000.0), (10000.0, 20000.0)])
def test_rings_with_the_spatial_index_equal_the_quadratic_ones(tmp_path, inner, outer):
    """300 close sites (points and drawn squares, one large, clusters and loners): the same regions to 1e-9 deg^2."""
    import numpy as np

    rng = np.random.default_rng(24)
    feats = []
    for i in range(300):
        lon, lat = (
            126.0 + rng.random() * (0.3 if i < 240 else 2.0),
            40.0 + rng.random() * (0.3 if i < 240 else 2.0),
        )
        if i % 5:
            feats.append(point_feature(f"p{i}", lon, lat))
        else:
            d = (
                0.2 if i == 0 else 0.005 + 0.01 * rng.random()
            )  # one large drawn site: its ring spans many cells
            feats.append(
                polygon_feature(
                    f"q{i}",
                    [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]],
                )
            )
    sites = read_sites([write_sites(tmp_path / "many.geojson", feats)], 2000.0)
    new, old = background_rings(sites, inner, outer), _rings_before_issue_24(sites, inner, outer)
    assert (new.index == old.index).all()
    differ = [
        float(a.symmetric_difference(b).area) for a, b in zip(new.values, old.values, strict=True)
    ]
    assert max(differ) < 1e-9
    assert sum(g.is_empty for g in new) == sum(g.is_empty for g in old)


@pytest.mark.slow
def test_rings_of_ten_thousand_close_sites_take_seconds():
    """Before: 2,000 sites 95 s and 10,000 past 600 s (quadratic); now seconds."""
    import time

    import geopandas as gpd
    import numpy as np

    from pipeline.read.sites import geodesic_circle

    rng = np.random.default_rng(1)
    lon, lat = 125 + rng.random(10_000) * 0.5, 39 + rng.random(10_000) * 0.5
    sites = gpd.GeoDataFrame(
        {"center_lon": lon, "center_lat": lat, "from_point": True},
        geometry=[geodesic_circle(x, y, 2000.0) for x, y in zip(lon, lat, strict=True)],
        crs=4326,
    )
    t0 = time.perf_counter()
    rings = background_rings(sites, 4000.0, 8000.0)
    assert time.perf_counter() - t0 < 60
    assert len(rings) == 10_000


def test_ring_across_the_antimeridian_is_one_line_naming_the_site(tmp_path):
    """A point 5 km from 180°: its 2 km circle is fine, its 8 km ring would wrap round the globe."""
    from pipeline.errors import SiteError

    f = write_sites(tmp_path / "fiji.geojson", [point_feature("near-180", 179.95, -16.8)])
    sites = read_sites([f], 2000.0)
    assert sites.geometry.iloc[0].bounds[2] - sites.geometry.iloc[0].bounds[0] < 0.1
    with pytest.raises(
        SiteError,
        match=r"^fiji\.geojson: site near-180: its background ring \(8000 m\) crosses the "
        r"antimeridian \(180° longitude\); .*use a smaller radius or move the site$",
    ):
        background_rings(sites, 4000.0, 8000.0)
    with pytest.raises(
        SiteError, match=r"^fiji\.geojson: site near-180: its 20000 m circle crosses"
    ):
        with_radius(sites, 20000.0)


def test_sites_too_big_to_buffer_or_repair_are_one_line(tmp_path, monkeypatch):
    """Before: a MultiPoint of 200,000 points took 25 s and 3 GB, then 'unexpected error: GEOSException:
    std::bad_alloc'; a self-crossing polygon of 200,000 vertices likewise (is_valid alone took 6 s)."""
    import random

    import pipeline.read.sites as sites_module
    from pipeline.read.sites import validate_site_files

    rnd = random.Random(1)
    pts = [[126 + rnd.random() * 0.1, 40 + rnd.random() * 0.1] for _ in range(1001)]
    many = write_sites(
        tmp_path / "many.geojson",
        [
            {
                "type": "Feature",
                "properties": {"site_id": "mp"},
                "geometry": {"type": "MultiPoint", "coordinates": pts},
            }
        ],
    )
    assert [str(p) for p in validate_site_files([many], 2000.0)] == [
        f"{many}: feature 0 (mp): MultiPoint of 1001 points; a site has at most 1000 (each is buffered by radius_m "
        "and the circles united): split it into sites or draw its polygon"
    ]
    monkeypatch.setattr(sites_module, "MAX_SITE_VERTICES", 500)
    monkeypatch.setattr(sites_module, "MAX_REPAIR_VERTICES", 100)
    big = write_sites(tmp_path / "big.geojson", [polygon_feature("big", [*pts[:600], pts[0]])])
    assert [str(p) for p in validate_site_files([big], 2000.0)] == [
        f"{big}: feature 0 (big): polygon of 601 vertices; a site needs far fewer (at most 500): simplify it, "
        "e.g. ogr2ogr -simplify 0.0001 out.geojson in.geojson"
    ]
    tangled = write_sites(
        tmp_path / "tangled.geojson", [polygon_feature("tangled", [*pts[:200], pts[0]])]
    )
    [problem] = validate_site_files([tangled], 2000.0)
    assert str(problem).startswith(
        f"{tangled}: feature 0 (tangled): invalid polygon (Self-intersection["
    )
    assert str(problem).endswith(
        "of 201 vertices, too many to repair here; fix it in a GIS (e.g. QGIS "
        "'Fix geometries') and save it again"
    )
