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
from pipeline.words import batch_name, date_text, month_text, say, synthetic_notice, synthetic_tag

SYNTHETIC_NOTE = synthetic_notice("en", long=True)  # verdict.json's WARNING (pipeline/words.toml)


MONTHS = 12


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
        entry: dict[str, Any] = {
            "batch": b,
            "n_sites": n,
            "n_inauguration_known": len(dated),
            "n_inauguration_by": len(by),
            "n_inauguration_unknown": n - len(dated) - len(by),
            "inauguration_first": None,
            "inauguration_last": None,
            "target_year": target_year,
            "inauguration_dated_last": _iso(max(d[1] for d in dated)) if dated else None,
            "inauguration_by_last": _iso(max(d[1] for d in by)) if by else None,
            "groundbreaking_first": _iso(min(d[0] for d in ground)) if ground else None,
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
            entry |= {"inauguration_first": _iso(first), "inauguration_last": _iso(last)}
        elif ground and min(d[0] for d in ground).year > target_year:
            months, status = 0, "not yet observable"
        else:
            months, status = None, "unknown"
        entry |= {"observable_months": months, "status": status}
        entry["note"] = batch_note(entry, "en")
        out.append(entry)
    return out


def _iso(when: pd.Timestamp | None) -> str | None:
    return None if when is None else when.date().isoformat()


OBSERVABILITY = {  # status -> its word and the reason's key in pipeline/words.toml
    "observable": ("obs_observable", "why_observable"),
    "partly observable": ("obs_partly", "why_partly"),
    "not yet observable": ("obs_not_yet", "why_not_yet"),
    "unknown": ("obs_unknown", "why_unknown"),
}


def batch_note(entry: dict[str, Any], lang: str = "en") -> str:
    """One batch's observability in words, from its ``batches`` entry alone (so a report in any
    language can say it again from ``verdict.json``); the English one is the entry's ``note``."""
    b, n, t = entry["batch"], int(entry["n_sites"]), entry["target_year"]
    name = say("batch_none_sites", lang) if b is None else batch_name(b, lang)
    name = name[:1].upper() + name[1:]
    count = say("batch_sites_1" if n == 1 else "batch_sites", lang, n=n)
    last, m = entry.get("inauguration_last"), entry.get("observable_months")
    status = entry["status"]
    word, why = OBSERVABILITY.get(status, OBSERVABILITY["unknown"])
    if last:
        extra = []
        if entry.get("inauguration_by_last"):
            by = date_text(entry["inauguration_by_last"], lang=lang)
            extra.append(say("batch_by", lang, n=entry.get("n_inauguration_by"), date=by))
        if entry.get("n_inauguration_unknown"):
            extra.append(say("batch_undated", lang, n=entry["n_inauguration_unknown"]))
        first, dated_last = entry.get("inauguration_first"), entry.get("inauguration_dated_last")
        if first:
            span = date_text(first, dated_last or last, lang)
        else:
            span = say("batch_dates_unknown", lang)
        more = (
            say("batch_extra", lang, n=entry.get("n_inauguration_known"), parts="; ".join(extra))
            if extra
            else ""
        )
        head = say("batch_head_dated", lang, name=name, count=count, span=span, extra=more)
    elif status == "not yet observable" and entry.get("groundbreaking_first"):
        month = month_text(entry["groundbreaking_first"], lang)
        head = say("batch_head_ground", lang, name=name, count=count, month=month)
        why = "why_ground"
    else:
        head = say("batch_head_none", lang, name=name, count=count)
        if status == "not yet observable":  # building after the target year, month not recorded
            why = "why_ground"
    reason = say(why, lang, t=t, m=m, last=date_text(last, lang=lang) if last else "")
    return say("batch_note", lang, head=head, status=say(word, lang), t=t, why=reason)


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
    kind = status_kind(counts, n, claim.n_sites, years, claim.years)
    agrees = kind == "agrees" and (
        counts["brightened"] == claim.brightened and similar_or_dimmer == claim.similar_or_dimmer
    )
    if kind == "agrees" and not agrees:
        kind = "disagrees"
    facts = {
        "counts": counts,
        "similar_or_dimmer": similar_or_dimmer,
        "n_sites": n,
        "claim": claim.to_dict(),
        "years": years,
    }
    return {
        "counts": counts,
        "similar_or_dimmer": similar_or_dimmer,
        "n_sites": n,
        "agrees_with_claim": bool(agrees),
        "status": status_text(kind, facts, "en"),
    }


def status_kind(
    counts: dict[str, int],
    n: int,
    claim_n: int,
    years: tuple[int, int] | None,
    claim_years: tuple[int, int],
) -> str:
    """Which status a claim gets: ``years`` (another pair of years), ``no_site``, ``count`` (not all
    its sites), ``undetermined`` (a site without data), or ``agrees`` when it can be judged (the
    caller tells agreement from disagreement by the counts)."""
    if years is not None and tuple(years) != tuple(claim_years):
        return "years"
    if n == 0:
        return "no_site"
    if n != claim_n:
        return "count"
    if counts["insufficient_data"]:
        return "undetermined"
    return "agrees"


def status_text(kind: str, facts: dict[str, Any], lang: str = "en") -> str:
    """The claim's status in words; ``facts`` holds ``counts``, ``similar_or_dimmer``, ``n_sites``, the
    ``claim`` mapping and the run's ``years``. The English one is ``verdict.json``'s ``claim_status``."""
    c, claim = facts["counts"], facts["claim"]
    b, t = facts.get("years") or (None, None)
    return say(
        f"status_{kind}",
        lang,
        up=c["brightened"],
        rest=facts["similar_or_dimmer"],
        missing=c["insufficient_data"],
        n=facts["n_sites"],
        cb=claim.get("baseline_year"),
        ct=claim.get("target_year"),
        b=b,
        t=t,
        batch=batch_name(claim.get("batch"), lang),
        claim_n=claim.get("n_sites"),
    )


def claim_status(verdict: Mapping[str, Any], lang: str = "en") -> str:
    """The verdict's claim status in ``lang``, said again from its numbers (English: ``claim_status``)."""
    c, claim = verdict["claim_sites"], verdict["claim"]
    years = (int(verdict["baseline_year"]), int(verdict["target_year"]))
    claim_years = (
        int(claim.get("baseline_year", years[0])),
        int(claim.get("target_year", years[1])),
    )
    kind = status_kind(c["counts"], c["n_sites"], int(claim["n_sites"]), years, claim_years)
    if kind == "agrees" and not verdict.get("agrees_with_claim"):
        kind = "disagrees"
    return status_text(kind, {**c, "claim": claim, "years": years}, lang)


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
    return {
        "status": entry["status"],
        "observable_months": entry.get("observable_months"),
        "inauguration_last": entry.get("inauguration_last"),
        "text": caveat_text(label, target_year, entry, "en"),
    }


def caveat_text(batch: Any, target_year: int, caveat: Mapping[str, Any], lang: str = "en") -> str:
    """The caveat of a claim about ``batch`` in words (the English one is ``claim_caveat.text``)."""
    t, last = target_year, caveat.get("inauguration_last")
    return say(
        "caveat",
        lang,
        batch=batch_name(batch, lang),
        t=t,
        when=say("caveat_when", lang, last=last) if last else "",
        m=caveat.get("observable_months") or 0,
    )


def headline(verdict: Mapping[str, Any], lang: str = "en") -> str:
    """The verdict in one sentence, for the terminal and the report (from the numbers, in ``lang``)."""
    c = verdict["claim_sites"]["counts"]
    claim = verdict["claim"]
    caveat = verdict.get("claim_caveat")
    return say(
        "headline",
        lang,
        tag=synthetic_tag(lang) if verdict["data_kind"] == "synthetic" else "",
        b=verdict["baseline_year"],
        t=verdict["target_year"],
        batch=batch_name(claim["batch"], lang),
        up=c["brightened"],
        unchanged=c["unchanged"],
        dimmed=c["dimmed"],
        missing=c["insufficient_data"],
        k=claim["brightened"],
        rest_k=claim["similar_or_dimmer"],
        status=claim_status(verdict, lang),
        caveat=say(
            "headline_caveat",
            lang,
            text=caveat_text(claim["batch"], verdict["target_year"], caveat, lang),
        )
        if caveat
        else "",
    )
