"""What users bring, end to end on the demo world: a plain site file, a batch called "pilot", a claim
about it, other flags, the other commands and the Python API beside the command line.

The demo is one synthetic world (pipeline.fetch.world.load_world), so the shipped sites' numbers must not
move whatever else a run holds or however it was started; these tests compare the files byte for byte.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline.analysis
import pipeline.compare.county
import pipeline.judge.change
import pipeline.measure.zonal
from pipeline.cli import main
from pipeline.outputs import staged
from pipeline.study import write_tables
from tests.conftest import point_feature, polygon_feature, write_sites

# one pytest-xdist worker for the whole module: its module fixture (seven demo runs) is made once,
# not once on each worker that gets one of its tests
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("users_path")]

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "aoi" / f"sites_{y}.geojson" for y in (2024, 2025, 2026)]
# inside DPRK counties and far (> 25 km) from every shipped site, so no ring or spillover ring of theirs
# reaches them
PILOT = [("pilot-a", 124.75, 40.25), ("pilot-b", 127.0, 40.5), ("pilot-c", 128.25, 40.75)]
PLAIN = (129.25, 41.5)


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    dx = (a[0] - b[0]) * 111.32 * math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot(dx, (a[1] - b[1]) * 110.57)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A user's folder: a plain site file (site_id, name, geometry only), a pilot batch and its claim."""
    tmp = tmp_path_factory.mktemp("users")
    shipped = [
        (f["properties"]["center_lon"], f["properties"]["center_lat"])
        for p in SHIPPED
        for f in json.loads(p.read_text(encoding="utf-8"))["features"]
    ]
    assert min(_km(p, s) for p in [*(x[1:] for x in PILOT), PLAIN] for s in shipped) > 25
    x, y = PLAIN
    plain = [
        {
            "type": "Feature",
            "properties": {"site_id": "plain-point", "name": "Plain point"},
            "geometry": {"type": "Point", "coordinates": [x, y]},
        },
        {
            **polygon_feature(
                "plain-polygon",
                [
                    (x + 0.05, y),
                    (x + 0.08, y),
                    (x + 0.08, y + 0.02),
                    (x + 0.05, y + 0.02),
                    (x + 0.05, y),
                ],
            )
        },
    ]
    for f in plain:
        f["properties"] = {k: v for k, v in f["properties"].items() if k in ("site_id", "name")}
    write_sites(tmp / "plain.geojson", plain)
    write_sites(
        tmp / "pilot.geojson", [point_feature(s, lon, lat, batch="pilot") for s, lon, lat in PILOT]
    )
    (tmp / "pilot.yaml").write_text(
        "text: 'Of the three pilot sites, one brightened in 2025.'\nsource: A user\nbatch: pilot\n"
        "baseline_year: 2024\ntarget_year: 2025\nn_sites: 3\nbrightened: 1\n",
        encoding="utf-8",
    )
    return tmp


def _run(home: Path, out: str, *args: str) -> Path:
    code = main(
        [
            "run",
            "-q",
            "--source",
            "demo",
            "--data-dir",
            str(home / "data"),
            "--out",
            str(home / out),
            "--no-sensitivity",
            *args,
        ]
    )
    assert code == 0, out
    return home / out


API: list[pipeline.Results] = []  # the Python API's results (in memory: full precision)
READS: Counter[tuple[str, str]] = Counter()  # (zone, month) -> extractions in the base run


def _counting(real):
    """zone_month_table that counts each (zone, month) it is asked to measure."""

    def extract(rasters, zones, *args, **kwargs):
        for zone in zones["zone"]:
            for r in rasters:
                READS[(str(zone), r.month)] += 1
        return real(rasters, zones, *args, **kwargs)

    return extract


def _rows(path: Path) -> dict[str, list[str]]:
    """A CSV's lines by their first cell (the site id), as text: equal means byte-identical."""
    rows: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        rows.setdefault(line.split(",", 1)[0], []).append(line)
    return rows


