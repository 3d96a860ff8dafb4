"""The shipped site files: every batch validates, ids are unique, the recorded facts are kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.read.sites import read_sites, validate_site_files

AOI = Path(__file__).resolve().parents[1] / "aoi"
FILES = sorted(AOI.glob("*.geojson"))


def _doc(name: str) -> dict:
    return json.loads((AOI / name).read_text(encoding="utf-8"))


def test_every_shipped_site_file_validates_without_warnings():
    assert [p.name for p in FILES] == [
        "sites_2024.geojson",
        "sites_2025.geojson",
        "sites_2026.geojson",
    ]
    assert validate_site_files(FILES, 2000.0) == []
    sites = read_sites(FILES, 2000.0)
    assert sites["site_id"].is_unique
    assert sites.groupby("batch").size().to_dict() == {"2024": 20, "2025": 20, "2026": 12}


@pytest.mark.parametrize("name", ["sites_2025.geojson", "sites_2026.geojson"])
def test_new_batches_have_the_form_of_2024(name: str):
    """Same properties, 2 km geodesic circles around the declared centre, one batch per file."""
    keys_2024 = set(_doc("sites_2024.geojson")["features"][0]["properties"])
    batch = int(name[6:10])
    sites = read_sites([AOI / name], 2000.0)
    for feature in _doc(name)["features"]:
        p = feature["properties"]
        assert keys_2024 <= set(p) and p["batch"] == batch and p["radius_m"] == 2000.0
    assert sites["from_point"].all()
    # the 64-gon's area is that of a 2 km circle, to the polygon's own shortfall (~0.16%)
    area = sites.to_crs("EPSG:6933").area.to_numpy()
    assert np.allclose(area, np.pi * 2000.0**2, rtol=0.003)


def test_2025_keeps_sinyang_low_and_sinpho_alternative_point():
    by_id = {
        f["properties"]["site_id"]: f["properties"] for f in _doc("sites_2025.geojson")["features"]
    }
    assert by_id["sinyang"]["location_confidence"] == "low"
    assert (by_id["sinpho"]["alt_lon"], by_id["sinpho"]["alt_lat"]) == (128.13757, 40.03593)
    assert "Phungo-dong" in by_id["sinpho"]["alt_note"]
    assert all(
        p["inauguration"].startswith("2025-12-") for p in by_id.values()
    )  # all opened 15-29 Dec 2025


def test_2026_says_it_is_incomplete():
    doc = _doc("sites_2026.geojson")
    assert doc["properties"]["complete"] is False and doc["properties"]["n_known"] == 13
    assert doc["description"].startswith("INCOMPLETE BATCH")
    assert len(doc["features"]) + len(doc["properties"]["unlocated_sites"]) == 13
