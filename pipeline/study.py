"""Study: the one orchestration from a plan to :class:`~pipeline.results.Results`.

``nightlights run``, ``nightlights compare`` and :func:`pipeline.analyse` each build a
:class:`StudySpec` and call :func:`run_study`; none of them chains the stages itself, so the
same sites, claim and parameters give the same tables whichever way the study was started.

The order, and why:

1. the claim decides the batch (the verdict's sites and, unless ``batch`` says otherwise, the
   comparison's treated units) and, unless the user gave years, the years compared;
2. the counties that cover the sites are attached once (``county``/``county_id``, the county
   change) and the comparison is planned on the same sites;
3. the rasters of every year any stage reads are acquired once (the demo world, a folder or a
   download);
4. the site analysis (``analysis=False`` for ``compare``) and the comparison read them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params, Source
from pipeline.memo import Entry, Memo, raster_state
from pipeline.read.claims import Claim, check_claim_sites

if TYPE_CHECKING:
    import geopandas as gpd

    from pipeline.results import Results

log = logging.getLogger("nightlights")


@dataclass(frozen=True)
class StudySpec:
    """Everything a study needs, already parsed and checked (sites read, claim loaded)."""

    sites: gpd.GeoDataFrame
    params: Params
    claim: Claim
    claim_path: Path | None = (
        None  # the claim file asked for (its n_sites must fit the sites); None: the default
    )
    source: Source = "auto"
    rasters_dir: Path | None = None
    data_dir: Path = Path("data")
    cube_dir: Path | None = None
    memo_dir: Path | None = (
        None  # stage results kept for re-runs (:mod:`pipeline.memo`); None: none
    )
    sensitivity: bool = True
    analysis: bool = True  # the site analysis (False: 'compare', the comparison only)
    compare: bool = True  # the county comparison when the boundaries cover the batch's sites
    compare_required: bool = False  # 'compare': no comparison is an error, not a skipped stage
    units_path: Path | None = None
    batch: str | None = None  # the comparison's batch; default the claim's
    progress: bool = True
    site_files: Sequence[Path] = field(default=())
    # called with a stage's name before the stage is computed (not read back from the memo)
    on_compute: Callable[[str], None] | None = None


def claim_years(claim: Claim, base: Params | None = None) -> Params:
    """``base`` (default :class:`Params`) with the claim's two years: the run's years unless given."""
    return (base or Params()).replace(
        baseline_year=claim.baseline_year, target_year=claim.target_year
    )


def run_study(spec: StudySpec) -> Results:
    """Plan, acquire, measure, judge and compare; nothing is written here (see :mod:`pipeline.outputs`)."""
    from pipeline.fetch.acquire import acquire
    from pipeline.read.units import with_default_counties
    from pipeline.results import Results

    params, claim, sites = spec.params, spec.claim, spec.sites
    if spec.analysis:
        # a claim file given on purpose must fit the sites (a count that differs is an error); the
        # default claim may meet a subset of them, and its note is information (-q hides it)
        chosen = spec.claim_path is not None
        note = check_claim_sites(claim, sites, spec.claim_path, strict=chosen)
        if note:
            log.log(logging.WARNING if chosen else logging.INFO, "%s", note)
    sites, counties = with_default_counties(sites) if spec.analysis else (sites, None)
    plan = _plan(spec, sites)
    years = (
        sorted({params.baseline_year - 1, params.baseline_year, params.target_year})
        if spec.analysis
        else []
    )
    wanted = sorted({*years, *(params.compare_years if plan else ())})
    got = acquire(
        spec.source,
        sites,
        params,
        wanted,
        rasters_dir=spec.rasters_dir,
        data_dir=spec.data_dir,
        progress=spec.progress,
        required=(params.baseline_year, params.target_year),
    )
    files = ", ".join(p.name for p in spec.site_files) or "the given table"
    log.info(
        "%d sites from %s; %d months from %s (%s)",
        len(sites),
        files,
        len(got.rasters),
        got.folder,
        got.data_kind,
    )
    plan = _usable(spec, plan, got.rasters)
    rasters = [
        r for r in got.rasters if r.year in set(years) | set(params.compare_years if plan else ())
    ]
    zones = _zone_plan(spec, plan, sites, counties)
    memo = Memo(spec.memo_dir, on_compute=spec.on_compute)
    site_table, unit_table = _extract(spec, zones, rasters, memo)
    if spec.analysis:
        results = _analyse(
            spec, sites, zones, [r for r in rasters if r.year in set(years)], got, site_table, memo
        )
    else:
        from pipeline.judge.verdict import Verdict

        results = Results(
            sites,
            _empty(),
            _empty(),
            Verdict.from_dict({"data_kind": got.data_kind, "source": got.source}),
        )
    if counties is not None and spec.analysis:
        results.unit_changes = _county_changes(unit_table, counties, zones.counties_prefix, params)
    if plan is not None:
        results.comparison = _compare(
            spec, plan, sites, got, _comparison_table(site_table, unit_table, zones), zones, memo
        )
    return results


@dataclass(frozen=True)
class ZonePlan:
    """Every zone a study measures, named in one grammar and extracted once (:func:`_extract`).

    ``sites``: the analysis's zones (sites, ``@ring``, ``@r<m>`` variants, ``@control<n>``) with
    the comparison's (``@near<a>-<b>`` rings, ``ctrl:<unit>`` and their rings) on the chunked
    path and the study cube; ``units``: ``unit:<id>`` polygons, which tile the window and take the
    streaming path (one mixed pass would stream everything). The counties of ``county_changes.csv``
    are the comparison's units when they come from the same file, else ``county:<id>`` zones.
    """

    sites: gpd.GeoDataFrame
    units: gpd.GeoDataFrame
    rules: tuple[str, ...]
    comparison: gpd.GeoDataFrame | None = None
    counties_prefix: str = "unit:"


def _zone_plan(
    spec: StudySpec, plan: Any, sites: gpd.GeoDataFrame, counties: gpd.GeoDataFrame | None
) -> ZonePlan:
    import geopandas as gpd
    import pandas as pd

    from pipeline.analysis import analysis_rules, analysis_zones
    from pipeline.compare.county import comparison_zones, control_sites, unit_zones

    params = spec.params
    parts: list[gpd.GeoDataFrame] = []
    rules: tuple[str, ...] = (params.pixel_rule,)
    if spec.analysis:
        parts.append(analysis_zones(sites, params, spec.sensitivity)[0])
        rules = analysis_rules(params, spec.sensitivity)
    comparison = None
    unit_parts: list[gpd.GeoDataFrame] = []
    prefix = "unit:"
    if plan is not None:
        controls = control_sites(
            plan.units[~plan.units["unit_id"].isin(set(plan.treated))], params.default_radius_m
        )
        comparison = comparison_zones(sites, controls, params)
        parts.append(comparison)
        unit_parts.append(unit_zones(plan.units))
    if counties is not None and spec.analysis:
        same = plan is not None and _same_file(plan.units_file, counties.attrs.get("source_file"))
        if not same:
            prefix = "county:"
            z = unit_zones(counties)
            unit_parts.append(z.assign(zone="county:" + z["zone"].str[len("unit:") :]))

    def frame(items: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
        if not items:
            return gpd.GeoDataFrame({"zone": []}, geometry=[], crs="EPSG:4326")
        z = pd.concat([i.to_crs("EPSG:4326") for i in items], ignore_index=True)
        z = z.drop_duplicates("zone", keep="first").reset_index(drop=True)
        return gpd.GeoDataFrame(z, geometry="geometry", crs="EPSG:4326")

    return ZonePlan(frame(parts), frame(unit_parts), rules, comparison, prefix)


def _same_file(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _extract(
    spec: StudySpec, zones: ZonePlan, rasters: Sequence[Any], memo: Memo
) -> tuple[Any, Any]:
    """The study's one extraction: each zone and month read once (two passes, disjoint zones),
    or read back from the memo when the zones, rules and raster files are those of a past run."""
    from pipeline.measure.zonal import zone_month_table

    p = spec.params
    tables = []
    for frame, rules in ((zones.sites, zones.rules), (zones.units, (p.pixel_rule,))):
        if not (len(frame) and rasters):
            tables.append(_empty_table())
            continue
        tables.append(
            memo.through(
                "zones",
                (frame, rules, p.min_cf_cvg, p.bm_quality, raster_state(rasters)),
                partial(
                    zone_month_table,
                    rasters,
                    frame,
                    rules,
                    p.min_cf_cvg,
                    p.bm_quality,
                    spec.progress,
                    cube_dir=spec.cube_dir,
                ),
                lambda t: Entry({"table": t}),
                lambda e: e.tables["table"],
                inputs=_raster_files(rasters),
            )
        )
    return tables[0], tables[1]


def _raster_files(rasters: Sequence[Any]) -> list[Path | None]:
    return [f for r in rasters for f in (r.radiance, r.aux)]


def _analyse(
    spec: StudySpec,
    sites: gpd.GeoDataFrame,
    zones: ZonePlan,
    rasters: list[Any],
    got: Any,
    site_table: Any,
    memo: Memo,
) -> Results:
    """The site analysis on the study's extraction; kept in the memo under everything it reads
    (the sites, the zones and rasters that made the table, every parameter, the claim)."""
    from pipeline.analysis import analyse
    from pipeline.judge.verdict import Verdict
    from pipeline.results import Results

    months = {r.month for r in rasters}
    alternatives = {k: raster_state(v) for k, v in (got.alternatives or {}).items()}

    def compute() -> Results:
        with memo.remembering("intervals", _without_threshold(parts), inputs=files):
            return analyse(
                sites,
                rasters,
                spec.params,
                source=got.source,
                data_kind=got.data_kind,
                sensitivity=spec.sensitivity,
                progress=spec.progress,
                cube_dir=spec.cube_dir,
                alternatives=got.alternatives,
                claim=spec.claim,
                extra_zones=zones.comparison,
                table=site_table[site_table["month"].isin(months)].reset_index(drop=True),
            )

    def encode(r: Results) -> Entry:
        tables = {
            "sites": r.sites,
            "site_months": r.site_months,
            "changes": r.changes,
            "zone_table": r.zone_table,
        }
        if r.sensitivity is not None:
            tables["sensitivity"] = r.sensitivity
        return Entry(tables, {"verdict": r.verdict.to_dict()})

    def decode(e: Entry) -> Results:
        t = e.tables
        return Results(
            t["sites"],
            t["site_months"],
            t["changes"],
            Verdict.from_dict(e.doc["verdict"]),
            t.get("sensitivity"),
            t["zone_table"],
            list(rasters),
        )

    parts = (
        sites,
        zones.sites,
        zones.rules,
        raster_state(rasters),
        spec.params,
        got.source,
        got.data_kind,
        spec.sensitivity,
        spec.claim,
        alternatives,
    )
    files = _raster_files([*rasters, *(r for v in (got.alternatives or {}).values() for r in v)])
    return memo.through("sites", parts, compute, encode, decode, inputs=files)


def _without_threshold(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """A stage's key parts with the threshold left out of its parameters: what the bootstrap
    intervals below the stage are kept under (:meth:`Memo.remembering`)."""
    from dataclasses import replace

    return tuple(replace(p, threshold=0.0) if isinstance(p, Params) else p for p in parts)


def _empty_table() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            c: pd.Series(dtype=object if c in ("zone", "month", "pixel_rule") else float)
            for c in (
                "zone",
                "month",
                "pixel_rule",
                "mean_radiance",
                "sum_radiance",
                "valid_fraction",
            )
        }
    )


def _county_changes(
    unit_table: Any, counties: gpd.GeoDataFrame, prefix: str, params: Params
) -> Any:
    """``county_changes.csv`` from the unit panel (:mod:`pipeline.compare.panel`): the DiD's own numbers."""
    from pipeline.compare.panel import UNIT_ZONE, panel_floor, unit_changes, unit_tables

    t = unit_table[unit_table["zone"].str.startswith(prefix)]
    t = t.assign(zone=UNIT_ZONE + t["zone"].str[len(prefix) :])
    _, panel = unit_tables(t, counties, (), params)
    eps = panel_floor(panel, params.baseline_year)
    return unit_changes(panel, counties, params.baseline_year, params.target_year, eps)


