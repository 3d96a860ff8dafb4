"""Report: the run in words, as one self-contained HTML page and as Markdown.

Inputs
    :class:`pipeline.results.Results`, the charts as PNG bytes, the inputs' checksums and
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

import pipeline.publish.words as W
from pipeline.judge.verdict import SYNTHETIC_NOTE
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
from pipeline.publish.words import md_inline

CHARTS = W.CAPTIONS["en"]  # chart name -> English caption (Korean: pipeline.publish.words)

# --------------------------------------------------------------------------- text


def method_paragraph(v: dict[str, Any], sens_rows: int | None, lang: str = "en") -> str:
    return W.method_paragraph(v, sens_rows, lang)


def robustness_sentence(v: dict[str, Any], lang: str = "en") -> str:
    return W.robustness_sentence(v, lang)


def observability_sentences(v: dict[str, Any], lang: str = "en") -> list[str]:
    """One sentence per batch: can the target year show its factories running (verdict ``batches``)?"""
    return W.observability_sentences(v, lang)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, float | np.floating):
        return f"{x:.{digits}g}"
    return str(x)


def _text(value: Any) -> str:
    """A table cell: empty for missing values (never 'nan')."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def sites_rows(results: Any, lang: str = "en") -> list[dict[str, str]]:
    w = W.words(lang)
    rows = []
    for _, r in ordered(results.changes).iterrows():
        ci = "" if pd.isna(r.get("ci_low")) else f" [{r['ci_low']:+.0f}, {r['ci_high']:+.0f}]"
        rows.append(
            {
                w["Site"]: _text(r.get("name")) or str(r["site_id"]),
                w["Hangul"]: _text(r.get("name_ko")),
                w["Province"]: _text(r.get("province")),
                w["County"]: _text(r.get("county")),
                w["Batch"]: _fmt(r.get("batch")),
                w["Baseline"]: _fmt(r.get("baseline_value")),
                w["Target"]: _fmt(r.get("target_value")),
                w["Change"]: (
                    "–" if pd.isna(r.get("change_pct")) else f"{r['change_pct']:+.0f}{ci}"
                ),
                w["Class"]: W.class_word(r["class"], lang),
                w["Ring"]: W.class_word(r.get("class_ring_adjusted", ""), lang)
                if r.get("class_ring_adjusted")
                else "",
                w["Months"]: _fmt(r.get("n_months")),
            }
        )
    return rows


def _period(v: dict[str, Any], lang: str = "en") -> str:
    w = W.words(lang)
    months = sorted(i["month"] for i in v.get("inputs", []))
    return w["period"].format(a=months[0], b=months[-1]) if months else w["unknown"]


def _provenance(
    results: Any, checksums: dict[str, str], lang: str = "en"
) -> tuple[list[tuple[str, str]], list[list[str]]]:
    v, w = results.verdict, W.words(lang)
    date = source_date()
    facts = [
        (w["Data"], w["synthetic_data"] if is_synthetic(v) else w["real_data"]),
        (
            w["Product"],
            describe_products((i["product"] for i in v.get("inputs", [])), is_synthetic(v)),
        ),
        (w["Period"], _period(v, lang)),
        (w["Source"], str(v.get("source", ""))),
        (w["Folder"], ", ".join(sorted({str(i.get("folder", "")) for i in v.get("inputs", [])}))),
        (w["Software"], f"nightlights {v.get('nightlights_version', '')}"),
        (w["Claim"], f"{v['claim']['text']} ({v['claim']['source']})"),
    ]
    if date:
        facts.append((w["Built"], date.strftime(w["built"])))
    files = []
    for i in v.get("inputs", []):
        for key in ("file", "aux"):
            if i.get(key):
                files.append([i["month"], i[key], checksums.get(i[key], w["not_found"])])
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
CSP = (
    "default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)


def _table(header: list[str], rows: list[list[str]], num: set[int] | None = None) -> str:
    num = num or set()
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if j in num else ''}>{html.escape(str(c))}</td>"
            for j, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def report_html(
    results: Any, pngs: dict[str, bytes], checksums: dict[str, str], style: Style
) -> str:
    """One HTML file with everything inline (CSP forbids any outside request), in ``style.lang``."""
    v, lang = results.verdict, style.lang
    w, e = W.words(lang), html.escape
    b, t = v["baseline_year"], v["target_year"]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"ko" if lang == "ko" else "en"}"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{w['synthetic_title'] if is_synthetic(v) else ''}{e(w['title'].format(b=b, t=t))}</title>",
        "<style>{CSS}</style></head><body>",
    ]
    if is_synthetic(v):
        parts.append(
            f'<div class="synthetic" id="synthetic-warning" role="alert">{e(_synthetic_note(lang))} '
            f"{e(w['synthetic_more'])}</div>"
        )
    c, claim = v["claim_sites"], v["claim"]
    sens_rows = len(results.sensitivity) if results.sensitivity is not None else None
    parts += [
        f"<h1>{e(w['h1'].format(b=b, t=t))}</h1>",
        f'<p class="headline">{e(W.headline(v, lang))}</p>',
        f"<p>{e(w['claim_line'].format(text=claim['text'], source=claim['source']))}</p>",
        _table(
            ["", w["col_brightened"], w["col_similar"], w["col_insufficient"]],
            [
                [w["row_claim"], str(claim["brightened"]), str(claim["similar_or_dimmer"]), "–"],
                [
                    w["row_run"].format(batch=claim["batch"], n=c["n_sites"]),
                    str(c["counts"]["brightened"]),
                    str(c["similar_or_dimmer"]),
                    str(c["counts"]["insufficient_data"]),
                ],
            ],
            num={1, 2, 3},
        ),
        f"<p>{e(W.robustness_sentence(v, lang))} {e(W.calibration_sentence(v, lang))}</p>",
        f"<h2>{e(w['h_batches'])}</h2>",
        "<ul>" + "".join(f"<li>{e(x)}</li>" for x in W.observability_sentences(v, lang)) + "</ul>",
        f"<h2>{e(w['h_method'])}</h2>",
        f"<p>{e(W.method_paragraph(v, sens_rows, lang))}</p>",
        f"<h2>{e(w['h_sites'])}</h2>",
    ]
    rows = sites_rows(results, lang)
    if rows:
        header = list(rows[0])
        num = {header.index(w[h]) for h in ("Baseline", "Target", "Months")}
        parts.append(_table(header, [list(r.values()) for r in rows], num=num))
    parts.append(f"<p class=credit>{e(w['sites_note'])}</p><h2>{e(w['h_charts'])}</h2>")
    for name, data in pngs.items():
        if name not in CHARTS:  # comparison charts go in their own section
            continue
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        names = ", ".join(f"figures/{name}.{f}" for f in style.formats)
        cap = W.caption(name, lang)
        parts.append(
            f'<figure id="fig-{name}"><img src="{src}" alt="{e(cap)}">'
            f"<figcaption><b>{e(W.chart_name(name, lang))}.</b> {e(cap)} "
            f"{e(w['files'])}: {e(names)}.</figcaption></figure>"
        )
    if getattr(results, "comparison", None) is not None:
        parts.append(section_html(results.comparison, pngs, lang))
    facts, files = _provenance(results, checksums, lang)
    parts += [
        f"<h2>{e(w['h_provenance'])}</h2>",
        _table(["", ""], [list(f) for f in facts]),
        f"<p class=credit>{e(credit_line(v))}</p>",
        f"<h3>{e(w['h_parameters'])}</h3>",
        _table(
            [w["parameter"], w["value"]],
            [[k, json.dumps(val)] for k, val in v["parameters"].items()],
        ),
        f"<h3>{e(w['h_inputs'])}</h3>",
        _table([w["month"], w["file"], "SHA-256"], files).replace("<td>", "<td class=hash>"),
        "</body></html>",
    ]
    page = "\n".join(parts) + "\n"
    return page.replace("<style>{CSS}</style>", f"<style>{CSS}{korean_font_css(page)}</style>", 1)