@pytest.fixture(scope="module")
def runs(home: Path) -> dict[str, Path]:
    shipped = [a for p in SHIPPED for a in ("--sites", str(p))]
    out = {
        "users": _run(
            home,
            "users",
            "--sites",
            str(home / "plain.geojson"),
            "--sites",
            str(home / "pilot.geojson"),
            "--claim",
            str(home / "pilot.yaml"),
        )
    }
    with pytest.MonkeyPatch.context() as mp:
        counting = _counting(pipeline.measure.zonal.zone_month_table)
        for module in (pipeline.measure.zonal, pipeline.analysis, pipeline.compare.county):
            mp.setattr(module, "zone_month_table", counting)
        # a cache of its own: every zone is really extracted (not read back from another run's memo)
        out["base"] = _run(home, "base", *shipped, "--no-figures", "--cache-dir", str(home / "cb"))
    out["added"] = _run(
        home,
        "added",
        *shipped,
        "--sites",
        str(home / "plain.geojson"),
        "--sites",
        str(home / "pilot.geojson"),
        "--no-figures",
    )
    out["no_compare"] = _run(home, "no_compare", *shipped, "--no-compare", "--no-figures")
    out["claim"] = _run(
        home,
        "claim",
        *shipped,
        "--sites",
        str(home / "pilot.geojson"),
        "--claim",
        str(home / "pilot.yaml"),
        "--no-figures",
    )
    assert (
        main(
            [
                "compare",
                "-q",
                "--source",
                "demo",
                "--data-dir",
                str(home / "data"),
                "--out",
                str(home / "compare"),
                "--no-figures",
                *shipped,
            ]
        )
        == 0
    )
    out["compare"] = home / "compare"
    results = pipeline.analyse(
        [str(p) for p in SHIPPED], source="demo", data_dir=str(home / "data"), sensitivity=False
    )
    API.append(results)
    with staged(home / "api") as staging:
        write_tables(results, staging)
    out["api"] = home / "api"
    return out


def test_the_shipped_sites_hold_still_whatever_else_the_run_holds(runs):
    base_changes, base_months = (
        _rows(runs["base"] / "site_changes.csv"),
        _rows(runs["base"] / "site_months.csv"),
    )
    assert len(base_changes) == 52
    for name in ("added", "no_compare", "claim", "api"):
        changes, months = (
            _rows(runs[name] / "site_changes.csv"),
            _rows(runs[name] / "site_months.csv"),
        )
        assert {s: changes[s] for s in base_changes} == base_changes, name
        assert {s: months[s] for s in base_months} == base_months, name


def test_the_api_writes_the_same_tables_as_the_command_line(runs):
    written = sorted(p.name for p in runs["api"].iterdir() if not p.name.startswith("."))
    assert {
        "site_months.csv",
        "site_changes.csv",
        "county_changes.csv",
        "verdict.json",
        "unit_years.csv",
        "did.json",
        "event_study.csv",
        "disparity.csv",
        "spillover.csv",
    } <= set(written)
    for name in written:
        assert (runs["api"] / name).read_bytes() == (runs["base"] / name).read_bytes(), name


def test_one_run_extracts_each_zone_and_month_once(runs):
    assert READS, "the base run extracted nothing through zone_month_table"
    twice = {k: n for k, n in READS.items() if n > 1}
    assert not twice, f"extracted more than once: {sorted(twice)[:5]}"
    zones = {z for z, _ in READS}
    # sites, their rings, the spillover rings, the control sites and the counties all in the one plan
    assert any(z.startswith("ctrl:") for z in zones) and any("@near" in z for z in zones)
    assert any(z.endswith("@ring") for z in zones) and "songchon" in zones
    assert sum(z.startswith("unit:") for z in zones) == 181


