"""Report: the run in words, as one self-contained HTML page and as Markdown.

Inputs
    :class:`pipeline.results.Results`, the charts as PNG bytes, the inputs' checksums and
    a :class:`pipeline.publish.style.Style`.
Outputs
    ``report.html`` text (every image and the hangul font subset embedded; a
    Content-Security-Policy forbids any outside request, so a reader can mail it or open
    it offline) and ``report.md`` text; in Korean ``report.ko.html`` and ``report.ko.md``
    (:func:`report_names`), so both languages sit side by side, each showing its own language's
    charts (``figures/`` and ``figures/ko/``, :func:`figure_folder`). Nothing is written here; the
    Korean report reads the shipped boundaries for hangul place names unless it is given them.

Both languages have the same sections in the same order, each with the same paragraphs, tables and
figures: the words come from :mod:`pipeline.words`, the layout is this one function per format.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import pipeline.publish.sentences as W
from pipeline.outputs import portable_path
from pipeline.publish.charts import ordered
from pipeline.publish.comparison import section_html, section_md
from pipeline.publish.sentences import md_inline
from pipeline.publish.style import (
    Style,
    credit_line,
    describe_products,
    is_synthetic,
    korean_font_path,
    period_text,
    source_date,
)
from pipeline.words import batch_name, say, synthetic_notice, synthetic_tag

if TYPE_CHECKING:
    from pipeline.publish.composites import KoreanNames
    from pipeline.results import Results

log = logging.getLogger(__name__)

# the site charts, in report order (the comparison's charts go in their own section)
CHARTS = ("verdict", "small_multiples", "map", "county_change", "before_after", "robustness")


def _in_order(names: Iterable[str]) -> list[str]:
    """The report's charts in chart order, each chart's pages (``name``, ``name_2``...) in turn."""
    pages = {n: W.chart_page(n) for n in names}
    return sorted(
        (n for n, (base, _) in pages.items() if base in CHARTS),
        key=lambda n: (CHARTS.index(pages[n][0]), pages[n][1]),
    )


def report_names(lang: str) -> tuple[str, str]:
    """The report's file names in ``lang``: ``report.html``/``report.md`` in English,
    ``report.ko.html``/``report.ko.md`` in Korean, so ``figures --lang ko`` keeps the English one."""
    return ("report.html", "report.md") if lang != "ko" else ("report.ko.html", "report.ko.md")


def figure_folder(lang: str) -> str:
    """Where a language's charts go: ``figures`` in English, ``figures/ko`` in Korean, so drawing
    one language never overwrites the other's files (both reports show charts in their language)."""
    return "figures" if lang == "en" else f"figures/{lang}"


class Places:
    """Place names as the report in ``lang`` shows them: in Korean the hangul the boundaries give
    (:class:`pipeline.publish.composites.KoreanNames`), else the romanised name as given, never a
    made-up hangul spelling; ``romanized`` says whether any was shown (the report notes it once)."""

    def __init__(self, lang: str, names: KoreanNames | None = None):
        self.lang, self.names, self.romanized = lang, names, False

    def county(self, unit_id: Any, name: Any) -> str:
        return self._show(name, self.names.county_name(unit_id) if self.names else None)

    def province(self, unit_id: Any, name: Any) -> str:
        return self._show(name, self.names.province_name(unit_id, name) if self.names else None)

    def _show(self, name: Any, hangul: str | None) -> str:
        text = _text(name)
        if self.lang != "ko" or not text:
            return text
        if hangul:
            return hangul
        self.romanized = True
        return text

    def note(self) -> str:
        """What follows the sites note: one sentence when a romanised name was shown in Korean."""
        return " " + say("romanized_note", self.lang) if self.romanized else ""


def places(results: Results, lang: str, names: KoreanNames | None = None) -> Places:
    """The report's :class:`Places`; in Korean with the shipped boundaries' names unless given."""
    if lang == "ko" and names is None:
        from pipeline.publish.composites import boundaries, korean_names

        names = korean_names(boundaries(results.sites))
    return Places(lang, names)


# --------------------------------------------------------------------------- text


def method_paragraph(v: Mapping[str, Any], sens_rows: int | None, lang: str = "en") -> str:
    return W.method_paragraph(v, sens_rows, lang)


def robustness_sentence(v: Mapping[str, Any], lang: str = "en") -> str:
    return W.robustness_sentence(v, lang)


def observability_sentences(v: Mapping[str, Any], lang: str = "en") -> list[str]:
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


