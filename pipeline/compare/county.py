"""Compare: did the designated units change differently from the units that got nothing?

Inputs
    Sites (:func:`pipeline.read.sites.read_sites`), unit polygons (:func:`pipeline.read.units.read_units`),
    the monthly rasters of the comparison years (``Params.compare_years``), :class:`Params`.
Outputs
    :class:`Comparison`: the unit-by-year panel (``unit_years.csv``) and unit-by-month table
    (``unit_months.parquet``), the difference-in-differences with its robustness checks
    (``did.json``), the event study (``event_study.csv``), disparity by year
    (``disparity.csv``) and the spillover rings (``spillover.csv``); :func:`write_comparison`
    stages them. The statistics are in :mod:`pipeline.compare.did`, :mod:`pipeline.compare.event` and
    :mod:`pipeline.compare.disparity`; this module measures and wires (estimator choices there, citing
    ``docs/research/methods_policy.md``).

Measurement choices (methods_policy.md §4.1-4.2, by item):

* **One extraction, the run's.** Units, sites, their rings, the spillover rings and the control
  sites are zones of one :func:`pipeline.measure.zonal.zone_month_table` call with the run's pixel rule,
  cloud-free/quality rules and cube, so a unit and a site are measured identically.
* **Treated** = a unit holding the centre point of a site of the batch (the gazetteer located the
  centre, :func:`pipeline.read.units.assign_units`); the controls are the other units except those
  holding a site of another batch that is building by the target year (issue 23,
  :func:`pipeline.compare.cohorts.clean_did`; ``did.json`` ``excluded_controls`` says which and why). Sites
  outside every unit are warned about and treat nothing. Border blooming (§4.2 item 2) is not
  modelled: ``did.json`` says so.
* **Unit value.** A unit-month's ``sum_lights`` is the coverage-weighted sum of radiance
  (nW/cm²/sr x pixels), unobserved pixels at the observed mean (zonal's ``sum_radiance``); the
  month counts when at least ``min_valid_fraction`` of the unit was observed (clouds are missing,
  not dark). The yearly value is the mean of the valid months among ``Params.months`` (§4.1 item
  2: annual sum of lights, levels); ``n_months`` says how many.
* **Site-level placebo** (§4.2 item 8): one control "site" per control unit at its
  representative point (no county seats are shipped), buffered like a point site and classified
  by :func:`pipeline.judge.change.site_changes` exactly like the sites; "k of n brightened" is set
  against the exact distribution of the count in random n-sets of them
  (:func:`pipeline.compare.did.count_placebo`).
* **Spillover** (§4.2 item 3): the same change in the rings 0-5, 5-10 and 10-20 km around each
  site (:func:`pipeline.read.sites.background_rings`: every site polygon removed, so 0-5 km is a
  donut), beside the site's own class. A near ring dimming while the site brightens is light
  moved, not made.
* **Event study** control series: the mean over control units of their valid monthly mean
  radiance (each unit counting once, as in the DiD).

Longer than most modules because it holds both the measurement and the plan that ``run``, the
``compare`` command and the Python API share (:func:`plan_comparison`; :func:`pipeline.study.run_study` runs it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.compare.cohorts import (
    CONTROL_RULE,
    clean_did,
    cohort_summary,
    exclusions_for,
    near_units,
    robustness,
    unit_schedule,
)
from pipeline.compare.did import (
    MIN_CONTROLS,
    count_placebo,
    pretrend_placebos,
)
from pipeline.compare.disparity import between_group_pvalue, disparity_table
from pipeline.compare.event import EVENT_COLUMNS, event_study
from pipeline.compare.panel import UNIT_MONTH_COLUMNS, UNIT_ZONE, panel_floor, unit_tables
from pipeline.config import Params
from pipeline.errors import ComparisonError, SourceError
from pipeline.judge.change import ChangeSettings, site_changes
from pipeline.measure.zonal import zone_month_table
from pipeline.outputs import portable_path
from pipeline.read.claims import Claim, default_claim
from pipeline.read.sites import (
    background_rings,
    batch_label,
    batch_labels,
    batch_order,
    in_batch,
    inauguration_month,
    with_radius,
)
from pipeline.read.sources import (
    MonthlyRaster,
    describe_inputs,
    inputs_absolute,
    inputs_relative_to,
    rasters_from_inputs,
)
from pipeline.read.units import assign_units, default_units_path, normalise_name, read_units
from pipeline.words import say, synthetic_notice

log = logging.getLogger(__name__)

SPILLOVER_RINGS_M = ((0.0, 5000.0), (5000.0, 10000.0), (10000.0, 20000.0))
SPILLOVER_COLUMNS = [
    "site_id",
    "name",
    "batch",
    "ring",
    "inner_m",
    "outer_m",
    "site_class",
    "site_log_ratio",
    "baseline_value",
    "target_value",
    "log_ratio",
    "log_ci_low",
    "log_ci_high",
    "change_pct",
    "class",
    "n_months",
]
SYNTHETIC_WARNING = synthetic_notice("en", long=True)  # did.json's WARNING (pipeline/words.toml)
LIMITS = say("did_limits", "en")  # did.json's limits; the reports say it in their language


@dataclass(frozen=True)
class Comparison:
    """Everything ``compare`` writes, built once; ``placebo`` holds the DiD placebo draws
    (coefficient scale). :meth:`to_dict` is ``did.json``; :func:`load_comparison` reads a folder back."""

    unit_years: pd.DataFrame
    unit_months: pd.DataFrame
    did: dict[str, Any]
    event_study: pd.DataFrame
    disparity: pd.DataFrame
    spillover: pd.DataFrame
    data_kind: str
    placebo: tuple[float, ...] = field(default=(), repr=False)
    rasters: tuple[MonthlyRaster, ...] = field(default=(), repr=False)  # every raster it read

    def to_dict(self) -> dict[str, Any]:
        """``did.json``: the estimate, its checks and the comparison's settings (JSON values)."""
        return dict(self.did)


