"""Verdict: class counts set against the published claim.

Inputs
    The per-site change table, the site table, the parameters, and (optionally) the
    robustness and calibration summaries.
Outputs
    The ``verdict.json`` mapping, with ``batches``: which batches the target year can
    speak for (:func:`batch_observability`).

A claim (:class:`pipeline.read.claims.Claim`, by default the JoongAng one) concerns the sites
of one batch, so agreement is judged on the sites of that batch only, whatever other
sites the run includes, and only when the run compares the claim's two years.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from pipeline.judge.change import count_classes
from pipeline.read.claims import DEFAULT_CLAIM, Claim
from pipeline.read.sites import batch_labels, batch_order, in_batch, site_date

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
    groundbreaking is after the target year). Dates are read by :func:`pipeline.read.sites.site_date`,
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


@dataclass(frozen=True)
class Verdict(Mapping[str, Any]):
    """The verdict of a run, built once by :func:`make_verdict` and never changed after.

    Typed fields for the code; :meth:`to_dict` is ``verdict.json`` (keys in a fixed order, the
    synthetic warning first) and :meth:`from_dict` reads it back, keeping keys a newer version
    wrote in ``extra``. It is also a read-only mapping of those keys (``verdict["counts"]``), so
    a notebook or a chart reads it like the JSON file. The nested values are plain JSON values.
    """

    data_kind: str
    source: str
    baseline_year: int
    target_year: int
    n_sites: int
    counts: dict[str, int]
    claim: dict[str, Any]
    claim_text: str
    claim_sites: dict[str, Any]
    claim_site_ids: tuple[str, ...]
    agrees_with_claim: bool
    claim_status: str
    batches: tuple[dict[str, Any], ...]
    claim_caveat: dict[str, Any] | None
    parameters: dict[str, Any]
    inputs: tuple[dict[str, Any], ...] = ()
    nightlights_version: str = ""
    counts_ring_adjusted: dict[str, int] | None = None
    claim_sites_ring_adjusted: dict[str, int] | None = None
    robustness: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    product: str | None = None
    products: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``verdict.json``: the fields in their published order, optional ones only when present."""
        out: dict[str, Any] = {"WARNING": SYNTHETIC_NOTE} if self.data_kind == "synthetic" else {}
        for name in _ORDER:
            value = getattr(self, name)
            if value is None and name not in _ALWAYS:
                continue
            out[name] = list(value) if isinstance(value, tuple) else value
        return out | {k: v for k, v in self.extra.items() if k not in out}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Verdict:
        """A verdict from ``verdict.json`` (missing optional keys become None; unknown keys ``extra``)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {}
        for name in known:
            if name in doc:
                v = doc[name]
                kw[name] = tuple(v) if name in _TUPLES and isinstance(v, list) else v
        for name, default in _REQUIRED_DEFAULTS.items():
            kw.setdefault(name, default)
        kw["extra"] = {k: v for k, v in doc.items() if k not in known and k != "WARNING"}
        return cls(**kw)

    @functools.cached_property
    def _mapping(self) -> dict[str, Any]:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._mapping[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)


_ORDER = (
    "data_kind",
    "source",
    "baseline_year",
    "target_year",
    "n_sites",
    "counts",
    "claim",
    "claim_text",
    "claim_sites",
    "claim_site_ids",
    "agrees_with_claim",
    "claim_status",
    "batches",
    "claim_caveat",
    "counts_ring_adjusted",
    "claim_sites_ring_adjusted",
    "robustness",
    "calibration",
    "parameters",
    "inputs",
    "nightlights_version",
    "product",
    "products",
)
_ALWAYS = {"claim_caveat"}  # written as null when there is none
_TUPLES = {"claim_site_ids", "batches", "inputs", "products"}
_REQUIRED_DEFAULTS: dict[str, Any] = {
    "data_kind": "real",
    "source": "",
    "baseline_year": 0,
    "target_year": 0,
    "n_sites": 0,
    "counts": {},
    "claim": {},
    "claim_text": "",
    "claim_sites": {},
    "claim_site_ids": (),
    "agrees_with_claim": False,
    "claim_status": "",
    "batches": (),
    "claim_caveat": None,
    "parameters": {},
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
    product: str | None = None,
    products: Sequence[str] | None = None,
) -> Verdict:
    """The verdict of a run (``verdict.json`` is its :meth:`Verdict.to_dict`)."""
    claim_rows = claim_sites(changes, sites, claim)
    years = (int(params["baseline_year"]), int(params["target_year"]))
    judged = judge_claim(claim_rows["class"], claim, years)
    batches = batch_observability(
        sites, int(params["target_year"]), int(params.get("min_matched_months", 1))
    )
    ring = "class_ring_adjusted" in changes
    return Verdict(
        data_kind=data_kind,
        source=source,
        baseline_year=params["baseline_year"],
        target_year=params["target_year"],
        n_sites=len(changes),
        counts=count_classes(changes["class"]),
        claim=claim.to_dict(),
        claim_text=claim.text,
        claim_sites=judged,
        claim_site_ids=tuple(claim_rows["site_id"]),
        agrees_with_claim=judged["agrees_with_claim"],
        claim_status=judged["status"],
        batches=tuple(batches),
        claim_caveat=_caveat(claim.to_dict(), batches, judged, years[1]),
        counts_ring_adjusted=count_classes(changes["class_ring_adjusted"]) if ring else None,
        claim_sites_ring_adjusted=(
            judge_claim(claim_rows["class_ring_adjusted"], claim, years)["counts"] if ring else None
        ),
        robustness=robustness,
        calibration=calibration,
        parameters=params,
        inputs=tuple(inputs),
        nightlights_version=version,
        product=product,
        products=tuple(products) if products is not None else None,
    )


def claim_caveat(verdict: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why a judged claim says little about the factories: its batch cannot be seen running in the
    target year (``not yet observable``). The claim is still judged, because its sentence is about
    the light of the places, which the data do show; the caveat travels with the verdict, the
    headline and the report, so no reader takes the counts for the factories' output."""
    return _caveat(
        verdict["claim"], verdict.get("batches", []), verdict["claim_sites"], verdict["target_year"]
    )


def _caveat(
    claim: Mapping[str, Any],
    batches: Sequence[Mapping[str, Any]],
    judged: Mapping[str, Any],
    target_year: int,
) -> dict[str, Any] | None:
    label = claim["batch"]
    entry = next((b for b in batches if b["batch"] == label), None)
    if entry is None or entry["status"] != "not yet observable" or judged["n_sites"] == 0:
        return None
    t = target_year
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


def headline(verdict: Mapping[str, Any]) -> str:
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
