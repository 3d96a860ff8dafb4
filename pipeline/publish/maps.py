"""Maps: the sites over the night-light composite and the borders, the county change, and
before/after windows.

Inputs
    :class:`~pipeline.publish.composites.Composite` arrays and
    :class:`~pipeline.publish.composites.Boundaries` (both made in
    :mod:`pipeline.publish.composites`), the site, change and county-change tables, the verdict.
Outputs
    Figures. No web tiles (works offline, nothing to attribute but the data); nothing is
    read or written here.

Longer than most modules because the three map charts share their projection, borders, batch
markers and colour scales, which live here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch
from matplotlib.path import Path as MplPath

from pipeline.publish.charts import (
    OUTLINE,
    PAGE_HEIGHT_MM,
    class_handles,
    site_label,
    site_pages,
)
from pipeline.publish.composites import Boundaries, Composite
from pipeline.publish.labels import clusters, place_labels, spread
from pipeline.publish.style import (
    BATCH_MARKERS,
    BORDER_COLORS,
    CLAIM_COLOR,
    CLASS_COLORS,
    CLASS_MARKERS,
    CLASS_ORDER,
    DIVERGING,
    INVALID_HATCH_COLOR,
    MM_PER_INCH,
    NO_BATCH_MARKER,
    Style,
    finish,
    one_layout,
)
from pipeline.read.sites import batch_labels, batch_order


def _norm(arrays: Sequence[np.ndarray]) -> LogNorm:
    """Log scale from the dark background (2nd percentile) to the brightest pixel: nothing saturates."""
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays] or [np.array([1.0])])
    vmax = float(values.max()) if values.size else 1.0
    vmin = max(0.05, float(np.nanpercentile(values, 2)) if values.size else 0.05)
    return LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))


def _colorbar_ticks(cb: Any, norm: LogNorm) -> None:
    lo, hi = float(norm.vmin or 0.0), float(norm.vmax or np.inf)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
    cb.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    cb.ax.minorticks_off()


def _image(ax: plt.Axes, comp: Composite, norm: LogNorm, lat: float | None = None) -> Any:
    cmap = plt.get_cmap("Greys").with_extremes(bad=(0, 0, 0, 0))
    ax.set_facecolor("white")
    ax.add_patch(
        plt.Rectangle(
            (0, 0),
            1,
            1,
            transform=ax.transAxes,
            fc="white",
            ec=INVALID_HATCH_COLOR,
            hatch="////",
            lw=0,
            zorder=0,
        )
    )
    im = ax.imshow(
        np.clip(comp.data, norm.vmin, None),
        extent=comp.extent,
        cmap=cmap,
        norm=norm,
        zorder=1,
        # PNG as "nearest" (same bytes); SVG and PDF embed the composite's own pixels instead of
        # a 300-dpi resampling: 5-20 % smaller files, 15-20 % less drawing time, crisp pixels
        interpolation="none",
        origin="upper",
    )
    ax.set_aspect(1 / np.cos(np.deg2rad(np.mean(comp.extent[2:]) if lat is None else lat)))
    return im


def _outline(ax: plt.Axes, geom: Any, color: str = CLAIM_COLOR, lw: float = 0.9) -> None:
    polys = getattr(geom, "geoms", [geom])
    for p in polys:
        x, y = p.exterior.xy
        ax.plot(x, y, color=color, lw=lw, path_effects=OUTLINE, zorder=4)


# --------------------------------------------------------------------------- 3. map


def _rings(geom: Any) -> list[np.ndarray]:
    """Every exterior and interior ring of a (multi)polygon as an (n, 2) array."""
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        out.append(np.asarray(poly.exterior.coords)[:, :2])
        out += [np.asarray(r.coords)[:, :2] for r in poly.interiors]
    return out


def draw_borders(ax: plt.Axes, b: Boundaries, style: Style, zorder: float = 2) -> None:
    """County lines, province borders and the country outline (line collections with gids)."""
    lw = 0.6 if style.kind == "paper" else 1.0
    layers = [
        ("county", [r for g in b.counties.geometry for r in _rings(g)], 0.25 * lw),
        (
            "province",
            [r for g in b.provinces.geometry for r in _rings(g)] if b.provinces is not None else [],
            0.6 * lw,
        ),
        ("country", _rings(b.country), 1.0 * lw),
    ]
    for k, (name, rings, width) in enumerate(layers):
        if rings:
            ax.add_collection(
                LineCollection(
                    rings,
                    colors=BORDER_COLORS[name],
                    linewidths=width,
                    zorder=zorder + 0.1 * k,
                    gid=f"{name}-borders",
                    capstyle="round",
                    joinstyle="round",
                ),
                autolim=False,
            )


def batch_markers(sites: pd.DataFrame) -> dict[str | None, str]:
    """A marker per batch label, in batch order (the same in the map and the county map); sites
    without a batch (None) get the plain circle."""
    labels = batch_labels(sites)
    markers: dict[str | None, str] = {
        b: BATCH_MARKERS[i % len(BATCH_MARKERS)] for i, b in enumerate(batch_order(labels))
    }
    if labels.isna().any():
        markers[None] = NO_BATCH_MARKER
    return markers


def _site_frame(sites: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    cls = changes.set_index("site_id")["class"]
    return pd.DataFrame(sites.drop(columns="geometry", errors="ignore")).assign(
        klass=sites["site_id"].map(cls).astype(object).fillna("insufficient_data").to_numpy(),
        batch_label=batch_labels(sites).to_numpy(),
    )


SITE_EDGE = 0.6  # site markers' edge line, points


def fixed_layout(fig: plt.Figure) -> None:
    """Lay the figure out now, as saving it would (:func:`style.one_layout`: at the saving
    resolution, positions snapped), and keep that layout: what is placed in display
    coordinates afterwards (markers kept apart, labels) stays where it was placed."""
    dpi = plt.rcParams["savefig.dpi"]
    with one_layout(fig, fig.dpi if dpi == "figure" else float(dpi)):
        pass
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have it (files only)
    for ax in fig.axes:  # a map's fixed aspect shrinks its box, as the next draw would
        locator = ax.get_axes_locator()
        ax.apply_aspect(locator(ax, renderer) if locator is not None else None)


class Placed(NamedTuple):
    """Where a map's site markers are drawn (lon, lat per site), half each one's width (points)
    and the groups moved apart from one place (:func:`pipeline.publish.labels.clusters`)."""

    at: np.ndarray
    half: np.ndarray
    groups: np.ndarray


def _site_shapes(
    df: pd.DataFrame, markers: dict[str | None, str], ms: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each site's marker as Matplotlib draws it, in points, edge line included: half its width
    (labels keep out of that square) and its outer radius (other markers keep out of that
    circle). A diamond reaches 0.71 of its size from its centre, a square 0.5 wide."""
    half, outer = np.zeros(len(df)), np.zeros(len(df))
    for b, m in markers.items():
        style = MarkerStyle(m)
        v = np.asarray(style.get_path().transformed(style.get_transform()).vertices, float) * ms
        rows = _of_batch(df, b)
        half[rows] = np.abs(v).max() + SITE_EDGE / 2
        outer[rows] = np.hypot(*v.T).max() + SITE_EDGE / 2
    return half, outer