def treated_units(sites: gpd.GeoDataFrame, units: gpd.GeoDataFrame, batch: str) -> gpd.GeoDataFrame:
    """The batch's sites with ``unit``/``unit_id`` of the unit holding each centre.

    Raises :class:`ComparisonError` (one line) when the batch has no site, no site in a unit,
    or fewer than :data:`~pipeline.compare.did.MIN_CONTROLS` units would remain as controls.
    """
    source = units.attrs.get("source_file", "units")
    chosen = sites[in_batch(sites, batch)]
    if chosen.empty:
        have = batch_order(batch_labels(sites))
        raise ComparisonError(
            f"no site of batch {batch} in the site files (batches present: "
            f"{', '.join(have) or 'none'}); choose --batch among them"
        )
    assigned = assign_units(chosen, units, column="unit", source=source, name_level=logging.INFO)
    inside = assigned["unit_id"].dropna()
    if inside.empty:
        raise ComparisonError(
            f"{source}: none of the {len(chosen)} batch-{batch} sites lies inside a unit; "
            "give boundaries that cover the sites"
        )
    n_control = len(units) - inside.nunique()
    if n_control < MIN_CONTROLS:
        raise ComparisonError(
            f"{source}: {n_control} control unit(s) without a batch-{batch} site; the comparison "
            f"needs at least {MIN_CONTROLS} (use finer units or more of them)"
        )
    return assigned


@dataclass(frozen=True)
class Plan:
    """What the comparison needs before any raster is read (the demo plants from it)."""

    units_file: Path
    units: gpd.GeoDataFrame
    batch: str
    treated: tuple[str, ...]
    claim: Claim


def plan_comparison(
    sites: gpd.GeoDataFrame,
    units_path: Path | None = None,
    batch: str | None = None,
    *,
    required: bool = False,
    claim: Claim | None = None,
) -> Plan | None:
    """The units, batch (default: the claim's) and treated units; for ``run`` (``required`` False)
    None with one line when there are no boundaries or they do not cover the batch's sites, name
    warnings held back until :func:`compare` assigns again."""
    path = units_path or default_units_path()
    if path is None:
        if required:
            raise ComparisonError(
                "no unit boundaries: pass --units PATH (a GeoJSON of polygons with unit_id)"
            )
        log.info("no aoi/boundaries/prk_adm2.geojson: the county comparison is skipped")
        return None
    claim = default_claim() if claim is None else claim
    batch = claim.batch if batch is None else (batch_label(batch) or claim.batch)
    units = read_units(path)
    units_log = logging.getLogger("pipeline.read.units")
    level = units_log.level
    if not required:
        units_log.setLevel(logging.ERROR)
    try:
        assigned = treated_units(sites, units, batch)
    except ComparisonError as e:
        if required:
            raise
        log.warning("county comparison skipped: %s", e)
        return None
    finally:
        units_log.setLevel(level)
    return Plan(Path(path), units, batch, tuple(sorted(set(assigned["unit_id"].dropna()))), claim)


