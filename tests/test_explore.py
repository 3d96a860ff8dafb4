"""explore.html: the page's data, self-contained and offline, and a real headless browser clicking a site."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.publish.composites import boundaries
from pipeline.publish.explore import BOUNDARY_CREDITS, explore_html, page_data
from pipeline.publish.style import CLASS_COLORS, Style
from pipeline.words import synthetic_notice, synthetic_tag
from tests.cdp import Browser
from tests.pubdata import SITES, published
from tests.test_report import CHROMIUM, _chromium, needs_chromium

# the session's synthetic run, made once by the worker that publishes it for the chart and report tests
pytestmark = pytest.mark.xdist_group("pubdata")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return published(tmp_path_factory)


@pytest.fixture(scope="module")
def borders(run):
    """The shipped boundaries, read once for the module (3 MB of GeoJSON and a union each time)."""
    return boundaries(run[0].sites)


@pytest.fixture(scope="module")
def korean(run, borders, tmp_path_factory):
    results, _ = run
    page = tmp_path_factory.mktemp("ko") / "explore.html"
    page.write_text(explore_html(results, Style(lang="ko"), borders), "utf-8")
    return page


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_run_writes_the_page_beside_the_report(run):
    _, out = run
    assert (out / "explore.html").is_file() and (out / "report.html").is_file()


def test_page_data_has_every_site_its_months_and_class(run):
    results, out = run
    data = _data((out / "explore.html").read_text(encoding="utf-8"))
    b, t = results.verdict["baseline_year"], results.verdict["target_year"]
    assert data["months"] == [f"{y}-{m:02d}" for y in (b, t) for m in range(1, 13)]
    sites = {s["id"]: s for s in data["sites"]}
    assert sorted(sites) == sorted(results.sites["site_id"])
    changes = results.changes.set_index("site_id")
    months = results.site_months.set_index(["site_id", "month"])
    for sid, s in sites.items():
        assert s["class"] == changes.at[sid, "class"]
        assert s["change_pct"] == pytest.approx(changes.at[sid, "change_pct"], rel=1e-2)
        for i, month in enumerate(data["months"]):
            row = months.loc[(sid, month)]
            assert s["valid"][i] == int(bool(row["is_valid"])), (sid, month)
            if np.isfinite(row["mean_radiance"]):
                assert s["radiance"][i] == pytest.approx(row["mean_radiance"], rel=1e-3)
    assert any(0 in s["valid"] for s in sites.values()) and any(
        1 in s["valid"] for s in sites.values()
    )
    for sid, _, _, ko, gb, inaug in SITES:
        assert sites[sid]["name_ko"] == ko
        assert (sites[sid]["groundbreaking"], sites[sid]["inauguration"]) == (gb, inaug)
        assert sites[sid]["batch"] == "2024"
    assert data["colors"]["class"] == {k: CLASS_COLORS[k] for k in data["classes"]}
    assert data["synthetic"] is True and data["data_kind"] == "synthetic"


def test_page_is_self_contained_and_names_no_folder_of_the_machine(run):
    _, out = run
    page = (out / "explore.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=\"(?!data:)", page)
    assert "default-src 'none'" in page and "connect-src 'none'" in page
    licence = re.search(r'<ul id="licence" class="licence">(.*?)</ul>', page, re.S)
    assert licence and "whosonfirst.org" in licence.group(1)
    outside = page.replace(licence.group(0), "")
    assert not re.search(r"https?://", outside), re.findall(r".{40}https?://.{40}", outside)
    for folder in {out, out.parent, Path.cwd(), Path.home(), ROOT}:
        assert str(folder) not in page, folder
    assert not re.search(r"(?<![\w.])/(home|root|tmp|work|Users)/", outside)


def test_boundary_credits_are_the_notice_lines():
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    for line in BOUNDARY_CREDITS:
        assert line in " ".join(notice.split()), line


def test_synthetic_is_labelled_and_real_data_is_not(run, borders):
    results, out = run
    page = (out / "explore.html").read_text(encoding="utf-8")
    assert 'id="synthetic-warning"' in page and synthetic_notice("en", long=True) in page
    assert f"<title>{synthetic_tag('en')}" in page and 'id="synthetic-watermark"' in page
    real = dataclasses.replace(
        results, verdict=dataclasses.replace(results.verdict, data_kind="real")
    )
    other = explore_html(real, Style(), borders)
    assert "synthetic-warning" not in other and synthetic_tag("en") not in other
    assert 'id="synthetic-watermark"' not in other
    assert _data(other)["synthetic"] is False


def test_korean_page_opens_in_korean_with_the_glyphs_embedded(run, korean):
    page = korean.read_text(encoding="utf-8")
    assert '<html lang="ko">' in page and "지점 살펴보기" in page
    data = _data(page)
    assert data["lang"] == "ko" and data["words"]["ko"]["class_names"]["brightened"] == "밝아짐"
    assert synthetic_notice("ko", long=True) in page  # the banner, in Korean
    assert '@font-face{font-family:"Noto Sans KR subset"' in page


def test_counties_carry_their_change_and_the_map_is_small(run, borders):
    results, out = run
    page = (out / "explore.html").read_text(encoding="utf-8")
    data = _data(page)
    units = {u["id"]: u for u in data["counties"]["units"]}
    for _, r in results.unit_changes.iterrows():
        if r["unit_id"] in units and np.isfinite(r["log_change"]):
            assert units[r["unit_id"]]["log_change"] == pytest.approx(r["log_change"], rel=1e-3)
            assert re.fullmatch(r"#[0-9a-f]{6}", units[r["unit_id"]]["fill"])
    assert len(units) == len(borders.counties)
    assert all(re.fullmatch(r"(M\d+ \d+l[-\d ]+z)+", u["d"]) for u in units.values())
    assert len(page.encode()) < 400_000


def test_same_page_twice(run, borders):
    results, _ = run
    b = borders
    assert explore_html(results, Style(), b) == explore_html(results, Style(), b)


def test_without_boundaries_the_sites_stand_alone(run):
    results, _ = run
    data = page_data(results, Style(), None)
    assert data["borders"] is None and data["counties"] is None
    xs = [s["x"] for s in data["sites"]]
    assert min(xs) > 0 and max(xs) < data["view"][0]


def test_input_text_is_inert(run):
    results, _ = run
    sites = results.sites.copy()
    sites.loc[0, "name"] = "</script><script>alert(1)</script>"
    page = explore_html(dataclasses.replace(results, sites=sites), Style(), None)
    assert "</script><script>alert(1)" not in page
    assert _data(page)["sites"][0]["name"] == "</script><script>alert(1)</script>"


# --------------------------------------------------------------------------- headless browser


@pytest.mark.browser
@needs_chromium
def test_the_click_driver_sees_console_errors_and_outside_requests(tmp_path):
    """The checks below can fail: the DevTools client catches a planted error and request."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        "<button onclick=\"console.error('planted error')\">x</button></body></html>",
        encoding="utf-8",
    )
    with Browser(CHROMIUM, tmp_path) as browser:
        browser.open(bad)
        browser.click("button")
        browser.wait_for("Runtime.consoleAPICalled")
        assert any("planted error" in c for c in browser.console())
        assert browser.requests() == ["http://127.0.0.1:9/x.png"]


