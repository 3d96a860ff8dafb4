"""Comparison charts and report section: the designated counties against the counties that got nothing.

Inputs
    The tables of :class:`pipeline.compare.county.Comparison` (event study, unit panel, DiD placebo
    draws, ``did.json`` content), a verdict-like mapping (data kind, inputs, parameters: what
    :func:`pipeline.publish.style.finish` prints) and a :class:`~pipeline.publish.style.Style`.
Outputs
    Figures (pure functions, nothing written) and the report section "Against the counties that
    got nothing" as HTML and Markdown text, in words for journalists.

Longer than most modules because the section's paragraphs (main result, cohorts, checks, pre-trends,
site placebo, event study, disparity) are chosen and filled here from the numbers, beside the charts
they describe; their words, in English and Korean, are entries of ``pipeline/words.toml``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from pipeline.compare.disparity import lorenz_curve
from pipeline.publish.render import Chart
from pipeline.publish.sentences import md_inline
from pipeline.publish.style import BAND_COLOR, CLAIM_COLOR, Style, finish
from pipeline.words import batch_name, say, synthetic_notice

if TYPE_CHECKING:
    from pipeline.compare.county import Comparison


EVENT_COLOR = "#0077BB"  # Tol vibrant blue
YEAR_COLORS = ("#BBBBBB", "#EE7733")  # baseline grey, target orange (the class colours' scheme)
CHARTS = ("event_study", "lorenz", "did_placebo")  # captions: caption_<name> in pipeline/words.toml
Place = Callable[[Any, Any], str]  # (unit_id, romanised name) -> the name the report shows


def _height(style: Style, ratio: float) -> float:
    """Taller in one column (89 mm) so that labels still fit."""
    return style.width_in * (ratio if style.width_mm > 120 else ratio * 1.35)


def _pct(x: float) -> str:
    text = f"{100 * math.expm1(x):+.0f}%"
    return "0%" if text in ("+0%", "-0%") else text


PCT_TICKS = (-75, -50, -40, -30, -20, -10, -5, 0, 5, 10, 20, 30, 40, 50, 100, 200)


def _pct_axis(axis: Any) -> None:
    """Log-scale values labelled as round percentages (ticks at ln(1 + p/100))."""
    lo, hi = axis.get_view_interval()
    ticks: list[int] = []
    for p in sorted(
        PCT_TICKS, key=abs
    ):  # from 0 outwards, skipping ticks closer than 1/9 of the axis
        pos = math.log1p(p / 100)
        if lo <= pos <= hi and all(abs(pos - math.log1p(q / 100)) >= (hi - lo) / 9 for q in ticks):
            ticks.append(p)
    ticks.sort()
    axis.set_ticks([math.log1p(p / 100) for p in ticks], [f"{p:+d}%" if p else "0" for p in ticks])


def p_text(p: float, n_draws: int | None = None) -> str:
    """``= 0.123``, or ``< 0.001`` when no placebo reached the estimate (p is then 1 / (draws + 1))."""
    if n_draws and p <= 1.0 / (n_draws + 1) + 1e-12:
        return f"< {max(p, 1e-3):.3f}" if p >= 1e-3 else "< 0.001"
    return f"= {p:.3f}"


def event_study_figure(
    events: pd.DataFrame, verdict: Mapping[str, Any], style: Style
) -> plt.Figure | None:
    """Pooled estimate by month from inauguration with its band; site counts underneath."""
    if events is None or events.empty:
        return None
    e = events.sort_values("relative_month")
    counts = e[["relative_month", "n_sites"]]
    e = e[e["n_sites"] >= 2]  # a month with one site has no band: shown only in the counts
    if e.empty:
        return None
    narrow = style.width_mm <= 120
    fig, (ax, an) = plt.subplots(
        2,
        1,
        figsize=(style.width_in, style.width_in * (0.95 if narrow else 0.55)),
        sharex=True,
        gridspec_kw={"height_ratios": (4, 1)},
    )
    x = e["relative_month"].to_numpy(float)
    ax.fill_between(
        x,
        e["ci_low"].to_numpy(float),
        e["ci_high"].to_numpy(float),
        color=BAND_COLOR,
        lw=0,
        label=style.label("event_band"),
        step=None,
    )
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(0, color=CLAIM_COLOR, lw=0.8, ls="--", label=style.label("inauguration"))
    ax.plot(
        x,
        e["estimate"],
        color=EVENT_COLOR,
        marker="o",
        ms=style.scale(2.5),
        label=style.label("event_est"),
    )
    _pct_axis(ax.yaxis)
    ax.set_ylabel(style.label("event_y_short" if narrow else "event_y"))
    if narrow:
        ax.annotate(
            style.label("event_ref"),
            (0.01, 0.98),
            xycoords="axes fraction",
            va="top",
            fontsize=style.small_size,
            color="#444444",
        )
    ax.set_title(style.label("event_title"), weight="bold")
    an.bar(counts["relative_month"], counts["n_sites"], color="#999999", width=0.7)
    if narrow:
        an.set_ylabel(style.label("n_sites_short"), fontsize=style.small_size)
    else:
        an.set_ylabel(
            style.label("n_sites"), rotation=0, ha="right", va="center", fontsize=style.small_size
        )
    an.set_ylim(0, max(1, int(counts["n_sites"].max())) * 1.15)
    an.set_xlabel(style.label("event_x"))
    months = counts["relative_month"].to_numpy(int)
    an.set_xticks(np.arange(months.min() // 3 * 3, months.max() + 1, 3))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, ncol=style.legend_columns(len(handles)))
    return finish(fig, verdict, style)


def lorenz_figure(
    unit_years: pd.DataFrame, years: tuple[int, int], verdict: Mapping[str, Any], style: Style
) -> plt.Figure | None:
    """Lorenz curves of unit ``sum_lights`` for the baseline and target year, Gini in the legend."""
    from pipeline.compare.disparity import gini

    have = [y for y in years if (unit_years["year"] == y).any()]
    if not have:
        return None
    side = min(style.width_in * 0.62, 4.2) if style.width_mm > 120 else style.width_in
    fig, ax = plt.subplots(figsize=(style.width_in, side))
    ax.plot([0, 1], [0, 1], color="black", lw=0.6, ls=":", label=style.label("equality"))
    for y, color in zip(have, YEAR_COLORS[-len(have) :], strict=True):
        curve = lorenz_curve(unit_years, y)
        g = gini(unit_years.loc[unit_years["year"] == y, "sum_lights"])
        ax.plot(
            curve["unit_share"],
            curve["light_share"],
            color=color,
            lw=1.6 if style.kind == "paper" else 2.4,
            label=style.label("lorenz_year", y=y, g=g),
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    pct = FuncFormatter(lambda v, _: f"{100 * v:.0f}%")
    ax.xaxis.set_major_formatter(pct)
    ax.yaxis.set_major_formatter(pct)
    ax.set_xlabel(style.label("lorenz_x"))
    ax.set_ylabel(style.label("lorenz_y"))
    n = int(unit_years.loc[unit_years["year"] == have[-1], "sum_lights"].notna().sum())
    ax.set_title(style.label("lorenz_title", n=n), weight="bold")
    ax.legend(loc="upper left")
    return finish(fig, verdict, style)


def did_placebo_figure(
    placebo: tuple[float, ...], did: dict[str, Any], verdict: Mapping[str, Any], style: Style
) -> plt.Figure | None:
    """Histogram of the placebo estimates, the designated counties' estimate marked."""
    if not placebo or did.get("estimate_log") is None:
        return None
    est = float(did["estimate_log"])
    fig, ax = plt.subplots(figsize=(style.width_in, _height(style, 0.42)))
    ax.hist(np.asarray(placebo, float), bins=40, color="#BBBBBB", edgecolor="white", lw=0.3)
    ax.axvline(
        est,
        color=CLAIM_COLOR,
        lw=1.6,
        label=style.label(
            "placebo_est", est=_pct(est), p=p_text(float(did["p_value"]), did.get("n_placebo"))
        ),
    )
    ax.axvline(0, color="black", lw=0.6)
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, -0.05), max(hi, 0.05))
    _pct_axis(ax.xaxis)
    ax.set_xlabel(style.label("placebo_x", b=did["baseline_year"], t=did["target_year"]))
    ax.set_ylabel(style.label("placebo_y"))
    ax.set_title(style.label("placebo_title", n=len(placebo)), weight="bold")
    fig.legend(ncol=1)
    return finish(fig, verdict, style)


