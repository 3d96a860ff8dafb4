"""Comparison charts and report section: the designated counties against the counties that got nothing.

Inputs
    The tables of :class:`pipeline.compare.county.Comparison` (event study, unit panel, DiD placebo
    draws, ``did.json`` content), a verdict-like mapping (data kind, inputs, parameters: what
    :func:`pipeline.publish.style.finish` prints) and a :class:`~pipeline.publish.style.Style`.
Outputs
    Figures (pure functions, nothing written) and the report section "Against the counties that
    got nothing" as HTML and Markdown text, in words for journalists.

Longer than most modules because every sentence of the section is here twice, in English and in
Korean, beside the charts they describe.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from pipeline.compare.disparity import lorenz_curve
from pipeline.publish.style import BAND_COLOR, CLAIM_COLOR, Style, finish
from pipeline.publish.words import batch_name, md_inline

EVENT_COLOR = "#0077BB"  # Tol vibrant blue
YEAR_COLORS = ("#BBBBBB", "#EE7733")  # baseline grey, target orange (the class colours' scheme)
CHARTS = {
    "event_study": "Light at the designated sites in the months around each inauguration, relative to the mean "
    "of the counties without a site and to the sites' own 12 months before (0); band: 95% "
    "interval over sites; bottom: how many sites have data that month.",
    "lorenz": "Lorenz curves of county light in the baseline and target year: the further a curve bends below "
    "the diagonal, the more the light is concentrated in a few counties.",
    "did_placebo": "The designated counties' difference in light change (line) against the same difference "
    "for random sets of other counties of the same size and provinces (bars).",
}
CHARTS_KO = {
    "event_study": "준공 전후 몇 달 동안 지정 지점의 불빛. 지점이 없는 시·군의 평균과 지점 자신의 준공 전 12개월(0)에 "
    "대한 상대값이다. 띠는 지점 간 95% 구간, 아래는 그달 자료가 있는 지점 수.",
    "lorenz": "기준 연도와 목표 연도 시·군별 불빛의 로렌츠 곡선. 대각선 아래로 많이 휠수록 불빛이 소수 시·군에 몰려 있다.",
    "did_placebo": "지정 시·군의 불빛 변화 차이(선)와, 같은 도·같은 수로 무작위로 뽑은 다른 시·군 조합의 같은 차이(막대).",
}


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
    events: pd.DataFrame, verdict: dict[str, Any], style: Style
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
    unit_years: pd.DataFrame, years: tuple[int, int], verdict: dict[str, Any], style: Style
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
    placebo: tuple[float, ...], did: dict[str, Any], verdict: dict[str, Any], style: Style
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


def chart_builders(
    comp: Any, verdict: dict[str, Any], style: Style
) -> dict[str, Callable[[], plt.Figure | None]]:
    """The comparison's charts by name (for ``publish._chart_builders`` and ``compare``)."""
    years = (int(comp.did["baseline_year"]), int(comp.did["target_year"]))
    verdict = {**verdict, "credit": credit(comp)}
    return {
        "event_study": lambda: event_study_figure(comp.event_study, verdict, style),
        "lorenz": lambda: lorenz_figure(comp.unit_years, years, verdict, style),
        "did_placebo": lambda: did_placebo_figure(comp.placebo, comp.did, verdict, style),
    }


def credit(comp: Any) -> str:
    """The credit line of the comparison charts: data, period and what was computed."""
    from pipeline import __version__
    from pipeline.publish.style import describe_products

    d = comp.did
    period = " to ".join(d.get("period") or []) or "period unknown"
    return (
        f"Data: {describe_products(d.get('products') or [], comp.data_kind == 'synthetic')}, {period}. "
        f"Processing: nightlights {__version__}, exact coverage-weighted county sums of light (mean of valid "
        f"months), {d.get('n_treated')} designated vs {d.get('n_control')} other counties, randomization "
        "inference; event study against the mean of the other counties."
    )


def chart_verdict(comp: Any) -> dict[str, Any]:
    """What :func:`finish` needs when there is no run verdict (``nightlights compare``)."""
    d = comp.did
    inputs = [
        {"month": m, "product": p}
        for m in d.get("period") or []
        for p in d.get("products") or ["geotiff"]
    ]
    return {"data_kind": comp.data_kind, "inputs": inputs, "parameters": d.get("parameters", {})}