def sites_rows(
    results: Results, lang: str = "en", where: Places | None = None
) -> list[dict[str, str]]:
    """The sites table, a row per site; province and county in ``lang`` (:class:`Places`)."""
    where = where or Places(lang)

    def w(key: str) -> str:
        return say(f"col_{key}", lang)

    rows = []
    for _, r in ordered(results.changes).iterrows():
        ci = "" if pd.isna(r.get("ci_low")) else f" [{r['ci_low']:+.0f}, {r['ci_high']:+.0f}]"
        rows.append(
            {
                w("site"): _text(r.get("name")) or str(r["site_id"]),
                w("hangul"): _text(r.get("name_ko")),
                w("province"): where.province(r.get("county_id"), r.get("province")),
                w("county"): where.county(r.get("county_id"), r.get("county")),
                w("batch"): _fmt(r.get("batch")),
                w("baseline"): _fmt(r.get("baseline_value")),
                w("target"): _fmt(r.get("target_value")),
                w("change"): (
                    "–" if pd.isna(r.get("change_pct")) else f"{r['change_pct']:+.0f}{ci}"
                ),
                w("class"): W.class_word(r["class"], lang),
                w("ring"): W.class_word(r.get("class_ring_adjusted", ""), lang)
                if r.get("class_ring_adjusted")
                else "",
                w("months"): _fmt(r.get("n_months")),
            }
        )
    return rows


def _provenance(
    results: Results, checksums: dict[str, str], lang: str = "en"
) -> tuple[list[tuple[str, str]], list[list[str]]]:
    v = results.verdict
    date = source_date()
    inputs = v.get("inputs", [])
    facts = [
        (
            say("fact_data", lang),
            say("synthetic_mark", lang) if is_synthetic(v) else say("real_data", lang),
        ),
        (
            say("fact_product", lang),
            describe_products((i["product"] for i in inputs), is_synthetic(v), lang),
        ),
        (say("fact_period", lang), period_text((i["month"] for i in inputs), lang)),
        (say("fact_source", lang), str(v.get("source", ""))),
        (
            say("fact_folder", lang),
            ", ".join(sorted({portable_path(str(i["folder"])) for i in inputs if i.get("folder")})),
        ),
        (say("fact_software", lang), f"nightlights {v.get('nightlights_version', '')}"),
        (
            say("fact_claim", lang),
            "{}{} ({})".format(*W.claim_text(v["claim"], lang), v["claim"]["source"]),
        ),
    ]
    if date:
        facts.append((say("fact_built", lang), date.strftime(say("built_format", lang))))
    files = []
    for i in inputs:
        for key in ("file", "aux"):
            if i.get(key):
                files.append([i["month"], i[key], checksums.get(i[key], say("not_found", lang))])
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
word-break:break-all}td.month{white-space:nowrap}
.credit{font-size:.8rem;color:#555}
html:lang(ko){word-break:keep-all}
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
    results: Results,
    pngs: dict[str, bytes],
    checksums: dict[str, str],
    style: Style,
    font_cache: Path | None = None,
    names: KoreanNames | None = None,
) -> str:
    """One HTML file with everything inline (CSP forbids any outside request), in ``style.lang``;
    ``font_cache``: where font subsets are kept (:func:`korean_font_css`); ``names``: the
    boundaries' hangul names (read from the shipped boundaries when not given)."""
    v, lang = results.verdict, style.lang
    where = places(results, lang, names)
    folder = figure_folder(lang)
    e = html.escape

    def h(
        level: int, key: str, **kw: Any
    ) -> str:  # a heading with its section id, the same in both languages
        return f'<h{level} id="{key.removeprefix("h_")}">{e(say(key, lang, **kw))}</h{level}>'

    b, t = v["baseline_year"], v["target_year"]
    tag = synthetic_tag(lang) if is_synthetic(v) else ""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"ko" if lang == "ko" else "en"}"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{e(tag)}{e(say('title', lang, b=b, t=t))}</title>",
        "<style>{CSS}</style></head><body>",
    ]
    if is_synthetic(v):
        parts.append(
            f'<div class="synthetic" id="synthetic-warning" role="alert">'
            f"{e(synthetic_notice(lang, long=True))}</div>"
        )
    claim = v["claim"]
    sens_rows = len(results.sensitivity) if results.sensitivity is not None else None
    other = report_names("en" if lang == "ko" else "ko")[0]
    anchor = f'<a href="{other}">{other}</a>'
    link = e(say("other_language", lang, file="\x00")).replace("\x00", anchor)
    text, note = W.claim_text(claim, lang)
    parts += [
        h(1, "h1", b=b, t=t),
        f'<p class="headline">{e(W.headline(v, lang))}</p>',
        f"<p>{e(say('claim_line', lang, text=text, note=note, source=claim['source']))}</p>",
        _table(*_counts_table(v, lang), num={1, 2, 3}),
        f"<p>{e(W.robustness_sentence(v, lang))} {e(W.calibration_sentence(v, lang))}</p>",
        f"<p class=credit>{link}</p>",
        h(2, "h_batches"),
        "<ul>" + "".join(f"<li>{e(x)}</li>" for x in W.observability_sentences(v, lang)) + "</ul>",
        h(2, "h_method"),
        f"<p>{e(W.method_paragraph(v, sens_rows, lang))}</p>",
        h(2, "h_sites"),
    ]
    rows = sites_rows(results, lang, where)
    if rows:
        header = list(rows[0])
        num = {header.index(say(f"col_{k}", lang)) for k in ("baseline", "target", "months")}
        parts.append(_table(header, [list(r.values()) for r in rows], num=num))
    comparison = (  # made before the sites note, which says once whether it shows romanised names
        section_html(results.comparison, pngs, lang, folder, where.county)
        if results.comparison is not None
        else None
    )
    parts += [f"<p class=credit>{e(say('sites_note', lang) + where.note())}</p>", h(2, "h_charts")]
    for name in _in_order(pngs):
        src = "data:image/png;base64," + base64.b64encode(pngs[name]).decode("ascii")
        files = ", ".join(f"{folder}/{name}.{f}" for f in style.formats)
        cap = W.caption(name, lang)
        parts.append(
            f'<figure id="fig-{name}"><img src="{src}" alt="{e(cap)}">'
            f"<figcaption><b>{e(W.chart_name(name, lang))}.</b> {e(cap)} "
            f"{e(say('files', lang))}: {e(files)}.</figcaption></figure>"
        )
    if comparison is not None:
        parts.append(comparison)
    facts, inputs = _provenance(results, checksums, lang)
    parts += [
        h(2, "h_provenance"),
        _table(["", ""], [list(f) for f in facts]),
        f"<p class=credit>{e(credit_line(v, lang))}</p>",
        h(3, "h_parameters"),
        _table(
            [say("parameter", lang), say("value", lang)],
            [[k, json.dumps(val)] for k, val in v["parameters"].items()],
        ),
        h(3, "h_inputs"),
        _inputs_table(inputs, lang),
        "</body></html>",
    ]
    page = "\n".join(parts) + "\n"
    font = korean_font_css(page, font_cache)
    return page.replace("<style>{CSS}</style>", f"<style>{CSS}{font}</style>", 1)


