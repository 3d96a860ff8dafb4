"""Report: the run in words, as one self-contained HTML page and as Markdown.

Inputs
    :class:`pipeline.analysis.Results`, the charts as PNG bytes, the inputs' checksums and
    a :class:`pipeline.publish.style.Style`.
Outputs
    ``report.html`` text (every image and the hangul font subset embedded; a
    Content-Security-Policy forbids any outside request, so a reader can mail it or open
    it offline) and ``report.md`` text. Nothing is read or written here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from pipeline.publish.charts import ordered
from pipeline.publish.comparison import section_html, section_md
from pipeline.publish.style import (
    Style,
    credit_line,
    describe_products,
    is_synthetic,
    korean_font_path,
    source_date,
)
from pipeline.verdict import CLAIM, SYNTHETIC_NOTE, headline

CHARTS = {
    "verdict": "Change of each site from the baseline to the target year with its 95% interval, sorted; "
               "grey band: changes too small to count; markers and colours give the class.",
    "small_multiples": "Monthly radiance of each site; gaps and crosses are months without a valid "
                       "observation (clouds, stray light), never read as darkness.",
    "map": "The sites over the target year's mean night-light composite (the data itself, no web map).",
    "before_after": "Baseline-year and target-year mean of valid months around each site on one colour "
                    "scale; outline: the site polygon.",
    "robustness": "Number of claim sites classed brightened under every method variant; "
                  "hatched bar: the claim's count.",
}

# --------------------------------------------------------------------------- text


def method_paragraph(v: dict[str, Any], sens_rows: int | None) -> str:
    """The method in words a reader without remote-sensing training can follow."""
    p = v["parameters"]
    thr = float(p["threshold"])
    up, down = 100 * np.expm1(thr), -100 * np.expm1(-thr)
    months = p.get("months") or list(range(1, 13))
    text = (
        f"Satellites of the VIIRS series photograph the Earth at night; monthly composites average each "
        f"month's cloud-free nights into one image of 15 arc-second pixels (about 500 m). For each site we "
        f"took the pixels under its circle of {p['default_radius_m'] / 1000:g} km radius around the reported "
        f"location (the sites are located only to about 1 to 2 km), weighting each pixel by the share of it "
        f"inside the circle. A month counts only when at least {100 * p['min_valid_fraction']:.0f}% of the "
        f"site's area was observed (at least {p['min_cf_cvg']} cloud-free nights for EOG data); a month "
        f"without observations is missing, not dark. We compared {v['target_year']} with {v['baseline_year']} "
        f"only on calendar months valid in both years (snow and moonlight differ by season; "
        f"{len(months)} calendar months considered, at least {p['min_matched_months']} needed), took the "
        f"{p['statistic']} month of each year and their ratio. A site is called brightened only when it rose "
        f"by at least {up:.0f}% and a {100 * p['confidence']:.0f}% interval from its month-to-month variation "
        f"(bootstrap) excludes no change; dimmed when it fell by at least {down:.0f}% under the same rule; "
        f"otherwise similar (unchanged). A ring {p['ring_inner_m'] / 1000:g} to {p['ring_outer_m'] / 1000:g} km "
        f"around each site measures region-wide change (power supply, sensor, weather); the ring-adjusted "
        f"class is reported beside the headline class, which uses the site's own change because the claim "
        f"speaks of luminosity.")
    if sens_rows:
        text += (f" Because the claim's method is unpublished, we repeated the classification for {sens_rows} "
                 f"defensible variants (threshold, radius, yearly statistic, months, ring adjustment, pixel "
                 f"rule) to show how much the count depends on such choices.")
    return text


def robustness_sentence(v: dict[str, Any]) -> str:
    r = v.get("robustness")
    if not r:
        return "Method variants were not computed for this run (--no-sensitivity)."
    text = (f"Across {r['n_variants']} method variants, between {r['brightened_min']} and {r['brightened_max']} "
            f"{'claim ' if r.get('scope', '').startswith('the claim') else ''}sites brightened "
            f"(median {r['brightened_median']:g})")
    if r.get("share_exactly_5_of_20") is None:
        return text + "; the claim's 20 sites are not all in this run, so no share of '5 of 20' is given."
    return (text + f"; exactly {CLAIM['brightened']} of 20 in {100 * r['share_exactly_5_of_20']:.0f}% of variants, "
            f"at most {CLAIM['brightened']} in {100 * r['share_at_most_5']:.0f}%.")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, float | np.floating):
        return f"{x:.{digits}g}"
    return str(x)


def _text(value: Any) -> str:
    """A table cell: empty for missing values (never 'nan')."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def sites_rows(results: Any) -> list[dict[str, str]]:
    rows = []
    for _, r in ordered(results.changes).iterrows():
        ci = "" if pd.isna(r.get("ci_low")) else f" [{r['ci_low']:+.0f}, {r['ci_high']:+.0f}]"
        rows.append({
            "Site": _text(r.get("name")) or str(r["site_id"]), "Hangul": _text(r.get("name_ko")),
            "Province": _text(r.get("province")), "Batch": _fmt(r.get("batch")),
            "Baseline": _fmt(r.get("baseline_value")), "Target": _fmt(r.get("target_value")),
            "Change % [95% CI]": ("–" if pd.isna(r.get("change_pct")) else f"{r['change_pct']:+.0f}{ci}"),
            "Class": str(r["class"]).replace("_", " "),
            "Ring-adjusted": str(r.get("class_ring_adjusted", "")).replace("_", " "),
            "Months": _fmt(r.get("n_months")),
        })
    return rows