# --------------------------------------------------------------------------- report text


def _p_words(p: float) -> str:
    if p < 0.01:
        return "very unlikely to be chance"
    if p < 0.05:
        return "unlikely to be chance"
    if p < 0.10:
        return "only weakly distinguishable from chance"
    return "well within what chance alone produces"


def _event_sentence(events: pd.DataFrame) -> str:
    if events is None or events.empty:
        return (
            "There is no event study: no designated site has an inauguration date with a year of data "
            "before it in this run."
        )
    e = events.set_index("relative_month")
    post = e.loc[(e.index >= 1) & (e.index <= 12)]
    at0 = e.loc[0] if 0 in e.index else None
    text = "Around each inauguration (chart), "
    if at0 is not None:
        text += (
            f"the sites' light relative to the control counties was {_pct(at0['estimate'])} in the month "
            f"of the ceremony (95% interval {_pct(at0['ci_low'])} to {_pct(at0['ci_high'])}, "
            f"{int(at0['n_sites'])} sites) compared with the year before. "
        )
    if len(post):
        low = int((post["ci_high"] < 0).sum())
        high = int((post["ci_low"] > 0).sum())
        mean = float(post["estimate"].mean())
        text += (
            f"Over the {len(post)} months after it, the average was {_pct(mean)}; the interval lay wholly "
            f"below no change in {low} month(s) and wholly above it in {high}. "
        )
        if low > len(post) / 2:
            text += "That supports \u201cthe lights went out after the ceremony\u201d."
        elif high > len(post) / 2:
            text += "The lights stayed brighter after the ceremony; the data do not show them going out."
        else:
            text += (
                "Whether the lights went out after the ceremony cannot be told apart from month-to-month "
                "noise with these sites."
            )
    return text


def _relative(est: float) -> str:
    pct = 100 * math.expm1(est)
    if abs(pct) < 0.5:
        return "the designated counties' light changed as much as the other counties' light"
    way = "rose" if pct > 0 else "fell"
    return f"the designated counties' light {way} by about {abs(pct):.0f}% relative to the other counties' light"


def _power_words(d: dict[str, Any]) -> str:
    """Issue 23: what a non-significant result can and cannot rule out, for readers."""
    mde, neg = d.get("mde_log"), d.get("mde_log_negative")
    if d.get("p_value") is None:
        return ""
    if d["p_value"] < 0.05:  # significant: still say what the design could see, so results compare
        if mde is None:
            return ""
        return (
            f" The smallest effect this comparison detects 4 times in 5 (80% power at the 5% level, from the "
            f"placebo sets) is a brightening of {_pct(mde)}"
            + (f" or a dimming of {_pct(neg)}" if neg is not None else "")
            + "."
        )
    if mde is None:
        return " With so few placebo sets the test cannot reject at 5%; the result says nothing about an effect."
    text = (
        f" Not significant is not the same as no effect: this comparison picks up a brightening of "
        f"{_pct(mde)} or more only 4 times in 5 (80% power at the 5% level, from the placebo sets)"
    )
    text += f", and a dimming of {_pct(neg)} or more as often" if neg is not None else ""
    return text + (
        f"; smaller effects can go unseen. Effects beyond {_pct(d['ci_low'])} to {_pct(d['ci_high'])} "
        "are ruled out by the interval."
    )


def _controls_words(d: dict[str, Any]) -> str:
    n = d.get("n_excluded_controls")
    if not n:
        return ""
    batches = sorted({str(e.get("batch")) for e in d.get("excluded_controls") or []})
    return (
        f" {n} counties of other batches ({', '.join(batches)}) were left out of the comparison because their "
        f"factories were already being built by {d['target_year']} (did.json lists them and why)."
    )


def _controls_words_ko(d: dict[str, Any]) -> str:
    n = d.get("n_excluded_controls")
    if not n:
        return ""
    batches = "·".join(sorted({str(e.get("batch")) for e in d.get("excluded_controls") or []}))
    return (
        f" {d['target_year']}년까지 공장 건설이 시작된 다른 묶음({batches}) 시·군 {n}곳은 비교에서 뺐다"
        "(목록과 이유는 did.json)."
    )


