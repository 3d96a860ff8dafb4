"""Maps: the sites over the night-light composite itself, and before/after windows.

Inputs
    :class:`~pipeline.publish.composites.Composite` arrays (made by
    :func:`pipeline.publish.composites.composites`), the site and change tables, the verdict.
Outputs
    Figures. No web tiles (works offline, nothing to attribute but the data); nothing is
    read or written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.patches import Patch

from pipeline.publish.charts import OUTLINE, class_handles, site_label
from pipeline.publish.composites import Composite
from pipeline.publish.style import (
    CLAIM_COLOR,
    CLASS_COLORS,
    CLASS_MARKERS,
    CLASS_ORDER,
    INVALID_HATCH_COLOR,
    Style,
    finish,
)


def _norm(arrays: Sequence[np.ndarray]) -> LogNorm:
    """Log scale from the dark background (2nd percentile) to the brightest pixel: nothing saturates."""
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays] or [np.array([1.0])])
    vmax = float(values.max()) if values.size else 1.0
    vmin = max(0.05, float(np.nanpercentile(values, 2)) if values.size else 0.05)
    return LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))


def _colorbar_ticks(cb: Any, norm: LogNorm) -> None:
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if norm.vmin <= t <= norm.vmax]
    cb.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    cb.ax.minorticks_off()


def _image(ax: plt.Axes, comp: Composite, norm: LogNorm, lat: float | None = None) -> Any:
    cmap = plt.get_cmap("Greys").with_extremes(bad=(0, 0, 0, 0))
    ax.set_facecolor("white")
    ax.add_patch(plt.Rectangle((0, 0), 1, 1, transform=ax.transAxes, fc="white", ec=INVALID_HATCH_COLOR,
                               hatch="////", lw=0, zorder=0))
    im = ax.imshow(np.clip(comp.data, norm.vmin, None), extent=comp.extent, cmap=cmap, norm=norm, zorder=1,
                   interpolation="nearest", origin="upper")
    ax.set_aspect(1 / np.cos(np.deg2rad(np.mean(comp.extent[2:]) if lat is None else lat)))
    return im


def _outline(ax: plt.Axes, geom: Any, color: str = CLAIM_COLOR, lw: float = 0.9) -> None:
    polys = getattr(geom, "geoms", [geom])
    for p in polys:
        x, y = p.exterior.xy
        ax.plot(x, y, color=color, lw=lw, path_effects=OUTLINE, zorder=4)


# --------------------------------------------------------------------------- 3. map


def map_figure(comp: Composite, sites: pd.DataFrame, changes: pd.DataFrame, verdict: dict[str, Any],
               style: Style) -> plt.Figure:
    """Sites, coloured and shaped by class and labelled, over the night-light composite itself."""
    w, e, s, n = comp.extent
    aspect = (n - s) / ((e - w) * np.cos(np.deg2rad((n + s) / 2)))
    fig, ax = plt.subplots(figsize=(style.width_in, min(style.width_in * aspect * 0.9 + 1.1, 9.0)))
    norm = _norm([comp.data])
    im = _image(ax, comp, norm)
    cls = changes.set_index("site_id")["class"]
    df = sites.assign(klass=sites["site_id"].map(cls).fillna("insufficient_data"))
    for c in CLASS_ORDER:
        d = df[df["klass"] == c]
        ax.plot(d["center_lon"], d["center_lat"], ls="none", marker=CLASS_MARKERS[c], mfc=CLASS_COLORS[c],
                mec="black", mew=0.6, ms=style.scale(6), zorder=5)
    fig.canvas.draw()
    _place_labels(ax, df["center_lon"].to_numpy(), df["center_lat"].to_numpy(),
                  [site_label(r, style) for r in df.itertuples()], style.small_size)
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_xlabel(style.label("lon"))
    ax.set_ylabel(style.label("lat"))
    ax.set_title(style.label("map_title", y=comp.year), weight="bold")
    cb = fig.colorbar(im, ax=ax, orientation="horizontal", shrink=0.6, aspect=35, pad=0.02, location="bottom")
    _colorbar_ticks(cb, norm)
    cb.set_label(style.label("composite", y=comp.year))
    handles = [*class_handles(style, verdict.get("counts")),
               Patch(fc="white", ec=INVALID_HATCH_COLOR, hatch="////", label=style.label("invalid"))]
    ax.legend(handles=handles, loc="upper left", frameon=True, framealpha=0.9, edgecolor="none")
    return finish(fig, verdict, style)


def _place_labels(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, texts: Sequence[str], size: float) -> None:
    """Greedy placement: the first of eight offsets that overlaps no label or marker placed so far."""
    renderer = ax.figure.canvas.get_renderer()
    taken = []
    for x, y in zip(xs, ys, strict=True):
        px, py = ax.transData.transform((x, y))
        taken.append((px - 5, py - 5, px + 5, py + 5))
    offsets = [(5, 4, "left", "bottom"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"),
               (-5, -4, "right", "top"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
               (9, 0, "left", "center"), (-9, 0, "right", "center")]
    frame = ax.get_window_extent(renderer)
    for x, y, text in zip(xs, ys, texts, strict=True):
        best = None
        for dx, dy, ha, va in offsets:
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=size, zorder=6, path_effects=OUTLINE, annotation_clip=False)
            t.set_in_layout(False)
            bb = t.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            inside = frame.x0 <= bb.x0 and bb.x1 <= frame.x1 and frame.y0 <= bb.y0 and bb.y1 <= frame.y1
            if inside and not any(_overlap(box, o) for o in taken):
                best = (t, box)
                break
            t.remove()
        if best is None:
            t = ax.annotate(text, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=size, zorder=6,
                            path_effects=OUTLINE)
            t.set_in_layout(False)
            bb = t.get_window_extent(renderer)
            best = (t, (bb.x0, bb.y0, bb.x1, bb.y1))
        taken.append(best[1])


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------- 4. before / after


def before_after_figure(pairs: Sequence[tuple[Any, Composite, Composite]], verdict: dict[str, Any],
                        style: Style) -> plt.Figure:
    """Baseline and target composites of a window around each site, one colour scale, polygon outlined.

    ``pairs``: (site row with geometry, baseline composite, target composite), in chart order.
    """
    per_row = max(3, int(style.width_mm // (45 if style.kind == "paper" else 64)))
    nrows = int(np.ceil(len(pairs) / per_row))
    cell = style.width_in / (2 * per_row)
    fig = plt.figure(figsize=(style.width_in, nrows * (cell * 1.05 + 0.22) + 1.0))
    ratios = ([1, 1, 0.12] * per_row)[:-1]  # a narrow spacer column between sites
    gs = fig.add_gridspec(nrows, len(ratios), width_ratios=ratios)
    axes = np.array([[fig.add_subplot(gs[r, 3 * k + j]) for k in range(per_row) for j in (0, 1)]
                     for r in range(nrows)])
    fig.get_layout_engine().set(w_pad=0.005, wspace=0.0, hspace=0.05)
    norm = _norm([c.data for _, b, t in pairs for c in (b, t)])
    lat = float(np.mean([np.mean(b.extent[2:]) for _, b, _ in pairs]))  # one aspect: panels line up
    im = None
    for k, (row, before, after) in enumerate(pairs):
        r, col = divmod(k, per_row)
        for j, comp in enumerate((before, after)):
            ax = axes[r, 2 * col + j]
            im = _image(ax, comp, norm, lat)
            _outline(ax, row.geometry)
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(True)
                sp.set_linewidth(0.4)
            ax.text(0.03, 0.03, str(comp.year), transform=ax.transAxes, fontsize=style.small_size - 0.5,
                    va="bottom", ha="left", path_effects=OUTLINE, zorder=6)
        c = row.klass
        title = axes[r, 2 * col].set_title(site_label(row, style), fontsize=style.small_size, loc="left", pad=2)
        title.set_in_layout(True)
        axes[r, 2 * col + 1].plot(0.9, 1.08, transform=axes[r, 2 * col + 1].transAxes, ls="none",
                                  marker=CLASS_MARKERS[c], mfc=CLASS_COLORS[c], mec="black", mew=0.5, ms=style.scale(5),
                                  clip_on=False, scalex=False, scaley=False)
    for ax in axes.flat[2 * len(pairs):]:
        ax.set_visible(False)
    if im is not None:
        cb = fig.colorbar(im, ax=axes, orientation="horizontal", shrink=0.5, aspect=40, location="bottom",
                          pad=0.01)
        _colorbar_ticks(cb, norm)
        cb.set_label(style.label("radiance") + "; " + style.label(
            "before_after", b=verdict["baseline_year"], t=verdict["target_year"]))
    present = pd.Series([row.klass for row, _, _ in pairs]).value_counts()
    handles = [*class_handles(style, {k: int(v) for k, v in present.items()}),
               Patch(fc="white", ec=INVALID_HATCH_COLOR, hatch="////", label=style.label("invalid"))]
    fig.legend(handles=handles, ncol=style.legend_columns(len(handles)), columnspacing=1.0)
    return finish(fig, verdict, style)


