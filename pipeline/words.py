"""Words: the one table of every phrase the outputs show, keyed by (key, language).

Inputs
    ``words.toml`` beside this module: one entry per key, ``key.en`` and ``key.ko``.
Outputs
    :func:`say` (a phrase with its fields filled), :func:`batch_name`, :func:`date_text` and the
    synthetic-data notice in its two forms (:func:`synthetic_notice`). Nothing is written.

Charts, both reports, the headline, the comparison section and the notices in ``verdict.json``
and ``did.json`` all take their words from here, so a sentence exists in both languages or in
neither. The table is read once and checked as it is read: every key has a non-empty English and
Korean text, both name the same ``{fields}`` (a field only English may name, because its value is
English data such as the calibration's description, is listed in the entry's ``en_only``), and
the two synthetic notices begin with the synthetic mark. A broken table stops the import with the
key at fault, so no run can print half a language.
"""

from __future__ import annotations

import string
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.config import LANGS

TABLE = Path(__file__).with_name("words.toml")
FIELDS = ("en", "ko", "en_only")


class WordsError(ValueError):
    """The words table is malformed (a missing language, a field named in one language only, ...)."""


def fields(template: str) -> set[str]:
    """The ``{name}`` fields a template fills (format specs and conversions ignored)."""
    return {
        name.split(".")[0].split("[")[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    }


def check(table: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The table as ``{key: {lang: text}}``, or :class:`WordsError` naming the first bad key."""
    out: dict[str, dict[str, str]] = {}
    for key, entry in table.items():
        if not isinstance(entry, dict):
            raise WordsError(
                f"{TABLE.name}: {key}: expected {key}.en and {key}.ko, got a bare value"
            )
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise WordsError(f"{TABLE.name}: {key}: unknown field(s) {', '.join(sorted(unknown))}")
        texts: dict[str, str] = {}
        for lang in LANGS:
            text = entry.get(lang)
            if not isinstance(text, str) or not text.strip():
                raise WordsError(f"{TABLE.name}: {key}: no {lang} text")
            try:
                fields(text)
            except ValueError as e:
                raise WordsError(f"{TABLE.name}: {key}.{lang}: {e}") from None
            texts[lang] = text
        en_only = set(entry.get("en_only", []))
        want = fields(texts["en"]) - en_only
        for lang in LANGS[1:]:
            got = fields(texts[lang])
            if got != want:
                raise WordsError(
                    f"{TABLE.name}: {key}: {lang} fills {sorted(got)} where en fills {sorted(want)}"
                )
        out[key] = texts
    for form in ("synthetic_short", "synthetic_long"):
        for lang in LANGS:
            mark = out.get("synthetic_mark", {}).get(lang, "")
            if not out.get(form, {}).get(lang, "").startswith(f"{mark}: "):
                raise WordsError(
                    f"{TABLE.name}: {form}.{lang} must begin with synthetic_mark and ': '"
                )
    return out


@cache
def table() -> dict[str, dict[str, str]]:
    """The checked table, read once per process."""
    with TABLE.open("rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise WordsError(f"{TABLE.name}: {e}") from None
    return check(raw)


def lang_of(lang: str | None) -> str:
    """``ko`` for Korean, English for anything else (an unknown language falls back, never fails)."""
    return lang if lang in LANGS else LANGS[0]


def say(key: str, lang: str = "en", /, **kw: Any) -> str:
    """The phrase ``key`` in ``lang`` with its fields filled from ``kw`` (KeyError for an unknown key)."""
    text = table()[key][lang_of(lang)]
    return text.format(**kw) if kw or "{" in text else text


def say_value(family: str, value: Any, lang: str = "en") -> str:
    """A value's word (``rule_exact`` → 'exact' / '정확 면적'), else the value as it is: values such as
    statistics, pixel rules or month windows have words, numbers and names do not."""
    key = f"{family}_{value}"
    return say(key, lang) if key in table() else str(value)


def has(key: str) -> bool:
    return key in table()


def batch_name(label: Any, lang: str = "en") -> str:
    """A batch label in words: 'batch 2024' / '2024년 지정', 'batch “pilot”' / '‘pilot’ 묶음', 'no batch'.
    Only the wording looks at whether the label is a year; no analysis does."""
    if label is None or (isinstance(label, float) and label != label):
        return say("batch_none", lang)
    text = str(label)
    return say(
        "batch_year" if len(text) == 4 and text.isdigit() else "batch_text", lang, batch=text
    )


def synthetic_notice(lang: str = "en", long: bool = False) -> str:
    """The one synthetic-data notice: short (charts, sections, file metadata) or long (reports, JSON)."""
    return say("synthetic_long" if long else "synthetic_short", lang)


def synthetic_tag(lang: str = "en") -> str:
    """'[SYNTHETIC DEMO DATA] ', the mark that opens a headline or a title on synthetic data."""
    return f"[{say('synthetic_mark', lang)}] "


def month_name(month: int, lang: str = "en") -> str:
    return say("month_names", lang).split()[month - 1]


def date_text(first: Any, last: Any = None, lang: str = "en") -> str:
    """A day or a span of days: '3 Mar 2025', '15–29 Dec 2025', '20 Dec 2024 – 7 Feb 2025'
    (Korean: '2025년 3월 3일', '2025년 12월 15~29일', ...). Takes dates, timestamps or ISO strings."""
    import pandas as pd

    a = pd.Timestamp(first)
    b = a if last is None else pd.Timestamp(last)
    if a == b:
        return say("date_day", lang, d=a.day, mon=month_name(a.month, lang), y=a.year)
    if (a.year, a.month) == (b.year, b.month):
        return say("date_days", lang, d0=a.day, d1=b.day, mon=month_name(a.month, lang), y=a.year)
    return say("date_span", lang, a=date_text(a, lang=lang), b=date_text(b, lang=lang))


def month_text(when: Any, lang: str = "en") -> str:
    """A month: 'Jan 2026' / '2026년 1월'."""
    import pandas as pd

    t = pd.Timestamp(when)
    return say("date_month", lang, mon=month_name(t.month, lang), y=t.year)