PLACEBO_NUMBERS = ("estimate_log", "p_value", "n_placebo", "baseline_year", "target_year")


def chart_specs(comp: Comparison, data_kind: str | None, style: Style) -> list[Chart]:
    """The comparison's charts (for ``publish.chart_specs`` and ``compare``). What they print
    besides their data is the credit line and the data kind (:func:`finish`), so that is all of
    the verdict they get: ``run`` and ``compare`` make the same files from the same comparison."""
    years = (int(comp.did["baseline_year"]), int(comp.did["target_year"]))
    verdict = {"data_kind": data_kind, "credit": {style.lang: credit(comp, style.lang)}}
    # what the placebo chart prints of did.json, all it gets: another --threshold (in did.json's
    # parameters) leaves it as it was
    placebo_numbers = {k: comp.did.get(k) for k in PLACEBO_NUMBERS}
    return [
        Chart(
            "event_study",
            event_study_figure,
            lambda: (comp.event_study, verdict, style),
            (comp.event_study, verdict),
        ),
        Chart(
            "lorenz",
            lorenz_figure,
            lambda: (comp.unit_years, years, verdict, style),
            (comp.unit_years, years, verdict),
        ),
        Chart(
            "did_placebo",
            did_placebo_figure,
            lambda: (comp.placebo, placebo_numbers, verdict, style),
            (comp.placebo, placebo_numbers, verdict),
        ),
    ]