def _synthetic_note(lang: str) -> str:
    if lang == "ko":
        return (
            "합성 데모 데이터: 이 수치는 위성 관측이 아니라 생성된 래스터에서 나왔다. 북한에 대한 어떤 증거도 "
            "아니다. (SYNTHETIC DEMO DATA)"
        )
    return SYNTHETIC_NOTE


def report_md(results: Any, charts: list[str], checksums: dict[str, str], style: Style) -> str:
    v, lang = results.verdict, style.lang
    w = W.words(lang)
    claim = v["claim"]
    sens_rows = len(results.sensitivity) if results.sensitivity is not None else None
    lines = []
    if is_synthetic(v):
        lines += [f"> **{_synthetic_note(lang)}**", ""]
    lines += [
        f"# {w['h1'].format(b=v['baseline_year'], t=v['target_year'])}",
        "",
        f"**{W.headline(v, lang)}**",
        "",
        w["claim_md"].format(text=md_inline(claim["text"]), source=md_inline(claim["source"])),
        "",
        W.robustness_sentence(v, lang) + " " + W.calibration_sentence(v, lang),
        "",
        f"## {w['h_batches']}",
        "",
        *[f"- {md_inline(x)}" for x in W.observability_sentences(v, lang)],
        "",
        f"## {w['h_method']}",
        "",
        W.method_paragraph(v, sens_rows, lang),
        "",
        f"## {w['h_sites']}",
        "",
    ]
    rows = sites_rows(results, lang)
    if rows:
        lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += [
            "| " + " | ".join(md_inline(x).replace("|", "/") for x in r.values()) + " |"
            for r in rows
        ]
    lines += ["", f"## {w['h_charts']}", ""]
    ext = "png" if "png" in style.formats else style.formats[0]
    for name in (c for c in charts if c in CHARTS):
        cap = W.caption(name, lang)
        lines += [f"![{cap}](figures/{name}.{ext})", "", f"*{cap}*", ""]
    if getattr(results, "comparison", None) is not None:
        lines += section_md(results.comparison, charts, ext, lang)
    facts, files = _provenance(results, checksums, lang)
    lines += (
        [f"## {w['h_provenance']}", ""]
        + [f"- **{k}**: {md_inline(val)}" for k, val in facts]
        + ["", credit_line(v), "", f"| {w['parameter']} | {w['value']} |", "|---|---|"]
        + [f"| {k} | `{json.dumps(x)}` |" for k, x in v["parameters"].items()]
    )
    lines += ["", f"| {w['month']} | {w['file']} | SHA-256 |", "|---|---|---|"] + [
        f"| {md_inline(a)} | {md_inline(b).replace('|', '/')} | `{c}` |" for a, b, c in files
    ]
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
    return (
        '@font-face{font-family:"Noto Sans KR subset";font-display:block;unicode-range:U+1100-11FF,'
        "U+3130-318F,U+AC00-D7AF;src:url(data:font/otf;base64," + data + ') format("opentype");}'
    )
