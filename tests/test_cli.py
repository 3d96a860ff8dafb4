"""Command line: the contract other tools depend on, end to end on small scenarios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.read.sites import read_sites
from tests.conftest import point_feature, write_sites
from tests.scenarios import grid_sites, planted

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["extract", "--help"], ["sites", "validate", "--help"]]
)
def test_help_explains_with_an_example(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "Example" in text and "nightlights" in text


def test_python_dash_m_pipeline():
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0 and r.stdout.startswith("nightlights ")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return planted(tmp_path_factory.mktemp("cli"), n_sites=20)


def test_run_local_on_union_of_two_site_files(scenario, tmp_path, capsys):
    _, _, truth, folder = scenario
    points = grid_sites(20)
    a = write_sites(
        tmp_path / "a.geojson", [point_feature(s, x, y, batch=2024) for s, x, y in points[:12]]
    )
    b = write_sites(
        tmp_path / "b.geojson", [point_feature(s, x, y, batch=2024) for s, x, y in points[12:]]
    )
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "-q",
            "--source",
            "local",
            "--rasters",
            str(folder),
            "--sites",
            str(a),
            "--sites",
            str(b),
            "--out",
            str(out),
            "--no-figures",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert code == 0
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["data_kind"] == "synthetic"  # the scenario's files are tagged synthetic
    assert verdict["n_sites"] == 20 and sum(verdict["counts"].values()) == 20
    claim = {
        "brightened": 5,
        "similar_or_dimmer": 15,
        "n_sites": 20,
        "batch": "2024",
        "baseline_year": 2024,
        "target_year": 2025,
        "source": "JoongAng Ilbo, 3 Feb 2026, cited by the EAI commentary of 20 Feb 2026",
    }
    assert claim.items() <= verdict["claim"].items()
    assert isinstance(verdict["agrees_with_claim"], bool)
    assert verdict["robustness"]["n_variants"] == len(pd.read_csv(out / "sensitivity.csv"))
    changes = pd.read_csv(out / "site_changes.csv")
    assert {
        "site_id",
        "name",
        "baseline_value",
        "target_value",
        "change_pct",
        "class",
        "n_months",
        "ci_low",
        "ci_high",
        "class_ring_adjusted",
    } <= set(changes.columns)
    want = truth.set_index("site_id")["planted_class"]
    assert (changes.set_index("site_id")["class"][want.index] == want).sum() >= 19
    months = pd.read_csv(out / "site_months.csv")
    assert {"site_id", "month", "mean_radiance", "sum_radiance", "valid_fraction"} <= set(
        months.columns
    )
    assert len(months) == 20 * 36 and (months["data_kind"] == "synthetic").all()
    assert "brightened" in capsys.readouterr().out


def test_extract_writes_the_site_month_table(scenario, tmp_path):
    sites_file = write_sites(
        tmp_path / "s.geojson", [point_feature(s, x, y) for s, x, y in grid_sites(3)]
    )
    out = tmp_path / "sm.csv"
    assert (
        main(
            [
                "extract",
                "-q",
                "--sites",
                str(sites_file),
                "--rasters",
                str(scenario[3]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    t = pd.read_csv(out)
    assert list(t["site_id"].unique()) == ["s00", "s01", "s02"] and len(t) == 3 * 36
    assert t["mean_radiance"].notna().mean() > 0.8


def test_site_outside_rasters_is_insufficient_data(scenario, tmp_path):
    points = grid_sites(2)
    f = write_sites(
        tmp_path / "s.geojson",
        [point_feature(s, x, y) for s, x, y in points] + [point_feature("far-away", 2.35, 48.85)],
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "-q",
                "--source",
                "local",
                "--rasters",
                str(scenario[3]),
                "--sites",
                str(f),
                "--out",
                str(out),
                "--no-figures",
                "--no-sensitivity",
                "--cache-dir",
                "none",
            ]
        )
        == 0
    )
    changes = pd.read_csv(out / "site_changes.csv").set_index("site_id")
    assert changes.loc["far-away", "class"] == "insufficient_data"


@pytest.mark.slow
def test_demo_run_is_labelled_synthetic(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--quiet",
            "--source",
            "demo",
            "--sites",
            str(ROOT / "aoi" / "sites_2024.geojson"),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--no-sensitivity",
            "--no-figures",
            "--no-compare",
        ]
    )  # the comparison: tests/test_compare.py
    assert code == 0
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["data_kind"] == "synthetic" and "SYNTHETIC" in verdict["WARNING"]
    assert verdict["n_sites"] == 20 and verdict["claim_sites"]["n_sites"] == 20
    assert "SYNTHETIC" in capsys.readouterr().out
    demo = next((tmp_path / "data" / "demo").iterdir())
    truth = pd.read_csv(
        demo / "truth.csv"
    )  # the world's planted truth: every shipped site, these 20 among them
    assert len(truth) == 52 and set(truth["planted_class"]) <= {"brightened", "unchanged", "dimmed"}
    assert set(pd.read_csv(out / "site_changes.csv")["site_id"]) <= set(truth["site_id"])


def test_sites_validate_exit_codes(tmp_path, capsys):
    good = write_sites(tmp_path / "good.geojson", [point_feature("a", 126.0, 40.0)])
    assert main(["sites", "validate", str(good)]) == 0
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [}')
    assert main(["sites", "validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: not valid JSON" in out


def test_bad_input_is_one_line_without_traceback(tmp_path, capsys):
    code = main(
        [
            "run",
            "--source",
            "local",
            "--rasters",
            str(tmp_path / "nope"),
            "--sites",
            str(ROOT / "aoi" / "sites_2024.geojson"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert err.strip() == f"nightlights: error: {tmp_path / 'nope'}: raster folder not found"


def _two_batches(tmp_path):
    """The scenario's 20 sites as two batches: 12 of 2024, 8 of 2025."""
    points = grid_sites(20)
    return write_sites(
        tmp_path / "two.geojson",
        [
            point_feature(s, x, y, batch=2024 if i < 12 else 2025)
            for i, (s, x, y) in enumerate(points)
        ],
    )


