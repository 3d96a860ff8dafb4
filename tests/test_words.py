"""The one table of words (pipeline/words.toml): both languages for every key the code uses, one
synthetic notice, and English and Korean reports with the same sections, paragraph for paragraph."""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest

import pipeline
from pipeline import words
from pipeline.config import PIXEL_RULES, STATISTICS
from pipeline.judge.change import CLASSES
from pipeline.judge.sensitivity import WINDOWS
from pipeline.judge.verdict import OBSERVABILITY
from pipeline.publish import charts, comparison, report
from pipeline.publish.report import report_html, report_md
from pipeline.publish.style import Style
from tests.pubdata import make_results, publish, shared_results
from tests.test_compare import planted_comparison

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")

ROOT = Path(pipeline.__file__).parent
SAY = {"say", "label", "has"}  # say(key, ...), style.label(key, ...), has(key)
# keys the code makes from a family and a value: every value it can meet must have its words
FAMILIES = {
    "caption_": [*report.CHARTS, *comparison.CHARTS],
    "chart_": [*report.CHARTS, *comparison.CHARTS],
    "dim_": list(charts.DIMENSIONS),
    "col_": [
        "site",
        "hangul",
        "province",
        "county",
        "batch",
        "baseline",
        "target",
        "change",
        "class",
        "ring",
        "months",
    ],
    "status_": ["agrees", "disagrees", "undetermined", "years", "no_site", "count"],
    "stat_": list(STATISTICS),
    "window_": list(WINDOWS),
    "adjustment_": ["absolute", "ring"],
    "rule_": list(PIXEL_RULES),
    "product_": ["eog-vcmslcfg", "eog-vcmcfg", "VNP46A3", "VNP46A4", "geotiff"],
}


def _calls() -> tuple[set[str], set[str], set[str]]:
    """Over every module of the package: the literal keys handed to say/label/has, the prefixes of
    keys built with an f-string, and every string constant (keys passed through a variable)."""
    literal, prefixes, constants = set(), set(), set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
            if not (isinstance(node, ast.Call) and node.args):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            arg = node.args[0]
            if name == "say_value" and isinstance(arg, ast.Constant):
                prefixes.add(f"{arg.value}_")
            if name not in SAY:
                continue
            options = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
            for a in options:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    literal.add(a.value)
                elif isinstance(a, ast.JoinedStr) and isinstance(a.values[0], ast.Constant):
                    prefixes.add(str(a.values[0].value))
    # the robustness chart's values: say_value(family, ...) with the family from this mapping
    prefixes |= {f"{family}_" for family in charts.VALUE_WORDS.values()}
    return literal, prefixes, constants


def test_every_key_the_code_uses_exists_in_both_languages():
    table = words.table()
    literal, prefixes, _ = _calls()
    assert len(literal) > 150  # the scan sees the call sites (it would be hollow otherwise)
    missing = sorted(k for k in literal if k not in table)
    assert missing == [], missing
    assert prefixes <= set(FAMILIES) | {"product_"}, prefixes - set(FAMILIES)
    built = [f"{p}{v}" for p, values in FAMILIES.items() for v in values]
    built += [k for pair in OBSERVABILITY.values() for k in pair] + list(CLASSES)
    assert sorted(k for k in built if k not in table) == []
    for key, texts in table.items():
        assert set(texts) == {"en", "ko"} and all(t.strip() for t in texts.values()), key


def test_every_key_of_the_table_is_used():
    """No dead words: a key is used when the code names it, or builds it from a known family."""
    _, prefixes, constants = _calls()
    unused = [
        k
        for k in words.table()
        if k not in constants and not any(k.startswith(p) for p in prefixes)
    ]
    assert unused == [], unused


def test_the_table_is_checked_as_it_is_read():
    good = {"a": {"en": "{n} sites", "ko": "{n}곳"}}
    marks = {
        "synthetic_mark": {"en": "S", "ko": "합"},
        "synthetic_short": {"en": "S: x", "ko": "합: x"},
        "synthetic_long": {"en": "S: y", "ko": "합: y"},
    }
    assert words.check({**good, **marks})["a"]["ko"] == "{n}곳"
    for bad, why in (
        ({"a": {"en": "x"}}, "no ko text"),
        ({"a": {"en": "x", "ko": " "}}, "no ko text"),
        ({"a": {"en": "{n} sites", "ko": "곳"}}, "ko fills [] where en fills ['n']"),
        ({"a": {"en": "{n}", "ko": "{m}"}}, "ko fills ['m'] where en fills ['n']"),
        ({"a": {"en": "x", "ko": "y", "de": "z"}}, "unknown field(s) de"),
        ({"a": "x"}, "got a bare value"),
        ({"a": {"en": "{", "ko": "y"}}, "a.en"),
    ):
        with pytest.raises(words.WordsError, match=re.escape(why)):
            words.check({**bad, **marks})
    # a field only English names must be declared so
    assert words.check({"a": {"en": "{d} {n}", "ko": "{n}", "en_only": ["d"]}, **marks})
    with pytest.raises(words.WordsError, match=r"synthetic_long\.ko must begin"):
        words.check({**marks, "synthetic_long": {"en": "S: y", "ko": "다른 말"}})


