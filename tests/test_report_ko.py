"""The Korean report: every heading, header, caption and sentence in Korean, checked as text and in a browser."""

from __future__ import annotations

import dataclasses
import re

import pytest

import pipeline.publish.sentences as W
from pipeline.judge.verdict import Verdict
from pipeline.publish.composites import Boundaries, korean_names
from pipeline.publish.report import CSS, report_html, report_md
from pipeline.publish.style import Style
from pipeline.read.claims import load_claim
from pipeline.read.units import default_units_path, read_units
from pipeline.words import say
from tests.pubdata import CHARTS, SITES, publish, shared_results
from tests.test_report import _chromium, needs_chromium

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")

HANGUL = re.compile(r"[\uac00-\ud7af]")


@pytest.fixture(scope="module")
def ko(tmp_path_factory):
    results = shared_results(tmp_path_factory)
    out = tmp_path_factory.mktemp("ko") / "out"
    # the report's words are read here, not its charts' pixels: PNG at screen resolution
    return results, publish(results, out, Style(lang="ko", formats=("png",), dpi=100))


def _prose(page: str) -> str:
    """The page's visible text without images, font data, the parameter and checksum tables."""
    page = re.sub(r"<style>.*?</style>|<img [^>]*>", "", page, flags=re.S)
    page = page.split('<h3 id="parameters">')[0]
    return re.sub(r"<[^>]+>", "\n", page)


def test_korean_report_speaks_korean(ko):
    results, out = ko
    page = (out / "report.ko.html").read_text(encoding="utf-8")
    assert '<html lang="ko">' in page
    for key in (
        "h_batches",
        "h_method",
        "h_sites",
        "h_charts",
        "h_provenance",
        "col_brightened",
        "col_change",
    ):
        assert say(key, "ko") in page, key
    assert "분석 방법" in page and "어두운 달이 아니라 빠진 달" in page  # method prose
    assert (
        "합성 데모 데이터" in page and 'id="synthetic-warning"' in page
    )  # still says synthetic, in Korean
    for _sid, _, _, name_ko, _, _ in SITES:
        assert name_ko in page
    # no English sentence is left in the prose: every line with 4+ Latin words is a name, a file or a quote
    claim = results.verdict["claim"]
    allowed = (
        claim["text"],
        claim["source"],
        "nightlights",
        "sites_classified",
        "figures/",
        "VIIRS",
        "SYNTHETIC",
        "Data:",
        "EOG",
        "nW/cm",
    )
    english = [
        ln
        for ln in _prose(page).splitlines()
        if len(re.findall(r"\b[A-Za-z]{3,}\b", ln)) >= 4
        and not any(a in ln for a in allowed)
        and not ln.strip().startswith(("/", "../", "./"))
    ]  # folder paths
    assert english == [], english[:5]
    for name in CHARTS:
        assert W.caption(name, "ko") in page


def test_korean_headline_and_status_are_built_from_the_numbers(ko):
    results, _ = ko
    v = results.verdict
    line = W.headline(v, "ko")
    c = v["claim_sites"]["counts"]
    assert line.startswith(f"[합성 데모 데이터] {v['baseline_year']}년 대비 {v['target_year']}년")
    assert f"밝아짐 {c['brightened']}곳" in line and f"어두워짐 {c['dimmed']}곳" in line
    # the status is said again from the numbers, in either language, never translated from the English line
    claim = {**v["claim"], "n_sites": 4, "brightened": 1, "similar_or_dimmer": 3}
    counts = {"brightened": 1, "unchanged": 2, "dimmed": 1, "insufficient_data": 0}
    judged = {
        **v,
        "claim": claim,
        "claim_sites": {"counts": counts, "n_sites": 4, "similar_or_dimmer": 3},
    }
    assert W.status({**judged, "agrees_with_claim": True}, "ko") == "일치"
    assert W.status({**judged, "agrees_with_claim": False}, "ko") == (
        "불일치 (밝아짐 1곳, 비슷하거나 어두워짐 3곳)"
    )
    assert W.status({**judged, "agrees_with_claim": False}, "en") == (
        "disagrees: 1 brightened, 3 similar or dimmer"
    )
    assert W.status(v, "ko").startswith("판정하지 않음")  # 5 sites where the claim has 20


def test_korean_dates_and_batches():
    v = {
        "target_year": 2025,
        "batches": [
            {
                "batch": 2025,
                "n_sites": 20,
                "inauguration_first": "2025-12-15",
                "inauguration_last": "2025-12-29",
                "observable_months": 0,
                "status": "not yet observable",
                "target_year": 2025,
            },
            {
                "batch": 2024,
                "n_sites": 20,
                "inauguration_first": "2024-10-10",
                "inauguration_last": "2025-02-20",
                "observable_months": 10,
                "status": "partly observable",
                "target_year": 2025,
            },
        ],
    }
    a, b = W.observability_sentences(v, "ko")
    assert a.startswith("2025년 지정 20곳(준공 2025년 12월 15~29일): 2025년 아직 관측할 수 없음.")
    assert b.startswith(
        "2024년 지정 20곳(준공 2024년 10월 10일~2025년 2월 20일): 2025년 일부만 관측 가능. "
        "2025년 12개월 중 10개월만"
    )
    en_a, en_b = W.observability_sentences(v, "en")
    assert en_a.startswith("Batch 2025 (20 sites, inaugurated 15–29 Dec 2025): not yet observable")
    assert en_b.startswith("Batch 2024 (20 sites, inaugurated 10 Oct 2024 – 20 Feb 2025): partly")