def _claim_file(path, batch, n, k):
    path.write_text(
        f"text: 'Of the {n} sites of {batch}, {k} brightened in 2025.'\nsource: 'Test Daily, 2026'\n"
        f"batch: {batch}\nbaseline_year: 2024\ntarget_year: 2025\nn_sites: {n}\nbrightened: {k}\n",
        encoding="utf-8",
    )
    return path


def test_claim_about_another_batch_holds_or_not_with_no_code_change(scenario, tmp_path, capsys):
    _, _, truth, folder = scenario
    sites = _two_batches(tmp_path)
    planted = truth.set_index("site_id")["planted_class"]
    later = [s for s, *_ in grid_sites(20)[12:]]
    k = int((planted[later] == "brightened").sum())
    assert 0 < k < len(later)  # the scenario plants both kinds in batch 2025
    for claimed, holds in ((k, True), (k + 1, False)):
        out = tmp_path / f"out{claimed}"
        claim = _claim_file(tmp_path / f"c{claimed}.yaml", 2025, len(later), claimed)
        assert (
            main(
                [
                    "run",
                    "-q",
                    "--source",
                    "local",
                    "--rasters",
                    str(folder),
                    "--sites",
                    str(sites),
                    "--claim",
                    str(claim),
                    "--out",
                    str(out),
                    "--no-figures",
                    "--no-sensitivity",
                    "--cache-dir",
                    "none",
                ]
            )
            == 0
        )
        v = json.loads((out / "verdict.json").read_text())
        changes = pd.read_csv(out / "site_changes.csv").set_index("site_id")
        assert (changes.loc[later, "class"] == planted[later]).all()  # classified as planted
        assert v["claim"]["batch"] == "2025" and v["claim"]["brightened"] == claimed
        assert (
            v["claim_sites"]["n_sites"] == len(later)
            and v["claim_sites"]["counts"]["brightened"] == k
        )
        assert v["agrees_with_claim"] is holds
        assert v["claim_status"] == (
            "agrees" if holds else f"disagrees: {k} brightened, {len(later) - k} similar or dimmer"
        )
        assert f"batch 2025 sites: {k} brightened" in capsys.readouterr().out


