"""The demo world: frozen from the shipped files, the same for every run, generated month by month."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.errors import ConfigError
from pipeline.fetch.demo import build_demo, eog_name
from pipeline.fetch.world import WORLD_FILE, WORLD_UNITS, load_world, world_from_project

ROOT = Path(__file__).resolve().parents[1]


def test_the_frozen_world_is_the_shipped_files():
    """Edit aoi/ and this fails until pipeline.fetch.world.freeze_world is run (and the generator bumped)."""
    world, units = world_from_project(ROOT)
    assert json.loads(WORLD_FILE.read_text(encoding="utf-8")) == json.loads(json.dumps(world))
    assert WORLD_UNITS.read_text(encoding="utf-8") == units


def test_the_world_plants_changes_from_the_dates_not_the_labels():
    world = json.loads(WORLD_FILE.read_text(encoding="utf-8"))
    by_id = {s["site_id"]: s for s in world["sites"]}
    assert len(by_id) == 52
    assert by_id["songchon"]["change_from"] == "2025-01"  # inaugurated 20 Dec 2024
    assert by_id["kim-hyong-jik"]["change_from"] == "2025-03"  # 11 Feb 2025
    assert by_id["usi"]["change_from"] == "2025-03"  # by 10 Feb 2025
    assert by_id["hwangju"]["change_from"] == "2026-01"  # 16 Dec 2025
    cohorts = {c["batch"]: c for c in world["cohorts"]}
    assert (cohorts["2024"]["from_month"], cohorts["2025"]["from_month"]) == ("2025-03", "2026-01")
    assert len(cohorts["2024"]["units"]) == 20


def test_years_outside_the_world_are_refused():
    with pytest.raises(ConfigError, match="covers 2013 to 2027; 2012, 2030 asked for"):
        load_world().spec_for([2012, 2024, 2030])


def test_months_are_added_on_demand_and_never_rebuilt(tmp_path):
    """A month depends only on the world and the month: asking for more months adds files and leaves
    the ones there untouched (same bytes, same inode)."""
    spec = load_world().spec_for([2024])
    small = spec.__class__(
        **{
            **spec.__dict__,
            "bounds": (125.5, 38.8, 126.0, 39.3),
            "units_file": None,
            "comparison": False,
            "cohorts": (),
        }
    )
    first = build_demo(
        tmp_path, small.__class__(**{**small.__dict__, "years": (2024,)}), progress=False
    )
    jan = first / eog_name(2024, 1, "avg_rade9h")
    before = (jan.stat().st_ino, jan.read_bytes())
    again = build_demo(
        tmp_path, small.__class__(**{**small.__dict__, "years": (2023, 2024)}), progress=False
    )
    assert again == first and (jan.stat().st_ino, jan.read_bytes()) == before
    assert len(list(first.glob("*.avg_rade9h.tif"))) == 24
    # the same month generated alone in another folder is the same raster
    alone = build_demo(
        tmp_path / "other", small.__class__(**{**small.__dict__, "years": (2024,)}), progress=False
    )
    with rasterio.open(jan) as a, rasterio.open(alone / jan.name) as b:
        assert np.array_equal(a.read(1), b.read(1))


def test_an_older_demo_is_replaced_once_and_other_worlds_are_kept(tmp_path, caplog):
    old = tmp_path / "0123456789ab"
    old.mkdir()
    (old / "DEMO_DATA_IS_SYNTHETIC.txt").write_text("These rasters are SYNTHETIC ... seed 2024.\n")
    mine = tmp_path / "not-a-demo"
    mine.mkdir()
    (mine / "DEMO_DATA_IS_SYNTHETIC.txt").write_text(
        "a user's folder that happens to hold the marker\n"
    )
    spec = load_world().spec_for([2024])
    small = spec.__class__(
        **{
            **spec.__dict__,
            "bounds": (125.5, 38.8, 125.6, 38.9),
            "units_file": None,
            "comparison": False,
            "cohorts": (),
            "years": (2024,),
        }
    )
    other = spec.__class__(**{**small.__dict__, "seed": 7})
    kept = build_demo(tmp_path, other, progress=False)
    build_demo(tmp_path, small, progress=False)
    assert not old.exists() and mine.exists() and kept.exists()
    assert "older version" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_demo_generation_within_seconds(tmp_path, sig, code):
    """Before: SIGTERM did not stop the generation (still running 15 minutes after 'timeout 30' sent it).
    Now queued months are cancelled and the months under way finish: exit in seconds, finished months kept."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--source",
            "demo",
            "--sites",
            str(ROOT / "aoi" / "sites_2024.geojson"),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--no-figures",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    demo = tmp_path / "data" / "demo"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(demo.rglob("*.avg_rade9h.tif")):
        time.sleep(0.1)  # wait until generation is under way
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15 and proc.returncode == code, err
    assert "Traceback" not in err and "earlier outputs were left untouched" in err
    made = list(demo.rglob("*.avg_rade9h.tif"))
    assert 0 < len(made) < 72 and not (tmp_path / "out").exists()
    for f in made:  # every month kept is whole (written atomically): it opens and reads
        with rasterio.open(f) as ds:
            ds.read(1, window=((0, 1), (0, 1)))
