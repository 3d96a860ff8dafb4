"""Every chart fits its page and its canvas: English 183 mm and 89 mm, Korean 89 mm and 183 mm.

Measured from Matplotlib's own text extents after a draw: no visible text outside the figure,
no two texts over each other (the synthetic watermark excepted: it is meant to lie under all),
no marker outside the figure, no text over a marker, no two site markers over each other, and
no figure taller than a journal page (247 mm).

Markers are measured as Matplotlib draws them: each marker's path in its style's transform,
scaled by its size in points, at its transformed position, widened by half its edge line (with
the edge's own join, so a diamond's mitred corner counts). A label may not cover even its own
marker: labels carry a white halo drawn above the markers, so a label over its marker would
erase the marker's edge, and the leader line already ties the two.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.text import Text
from matplotlib.transforms import Affine2D

from pipeline.publish import chart_specs, comparison
from pipeline.publish.render import Chart
from pipeline.publish.report import report_md
from pipeline.publish.style import MM_PER_INCH, Style, styled
from tests.pubdata import published

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")

MAX_HEIGHT_MM = 247.0
TOUCH = 1.0  # pixels two shapes may share (at the tests' 100 dpi): more is an overlap
STYLES = [
    Style(width_mm=183, lang="en", dpi=100),
    Style(width_mm=89, lang="en", dpi=100),
    Style(width_mm=89, lang="ko", dpi=100),
    Style(width_mm=183, lang="ko", dpi=100),
]
IDS = [f"{s.lang}-{s.width_mm:g}mm" for s in STYLES]


def problems(fig: plt.Figure) -> list[str]:
    """What does not fit: text or a marker outside the figure, text over text or a marker, site
    markers over each other, a figure too tall."""
    # laid out and placed as a draw does, without painting pixels (what publishing's own layout
    # does, pipeline.publish.style.one_layout): every text extent and marker is the same as after
    # fig.canvas.draw(), checked on every chart of the four styles; the paint took 40% of the time
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = fig.bbox
    found = []
    height_mm = fig.get_figheight() * MM_PER_INCH
    if height_mm > MAX_HEIGHT_MM + 0.01:
        found.append(f"{height_mm:.0f} mm tall")
    ticks, drawn = set(), set()
    for ax in fig.axes:
        for axis in ax._axis_map.values():  # the ticks Matplotlib draws: those in the view
            every = axis.get_major_ticks() + axis.get_minor_ticks()
            ticks |= {id(lab) for t in every for lab in (t.label1, t.label2)}
            if ax.get_visible() and axis.get_visible():
                drawn |= {id(lab) for t in axis._update_ticks() for lab in (t.label1, t.label2)}
    texts: list[tuple[Text, Any]] = []
    for t in fig.findobj(Text):
        if id(t) in ticks and id(t) not in drawn:
            continue
        if not t.get_visible() or not t.get_text().strip() or t.get_gid() == "synthetic-watermark":
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        ext = Text.get_window_extent(t, renderer)  # an annotation's words, not its arrow
        if ext.width == 0 or ext.height == 0:
            continue
        texts.append((t, ext))
        if ext.x0 < box.x0 - 1 or ext.x1 > box.x1 + 1 or ext.y0 < box.y0 - 1 or ext.y1 > box.y1 + 1:
            found.append(f"outside: {t.get_text()!r}")
    for (a, ea), (b, eb) in itertools.combinations(texts, 2):
        w = min(ea.x1, eb.x1) - max(ea.x0, eb.x0)
        h = min(ea.y1, eb.y1) - max(ea.y0, eb.y0)
        if w > TOUCH and h > TOUCH:  # more than a pixel's touch
            found.append(f"overlap: {a.get_text()!r} / {b.get_text()!r}")
    drawn_marks = marks(fig)
    for t, e in texts:
        inner = shapely.box(e.x0, e.y0, e.x1, e.y1).buffer(-TOUCH / 2, join_style="mitre")
        for m in drawn_marks:
            if m.shape.intersects(inner):
                found.append(f"over a marker: {t.get_text()!r} / {m.name}")
                break
    for m in drawn_marks:
        x0, y0, x1, y1 = m.shape.bounds  # shrunk by half a pixel: a pixel's leeway, as for text
        if x0 < box.x0 or x1 > box.x1 or y0 < box.y0 or y1 > box.y1:
            found.append(f"marker outside: {m.name}")
    sites = [m for m in drawn_marks if m.site]
    for a, b in itertools.combinations(sites, 2):
        if a.shape.intersects(b.shape):
            found.append(f"markers overlap: {a.name} / {b.name}")
    return found


@dataclass(frozen=True)
class Mark:
    """One drawn marker: its outline with its edge, in pixels, shrunk by half of :data:`TOUCH`
    (two marks that still meet overlap by more than a touch)."""

    shape: shapely.Polygon
    name: str
    site: bool  # a site on a map (gid 'sites-...'): no two may overlap


JOINS = {"miter": "mitre", "round": "round", "bevel": "bevel"}


def marks(fig: plt.Figure) -> list[Mark]:
    """Every marker drawn in ``fig``: Line2D markers and scatter points (PathCollections with
    sizes), skipping points clipped away; legend handles included."""
    px = fig.dpi / 72
    found = []

    def add(outline: Any, edge: float, join: str, at: np.ndarray, name: str, clip: Any) -> None:
        for x, y in at:
            if not np.isfinite([x, y]).all() or (clip is not None and not clip.contains(x, y)):
                continue
            for ring in outline.to_polygons(Affine2D().translate(x, y)):
                if len(ring) >= 3:
                    grown = shapely.Polygon(ring).buffer(
                        edge - TOUCH / 2, join_style=JOINS[join], mitre_limit=4.0
                    )
                    site = name.startswith("sites-")
                    found.append(Mark(grown, f"{name}@({x:.0f},{y:.0f})", site))

    for ln in fig.findobj(Line2D):
        marker = MarkerStyle(ln.get_marker())
        if not _shown(ln) or not ln.get_markersize() or marker.get_path().vertices.size == 0:
            continue
        unit = marker.get_path().transformed(marker.get_transform())
        outline = unit.transformed(Affine2D().scale(ln.get_markersize() * px))
        at = ln.get_transform().transform(np.asarray(ln.get_xydata(), float))[_every(ln)]
        clip = ln.get_clip_box() if ln.get_clip_on() else None
        edge = ln.get_markeredgewidth() * px / 2
        add(outline, edge, marker.get_joinstyle(), at, ln.get_gid() or "marker", clip)
    for pc in fig.findobj(PathCollection):
        if not _shown(pc) or not len(pc.get_sizes()) or not len(pc.get_offsets()):
            continue  # without sizes its paths are shapes in data units (counties), not markers
        at = pc.get_offset_transform().transform(np.asarray(pc.get_offsets(), float))
        paths, scales, widths = pc.get_paths(), pc.get_transforms(), pc.get_linewidths()
        clip = pc.get_clip_box() if pc.get_clip_on() else None
        for i, xy in enumerate(at):
            outline = paths[i % len(paths)].transformed(Affine2D(scales[i % len(scales)]))
            edge = float(widths[i % len(widths)]) * px / 2
            join = str(pc.get_joinstyle() or "round")
            add(outline, edge, join, xy[None], pc.get_gid() or "scatter", clip)
    return found


def _every(ln: Line2D) -> Any:
    """The points a line marks (a legend handle marks the middle one of three)."""
    every = ln.get_markevery()
    if every is None:
        return slice(None)
    if isinstance(every, int):
        return slice(None, None, every)
    if isinstance(every, tuple):
        return slice(every[0], None, every[1])
    assert not isinstance(every, float), "markevery as a fraction of the line: not measured"
    return every if isinstance(every, slice) else np.asarray(every)


def _shown(artist: Any) -> bool:
    return artist.get_visible() and (artist.axes is None or artist.axes.get_visible())


def _builders(specs: list[Chart]) -> dict[str, Callable[[], plt.Figure | None]]:
    """Each chart's figure, made as publishing makes it (its data, then its function)."""

    def build(c: Chart) -> plt.Figure | None:
        args = c.data()
        return None if args is None else c.draw(*args)

    return {c.name: (lambda c=c: build(c)) for c in specs}


