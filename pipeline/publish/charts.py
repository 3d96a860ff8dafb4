"""Charts: the site charts, each a pure function from tables to a Matplotlib figure.

Inputs
    The per-site change table, the site table, the site-by-month table, the sensitivity
    table, the verdict mapping and a :class:`pipeline.publish.style.Style`.
Outputs
    Figures; :func:`pipeline.publish.style.save` writes them. Nothing is read or written here.

Charts: (1) verdict, each site's change with its interval against the threshold band and
the claim; (2) small multiples of monthly radiance with invalid months as gaps; (5)
robustness of the brightened count over method variants. The map (3) and before/after
windows (4) are in :mod:`pipeline.publish.maps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pipeline.publish.style import (
    BAND_COLOR,
    BASELINE_SHADE,
    CLAIM_COLOR,
    CLASS_COLORS,
    CLASS_MARKERS,
    CLASS_ORDER,
    INVALID_HATCH_COLOR,
    MM_PER_INCH,
    TARGET_SHADE,
    Style,
    finish,
)
from pipeline.read.sites import in_batch
from pipeline.words import say_value

PCT_TICKS = (-90, -75, -50, -25, 0, 25, 50, 100, 200, 400, 900)
OUTLINE = [patheffects.withStroke(linewidth=2.2, foreground="white")]


def site_label(row: Any, style: Style) -> str:
    """Hangul name in Korean charts (when known), else the English name, else the id."""
    name_ko, name = _field(row, "name_ko"), _field(row, "name")
    if style.lang == "ko" and isinstance(name_ko, str) and name_ko:
        return name_ko
    return name if isinstance(name, str) and name else str(_field(row, "site_id"))


def _field(row: Any, key: str) -> Any:
    return row.get(key) if hasattr(row, "get") else getattr(row, key, None)


def ordered(changes: pd.DataFrame) -> pd.DataFrame:
    """Sites by change, largest first; sites without a change last (the same order in every chart)."""
    return changes.sort_values(
        "log_ratio", ascending=False, na_position="last", kind="stable"
    ).reset_index(drop=True)


def _pct(x: float) -> str:
    return f"{x:+.0f}%" if x else "0%"


def class_handles(style: Style, counts: dict[str, int] | None = None) -> list[Line2D]:
    out = []
    for c in CLASS_ORDER:
        if counts is not None and not counts.get(c):
            continue
        label = style.label(c) + (f" ({counts[c]})" if counts is not None else "")
        out.append(
            Line2D(
                [],
                [],
                ls="none",
                marker=CLASS_MARKERS[c],
                mfc=CLASS_COLORS[c],
                mec="black",
                mew=0.5,
                ms=style.scale(5),
                label=label,
            )
        )
    return out


# --------------------------------------------------------------------------- 1. verdict


def verdict_figure(changes: pd.DataFrame, verdict: Mapping[str, Any], style: Style) -> plt.Figure:
    """Dot-and-whisker of each site's change (log scale, % labels), threshold band, claim counts.

    The claim's batch gets the top panel, every other site (other batches, no batch) the one
    below, so the title's counts and the top panel's legend speak of the same sites; the
    lower panel's heading counts its own."""
    thr = float(verdict["parameters"]["threshold"])
    mine = set(verdict.get("claim_site_ids") or _claim_ids(changes, verdict))
    parts = [
        p
        for p in (changes[changes["site_id"].isin(mine)], changes[~changes["site_id"].isin(mine)])
        if len(p)
    ]
    parts = [
        ordered(p).iloc[::-1].reset_index(drop=True) for p in parts
    ]  # largest change at the top
    rows = [len(p) for p in parts]
    gap = 0.55 if len(parts) > 1 else 0.0  # inches for the second panel's heading
    height = 0.14 * sum(rows) * style.base_size / 7 + 1.5 + gap
    fig, axes = plt.subplots(
        len(parts),
        1,
        figsize=(style.width_in, height),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [max(r, 1) + 0.6 for r in rows]},
    )
    axs = list(axes[:, 0])
    finite = changes["log_ratio"].notna()
    lo = np.nanmin(changes["log_ci_low"].where(finite, np.nan).to_numpy(dtype=float), initial=-thr)
    hi = np.nanmax(changes["log_ci_high"].where(finite, np.nan).to_numpy(dtype=float), initial=thr)
    pad = 0.08 * (hi - lo)
    for ax, df in zip(axs, parts, strict=True):
        _site_dots(ax, df, thr, style)
    axs[0].set_xlim(min(lo, -thr) - pad, max(hi, thr) + pad)
    xmin, xmax = axs[0].get_xlim()
    ticks = [p for p in PCT_TICKS if xmin <= np.log1p(p / 100) <= xmax]
    axs[-1].set_xticks([np.log1p(p / 100) for p in ticks], [_pct(p) for p in ticks])
    axs[-1].set_xlabel(
        style.label("change_axis", b=verdict["baseline_year"], t=verdict["target_year"])
        + style.label("log_note")
    )
    cs, claim = verdict["claim_sites"], verdict["claim"]
    name = style.batch_name(claim["batch"])
    if mine & set(changes["site_id"]):
        axs[0].set_title(
            style.label(
                "counts_title",
                label=style.label("batch_label", name=name),
                up=cs["counts"]["brightened"],
                rest=cs["similar_or_dimmer"],
                k=claim["brightened"],
                rest_k=claim["similar_or_dimmer"],
            ),
            weight="bold",
        )
    if len(parts) > 1 or not mine & set(changes["site_id"]):
        other = parts[-1]
        counts = {k: int(v) for k, v in other["class"].value_counts().items()}
        axs[-1].set_title(
            style.label(
                "other_title",
                n=len(other),
                name=name,
                sep="\n"
                if style.width_mm < 120
                else " ",  # a column-wide chart: the counts on a line of their own
                counts=", ".join(
                    style.label("n_class", n=counts[c], cls=style.label(c))
                    for c in CLASS_ORDER
                    if counts.get(c)
                ),
            ),
            fontsize=style.base_size,
            loc="left",
        )
    # the legend names the classes drawn; the counts are in the panel titles (one count, one place)
    present = set(changes["class"])
    handles: list[Artist] = [
        h for c, h in zip(CLASS_ORDER, class_handles(style), strict=True) if c in present
    ]
    handles.append(
        Patch(fc=BAND_COLOR, ec="none", label=style.label("threshold_band", pct=_band_pct(thr)))
    )
    fig.legend(
        handles=handles,
        ncol=style.legend_columns(len(handles)),
        handletextpad=0.3,
        columnspacing=1.0,
    )
    return finish(fig, verdict, style)


