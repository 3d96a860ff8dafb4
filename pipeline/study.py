"""Study: the one orchestration from a plan to :class:`~pipeline.analysis.Results`.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.claims import Claim, check_claim_sites
from pipeline.config import Params, Source

if TYPE_CHECKING:
    import geopandas as gpd

    from pipeline.analysis import Results

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
    sensitivity: bool = True
    analysis: bool = True  # the site analysis (False: 'compare', the comparison only)
    compare: bool = True  # the county comparison when the boundaries cover the batch's sites
    compare_required: bool = False  # 'compare': no comparison is an error, not a skipped stage
    units_path: Path | None = None
    batch: str | None = None  # the comparison's batch; default the claim's
    progress: bool = True
    site_files: Sequence[Path] = field(default=())


def claim_years(claim: Claim, base: Params | None = None) -> Params:
    """``base`` (default :class:`Params`) with the claim's two years: the run's years unless given."""
    return (base or Params()).replace(
        baseline_year=claim.baseline_year, target_year=claim.target_year
    )


def run_study(spec: StudySpec) -> Results:
    """Plan, acquire, measure, judge and compare; nothing is written here (see :mod:`pipeline.outputs`)."""
    from pipeline.acquire import acquire
    from pipeline.analysis import Results, analyse
    from pipeline.units import with_default_counties

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
    if spec.analysis:
        results = analyse(
            sites,
            [r for r in got.rasters if r.year in set(years)],
            params,
            source=got.source,
            data_kind=got.data_kind,
            sensitivity=spec.sensitivity,
            progress=spec.progress,
            cube_dir=spec.cube_dir,
            alternatives=got.alternatives,
            claim=claim,
            units=counties,
        )
    else:
        results = Results(
            sites, _empty(), _empty(), {"data_kind": got.data_kind, "source": got.source}
        )
    if plan is not None:
        results.comparison = _compare(spec, plan, sites, got)
    return results


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
        out.write_json("verdict.json", results.verdict)
    if results.comparison is not None:
        from pipeline.compare import write_comparison

        write_comparison(results.comparison, out)


def _plan(spec: StudySpec, sites: gpd.GeoDataFrame) -> Any:
    if not spec.compare or spec.params.product == "annual":
        return None
    from pipeline.compare import plan_comparison

    return plan_comparison(
        sites, spec.units_path, spec.batch, required=spec.compare_required, claim=spec.claim
    )


def _compare(spec: StudySpec, plan: Any, sites: gpd.GeoDataFrame, got: Any) -> Any:
    from pipeline.compare import compare, run_comparison, units_without_rasters

    if not spec.compare_required:
        return run_comparison(
            plan,
            sites,
            got.rasters,
            spec.params,
            data_kind=got.data_kind,
            progress=spec.progress,
            cube_dir=spec.cube_dir,
        )
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
    )


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame()