def site_schedule(sites: Any, units: Any) -> pd.DataFrame:
    """:func:`unit_schedule` of every site (all batches) located in ``units`` by its centre.

    Name and outside-unit warnings are held back: the batch under test was assigned (and warned
    about) already, and other batches' sites only decide who is a control.
    """
    units_log = logging.getLogger("pipeline.read.units")
    level = units_log.level
    units_log.setLevel(logging.ERROR)
    try:
        located = assign_units(sites, units, column="unit", outside_level=logging.DEBUG)
    finally:
        units_log.setLevel(level)
    cols = [
        c for c in ("unit_id", "batch", "groundbreaking", "inauguration") if c in located.columns
    ]
    return unit_schedule(pd.DataFrame(located[cols]))


def units_without_rasters(units: gpd.GeoDataFrame, rasters: Sequence[MonthlyRaster]) -> int:
    """How many units have their representative point outside every raster grid (no data there)."""
    points = gpd.GeoSeries(units.geometry.representative_point().values, crs=units.crs)
    inside = np.zeros(len(units), dtype=bool)
    for grid in {r.grid for r in rasters}:
        p = points.to_crs(grid.crs)
        w, s, e, n = grid.bounds
        inside |= ((p.x >= w) & (p.x <= e) & (p.y >= s) & (p.y <= n)).to_numpy()
    return int((~inside).sum())


def control_sites(units: gpd.GeoDataFrame, radius_m: float) -> gpd.GeoDataFrame:
    """One point "site" per unit at its representative point, buffered like a point site."""
    points = units.geometry.representative_point()
    frame = gpd.GeoDataFrame(
        {
            "site_id": [f"ctrl:{u}" for u in units["unit_id"]],
            "unit_id": units["unit_id"].values,
            "center_lon": points.x.round(6).values,
            "center_lat": points.y.round(6).values,
            "from_point": True,
            "radius_m": radius_m,
        },
        geometry=points.values,
        crs=units.crs,
    )
    return with_radius(frame, radius_m)


def _ring_name(site_id: str, inner: float, outer: float) -> str:
    return f"{site_id}@near{int(inner)}-{int(outer)}"


def comparison_zones(
    sites: gpd.GeoDataFrame, controls: gpd.GeoDataFrame, params: Params
) -> gpd.GeoDataFrame:
    """Every polygon the comparison measures besides the units, named ``<site>``, ``<site>@ring``,
    ``<site>@near<a>-<b>``, ``ctrl:<unit>`` and ``ctrl:<unit>@ring`` (the run's grammar, so the
    sites and rings the analysis extracts are the same zones)."""
    ids = list(sites["site_id"])
    frames: list[tuple[list[str], list[Any]]] = [
        (ids, list(sites.geometry.values)),
        (
            [f"{s}@ring" for s in ids],
            list(background_rings(sites, params.ring_inner_m, params.ring_outer_m).values),
        ),
    ]
    for inner, outer in SPILLOVER_RINGS_M:
        frames.append(
            (
                [_ring_name(s, inner, outer) for s in ids],
                list(background_rings(sites, inner, outer).values),
            )
        )
    cids = list(controls["site_id"])
    frames.append((cids, list(controls.geometry.values)))
    frames.append(
        (
            [f"{c}@ring" for c in cids],
            list(background_rings(controls, params.ring_inner_m, params.ring_outer_m).values),
        )
    )
    return gpd.GeoDataFrame(
        {"zone": [n for names, _ in frames for n in names]},
        geometry=[g for _, geoms in frames for g in geoms],
        crs="EPSG:4326",
    )


