"""Units: reading boundary files strictly, and the county of each site by its centre."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from pipeline.errors import BoundaryError, NightlightsError
from pipeline.read.sites import read_sites
from pipeline.read.units import assign_units, default_units_path, normalise_name, read_units

REPO = Path(__file__).resolve().parents[1]


def square(x0: float, y0: float, size: float = 1.0) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def unit(uid: str | None, name: str, ring: list[list[float]], **props) -> dict:
    p = {"name": name, **props} | ({"unit_id": uid} if uid is not None else {})
    return {
        "type": "Feature",
        "properties": p,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def write_units(path: Path, features: list[dict]) -> Path:
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
    )
    return path


def two_counties(tmp_path: Path) -> gpd.GeoDataFrame:
    """West (125-126 E) and East (126-127 E), both 39-40 N, in province P1."""
    return read_units(
        write_units(
            tmp_path / "u.geojson",
            [
                unit("u-west", "West", square(125.0, 39.0), province="P1", province_id="p1"),
                unit("u-east", "East", square(126.0, 39.0), province="P1", province_id="p1"),
            ],
        )
    )


def sites_at(*rows: tuple[str, str, float, float]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "site_id": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "center_lon": [r[2] for r in rows],
            "center_lat": [r[3] for r in rows],
        },
        geometry=[shapely.Point(r[2], r[3]).buffer(0.02) for r in rows],
        crs="EPSG:4326",
    )


# --------------------------------------------------------------------------- read_units


def test_read_units_keeps_the_normalised_columns(tmp_path):
    units = two_counties(tmp_path)
    assert list(units.columns[:5]) == ["unit_id", "name", "name_ko", "province", "province_id"]
    assert list(units["unit_id"]) == ["u-west", "u-east"] and units.crs.to_epsg() == 4326
    assert units["name_ko"].isna().all()


def test_missing_unit_id_is_one_line(tmp_path):
    path = write_units(
        tmp_path / "u.geojson", [unit("a", "A", square(0, 0)), unit(None, "B", square(1, 0))]
    )
    with pytest.raises(BoundaryError) as caught:
        read_units(path)
    assert (
        str(caught.value) == f"{path}: feature 1 (B): no unit_id; give every unit a unique unit_id"
    )
    assert issubclass(BoundaryError, NightlightsError)


def test_duplicate_unit_id_is_one_line(tmp_path):
    path = write_units(
        tmp_path / "u.geojson", [unit("a", "A", square(0, 0)), unit("a", "B", square(1, 0))]
    )
    with pytest.raises(BoundaryError) as caught:
        read_units(path)
    assert (
        str(caught.value)
        == f"{path}: feature 1 (a): duplicate unit_id 'a' (also feature 0); unit_id must be unique"
    )


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (None, "has no geometry; a unit needs a Polygon or MultiPolygon"),
        (
            {"type": "Point", "coordinates": [0, 0]},
            "geometry type Point is not a Polygon or MultiPolygon",
        ),
    ],
)
def test_unusable_geometry_is_one_line(tmp_path, geometry, message):
    feat = {"type": "Feature", "properties": {"unit_id": "a"}, "geometry": geometry}
    path = write_units(tmp_path / "u.geojson", [feat])
    with pytest.raises(BoundaryError) as caught:
        read_units(path)
    assert str(caught.value) == f"{path}: feature 0 (a): {message}"


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(BoundaryError, match="boundary file not found"):
        read_units(tmp_path / "nope.geojson")
    (tmp_path / "bad.geojson").write_text(
        '{"type": "FeatureCollection", "features": [', encoding="utf-8"
    )
    with pytest.raises(BoundaryError, match=r"bad.geojson: not valid JSON \(line 1"):
        read_units(tmp_path / "bad.geojson")


def test_bowtie_is_repaired_with_a_warning(tmp_path, caplog):
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    path = write_units(tmp_path / "u.geojson", [unit("a", "A", bowtie)])
    with caplog.at_level(logging.WARNING):
        units = read_units(path)
    assert units.geometry.iat[0].is_valid and units.geometry.iat[0].area == pytest.approx(0.5)
    assert any(
        "feature 0 (a): warning: invalid polygon (Self-intersection" in r.message
        for r in caplog.records
    )


def test_overlap_is_warned_but_slivers_are_not(tmp_path, caplog):
    path = write_units(
        tmp_path / "u.geojson",
        [
            unit("a", "A", square(0, 0)),
            unit("b", "B", square(0.9, 0)),  # 10% of B overlaps A
            unit("c", "C", square(0, 1.0 - 1e-4)),
        ],
    )  # a 0.01% sliver over A
    with caplog.at_level(logging.WARNING):
        read_units(path)
    warned = [r.message for r in caplog.records]
    assert warned == [
        f"{path}: warning: units a (A) and b (B) overlap by 10.0% of the smaller; "
        "a site in the overlap is given the first"
    ]


# --------------------------------------------------------------------------- assign_units


def test_sites_get_the_unit_holding_their_centre(tmp_path, caplog):
    units = two_counties(tmp_path)
    # the circle of "east" reaches into West, but its centre is in East
    sites = sites_at(("west", "West", 125.5, 39.5), ("east", "East", 126.01, 39.5))
    with caplog.at_level(logging.WARNING):
        out = assign_units(sites, units)
    assert list(out["county"]) == ["West", "East"] and list(out["county_id"]) == [
        "u-west",
        "u-east",
    ]
    assert not caplog.records
    assert "county" not in sites  # the input is left alone


def test_site_in_a_county_of_another_name_is_warned(tmp_path, caplog):
    units = two_counties(tmp_path)
    with caplog.at_level(logging.WARNING):
        out = assign_units(sites_at(("w", "West", 126.2, 39.5)), units)
    assert out["county"].iat[0] == "East"
    (line,) = [r.message for r in caplog.records]
    assert line.startswith(
        f"{tmp_path / 'u.geojson'}: warning: site w (West) falls in county East (u-east, P1), "
        "which has another name; unit u-west (West, P1) is "
    )
    km = float(line.split(" is ")[1].split(" km away")[0])
    assert km == pytest.approx(
        0.2 * 111.32 * np.cos(np.radians(39.5)), abs=0.2
    )  # 0.2 deg east of the border


def test_site_outside_every_unit_gets_nan(tmp_path, caplog):
    units = two_counties(tmp_path)
    with caplog.at_level(logging.WARNING):
        out = assign_units(sites_at(("sea", "Sea", 124.5, 39.5)), units)
    assert out["county"].isna().all() and out["county_id"].isna().all()
    assert (
        "site sea (Sea) at 124.50000, 39.50000 is outside every unit; its county is left empty"
        in caplog.text
    )


def test_drawn_polygon_without_centre_uses_a_point_inside_it(tmp_path):
    units = two_counties(tmp_path)
    # an L-shaped site whose centroid (not inside the shape) would fall in West
    ell = shapely.Polygon(
        [(125.9, 39.1), (126.8, 39.1), (126.8, 39.9), (126.7, 39.9), (126.7, 39.2), (125.9, 39.2)]
    )
    sites = gpd.GeoDataFrame(
        {"site_id": ["ell"], "name": ["East"]}, geometry=[ell], crs="EPSG:4326"
    )
    assert assign_units(sites, units)["county"].iat[0] == "East"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("P'yŏngwŏn", "Pyongwon"),
        ("Phyongwon", "Pyongwon"),
        ("Chagang", "Jagang"),
        ("Sinpo", "Sinpho"),
        ("Kim Hyong Jik", "Kimhyongjik"),
        ("Namp´o", "Nampho"),
    ],
)
def test_romanisations_compare_equal(a, b):
    assert normalise_name(a) == normalise_name(b)
    assert normalise_name("Hwangju") != normalise_name("Yonthan")


# --------------------------------------------------------------------------- the shipped boundaries


@pytest.fixture(scope="module")
def shipped() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    sites = read_sites(sorted((REPO / "aoi").glob("*.geojson")), 2000.0)
    return (
        read_units(REPO / "aoi" / "boundaries" / "prk_adm2.geojson"),
        read_units(REPO / "aoi" / "boundaries" / "prk_adm1.geojson"),
        sites,
    )


def test_boundaries_are_found_and_are_not_sites(shipped):
    counties, provinces, _ = shipped
    assert (
        default_units_path() == REPO / "aoi" / "boundaries" / "prk_adm2.geojson"
    )  # from a scratch cwd
    assert default_units_path("province") == REPO / "aoi" / "boundaries" / "prk_adm1.geojson"
    # the default site list (cli: aoi/*.geojson) holds the site files only, not the boundaries
    assert [p.name for p in sorted((REPO / "aoi").glob("*.geojson"))] == [
        "sites_2024.geojson",
        "sites_2025.geojson",
        "sites_2026.geojson",
    ]
    assert (len(counties), len(provinces)) == (181, 12)
    assert counties["unit_id"].is_unique and set(counties["province_id"]) == set(
        provinces["unit_id"]
    )
    assert (counties.groupby("province_id")["province"].nunique() == 1).all()
    assert counties.geometry.is_valid.all() and provinces.geometry.is_valid.all()


def test_every_2024_and_2025_site_lands_in_exactly_one_county(shipped, caplog):
    counties, _, sites = shipped
    centres = gpd.points_from_xy(sites["center_lon"], sites["center_lat"])
    holding = np.array(
        [[c.within(g) for g in counties.geometry] for c in centres]
    )  # direct, not via the tree
    batch = sites["batch"].to_numpy()
    assert (holding[np.isin(batch, [2024, 2025])].sum(axis=1) == 1).all()
    with caplog.at_level(logging.WARNING):
        out = assign_units(sites, counties)
    assert list(out["county_id"]) == [counties["unit_id"].iat[int(np.argmax(h))] for h in holding]
    # the research notes: all 20 of 2024 match by name; Hwangju-up lies in the Yonthan unit (the boundary
    # error GADM shares); the 2026 Taean point is an NGII label outside its district
    warned = sorted(r.message.split("warning: site ")[1].split(" ")[0] for r in caplog.records)
    assert warned == ["hwangju", "taean"]
    named = out.set_index("site_id")
    assert (
        named.loc["hwangju", "county"] == "Yonthan"
        and named.loc["kim-hyong-jik", "county"] == "Kim Hyong Jik"
    )
    assert named.loc["sinpho", "county"] == "Sinpo" and named.loc["kaephung", "county"] == "Kaepung"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"type": "FeatureCollection", "features": ' + "[" * 5000 + "]" * 5000 + "}",
            "values nested too deeply (GeoJSON needs a few levels); the file is damaged or not GeoJSON",
        ),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"unit_id": '
            + "9" * 4301
            + '}, "geometry": null}]}',
            "a number of 4301 digits; coordinates and properties need far fewer",
        ),
    ],
)
def test_hostile_boundary_files_are_one_line(tmp_path, text, problem):
    """Before: 'unexpected error' (RecursionError, ValueError) naming no file."""
    from pipeline.errors import BoundaryError
    from pipeline.read.units import read_units

    path = tmp_path / "units.geojson"
    path.write_text(text)
    with pytest.raises(BoundaryError) as caught:
        read_units(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_a_device_as_boundary_file_is_read_bounded():
    from pipeline.errors import BoundaryError
    from pipeline.read.units import read_units

    with pytest.raises(BoundaryError, match=r"^/dev/zero: file is over 100 MB"):
        read_units("/dev/zero")