def test_county_changes_are_the_unit_panel_s_changes(runs):
    """county_changes.csv, unit_years.csv and did.json give one number per county: ln((S_t + eps) /
    (S_b + eps)) of the panel's yearly sum of lights, eps the DiD's floor (pipeline.compare.panel)."""
    (results,) = API
    comp = results.comparison
    assert comp is not None and results.unit_changes is not None
    b, t, eps = comp.did["baseline_year"], comp.did["target_year"], comp.did["eps"]
    wide = comp.unit_years.pivot(index="unit_id", columns="year", values="sum_lights")
    want = np.log((wide[t].clip(lower=0) + eps) / (wide[b].clip(lower=0) + eps))
    got = results.unit_changes.set_index("unit_id")
    assert len(got) == 181 and (got["floor"] == eps).all()
    assert np.allclose(got["log_change"], want.loc[got.index], rtol=0, atol=1e-9, equal_nan=True)
    assert got["log_change"].notna().sum() == want.notna().sum() > 170
    # the files say the same (to the CSVs' six significant digits)
    out = runs["base"]
    files = pd.read_csv(out / "county_changes.csv").set_index("unit_id")
    assert np.allclose(files["log_change"], got["log_change"], rtol=1e-5, equal_nan=True)
    # a run without the comparison gives the same county numbers (the panel does not depend on it)
    same = (runs["no_compare"] / "county_changes.csv").read_bytes()
    assert same == (out / "county_changes.csv").read_bytes()


def test_compare_gives_the_comparison_run_gives(runs):
    for name in (
        "unit_years.csv",
        "did.json",
        "event_study.csv",
        "disparity.csv",
        "did_placebo.csv",
    ):
        assert (runs["compare"] / name).read_bytes() == (runs["base"] / name).read_bytes(), name


def test_a_plain_file_and_a_pilot_batch_run_with_figures_and_the_pilot_claim_is_judged(runs):
    out = runs["users"]
    verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["claim"]["batch"] == "pilot" and verdict["claim_sites"]["n_sites"] == 3
    assert verdict["claim_status"].split(":")[0] in ("agrees", "disagrees")
    assert {b["batch"] for b in verdict["batches"]} == {"pilot", None}
    assert verdict["n_sites"] == 5
    svg = (out / "figures" / "map.svg").read_text(encoding="utf-8")
    assert (
        'id="sites-pilot' in svg and 'id="sites-none' in svg
    )  # a marker for the label, a plain one for none
    for site in ("plain-point", "plain-polygon", "pilot-a", "pilot-b", "pilot-c"):
        assert f'id="label-{site}"' in svg, site  # every site is drawn and named
    changes = _rows(out / "site_changes.csv")
    assert set(changes) == {"plain-point", "plain-polygon", "pilot-a", "pilot-b", "pilot-c"}


def test_an_earlier_output_folder_still_remakes_its_figures(runs, home, capsys):
    # every other run above came after it, with other sites and flags
    assert (
        main(
            [
                "figures",
                "-q",
                "--out",
                str(runs["users"]),
                "--format",
                "png",
                "--dpi",
                "60",
                "--data-dir",
                str(home / "data"),
            ]
        )
        == 0
    )
    assert (runs["users"] / "figures" / "verdict.png").exists()
    assert "error" not in capsys.readouterr().err


