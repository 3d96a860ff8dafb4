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
from pipeline.sites import batch_labels, batch_order, in_batch, site_date

SYNTHETIC_NOTE = (
    "SYNTHETIC DEMO DATA: these numbers come from generated rasters, not satellite "
    "observations. They are no evidence about North Korea."
)


MONTHS = 12


def _date_range(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """'15–29 Dec 2025', '20 Dec 2024 – 7 Feb 2025', '3 Mar 2025'."""
    if first == last:
        return f"{first.day} {first:%b %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"


def _dates(rows: pd.DataFrame, key: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    return [d for v in rows.get(key, []) if (d := site_date(v)) is not None]


def batch_groups(sites: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """The sites by batch label in batch order, sites without a batch last (label None)."""
    labels = batch_labels(sites)
    groups: list[tuple[str | None, pd.DataFrame]] = [
        (b, sites[(labels == b).to_numpy()]) for b in batch_order(labels)
    ]
    if labels.isna().any():
        groups.append((None, sites[labels.isna().to_numpy()]))
    return groups


def batch_observability(
    sites: pd.DataFrame, target_year: int, min_months: int = 1
) -> list[dict[str, Any]]:
    """Per batch (and for the sites without one): can the target year's data show its sites running?

    A calendar month of the target year speaks for a batch only when it begins after the
    batch's last inauguration (a factory opened on 20 December is not running in December's
    composite, let alone the year's); a month-only date counts as the month's last day, and an
    ``inauguration_by`` date (opened by then, day unknown) as that day. ``observable`` when all
    twelve months do, ``partly observable`` when at least ``min_months`` do, else ``not yet
    observable``; a batch without any date is ``unknown`` (or ``not yet observable`` when its
    groundbreaking is after the target year). Dates are read by :func:`pipeline.sites.site_date`,
    the parser every count uses.
    """
    out = []
    for b, rows in batch_groups(sites):
        n = len(rows)
        dated = _dates(rows, "inauguration")
        by = [
            d
            for v, i in zip(
                rows.get("inauguration_by", pd.Series(index=rows.index, dtype=object)),
                rows.get("inauguration", pd.Series(index=rows.index, dtype=object)),
                strict=True,
            )
            if site_date(i) is None and (d := site_date(v)) is not None
        ]
        ground = _dates(rows, "groundbreaking")
        name = f"Batch {b}" if b is not None else "Sites without a batch"
        label = f"{name} ({n} site{'s' if n != 1 else ''}"
        entry: dict[str, Any] = {
            "batch": b,
            "n_sites": n,
            "n_inauguration_known": len(dated),
            "n_inauguration_by": len(by),
            "n_inauguration_unknown": n - len(dated) - len(by),
            "inauguration_first": None,
            "inauguration_last": None,
            "target_year": target_year,
        }
        if dated or by:
            first = min(d[0] for d in dated) if dated else None
            last = max(d[1] for d in dated + by)
            if last.year < target_year:
                months = MONTHS
            elif last.year == target_year:
                months = MONTHS - last.month
            else:
                months = 0
            status = (
                "observable"
                if months == MONTHS
                else "partly observable"
                if months >= min_months
                else "not yet observable"
            )
            extra = []
            if by:
                extra.append(
                    f"{len(by)} only known to be by {_date_range(*(2 * [max(d[1] for d in by)]))}"
                )
            if n - len(dated) - len(by):
                extra.append(f"{n - len(dated) - len(by)} without a date")
            span = _date_range(first, max(d[1] for d in dated)) if dated else "dates unknown"
            label += (
                f", inaugurated {span}"
                + (f" ({len(dated)} dated; {'; '.join(extra)})" if extra else "")
                + ")"
            )
            why = {
                "observable": f"all {MONTHS} months of {target_year} fall after the last inauguration, so "
                f"{target_year} data can show these factories running all year",
                "partly observable": f"only {months} of {MONTHS} months of {target_year} fall after the last "
                f"inauguration ({last.day} {last:%b %Y}), so the year mixes months before "
                "and after opening",
                "not yet observable": f"{months} of {MONTHS} months of {target_year} fall after the last "
                f"inauguration ({last.day} {last:%b %Y}), so {target_year} data cannot "
                "show these factories running",
            }[status]
            entry |= {
                "inauguration_first": first.date().isoformat() if first is not None else None,
                "inauguration_last": last.date().isoformat(),
            }
        elif ground and min(d[0] for d in ground).year > target_year:
            months, status = 0, "not yet observable"
            label += f", groundbreaking from {min(d[0] for d in ground):%b %Y})"
            why = f"building began after {target_year}, so {target_year} data cannot show these factories running"
        else:
            months, status = None, "unknown"
            label += ", no inauguration date)"
            why = f"without inauguration dates, whether {target_year} data show these factories running is unknown"
        entry |= {
            "observable_months": months,
            "status": status,
            "note": f"{label}: {status} in {target_year}; {why}.",
        }
        out.append(entry)
    return out


def claim_sites(
    changes: pd.DataFrame, sites: pd.DataFrame, claim: Claim = DEFAULT_CLAIM
) -> pd.DataFrame:
    """The rows of ``changes`` for the claim's batch."""
    chosen = set(sites.loc[in_batch(sites, claim.batch), "site_id"])
    return changes[changes["site_id"].isin(chosen)]


def judge_claim(
    classes: pd.Series, claim: Claim = DEFAULT_CLAIM, years: tuple[int, int] | None = None
) -> dict[str, Any]:
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
        status = (
            f"not judged: the claim compares {claim.baseline_year} with {claim.target_year}, this run "
            f"{years[0]} with {years[1]}"
        )
    elif n == 0:
        status = f"not judged: no site of batch {b} in this run, the claim is about {claim.n_sites} of them"
    elif n != claim.n_sites:
        status = f"not judged: {n} sites of batch {b} in this run, the claim has {claim.n_sites}"
    elif counts["insufficient_data"]:
        status = (
            f"undetermined: {counts['insufficient_data']} of {n} sites lack data; "
            f"{counts['brightened']} brightened among the rest"
        )
    else:
        agrees = (
            counts["brightened"] == claim.brightened
            and similar_or_dimmer == claim.similar_or_dimmer
        )
        status = (
            "agrees"
            if agrees
            else (
                f"disagrees: {counts['brightened']} brightened, {similar_or_dimmer} similar or dimmer"
            )
        )
    return {
        "counts": counts,
        "similar_or_dimmer": similar_or_dimmer,
        "n_sites": n,
        "agrees_with_claim": bool(agrees),
        "status": status,
    }


def make_verdict(
    changes: pd.DataFrame,
    sites: pd.DataFrame,
    params: dict[str, Any],
    *,
    data_kind: str,
    source: str,
    inputs: list[dict[str, Any]],
    robustness: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    version: str = "",
    claim: Claim = DEFAULT_CLAIM,
) -> dict[str, Any]:
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
        "claim_site_ids": list(claim_rows["site_id"]),
        "agrees_with_claim": judged["agrees_with_claim"],
        "claim_status": judged["status"],
        "batches": batch_observability(
            sites, int(params["target_year"]), int(params.get("min_matched_months", 1))
        ),
    }
    verdict["claim_caveat"] = claim_caveat(verdict)
    if "class_ring_adjusted" in changes:
        verdict["counts_ring_adjusted"] = count_classes(changes["class_ring_adjusted"])
        verdict["claim_sites_ring_adjusted"] = judge_claim(
            claim_rows["class_ring_adjusted"], claim, years
        )["counts"]
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


def claim_caveat(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """Why a judged claim says little about the factories: its batch cannot be seen running in the
    target year (``not yet observable``). The claim is still judged, because its sentence is about
    the light of the places, which the data do show; the caveat travels with the verdict, the
    headline and the report, so no reader takes the counts for the factories' output."""
    label = verdict["claim"]["batch"]
    entry = next((b for b in verdict.get("batches", []) if b["batch"] == label), None)
    if (
        entry is None
        or entry["status"] != "not yet observable"
        or verdict["claim_sites"]["n_sites"] == 0
    ):
        return None
    t = verdict["target_year"]
    last = entry.get("inauguration_last")
    when = f" (last inauguration {last})" if last else ""
    return {
        "status": entry["status"],
        "observable_months": entry.get("observable_months"),
        "inauguration_last": last,
        "text": f"batch {label} cannot be seen running in {t}{when}: {entry.get('observable_months') or 0} of 12 "
        f"months of {t} follow its opening, so the counts describe the places' light, not the "
        "new factories",
    }


def headline(verdict: dict[str, Any]) -> str:
    """One sentence for the terminal and the report."""
    c = verdict["claim_sites"]["counts"]
    claim = verdict["claim"]
    prefix = "[SYNTHETIC DEMO] " if verdict["data_kind"] == "synthetic" else ""
    return (
        f"{prefix}{verdict['baseline_year']}->{verdict['target_year']}, batch-{claim['batch']} sites: "
        f"{c['brightened']} brightened, {c['unchanged']} unchanged, {c['dimmed']} dimmed, "
        f"{c['insufficient_data']} insufficient data. Claim ({claim['brightened']} brightened, "
        f"{claim['similar_or_dimmer']} similar or dimmer): {verdict['claim_status']}."
        + (f" Caveat: {verdict['claim_caveat']['text']}." if verdict.get("claim_caveat") else "")
    )