def _power_words_ko(d: dict[str, Any]) -> str:
    mde, neg = d.get("mde_log"), d.get("mde_log_negative")
    if d.get("p_value") is None:
        return ""
    if d["p_value"] < 0.05:
        if mde is None:
            return ""
        dim = f" 또는 {_pct(neg)} 어두워짐" if neg is not None else ""
        return (
            f" 이 비교가 5번 중 4번 잡아내는 가장 작은 효과(5% 수준 검정력 80%, 위약 조합으로 계산)는 "
            f"{_pct(mde)} 밝아짐{dim}이다."
        )
    if mde is None:
        return " 위약 조합이 너무 적어 5% 수준에서 기각할 수 없으므로, 이 결과는 효과에 대해 아무것도 말하지 않는다."
    dim = f", {_pct(neg)} 이상 어두워진 경우도 같은 빈도로" if neg is not None else ""
    return (
        f" 유의하지 않다는 것이 효과가 없다는 뜻은 아니다: 이 비교는 {_pct(mde)} 이상 밝아진 효과{dim} 5번 중 4번만 "
        f"잡아낸다(5% 수준 검정력 80%, 위약 조합으로 계산). 그보다 작은 효과는 놓칠 수 있다. 구간 "
        f"{_pct(d['ci_low'])}~{_pct(d['ci_high'])} 밖의 효과는 배제된다."
    )


def section_paragraphs(comp: Any) -> list[str]:
    """The section's paragraphs, plain text (the HTML and Markdown versions wrap them)."""
    d = comp.did
    b, t = d["baseline_year"], d["target_year"]
    paras = [
        (
            f"We set the {d['n_treated']} counties holding a site of the {d['batch']} batch against the "
            f"{d['n_control']} counties without a factory built or being built in those years, using the same "
            f"satellite measurement for both. From {b} to "
            f"{t}, {_relative(d['estimate_log'])} (95% interval {_pct(d['ci_low'])} to {_pct(d['ci_high'])}, as a "
            "ratio of the designated counties' change to the others' change). "
            f"Of {d['n_placebo']} random sets of {d['n_treated']} other counties from the same provinces, the share "
            f"showing a difference at least as large is p {p_text(d['p_value'], d['n_placebo'])}: "
            f"{_p_words(d['p_value'])}." + _power_words(d) + _controls_words(d)
        )
    ]
    paras += _cohort_paragraphs(d) + _robustness_paragraph(d)
    w = d.get("without_pyongyang")
    if w:
        paras.append(
            f"Without {w['name']} (unit {w['unit_id']}), the difference is {_pct(w['estimate_log'])} "
            f"(interval {_pct(w['ci_low'])} to {_pct(w['ci_high'])}, p {p_text(w['p_value'], w['n_placebo'])})."
        )
    pre = d.get("pretrends") or []
    if pre:
        sig = sum(1 for r in pre if r["p_value"] is not None and r["p_value"] < 0.05)
        span = ", ".join(
            f"{r['baseline_year']}\u2013{r['target_year']} {_pct(r['estimate_log'])}" for r in pre
        )
        paras.append(
            f"Before designation the same comparison should show nothing: {span}; {sig} of {len(pre)} "
            "year pairs differ at p < 0.05."
        )
    sp = d.get("site_placebo") or d.get("site_placebo_observed")
    if sp and "k" in sp:
        paras.append(
            f"Applying the site rule to {sp['n_control_sites']} comparable places in the control "
            f"counties, a random set of {sp['n']} has on average {sp['expected']:.1f} brightened; "
            f"{sp['k']} of {sp['n']} ({sp['of']}) sits at the {sp['percentile']:.0f}th percentile of that "
            + (
                f"count (chance of {sp['k']} or fewer: {sp['p_lower']:.2f})."
                if sp["k"] <= sp["expected"]
                else f"count (chance of {sp['k']} or more: {sp['p_upper']:.2f})."
            )
        )
    paras.append(_event_sentence(comp.event_study))
    disp = (
        comp.disparity.set_index("year")
        if comp.disparity is not None and len(comp.disparity)
        else None
    )
    if disp is not None and b in disp.index and t in disp.index:
        rb, rt = disp.loc[b], disp.loc[t]
        top = (
            rt.get("top_unit_name")
            if isinstance(rt.get("top_unit_name"), str)
            else rt["top_unit_id"]
        )
        paras.append(
            f"Across counties, the Gini index of light was {rb['gini']:.2f} in {b} and {rt['gini']:.2f} in "
            f"{t} ({rb['gini_without_top']:.2f} and {rt['gini_without_top']:.2f} without the brightest, "
            f"{top}, which holds {100 * rt['top_share']:.0f}% of all light). The designated counties held "
            f"{100 * rb['group_share']:.1f}% of the light in {b} and {100 * rt['group_share']:.1f}% in {t}; "
            f"the gap between designated and other counties is {100 * rt['between_share']:.1f}% of the "
            f"Theil index in {t}."
        )
    paras.append("What this design cannot tell: " + str(d.get("limits", "")))
    return paras