def _chart_builders(results, style: Style) -> dict[str, Callable[[], plt.Figure | None]]:
    return _builders(chart_specs(results, style, {}))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return published(tmp_path_factory)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from tests.test_compare import planted_comparison

    return planted_comparison(tmp_path_factory, effect=0.3)[0]


def _check(builders: dict[str, Callable[[], plt.Figure | None]], style: Style) -> dict[str, list]:
    matplotlib.use("Agg")
    bad = {}
    for name, build in builders.items():
        with styled(style):
            fig = build()
            if fig is None:
                continue
            try:
                found = problems(fig)
            finally:
                plt.close(fig)
        if found:
            bad[name] = found
    return bad


@pytest.mark.parametrize("style", STYLES, ids=IDS)
def test_every_chart_fits(run, style):
    results, _ = run
    assert not _check(_chart_builders(results, style), style)


@pytest.mark.parametrize("style", STYLES, ids=IDS)
def test_comparison_charts_fit(compared, run, style):
    results, _ = run
    specs = comparison.chart_specs(compared, results.verdict.get("data_kind"), style)
    assert not _check(_builders(specs), style)


# English at one column (three pages) in the fast set; the same check at two columns and in
# Korean (two and three pages of the same charts, 5-7 s each) with the slow tests; every width and
# language is checked on the short list above
LONG = [
    pytest.param(STYLES[0], id=IDS[0], marks=pytest.mark.slow),
    pytest.param(STYLES[1], id=IDS[1]),
    pytest.param(STYLES[2], id=IDS[2], marks=pytest.mark.slow),
]