def unit_zones(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The units as zones ``unit:<id>`` (they tile the window: the streaming path of the extraction)."""
    return gpd.GeoDataFrame(
        {"zone": [f"{UNIT_ZONE}{u}" for u in units["unit_id"]]},
        geometry=units.to_crs("EPSG:4326").geometry.values,
        crs="EPSG:4326",
    )


def capital_unit(units: pd.DataFrame) -> tuple[str, str] | None:
    """(unit_id, name) of Pyongyang, found by name (romanisation evened out), else None."""
    for uid, name, ko in zip(
        units["unit_id"], units["name"], units.get("name_ko", [None] * len(units)), strict=True
    ):
        if normalise_name(name) in ("pyongyang", "pyongyangsi") or (
            isinstance(ko, str) and ko.startswith("평양")
        ):
            return str(uid), str(name)
    return None


def spillover_table(
    table: pd.DataFrame, sites: pd.DataFrame, own: pd.DataFrame, settings: ChangeSettings
) -> pd.DataFrame:
    """One row per site and ring: the ring's change and class, the site's own beside it."""
    rows = []
    for inner, outer in SPILLOVER_RINGS_M:
        names = [_ring_name(s, inner, outer) for s in sites["site_id"]]
        ch = site_changes(table, sites, names, None, settings)
        ch = ch.assign(ring=f"{inner / 1000:g}-{outer / 1000:g} km", inner_m=inner, outer_m=outer)
        rows.append(ch)
    out = pd.concat(rows, ignore_index=True)
    meta = pd.DataFrame(
        {
            "site_id": sites["site_id"].to_numpy(),
            "name": sites["name"].to_numpy(),
            "batch": batch_labels(sites).to_numpy(),
        }
    )
    mine = own[["site_id", "class", "log_ratio"]].rename(
        columns={"class": "site_class", "log_ratio": "site_log_ratio"}
    )
    out = out.merge(meta, on="site_id", how="left").merge(mine, on="site_id", how="left")
    return out[SPILLOVER_COLUMNS]


def _event(
    table: pd.DataFrame, sites: pd.DataFrame, unit_months: pd.DataFrame, params: Params
) -> tuple[pd.DataFrame, str | None]:
    inaug = {
        str(s): m
        for s, d in zip(sites["site_id"], sites["inauguration"], strict=True)
        if (m := inauguration_month(d)) is not None
    }
    own = table[table["zone"].isin(set(inaug))]
    values = own["mean_radiance"].where(own["valid_fraction"] >= params.min_valid_fraction)
    site_months = pd.DataFrame(
        {
            "site_id": own["zone"].to_numpy(),
            "month": own["month"].to_numpy(),
            "value": values.to_numpy(float),
        }
    )
    ctrl = (
        unit_months[unit_months["is_valid"] & ~unit_months["treated"]]
        .groupby("month")["mean_radiance"]
        .mean()
    )
    try:
        return event_study(site_months, inaug, ctrl, seed=params.seed), None
    except ComparisonError as e:
        log.warning("event study skipped: %s", e)
        return pd.DataFrame(columns=list(EVENT_COLUMNS)), str(e)


def _site_placebo(
    control_changes: pd.DataFrame, k: int, n: int, label: str
) -> dict[str, Any] | None:
    classed = control_changes[control_changes["class"] != "insufficient_data"]
    try:
        out = count_placebo(classed["class"].eq("brightened"), k, n).to_dict()
    except ComparisonError as e:
        log.warning("site placebo (%s) skipped: %s", label, e)
        return {"skipped": str(e)}
    return {"of": label, **out}


def compare(
    sites: gpd.GeoDataFrame,
    units: gpd.GeoDataFrame,
    rasters: Sequence[MonthlyRaster],
    params: Params,
    *,
    batch: str,
    data_kind: str,
    claim: Claim | None = None,
    progress: bool = True,
    cube_dir: Path | None = None,
    assigned: gpd.GeoDataFrame | None = None,
    table: pd.DataFrame | None = None,
    statistics: Callable[..., PanelStatistics] | None = None,
) -> Comparison:
    """The whole comparison of issue 12 on already-located inputs (nothing is written here).

    ``assigned``: the result of :func:`treated_units` when the caller already has it. ``table``:
    the run's zone-by-month table holding :func:`unit_zones` and :func:`comparison_zones` (a study
    extracts every zone once, :func:`pipeline.study.run_study`); without it they are extracted here.
    ``statistics``: :func:`panel_statistics` or a caller's kept version of it (same arguments).
    """
    statistics = statistics or panel_statistics
    assigned = treated_units(sites, units, batch) if assigned is None else assigned
    treated = set(assigned["unit_id"].dropna().astype(str))
    controls = control_sites(units[~units["unit_id"].isin(treated)], params.default_radius_m)
    if table is None:
        zones = pd.concat([unit_zones(units), comparison_zones(sites, controls, params)])
        table = zone_month_table(
            rasters,
            gpd.GeoDataFrame(zones, geometry="geometry", crs="EPSG:4326"),
            (params.pixel_rule,),
            params.min_cf_cvg,
            params.bm_quality,
            progress,
            cube_dir=cube_dir,
        )
    table = table[table["pixel_rule"] == params.pixel_rule]
    unit_months, panel = unit_tables(table, units, treated, params)
    eps = panel_floor(panel, params.baseline_year)
    settings = ChangeSettings.from_params(params)
    ids = list(sites["site_id"])
    own = site_changes(table, sites, ids, [f"{s}@ring" for s in ids], settings)
    cids = list(controls["site_id"])
    ctrl_changes = site_changes(table, controls, cids, [f"{c}@ring" for c in cids], settings)

    # --- issue 23: controls that are controls (pipeline.compare.cohorts); units building in the years compared are left out
    schedule = site_schedule(sites, units)
    stats = statistics(
        panel,
        schedule,
        units,
        tuple(sorted(treated)),
        params.baseline_year,
        params.target_year,
        params.seed,
        eps,
    )
    batch_rows = own[own["site_id"].isin(set(assigned["site_id"]))]
    classed = batch_rows[batch_rows["class"] != "insufficient_data"]
    placebo_obs = _site_placebo(
        ctrl_changes,
        int((classed["class"] == "brightened").sum()),
        len(classed),
        "this comparison's classified batch sites",
    )
    placebo_claim = None
    if claim is not None and claim.batch == batch:
        placebo_claim = _site_placebo(ctrl_changes, claim.brightened, claim.n_sites, "the claim")
    spill = spillover_table(table, sites, own, settings)
    events, event_note = _event(
        table, sites[sites["site_id"].isin(set(assigned["site_id"]))], unit_months, params
    )
    did: dict[str, Any] = {}
    if data_kind == "synthetic":
        did["WARNING"] = SYNTHETIC_WARNING
    did |= stats.did
    did |= {
        "data_kind": data_kind,
        "batch": batch,
        "units_file": str(Path(units.attrs["source_file"]).absolute())
        if units.attrs.get("source_file")
        else None,
        "n_units": len(units),
        "treated_units": [
            {
                "unit_id": u,
                "name": n,
                "sites": sorted(assigned.loc[assigned["unit_id"] == u, "site_id"]),
            }
            for u, n in zip(units["unit_id"], units["name"], strict=True)
            if u in treated
        ],
        "sites_outside_units": sorted(assigned.loc[assigned["unit_id"].isna(), "site_id"]),
        "without_pyongyang": stats.without,
        "pretrends": stats.pretrends.to_dict(orient="records"),
        "site_placebo": placebo_claim,
        "site_placebo_observed": placebo_obs,
        "n_control_sites": len(controls),
        "control_sites": "one per control unit at its representative point, "
        f"{params.default_radius_m:g} m buffer, classified like sites",
        "spillover": _spill_summary(spill[spill["site_id"].isin(set(assigned["site_id"]))]),
        "event_study_note": event_note,
        "limits": LIMITS,
        "parameters": params.to_dict(),
        "control_rule": CONTROL_RULE,
        "n_excluded_controls": len(stats.excluded),
        "excluded_controls": stats.excluded,
        **stats.cohorts,
        "period": [rasters[0].month, rasters[-1].month] if rasters else [],
        "products": sorted({r.product for r in rasters}),
        "compare_years": list(params.compare_years),
        "inputs": describe_inputs(rasters),
    }
    return Comparison(
        panel,
        unit_months,
        did,
        events,
        stats.disparity,
        spill,
        data_kind,
        stats.placebo,
        tuple(rasters),
    )


@dataclass(frozen=True)
class PanelStatistics:
    """What the unit panel gives whatever the sites' classes: the DiD and its placebo draws, the
    controls left out, the estimate without the capital, the pre-trend placebos, every batch's
    effect and the disparity. Another ``--threshold`` changes none of it, so a study keeps it
    apart from the rest of the comparison (:func:`pipeline.study.run_study`)."""

    did: dict[str, Any]
    placebo: tuple[float, ...]
    excluded: list[dict[str, Any]]
    without: dict[str, Any] | None
    pretrends: pd.DataFrame
    cohorts: dict[str, Any]
    disparity: pd.DataFrame


def panel_statistics(
    panel: pd.DataFrame,
    schedule: pd.DataFrame,
    units: gpd.GeoDataFrame,
    treated: tuple[str, ...],
    baseline_year: int,
    target_year: int,
    seed: int,
    eps: float,
) -> PanelStatistics:
    """The comparison's statistics of the unit panel (:class:`PanelStatistics`): a function of
    its arguments alone, so they are also its key when kept."""
    main, building = clean_did(panel, schedule, baseline_year, target_year, eps=eps, seed=seed)
    capital = capital_unit(units)
    without = None
    if capital is not None:
        r, _ = clean_did(
            panel,
            schedule,
            baseline_year,
            target_year,
            exclude=[capital[0]],
            eps=eps,
            seed=seed,
        )
        without = {"unit_id": capital[0], "name": capital[1], **r.to_dict()}
    pretrends = pretrend_placebos(
        panel,
        baseline_year,
        seed=seed,
        eps=eps,
        exclude_for=exclusions_for(panel, schedule),
    )
    cohorts = cohort_summary(panel, schedule, baseline_year, target_year, seed=seed)
    cohorts["robustness"] = robustness(panel, schedule, main, near=near_units(units, treated))
    disparity = disparity_table(panel)
    disparity["top_unit_name"] = disparity["top_unit_id"].map(
        dict(zip(units["unit_id"], units["name"], strict=True))
    )
    disparity["between_p_value"] = [
        between_group_pvalue(g["sum_lights"], g["treated"], seed=seed)
        for _, g in panel.groupby("year")
    ]
    return PanelStatistics(
        main.to_dict(),
        tuple(main.placebo),
        [e.to_dict() for e in building],
        without,
        pretrends,
        cohorts,
        disparity,
    )


def _spill_summary(spill: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for ring, g in spill.groupby("ring", sort=False):
        d = g["log_ratio"].dropna()
        out.append(
            {
                "ring": ring,
                "n_sites": len(d),
                "mean_log_ratio": float(d.mean()) if len(d) else None,
                "n_dimmed": int((g["class"] == "dimmed").sum()),
                "n_dimmed_while_site_brightened": int(
                    ((g["class"] == "dimmed") & (g["site_class"] == "brightened")).sum()
                ),
            }
        )
    return out


def write_comparison(comp: Comparison, out: Any) -> None:
    """Stage the comparison's files in ``out`` (a :class:`pipeline.outputs.Staging`)."""
    kind = comp.data_kind
    out.write_csv("unit_years.csv", comp.unit_years, kind)
    out.write_with(
        "unit_months.parquet",
        lambda p: comp.unit_months.assign(data_kind=kind).to_parquet(p, index=False),
    )
    doc = comp.to_dict()
    if "inputs" in doc:
        doc["inputs"] = inputs_relative_to(doc["inputs"], Path(out.out))
    if doc.get("units_file"):
        doc["units_file"] = portable_path(str(doc["units_file"]), Path(out.out))
    out.write_json("did.json", doc)
    out.write_csv("event_study.csv", comp.event_study[list(EVENT_COLUMNS)])
    out.write_csv("disparity.csv", comp.disparity, kind)
    out.write_csv("spillover.csv", comp.spillover, kind)
    out.write_csv(
        "did_placebo.csv",
        pd.DataFrame({"placebo_estimate_log": np.asarray(comp.placebo, float)}),
        kind,
    )


