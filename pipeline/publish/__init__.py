"""Publishing: every chart, the GIS files and both reports of a run, into its staging folder.

Modules: :mod:`~pipeline.publish.style` (one look, sizes, labels, saving),
:mod:`~pipeline.publish.charts` and :mod:`~pipeline.publish.maps` (pure chart functions),
:mod:`~pipeline.publish.composites` (the one place that reads rasters for charts),
:mod:`~pipeline.publish.report` (HTML and Markdown text), :mod:`~pipeline.publish.gis`.
Publishing reads :class:`pipeline.results.Results`; the core never imports this layer.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.pyplot as plt

from pipeline.provenance import HASH_CACHE_NAME, input_checksums
from pipeline.publish import charts, comparison, maps
from pipeline.publish.composites import boundaries, site_composites
from pipeline.publish.explore import explore_html
from pipeline.publish.gis import write_gis
from pipeline.publish.report import report_html, report_md, report_names
from pipeline.publish.sentences import page_name
from pipeline.publish.style import Style, save, styled

if TYPE_CHECKING:
    from pipeline.results import Results


__all__ = ["Style", "write_publication"]


def write_publication(
    results: Results,
    out: Any,
    style: Style | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Every chart, the GIS files, both reports and ``explore.html`` into the staging folder ``out``.

    ``cache_dir`` (the run's ``--data-dir``/cache) keeps input checksums between runs; without
    it they are computed afresh. Nothing is written anywhere else (never into ``$HOME``).
    ``progress``: a bar over the charts (publishing is most of a warm run's time).
    """
    from tqdm.auto import tqdm

    matplotlib.use("Agg")  # files only; chosen here, not at import, so notebooks keep their backend
    style = style or Style()
    v = results.verdict
    pngs: dict[str, bytes] = {}
    builders = _chart_builders(results, style)
    bar = tqdm(
        builders.items(),
        total=len(builders),
        desc="charts",
        unit="chart",
        disable=not progress,
        leave=False,
    )
    for name, build in bar:
        bar.set_postfix_str(name)
        with styled(style):
            fig = build()
            if fig is None:
                continue
            base = out.path(f"figures/{name}.png").with_suffix("")
            for fmt in style.formats:
                out.path(f"figures/{name}.{fmt}")
            if "png" not in style.formats:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=min(style.dpi, 200))
                pngs[name] = buf.getvalue()
            save(fig, base, style, v, title=f"nightlights: {name.replace('_', ' ')}")
            plt.close(fig)
            if "png" in style.formats:
                pngs[name] = base.with_suffix(".png").read_bytes()
    write_gis(results, out)
    read = {r.radiance: r for r in (*results.rasters, *getattr(results.comparison, "rasters", ()))}
    checksums = input_checksums(
        sorted(read.values(), key=lambda r: r.month),
        cache_dir / HASH_CACHE_NAME if cache_dir else None,
    )
    page, md = report_names(style.lang)  # report.ko.* in Korean: the English report stays
    out.write_text(page, report_html(results, pngs, checksums, style))
    out.write_text(md, report_md(results, list(pngs), checksums, style))
    out.write_text("explore.html", explore_html(results, style, boundaries(results.sites)))
    return {n: Path(f"figures/{n}") for n in pngs}


def _chart_builders(results: Results, style: Style) -> dict[str, Callable[[], plt.Figure | None]]:
    v, p = results.verdict, results.verdict["parameters"]
    comps: dict[str, Any] = {}
    borders = boundaries(results.sites)

    def composites() -> dict[str, Any]:
        if not comps and results.rasters:
            extent = borders.bounds if borders is not None else None
            comps.update(
                site_composites(results.rasters, results.sites, results.changes, p, extent)
            )
        return comps

    def map_fig() -> plt.Figure | None:
        c = composites().get("map")
        return (
            maps.map_figure(
                c,
                results.sites,
                results.changes,
                v,
                style,
                borders,
                off_map=composites().get("off_map", ()),
            )
            if c is not None
            else None
        )

    def county_fig() -> plt.Figure | None:
        units = results.unit_changes
        if borders is None or units is None or not len(units):
            return None
        return maps.county_change_figure(borders, units, results.sites, v, style)

    def before_after(page: slice) -> plt.Figure | None:
        pairs = composites().get("pairs")
        return maps.before_after_figure(pairs, v, style, page) if pairs and pairs[page] else None

    def small_multiples(page: slice) -> plt.Figure:
        return charts.small_multiples_figure(
            results.site_months, results.changes, results.sites, v, style, page
        )

    n = len(results.changes)  # long site lists: one chart a page, named name, name_2, name_3...
    builders: dict[str, Callable[[], plt.Figure | None]] = {
        "verdict": lambda: charts.verdict_figure(results.changes, v, style),
        **{
            page_name("small_multiples", i): partial(small_multiples, sl)
            for i, sl in enumerate(charts.small_multiples_pages(n, style), 1)
        },
        "map": map_fig,
        "county_change": county_fig,
        **{
            page_name("before_after", i): partial(before_after, sl)
            for i, sl in enumerate(maps.before_after_pages(n, style), 1)
        },
    }
    if results.sensitivity is not None and len(results.sensitivity):
        builders["robustness"] = lambda: charts.robustness_figure(results.sensitivity, v, style)
    if results.comparison is not None:
        builders.update(comparison.chart_builders(results.comparison, v, style))
    return builders