SYNTHETIC_PHRASES = re.compile(
    r"SYNTHETIC DEMO|SYNTHETIC DATA|not evidence|no evidence|합성 데모|합성 데이터|\[SYNTHETIC"
)


def test_one_synthetic_notice_wording():
    """The notice lives in the table only; no module spells its own (docstrings aside, and the demo
    folder's own README, which describes the generated rasters in data/demo, not any output)."""
    found = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and SYNTHETIC_PHRASES.search(node.value)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert [f for f in found if not f.split(":")[0].endswith("demo.py")] == []
    for lang in ("en", "ko"):
        mark = words.say("synthetic_mark", lang)
        assert words.synthetic_notice(lang).startswith(mark)
        assert words.synthetic_notice(lang, long=True).startswith(mark)
        assert words.synthetic_tag(lang) == f"[{mark}] "


# --------------------------------------------------------------------------- the reports' sections

SECTION = re.compile(r"<h([1-3]) id=\"([a-z0-9_]+)\">")
PARTS = ("<p", "<li", "<tr", "<figure", "<table", "<ul")


def sections(page: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(level, id, counts of paragraphs, list items, table rows, figures, tables, lists) per heading,
    in order: what a reader of either language finds in each section."""
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    cuts = [(m.start(), m.group(1), m.group(2)) for m in SECTION.finditer(page)]
    out = [("0", "top", tuple(page[: cuts[0][0]].count(p) for p in PARTS))] if cuts else []
    for i, (start, level, name) in enumerate(cuts):
        end = cuts[i + 1][0] if i + 1 < len(cuts) else len(page)
        out.append((level, name, tuple(page[start:end].count(p) for p in PARTS)))
    return out


def md_sections(md: str) -> list[tuple[int, int]]:
    """(heading level, number of non-empty lines under it) per Markdown heading, in order."""
    out: list[tuple[int, int]] = []
    for line in md.splitlines():
        if line.startswith("#"):
            out.append((len(line) - len(line.lstrip("#")), 0))
        elif line.strip() and out:
            out[-1] = (out[-1][0], out[-1][1] + 1)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The session's small synthetic run (pubdata) without the comparison, and the same with a real
    comparison (the planted county scenario of test_compare) attached, its did.json given a site
    placebo too. The reports are made from it in memory: nothing here needs its own run."""
    results = shared_results(tmp_path_factory)
    comp = planted_comparison(tmp_path_factory, effect=0.3)[0]
    did = {
        **comp.did,
        "site_placebo": {
            "of": "the claim",
            "k": 5,
            "n": 20,
            "n_control_sites": 161,
            "expected": 2.5,
            "percentile": 91.0,
            "p_lower": 0.95,
            "p_upper": 0.09,
        },
    }
    with_comp = dataclasses.replace(results, comparison=dataclasses.replace(comp, did=did))
    return results, with_comp


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    """One ``nightlights run`` on a small run's rasters and sites (no comparison: its rasters
    cover a few counties), with its default languages: both reports, each with its charts. Its own
    rasters (not the session's): `figures` finds them through the folders the output names."""
    from pipeline.cli import main

    tmp = tmp_path_factory.mktemp("words_run")
    make_results(tmp)  # writes the rasters and sites.geojson the run reads
    code = main(
        [
            "run",
            "-q",
            "--source",
            "local",
            "--rasters",
            str(tmp / "rasters"),
            "--sites",
            str(tmp / "sites.geojson"),
            "--data-dir",
            str(tmp / "data"),
            "--out",
            str(tmp / "run"),
            "--no-compare",
        ]
    )
    assert code == 0
    return tmp / "run"


def _pages(results, charts_made):
    pngs = dict.fromkeys(charts_made, b"\x89PNG")
    out = {}
    for lang in ("en", "ko"):
        style = Style(lang=lang, formats=("png",))
        out[lang] = (
            report_html(results, pngs, {}, style),
            report_md(results, list(pngs), {}, style),
        )
    return out


def _same_sections(en: str, en_md: str, ko: str, ko_md: str, with_comparison: bool) -> None:
    ids = [s[1] for s in sections(en)]
    assert ids[:6] == ["top", "h1", "batches", "method", "sites", "charts"]
    assert ("comparison" in ids) == with_comparison
    assert ids[-3:] == ["provenance", "parameters", "inputs"]
    assert sections(ko) == sections(en)  # same headings in order, same paragraphs, rows, figures
    assert md_sections(ko_md) == md_sections(en_md)
    assert '<html lang="ko">' in ko and '<h2 id="method">분석 방법</h2>' in ko


@pytest.mark.slow
def test_one_run_writes_both_reports_with_the_same_sections_each_with_its_charts(run_out):
    en, ko, en_md, ko_md = (
        (run_out / name).read_text(encoding="utf-8")
        for name in ("report.html", "report.ko.html", "report.md", "report.ko.md")
    )
    _same_sections(en, en_md, ko, ko_md, with_comparison=False)
    assert 'href="report.ko.html"' in en and 'href="report.html"' in ko
    assert "(report.ko.md)" in en_md and "(report.md)" in ko_md
    # the Korean charts are files of their own, PNG only, and the Korean report shows them
    assert sorted(p.name for p in (run_out / "figures" / "ko").iterdir()) == sorted(
        f"{n}.png" for n in report.CHARTS
    )
    for name in report.CHARTS:
        en_png = (run_out / "figures" / f"{name}.png").read_bytes()
        ko_png = (run_out / "figures" / "ko" / f"{name}.png").read_bytes()
        assert en_png != ko_png, name
        en_b64, ko_b64 = (base64.b64encode(b).decode("ascii") for b in (en_png, ko_png))
        assert en_b64 in en and ko_b64 not in en, name
        assert ko_b64 in ko and en_b64 not in ko, name
        assert f"](figures/ko/{name}.png)" in ko_md and f"](figures/{name}.png)" in en_md, name
        assert f"figures/ko/{name}.png." in ko and f"figures/{name}.svg" in en, name
    keys = json.loads((run_out / ".nightlights-outputs.json").read_text(encoding="utf-8"))["keys"]
    assert {f"figures/ko/{n}.png" for n in report.CHARTS} <= set(keys)
    assert keys["figures/ko/map.png"] != keys["figures/map.png"]


def test_english_and_korean_reports_with_a_comparison_have_the_same_sections(small):
    """The comparison section too (a planted county scenario: the small run's rasters cover too
    few counties for a comparison of its own)."""
    made = [*report.CHARTS, *comparison.CHARTS]
    pages = _pages(small[1], made)
    (en, en_md), (ko, ko_md) = pages["en"], pages["ko"]
    _same_sections(en, en_md, ko, ko_md, with_comparison=True)


def test_korean_comparison_says_what_the_english_says(small):
    """The parts the Korean section once lacked: the site placebo, the batch from before its
    groundbreaking, every batch's effect, the event study's ceremony month and reading, the
    brightest county and the Theil share; each in the same place as in English."""
    comp = small[1].comparison
    en = comparison.section_paragraphs(comp, "en")
    ko = comparison.section_paragraphs(comp, "ko")
    assert len(ko) == len(en) >= 8
    pairs = dict(zip(en, ko, strict=True))
    find = {
        "Applying the site rule": "지점과 같은 분류 규칙",
        "before its groundbreaking": "착공 전인",
        "Taking every batch": "모든 묶음을",
        "Around each inauguration": "준공식이 열린 달",
        "the Theil index": "타일 지수",
        "What this design cannot tell": "이 설계가 말해주지 못하는 것",
    }
    for english, korean in find.items():
        hits = [k for e, k in pairs.items() if english in e]
        assert len(hits) == 1 and korean in hits[0], english
    placebo = next(k for e, k in pairs.items() if "Applying the site rule" in e)
    assert (
        "주장의 20곳 중 5곳" in placebo
        and "백분위 91" in placebo
        and "5곳 이상일 확률: 0.09" in placebo
    )


def test_korean_report_has_no_english_sentence_of_ours(small):
    """Every English entry of the table that the report uses is absent from the Korean report
    (the claim's own words and names are quoted as given)."""
    results = small[1]
    ko = _pages(results, [*report.CHARTS, *comparison.CHARTS])["ko"][0]
    ko = re.sub(r"<style>.*?</style>", "", ko, flags=re.S)
    leaks = [
        k
        for k, t in words.table().items()
        if len(t["en"]) > 12 and t["en"] != t["ko"] and "{" not in t["en"] and t["en"] in ko
    ]
    assert leaks == [], leaks
    assert words.say("did_limits", "ko") in ko and words.say("did_limits", "en") not in ko


# --------------------------------------------------------------------------- charts in Korean


@pytest.fixture(scope="module")
def korean_column(tmp_path_factory, small):
    """The site charts in Korean at one column (89 mm), as SVG (text stays text)."""
    out = tmp_path_factory.mktemp("ko89") / "out"
    # their words are read, not their pixels: the maps' images at screen resolution
    publish(small[0], out, Style(lang="ko", width_mm=89, formats=("svg",), dpi=100))
    return out


def _svg_text(path: Path) -> str:
    return " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text(encoding="utf-8")))


def test_korean_credit_line_and_robustness_rows(korean_column):
    svg = _svg_text(korean_column / "figures" / "ko" / "robustness.svg")
    assert "자료: 합성 데모 래스터(" in svg and "처리: nightlights" in svg
    assert "화소 규칙 = 정확한 면적" in svg and "임계값 = 0.1" in svg and "반지름 (m) = 2000" in svg
    for english in ("pixel rule", "threshold =", "Processing", "Data:", "imitating", "statistic"):
        assert english not in svg, english


ALLOWED_LATIN = {
    # product and software names, units and file names: names, not English sentences
    "EOG",
    "VIIRS",
    "DNB",
    "VNL",
    "vcmslcfg",
    "nightlights",
    "sr",
    "nW",
    "cm",
    "ln",
    "Test",  # the test sites' province
}


def test_no_english_word_in_korean_charts(korean_column):
    assert not (korean_column / "figures" / "robustness.svg").exists()  # Korean: figures/ko/ only
    for svg in sorted((korean_column / "figures" / "ko").glob("*.svg")):
        text = _svg_text(svg)
        latin = set(re.findall(r"[A-Za-z]{2,}", text)) - ALLOWED_LATIN
        names = {"Alpha", "Bravo", "Charlie", "Delta", "Echo"}  # site names the map may number
        assert latin - names == set(), (svg.name, sorted(latin - names))


# --------------------------------------------------------------------------- both reports side by side


@pytest.mark.slow
def test_figures_in_korean_leaves_the_english_charts_and_report_and_back(run_out, capsys):
    from pipeline.cli import main

    def files(folder: Path, *names: str) -> dict[Path, tuple[bytes, int]]:
        paths = [*folder.glob("*.*"), *(run_out / n for n in names)]
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}

    english = files(run_out / "figures", "report.html", "report.md")
    assert len(english) == 3 * len(report.CHARTS) + 2
    data = ["--data-dir", str(run_out.parent / "data")]
    assert (
        main(["figures", "--out", str(run_out), "-q", "--format", "png,svg", "--lang", "ko", *data])
        == 0
    )
    said = capsys.readouterr().out
    assert "in figures/ko/, report.ko.html, report.ko.md," in said
    assert files(run_out / "figures", "report.html", "report.md") == english  # not even touched
    assert "밝아짐" in _svg_text(run_out / "figures" / "ko" / "verdict.svg")
    ko_page = (run_out / "report.ko.html").read_text(encoding="utf-8")
    assert '<html lang="ko">' in ko_page and 'href="report.html"' in ko_page
    assert "figures/ko/verdict.png, figures/ko/verdict.svg." in ko_page
    listed = json.loads((run_out / ".nightlights-outputs.json").read_text(encoding="utf-8"))
    assert {"report.ko.html", "report.ko.md", "report.html", "figures/verdict.pdf"} <= set(
        listed["files"]
    )
    assert "figures/ko/verdict.svg" in listed["keys"]
    # figures in English again: the Korean report and charts stay as they are
    korean = files(run_out / "figures" / "ko", "report.ko.html", "report.ko.md")
    assert main(["figures", "--out", str(run_out), "-q", "--format", "png", *data]) == 0
    assert files(run_out / "figures" / "ko", "report.ko.html", "report.ko.md") == korean
    assert not (run_out / "figures" / "verdict.svg").exists()  # English: only what was asked
    assert '<html lang="en">' in (run_out / "report.html").read_text(encoding="utf-8")
    listed = (run_out / ".nightlights-outputs.json").read_text(encoding="utf-8")
    assert "report.ko.html" in listed and "figures/ko/verdict.svg" in listed
