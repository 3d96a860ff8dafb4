"""The county comparison end to end: planted effects through the real extraction, the demo's plants, bad input, CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.compare.county import compare, treated_units
from pipeline.config import Params
from pipeline.errors import BoundaryError, ComparisonError
from pipeline.fetch.demo import DemoSpec, build_demo
from pipeline.read.sites import read_sites
from pipeline.read.sources import find_monthly_rasters
from pipeline.read.units import read_units
from tests.conftest import RES, point_feature, write_eog_month, write_sites

WEST, NORTH = 125.0, 40.0
SIDE = 8  # pixels per unit square
COLS, ROWS = 10, 6  # 60 units in 3 provinces (two rows each)
YEARS = (2022, 2023, 2024, 2025)
N_TREATED = 12


def square(col: int, row: int) -> list[list[float]]:
    w, n = WEST + col * SIDE * RES, NORTH - row * SIDE * RES
    e, s = w + SIDE * RES, n - SIDE * RES
    return [[w, n], [e, n], [e, s], [w, s], [w, n]]


def unit_file(path: Path, cells: list[tuple[int, int]], **extra) -> Path:
    feats = [
        {
            "type": "Feature",
            "properties": {
                "unit_id": f"u{i:02d}",
                "name": f"Unit {i}",
                "province": f"P{r // 2}",
                **extra,
            },
            "geometry": {"type": "Polygon", "coordinates": [square(c, r)]},
        }
        for i, (c, r) in enumerate(cells)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return path


CELLS = [(c, r) for r in range(ROWS) for c in range(COLS)]


def planted_scenario(
    tmp: Path, effect: float, seed: int = 3
) -> tuple[Path, Path, Path, np.ndarray, dict]:
    """Units of uniform light (log level ~ N(1, 0.8)), yearly unit noise sd 0.05, month noise sd 0.03,
    one cloudy block per year (unobserved, not dark), and ``effect`` on the treated units in 2025 only."""
    rng = np.random.default_rng(seed)
    n = len(CELLS)
    treated = np.zeros(n, dtype=bool)
    treated[rng.choice(n, N_TREATED, replace=False)] = True
    level = rng.normal(1.0, 0.8, n)
    yearly = {y: rng.normal(0, 0.05, n) + effect * treated * (y == 2025) for y in YEARS}
    folder = tmp / "rasters"
    sums: dict[int, np.ndarray] = {}
    for y in YEARS:
        monthly = []
        for m in range(1, 13):
            value = np.exp(level + yearly[y] + rng.normal(0, 0.03) + rng.normal(0, 0.03, n))
            rad = np.zeros((ROWS * SIDE, COLS * SIDE), "float32")
            for i, (c, r) in enumerate(CELLS):
                rad[r * SIDE : (r + 1) * SIDE, c * SIDE : (c + 1) * SIDE] = value[i]
            cvg = np.full(rad.shape, 10, "uint16")
            if m == 7:  # a monsoon month: one province unobserved
                cvg[: 2 * SIDE] = 0
                rad[: 2 * SIDE] = 0
            write_eog_month(folder, y, m, rad, cvg, WEST, NORTH)
            monthly.append(np.where(np.arange(n) < 2 * COLS, np.nan, value) if m == 7 else value)
        sums[y] = np.nanmean(np.stack(monthly), axis=0) * SIDE * SIDE
    units = unit_file(tmp / "units.geojson", CELLS)
    sites = write_sites(
        tmp / "sites.geojson",
        [
            point_feature(
                f"s{i:02d}",
                WEST + (c + 0.5) * SIDE * RES,
                NORTH - (r + 0.5) * SIDE * RES,
                batch=2024,
                inauguration="2024-12-20",
            )
            for i, (c, r) in enumerate(CELLS)
            if treated[i]
        ]
        + [point_feature("later", WEST + 0.5 * SIDE * RES, NORTH - 5.5 * SIDE * RES, batch=2025)],
    )
    return units, sites, folder, treated, sums


def run_compare(units: Path, sites: Path, folder: Path, **params: object):
    return compare(
        read_sites([sites], 500.0),
        read_units(units),
        find_monthly_rasters(folder),
        Params(default_radius_m=500.0, **params),
        batch=2024,
        data_kind="synthetic",
        progress=False,
    )


def direct_gini(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


_COMPARED: dict[float, tuple] = {}


def planted_comparison(tmp_path_factory: pytest.TempPathFactory, effect: float = 0.3) -> tuple:
    """The planted scenario's comparison with its truth (treated units, unit sums), made once per
    test process: these tests, the chart fit tests and the report wording tests read it; none
    changes it (they ``dataclasses.replace`` what they vary)."""
    if effect not in _COMPARED:
        tmp = tmp_path_factory.mktemp("planted" if effect else "null")
        units, sites, folder, treated, sums = planted_scenario(tmp, effect=effect)
        _COMPARED[effect] = (run_compare(units, sites, folder), treated, sums)
    return _COMPARED[effect]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_comparison(tmp_path_factory, effect=0.3)


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    return planted_comparison(tmp_path_factory, effect=0.0)


def test_planted_effect_is_recovered_through_the_extraction(planted):
    comp, treated, _ = planted
    d = comp.did
    assert abs(d["estimate_log"] - 0.3) < 0.08
    assert d["p_value"] < 0.05 and d["ci_low"] > 0
    # the batch-2025 site (no dates) is building in 2025 by its batch year: its unit is no control (issue 23)
    later = CELLS.index((0, 5))
    assert not treated[later]
    assert d["n_treated"] == N_TREATED and d["n_control"] == len(CELLS) - N_TREATED - 1
    assert d["n_excluded_controls"] == 1 and d["excluded"] == [f"u{later:02d}"]
    assert d["excluded_controls"] == [
        {
            "unit_id": f"u{later:02d}",
            "batch": "2025",
            "start_year": 2025,
            "reason": "batch 2025 has no groundbreaking date; taken as building from its batch "
            "year 2025: building by 2025, so not a control for 2024–2025",
        }
    ]
    assert d["data_kind"] == "synthetic" and "SYNTHETIC" in d["WARNING"]
    # the batch-2025 unit is a control before 2025, and the pre-trend pairs show nothing
    assert all(r["n_control"] == len(CELLS) - N_TREATED for r in d["pretrends"])
    assert {u["unit_id"] for u in d["treated_units"]} == {
        f"u{i:02d}" for i in np.flatnonzero(treated)
    }
    assert [(r["baseline_year"], r["target_year"]) for r in d["pretrends"]] == [
        (2022, 2023),
        (2023, 2024),
    ]
    assert all(abs(r["estimate_log"]) < 0.08 for r in d["pretrends"])


def test_null_twin_is_not_significant(null):
    d = null[0].did
    assert d["p_value"] > 0.05
    assert d["ci_low"] < 0 < d["ci_high"]
    assert abs(d["estimate_log"]) < 0.08
    # issue 23: what the null can rule out, in did.json and in the report's words (English and Korean)
    assert 0 < d["mde_log"] < 0.3 and d["mde_log_negative"] < 0
    from pipeline.publish.comparison import _pct, section_paragraphs

    lead = section_paragraphs(null[0])[0]
    assert f"picks up a brightening of {_pct(d['mde_log'])} or more only 4 times in 5" in lead
    assert "1 counties of other batches (2025) were left out" in lead
    ko = section_paragraphs(null[0], "ko")[0]
    assert f"{_pct(d['mde_log'])} 이상 밝아진 효과" in ko and "시·군 1곳은 비교에서 뺐다" in ko


def test_planted_report_has_no_power_caveat_and_gives_cohort_effects(planted):
    from pipeline.publish.comparison import section_paragraphs

    d = planted[0].did
    paras = section_paragraphs(planted[0])
    assert (
        "Not significant is not the same as no effect" not in paras[0]
    )  # no caveat on a clear effect
    # but the detectable effect is stated, so a reader can set this result beside a null one
    assert f"brightening of {100 * np.expm1(d['mde_log']):+.0f}%" in paras[0]
    cells = {(c["batch"], c["year"]): c for c in d["cohort_effects"]["cells"]}
    # batch 2024 has no groundbreaking date in this scenario: it builds from 2024, base year 2023
    assert cells[("2024", 2025)]["base_year"] == 2023
    assert abs(cells[("2024", 2025)]["estimate_log"] - 0.3) < 0.08
    assert d["baseline_before_groundbreaking"]["baseline_year"] == 2023
    assert any("before its groundbreaking" in p for p in paras)
    # robustness beside it: unequal variances, far controls (units of ~2.8 km: 3 rings within 10 km), log floor
    r = d["robustness"]
    assert r["unequal_variance"]["p_value"] < 0.05 and r["unequal_variance"]["n_clusters"] == 3
    assert r["far_controls"]["n_near_left_out"] > 0 or "skipped" in r["far_controls"]
    assert [f["factor"] for f in r["log_floor"]] == [0.1, 1.0, 10.0]
    assert r["log_floor"][1]["estimate_log"] == pytest.approx(d["estimate_log"])
    assert any(
        p.startswith("Checks beside the main result: allowing the designated counties")
        for p in paras
    )


def test_unit_panel_matches_the_planted_sums_and_gini(planted):
    comp, _, sums = planted
    panel = comp.unit_years
    assert list(panel.columns[:5]) == ["unit_id", "name", "province", "year", "sum_lights"]
    for y in YEARS:
        got = panel[panel["year"] == y].set_index("unit_id")["sum_lights"]
        want = pd.Series(sums[y], index=[f"u{i:02d}" for i in range(len(CELLS))])
        np.testing.assert_allclose(got.loc[want.index], want, rtol=1e-4)  # float32 rasters
        row = comp.disparity.set_index("year").loc[y]
        assert abs(row["gini"] - direct_gini(sums[y])) < 0.01
        assert abs(row["gini_without_top"] - direct_gini(np.sort(sums[y])[:-1])) < 0.01
        assert row["theil_between"] + row["theil_within"] == pytest.approx(row["theil"], rel=1e-9)
    cloudy = panel[panel["unit_id"] == "u00"]
    assert (cloudy["n_months"] == 11).all()  # the unobserved July is missing, not dark
    assert (panel.loc[panel["unit_id"] == "u59", "n_months"] == 12).all()


def test_event_study_and_spillover_tables(planted):
    comp = planted[0]
    assert list(comp.event_study.columns) == [
        "relative_month",
        "estimate",
        "ci_low",
        "ci_high",
        "n_sites",
    ]
    assert comp.event_study["relative_month"].between(-12, 12).all()
    spill = comp.spillover
    assert set(spill["ring"]) == {"0-5 km", "5-10 km", "10-20 km"}
    assert len(spill) == 3 * (N_TREATED + 1)
    assert {"site_class", "class", "log_ratio"} <= set(spill.columns)


# --------------------------------------------------------------------------- the demo's plants

DEMO_BOUNDS = (125.0, 39.3, 126.5, 40.3)
DEMO_UNIT_DEG = 0.125  # 12 x 8 = 96 square units


def demo_units(path: Path) -> Path:
    feats = []
    for r in range(8):
        for c in range(12):
            w, n = DEMO_BOUNDS[0] + c * DEMO_UNIT_DEG, DEMO_BOUNDS[3] - r * DEMO_UNIT_DEG
            e, s = w + DEMO_UNIT_DEG, n - DEMO_UNIT_DEG
            feats.append(
                {
                    "type": "Feature",
                    "properties": {
                        "unit_id": f"c{r}{c:02d}",
                        "name": f"County {r}-{c}",
                        "province": f"P{r // 4}{c // 6}",
                    },
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[w, n], [e, n], [e, s], [w, s], [w, n]]],
                    },
                }
            )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return path


def demo_inputs(tmp: Path, spike_share: float, units_path: Path | None = None):
    """Units, site file, sites and the built demo folder of a small comparison demo."""
    units_path = demo_units(units_path or tmp / "units.geojson")
    pts = [
        (
            f"d{i:02d}",
            round(DEMO_BOUNDS[0] + DEMO_UNIT_DEG * (1.5 + 3 * (i % 4)), 5),
            round(DEMO_BOUNDS[3] - DEMO_UNIT_DEG * (0.5 + 2 * (i // 4)), 5),
        )
        for i in range(16)
    ]
    # each site named after its county, as real sites are (no name warnings)
    site_file = write_sites(
        tmp / "sites.geojson",
        [
            point_feature(
                s,
                lon,
                lat,
                batch=2024,
                inauguration="2024-06-15",
                name=f"County {int((DEMO_BOUNDS[3] - lat) // DEMO_UNIT_DEG)}-{int((lon - DEMO_BOUNDS[0]) // DEMO_UNIT_DEG)}",
            )
            for s, lon, lat in pts
        ],
    )
    sites = read_sites([site_file], 2000.0)
    units = read_units(units_path)
    treated = tuple(sorted(set(treated_units(sites, units, 2024)["unit_id"])))
    spec = DemoSpec(
        seed=9,
        bounds=DEMO_BOUNDS,
        sites=tuple(pts),
        n_other_towns=6,
        change_range=(0.0, 0.0),
        comparison=True,
        units_file=str(units_path),
        treated_units=treated,
        inaugurations=tuple((s, "2024-06") for s, *_ in pts),
        spike_share=spike_share,
        near_share=0.5,
    )
    folder = build_demo(tmp / "demo", spec, progress=False)
    return units, site_file, sites, folder


def demo_case(tmp: Path, spike_share: float):
    units, _, sites, folder = demo_inputs(tmp, spike_share)
    comp = compare(
        sites,
        units,
        find_monthly_rasters(folder),
        Params(),
        batch=2024,
        data_kind="synthetic",
        progress=False,
    )
    return comp, pd.read_csv(folder / "truth.csv"), json.loads((folder / "truth.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_case(tmp_path_factory.mktemp("demo"), spike_share=1.0)


@pytest.mark.xdist_group("demo_case")  # one worker makes the demo fixture
@pytest.mark.slow
def test_demo_spike_is_recovered_and_its_twin_shows_none(demo, tmp_path):
    comp, truth, summary = demo
    e = comp.event_study.set_index("relative_month")
    assert truth["spike_log"].gt(0).all()
    assert e.loc[0, "estimate"] > 0.3 and e.loc[0, "ci_low"] > 0
    assert (
        e.loc[0, "estimate"]
        > e.loc[1, "estimate"]
        > e.loc[3, "estimate"]
        > e.loc[6, "estimate"] - 0.05
    )
    assert e.loc[6, "estimate"] < e.loc[0, "estimate"] / 4  # decayed within half a year
    assert (
        abs(e.loc[range(-12, 0), "estimate"].mean()) < 0.01
    )  # the reference period (sites missing some months)
    # months 7..12 are the target year 2025: the planted county effect, which the control counties lack
    assert abs(e.loc[range(7, 13), "estimate"].mean() - summary["treatment_log_effect"]) < 0.1
    twin, twin_truth, _ = demo_case(tmp_path, spike_share=0.0)
    assert twin_truth["spike_log"].eq(0).all()
    t = twin.event_study.set_index("relative_month")
    assert t.loc[0, "ci_low"] < 0 < t.loc[0, "ci_high"] and abs(t.loc[0, "estimate"]) < 0.1


@pytest.mark.xdist_group("demo_case")  # one worker makes the demo fixture
@pytest.mark.slow
def test_demo_near_ring_and_treatment_are_recovered(demo):
    comp, truth, summary = demo
    near = set(truth.loc[truth["near_log_change"] < 0, "site_id"])
    assert 0 < len(near) < len(truth)
    s = comp.spillover
    for ring, bound in (("0-5 km", -0.1), ("5-10 km", None)):
        r = s[s["ring"] == ring]
        gap = (
            r.loc[r["site_id"].isin(near), "log_ratio"].mean()
            - r.loc[~r["site_id"].isin(near), "log_ratio"].mean()
        )
        assert gap < bound if bound is not None else abs(gap) < 0.05
    assert summary["treatment_log_effect"] > 0
    assert abs(comp.did["estimate_log"] - summary["treatment_log_effect"]) < 0.1
    assert comp.did["p_value"] < 0.05


# --------------------------------------------------------------------------- bad input


def test_units_without_ids_are_refused(tmp_path):
    path = tmp_path / "u.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "x"},
                        "geometry": {"type": "Polygon", "coordinates": [square(0, 0)]},
                    }
                ],
            }
        )
    )
    with pytest.raises(BoundaryError, match="no unit_id"):
        read_units(path)


def small_sites(tmp: Path, batch: int = 2024, cells=((0, 0), (1, 0))) -> object:
    feats = [
        point_feature(
            f"s{i}", WEST + (c + 0.5) * SIDE * RES, NORTH - (r + 0.5) * SIDE * RES, batch=batch
        )
        for i, (c, r) in enumerate(cells)
    ]
    feats.append(point_feature("far", 140.0, 30.0, batch=2024))
    return read_sites([write_sites(tmp / "s.geojson", feats)], 500.0)


def test_overlap_warns_outside_site_warns_and_treats_nothing(tmp_path, caplog):
    cells = [*CELLS[:10], CELLS[0]]  # the last unit repeats the first
    with caplog.at_level(logging.WARNING):
        units = read_units(unit_file(tmp_path / "u.geojson", cells))
        assigned = treated_units(small_sites(tmp_path), units, 2024)
    assert "overlap" in caplog.text and "outside every unit" in caplog.text
    assert assigned.set_index("site_id")["unit_id"].isna().to_dict() == {
        "s0": False,
        "s1": False,
        "far": True,
    }


def test_batch_without_sites_is_one_clear_line(tmp_path):
    units = read_units(unit_file(tmp_path / "u.geojson", CELLS))
    with pytest.raises(
        ComparisonError, match=r"^no site of batch 2030 .*batches present: 2024\); choose --batch"
    ):
        treated_units(small_sites(tmp_path), units, 2030)


def test_fewer_than_five_controls_is_refused(tmp_path):
    units = read_units(unit_file(tmp_path / "u.geojson", CELLS[:6]))
    with pytest.raises(ComparisonError, match=r"4 control unit.*at least 5"):
        treated_units(small_sites(tmp_path, cells=((0, 0), (1, 0))), units, 2024)


# --------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli_compare_end_to_end(tmp_path, capsys):
    units, sites, folder, _, _ = planted_scenario(tmp_path, effect=0.3)
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "-q",
            "--units",
            str(units),
            "--sites",
            str(sites),
            "--source",
            "local",
            "--rasters",
            str(folder),
            "--radius",
            "500",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert code == 0
    for name in (
        "unit_years.csv",
        "unit_months.parquet",
        "did.json",
        "event_study.csv",
        "disparity.csv",
        "spillover.csv",
        "figures/event_study.png",
        "figures/lorenz.png",
    ):
        assert (out / name).exists(), name
    assert "designated minus other units" in capsys.readouterr().out
    d = json.loads((out / "did.json").read_text())
    assert abs(d["estimate_log"] - 0.3) < 0.08
    assert (
        pd.read_csv(out / "unit_years.csv")["data_kind"].eq("real").all()
    )  # hand-made rasters, not tagged


@pytest.mark.slow
def test_cli_compare_null_says_what_it_cannot_rule_out(tmp_path, capsys):
    units, sites, folder, _, _ = planted_scenario(tmp_path, effect=0.0)
    out = tmp_path / "out"
    assert (
        main(
            [
                "compare",
                "-q",
                "--units",
                str(units),
                "--sites",
                str(sites),
                "--source",
                "local",
                "--rasters",
                str(folder),
                "--radius",
                "500",
                "--out",
                str(out),
                "--no-figures",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    d = json.loads((out / "did.json").read_text())
    assert "1 units of other batches already building left out" in printed
    assert (
        f"effects below {d['mde_log']:+.3f} log" in printed and "less than 4 times in 5" in printed
    )


def test_cli_compare_bad_batch_is_one_line(tmp_path, capsys):
    units, sites, folder, _, _ = planted_scenario(tmp_path, effect=0.0)
    code = main(
        [
            "compare",
            "-q",
            "--units",
            str(units),
            "--sites",
            str(sites),
            "--source",
            "local",
            "--rasters",
            str(folder),
            "--batch",
            "2030",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no site of batch 2030" in err[0]


@pytest.mark.slow
def test_run_makes_the_comparison_labelled_synthetic(tmp_path, capsys):
    boundaries = Path("aoi/boundaries")  # the default units are found in the current folder first
    boundaries.mkdir(parents=True)
    _, site_file, _, folder = demo_inputs(tmp_path, 0.5, boundaries / "prk_adm2.geojson")
    out = tmp_path / "out"
    args = [
        "run",
        "-q",
        "--source",
        "local",
        "--rasters",
        str(folder),
        "--sites",
        str(site_file),
        "--no-sensitivity",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    assert main([*args, "--out", str(out)]) == 0
    for name in (
        "unit_years.csv",
        "did.json",
        "event_study.csv",
        "disparity.csv",
        "spillover.csv",
        "figures/event_study.png",
        "figures/lorenz.png",
        "figures/did_placebo.png",
    ):
        assert (out / name).exists(), name
    did = json.loads((out / "did.json").read_text())
    assert did["data_kind"] == "synthetic" and "SYNTHETIC" in did["WARNING"]
    assert did["n_treated"] == 16 and did["n_control"] == 80
    for name in ("unit_years.csv", "disparity.csv", "spillover.csv"):
        assert pd.read_csv(out / name)["data_kind"].eq("synthetic").all()
    report = (out / "report.md").read_text()
    assert (
        "## Against the counties that got nothing" in report and "figures/event_study.png" in report
    )
    assert 'id="fig-lorenz"' in (out / "report.html").read_text()
    # 'figures' reads the comparison back (Results.comparison) and re-makes its charts and section;
    # --lang ko draws the Korean charts (figures/ko/, which run wrote too) and leaves the English ones
    (out / "figures" / "ko" / "lorenz.png").unlink()
    english = (out / "figures" / "lorenz.png").read_bytes()
    assert (
        main(
            [
                "figures",
                "-q",
                "--out",
                str(out),
                "--format",
                "png",
                "--width-mm",
                "89",
                "--lang",
                "ko",
            ]
        )
        == 0
    )
    assert (out / "figures" / "ko" / "lorenz.png").exists()
    assert (out / "figures" / "lorenz.png").read_bytes() == english
    # --lang ko: the section in Korean, in the Korean report beside the English one
    assert "## 지정받지 못한 시·군과의 비교" in (out / "report.ko.md").read_text()
    assert "## Against the counties that got nothing" in (out / "report.md").read_text()
    # the run's own outputs keep their names and columns; --no-compare retires the comparison's files
    months = pd.read_csv(out / "site_months.csv")
    assert sorted(months["month"].str[:4].unique()) == ["2023", "2024", "2025"]
    assert main([*args, "--out", str(out), "--no-compare", "--no-figures"]) == 0
    assert not (out / "did.json").exists() and (out / "verdict.json").exists()


def test_compare_years_default_and_checks():
    from pipeline.errors import ConfigError

    assert Params().compare_years == tuple(range(2020, 2026))
    assert Params(baseline_year=2023, target_year=2024, compare_start_year=2022).compare_years == (
        2022,
        2023,
        2024,
    )
    with pytest.raises(
        ConfigError, match="compare_start_year=2025: must be a year from 2012 to baseline_year=2024"
    ):
        Params(compare_start_year=2025)