def _comparison_table(site_table: Any, unit_table: Any, zones: ZonePlan) -> Any:
    import pandas as pd

    units = unit_table[unit_table["zone"].str.startswith("unit:")]
    return pd.concat([units, site_table], ignore_index=True)


def _usable(spec: StudySpec, plan: Any, rasters: Sequence[Any]) -> Any:
    """The plan, or None (one line) when the rasters miss most units: a run on a small local area is
    not a county study (``compare`` goes on and warns; its units outside have no data)."""
    if plan is None or spec.compare_required:
        return plan
    from pipeline.compare.county import units_without_rasters

    outside = units_without_rasters(plan.units, rasters)
    if outside > 0.1 * len(plan.units):
        log.info(
            "county comparison skipped: %d of the %d units lie outside the rasters (use "
            "'nightlights compare --units' with boundaries inside them)",
            outside,
            len(plan.units),
        )
        return None
    return plan


def write_tables(results: Results, out: Any) -> None:
    """Stage a study's tables in ``out`` (a :class:`pipeline.outputs.Staging`): the one writer of the
    tables, so ``run`` and a notebook that saves :func:`pipeline.analyse`'s results write the same bytes."""
    kind = results.verdict["data_kind"]
    if len(results.changes):
        out.write_csv("site_months.csv", results.site_months, kind)
        out.write_csv("site_changes.csv", results.changes, kind)
        if results.unit_changes is not None:
            out.write_csv("county_changes.csv", results.unit_changes, kind)
        if results.sensitivity is not None:
            out.write_csv("sensitivity.csv", results.sensitivity, kind)
        from pipeline.read.sources import inputs_relative_to

        doc = results.verdict.to_dict()
        doc["inputs"] = inputs_relative_to(doc.get("inputs", []), Path(out.out))
        out.write_json("verdict.json", doc)
    if results.comparison is not None:
        from pipeline.compare.county import write_comparison

        write_comparison(results.comparison, out)


