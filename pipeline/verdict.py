"""Verdict: class counts set against the published claim.

Inputs
    The per-site change table, the site table, the parameters, and (optionally) the
    robustness and calibration summaries.
Outputs
    The ``verdict.json`` mapping, with ``batches``: which batches the target year can
    speak for (:func:`batch_observability`).

A claim (:class:`pipeline.claims.Claim`, by default the JoongAng one) concerns the sites
of one batch, so agreement is judged on the sites of that batch only, whatever other
sites the run includes, and only when the run compares the claim's two years.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.change import count_classes
from pipeline.claims import DEFAULT_CLAIM, Claim

SYNTHETIC_NOTE = ("SYNTHETIC DEMO DATA: these numbers come from generated rasters, not satellite "
                  "observations. They are no evidence about North Korea.")


MONTHS = 12


def _date_range(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """'15–29 Dec 2025', '20 Dec 2024 – 7 Feb 2025', '3 Mar 2025'."""
    if first == last:
        return f"{first.day} {first:%b %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"


def batch_observability(sites: pd.DataFrame, target_year: int, min_months: int = 1) -> list[dict[str, Any]]:
    """Per batch: can the target year's data show its sites running?

    A calendar month of the target year speaks for a batch only when it begins after the
    batch's last known inauguration (a factory opened on 20 December is not running in
    December's composite, let alone the year's). ``observable`` when all twelve months do,
    ``partly observable`` when at least ``min_months`` do (enough for a change), else
    ``not yet observable``; a batch without any inauguration date is ``unknown`` (or
    ``not yet observable`` when its groundbreaking is after the target year).
    """
    out = []
    batch = pd.to_numeric(sites["batch"], errors="coerce")
    for b in sorted(batch.dropna().unique()):
        rows = sites[batch == b]
        n = len(rows)
        inaug = pd.to_datetime(rows.get("inauguration", pd.Series(index=rows.index, dtype=object)),
                               errors="coerce").dropna()
        ground = pd.to_datetime(rows.get("groundbreaking", pd.Series(index=rows.index, dtype=object)),
                                errors="coerce").dropna()
        label = f"Batch {int(b)} ({n} site{'s' if n != 1 else ''}"
        entry: dict[str, Any] = {"batch": int(b), "n_sites": n, "n_inauguration_known": len(inaug),
                                 "inauguration_first": None, "inauguration_last": None, "target_year": target_year}
        if len(inaug):
            first, last = inaug.min(), inaug.max()
            if last.year < target_year:
                months = MONTHS
            elif last.year == target_year:
                months = MONTHS - last.month
            else:
                months = 0
            status = ("observable" if months == MONTHS else "partly observable" if months >= min_months
                      else "not yet observable")
            unknown = f"; {n - len(inaug)} without a date" if len(inaug) < n else ""
            label += f", inaugurated {_date_range(first, last)}{unknown})"
            why = {"observable": f"all {MONTHS} months of {target_year} fall after the last inauguration, so "
                                 f"{target_year} data can show these factories running all year",
                   "partly observable": f"only {months} of {MONTHS} months of {target_year} fall after the last "
                                        "inauguration, so the year mixes months before and after opening",
                   "not yet observable": f"{months} of {MONTHS} months of {target_year} fall after the last "
                                         f"inauguration, so {target_year} data cannot show these factories "
                                         "running"}[status]
            entry |= {"inauguration_first": first.date().isoformat(), "inauguration_last": last.date().isoformat()}
        elif len(ground) and ground.min().year > target_year:
            months, status = 0, "not yet observable"
            label += f", groundbreaking from {ground.min():%b %Y})"
            why = f"building began after {target_year}, so {target_year} data cannot show these factories running"
        else:
            months, status = None, "unknown"
            label += ", no inauguration date)"
            why = f"without inauguration dates, whether {target_year} data show these factories running is unknown"
        entry |= {"observable_months": months, "status": status,
                  "note": f"{label}: {status} in {target_year}; {why}."}
        out.append(entry)
    return out


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
        "batches": batch_observability(sites, int(params["target_year"]), int(params.get("min_matched_months", 1))),
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
