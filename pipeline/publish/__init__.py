"""Publishing: every chart, the GIS files and the reports of a run (English and Korean, each with
its own charts), into its staging folder.

Modules: :mod:`~pipeline.publish.style` (one look, sizes, labels, saving),
:mod:`~pipeline.publish.charts` and :mod:`~pipeline.publish.maps` (pure chart functions),
:mod:`~pipeline.publish.composites` (the one place that reads rasters for charts),
:mod:`~pipeline.publish.report` (HTML and Markdown text), :mod:`~pipeline.publish.gis`,
:mod:`~pipeline.publish.render` (each chart drawn once, in worker processes; unchanged ones kept).
Publishing reads :class:`pipeline.results.Results`; the core never imports this layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

from pipeline.memo import Memo
from pipeline.provenance import HASH_CACHE_NAME, input_checksums
from pipeline.publish import charts, comparison, maps
from pipeline.publish.composites import (
    Boundaries,
    boundaries,
    boundary_digest,
    korean_names,
    site_composites,
)
from pipeline.publish.explore import explore_html
from pipeline.publish.gis import write_gis
from pipeline.publish.render import Chart, ChartSet, draw_sets, stage, start_workers
from pipeline.publish.report import figure_folder, report_html, report_md, report_names
from pipeline.publish.sentences import page_name
from pipeline.publish.style import Style

if TYPE_CHECKING:
    from pipeline.results import Results


__all__ = ["Style", "write_publication"]

# The site columns charts read (names, batch, dates, position): other columns (e.g. the GIS
# file's) can change without changing a chart, and a chart cannot read what its key does not hash.
SITE_COLUMNS = (
    "site_id",
    "name",
    "name_ko",
    "batch",
    "groundbreaking",
    "inauguration",
    "center_lon",
    "center_lat",
    "geometry",
)


def start_chart_workers(jobs: int | None = None) -> None:
    """Start the chart workers ahead of :func:`write_publication` (:func:`render.start_workers`),
    each importing the chart modules meanwhile."""
    start_workers(jobs, preload=tuple(m.__name__ for m in (charts, comparison, maps)))


def write_publication(
    results: Results,
    out: Any,
    style: Style | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
    jobs: int | None = None,
    also: Sequence[Style] = (),
) -> dict[str, Path]:
    """Every chart, the GIS files, the report and ``explore.html`` into the staging folder ``out``.

    ``style``: the charts and report in its language (``report.html``, ``figures/``; Korean:
    ``report.ko.html``, ``figures/ko/``), ``explore.html`` opening in it; ``also``: the charts
    and report of further languages, each in its own files (``run`` passes Korean as PNG, what
    its report embeds). ``cache_dir`` (the run's ``--data-dir``/cache) keeps input checksums
    between runs; without it they are computed afresh. Nothing is written anywhere else (never
    into ``$HOME``). ``progress``: a bar over the charts and a line for any other step that takes
    over 2 s. ``jobs``: processes drawing charts (default one per core; 1 draws here), one pool
    for every language. A chart whose inputs and style did not change since ``out``'s folder was
    written is kept as it is (:mod:`pipeline.publish.render`). Returns the first style's charts.
    """
    matplotlib.use("Agg")  # files only; chosen here, not at import, so notebooks keep their backend
    styles = [style or Style(), *also]
    langs = [s.lang for s in styles]
    if len(set(langs)) < len(langs):
        raise ValueError(f"one chart set per language, got {langs}")
    read = {r.radiance: r for r in (*results.rasters, *getattr(results.comparison, "rasters", ()))}
    with stage("checksums of the input rasters", progress):
        checksums = input_checksums(
            sorted(read.values(), key=lambda r: r.month),
            cache_dir / HASH_CACHE_NAME if cache_dir else None,
        )
    shared = Shared(results, progress, Memo(cache_dir / "results" if cache_dir else None))
    sets = [
        ChartSet(chart_specs(results, st, checksums, shared), st, figure_folder(st.lang))
        for st in styles
    ]
    drawn = draw_sets(sets, out, results.verdict.get("data_kind"), jobs=jobs, progress=progress)
    with stage("GIS files", progress):
        write_gis(results, out)
    fonts = cache_dir / "fonts" if cache_dir else None
    names = korean_names(shared.borders()) if "ko" in langs else None
    for st, d in zip(styles, drawn, strict=True):
        page, md = report_names(st.lang)  # report.ko.* in Korean: the English report stays
        with stage(f"{page} and {md}", progress):
            out.write_text(page, report_html(results, d.pngs, checksums, st, fonts, names))
            out.write_text(md, report_md(results, list(d.pngs), checksums, st, names))
    with stage("explore.html", progress):
        out.write_text("explore.html", explore_html(results, styles[0], shared.borders(), fonts))
    folder = figure_folder(styles[0].lang)
    return {n: Path(f"{folder}/{n}") for n in drawn[0].pngs}


class Shared:
    """Inputs several charts (and ``explore.html``) share, made once and only when needed."""

    def __init__(self, results: Results, progress: bool = False, memo: Memo | None = None):
        self.results, self.progress, self.memo = results, progress, memo
        self.sites = chart_sites(results.sites)
        self._borders: list[Boundaries | None] = []
        self._comps: dict[str, Any] | None = None

    def borders(self) -> Boundaries | None:
        if not self._borders:
            with stage("county and province borders", self.progress):
                self._borders.append(boundaries(self.sites))
        return self._borders[0]

    def composites(self) -> dict[str, Any]:
        if self._comps is None:
            r, borders = self.results, self.borders()
            self._comps = {}
            if r.rasters:
                with stage("yearly composites for the maps", self.progress):
                    self._comps = site_composites(
                        r.rasters,
                        self.sites,
                        r.changes,
                        r.verdict["parameters"],
                        borders.bounds if borders is not None else None,
                        self.memo,
                    )
        return self._comps


def chart_sites(sites: Any) -> Any:
    """The site columns charts draw: what is drawn is what is hashed."""
    return sites[[c for c in SITE_COLUMNS if c in sites]]


def chart_specs(
    results: Results, style: Style, checksums: dict[str, str], shared: Shared | None = None
) -> list[Chart]:
    """The run's charts in report order: each chart's function, data and what its files depend on.

    Long site lists are drawn a page a chart (``small_multiples``, ``small_multiples_2``...)."""
    v, r = results.verdict, results
    shared = shared or Shared(results)
    sites = shared.sites
    rasters = (sorted(checksums.items()), boundary_digest())
    units = r.unit_changes

    def map_data() -> tuple[Any, ...] | None:
        c = shared.composites()
        if c.get("map") is None:
            return None
        return (c["map"], sites, r.changes, v, style, shared.borders(), c.get("off_map", ()))

    def county_data() -> tuple[Any, ...] | None:
        borders = shared.borders()
        if borders is None or units is None or not len(units):
            return None
        return (borders, units, sites, v, style)

    def pairs_data(page: slice) -> tuple[Any, ...] | None:
        pairs = shared.composites().get("pairs")
        return (pairs, v, style, page) if pairs and pairs[page] else None

    n = len(r.changes)  # long site lists: one chart a page, named name, name_2, name_3...

    specs = [
        Chart("verdict", charts.verdict_figure, lambda: (r.changes, v, style), (r.changes, v)),
        *[
            Chart(
                page_name("small_multiples", i),
                charts.small_multiples_figure,
                partial(lambda page: (r.site_months, r.changes, sites, v, style, page), sl),
                (r.site_months, r.changes, sites, v, sl),
                cost=8,
            )
            for i, sl in enumerate(charts.small_multiples_pages(n, style), 1)
        ],
        Chart("map", _map_figure, map_data, (rasters, sites, r.changes, v), cost=6),
        Chart(
            "county_change",
            maps.county_change_figure,
            county_data,
            (boundary_digest(), units, sites, v),
            cost=2,
        ),
        *[
            Chart(
                page_name("before_after", i),
                maps.before_after_figure,
                partial(pairs_data, sl),
                (rasters, sites, r.changes, v, sl),
                cost=7,
            )
            for i, sl in enumerate(maps.before_after_pages(n, style), 1)
        ],
    ]
    if r.sensitivity is not None and len(r.sensitivity):
        specs.append(
            Chart(
                "robustness",
                charts.robustness_figure,
                lambda: (r.sensitivity, v, style),
                (r.sensitivity, v),
            )
        )
    if r.comparison is not None:
        specs += comparison.chart_specs(r.comparison, v.get("data_kind"), style)
    return specs


def _map_figure(
    comp: Any, sites: Any, changes: Any, v: Any, style: Style, borders: Any, off: Any
) -> Any:
    """:func:`maps.map_figure` with positional arguments only (a job's arguments are a tuple)."""
    return maps.map_figure(comp, sites, changes, v, style, borders, off_map=off)
