"""Verdict: counts of the claim's batch against the claim, the headline, the synthetic label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from pipeline.judge.verdict import SYNTHETIC_NOTE, headline, make_verdict
from pipeline.read.claims import Claim
from tests.memraster import mem_month

CLAIM = Claim(
    text="k of n",
    source="test",
    batch=2024,
    baseline_year=2024,
    target_year=2025,
    n_sites=4,
    brightened=1,
)
PARAMS = {"baseline_year": 2024, "target_year": 2025}


def _tables(classes: dict[str, str], batches: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = list(classes)
    changes = pd.DataFrame(
        {
            "site_id": ids,
            "class": [classes[i] for i in ids],
            "class_ring_adjusted": ["unchanged"] * len(ids),
        }
    )
    sites = pd.DataFrame(
        {"site_id": ids, "batch": [batches[i] for i in ids], "geometry": [Point(0, 0)] * len(ids)}
    )
    return changes, sites


def _verdict(classes, batches, data_kind="real", claim=CLAIM):
    changes, sites = _tables(classes, batches)
    return make_verdict(
        changes, sites, PARAMS, data_kind=data_kind, source="local", inputs=[], claim=claim
    )


def test_counts_only_the_claims_batch():
    classes = {
        "a": "brightened",
        "b": "unchanged",
        "c": "dimmed",
        "d": "unchanged",
        "x": "brightened",
        "y": "brightened",
    }  # x, y: another batch, must not count
    v = _verdict(classes, {"a": 2024, "b": 2024, "c": 2024, "d": 2024, "x": 2025, "y": 2025})
    assert v["claim_sites"]["counts"] == {
        "brightened": 1,
        "unchanged": 2,
        "dimmed": 1,
        "insufficient_data": 0,
    }
    assert v["counts"]["brightened"] == 3  # all sites
    assert v["agrees_with_claim"] is True and v["claim_status"] == "agrees"
    assert v["claim"]["batch"] == "2024" and v["claim"]["n_sites"] == 4


def test_disagreement_names_the_counts():
    v = _verdict(
        {"a": "brightened", "b": "brightened", "c": "dimmed", "d": "unchanged"},
        dict.fromkeys("abcd", 2024),
    )
    assert v["agrees_with_claim"] is False
    assert v["claim_status"] == "disagrees: 2 brightened, 2 similar or dimmer"


def test_missing_site_data_is_undetermined_not_agreement():
    v = _verdict(
        {"a": "brightened", "b": "insufficient_data", "c": "dimmed", "d": "unchanged"},
        dict.fromkeys("abcd", 2024),
    )
    assert v["agrees_with_claim"] is False and v["claim_status"].startswith("undetermined: 1 of 4")


def test_synthetic_runs_carry_the_warning_first_and_in_the_headline():
    v = _verdict(
        {"a": "brightened", "b": "unchanged", "c": "dimmed", "d": "unchanged"},
        dict.fromkeys("abcd", 2024),
        data_kind="synthetic",
    )
    assert next(iter(v)) == "WARNING" and v["WARNING"] == SYNTHETIC_NOTE
    line = headline(v)
    assert line.startswith(
        "[SYNTHETIC DEMO DATA] 2024->2025, batch 2024 sites: 1 brightened, 2 unchanged, 1 dimmed"
    )
    assert "Claim (1 brightened, 3 similar or dimmer): agrees." in line
    assert "SYNTHETIC" not in headline(_verdict({"a": "dimmed"}, {"a": 2024}))


def test_ring_adjusted_counts_beside_the_headline():
    v = _verdict(
        {"a": "brightened", "b": "unchanged", "c": "dimmed", "d": "unchanged"},
        dict.fromkeys("abcd", 2024),
    )
    assert v["claim_sites_ring_adjusted"] == {
        "brightened": 0,
        "unchanged": 4,
        "dimmed": 0,
        "insufficient_data": 0,
    }


@pytest.mark.parametrize("fill", [np.nan, -1.0])
def test_memory_rasters_read_like_files(fill):
    """The in-memory helper goes through the real reading path: nodata and cf_cvg rules apply."""
    from rasterio.windows import Window

    from pipeline.read.sources import read_window, valid_mask

    rad = np.array([[1.0, -0.5], [fill, 4.0]])
    cvg = np.array([[5, 5], [5, 0]])
    r = mem_month("2024-01", rad, cvg, 125.0, 39.0, nodata=None if np.isnan(fill) else fill)
    values, aux = read_window(r, Window(0, 0, 2, 2))
    assert values.tolist() == [[1.0, 0.0], [0.0, 4.0]]  # negative clipped, nodata/NaN -> 0
    assert valid_mask(aux, r.aux_kind, 3, (0,)).tolist() == [[True, True], [False, False]]


def test_the_verdict_is_typed_frozen_and_round_trips_through_its_json():
    import dataclasses
    import json

    from pipeline.judge.verdict import Verdict

    v = _verdict({"a": "brightened", "b": "dimmed"}, {"a": 2024, "b": 2024}, data_kind="synthetic")
    assert isinstance(v, Verdict) and v.claim_sites["counts"]["brightened"] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.data_kind = "real"  # type: ignore[misc]
    doc = json.loads(json.dumps(v.to_dict()))
    assert list(doc)[:2] == ["WARNING", "data_kind"] and doc["WARNING"] == SYNTHETIC_NOTE
    assert doc["claim_caveat"] is None and "robustness" not in doc  # null kept, absent left out
    back = Verdict.from_dict(doc)
    assert back == v and back.to_dict() == v.to_dict()
    assert dict(back) == doc  # the mapping a notebook reads is verdict.json
    newer = Verdict.from_dict({**doc, "written_by_a_newer_version": [1, 2]})
    assert newer.to_dict()["written_by_a_newer_version"] == [1, 2]  # kept, not dropped
