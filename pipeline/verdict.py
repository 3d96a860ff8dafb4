"""Verdict: class counts set against the published claim.

Inputs
    The per-site change table, the site table, the parameters, and (optionally) the
    robustness and calibration summaries.
Outputs
    The ``verdict.json`` mapping.

The claim concerns the 20 sites designated in 2024, so agreement is judged on the
sites of batch 2024 only, whatever other sites the run includes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.change import count_classes

CLAIM: dict[str, Any] = {
    "brightened": 5,
    "similar_or_dimmer": 15,
    "n_sites": 20,
    "batch": 2024,
    "source": "JoongAng Ilbo, 3 Feb 2026, cited by the EAI commentary of 20 Feb 2026",
    "text": "Of the 20 sites designated in 2024, only five showed increased night-time luminosity "
            "in 2025; the other fifteen were similar or dimmer than in 2024.",
}

SYNTHETIC_NOTE = ("SYNTHETIC DEMO DATA: these numbers come from generated rasters, not satellite "
                  "observations. They are no evidence about North Korea.")


def claim_sites(changes: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``changes`` for the claim's batch."""
    batch = sites.set_index("site_id")["batch"]
    return changes[changes["site_id"].map(batch) == CLAIM["batch"]]


def judge_claim(classes: pd.Series) -> dict[str, Any]:
    """Compare class counts of the claim's sites with the claim (5 up, 15 similar or dimmer)."""
    counts = count_classes(classes)
    similar_or_dimmer = counts["unchanged"] + counts["dimmed"]
    n = len(classes)
    if n != CLAIM["n_sites"]:
        status, agrees = f"not judged: {n} sites of batch {CLAIM['batch']} in this run, the claim has 20", False
    elif counts["insufficient_data"]:
        agrees = False
        status = (f"undetermined: {counts['insufficient_data']} of 20 sites lack data; "
                  f"{counts['brightened']} brightened among the rest")
    else:
        agrees = counts["brightened"] == CLAIM["brightened"] and similar_or_dimmer == CLAIM["similar_or_dimmer"]
        status = "agrees" if agrees else (
            f"disagrees: {counts['brightened']} brightened, {similar_or_dimmer} similar or dimmer")
    return {"counts": counts, "similar_or_dimmer": similar_or_dimmer, "n_sites": n,
            "agrees_with_claim": bool(agrees), "status": status}


def make_verdict(changes: pd.DataFrame, sites: pd.DataFrame, params: dict[str, Any], *, data_kind: str,
                 source: str, inputs: list[dict[str, Any]], robustness: dict[str, Any] | None = None,
                 calibration: dict[str, Any] | None = None, version: str = "") -> dict[str, Any]:
    """The verdict mapping written to ``verdict.json``."""
    claim_rows = claim_sites(changes, sites)
    judged = judge_claim(claim_rows["class"])
    all_counts = count_classes(changes["class"])
    verdict: dict[str, Any] = {
        "data_kind": data_kind,
        "source": source,
        "baseline_year": params["baseline_year"],
        "target_year": params["target_year"],
        "n_sites": len(changes),
        "counts": all_counts,
        "claim": {k: CLAIM[k] for k in ("brightened", "similar_or_dimmer", "n_sites", "source")},
        "claim_text": CLAIM["text"],
        "claim_sites": judged,
        "agrees_with_claim": judged["agrees_with_claim"],
        "claim_status": judged["status"],
    }
    if "class_ring_adjusted" in changes:
        verdict["counts_ring_adjusted"] = count_classes(changes["class_ring_adjusted"])
        verdict["claim_sites_ring_adjusted"] = judge_claim(claim_rows["class_ring_adjusted"])["counts"]
    if robustness is not None:
        verdict["robustness"] = robustness
    if calibration is not None:
        verdict["calibration"] = calibration
    verdict["parameters"] = params
    verdict["inputs"] = inputs
    verdict["nightlights_version"] = version
    if data_kind == "synthetic":
        verdict = {"WARNING": SYNTHETIC_NOTE, **verdict}
    return verdict


def headline(verdict: dict[str, Any]) -> str:
    """One sentence for the terminal and the report."""
    c = verdict["claim_sites"]["counts"]
    prefix = "[SYNTHETIC DEMO] " if verdict["data_kind"] == "synthetic" else ""
    return (f"{prefix}{verdict['baseline_year']}->{verdict['target_year']}, batch-2024 sites: "
            f"{c['brightened']} brightened, {c['unchanged']} unchanged, {c['dimmed']} dimmed, "
            f"{c['insufficient_data']} insufficient data. Claim (5 brightened, 15 similar or dimmer): "
            f"{verdict['claim_status']}.")