def _site_dots(ax: plt.Axes, df: pd.DataFrame, thr: float, style: Style) -> None:
    """One row per site: its change, interval and class marker over the threshold band."""
    ax.axvspan(-thr, thr, color=BAND_COLOR, zorder=0, lw=0)
    ax.axvline(0, color="black", lw=0.6, zorder=1)
    for i, r in df.iterrows():
        c = r["class"]
        if pd.notna(r["log_ratio"]):
            ax.plot(
                [r["log_ci_low"], r["log_ci_high"]],
                [i, i],
                color="black",
                lw=0.8,
                zorder=2,
                solid_capstyle="butt",
            )
            ax.plot(
                r["log_ratio"],
                i,
                ls="none",
                marker=CLASS_MARKERS[c],
                mfc=CLASS_COLORS[c],
                mec="black",
                mew=0.5,
                ms=style.scale(5),
                zorder=3,
            )
        else:
            ax.plot(
                0,
                i,
                ls="none",
                marker=CLASS_MARKERS[c],
                mfc=CLASS_COLORS[c],
                mec="black",
                mew=0.5,
                ms=style.scale(4),
            )
            ax.annotate(
                style.label("insufficient_data"),
                (0, i),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=style.small_size,
                color="#444444",
            )
    ax.set_yticks(range(len(df)), [site_label(r, style) for _, r in df.iterrows()])
    ax.set_ylim(-0.7, len(df) - 0.3)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)


def _band_pct(thr: float) -> str:
    return f"{100 * np.expm1(-thr):.0f}% / +{100 * np.expm1(thr):.0f}%"


def _claim_ids(df: pd.DataFrame, verdict: Mapping[str, Any]) -> set[str]:
    """The claim's sites when the verdict does not list them (older output folders)."""
    if "batch" not in df:
        return set()
    return set(df.loc[in_batch(df, verdict["claim"]["batch"]), "site_id"])


