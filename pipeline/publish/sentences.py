"""Sentences: the report's prose built from the run's numbers, in English or Korean.

Inputs
    The verdict mapping (numbers, claim, batches) and a language (``en`` or ``ko``).
Outputs
    Strings: captions, chart names, class words and the sentences built from the run's numbers.
    :mod:`pipeline.publish.report` lays them out; nothing here reads or writes.

Every word comes from the one table, :mod:`pipeline.words` (``pipeline/words.toml``): this module
only chooses which entry a number calls for and fills it, so both languages say the same things
by construction. The claim's own text and source are quoted as the claim file gives them; the
Korean report quotes the file's ``text_ko`` when it has one (:func:`claim_text`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.judge.verdict import batch_note, claim_status
from pipeline.judge.verdict import headline as verdict_headline
from pipeline.words import has, say, say_value

_PAGE = re.compile(r"^(.+)_(\d+)$")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
LANG_WORDS = {"en": "lang_en", "ko": "lang_ko"}  # a language's name, in words


def page_name(name: str, page: int) -> str:
    """A chart's file name on its ``page``: the first keeps the chart's name, then ``name_2``..."""
    return name if page == 1 else f"{name}_{page}"


def chart_page(name: str) -> tuple[str, int]:
    """``small_multiples_2`` -> (``small_multiples``, 2); a chart of one page -> (name, 1)."""
    m = _PAGE.match(name)
    return (m.group(1), int(m.group(2))) if m and has(f"chart_{m.group(1)}") else (name, 1)


def caption(name: str, lang: str) -> str:
    base, page = chart_page(name)
    text = say(f"caption_{base}", lang) if has(f"caption_{base}") else ""
    return text if page == 1 else say("caption_continued", lang, n=page - 1) + " " + text


def chart_name(name: str, lang: str) -> str:
    base, page = chart_page(name)
    title = (
        say(f"chart_{base}", lang) if has(f"chart_{base}") else base.replace("_", " ").capitalize()
    )
    return title if page == 1 else say("chart_part", lang, name=title, n=page)


def class_word(value: Any, lang: str) -> str:
    key = str(value)
    return say(key, lang) if has(key) else key.replace("_", " ")


def claim_text(claim: Mapping[str, Any], lang: str) -> tuple[str, str]:
    """The claim as the report in ``lang`` quotes it, and what the quote is (empty: the claim's own
    words in the report's language). A claim is English unless its text has hangul; in Korean its
    ``text_ko`` is quoted, labelled a translation unless ``text_ko_is`` says quotation; otherwise
    its own words, labelled with their language, so no reader takes them for a translation."""
    text = str(claim["text"])
    own = "ko" if _HANGUL.search(text) else "en"
    if lang == own:
        return text, ""
    language = say(LANG_WORDS[own], lang)
    if lang == "ko" and claim.get("text_ko"):
        if claim.get("text_ko_is") == "quotation":
            return str(claim["text_ko"]), ""
        return str(claim["text_ko"]), say("claim_translation", lang, lang=language)
    return text, say("claim_original", lang, lang=language)


def headline(v: Mapping[str, Any], lang: str) -> str:
    """The verdict in one sentence (the terminal prints the English one)."""
    return verdict_headline(v, lang)


def status(v: Mapping[str, Any], lang: str) -> str:
    """The claim's status, from the verdict's numbers."""
    return claim_status(v, lang)


def _pct_up_down(threshold: float) -> tuple[float, float]:
    return 100 * np.expm1(threshold), -100 * np.expm1(-threshold)


def method_paragraph(v: Mapping[str, Any], sens_rows: int | None, lang: str) -> str:
    """The method in words a reader without remote-sensing training can follow."""
    p = v["parameters"]
    up, down = _pct_up_down(float(p["threshold"]))
    months = p.get("months") or list(range(1, 13))
    text = say(
        "method",
        lang,
        r_km=f"{p['default_radius_m'] / 1000:g}",
        valid=f"{100 * p['min_valid_fraction']:.0f}",
        min_cf_cvg=p["min_cf_cvg"],
        t=v["target_year"],
        b=v["baseline_year"],
        n_months=len(months),
        min_months=p["min_matched_months"],
        statistic=say_value("stat", p["statistic"], lang),
        up=f"{up:.0f}",
        down=f"{down:.0f}",
        conf=f"{100 * p['confidence']:.0f}",
        ri=f"{p['ring_inner_m'] / 1000:g}",
        ro=f"{p['ring_outer_m'] / 1000:g}",
    )
    return text + (say("method_variants", lang, n=sens_rows) if sens_rows else "")


def robustness_sentence(v: Mapping[str, Any], lang: str) -> str:
    r = v.get("robustness")
    if not r:
        return say("robust_none", lang)
    claim = v["claim"]
    k, n = claim["brightened"], claim["n_sites"]
    scope = "robust_range_claim" if r.get("scope", "").startswith("the claim") else "robust_range"
    text = say(
        scope,
        lang,
        n=r["n_variants"],
        lo=r["brightened_min"],
        hi=r["brightened_max"],
        median=f"{r['brightened_median']:g}",
    )
    if r.get("share_exactly_k_of_n") is None:
        return text + say("robust_no_share", lang, k=k, n=n)
    return text + say(
        "robust_share",
        lang,
        k=k,
        n=n,
        exact=f"{100 * r['share_exactly_k_of_n']:.0f}",
        at_most=f"{100 * r['share_at_most_k']:.0f}",
    )


def calibration_sentence(v: Mapping[str, Any], lang: str) -> str:
    cal = v.get("calibration")
    if not cal:
        return ""
    return say(
        "calibration",
        lang,
        controls=cal["controls"],
        n=cal["n_controls"],
        p95=f"{cal['abs_log_ratio_p95']:.2f}",
        threshold=f"{cal['default_threshold']:g}",
    )


def observability_sentences(v: Mapping[str, Any], lang: str) -> list[str]:
    """One sentence per batch: can the target year show its factories running (verdict ``batches``)?"""
    out = []
    for b in v.get("batches", []):
        if lang == "en" and b.get("note") and "groundbreaking_first" not in b:
            out.append(
                str(b["note"])
            )  # an older verdict.json: its own note has the dates said again
        else:
            out.append(batch_note({"target_year": v["target_year"], **b}, lang))
    return out


_MD_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file)\s*:")


def md_inline(text: Any) -> str:
    """Text from an input (site name, claim) as inert Markdown: it shows as typed, but no HTML tag,
    link, image or autolink can be made of it (``<>&`` become entities, ``[ ]`` are escaped,
    ``javascript:`` and the like lose their colon), and it stays on its line."""
    s = re.sub(r"[\r\n]+", " ", str(text))
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("`", "\\`")
    return _MD_SCHEME.sub(lambda m: f"{m[1]}&#58;", s)
