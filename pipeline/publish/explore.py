"""Explore: ``explore.html``, one self-contained page to click through the sites and counties.

Inputs
    :class:`pipeline.results.Results` (sites, site months, changes, county changes, verdict),
    the shipped :class:`~pipeline.publish.composites.Boundaries` (or None) and the
    :class:`~pipeline.publish.style.Style` whose language the page opens in.
Outputs
    One HTML string: the page's data as inert JSON, its script (``explore.js``) and look
    (``explore.css``) inlined, the hangul glyphs it uses embedded. No library, no web map: the
    map is SVG drawn from the boundaries (simplified, projected, rounded to about 60 m), and a
    Content-Security-Policy forbids any outside request. Nothing is read or written here.

The page: country, province and county lines; every site coloured by class (the charts'
colours) with a marker per batch (the maps' markers); a click on a site shows its months of
both years (valid and invalid months told apart), its change with interval, class, dates and
source; filters by class and batch; the county layer coloured by its change; English and
Korean (a toggle, opening in ``--lang``); a SYNTHETIC banner and watermark on demo data.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_hex
from matplotlib.markers import MarkerStyle

from pipeline.config import LANGS
from pipeline.judge.verdict import headline
from pipeline.publish.composites import Boundaries, korean_names
from pipeline.publish.maps import batch_markers
from pipeline.publish.report import korean_font_css
from pipeline.publish.style import (
    BASELINE_SHADE,
    BORDER_COLORS,
    CLASS_COLORS,
    CLASS_ORDER,
    DIVERGING,
    INVALID_HATCH_COLOR,
    SYNTHETIC_COLOR,
    TARGET_SHADE,
    Style,
    credit_line,
    is_synthetic,
)
from pipeline.read.sites import batch_labels
from pipeline.words import batch_name, say, say_value, synthetic_tag

if TYPE_CHECKING:
    from pipeline.results import Results


HERE = Path(__file__).parent
SCRIPT, CSS = HERE / "explore.js", HERE / "explore.css"
WIDTH = 10_000  # map width in SVG units (integers: about 60 m at the scale of North Korea)
SIMPLIFY_DEG = 0.005  # border simplification, about 500 m: a pixel at the page's full view
PAD_DEG = 0.1
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
# NOTICE: the lines to reproduce wherever maps made from aoi/boundaries/ are shown (tests keep them equal).
BOUNDARY_CREDITS = (
    "Boundaries: Data from Who's On First. License: https://whosonfirst.org/docs/licenses/",
    "County polygons: Mesoshapes (Mapzen / Who's On First), source \"Art of the Mappable (AOTM) "
    'for Mapzen", CC0.',
    "Province polygons: Includes data from foursquare quattroshapes "
    "(https://github.com/foursquare/quattroshapes/, CC BY 2.0), based on Natural Earth (public domain).",
)

# The page's words: JavaScript name -> key of the one table (pipeline/words.toml). The page's own
# are the explore_* keys; the rest are the charts' and the report's words.
WORDS = {
    "title": "explore_title",
    "lede": "explore_lede",
    "classes": "explore_classes",
    "batches": "explore_batches",
    "layers": "explore_layers",
    "county_layer": "explore_county_layer",
    "county_legend": "county_axis",
    "no_county_data": "no_county_data",
    "zoom_in": "explore_zoom_in",
    "zoom_out": "explore_zoom_out",
    "reset": "explore_reset",
    "sites_list": "explore_sites_list",
    "pick": "explore_pick",
    "change": "explore_change",
    "interval": "explore_interval",
    "no_change": "explore_no_change",
    "matched": "explore_matched",
    "yearly": "explore_yearly",
    "location": "explore_location",
    "not_given": "explore_not_given",
    "series_title": "explore_series_title",
    "valid": "explore_valid",
    "yearly_line": "explore_yearly_line",
    "county": "explore_county",
    "county_change": "explore_county_change",
    "county_months": "explore_county_months",
    "boundaries": "explore_boundaries",
    "language": "explore_language",
    "month_value": "explore_month_value",
    "month_invalid": "explore_month_invalid",
    "month_missing": "explore_month_missing",
    "Batch": "col_batch",
    "Province": "col_province",
    "County": "col_county",
    "Source": "fact_source",
    "groundbreaking": "groundbreaking",
    "inauguration": "inauguration",
    "invalid": "invalid",
    "ring": "ring",
    "synthetic_note": "synthetic_long",
    "watermark": "synthetic_mark",
}
SYNTHETIC_WORDS = ("synthetic_note", "watermark")
# fields the page's script fills: kept as they are when the page is written
SCRIPT_FIELDS = ("n", "all", "lo", "hi", "m", "v", "f")


def explore_html(
    results: Results, style: Style, borders: Boundaries | None, font_cache: Path | None = None
) -> str:
    """The whole page, opening in ``style.lang``; ``borders`` None: the sites alone, no county
    layer; ``font_cache``: where font subsets are kept (:func:`korean_font_css`)."""
    data = page_data(results, style, borders)
    lang = data["lang"]
    w = data["words"][lang]
    title = (synthetic_tag(lang) if data["synthetic"] else "") + w["title"]
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    e = html.escape
    banner = (
        f'<div id="synthetic-warning" class="synthetic" role="alert" data-w="synthetic_note">'
        f"{e(w['synthetic_note'])}</div>"
        if data["synthetic"]
        else ""
    )
    watermark = (
        f'<div id="synthetic-watermark" aria-hidden="true" data-w="watermark">{e(w["watermark"])}</div>'
        if data["synthetic"]
        else ""
    )
    credits = "".join(f"<li>{e(line)}</li>" for line in BOUNDARY_CREDITS) if borders else ""
    page = f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{e(title)}</title>
<style>{CSS.read_text(encoding="utf-8")}</style>
</head><body>
<header><h1 id="title" data-w="title">{e(w["title"])}</h1>
<div class="lang" role="group" aria-label="{e(w["language"])}">
<button type="button" data-lang="en" lang="en">English</button><button type="button" data-lang="ko" lang="ko">한국어</button>
</div></header>
{banner}
<p id="headline" class="headline">{e(data["headline"][lang])}</p>
<p class="lede" data-w="lede">{e(w["lede"])}</p>
<main>
<section id="map-box" aria-label="map">
<svg id="map" viewBox="0 0 {data["view"][0]} {data["view"][1]}" role="img"></svg>
<div class="zoom"><button type="button" id="zoom-in">+</button><button type="button" id="zoom-out">−</button><button type="button" id="zoom-reset">⤢</button></div>
{watermark}<div id="county-legend"></div>
</section>
<aside id="side">
<fieldset id="filter-class"><legend data-w="classes">{e(w["classes"])}</legend></fieldset>
<fieldset id="filter-batch"><legend data-w="batches">{e(w["batches"])}</legend></fieldset>
<fieldset id="layers"><legend data-w="layers">{e(w["layers"])}</legend></fieldset>
<section id="detail" aria-live="polite"><p class="pick" data-w="pick">{e(w["pick"])}</p></section>
</aside>
</main>
<section id="list-box"><h2 id="list-title"></h2><ol id="site-list"></ol></section>
<footer><p class="credit" id="credit">{e(data["credit"][lang])}</p><p data-w="boundaries">{e(w["boundaries"])}</p>
<ul id="licence" class="licence">{credits}</ul></footer>
<script type="application/json" id="data">{blob}</script>
<script>{SCRIPT.read_text(encoding="utf-8")}</script>
</body></html>
"""
    font = korean_font_css(page, font_cache)  # the hangul glyphs of both languages' words, names
    return page.replace("</style>", font + "</style>", 1) if font else page