def _plot_sites(
    ax: plt.Axes, df: pd.DataFrame, markers: dict[str | None, str], ms: float, by_class: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Each site's marker, moved apart from any it would cover (:func:`labels.spread`); returns
    where each is drawn (lon, lat per row) and the groups moved apart (:func:`labels.clusters`).
    Call it once the layout is fixed: the markers are kept apart in points on the page. A marker
    moved more than a quarter of its size is tied back to its site by a thin line."""
    px = ax.figure.dpi / 72
    site = df[["center_lon", "center_lat"]].to_numpy(float)
    xy = ax.transData.transform(site)
    outer = _site_shapes(df, markers, ms)[1] * px
    at = spread(xy[:, 0], xy[:, 1], outer)
    lonlat = ax.transData.inverted().transform(at)
    for i in np.flatnonzero(np.hypot(*(at - xy).T) > ms * px / 4):
        ax.plot(
            [site[i, 0], lonlat[i, 0]],
            [site[i, 1], lonlat[i, 1]],
            color="black",
            lw=0.35,
            zorder=4.6,
            solid_capstyle="butt",
            gid=f"tie-{df['site_id'].iat[i]}",
        )
    for b, m in markers.items():
        rows = _of_batch(df, b)
        for c in CLASS_ORDER:
            these = rows & (df["klass"] == c).to_numpy(bool) if by_class else rows
            if these.any():
                ax.plot(
                    lonlat[these, 0],
                    lonlat[these, 1],
                    ls="none",
                    marker=m,
                    mec="black",
                    mew=SITE_EDGE,
                    ms=ms,
                    mfc=CLASS_COLORS[c] if by_class else "white",
                    zorder=5,
                    gid=f"sites-{'none' if b is None else b}",
                )
            if not by_class:
                break
    return lonlat, clusters(xy[:, 0], xy[:, 1], outer)


def _of_batch(df: pd.DataFrame, label: str | None) -> np.ndarray:
    labels = df["batch_label"]
    return (labels.isna() if label is None else labels == label).to_numpy(bool)


def _batch_handles(df: pd.DataFrame, markers: dict[str | None, str], style: Style) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            ls="none",
            marker=m,
            mfc="#DDDDDD",
            mec="black",
            mew=0.5,
            ms=style.scale(5),
            label=style.label("batch_n", name=style.batch_name(b), n=int(_of_batch(df, b).sum())),
        )
        for b, m in markers.items()
    ]


ATTEMPTS = 5  # drawings of the map at most: each numbers the sites whose names did not fit


def map_figure(
    comp: Composite,
    sites: pd.DataFrame,
    changes: pd.DataFrame,
    verdict: Mapping[str, Any],
    style: Style,
    borders: Boundaries | None = None,
    off_map: Sequence[str] = (),
) -> plt.Figure:
    """Every site (marker: batch, colour: class) over the night-light composite and the borders,
    each labelled with a leader line to its marker (:func:`pipeline.publish.labels.place_labels`).

    Where a name cannot be placed beside its own marker without colliding (crowded areas on
    a column-width map), the site is numbered instead and the number explained in a key.
    """
    if len(off_map):  # sites off the rasters: named in one line on the map, not drawn
        sites = sites[~sites["site_id"].astype(str).isin(set(off_map))]
    df = _site_frame(sites, changes)
    names = [site_label(r, style) for r in df.itertuples()]
    numbered: list[int] = []
    for attempt in range(ATTEMPTS):
        fig, ax, placed = _map_base(comp, df, verdict, style, borders, _key(df, names, numbered))
        if len(off_map):
            shown = ", ".join(list(off_map)[:8]) + (
                f" (+{len(off_map) - 8})" if len(off_map) > 8 else ""
            )
            ax.text(
                0.01,
                0.01,
                style.label("off_map", ids=shown),
                transform=ax.transAxes,
                ha="left",
                va="bottom",
                fontsize=style.small_size,
                gid="off-map",
                zorder=6,
                bbox={"boxstyle": "square,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        bad = label_sites(ax, df, placed, _texts(df, names, numbered), style.small_size)
        if not bad or set(bad) <= set(numbered) or attempt == ATTEMPTS - 1:
            return fig
        plt.close(fig)
        numbered = sorted(set(numbered) | set(bad))
    raise AssertionError("unreachable")


def _numbers(df: pd.DataFrame, numbered: Sequence[int]) -> dict[int, int]:
    """Key numbers: by batch, then north to south."""
    rank = {b: k for k, b in enumerate(batch_order(df["batch_label"]))}
    order = sorted(
        numbered,
        key=lambda i: (rank.get(df["batch_label"].iat[i], len(rank)), -df["center_lat"].iat[i], i),
    )
    return {i: k + 1 for k, i in enumerate(order)}


def _texts(df: pd.DataFrame, names: Sequence[str], numbered: Sequence[int]) -> list[str]:
    num = _numbers(df, numbered)
    return [str(num[i]) if i in num else t for i, t in enumerate(names)]


def _key(df: pd.DataFrame, names: Sequence[str], numbered: Sequence[int]) -> list[tuple[int, str]]:
    """(row, 'number name') of the numbered sites, in number order."""
    num = _numbers(df, numbered)
    return [(i, f"{num[i]} {names[i]}") for i in sorted(num, key=lambda i: num[i])]


def _map_base(
    comp: Composite,
    df: pd.DataFrame,
    verdict: Mapping[str, Any],
    style: Style,
    borders: Boundaries | None,
    key: list[tuple[int, str]],
) -> tuple[plt.Figure, plt.Axes, Placed]:
    """The map without labels, its layout fixed, and where its markers are; ``key`` adds the
    numbered sites' legend."""
    w, e, s, n = comp.extent
    aspect = (n - s) / ((e - w) * np.cos(np.deg2rad((n + s) / 2)))
    key_cols = max(1, int(style.width_mm // (28 if style.kind == "paper" else 42)))
    key_h = -(-len(key) // key_cols) * style.small_size * 1.55 / 72 + (0.1 if key else 0)
    fig, ax = plt.subplots(
        figsize=(style.width_in, min(style.width_in * aspect * 0.95 + 1.4, 10.0) + key_h)
    )
    norm = _norm([comp.data])
    im = _image(ax, comp, norm)
    if borders is not None:
        draw_borders(ax, borders, style)
    markers = batch_markers(df)
    ms = style.scale(4.0 if style.width_mm < 120 else 5.5)
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_xlabel(style.label("lon"))
    ax.set_ylabel(style.label("lat"))
    ax.set_title(style.label("map_title", y=comp.year), weight="bold")
    cb = fig.colorbar(
        im, ax=ax, orientation="horizontal", shrink=0.6, aspect=35, pad=0.02, location="bottom"
    )
    _colorbar_ticks(cb, norm)
    cb.set_label(style.label("composite", y=comp.year))
    counts = verdict.get("counts")
    handles = [
        *_batch_handles(df, markers, style),
        *[
            Patch(fc=CLASS_COLORS[c], ec="black", lw=0.5, label=h.get_label())
            for c, h in zip(
                [c for c in CLASS_ORDER if not counts or counts.get(c)],
                class_handles(style, counts),
                strict=True,
            )
        ],
        Patch(fc="white", ec=INVALID_HATCH_COLOR, hatch="////", label=style.label("invalid")),
    ]
    if borders is not None:
        handles.append(
            Line2D([], [], color=BORDER_COLORS["province"], lw=0.8, label=style.label("borders"))
        )
    if key:
        entries = [
            Line2D(
                [],
                [],
                ls="none",
                marker=markers.get(df["batch_label"].iat[i], NO_BATCH_MARKER),
                mfc=CLASS_COLORS[df["klass"].iat[i]],
                mec="black",
                mew=0.4,
                ms=style.scale(3.5),
                label=text,
            )
            for i, text in key
        ]
        # legends fill column by column, so the numbers run down each column
        fig.legend(
            handles=entries,
            ncol=key_cols,
            handletextpad=0.2,
            columnspacing=0.8,
            handlelength=0.8,
            labelspacing=0.25,
            fontsize=style.small_size,
            borderaxespad=0.2,
        ).set_gid("site-key")
    fig.legend(
        handles=handles,
        ncol=style.legend_columns(len(handles)),
        handletextpad=0.4,
        columnspacing=1.0,
    )
    finish(fig, verdict, style)
    fixed_layout(fig)  # then place markers and labels in its final coordinates
    at, groups = _plot_sites(ax, df, markers, ms)
    return fig, ax, Placed(at, _site_shapes(df, markers, ms)[0], groups)


def label_sites(
    ax: plt.Axes,
    df: pd.DataFrame,
    placed: Placed,
    texts: Sequence[str],
    size: float,
) -> list[int]:
    """Labels that collide with nothing, each nearer its own marker than any other, tied to it by a
    line; returns the rows whose label breaks a rule anyway (crowded: number them instead)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have it (files only)
    xy = ax.transData.transform(placed.at)
    sizes = []
    fonts = [
        size - 1 if text.isdigit() else size for text in texts
    ]  # key numbers: smaller, to fit crowds
    for text, font in zip(texts, fonts, strict=True):
        t = ax.text(0, 0, text, fontsize=font)
        bb = t.get_window_extent(renderer)
        sizes.append((bb.width, bb.height))
        t.remove()
    frame = ax.get_window_extent(renderer)
    boxes, costs = place_labels(
        list(xy[:, 0]),
        list(xy[:, 1]),
        sizes,
        placed.half * fig.dpi / 72,
        (frame.x0, frame.y0, frame.x1, frame.y1),
        margin=0.5 * fig.dpi / 72,
        groups=placed.groups,
    )
    to_data = ax.transData.inverted()
    for (x, y), (mx, my), box, text, font, sid in zip(
        xy, placed.at, boxes, texts, fonts, df["site_id"], strict=True
    ):
        x0, y0, x1, y1 = box
        cx, cy = min(max(x, x0), x1), min(max(y, y0), y1)  # the box point nearest the marker
        (lx, ly), (tx, ty) = to_data.transform([(cx, cy), (x0, y0)])
        ax.plot(
            [mx, lx],
            [my, ly],
            color="black",
            lw=0.35,
            zorder=4.5,
            solid_capstyle="butt",
            gid=f"leader-{sid}",
        )
        t = ax.text(
            tx,
            ty,
            text,
            fontsize=font,
            ha="left",
            va="bottom",
            zorder=6,
            path_effects=OUTLINE,
            gid=f"label-{sid}",
        )
        t.set_in_layout(False)
    return [i for i, c in enumerate(costs) if c]


# --------------------------------------------------------------------------- 3b. county change


def _polygon_path(geom: Any) -> MplPath:
    return MplPath.make_compound_path(*[MplPath(r, closed=True) for r in _rings(geom)])


def county_change_figure(
    borders: Boundaries,
    unit_changes: pd.DataFrame,
    sites: pd.DataFrame,
    verdict: Mapping[str, Any],
    style: Style,
) -> plt.Figure:
    """Every county coloured by its change in light (``unit_changes``: unit_id, log_change), sites on top.

    Symmetric diverging scale around no change, as wide as the largest county change (at
    least the site threshold), labelled in percent; counties without a value hatched.
    """
    counties = borders.counties
    change = unit_changes.assign(unit_id=unit_changes["unit_id"].astype(str)).set_index("unit_id")[
        "log_change"
    ]
    values = counties["unit_id"].astype(str).map(change).to_numpy(dtype=float)
    thr = float(verdict["parameters"]["threshold"])
    finite = values[np.isfinite(values)]
    lim = max(thr, float(np.nanpercentile(np.abs(finite), 98)) if finite.size else thr)
    norm = Normalize(-lim, lim)
    cmap = LinearSegmentedColormap.from_list("tol_burd", DIVERGING)
    w, s, e, n = borders.bounds
    aspect = (n - s) / ((e - w) * np.cos(np.deg2rad((n + s) / 2)))
    fig, ax = plt.subplots(
        figsize=(style.width_in, min(style.width_in * aspect * 0.95 + 1.2, 10.0))
    )
    ax.set_facecolor("white")
    ok = np.isfinite(values)
    paths = [_polygon_path(g) for g in counties.geometry]
    filled = PathCollection(
        [p for p, k in zip(paths, ok, strict=True) if k],
        cmap=cmap,
        norm=norm,
        edgecolors="none",
        zorder=1,
        gid="county-change",
    )
    filled.set_array(values[ok])
    ax.add_collection(filled, autolim=False)
    if (~ok).any():
        ax.add_collection(
            PathCollection(
                [p for p, k in zip(paths, ok, strict=True) if not k],
                facecolors="white",
                edgecolors=INVALID_HATCH_COLOR,
                linewidths=0,
                hatch="////",
                zorder=1,
                gid="county-no-data",
            ),
            autolim=False,
        )
    draw_borders(ax, borders, style)
    df = _site_frame(sites, pd.DataFrame({"site_id": [], "class": []}))
    markers = batch_markers(df)
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_aspect(1 / np.cos(np.deg2rad((n + s) / 2)))
    ax.set_xlabel(style.label("lon"))
    ax.set_ylabel(style.label("lat"))
    b, t = verdict["baseline_year"], verdict["target_year"]
    ax.set_title(style.label("county_title", b=b, t=t), weight="bold")
    cb = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        orientation="horizontal",
        shrink=0.6,
        aspect=35,
        pad=0.02,
        location="bottom",
    )
    ticks = [
        p
        for p in (-90, -75, -50, -20, -10, 0, 10, 25, 50, 100, 200, 400)
        if abs(np.log1p(p / 100)) <= lim
    ]
    cb.set_ticks(
        [np.log1p(p / 100) for p in ticks], labels=[f"{p:+d}%" if p else "0%" for p in ticks]
    )
    cb.ax.minorticks_off()
    cb.set_label(style.label("county_axis", b=b, t=t))
    handles = [
        *_batch_handles(df, markers, style),
        Patch(
            fc="white", ec=INVALID_HATCH_COLOR, hatch="////", label=style.label("no_county_data")
        ),
    ]
    fig.legend(
        handles=handles,
        ncol=style.legend_columns(len(handles)),
        handletextpad=0.4,
        columnspacing=1.0,
    )
    finish(fig, verdict, style)
    fixed_layout(fig)  # markers are kept apart in its final coordinates
    _plot_sites(ax, df, markers, style.scale(3.5), by_class=False)
    return fig


# --------------------------------------------------------------------------- 4. before / after


def before_after_layout(style: Style) -> tuple[int, float, float]:
    """Sites per row, a row's height and the rest of the figure (colour bar, legend, credit), inches."""
    per_row = max(3, int(style.width_mm // (45 if style.kind == "paper" else 64)))
    cell = style.width_in / (2 * per_row)
    return per_row, cell * 1.05 + 0.22, 1.2


def before_after_pages(n_sites: int, style: Style) -> list[slice]:
    """The sites of each page of :func:`before_after_figure` (see :func:`charts.site_pages`)."""
    return site_pages(n_sites, *before_after_layout(style))


def before_after_figure(
    pairs: Sequence[tuple[Any, Composite, Composite]],
    verdict: Mapping[str, Any],
    style: Style,
    page: slice | None = None,
) -> plt.Figure:
    """Baseline and target composites of a window around each site, one colour scale, polygon outlined.

    ``pairs``: (site row with geometry, baseline composite, target composite), in chart order;
    ``page``: the pairs of one page (:func:`before_after_pages`); every page keeps the colour
    scale of all pairs, so pages compare.
    """
    every = pairs
    pairs = pairs[page or slice(None)]
    per_row, row_in, other_in = before_after_layout(style)
    nrows = int(np.ceil(len(pairs) / per_row))
    fig = plt.figure(
        figsize=(style.width_in, min(nrows * row_in + other_in, PAGE_HEIGHT_MM / MM_PER_INCH))
    )
    ratios = ([1, 1, 0.12] * per_row)[:-1]  # a narrow spacer column between sites
    gs = fig.add_gridspec(nrows, len(ratios), width_ratios=ratios)
    axes = np.array(
        [
            [fig.add_subplot(gs[r, 3 * k + j]) for k in range(per_row) for j in (0, 1)]
            for r in range(nrows)
        ]
    )
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)  # the style turns constrained layout on
    engine.set(w_pad=0.005, wspace=0.0, hspace=0.05)
    norm = _norm([c.data for _, b, t in every for c in (b, t)])
    lat = float(np.mean([np.mean(b.extent[2:]) for _, b, _ in every]))  # one aspect: panels line up
    im = None
    for k, (row, before, after) in enumerate(pairs):
        r, col = divmod(k, per_row)
        for j, comp in enumerate((before, after)):
            ax = axes[r, 2 * col + j]
            im = _image(ax, comp, norm, lat)
            _outline(ax, row.geometry)
            ax.xaxis.set_visible(False)  # no ticks, no label: nothing to lay out
            ax.yaxis.set_visible(False)
            for sp in ax.spines.values():
                sp.set_visible(True)
                sp.set_linewidth(0.4)
            ax.text(
                0.03,
                0.03,
                str(comp.year),
                transform=ax.transAxes,
                fontsize=style.small_size - 0.5,
                va="bottom",
                ha="left",
                path_effects=OUTLINE,
                zorder=6,
            )
        c = row.klass
        title = axes[r, 2 * col].set_title(
            site_label(row, style), fontsize=style.small_size, loc="left", pad=2
        )
        title.set_in_layout(True)
        axes[r, 2 * col + 1].plot(
            0.9,
            1.08,
            transform=axes[r, 2 * col + 1].transAxes,
            ls="none",
            marker=CLASS_MARKERS[c],
            mfc=CLASS_COLORS[c],
            mec="black",
            mew=0.5,
            ms=style.scale(5),
            clip_on=False,
            scalex=False,
            scaley=False,
        )
    for ax in axes.flat[2 * len(pairs) :]:
        ax.set_visible(False)
    if im is not None:
        cb = fig.colorbar(
            im,
            ax=axes,
            orientation="horizontal",
            shrink=0.5,
            aspect=40,
            location="bottom",
            pad=0.01,
        )
        _colorbar_ticks(cb, norm)
        cb.set_label(
            style.label("radiance")
            + "; "
            + style.label("before_after_axis", b=verdict["baseline_year"], t=verdict["target_year"])
        )
    present = pd.Series([row.klass for row, _, _ in pairs]).value_counts()
    handles = [
        *class_handles(style, {k: int(v) for k, v in present.items()}),
        Patch(fc="white", ec=INVALID_HATCH_COLOR, hatch="////", label=style.label("invalid")),
    ]
    fig.legend(handles=handles, ncol=style.legend_columns(len(handles)), columnspacing=1.0)
    return finish(fig, verdict, style)