def _inputs_table(files: list[list[str]], lang: str) -> str:
    """Month, file and checksum per input: the month never wraps (``2025-01`` kept whole), the file
    name and checksum break anywhere (no room for them otherwise)."""
    rows = "".join(
        f"<tr><td class=month>{html.escape(m)}</td><td class=hash>{html.escape(f)}</td>"
        f"<td class=hash>{html.escape(c)}</td></tr>"
        for m, f, c in files
    )
    head = "".join(
        f"<th>{html.escape(x)}</th>" for x in (say("month", lang), say("file", lang), "SHA-256")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _counts_table(v: Mapping[str, Any], lang: str) -> tuple[list[str], list[list[str]]]:
    """The claim's counts against this run's, as a header and two rows."""
    c, claim = v["claim_sites"], v["claim"]
    header = ["", *(say(k, lang) for k in ("col_brightened", "col_similar", "col_insufficient"))]
    run = say("row_run", lang, batch=batch_name(claim["batch"], lang), n=c["n_sites"])
    return header, [
        [say("row_claim", lang), str(claim["brightened"]), str(claim["similar_or_dimmer"]), "–"],
        [
            run,
            str(c["counts"]["brightened"]),
            str(c["similar_or_dimmer"]),
            str(c["counts"]["insufficient_data"]),
        ],
    ]


def report_md(
    results: Results,
    charts: list[str],
    checksums: dict[str, str],
    style: Style,
    names: KoreanNames | None = None,
) -> str:
    """The report as Markdown, the same sections as :func:`report_html`, charts linked from
    ``figure_folder(style.lang)``."""
    v, lang = results.verdict, style.lang
    where = places(results, lang, names)
    folder = figure_folder(lang)
    claim = v["claim"]
    text, note = W.claim_text(claim, lang)
    sens_rows = len(results.sensitivity) if results.sensitivity is not None else None
    lines = []
    if is_synthetic(v):
        lines += [f"> **{synthetic_notice(lang, long=True)}**", ""]
    header, counts = _counts_table(v, lang)
    other = report_names("en" if lang == "ko" else "ko")[1]
    lines += [
        f"# {say('h1', lang, b=v['baseline_year'], t=v['target_year'])}",
        "",
        f"**{W.headline(v, lang)}**",
        "",
        say("claim_line", lang, text=md_inline(text), note=note, source=md_inline(claim["source"])),
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---:|",
        *["| " + " | ".join(md_inline(x) for x in r) + " |" for r in counts],
        "",
        W.robustness_sentence(v, lang) + " " + W.calibration_sentence(v, lang),
        "",
        say("other_language", lang, file=f"[{other}]({other})"),
        "",
        f"## {say('h_batches', lang)}",
        "",
        *[f"- {md_inline(x)}" for x in W.observability_sentences(v, lang)],
        "",
        f"## {say('h_method', lang)}",
        "",
        W.method_paragraph(v, sens_rows, lang),
        "",
        f"## {say('h_sites', lang)}",
        "",
    ]
    rows = sites_rows(results, lang, where)
    ext = "png" if "png" in style.formats else style.formats[0]
    comparison = (
        section_md(results.comparison, charts, ext, lang, folder, where.county)
        if results.comparison is not None
        else []
    )
    if rows:
        lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += [
            "| " + " | ".join(md_inline(x).replace("|", "/") for x in r.values()) + " |"
            for r in rows
        ]
    lines += ["", say("sites_note", lang) + where.note(), "", f"## {say('h_charts', lang)}", ""]
    for name in _in_order(charts):
        cap = W.caption(name, lang)
        lines += [
            f"![{cap}]({folder}/{name}.{ext})",
            "",
            f"*{W.chart_name(name, lang)}.* {cap}",
            "",
        ]
    lines += comparison
    facts, files = _provenance(results, checksums, lang)
    lines += (
        [f"## {say('h_provenance', lang)}", ""]
        + [f"- **{k}**: {md_inline(val)}" for k, val in facts]
        + ["", credit_line(v, lang), "", f"### {say('h_parameters', lang)}", ""]
        + [f"| {say('parameter', lang)} | {say('value', lang)} |", "|---|---|"]
        + [f"| {k} | `{json.dumps(x)}` |" for k, x in v["parameters"].items()]
    )
    lines += ["", f"### {say('h_inputs', lang)}", ""]
    lines += [f"| {say('month', lang)} | {say('file', lang)} | SHA-256 |", "|---|---|---|"] + [
        f"| {md_inline(a)} | {md_inline(b).replace('|', '/')} | `{c}` |" for a, b, c in files
    ]
    return "\n".join(lines) + "\n"


def korean_font_css(text: str, cache: Path | None = None) -> str:
    """CSS embedding the Noto Sans KR glyphs ``text`` uses (a few kB), so hangul shows without
    system fonts. Subsetting takes a second or two; ``cache`` (the run's ``<cache-dir>/fonts``)
    keeps each subset by the font file and the characters, so a re-run reads it back."""
    chars = "".join(sorted(set(re.findall(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]", text))))
    path = korean_font_path()
    if not chars or path is None:
        return ""
    kept = None
    if cache is not None:
        from importlib import metadata

        from pipeline.digest import digest
        from pipeline.memo import file_state

        kept = (
            cache
            / f"{digest('font css', file_state([path]), metadata.version('fonttools'), chars)}.css"
        )
        try:
            return kept.read_text(encoding="ascii")
        except (OSError, ValueError):
            pass
    css = _font_css(path, chars)
    if kept is not None:
        from pipeline.outputs import atomic_write

        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(kept) as tmp:
                tmp.write_text(css, encoding="ascii")
        except OSError as e:  # a read-only cache: the page is still made
            log.debug("%s: font subset not kept (%s)", kept, e)
    return css


def _font_css(path: Path, chars: str) -> str:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(path, recalcTimestamp=False)  # keep bytes reproducible
    options = subset.Options()
    options.name_IDs = ["*"]  # keeps the copyright and SIL OFL 1.1 notice
    sub = subset.Subsetter(options)
    sub.populate(text=chars)
    sub.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        '@font-face{font-family:"Noto Sans KR subset";font-display:block;unicode-range:U+1100-11FF,'
        "U+3130-318F,U+AC00-D7AF;src:url(data:font/otf;base64," + data + ') format("opentype");}'
    )