def credit(comp: Comparison, lang: str = "en") -> str:
    """The credit line of the comparison charts: data, period and what was computed."""
    from pipeline import __version__
    from pipeline.publish.style import describe_products, period_text

    d = comp.did
    return say(
        "credit_compare",
        lang,
        product=describe_products(d.get("products") or [], comp.data_kind == "synthetic", lang),
        period=period_text(d.get("period") or [], lang),
        version=__version__,
        n_treated=d.get("n_treated"),
        n_control=d.get("n_control"),
    )


# --------------------------------------------------------------------------- report text
# One list of paragraphs for both languages: each sentence is an entry of pipeline/words.toml,
# chosen and filled here from the numbers, so the English and the Korean section say the same things.


def _chance(p: float) -> str:
    if p < 0.01:
        return "chance_very_unlikely"
    if p < 0.05:
        return "chance_unlikely"
    if p < 0.10:
        return "chance_weak"
    return "chance_likely"


def _relative(est: float, lang: str) -> str:
    pct = 100 * math.expm1(est)
    if abs(pct) < 0.5:
        return say("cmp_rel_same", lang)
    return say("cmp_rel_up" if pct > 0 else "cmp_rel_down", lang, pct=f"{abs(pct):.0f}")


def _power_words(d: dict[str, Any], lang: str) -> str:
    """Issue 23: what a non-significant result can and cannot rule out, for readers."""
    mde, neg = d.get("mde_log"), d.get("mde_log_negative")
    if d.get("p_value") is None:
        return ""
    if d["p_value"] < 0.05:  # significant: still say what the design could see, so results compare
        if mde is None:
            return ""
        dim = say("cmp_mde_significant_dim", lang, neg=_pct(neg)) if neg is not None else ""
        return say("cmp_mde_significant", lang, mde=_pct(mde), dim=dim)
    if mde is None:
        return say("cmp_mde_too_few", lang)
    dim = say("cmp_mde_null_dim", lang, neg=_pct(neg)) if neg is not None else ""
    return say(
        "cmp_mde_null", lang, mde=_pct(mde), dim=dim, lo=_pct(d["ci_low"]), hi=_pct(d["ci_high"])
    )