def load_comparison(out: Path) -> Comparison | None:
    """The comparison from an output folder, or None when the run made none."""
    import json

    out = Path(out)
    if not all(
        (out / n).exists()
        for n in ("did.json", "unit_years.csv", "event_study.csv", "disparity.csv")
    ):
        return None
    did = json.loads((out / "did.json").read_text(encoding="utf-8"))

    def csv(name: str) -> pd.DataFrame:
        p = out / name
        return (
            pd.read_csv(p).drop(columns=["data_kind"], errors="ignore")
            if p.exists()
            else pd.DataFrame()
        )

    years = csv("unit_years.csv").astype({"unit_id": str})
    months = (
        pd.read_parquet(out / "unit_months.parquet").drop(columns=["data_kind"], errors="ignore")
        if (out / "unit_months.parquet").exists()
        else pd.DataFrame(columns=UNIT_MONTH_COLUMNS)
    )
    placebo = tuple(
        csv("did_placebo.csv").get("placebo_estimate_log", pd.Series(dtype=float)).tolist()
    )
    if isinstance(did.get("inputs"), list):
        did["inputs"] = inputs_absolute(did["inputs"], out)
    try:  # for the provenance of a re-published folder; the comparison's numbers do not need them
        rasters = tuple(rasters_from_inputs(did.get("inputs", []), out / "did.json"))
    except SourceError as e:
        log.info("the comparison's input checksums are left out: %s", e)
        rasters = ()
    return Comparison(
        years,
        months,
        did,
        csv("event_study.csv"),
        csv("disparity.csv"),
        csv("spillover.csv"),
        str(did.get("data_kind", "real")),
        placebo,
        rasters,
    )