def page_data(results: Results, style: Style, borders: Boundaries | None) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able values (the page's script draws it)."""
    v = results.verdict
    b, t = int(v["baseline_year"]), int(v["target_year"])
    lang = "ko" if style.lang == "ko" else "en"
    sites = results.sites
    lon, lat = sites["center_lon"].to_numpy(float), sites["center_lat"].to_numpy(float)
    box = (lon.min() - PAD_DEG, lat.min() - PAD_DEG, lon.max() + PAD_DEG, lat.max() + PAD_DEG)
    if borders is not None:  # the whole country, and any site beyond it
        w, s, e, n = borders.bounds
        box = (min(box[0], w), min(box[1], s), max(box[2], e), max(box[3], n))
    proj = _Projection(*box)
    markers = batch_markers(sites)
    labels = batch_labels(sites)
    stat = str(v["parameters"].get("statistic", "median"))
    return {
        "lang": lang,
        "synthetic": is_synthetic(v),
        "data_kind": v["data_kind"],
        "years": [b, t],
        "threshold": float(v["parameters"]["threshold"]),
        "view": [WIDTH, proj.height],
        "credit": {k: credit_line(v, k) for k in LANGS},
        "headline": {k: headline(v, k) for k in LANGS},
        "words": {k: _words(k, b, t, stat, is_synthetic(v)) for k in LANGS},
        "colors": {
            "class": {c: CLASS_COLORS[c] for c in CLASS_ORDER},
            "border": BORDER_COLORS,
            "baseline": BASELINE_SHADE,
            "target": TARGET_SHADE,
            "invalid": INVALID_HATCH_COLOR,
            "synthetic": SYNTHETIC_COLOR,
        },
        "classes": list(CLASS_ORDER),
        "batches": [
            {
                "label": lab,
                "marker": _marker_path(m),
                "name": {k: batch_name(lab, k) for k in LANGS},
            }
            for lab, m in markers.items()
        ],
        "months": _months(results.site_months, b, t),
        "sites": _sites(results, proj, labels, borders),
        "borders": _borders(borders, proj) if borders is not None else None,
        "counties": _counties(results, borders, proj) if borders is not None else None,
    }


# --------------------------------------------------------------------------- geometry


class _Projection:
    """Plate carrée stretched by cos(middle latitude), in integer SVG units, north up."""

    def __init__(self, w: float, s: float, e: float, n: float) -> None:
        self.w, self.n = w, n
        self.kx = math.cos(math.radians((n + s) / 2))
        self.k = WIDTH / max((e - w) * self.kx, 1e-9)
        self.height = math.ceil((n - s) * self.k)

    def xy(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.rint((np.asarray(lon, float) - self.w) * self.kx * self.k).astype(int)
        y = np.rint((self.n - np.asarray(lat, float)) * self.k).astype(int)
        return x, y


def _rings(geom: Any) -> list[np.ndarray]:
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty:
            continue
        out.append(np.asarray(poly.exterior.coords)[:, :2])
        out += [np.asarray(r.coords)[:, :2] for r in poly.interiors]
    return out


def _path(geom: Any, proj: _Projection) -> str:
    """SVG path data with relative integer moves: 'M x y l dx dy …z' per ring."""
    parts = []
    for ring in _rings(geom):
        x, y = proj.xy(ring[:, 0], ring[:, 1])
        keep = np.r_[True, (np.diff(x) != 0) | (np.diff(y) != 0)]
        x, y = x[keep], y[keep]
        if len(x) < 4:
            continue
        d = np.c_[np.diff(x), np.diff(y)][:-1].ravel()  # the closing move is 'z'
        parts.append(f"M{x[0]} {y[0]}l" + " ".join(map(str, d)) + "z")
    return "".join(parts).replace(" -", "-")


def _simplified(geoms: Any) -> list[Any]:
    """Simplified as one coverage, so neighbours keep one shared line."""
    arr = np.asarray(list(geoms), dtype=object)
    try:
        return list(shapely.coverage_simplify(arr, SIMPLIFY_DEG))
    except shapely.errors.GEOSException:  # not a clean coverage: each on its own
        return list(shapely.simplify(arr, SIMPLIFY_DEG, preserve_topology=True))


def _borders(borders: Boundaries, proj: _Projection) -> dict[str, str]:
    provinces = borders.provinces
    return {
        "province": "".join(_path(g, proj) for g in _simplified(provinces.geometry))
        if provinces is not None
        else "",
        "country": _path(shapely.simplify(borders.country, SIMPLIFY_DEG), proj),
    }


def _marker_path(code: str) -> str:
    """The Matplotlib marker ``code`` (the maps' batch markers) as an SVG path of radius about 1."""
    ms = MarkerStyle(code)
    path = ms.get_path().transformed(ms.get_transform())
    polys = [np.asarray(p, float) for p in path.to_polygons(closed_only=True)]
    r = max(float(np.abs(p).max()) for p in polys)

    def f(v: float) -> str:
        return f"{round(v / r, 3) + 0.0:g}"  # + 0.0: no "-0"

    return "".join(
        "M" + "L".join(f"{f(x)} {f(-y)}" for x, y in p[:-1].tolist()) + "Z" for p in polys
    )


# --------------------------------------------------------------------------- tables


def _num(x: Any, digits: int = 4) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return float(f"{f:.{digits}g}") if math.isfinite(f) else None


def _int(x: Any) -> int | None:
    f = _num(x, 12)
    return None if f is None else int(f)


def _text(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    s = str(x).strip()
    return s or None


def _months(site_months: pd.DataFrame, b: int, t: int) -> list[str]:
    """The twelve months of both years; annual products (rows labelled ``YYYY``): the two years."""
    if site_months["month"].astype(str).isin([str(b), str(t)]).any():
        return [str(b), str(t)]
    return [f"{y}-{m:02d}" for y in (b, t) for m in range(1, 13)]


def _sites(
    results: Results, proj: _Projection, labels: pd.Series, borders: Boundaries | None
) -> list[dict[str, Any]]:
    v = results.verdict
    b, t = int(v["baseline_year"]), int(v["target_year"])
    months = _months(results.site_months, b, t)
    changes = results.changes.drop_duplicates("site_id").set_index("site_id")
    cols = [
        "mean_radiance",
        "is_valid",
        "valid_fraction",
        "ring_mean_radiance",
        "ring_valid_fraction",
    ]
    sm = results.site_months.reindex(columns=["site_id", "month", *cols])
    sm = sm[sm["month"].isin(months)]
    empty = pd.DataFrame(columns=cols, dtype=object)
    by_site = {sid: d.set_index("month") for sid, d in sm.groupby("site_id", sort=False)}
    prov_ko, county_ko = _korean_names(borders)
    x, y = proj.xy(results.sites["center_lon"], results.sites["center_lat"])
    out = []
    for i, (_, s) in enumerate(results.sites.iterrows()):
        sid = str(s["site_id"])
        c = changes.loc[sid] if sid in changes.index else pd.Series(dtype=object)
        klass = _text(c.get("class")) or "insufficient_data"
        d = by_site.get(sid, empty).reindex(months)
        ring_ok = (d["ring_valid_fraction"] >= 0.5).to_numpy(bool)
        county_id = _text(s.get("county_id"))
        out.append(
            {
                "id": sid,
                "name": _text(s.get("name")) or sid,
                "name_ko": _text(s.get("name_ko")),
                "province": _text(s.get("province")),
                "province_ko": prov_ko.get(county_id or ""),
                "county": _text(s.get("county")),
                "county_ko": county_ko.get(county_id or ""),
                "batch": labels.iat[i],
                "class": klass,
                "change_pct": _num(c.get("change_pct"), 3),
                "ci_low": _num(c.get("ci_low"), 3),
                "ci_high": _num(c.get("ci_high"), 3),
                "log_ratio": _num(c.get("log_ratio")),
                "n_months": _int(c.get("n_months")),
                "baseline_value": _num(c.get("baseline_value")),
                "target_value": _num(c.get("target_value")),
                "groundbreaking": _text(s.get("groundbreaking")),
                "inauguration": _text(s.get("inauguration")),
                "location_confidence": _text(s.get("location_confidence")),
                "source": _text(s.get("source")),
                "x": int(x[i]),
                "y": int(y[i]),
                "radiance": [_num(r) for r in d["mean_radiance"]],
                "valid": [int(pd.notna(k) and bool(k)) for k in d["is_valid"]],
                "valid_fraction": [_num(r, 2) for r in d["valid_fraction"]],  # None: no such month
                "ring": [
                    _num(r, 3) if ok else None
                    for r, ok in zip(d["ring_mean_radiance"], ring_ok, strict=True)
                ],
            }
        )
    return out


def _korean_names(borders: Boundaries | None) -> tuple[dict[str, str], dict[str, str]]:
    """County unit_id -> hangul province name, and -> hangul county name (where the boundaries have them)."""
    names = korean_names(borders)
    return names.province_of, names.county


def _counties(results: Results, borders: Boundaries, proj: _Projection) -> dict[str, Any]:
    """Each county's outline, name and change; colours on the county map's scale (maps.py)."""
    counties = borders.counties
    units = results.unit_changes
    if units is None or not len(units):
        units = pd.DataFrame({"unit_id": [], "log_change": [], "n_months": []})
    by_id = units.assign(unit_id=units["unit_id"].astype(str)).drop_duplicates("unit_id")
    by_id = by_id.set_index("unit_id")
    values = counties["unit_id"].astype(str).map(by_id["log_change"]).to_numpy(float)
    thr = float(results.verdict["parameters"]["threshold"])
    finite = values[np.isfinite(values)]
    lim = max(thr, float(np.nanpercentile(np.abs(finite), 98)) if finite.size else thr)
    cmap = LinearSegmentedColormap.from_list("tol_burd", DIVERGING)
    norm = Normalize(-lim, lim)
    prov_ko, _ = _korean_names(borders)
    shapes = _simplified(counties.geometry)
    rows = []
    for (_, c), geom, val in zip(counties.iterrows(), shapes, values, strict=True):
        uid = str(c["unit_id"])
        n = by_id["n_months"].get(uid) if "n_months" in by_id else None
        rows.append(
            {
                "id": uid,
                "name": _text(c.get("name")) or uid,
                "name_ko": _text(c.get("name_ko")),
                "province": _text(c.get("province")),
                "province_ko": prov_ko.get(uid),
                "d": _path(geom, proj),
                "log_change": _num(val),
                "fill": to_hex(cmap(norm(val))) if np.isfinite(val) else None,
                "n_months": _int(n),
            }
        )
    ticks = [
        p
        for p in (-90, -75, -50, -20, -10, 0, 10, 25, 50, 100, 200, 400)
        if abs(math.log1p(p / 100)) <= lim
    ]
    return {
        "units": rows,
        "lim": _num(lim),
        "stops": list(DIVERGING),
        "ticks": [[round((math.log1p(p / 100) + lim) / (2 * lim), 4), p] for p in ticks],
        "shown": bool(np.isfinite(values).any()),
    }


def _words(lang: str, b: int, t: int, stat: str, synthetic: bool) -> dict[str, Any]:
    """The page's words in ``lang`` from the one table, years and statistic filled in (the
    synthetic notices only on synthetic data)."""
    keep = {k: "{" + k + "}" for k in SCRIPT_FIELDS}
    statistic = say_value("stat", stat, lang)
    out: dict[str, Any] = {
        name: say(key, lang, b=b, t=t, statistic=statistic, **keep)
        for name, key in WORDS.items()
        if synthetic or name not in SYNTHETIC_WORDS
    }
    out["baseline"] = say("baseline", lang, y=b)
    out["target"] = say("target", lang, y=t)
    out["class_names"] = {c: say(c, lang) for c in CLASS_ORDER}
    out["tag"] = synthetic_tag(lang) if synthetic else ""
    return out