def _controls_words(d: dict[str, Any], lang: str) -> str:
    n = d.get("n_excluded_controls")
    if not n:
        return ""
    batches = ", ".join(sorted({str(e.get("batch")) for e in d.get("excluded_controls") or []}))
    return say("cmp_controls", lang, n=n, batches=batches, t=d["target_year"])


def _main_paragraph(d: dict[str, Any], lang: str) -> str:
    return (
        say(
            "cmp_main",
            lang,
            n_treated=d["n_treated"],
            batch=batch_name(d["batch"], lang),
            n_control=d["n_control"],
            b=d["baseline_year"],
            t=d["target_year"],
            relative=_relative(d["estimate_log"], lang),
            lo=_pct(d["ci_low"]),
            hi=_pct(d["ci_high"]),
            n_placebo=d["n_placebo"],
            p=p_text(d["p_value"], d["n_placebo"]),
            chance=say(_chance(d["p_value"]), lang),
        )
        + _power_words(d, lang)
        + _controls_words(d, lang)
    )


def _cohort_paragraphs(d: dict[str, Any], lang: str) -> list[str]:
    """Issue 23: the batch from a baseline before groundbreaking, and every batch's effect."""
    out = []
    e = d.get("baseline_before_groundbreaking") or {}
    if "estimate_log" in e:
        out.append(
            say(
                "cmp_before_ground",
                lang,
                b=d["baseline_year"],
                b0=e["baseline_year"],
                t0=e["target_year"],
                est=_pct(e["estimate_log"]),
                lo=_pct(e["ci_low"]),
                hi=_pct(e["ci_high"]),
                p=p_text(e["p_value"], e["n_placebo"]),
            )
        )
    c = d.get("cohort_effects") or {}
    if c.get("aggregate_log") is not None:
        weights = ", ".join(
            say(
                "cmp_cohort_weight",
                lang,
                batch=batch_name(w["batch"], lang),
                year=w["year"],
                w=f"{100 * w['weight']:.0f}",
            )
            for w in c["weights"]
        )
        text = say(
            "cmp_cohort",
            lang,
            est=_pct(c["aggregate_log"]),
            lo=_pct(c["aggregate_ci_low"]),
            hi=_pct(c["aggregate_ci_high"]),
            p=p_text(c["aggregate_p_value"], c["n_placebo"]),
            weights=weights,
        )
        if c.get("pretrend_p_value") is not None:
            text += say(
                "cmp_cohort_pretrend",
                lang,
                n=c["n_pretrend_cells"],
                p=p_text(c["pretrend_p_value"], c["n_placebo"]),
            )
            per = c.get("pretrend_by_batch") or []
            if per:
                text += (
                    " ("
                    + ", ".join(
                        say(
                            "cmp_cohort_pretrend_batch",
                            lang,
                            batch=batch_name(r["batch"], lang),
                            p=p_text(r["p_value"], c["n_placebo"]),
                        )
                        for r in per
                    )
                    + ")"
                )
            text += "."
        out.append(text)
    return out


def _robustness_paragraph(d: dict[str, Any], lang: str) -> list[str]:
    """Issue 23: the checks beside the main result, one clause each."""
    r = d.get("robustness") or {}
    parts = []
    u = r.get("unequal_variance") or {}
    if "p_value" in u:
        parts.append(
            say("cmp_check_wild", lang, n=u["n_clusters"], p=p_text(u["p_value"], u["n_boot"]))
        )
    f = r.get("far_controls") or {}
    if "estimate_log" in f:
        parts.append(
            say(
                "cmp_check_far",
                lang,
                n=f["n_near_left_out"],
                km=f"{f['km']:g}",
                est=_pct(f["estimate_log"]),
                p=p_text(f["p_value"], f["n_placebo"]),
            )
        )
    floors = r.get("log_floor") or []
    if floors:
        parts.append(
            say(
                "cmp_check_floor",
                lang,
                factors=", ".join(say("cmp_factor", lang, f=f"{x['factor']:g}") for x in floors),
                ests=", ".join(_pct(x["estimate_log"]) for x in floors),
            )
        )
    return [say("cmp_checks", lang, checks="; ".join(parts))] if parts else []