def test_english_report_is_unchanged_in_english(ko):
    results, _ = ko
    assert W.headline(results.verdict, "en").startswith("[SYNTHETIC DEMO DATA] ")
    assert "missing, not dark" in W.method_paragraph(results.verdict, 288, "en")


def test_the_boundaries_give_hangul_names_and_none_is_made_up():
    counties, provinces = (read_units(default_units_path(x)) for x in ("county", "province"))
    names = korean_names(Boundaries(counties, provinces, None))
    # all 181 counties know their province; of their own names, the 9 name_ko and the 3 counties
    # named as their province (Pyongyang, Nampho, Rason), nothing else
    assert len(names.province_of) == 181 and len(set(names.province_of.values())) == 12
    assert names.county == {
        **{
            u: k
            for u, k in zip(counties["unit_id"], counties["name_ko"], strict=True)
            if isinstance(k, str)
        },
        "wof-1108747951": "평양",
        "wof-1108747021": "남포",
        "wof-1108747091": "나선",
    }
    assert names.county_name("wof-1108747013") == "무산"  # Musan: name_ko
    assert names.county_name("wof-1108746843") is None  # Anak: no hangul in the file
    assert names.province_name("wof-1108746843", "anything") == "황해남도"  # by its county
    # without a county, by the site file's romanisation (McCune-Reischauer or not)
    assert names.province_name(None, "Jagang") == "자강도"
    assert names.province_name(None, "South Pyongan") == names.province_name(None, "South P'yŏngan")
    assert names.province_name(None, "South Pyongan") == "평안남도"
    assert names.province_name(None, "Kaesong") is None  # not a province of the file
    assert korean_names(None).county_name("wof-1108747013") is None


def test_korean_sites_table_names_places_in_hangul_or_says_it_cannot(ko):
    results, out = ko
    page = (out / "report.ko.html").read_text(encoding="utf-8")
    rows = {r.split("</td>")[0]: r for r in page.split("<tr><td>")[1:]}
    # the test sites say province "Test"; those in a county take its province: 평안남도 or 평안북도
    changes = results.changes.set_index("site_id")
    for sid, *_ in SITES:
        name = sid.capitalize()
        county_id = changes.at[sid, "county_id"]
        if isinstance(county_id, str):
            assert "<td>Test</td>" not in rows[name] and "<td>평안" in rows[name], sid
        else:  # outside every county: the site file's word, romanised, noted once
            assert "<td>Test</td>" in rows[name], sid
    assert page.count(say("romanized_note", "ko")) == 1
    english = (out / "report.ko.html").with_name("report.html")
    assert not english.exists()  # publish() in Korean writes the Korean report only


def test_the_claim_in_korean_quoted_or_labelled(ko, tmp_path):
    """A user's claim file: with text_ko the Korean report quotes it (called a translation unless
    text_ko_is says quotation), without it the claim's own words, labelled English; English
    reports quote the file's text."""
    results, _ = ko
    base = (
        "text: 'Of the five test sites, none brightened in 2025.'\nsource: A user\nbatch: 2024\n"
        "baseline_year: 2024\ntarget_year: 2025\nn_sites: 5\nbrightened: 0\n"
    )
    english = "Of the five test sites, none brightened in 2025."
    korean = "시험 지점 다섯 곳 가운데 2025년에 밝아진 곳은 없었다."
    cases = {
        "plain": ("", english, "(영어 원문)"),
        "translated": (f"text_ko: '{korean}'\n", korean, "(영어 문장의 번역)"),
        "quoted": (f"text_ko: '{korean}'\ntext_ko_is: quotation\n", korean, ""),
    }
    for case, (extra, quoted, label) in cases.items():
        path = tmp_path / f"{case}.yaml"
        path.write_text(base + extra, encoding="utf-8")
        claim = load_claim(path)
        verdict = Verdict.from_dict({**results.verdict.to_dict(), "claim": claim.to_dict()})
        r = dataclasses.replace(results, verdict=verdict)
        page = report_html(r, {}, {}, Style(lang="ko"))
        md = report_md(r, [], {}, Style(lang="ko"))
        line = f"검증 대상 주장: “{quoted}”{label} (A user)."
        assert line in page and line in md, case
        assert page.count(quoted) == 2  # the claim line and the provenance table
        if quoted == korean:
            assert english not in page, case
        for lang_page in (report_html(r, {}, {}, Style()), report_md(r, [], {}, Style())):
            assert f"The claim: “{english}” (A user)." in lang_page, case
            assert korean not in lang_page, case
    # a claim in Korean is labelled in the English report, quoted as it is in the Korean one
    claim = {**claim.to_dict(), "text": korean, "text_ko": None, "text_ko_is": None}
    assert W.claim_text(claim, "en") == (korean, " (Korean original)")
    assert W.claim_text(claim, "ko") == (korean, "")


def test_input_months_never_wrap_and_korean_words_never_break(ko):
    _, out = ko
    page = (out / "report.ko.html").read_text(encoding="utf-8")
    assert "td.month{white-space:nowrap}" in CSS and "html:lang(ko){word-break:keep-all}" in CSS
    inputs = page.split('<h3 id="inputs">')[1]
    months = re.findall(r"<td class=month>([^<]*)</td><td class=hash>", inputs)
    assert len(months) == inputs.count("<tr>") - 1 >= 36  # every row but the header
    assert all(re.fullmatch(r"\d{4}-\d{2}", m) for m in months)


@pytest.mark.browser
@needs_chromium
def test_korean_report_in_headless_chromium(ko, tmp_path):
    _, out = ko
    dom, console, requested = _chromium(out / "report.ko.html", tmp_path)
    assert console == [] and requested == []
    assert 'lang="ko"' in dom and "분석 방법" in dom and dom.count("<figure") == len(CHARTS)