def _plan(spec: StudySpec, sites: gpd.GeoDataFrame) -> Any:
    if not spec.compare or spec.params.product == "annual":
        return None
    from pipeline.compare.county import plan_comparison

    return plan_comparison(
        sites, spec.units_path, spec.batch, required=spec.compare_required, claim=spec.claim
    )


def _compare(
    spec: StudySpec,
    plan: Any,
    sites: gpd.GeoDataFrame,
    got: Any,
    table: Any,
    zones: ZonePlan,
    memo: Memo,
) -> Any:
    """The comparison on the study's extraction; for ``run`` a comparison that cannot be made is
    skipped in one line (a warning), since the run's own results do not depend on it. Kept in
    the memo under everything it reads (sites, units and their file, batch, zones, rasters,
    parameters, claim)."""
    from pipeline.compare.county import (
        Comparison,
        PanelStatistics,
        compare,
        panel_statistics,
        units_without_rasters,
    )
    from pipeline.errors import ComparisonError

    if spec.compare_required:
        outside = units_without_rasters(plan.units, got.rasters)
        if outside:
            log.warning(
                "%s: %d of the %d units lie outside the rasters; they have no data and are left out",
                plan.units_file,
                outside,
                len(plan.units),
            )
        log.info(
            "%d units from %s (%d treated, batch %s)",
            len(plan.units),
            plan.units_file,
            len(plan.treated),
            plan.batch,
        )
    by_path = {str(r.radiance): r for r in got.rasters}

    def kept_statistics(*args: Any) -> PanelStatistics:
        """:func:`panel_statistics` kept under its own arguments: another ``--threshold``
        recomputes the comparison's site classes, not its county statistics."""

        def encode(p: PanelStatistics) -> Entry:
            doc = {
                "did": p.did,
                "placebo": list(p.placebo),
                "excluded": p.excluded,
                "without": p.without,
                "cohorts": p.cohorts,
            }
            return Entry({"pretrends": p.pretrends, "disparity": p.disparity}, doc)

        def decode(e: Entry) -> PanelStatistics:
            d = e.doc
            return PanelStatistics(
                d["did"],
                tuple(d["placebo"]),
                d["excluded"],
                d["without"],
                e.tables["pretrends"],
                d["cohorts"],
                e.tables["disparity"],
            )

        return memo.through("panel", args, partial(panel_statistics, *args), encode, decode)

    def encode(c: Comparison) -> Entry:
        tables = {
            n: getattr(c, n)
            for n in ("unit_years", "unit_months", "event_study", "disparity", "spillover")
        }
        doc = {
            "did": c.did,
            "data_kind": c.data_kind,
            "placebo": list(c.placebo),
            "rasters": [str(r.radiance) for r in c.rasters],
        }
        return Entry(tables, doc)

    def decode(e: Entry) -> Comparison:
        d = e.doc
        return Comparison(
            **e.tables,
            did=d["did"],
            data_kind=d["data_kind"],
            placebo=tuple(d["placebo"]),
            rasters=tuple(by_path[p] for p in d["rasters"]),
        )

    parts = (
        sites,
        plan.units,
        str(plan.units_file),
        str(plan.units.attrs.get("source_file")),
        plan.batch,
        plan.treated,
        plan.claim,
        spec.params,
        got.data_kind,
        raster_state(got.rasters),
        zones.sites,
        zones.units,
    )

    def compute() -> Comparison:
        with memo.remembering("intervals", _without_threshold(("comparison", *parts)), files):
            return compare(
                sites,
                plan.units,
                got.rasters,
                spec.params,
                batch=plan.batch,
                data_kind=got.data_kind,
                claim=plan.claim,
                progress=spec.progress,
                cube_dir=spec.cube_dir,
                table=table,
                statistics=kept_statistics,
            )

    files = [*_raster_files(got.rasters), plan.units_file]
    try:
        return memo.through("comparison", parts, compute, encode, decode, inputs=files)
    except ComparisonError as e:
        if spec.compare_required:
            raise
        log.warning("county comparison skipped: %s", e)
        return None


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame()