@pytest.mark.browser
@needs_chromium
def test_explore_loads_in_headless_chromium(run, borders, tmp_path):
    results, out = run
    dom, console, requested = _chromium(out / "explore.html", tmp_path)
    assert console == []
    assert requested == []
    assert 'data-ready="1"' in dom
    for sid in results.sites["site_id"]:
        assert f'data-site="{sid}"' in dom
    assert dom.count('class="county"') == len(borders.counties)


@pytest.mark.browser
@needs_chromium
def test_click_on_a_site_shows_its_series(run, korean, tmp_path):
    results, out = run
    sid = "delta"
    months = results.site_months[results.site_months["site_id"] == sid]
    b, t = results.verdict["baseline_year"], results.verdict["target_year"]
    months = months[months["month"].str[:4].isin([str(b), str(t)])]
    with Browser(CHROMIUM, tmp_path) as browser:
        browser.open(out / "explore.html", 1280, 900)
        browser.wait_until("document.body.dataset.ready === '1'")
        assert browser.eval("document.getElementById('series')") is None
        browser.click(f'#map [data-site="{sid}"]')
        browser.wait_until("!!document.getElementById('series')")
        assert (
            browser.eval("document.getElementById('site-name').firstChild.textContent") == "Delta"
        )
        valid = browser.eval("document.querySelectorAll('#series .month.valid').length")
        invalid = browser.eval("document.querySelectorAll('#series .month.invalid').length")
        assert valid == int(months["is_valid"].sum()) and valid + invalid == 24
        assert browser.eval("document.querySelectorAll('#series line.inauguration').length") == 1
        assert browser.eval("document.querySelectorAll('#series line.groundbreaking').length") == 1
        cls = results.changes.set_index("site_id").at[sid, "class"]
        assert cls.replace("_", " ") in browser.eval(
            "document.getElementById('site-class').innerText"
        )
        # filters: hiding the site's class hides its marker
        browser.click(f"#class-{cls}")
        assert (
            browser.eval(f"document.querySelector('#map [data-site=\"{sid}\"]').style.display")
            == "none"
        )
        # zoom: the map's view narrows
        before = browser.eval("document.getElementById('map').getAttribute('viewBox')")
        browser.click("#zoom-in")
        after = browser.eval("document.getElementById('map').getAttribute('viewBox')")
        assert float(after.split()[2]) < float(before.split()[2])
        # the language toggle
        browser.click('[data-lang="ko"]')
        assert browser.eval("document.documentElement.lang") == "ko"
        assert (
            browser.eval("document.getElementById('site-name').firstChild.textContent") == "델타군"
        )
        assert browser.console() == [] and browser.requests() == []
    with Browser(CHROMIUM, tmp_path) as browser:  # the page written in Korean opens in Korean
        browser.open(korean, 1280, 900)
        browser.wait_until("document.body.dataset.ready === '1'")
        browser.click('#site-list [data-site="alpha"] button')
        browser.wait_until("!!document.getElementById('series')")
        assert (
            browser.eval("document.getElementById('site-name').firstChild.textContent") == "알파군"
        )
        assert browser.console() == [] and browser.requests() == []


def test_annual_products_give_one_value_a_year(run):
    results, _ = run
    b, t = results.verdict["baseline_year"], results.verdict["target_year"]
    sm = results.site_months
    annual = (
        sm.assign(month=sm["month"].str[:4])
        .groupby(["site_id", "month"], as_index=False)
        .agg({"mean_radiance": "mean", "is_valid": "max", "valid_fraction": "mean"})
    )
    data = page_data(dataclasses.replace(results, site_months=annual), Style(), None)
    assert data["months"] == [str(b), str(t)]
    assert all(len(s["radiance"]) == 2 and s["valid"] == [1, 1] for s in data["sites"])