def _period(v: dict[str, Any]) -> str:
    months = sorted(i["month"] for i in v.get("inputs", []))
    return f"{months[0]} to {months[-1]}" if months else "unknown"


def _provenance(results: Any, checksums: dict[str, str]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    v = results.verdict
    date = source_date()
    facts = [
        ("Data", "SYNTHETIC (generated demo rasters)" if is_synthetic(v) else "real satellite data"),
        ("Product", describe_products((i["product"] for i in v.get("inputs", [])), is_synthetic(v))),
        ("Period", _period(v)), ("Source", str(v.get("source", ""))),
        ("Folder", ", ".join(sorted({str(i.get("folder", "")) for i in v.get("inputs", [])}))),
        ("Software", f"nightlights {v.get('nightlights_version', '')}"),
        ("Claim", f"{CLAIM['text']} ({CLAIM['source']})"),
    ]
    if date:
        facts.append(("Built", date.strftime("%Y-%m-%d %H:%M UTC (SOURCE_DATE_EPOCH)")))
    files = []
    for i in v.get("inputs", []):
        for key in ("file", "aux"):
            if i.get(key):
                files.append([i["month"], i[key], checksums.get(i[key], "not found")])
    return facts, files


# --------------------------------------------------------------------------- HTML

CSS = """
body{font-family:"Noto Sans KR subset","DejaVu Sans",Helvetica,Arial,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.synthetic{background:#CC3311;color:#fff;font-weight:bold;padding:1rem;font-size:1.1rem;border-radius:4px}
.headline{font-size:1.15rem;font-weight:bold}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444}code,.hash{font-family:"DejaVu Sans Mono",monospace;font-size:.75rem;
word-break:break-all}
.credit{font-size:.8rem;color:#555}
"""
CSP = ("default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")


def _table(header: list[str], rows: list[list[str]], num: set[int] | None = None) -> str:
    num = num or set()
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td{' class=num' if j in num else ''}>{html.escape(str(c))}</td>" for j, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def report_html(results: Any, pngs: dict[str, bytes], checksums: dict[str, str], style: Style) -> str:
    """One HTML file with everything inline (CSP forbids any outside request)."""
    v = results.verdict
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', '<link rel="icon" href="data:,">',
        f"<title>{'[SYNTHETIC] ' if is_synthetic(v) else ''}nightlights report: "
        f"{v['baseline_year']} to {v['target_year']}</title>", "<style>{CSS}</style></head><body>",
    ]
    if is_synthetic(v):
        parts.append(f'<div class="synthetic" id="synthetic-warning" role="alert">{e(SYNTHETIC_NOTE)} '
                     "Every number, table and chart below is made from generated rasters, to show what the "
                     "pipeline produces.</div>")
    c = v["claim_sites"]
    parts += [
        f"<h1>Night lights at the sites, {v['baseline_year']} to {v['target_year']}</h1>",
        f'<p class="headline">{e(headline(v))}</p>',
        f"<p>The claim: “{e(CLAIM['text'])}” ({e(CLAIM['source'])}).</p>",
        _table(["", "Brightened", "Similar or dimmer", "Insufficient data"], [
            ["Claim", str(CLAIM["brightened"]), str(CLAIM["similar_or_dimmer"]), "–"],
            [f"This run (batch {CLAIM['batch']}, {c['n_sites']} sites)", str(c["counts"]["brightened"]),
             str(c["similar_or_dimmer"]), str(c["counts"]["insufficient_data"])]], num={1, 2, 3}),
        f"<p>{e(robustness_sentence(v))} {e(_calibration_sentence(v))}</p>",
        "<h2>Method</h2>", f"<p>{e(method_paragraph(v, len(results.sensitivity) if results.sensitivity is not None else None))}</p>",
        "<h2>Sites</h2>",
    ]
    rows = sites_rows(results)
    if rows:
        parts.append(_table(list(rows[0]), [list(r.values()) for r in rows], num={4, 5, 9}))
    parts.append("<p class=credit>Baseline and target: yearly statistic of matched months, nW/cm²/sr. "
                 "GIS files: sites_classified.geojson, sites_classified.parquet (GeoParquet), "
                 "site_months.parquet.</p><h2>Charts</h2>")
    for name, data in pngs.items():
        if name not in CHARTS:  # comparison charts go in their own section
            continue
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        files = ", ".join(f"figures/{name}.{f}" for f in style.formats)
        parts.append(f'<figure id="fig-{name}"><img src="{src}" alt="{e(CHARTS[name])}">'
                     f"<figcaption><b>{e(name.replace('_', ' ').capitalize())}.</b> {e(CHARTS[name])} "
                     f"Files: {e(files)}.</figcaption></figure>")
    if getattr(results, "comparison", None) is not None:
        parts.append(section_html(results.comparison, pngs))
    facts, files = _provenance(results, checksums)
    parts += ["<h2>Provenance</h2>", _table(["", ""], [list(f) for f in facts]),
              f"<p class=credit>{e(credit_line(v))}</p>", "<h3>Parameters</h3>",
              _table(["Parameter", "Value"], [[k, json.dumps(val)] for k, val in v["parameters"].items()]),
              "<h3>Input files (SHA-256)</h3>",
              _table(["Month", "File", "SHA-256"], files).replace("<td>", "<td class=hash>"),
              "</body></html>"]
    page = "\n".join(parts) + "\n"
    return page.replace("<style>{CSS}</style>", f"<style>{CSS}{korean_font_css(page)}</style>", 1)