def test_a_claim_brings_its_years_and_a_caveat_when_its_batch_cannot_be_seen(home):
    """A claim about the 2025 batch: 2025 -> 2026 is judged on 2026 data (its years become the run's);
    the same claim about 2024 -> 2025 is judged too, with the caveat that 2025 cannot show the batch."""
    site_file = str(ROOT / "aoi" / "sites_2025.geojson")
    for years, caveat in (((2025, 2026), False), ((2024, 2025), True)):
        claim = home / f"c{years[1]}.yaml"
        claim.write_text(
            f"text: 'Of the 20 sites of 2025, 4 brightened.'\nsource: test\nbatch: 2025\n"
            f"baseline_year: {years[0]}\ntarget_year: {years[1]}\nn_sites: 20\nbrightened: 4\n",
            encoding="utf-8",
        )
        out = _run(
            home,
            f"claim-{years[1]}",
            "--sites",
            site_file,
            "--claim",
            str(claim),
            "--no-figures",
            "--no-compare",
        )
        v = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
        assert (v["baseline_year"], v["target_year"]) == years
        assert v["claim_status"].split(":")[0] in ("agrees", "disagrees")
        assert (v["claim_caveat"] is not None) is caveat
        if caveat:
            assert "batch 2025 cannot be seen running in 2025" in v["claim_caveat"]["text"]


def test_no_output_holds_an_absolute_path_of_the_machine(runs, home):
    """Paths in outputs are relative (to the project, i.e. the current folder): the user's folder, the
    project and the temporary folders never appear, in any file, text or binary (issue 22 item 5)."""
    import re

    # an absolute path starts the string; "../../work/..." (relative, through the root) is fine
    forbidden = [re.compile(rb"(?<![.\w])" + re.escape(str(p).encode())) for p in (home, ROOT)]
    checked = 0
    for name in ("users", "base", "compare", "api"):
        for path in runs[name].rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                data = path.read_bytes()
                found = [f.pattern for f in forbidden if f.search(data)]
                assert not found, f"{path.relative_to(home)} holds an absolute path {found[0]!r}"
                checked += 1
    assert checked > 30
    did = json.loads((runs["base"] / "did.json").read_text(encoding="utf-8"))
    assert did["units_file"] and not Path(did["units_file"]).is_absolute()
    assert did["compare_years"] == list(range(did["compare_years"][0], did["target_year"] + 1))
    assert {i["month"][:4] for i in did["inputs"]} >= {str(y) for y in did["compare_years"]}


def test_csvs_open_in_a_spreadsheet_with_korean_intact_and_leave_no_merge_leftovers(runs):
    raw = (runs["base"] / "site_changes.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the UTF-8 byte-order mark Excel looks for
    table = pd.read_csv(runs["base"] / "site_changes.csv")
    assert table.columns[0] == "site_id" and table["name_ko"].str.contains("군|시").any()
    import geopandas as gpd

    gis = gpd.read_file(runs["users"] / "sites_classified.geojson")
    assert not [c for c in gis.columns if c.endswith(("_x", "_y"))], list(gis.columns)


def test_a_re_run_reads_every_stage_back_and_writes_the_same_bytes(runs, home, monkeypatch):
    """The memo (pipeline.memo): an identical re-run extracts, analyses and compares nothing and
    writes the tables of a run without any cache, byte for byte; another --threshold keeps the
    extraction, the county statistics and every bootstrap interval, and recomputes the rest."""
    calls: Counter[str] = Counter()

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        pipeline.measure.zonal,
        "zone_month_table",
        counted("extract", pipeline.measure.zonal.zone_month_table),
    )
    monkeypatch.setattr(pipeline.analysis, "analyse", counted("analyse", pipeline.analysis.analyse))
    monkeypatch.setattr(
        pipeline.compare.county, "compare", counted("compare", pipeline.compare.county.compare)
    )
    monkeypatch.setattr(
        pipeline.compare.county,
        "panel_statistics",
        counted("panel", pipeline.compare.county.panel_statistics),
    )
    monkeypatch.setattr(
        pipeline.judge.change, "_paired", counted("bootstrap", pipeline.judge.change._paired)
    )
    shipped = [a for p in SHIPPED for a in ("--sites", str(p))]
    again = _run(home, "again", *shipped, "--no-figures", "--cache-dir", str(home / "cb"))
    assert calls == Counter(), calls
    uncached = _run(home, "uncached", *shipped, "--no-figures", "--cache-dir", "none")
    assert calls.pop("bootstrap") > 40, calls  # headline, variants, controls, comparison, rings
    assert calls == Counter({"extract": 2, "analyse": 1, "compare": 1, "panel": 1}), calls
    tables = sorted(
        p.name
        for p in runs["base"].iterdir()
        if p.suffix in (".csv", ".json") and not p.name.startswith(".")
    )
    assert "site_changes.csv" in tables and "did.json" in tables and "county_changes.csv" in tables
    for name in tables:
        base = (runs["base"] / name).read_bytes()
        assert (again / name).read_bytes() == base, name
        assert (uncached / name).read_bytes() == base, name
    calls.clear()
    other = _run(
        home,
        "threshold",
        *shipped,
        "--no-figures",
        "--threshold",
        "0.05",
        "--cache-dir",
        str(home / "cb"),
    )
    assert calls == Counter({"analyse": 1, "compare": 1}), calls  # no bootstrap: read back
    changed = json.loads((other / "verdict.json").read_text(encoding="utf-8"))
    assert changed["parameters"]["threshold"] == 0.05
    assert (other / "site_changes.csv").read_bytes() != (
        runs["base"] / "site_changes.csv"
    ).read_bytes()