@pytest.mark.parametrize("style", LONG)
def test_long_site_lists_become_pages_that_fit(run, style):
    """55 sites (the 5 of the small run, eleven times): several pages, each one a page tall."""
    results, _ = run
    copies = range(11)
    sites = pd.concat(
        [results.sites.assign(site_id=results.sites["site_id"] + f"_{i}") for i in copies]
    )
    changes = pd.concat(
        [results.changes.assign(site_id=results.changes["site_id"] + f"_{i}") for i in copies]
    )
    months = pd.concat(
        [
            results.site_months.assign(site_id=results.site_months["site_id"] + f"_{i}")
            for i in copies
        ]
    )
    many = replace(results, sites=sites, changes=changes, site_months=months)
    builders = _chart_builders(many, style)
    pages = [n for n in builders if n.startswith("small_multiples")]
    assert pages[0] == "small_multiples" and len(pages) > 1
    assert not _check(
        {n: builders[n] for n in builders if n.startswith(("small", "before"))}, style
    )


def test_reports_show_every_page_in_order(run):
    results, _ = run
    names = ["small_multiples_2", "verdict", "small_multiples", "before_after"]
    md = report_md(results, names, {}, Style())
    at = [
        md.index(f"](figures/{n}.png)") for n in ("verdict", "small_multiples", "small_multiples_2")
    ]
    assert at == sorted(at) and md.index("](figures/before_after.png)") > at[-1]
    assert "Small multiples, part 2" in md and "Continued from part 1" in md
    assert "월별 복사휘도 (2)" in report_md(results, names, {}, Style(lang="ko"))


def _one_marker(draw: Callable[[plt.Axes], object]) -> list[str]:
    """What :func:`problems` finds on a 2-inch, 100 dpi figure whose axes fill it: a data unit
    is 2 pixels, the markers' centre at (50, 50) is pixel (100, 100)."""
    matplotlib.use("Agg")
    fig = plt.figure(figsize=(2, 2), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, 100), ylim=(0, 100))
    ax.xaxis.set_visible(False)  # no tick labels
    ax.yaxis.set_visible(False)
    draw(ax)
    try:
        return [p.split(":")[0] for p in problems(fig)]
    finally:
        plt.close(fig)


def _mark(marker: str, x: float = 50, gid: str | None = None, **kw: Any) -> Any:
    return lambda ax: ax.plot(x, 50, marker=marker, ms=10, mew=1, ls="none", gid=gid, **kw)


def _word(x: float) -> Any:
    return lambda ax: ax.text(x, 50, "word", ha="left", va="center", fontsize=8)


@pytest.mark.parametrize(
    "parts,found",
    [
        # a 10 pt diamond reaches 0.71 * 10 pt = 9.8 px right of its centre, its edge 0.7 px more
        ((_mark("D"), _word(56)), []),  # text from 12 px
        ((_mark("D"), _word(54)), ["over a marker"]),  # from 8 px: on the diamond's tip
        ((_mark("s"), _word(54)), []),  # a square of that size ends at 7.6 px
        # a scatter point of 100 pt²: 10 pt across, 6.9 px and half its 1 pt edge (0.7 px) to its side
        ((lambda ax: ax.scatter([50], [50], s=100, lw=1), _word(54)), []),
        ((lambda ax: ax.scatter([50], [50], s=100, lw=1), _word(52.5)), ["over a marker"]),
        # a legend handle's line marks only its middle point; the text starts 2 px right of x=46
        ((lambda ax: ax.plot([46, 70, 90], [50] * 3, marker="o", markevery=[1]), _word(47)), []),
        (
            (lambda ax: ax.plot([46, 70, 90], [50] * 3, marker="o", markevery=[0]), _word(47)),
            ["over a marker"],
        ),
        # two site squares 7.6 px from centre to side: 16 px apart clear, 14 px apart overlap
        ((_mark("s", 50, "sites-a"), _mark("s", 58, "sites-b")), []),
        ((_mark("s", 50, "sites-a"), _mark("s", 57, "sites-b")), ["markers overlap"]),
        ((_mark("s", 50), _mark("s", 57)), []),  # markers of a series may touch: not sites
        ((_mark("D", 96, clip_on=False),), ["marker outside"]),  # 8 px from the right edge
    ],
)
def test_the_check_measures_markers_as_drawn(parts, found):
    assert _one_marker(lambda ax: [p(ax) for p in parts]) == found