def _calibration_sentence(v: dict[str, Any]) -> str:
    cal = v.get("calibration")
    if not cal:
        return ""
    return (f"Stable control places ({cal['controls']}, n = {cal['n_controls']}) changed by |ln ratio| "
            f"{cal['abs_log_ratio_p95']:.2f} or less in 95% of cases, against the threshold "
            f"{cal['default_threshold']:g}.")


def report_md(results: Any, charts: list[str], checksums: dict[str, str], style: Style) -> str:
    v = results.verdict
    lines = []
    if is_synthetic(v):
        lines += [f"> **{SYNTHETIC_NOTE}**", ""]
    lines += [f"# Night lights at the sites, {v['baseline_year']} to {v['target_year']}", "",
              f"**{headline(v)}**", "", f"Claim: “{CLAIM['text']}” ({CLAIM['source']})", "",
              robustness_sentence(v) + " " + _calibration_sentence(v), "", "## Method", "",
              method_paragraph(v, len(results.sensitivity) if results.sensitivity is not None else None), "",
              "## Sites", ""]
    rows = sites_rows(results)
    if rows:
        lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(x.replace("|", "/") for x in r.values()) + " |" for r in rows]
    lines += ["", "## Charts", ""]
    ext = "png" if "png" in style.formats else style.formats[0]
    for name in (c for c in charts if c in CHARTS):
        lines += [f"![{CHARTS[name]}](figures/{name}.{ext})", "", f"*{CHARTS[name]}*", ""]
    if getattr(results, "comparison", None) is not None:
        lines += section_md(results.comparison, charts, ext)
    facts, files = _provenance(results, checksums)
    lines += ["## Provenance", ""] + [f"- **{k}**: {val}" for k, val in facts] + ["", credit_line(v), "",
              "| Parameter | Value |", "|---|---|"] + [f"| {k} | `{json.dumps(x)}` |" for k, x in
                                                    v["parameters"].items()]
    lines += ["", "| Month | File | SHA-256 |", "|---|---|---|"] + [f"| {a} | {b} | `{c}` |" for a, b, c in files]
    return "\n".join(lines) + "\n"


def korean_font_css(text: str) -> str:
    """CSS embedding the Noto Sans KR glyphs ``text`` uses (a few kB), so hangul shows without system fonts."""
    chars = set(re.findall(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]", text))
    path = korean_font_path()
    if not chars or path is None:
        return ""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(path, recalcTimestamp=False)  # keep bytes reproducible
    options = subset.Options()
    options.name_IDs = ["*"]  # keeps the copyright and SIL OFL 1.1 notice
    sub = subset.Subsetter(options)
    sub.populate(text="".join(sorted(chars)))
    sub.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return ("@font-face{font-family:\"Noto Sans KR subset\";font-display:block;unicode-range:U+1100-11FF,"
            "U+3130-318F,U+AC00-D7AF;src:url(data:font/otf;base64," + data + ") format(\"opentype\");}")
