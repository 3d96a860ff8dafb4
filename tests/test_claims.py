"""Claims as data: the shipped default, strict file checks, and judging a claim about any batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.analysis import analyse
from pipeline.config import Params
from pipeline.errors import ClaimError, NightlightsError
from pipeline.judge.sensitivity import robustness_summary
from pipeline.judge.verdict import headline, judge_claim, make_verdict
from pipeline.read.claims import (
    DEFAULT_CLAIM,
    Claim,
    check_claim_sites,
    default_claim,
    default_claim_path,
    load_claim,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "bad_inputs"
CLAIM_CASES = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))["claims"]
PARAMS = Params().to_dict()


def claim_about(batch: int, n: int, k: int, years: tuple[int, int] = (2024, 2025)) -> Claim:
    return Claim(
        text=f"Of the {n} sites of {batch}, {k} brightened.",
        source="test",
        batch=batch,
        baseline_year=years[0],
        target_year=years[1],
        n_sites=n,
        brightened=k,
    )


def tables(classes_by_batch: dict[int, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A change table and a site table with planted classes per batch."""
    rows = [
        (f"b{batch}-{i:02d}", batch, cls)
        for batch, classes in classes_by_batch.items()
        for i, cls in enumerate(classes)
    ]
    sites = pd.DataFrame(
        {"site_id": [r[0] for r in rows], "batch": pd.Series([r[1] for r in rows], dtype=object)}
    )
    changes = pd.DataFrame({"site_id": [r[0] for r in rows], "class": [r[2] for r in rows]})
    return changes, sites


def verdict_for(changes: pd.DataFrame, sites: pd.DataFrame, claim: Claim, **params: int) -> dict:
    return make_verdict(
        changes,
        sites,
        {**PARAMS, **params},
        data_kind="test",
        source="local",
        inputs=[],
        claim=claim,
    )


# --------------------------------------------------------------------------- the default claim


def test_shipped_file_is_the_default_claim():
    path = default_claim_path()
    assert (
        path == REPO / "claims" / "joongang-2026-02-03.yaml"
    )  # found next to the package from a scratch cwd
    assert load_claim(path) == DEFAULT_CLAIM == default_claim()
    assert (DEFAULT_CLAIM.batch, DEFAULT_CLAIM.years, DEFAULT_CLAIM.n_sites) == (
        "2024",
        (2024, 2025),
        20,
    )
    assert (DEFAULT_CLAIM.brightened, DEFAULT_CLAIM.similar_or_dimmer) == (5, 15)


def test_a_claims_folder_in_the_current_folder_comes_first(tmp_path, monkeypatch):
    (tmp_path / "claims").mkdir()
    mine = tmp_path / "claims" / "joongang-2026-02-03.yaml"
    mine.write_text(
        yaml.safe_dump({**DEFAULT_CLAIM.to_dict(), "notes": "my copy"}), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert default_claim_path() == mine
    assert default_claim().notes == "my copy"


def test_similar_or_dimmer_defaults_to_the_rest():
    claim = claim_about(2025, 13, 4)
    assert claim.similar_or_dimmer == 9
    assert claim.summary() == "4 of 13 brightened, 9 similar or dimmer"


def test_claim_built_in_code_is_checked_too():
    with pytest.raises(ClaimError, match="brightened=7 is more than n_sites=6"):
        claim_about(2025, 6, 7)
    assert issubclass(ClaimError, NightlightsError)


# --------------------------------------------------------------------------- bad claim files


def test_corpus_lists_every_claim_file():
    listed = {case["file"] for case in CLAIM_CASES.values()}
    assert listed - {"no_such_claim.yaml"} == {p.name for p in (CORPUS / "claims").iterdir()}


@pytest.mark.parametrize("case", list(CLAIM_CASES))
def test_bad_claim_file_gives_its_one_line(case: str):
    path = CORPUS / "claims" / CLAIM_CASES[case]["file"]
    with pytest.raises(ClaimError) as caught:
        load_claim(path)
    message = str(caught.value)
    assert message == CLAIM_CASES[case]["line"].replace("{file}", str(path))
    assert "\n" not in message and "Traceback" not in message


def test_folder_is_not_a_claim_file(tmp_path):
    with pytest.raises(ClaimError, match="is a folder"):
        load_claim(tmp_path)


def test_optional_fields_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "text: 'Two of six brightened.'\nsource: Example Daily\nbatch: 2025\nbaseline_year: 2025\n"
        "target_year: 2026\nn_sites: 6\nbrightened: 2\ndate: 2027-03-01\nurl: https://example.org/a\n",
        encoding="utf-8",
    )
    claim = load_claim(path)
    assert claim == Claim(
        text="Two of six brightened.",
        source="Example Daily",
        batch=2025,
        baseline_year=2025,
        target_year=2026,
        n_sites=6,
        brightened=2,
        similar_or_dimmer=4,
        url="https://example.org/a",
        date="2027-03-01",
    )
    assert set(claim.to_dict()) == {f.name for f in dataclasses.fields(Claim)}