def _cohort_paragraphs(d: dict[str, Any]) -> list[str]:
    """Issue 23: the batch from a baseline before groundbreaking, and every batch's effect."""
    out = []
    e = d.get("baseline_before_groundbreaking") or {}
    if "estimate_log" in e:
        out.append(
            f"{d['baseline_year']} was already a construction year for this batch. From {e['baseline_year']}, "
            f"before its groundbreaking, to {e['target_year']}, the difference is {_pct(e['estimate_log'])} "
            f"(interval {_pct(e['ci_low'])} to {_pct(e['ci_high'])}, p {p_text(e['p_value'], e['n_placebo'])})."
        )
    c = d.get("cohort_effects") or {}
    if c.get("aggregate_log") is not None:
        parts = ", ".join(
            f"batch {w['batch']} in {w['year']} ({100 * w['weight']:.0f}%)" for w in c["weights"]
        )
        text = (
            f"Taking every batch against counties not yet building, from the year before each batch broke ground, "
            f"the average effect from groundbreaking on is {_pct(c['aggregate_log'])} (interval "
            f"{_pct(c['aggregate_ci_low'])} to {_pct(c['aggregate_ci_high'])}, p "
            f"{p_text(c['aggregate_p_value'], c['n_placebo'])}; weights {parts})."
        )
        if c.get("pretrend_p_value") is not None:
            text += (
                f" Before groundbreaking, the {c['n_pretrend_cells']} earlier batch-years together give p "
                f"{p_text(c['pretrend_p_value'], c['n_placebo'])} against parallel trends"
            )
            per = c.get("pretrend_by_batch") or []
            text += (
                " ("
                + ", ".join(
                    f"batch {r['batch']} p {p_text(r['p_value'], c['n_placebo'])}" for r in per
                )
                + ")."
                if per
                else "."
            )
        out.append(text)
    return out


def _robustness_paragraph(d: dict[str, Any]) -> list[str]:
    """Issue 23: the checks beside the main result, one sentence each."""
    r = d.get("robustness") or {}
    parts = []
    u = r.get("unequal_variance") or {}
    if "p_value" in u:
        parts.append(
            f"allowing the designated counties to vary more than the others (wild bootstrap over "
            f"{u['n_clusters']} provinces) gives p {p_text(u['p_value'], u['n_boot'])}"
        )
    f = r.get("far_controls") or {}
    if "estimate_log" in f:
        parts.append(
            f"leaving out the {f['n_near_left_out']} counties bordering or within {f['km']:g} km of a "
            f"designated one gives {_pct(f['estimate_log'])} (p {p_text(f['p_value'], f['n_placebo'])})"
        )
    floors = r.get("log_floor") or []
    if floors:
        parts.append(
            "the floor that keeps dark counties finite at "
            + ", ".join(f"{x['factor']:g}×" for x in floors)
            + " its default gives "
            + ", ".join(_pct(x["estimate_log"]) for x in floors)
        )
    return ["Checks beside the main result: " + "; ".join(parts) + "."] if parts else []