# the shipped provinces as the boundary file and the site files spell them (no Korean report shows one)
PROVINCES = sorted(
    {
        f["properties"]["name"]
        for f in json.loads(
            (ROOT / "aoi" / "boundaries" / "prk_adm1.geojson").read_text(encoding="utf-8")
        )["features"]
    }
    | {
        f["properties"]["province"]
        for p in SHIPPED
        for f in json.loads(p.read_text(encoding="utf-8"))["features"]
    }
)


def test_the_demo_s_korean_report_names_provinces_and_counties_in_hangul(runs):
    """The shipped sites on the demo: every province in hangul (from the county holding each site),
    a county with a hangul name in the boundaries shows it (Musan: 무산), the others stay
    romanised, said once. The report's text as `run` writes it, from the Python API's results (the
    same tables as `run`'s, test above), without drawing the charts of 52 sites again."""
    from pipeline.publish.report import report_html, report_md
    from pipeline.publish.style import Style
    from pipeline.words import say

    assert {"North Hwanghae", "P'yŏngyang", "South Hamgyŏng", "South Hamgyong"} <= set(PROVINCES)
    results = API[0]
    assert results.comparison is not None and len(results.changes) == 52
    page = report_html(results, {}, {}, Style(lang="ko"))
    md = report_md(results, [], {}, Style(lang="ko"))
    for text in (page, md):
        assert [p for p in PROVINCES if p in text] == []
        assert text.count(say("romanized_note", "ko")) == 1
    musan = page.split("<tr><td>Musan</td>")[1].split("</tr>")[0]
    assert musan.startswith("<td>무산군</td><td>함경북도</td><td>무산</td>")
    assert (
        "<td>Sinpho</td><td>신포시</td><td>함경남도</td><td>Sinpo</td>" in page
    )  # no hangul given
    # the comparison names the capital as its province is named, in hangul
    assert "평양(단위 wof-1108747951)" in page
    english = report_html(results, {}, {}, Style())
    assert "South Hamgyong" in english and "Musan</td><td>무산군</td><td>North Hamgyong" in english


def test_a_user_s_run_writes_both_reports_and_labels_the_claim_s_language(runs):
    out = runs["users"]
    ko = (out / "report.ko.html").read_text(encoding="utf-8")
    assert "“Of the three pilot sites, one brightened in 2025.”(영어 원문) (A user)." in ko
    assert [p for p in PROVINCES if p in ko] == []
    assert 'href="report.html"' in ko and "figures/ko/map.png." in ko
    en = (out / "report.html").read_text(encoding="utf-8")
    assert "“Of the three pilot sites, one brightened in 2025.” (A user)." in en
    assert (out / "report.ko.md").is_file() and (out / "figures" / "ko" / "map.png").is_file()