def _site_placebo_paragraph(d: dict[str, Any], lang: str) -> list[str]:
    """The site rule applied to comparable places in the control counties: how rare is 'k of n'?"""
    claim = d.get("site_placebo")
    sp = claim if claim and "k" in claim else d.get("site_placebo_observed")
    if not sp or "k" not in sp:
        return []
    fewer = sp["k"] <= sp["expected"]
    return [
        say(
            "cmp_site_placebo_fewer" if fewer else "cmp_site_placebo_more",
            lang,
            n_control=sp["n_control_sites"],
            n=sp["n"],
            expected=f"{sp['expected']:.1f}",
            k=sp["k"],
            of=say("placebo_of_claim" if sp is claim else "placebo_of_observed", lang),
            pct=f"{sp['percentile']:.0f}",
            p=f"{sp['p_lower'] if fewer else sp['p_upper']:.2f}",
        )
    ]


def _event_paragraph(events: pd.DataFrame, lang: str) -> str:
    if events is None or events.empty:
        return say("cmp_event_none", lang)
    e = events.set_index("relative_month")
    post = e.loc[(e.index >= 1) & (e.index <= 12)]
    parts = []
    if 0 in e.index:
        at0 = e.loc[0]
        parts.append(
            say(
                "cmp_event_at0",
                lang,
                est=_pct(at0["estimate"]),
                lo=_pct(at0["ci_low"]),
                hi=_pct(at0["ci_high"]),
                n=int(at0["n_sites"]),
            )
        )
    if len(post):
        low = int((post["ci_high"] < 0).sum())
        high = int((post["ci_low"] > 0).sum())
        parts.append(
            say(
                "cmp_event_post",
                lang,
                n=len(post),
                est=_pct(float(post["estimate"].mean())),
                low=low,
                high=high,
            )
        )
        if low > len(post) / 2:
            parts.append(say("cmp_event_out", lang))
        elif high > len(post) / 2:
            parts.append(say("cmp_event_on", lang))
        else:
            parts.append(say("cmp_event_noise", lang))
    return " ".join(parts) or say("cmp_event_none", lang)


def _disparity_paragraph(comp: Comparison, lang: str, place: Place) -> list[str]:
    d = comp.did
    b, t = d["baseline_year"], d["target_year"]
    disp = (
        comp.disparity.set_index("year")
        if comp.disparity is not None and len(comp.disparity)
        else None
    )
    if disp is None or b not in disp.index or t not in disp.index:
        return []
    rb, rt = disp.loc[b], disp.loc[t]
    top = (
        place(rt["top_unit_id"], rt["top_unit_name"])
        if isinstance(rt.get("top_unit_name"), str)
        else rt["top_unit_id"]
    )
    return [
        say(
            "cmp_disparity",
            lang,
            b=b,
            t=t,
            gb=f"{rb['gini']:.2f}",
            gt=f"{rt['gini']:.2f}",
            gb2=f"{rb['gini_without_top']:.2f}",
            gt2=f"{rt['gini_without_top']:.2f}",
            top=top,
            top_share=f"{100 * rt['top_share']:.0f}",
            sb=f"{100 * rb['group_share']:.1f}",
            st=f"{100 * rt['group_share']:.1f}",
            between=f"{100 * rt['between_share']:.1f}",
        )
    ]


def _as_given(unit_id: Any, name: Any) -> str:
    return str(name)