def _robustness_paragraph_ko(d: dict[str, Any]) -> list[str]:
    r = d.get("robustness") or {}
    parts = []
    u = r.get("unequal_variance") or {}
    if "p_value" in u:
        parts.append(
            f"지정 시·군의 변동이 더 클 수 있다고 보면(도 {u['n_clusters']}곳 단위 와일드 부트스트랩) "
            f"p {p_text(u['p_value'], u['n_boot'])}"
        )
    f = r.get("far_controls") or {}
    if "estimate_log" in f:
        parts.append(
            f"지정 시·군과 맞닿거나 {f['km']:g}km 안에 있는 {f['n_near_left_out']}곳을 빼면 "
            f"{_pct(f['estimate_log'])}(p {p_text(f['p_value'], f['n_placebo'])})"
        )
    floors = r.get("log_floor") or []
    if floors:
        parts.append(
            "어두운 시·군을 위한 하한을 기본값의 "
            + ", ".join(f"{x['factor']:g}배" for x in floors)
            + "로 하면 "
            + ", ".join(_pct(x["estimate_log"]) for x in floors)
        )
    return ["주 결과 옆의 점검: " + "; ".join(parts) + "."] if parts else []


def section_paragraphs_ko(comp: Any) -> list[str]:
    """:func:`section_paragraphs` in Korean, from the same numbers."""
    d = comp.did
    b, t = d["baseline_year"], d["target_year"]
    pct = 100 * math.expm1(d["estimate_log"])
    way = (
        f"약 {abs(pct):.0f}% {'더 밝아졌다' if pct > 0 else '더 어두워졌다'}"
        if abs(pct) >= 0.5
        else "비슷하게 변했다"
    )
    p = d["p_value"]
    chance = (
        "우연으로 보기 매우 어렵다"
        if p < 0.01
        else "우연으로 보기 어렵다"
        if p < 0.05
        else "우연과 겨우 구별된다"
        if p < 0.10
        else "우연만으로도 충분히 나올 수 있는 차이다"
    )
    paras = [
        (
            f"{batch_name(d['batch'], 'ko')} 지점이 있는 {d['n_treated']}개 시·군을, 비교한 해에 공장을 짓지도 "
            f"짓고 있지도 않은 {d['n_control']}개 시·군과 같은 위성 측정으로 비교했다. {b}년에서 {t}년 사이 지정 시·군의 불빛은 다른 시·군보다 {way}(95% 구간 "
            f"{_pct(d['ci_low'])}~{_pct(d['ci_high'])}). 같은 도에서 무작위로 뽑은 다른 시·군 {d['n_treated']}곳의 조합 "
            f"{d['n_placebo']}개 가운데 이만큼 큰 차이를 보인 비율은 p {p_text(p, d['n_placebo'])}로, {chance}."
            + _power_words_ko(d)
            + _controls_words_ko(d)
        )
    ]
    paras += _robustness_paragraph_ko(d)
    w = d.get("without_pyongyang")
    if w:
        paras.append(
            f"{w['name']}(단위 {w['unit_id']})을 빼면 차이는 {_pct(w['estimate_log'])}"
            f"(구간 {_pct(w['ci_low'])}~{_pct(w['ci_high'])}, p {p_text(w['p_value'], w['n_placebo'])})다."
        )
    pre = d.get("pretrends") or []
    if pre:
        sig = sum(1 for r in pre if r["p_value"] is not None and r["p_value"] < 0.05)
        span = ", ".join(
            f"{r['baseline_year']}~{r['target_year']}년 {_pct(r['estimate_log'])}" for r in pre
        )
        paras.append(
            f"지정 전에는 같은 비교에서 차이가 없어야 한다: {span}. {len(pre)}개 연도 쌍 중 {sig}개가 "
            "p < 0.05로 달랐다."
        )
    ev = comp.event_study
    if ev is not None and not ev.empty:
        e = ev.set_index("relative_month")
        post = e.loc[(e.index >= 1) & (e.index <= 12)]
        if len(post):
            low, high = int((post["ci_high"] < 0).sum()), int((post["ci_low"] > 0).sum())
            paras.append(
                f"준공 후 {len(post)}개월 동안 지점의 불빛은 대조 시·군에 비해 준공 전 1년보다 평균 "
                f"{_pct(float(post['estimate'].mean()))} 달랐다. 구간 전체가 '변화 없음'보다 낮은 달은 "
                f"{low}개월, 높은 달은 {high}개월이었다."
            )
    disp = (
        comp.disparity.set_index("year")
        if comp.disparity is not None and len(comp.disparity)
        else None
    )
    if disp is not None and b in disp.index and t in disp.index:
        rb, rt = disp.loc[b], disp.loc[t]
        paras.append(
            f"시·군별 불빛의 지니계수는 {b}년 {rb['gini']:.2f}, {t}년 {rt['gini']:.2f}였다(가장 밝은 곳을 빼면 "
            f"{rb['gini_without_top']:.2f}, {rt['gini_without_top']:.2f}). 지정 시·군의 불빛 비중은 {b}년 "
            f"{100 * rb['group_share']:.1f}%, {t}년 {100 * rt['group_share']:.1f}%였다."
        )
    paras.append(
        "이 설계가 말해주지 못하는 것: 지정 지역은 무작위로 고른 곳이 아니고, 다음 차수 지정 지역은 건설이 "
        "시작되기 전까지만 대조군에 들어가며, 인접 시·군이 대조군에 섞여 있고, 불빛은 전력 공급과 공장 가동을 "
        "간접적으로만 보여준다."
    )
    return paras