def test_the_korean_text_is_a_translation_unless_said_otherwise(tmp_path):
    base = (
        "text: 'Two of six brightened.'\nsource: Example Daily\nbatch: 2025\nbaseline_year: 2025\n"
        "target_year: 2026\nn_sites: 6\nbrightened: 2\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(base + "text_ko: '여섯 곳 중 두 곳이\n  밝아졌다.'\n", encoding="utf-8")
    claim = load_claim(path)
    assert (claim.text_ko, claim.text_ko_is) == ("여섯 곳 중 두 곳이 밝아졌다.", None)
    path.write_text(base + "text_ko: 여섯 곳 중 두 곳\ntext_ko_is: quotation\n", encoding="utf-8")
    assert load_claim(path).text_ko_is == "quotation"
    for extra, line in (
        (
            "text_ko: x\ntext_ko_is: quote\n",
            "text_ko_is must be translation or quotation, found 'quote'",
        ),
        ("text_ko_is: translation\n", "text_ko_is without text_ko; add text_ko or remove it"),
        ("text_ko: 3\n", "text_ko must be non-empty text (quote it), found number 3"),
    ):
        path.write_text(base + extra, encoding="utf-8")
        with pytest.raises(ClaimError) as caught:
            load_claim(path)
        assert str(caught.value) == f"{path}: {line}"
    # the shipped claim's Korean is our translation of its English text, and says so
    assert DEFAULT_CLAIM.text_ko and DEFAULT_CLAIM.text_ko_is == "translation"


# --------------------------------------------------------------------------- claim and sites


def test_check_claim_sites_counts_the_batch():
    _, sites = tables({2024: ["unchanged"] * 20, 2025: ["unchanged"] * 6})
    assert check_claim_sites(claim_about(2025, 6, 2), sites, "c.yaml") is None
    with pytest.raises(ClaimError) as caught:
        check_claim_sites(claim_about(2025, 7, 2), sites, "c.yaml")
    assert str(caught.value) == (
        "c.yaml: n_sites=7, but the run has 6 site(s) of batch 2025; correct n_sites or "
        "pass the site files that hold the whole batch"
    )
    assert check_claim_sites(claim_about(2025, 7, 2), sites, "c.yaml", strict=False).startswith(
        "c.yaml: n_sites=7"
    )
    note = check_claim_sites(claim_about(2026, 13, 2), sites, "c.yaml")
    assert note == (
        "c.yaml: not judged: the claim is about batch 2026 and no site of that batch is in this run "
        "(the run's sites are of batch 2024, 2025); add its site file with --sites"
    )


# --------------------------------------------------------------------------- judging any batch


PLANTED = {
    2024: ["brightened"] * 2 + ["unchanged"] * 18,
    2025: ["brightened"] * 3 + ["unchanged", "dimmed", "dimmed"],
}


def test_claim_about_another_batch_that_holds():
    changes, sites = tables(PLANTED)
    v = verdict_for(changes, sites, claim_about(2025, 6, 3))
    assert v["agrees_with_claim"] is True and v["claim_status"] == "agrees"
    assert v["claim_sites"]["counts"]["brightened"] == 3 and v["claim_sites"]["n_sites"] == 6
    assert v["claim"]["batch"] == "2025" and v["claim"]["similar_or_dimmer"] == 3
    assert v["counts"]["brightened"] == 5  # all sites, both batches
    assert "batch 2025 sites: 3 brightened" in headline(
        v
    ) and "Claim (3 brightened, 3 similar or dimmer)" in headline(v)


def test_claim_about_another_batch_that_does_not_hold():
    changes, sites = tables(PLANTED)
    v = verdict_for(changes, sites, claim_about(2025, 6, 1))
    assert v["agrees_with_claim"] is False
    assert v["claim_status"] == "disagrees: 3 brightened, 3 similar or dimmer"
    # the same run judged on the default claim counts batch 2024 only: 2 brightened, not 5
    d = verdict_for(changes, sites, DEFAULT_CLAIM)
    assert d["claim_status"] == "disagrees: 2 brightened, 18 similar or dimmer"


def test_claim_without_its_batch_is_not_judged():
    changes, sites = tables({2024: PLANTED[2024]})
    v = verdict_for(changes, sites, claim_about(2026, 13, 3))
    assert v["agrees_with_claim"] is False and v["claim_sites"]["n_sites"] == 0
    assert (
        v["claim_status"]
        == "not judged: no site of batch 2026 in this run, the claim is about 13 of them"
    )


def test_claim_about_other_years_is_not_judged():
    changes, sites = tables(PLANTED)
    v = verdict_for(changes, sites, claim_about(2025, 6, 3, years=(2025, 2026)))
    assert (
        v["claim_status"]
        == "not judged: the claim compares 2025 with 2026, this run 2024 with 2025"
    )
    assert v["agrees_with_claim"] is False
    assert (
        verdict_for(
            changes,
            sites,
            claim_about(2025, 6, 3, years=(2025, 2026)),
            baseline_year=2025,
            target_year=2026,
        )["agrees_with_claim"]
        is True
    )


def test_missing_data_leaves_the_claim_undetermined():
    classes = pd.Series(["brightened"] * 3 + ["unchanged", "dimmed", "insufficient_data"])
    judged = judge_claim(classes, claim_about(2025, 6, 3))
    assert judged["status"] == "undetermined: 1 of 6 sites lack data; 3 brightened among the rest"
    assert judged["agrees_with_claim"] is False


def test_robustness_shares_use_the_claims_k_and_n():
    sens = pd.DataFrame(
        {"brightened": [1, 2, 2, 3, 2], "n_sites": [6] * 5, "insufficient_data": [0, 0, 0, 0, 1]}
    )
    r = robustness_summary(sens, claim=claim_about(2025, 6, 2))
    assert r["share_exactly_2_of_6"] == r["share_exactly_k_of_n"] == pytest.approx(2 / 5)
    assert r["share_at_most_2"] == r["share_at_most_k"] == pytest.approx(3 / 5)
    assert (r["claim_k"], r["claim_n"]) == (2, 6) and r["scope"] == "the claim's batch-2025 sites"
    assert "share_exactly_5_of_20" not in r
    # with the default claim the key the README and report use is there, equal to the generic one
    d = robustness_summary(sens.assign(n_sites=20))
    assert d["share_exactly_5_of_20"] == d["share_exactly_k_of_n"] == 0.0


def test_pipeline_judges_a_planted_batch(tmp_path):
    """End to end on synthetic rasters: a claim about batch 2025 judged from the planted truth."""
    from tests.scenarios import planted

    sites, rasters, truth, _ = planted(tmp_path, n_sites=10)
    later = ["s04", "s05", "s06", "s07", "s08", "s09"]
    sites.loc[sites["site_id"].isin(later), "batch"] = 2025
    want = truth.set_index("site_id")["planted_class"][later]
    k = int((want == "brightened").sum())
    assert 0 < k < len(later)  # the seed plants a mix, so "k of 6" can hold or fail
    results = {}
    for kk in (k, k + 1):
        r = analyse(
            sites,
            rasters,
            Params(),
            source="local",
            data_kind="synthetic",
            sensitivity=False,
            progress=False,
            claim=claim_about(2025, len(later), kk),
        )
        results[kk] = r.verdict
    assert (r.changes.set_index("site_id")["class"][later] == want).all()
    assert results[k]["agrees_with_claim"] is True
    assert results[k + 1]["agrees_with_claim"] is False
    assert results[k + 1]["claim_status"].startswith(f"disagrees: {k} brightened")


# --------------------------------------------------------------------------- which batches a year can speak for


def test_a_batch_inaugurated_in_december_is_not_yet_observable_that_year():
    from pipeline.judge.verdict import batch_observability

    sites = pd.DataFrame(
        {
            "site_id": ["a1", "a2", "b1", "b2", "c1", "d1"],
            "batch": [2024, 2024, 2025, 2025, 2026, 2027],
            "inauguration": ["2024-12-20", "2025-02-07", "2025-12-15", "2025-12-29", None, None],
            "groundbreaking": [None, None, "2025-03-01", None, "2026-01-10", None],
        }
    )
    by = {int(b["batch"]): b for b in batch_observability(sites, 2025, min_months=3)}
    assert by[2025]["status"] == "not yet observable" and by[2025]["observable_months"] == 0
    assert (by[2025]["inauguration_first"], by[2025]["inauguration_last"]) == (
        "2025-12-15",
        "2025-12-29",
    )
    assert by[2025]["note"] == (
        "Batch 2025 (2 sites, inaugurated 15–29 Dec 2025): not yet observable in 2025; 0 of "
        "12 months of 2025 fall after the last inauguration (29 Dec 2025), so 2025 data "
        "cannot show these "
        "factories running."
    )
    # opened by 7 Feb: March to December (10 months) show them running
    assert (by[2024]["status"], by[2024]["observable_months"]) == ("partly observable", 10)
    assert "20 Dec 2024 – 7 Feb 2025" in by[2024]["note"]
    assert (
        by[2026]["status"] == "not yet observable"
        and "groundbreaking from Jan 2026" in by[2026]["note"]
    )
    assert by[2027]["status"] == "unknown" and by[2027]["observable_months"] is None
    # a year later, the December batch is observable all year
    later = {int(b["batch"]): b for b in batch_observability(sites, 2026)}
    assert (later[2025]["status"], later[2025]["observable_months"]) == ("observable", 12)


def test_verdict_lists_every_batch_and_the_report_says_so():
    from pipeline.publish.report import observability_sentences

    changes, sites = tables({2024: ["brightened"] * 2, 2025: ["unchanged"] * 3})
    sites["inauguration"] = ["2024-06-01", "2024-07-01", "2025-12-15", "2025-12-20", "2025-12-29"]
    v = verdict_for(changes, sites, claim_about(2025, 3, 0))
    assert [b["batch"] for b in v["batches"]] == ["2024", "2025"]
    lines = observability_sentences(v)
    assert lines[0].startswith(
        "Batch 2024 (2 sites, inaugurated 1 Jun 2024 – 1 Jul 2024): observable in 2025"
    )
    assert (
        "Batch 2025 (3 sites, inaugurated 15–29 Dec 2025): not yet observable in 2025" in lines[1]
    )