def section_paragraphs(comp: Comparison, lang: str = "en", place: Place = _as_given) -> list[str]:
    """The section's paragraphs, plain text (the HTML and Markdown versions wrap them), in ``lang``:
    the same paragraphs in the same order whatever the language. ``place(unit_id, name)``: a
    county's name as the report shows it (the Korean report's hangul, :class:`report.Places`)."""
    d = comp.did
    paras = [_main_paragraph(d, lang)]
    paras += _cohort_paragraphs(d, lang) + _robustness_paragraph(d, lang)
    w = d.get("without_pyongyang")
    if w:
        paras.append(
            say(
                "cmp_without",
                lang,
                name=place(w["unit_id"], w["name"]),
                unit=w["unit_id"],
                est=_pct(w["estimate_log"]),
                lo=_pct(w["ci_low"]),
                hi=_pct(w["ci_high"]),
                p=p_text(w["p_value"], w["n_placebo"]),
            )
        )
    pre = d.get("pretrends") or []
    if pre:
        sig = sum(1 for r in pre if r["p_value"] is not None and r["p_value"] < 0.05)
        span = ", ".join(
            say(
                "cmp_pretrend_pair",
                lang,
                b=r["baseline_year"],
                t=r["target_year"],
                est=_pct(r["estimate_log"]),
            )
            for r in pre
        )
        paras.append(say("cmp_pretrends", lang, span=span, sig=sig, n=len(pre)))
    paras += _site_placebo_paragraph(d, lang)
    paras.append(_event_paragraph(comp.event_study, lang))
    paras += _disparity_paragraph(comp, lang, place)
    paras.append(say("cmp_limits", lang, limits=say("did_limits", lang)))
    return paras


def _caption(name: str, lang: str) -> str:
    return say(f"caption_{name}", lang)


def section_html(
    comp: Comparison,
    pngs: dict[str, bytes],
    lang: str = "en",
    folder: str = "figures",
    place: Place = _as_given,
) -> str:
    """The report section as HTML, with its charts inline (``lang`` en or ko, its charts' files
    in ``folder``)."""
    e = html.escape
    parts = [f'<h2 id="comparison">{e(say("h_comparison", lang))}</h2>']
    if comp.data_kind == "synthetic":
        parts.append(f'<p class="synthetic">{e(synthetic_notice(lang))}</p>')
    parts += [f"<p>{e(p)}</p>" for p in section_paragraphs(comp, lang, place)]
    for name in CHARTS:
        if name in pngs:
            cap = _caption(name, lang)
            src = "data:image/png;base64," + base64.b64encode(pngs[name]).decode("ascii")
            parts.append(
                f'<figure id="fig-{name}"><img src="{src}" alt="{e(cap)}"><figcaption>'
                f"{e(cap)} {e(say('files', lang))}: {e(folder)}/{name}.*; {e(say('tables', lang))}: "
                "did.json, unit_years.csv, event_study.csv, disparity.csv, spillover.csv."
                "</figcaption></figure>"
            )
    return "\n".join(parts)


def section_md(
    comp: Comparison,
    charts: list[str],
    ext: str = "png",
    lang: str = "en",
    folder: str = "figures",
    place: Place = _as_given,
) -> list[str]:
    """The report section as Markdown lines."""
    lines = [f"## {say('h_comparison', lang)}", ""]
    if comp.data_kind == "synthetic":
        lines += [f"> **{synthetic_notice(lang)}**", ""]
    for p in section_paragraphs(comp, lang, place):
        lines += [md_inline(p), ""]  # unit names come from the boundary file
    for name in CHARTS:
        if name in charts:
            cap = _caption(name, lang)
            lines += [f"![{cap}]({folder}/{name}.{ext})", "", f"*{cap}*", ""]
    return lines


def write_figures(
    comp: Comparison,
    out: Any,
    style: Style | None = None,
    progress: bool = False,
    jobs: int | None = None,
) -> list[str]:
    """The comparison's charts into the staging folder ``out`` (``nightlights compare``)."""
    import matplotlib

    from pipeline.publish.render import draw_charts

    matplotlib.use("Agg")
    style = style or Style()
    specs = chart_specs(comp, comp.data_kind, style)
    return list(draw_charts(specs, style, out, comp.data_kind, jobs=jobs, progress=progress).pngs)
