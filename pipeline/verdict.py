"""Verdict: class counts set against the published claim.

Inputs
    The per-site change table, the site table, the parameters, and (optionally) the
    robustness and calibration summaries.
Outputs
    The ``verdict.json`` mapping.

A claim (:class:`pipeline.claims.Claim`, by default the JoongAng one) concerns the sites
of one batch, so agreement is judged on the sites of that batch only, whatever other
sites the run includes, and only when the run compares the claim's two years.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.change import count_classes
from pipeline.claims import DEFAULT_CLAIM, Claim

# The default claim as a mapping, for modules that still read ``CLAIM[...]`` (report, figures):
# prefer passing a :class:`Claim`.
CLAIM: dict[str, Any] = DEFAULT_CLAIM.to_dict()

SYNTHETIC_NOTE = ("SYNTHETIC DEMO DATA: these numbers come from generated rasters, not satellite "
                  "observations. They are no evidence about North Korea.")


def claim_sites(changes: pd.DataFrame, sites: pd.DataFrame, claim: Claim = DEFAULT_CLAIM) -> pd.DataFrame:
    """The rows of ``changes`` for the claim's batch."""
    batch = pd.to_numeric(sites.set_index("site_id")["batch"], errors="coerce")
    return changes[changes["site_id"].map(batch) == claim.batch]


def judge_claim(classes: pd.Series, claim: Claim = DEFAULT_CLAIM,
                years: tuple[int, int] | None = None) -> dict[str, Any]:
    """Compare class counts of the claim's sites with the claim's k brightened of n.

    Judged only when the run has all n sites of the batch, each classified, and (when
    ``years`` is given) compares the claim's own two years.
    """
    counts = count_classes(classes)
    similar_or_dimmer = counts["unchanged"] + counts["dimmed"]
    n = len(classes)
    b = claim.batch
    agrees = False
    if years is not None and tuple(years) != claim.years:
        status = (f"not judged: the claim compares {claim.baseline_year} with {claim.target_year}, this run "
                  f"{years[0]} with {years[1]}")
    elif n == 0:
        status = f"not judged: no site of batch {b} in this run, the claim is about {claim.n_sites} of them"
    elif n != claim.n_sites:
        status = f"not judged: {n} sites of batch {b} in this run, the claim has {claim.n_sites}"
    elif counts["insufficient_data"]:
        status = (f"undetermined: {counts['insufficient_data']} of {n} sites lack data; "
                  f"{counts['brightened']} brightened among the rest")
    else:
        agrees = counts["brightened"] == claim.brightened and similar_or_dimmer == claim.similar_or_dimmer
        status = "agrees" if agrees else (
            f"disagrees: {counts['brightened']} brightened, {similar_or_dimmer} similar or dimmer")
    return {"counts": counts, "similar_or_dimmer": similar_or_dimmer, "n_sites": n,
            "agrees_with_claim": bool(agrees), "status": status}


def make_verdict(changes: pd.DataFrame, sites: pd.DataFrame, params: dict[str, Any], *, data_kind: str,
                 source: str, inputs: list[dict[str, Any]], robustness: dict[str, Any] | None = None,
                 calibration: dict[str, Any] | None = None, version: str = "",
                 claim: Claim = DEFAULT_CLAIM) -> dict[str, Any]:
    """The verdict mapping written to ``verdict.json``."""
    claim_rows = claim_sites(changes, sites, claim)
    years = (int(params["baseline_year"]), int(params["target_year"]))
    judged = judge_claim(claim_rows["class"], claim, years)
    all_counts = count_classes(changes["class"])
    verdict: dict[str, Any] = {
        "data_kind": data_kind,
        "source": source,
        "baseline_year": params["baseline_year"],
        "target_year": params["target_year"],
        "n_sites": len(changes),
        "counts": all_counts,
        "claim": claim.to_dict(),
        "claim_text": claim.text,
        "claim_sites": judged,
        "agrees_with_claim": judged["agrees_with_claim"],
        "claim_status": judged["status"],
    }
    if "class_ring_adjusted" in changes:
        verdict["counts_ring_adjusted"] = count_classes(changes["class_ring_adjusted"])
        verdict["claim_sites_ring_adjusted"] = judge_claim(claim_rows["class_ring_adjusted"], claim, years)["counts"]
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
    claim = verdict["claim"]
    prefix = "[SYNTHETIC DEMO] " if verdict["data_kind"] == "synthetic" else ""
    return (f"{prefix}{verdict['baseline_year']}->{verdict['target_year']}, batch-{claim['batch']} sites: "
            f"{c['brightened']} brightened, {c['unchanged']} unchanged, {c['dimmed']} dimmed, "
            f"{c['insufficient_data']} insufficient data. Claim ({claim['brightened']} brightened, "
            f"{claim['similar_or_dimmer']} similar or dimmer): {verdict['claim_status']}.")