def section_html(comp: Any, pngs: dict[str, bytes], lang: str = "en") -> str:
    """The report section as HTML, with its charts inline (``lang`` en or ko)."""
    e = html.escape
    ko = lang == "ko"
    parts = [
        f'<h2 id="comparison">{"지정받지 못한 시·군과의 비교" if ko else "Against the counties that got nothing"}</h2>'
    ]
    if comp.data_kind == "synthetic":
        warning = (
            "합성 데모 데이터: 북한에 대한 증거가 아니다."
            if ko
            else comp.did.get("WARNING", "SYNTHETIC DATA")
        )
        parts.append(f'<p class="synthetic">{e(warning)}</p>')
    parts += [
        f"<p>{e(p)}</p>" for p in (section_paragraphs_ko(comp) if ko else section_paragraphs(comp))
    ]
    for name in CHARTS:
        if name in pngs:
            cap = CHARTS_KO.get(name, CHARTS[name]) if ko else CHARTS[name]
            src = "data:image/png;base64," + base64.b64encode(pngs[name]).decode("ascii")
            files = "파일" if ko else "Files"
            tables = "표" if ko else "tables"
            parts.append(
                f'<figure id="fig-{name}"><img src="{src}" alt="{e(cap)}"><figcaption>'
                f"{e(cap)} {files}: figures/{name}.*; {tables}: did.json, unit_years.csv, "
                "event_study.csv, disparity.csv, spillover.csv.</figcaption></figure>"
            )
    return "\n".join(parts)


def section_md(comp: Any, charts: list[str], ext: str = "png", lang: str = "en") -> list[str]:
    """The report section as Markdown lines."""
    ko = lang == "ko"
    lines = [
        f"## {'지정받지 못한 시·군과의 비교' if ko else 'Against the counties that got nothing'}",
        "",
    ]
    if comp.data_kind == "synthetic":
        warning = (
            "합성 데모 데이터: 북한에 대한 증거가 아니다."
            if ko
            else comp.did.get("WARNING", "SYNTHETIC DATA")
        )
        lines += [f"> **{warning}**", ""]
    for p in section_paragraphs_ko(comp) if ko else section_paragraphs(comp):
        lines += [md_inline(p), ""]  # unit names come from the boundary file
    for name in CHARTS:
        if name in charts:
            cap = CHARTS_KO.get(name, CHARTS[name]) if ko else CHARTS[name]
            lines += [f"![{cap}](figures/{name}.{ext})", "", f"*{cap}*", ""]
    return lines


def write_figures(comp: Any, out: Any, style: Style | None = None) -> list[str]:
    """The comparison's charts into the staging folder ``out`` (``nightlights compare``)."""
    import matplotlib

    from pipeline.publish.style import save, styled

    matplotlib.use("Agg")
    style = style or Style()
    verdict = chart_verdict(comp)
    written = []
    for name, build in chart_builders(comp, verdict, style).items():
        with styled(style):
            fig = build()
            if fig is None:
                continue
            for fmt in style.formats:
                out.path(f"figures/{name}.{fmt}")
            save(
                fig,
                out.dir / "figures" / name,
                style,
                verdict,
                title=f"nightlights: {name.replace('_', ' ')}",
            )
            written.append(name)
    return written
