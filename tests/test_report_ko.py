"""The Korean report: every heading, header, caption and sentence in Korean, checked as text and in a browser."""

from __future__ import annotations

import re

import pytest

import pipeline.publish.sentences as W
from pipeline.publish.style import Style
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
    return results, publish(results, out, Style(lang="ko", formats=("png",)))


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


@pytest.mark.browser
@needs_chromium
def test_korean_report_in_headless_chromium(ko, tmp_path):
    _, out = ko
    dom, console, requested = _chromium(out / "report.ko.html", tmp_path)
    assert console == [] and requested == []
    assert 'lang="ko"' in dom and "분석 방법" in dom and dom.count("<figure") == len(CHARTS)