def test_claim_file_that_does_not_fit_the_sites_is_one_line(scenario, tmp_path, capsys):
    sites = _two_batches(tmp_path)
    claim = _claim_file(tmp_path / "c.yaml", 2025, 20, 5)
    code = main(
        [
            "run",
            "-q",
            "--source",
            "local",
            "--rasters",
            str(scenario[3]),
            "--sites",
            str(sites),
            "--claim",
            str(claim),
            "--out",
            str(tmp_path / "o"),
            "--no-figures",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "o").exists()
    assert err.strip() == (
        f"nightlights: error: {claim}: n_sites=20, but the run has 8 site(s) of batch 2025; "
        "correct n_sites or pass the site files that hold the whole batch"
    )
    none = _claim_file(tmp_path / "none.yaml", 2031, 20, 5)
    out = tmp_path / "o2"
    assert (
        main(
            [
                "run",
                "-q",
                "--source",
                "local",
                "--rasters",
                str(scenario[3]),
                "--sites",
                str(sites),
                "--claim",
                str(none),
                "--out",
                str(out),
                "--no-figures",
                "--no-sensitivity",
                "--cache-dir",
                "none",
            ]
        )
        == 0
    )
    assert f"{none}: not judged: the claim is about batch 2031" in capsys.readouterr().err
    assert json.loads((out / "verdict.json").read_text())["claim_status"].startswith("not judged")


def test_sites_get_their_county_as_added_columns(scenario, tmp_path):
    from pipeline.read.units import assign_units, default_units_path, read_units

    sites = _two_batches(tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "-q",
                "--source",
                "local",
                "--rasters",
                str(scenario[3]),
                "--sites",
                str(sites),
                "--out",
                str(out),
                "--no-sensitivity",
                "--cache-dir",
                "none",
                "--no-figures",
            ]
        )
        == 0
    )
    changes = pd.read_csv(out / "site_changes.csv")  # sites_classified.*: tests/test_map.py
    assert list(changes.columns)[-3:] == [
        "county",
        "county_id",
        "data_kind",
    ]  # added after the existing ones
    direct = assign_units(read_sites([sites], 2000.0), read_units(default_units_path()))
    want = direct.set_index("site_id")
    assert want["county_id"].notna().sum() >= 15  # a few grid points fall in the sea: no county
    table = changes.set_index("site_id")
    for col in ("county", "county_id"):
        assert (table[col].fillna("-") == want.loc[table.index, col].fillna("-")).all()
    counties = pd.read_csv(out / "county_changes.csv")
    assert len(counties) == 181 and (counties["data_kind"] == "synthetic").all()
    assert (
        counties.set_index("unit_id")
        .loc[want["county_id"].dropna().unique(), "log_change"]
        .notna()
        .all()
    )


def test_demo_years_outside_the_world_are_one_line(tmp_path, capsys):
    code = main(
        [
            "run",
            "-q",
            "--source",
            "demo",
            "--sites",
            str(ROOT / "aoi" / "sites_2024.geojson"),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--baseline-year",
            "2012",
            "--target-year",
            "2013",
            "--no-compare",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "nightlights: error: the synthetic demo covers 2013 to 2027; 2011, 2012 asked for" in err
    assert not (tmp_path / "data" / "demo").exists() or not any(
        (tmp_path / "data" / "demo").rglob("*.tif")
    )


def test_run_and_figures_take_their_languages_as_a_list(capsys):
    from pipeline.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run"]).lang == ("en", "ko")  # both reports by default
    assert parser.parse_args(["run", "--lang", "ko"]).lang == ("ko",)
    assert parser.parse_args(["figures"]).lang == ("en",)  # as before: the English set
    assert parser.parse_args(["figures", "--lang", "KO, en"]).lang == ("ko", "en")
    for bad in ("fr", "en,en", ","):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(["run", "--lang", bad])
        assert caught.value.code == 2
        assert "give languages among en, ko, comma-separated, each once" in capsys.readouterr().err