# --------------------------------------------------------------------------- 2. small multiples


PAGE_HEIGHT_MM = 247.0  # the tallest figure a journal prints (A4 less its margins)


def site_pages(n: int, per_row: int, row_in: float, other_in: float) -> list[slice]:
    """The sites of each page of a panel-per-site chart, in chart order, so no page is taller
    than :data:`PAGE_HEIGHT_MM`.

    A long site list becomes several pages (``small_multiples.png``, ``small_multiples_2.png``,
    ...) rather than a denser grid: a panel keeps the size at which its title, year labels and
    markers are legible at 89 mm (a 52-site list in one 89 mm page would need 13 rows of 4
    panels 22 mm wide, too small for a site name and its change), and any number of sites fits.
    The pages share the sites evenly (whole rows), so the last one is not a stub.
    ``row_in``: a row's height, ``other_in``: legend, colour bar and credit, in inches.
    """
    rows_fit = max(1, int((PAGE_HEIGHT_MM / MM_PER_INCH - other_in) // row_in))
    n_pages = max(1, int(np.ceil(n / (rows_fit * per_row))))
    per_page = int(np.ceil(np.ceil(n / n_pages) / per_row)) * per_row
    return [slice(i, min(i + per_page, n)) for i in range(0, max(n, 1), per_page)]


def small_multiples_layout(style: Style) -> tuple[int, float, float]:
    """Panels per row, a row's height and the rest of the figure (legend, credit), in inches."""
    ncols = max(3, int(style.width_mm // (45 if style.kind == "paper" else 60)))
    legend_rows = int(np.ceil(11 / style.legend_columns(11)))  # 7 line keys and up to 4 classes
    return ncols, (0.95 if style.kind == "paper" else 1.6), 0.6 + 0.13 * legend_rows


def small_multiples_pages(n_sites: int, style: Style) -> list[slice]:
    """The sites (in chart order) of each page of :func:`small_multiples_figure`."""
    return site_pages(n_sites, *small_multiples_layout(style))


def small_multiples_figure(
    site_months: pd.DataFrame,
    changes: pd.DataFrame,
    sites: pd.DataFrame,
    verdict: Mapping[str, Any],
    style: Style,
    page: slice | None = None,
) -> plt.Figure:
    """Monthly radiance per site; invalid months are gaps; baseline/target years and dates marked.

    ``page``: the sites of one page (:func:`small_multiples_pages`), all of them by default.
    """
    order = ordered(changes).iloc[page or slice(None)]
    ncols, row_in, other_in = small_multiples_layout(style)
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(style.width_in, min(nrows * row_in + other_in, PAGE_HEIGHT_MM / MM_PER_INCH)),
        sharex=True,
        squeeze=False,
    )
    meta = sites.set_index("site_id")
    b, t = int(verdict["baseline_year"]), int(verdict["target_year"])
    sm = site_months.assign(date=pd.to_datetime(site_months["month"] + "-01"))
    for ax, (_, r) in zip(axes.flat, order.iterrows(), strict=False):
        d = sm[sm["site_id"] == r["site_id"]].sort_values("date")
        ax.axvspan(
            pd.Timestamp(f"{b}-01-01"),
            pd.Timestamp(f"{b + 1}-01-01"),
            color=BASELINE_SHADE,
            lw=0,
            zorder=0,
        )
        ax.axvspan(
            pd.Timestamp(f"{t}-01-01"),
            pd.Timestamp(f"{t + 1}-01-01"),
            color=TARGET_SHADE,
            lw=0,
            zorder=0,
        )
        valid = d["is_valid"].astype(bool).to_numpy()
        y = d["mean_radiance"].where(valid).to_numpy(dtype=float)
        if "ring_mean_radiance" in d:
            ring = (
                d["ring_mean_radiance"].where(d["ring_valid_fraction"] >= 0.5).to_numpy(dtype=float)
            )
            ax.plot(d["date"], ring, color="#777777", lw=0.6, ls=(0, (2, 1)), zorder=2)
        ax.plot(d["date"], y, color="black", lw=0.9, marker="o", ms=style.scale(1.6), zorder=3)
        top = np.nanmax(np.r_[y, 0.1]) * 1.15
        ax.set_ylim(0, top)
        gaps = d["date"][~valid]
        if len(gaps):  # an empty unclipped line would sit at the figure origin and break the layout
            ax.plot(
                gaps,
                np.full(len(gaps), 0.02 * top),
                ls="none",
                marker="x",
                ms=style.scale(2.5),
                mew=0.6,
                color=INVALID_HATCH_COLOR,
                zorder=3,
                clip_on=False,
            )
        m = meta.loc[r["site_id"]] if r["site_id"] in meta.index else pd.Series(dtype=object)
        for key, ls in (("groundbreaking", ":"), ("inauguration", "--")):
            when = pd.to_datetime(m.get(key), errors="coerce")
            if pd.notna(when):
                ax.axvline(when, color="black", lw=0.8, ls=ls, zorder=4)
        c = r["class"]
        change = "" if pd.isna(r["change_pct"]) else f"  {_pct(r['change_pct'])}"
        ax.set_title(site_label(r, style) + change, fontsize=style.small_size, loc="left", pad=2)
        ax.plot(
            0.94,
            1.07,
            transform=ax.transAxes,
            ls="none",
            marker=CLASS_MARKERS[c],
            mfc=CLASS_COLORS[c],
            mec="black",
            mew=0.5,
            ms=style.scale(5),
            clip_on=False,
            zorder=5,
            scalex=False,
            scaley=False,
        )
        ax.tick_params(labelsize=style.small_size - 0.5)
    for ax in axes.flat[len(order) :]:
        ax.set_visible(False)
    years = sorted(sm["date"].dt.year.unique())
    bounds = mdates.date2num([pd.Timestamp(f"{y}-01-01") for y in [*years, years[-1] + 1]])
    mids = mdates.date2num([pd.Timestamp(f"{y}-07-01") for y in years])
    for (
        ax
    ) in axes.flat:  # fixed ticks: year boundaries, year names mid-year (date locators are slow)
        ax.set_xticks(bounds, [""] * len(bounds))
        ax.set_xticks(mids, [str(y) for y in years], minor=True)
        ax.tick_params(axis="x", which="minor", length=0)
    fig.supylabel(style.label("radiance"), fontsize=style.base_size)
    handles = [
        Patch(fc=BASELINE_SHADE, label=style.label("baseline", y=b)),
        Patch(fc=TARGET_SHADE, label=style.label("target", y=t)),
        Line2D(
            [], [], color="black", marker="o", ms=style.scale(2), lw=0.9, label=style.label("site")
        ),
        Line2D([], [], color="#777777", lw=0.6, ls=(0, (2, 1)), label=style.label("ring")),
        Line2D(
            [],
            [],
            color=INVALID_HATCH_COLOR,
            ls="none",
            marker="x",
            ms=style.scale(3),
            label=style.label("invalid"),
        ),
        Line2D([], [], color="black", ls=":", lw=0.8, label=style.label("groundbreaking")),
        Line2D([], [], color="black", ls="--", lw=0.8, label=style.label("inauguration")),
    ]
    classes = class_handles(style, {k: int(v) for k, v in order["class"].value_counts().items()})
    fig.legend(
        handles=handles + classes,
        ncol=style.legend_columns(len(handles) + len(classes)),
        handlelength=1.6,
        columnspacing=0.9,
    )
    return finish(fig, verdict, style)


# --------------------------------------------------------------------------- 5. robustness

DIMENSIONS = ("threshold", "radius_m", "statistic", "month_window", "adjustment", "pixel_rule")


def robustness_figure(sens: pd.DataFrame, verdict: Mapping[str, Any], style: Style) -> plt.Figure:
    """How many sites brighten under each method variant, with the claim's k and this run marked."""
    claimed = int(verdict["claim"]["brightened"])
    n_sites = int(sens["n_sites"].max())
    here = int(verdict["claim_sites"]["counts"]["brightened"])
    stacked = style.width_mm < 120
    shape = (2, 1) if stacked else (1, 2)
    h = (4.0 if stacked else 2.2) * (1 if style.kind == "paper" else 1.5)
    fig, (a1, a2) = plt.subplots(
        *shape,
        figsize=(style.width_in, h + 0.5),
        gridspec_kw={"width_ratios" if not stacked else "height_ratios": [1, 1.2]},
    )
    counts = sens["brightened"].value_counts().sort_index()
    lo = max(0, min(int(counts.index.min()), claimed) - 2)
    hi = min(n_sites, max(int(counts.index.max()), claimed) + 2)
    xs = np.arange(lo, hi + 1)
    ys = counts.reindex(xs, fill_value=0).to_numpy()
    bars = a1.bar(xs, ys, width=0.8, color="#BBBBBB", edgecolor="black", lw=0.5)
    a1.bar_label(
        bars, labels=[str(y) if y else "" for y in ys], padding=1.5, fontsize=style.small_size
    )
    top = ys.max()
    # The two labels sit at fixed heights of the panel, above the tallest bar and its count
    # (bars take at most half the panel; the arrows stop short of the bar counts), one over the other when they would meet.
    y_here, y_claim = 0.72, 0.72
    if lo <= here <= hi and abs(here - claimed) <= 4:
        y_claim = 0.86
    if lo <= claimed <= hi:
        bar = bars[claimed - lo]
        bar.set_hatch("////")
        bar.set_edgecolor(CLAIM_COLOR)
        bar.set_linewidth(1.2)
        a1.annotate(
            f"{style.label('claim')}: {claimed}",
            (claimed, ys[claimed - lo]),
            xytext=(claimed, y_claim),
            textcoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            color=CLAIM_COLOR,
            weight="bold",
            arrowprops={"arrowstyle": "-|>", "color": CLAIM_COLOR, "lw": 0.8, "shrinkB": 15},
        )
    if lo <= here <= hi:
        a1.annotate(
            f"{style.label('this_run')}: {here}",
            (here, ys[here - lo]),
            xytext=(here, y_here),
            textcoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            arrowprops={"arrowstyle": "-|>", "lw": 0.8, "shrinkB": 15},
        )
    a1.set_xticks(xs)
    a1.set_xlabel(style.label("n_brightened", n=n_sites))
    a1.set_ylabel(style.label("variants"))
    a1.set_ylim(0, top / 0.5 + 1)
    a1.set_title(style.label("robust_title", n=len(sens)), weight="bold")
    rows = []
    for dim in DIMENSIONS:
        if dim not in sens:
            continue
        for value, g in sens.groupby(dim, sort=True):
            rows.append((_row_label(dim, value, style), g["brightened"]))
    for i, (_, v) in enumerate(rows):
        a2.plot([v.min(), v.max()], [i, i], color="black", lw=0.8, solid_capstyle="butt")
        a2.plot(
            v.median(),
            i,
            ls="none",
            marker="o",
            mfc="white",
            mec="black",
            ms=style.scale(4),
            mew=0.8,
        )
    a2.axvline(claimed, color=CLAIM_COLOR, lw=1.0, ls="--", zorder=0)
    a2.axvline(here, color="black", lw=0.6, ls=":", zorder=0)
    a2.annotate(
        style.label("claim"),
        (claimed, 1),
        xycoords=("data", "axes fraction"),
        xytext=(-2, 0),
        textcoords="offset points",
        ha="right",
        va="top",
        color=CLAIM_COLOR,
        fontsize=style.small_size,
    )
    a2.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=style.small_size - 0.5)
    a2.set_ylim(len(rows) - 0.5, -0.5)
    a2.set_xlim(lo - 0.5, hi + 0.5)
    a2.set_xticks(xs)
    a2.set_xlabel(style.label("n_brightened", n=n_sites))
    a2.set_title(style.label("by_choice") + style.label("dot_median"), fontsize=style.small_size)
    a2.tick_params(axis="y", length=0)
    return finish(fig, verdict, style)


VALUE_WORDS = {
    "statistic": "stat",
    "month_window": "window",
    "adjustment": "adjustment",
    "pixel_rule": "rule",
}


def _row_label(dim: str, value: Any, style: Style) -> str:
    """'pixel rule = exact' / '화소 규칙 = 정확한 면적': the choice and its value, in the chart's language."""
    family = VALUE_WORDS.get(dim)
    shown = say_value(family, value, style.lang) if family else _fmt(value)
    return style.label(f"dim_{dim}", value=shown)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and v >= 100:
        return f"{int(v)}"
    return f"{v:g}" if isinstance(v, float) else str(v)
