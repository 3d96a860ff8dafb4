"""Report: publication outputs of a run, charts, a self-contained HTML report, GIS files.

Inputs
    :class:`pipeline.analysis.Results` (or one rebuilt from an output folder by
    ``nightlights figures``) and a :class:`pipeline.style.Style`.
Outputs (inside ``--out``, through the run's staging folder)
    ``figures/<chart>.{png,svg,pdf}``; ``report.html`` (every image embedded, no outside
    request: a reader can mail it or open it offline); ``report.md``;
    ``sites_classified.geojson`` and ``sites_classified.parquet`` (GeoParquet) with each
    site's class and change; ``site_months.parquet``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline import figures as F
from pipeline.errors import ConfigError, SourceError
from pipeline.style import (
    Style,
    add_style_options,
    credit_line,
    describe_products,
    is_synthetic,
    korean_font_css,
    save,
    source_date,
    style_from_args,
    styled,
)
from pipeline.verdict import CLAIM, SYNTHETIC_NOTE, headline

log = logging.getLogger(__name__)

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
HASH_CACHE_NAME = "sha256.json"


# --------------------------------------------------------------------------- entry point


def write_publication(results: Any, out: Any, style: Style | None = None,
                      cache_dir: Path | None = None) -> dict[str, Path]:
    """Every chart, the GIS files and both reports into the staging folder ``out``.

    ``cache_dir`` (the run's ``--data-dir``/cache) keeps input checksums between runs; without
    it they are computed afresh. Nothing is written anywhere else (never into ``$HOME``).
    """
    style = style or Style()
    v = results.verdict
    pngs: dict[str, bytes] = {}
    for name, build in _chart_builders(results, style).items():
        with styled(style):
            fig = build()
            if fig is None:
                continue
            base = out.path(f"figures/{name}.png").with_suffix("")
            for fmt in style.formats:
                out.path(f"figures/{name}.{fmt}")
            if "png" not in style.formats:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=min(style.dpi, 200))
                pngs[name] = buf.getvalue()
            save(fig, base, style, v, title=f"nightlights: {name.replace('_', ' ')}")
            plt.close(fig)
            if "png" in style.formats:
                pngs[name] = base.with_suffix(".png").read_bytes()
    write_gis(results, out)
    checksums = input_checksums(results.rasters, cache_dir / HASH_CACHE_NAME if cache_dir else None)
    out.write_text("report.html", report_html(results, pngs, checksums, style))
    out.write_text("report.md", report_md(results, list(pngs), checksums, style))
    return {n: Path(f"figures/{n}") for n in pngs}


def _chart_builders(results: Any, style: Style) -> dict[str, Callable[[], plt.Figure | None]]:
    v, p = results.verdict, results.verdict["parameters"]
    comps: dict[str, Any] = {}

    def composites() -> dict[str, Any]:
        if not comps and results.rasters:
            comps.update(_composites(results, p))
        return comps

    def map_fig() -> plt.Figure | None:
        c = composites().get("map")
        return F.map_figure(c, results.sites, results.changes, v, style) if c is not None else None

    def before_after() -> plt.Figure | None:
        pairs = composites().get("pairs")
        return F.before_after_figure(pairs, v, style) if pairs else None

    builders: dict[str, Callable[[], plt.Figure | None]] = {
        "verdict": lambda: F.verdict_figure(results.changes, v, style),
        "small_multiples": lambda: F.small_multiples_figure(results.site_months, results.changes, results.sites,
                                                            v, style),
        "map": map_fig,
        "before_after": before_after,
    }
    if results.sensitivity is not None and len(results.sensitivity):
        builders["robustness"] = lambda: F.robustness_figure(results.sensitivity, v, style)
    return builders


def _composites(results: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Target-year composite for the map; per-site baseline/target windows for before/after."""
    sites = results.sites
    b, t = int(p["baseline_year"]), int(p["target_year"])
    cvg, quality = int(p.get("min_cf_cvg", 3)), tuple(p.get("bm_quality", (0,)))
    w, s, e, n = (float(x) for x in sites.total_bounds)
    lat = np.deg2rad((s + n) / 2)
    half_lat = 0.75 * float(p.get("ring_outer_m", 8000.0)) / 111_320  # the site and most of its ring
    half_lon = half_lat / np.cos(lat)
    margin = max(0.25, 0.06 * max(e - w, n - s))
    map_bounds = (w - margin / np.cos(lat), s - margin, e + margin / np.cos(lat), n + margin)
    res = abs(results.rasters[0].grid.affine.a)
    full = ((map_bounds[2] - map_bounds[0]) / res) * ((map_bounds[3] - map_bounds[1]) / res) <= 16e6
    big = {y: F.composite(results.rasters, map_bounds, y, cvg, quality, max_px=10**6 if full else 2000)
           for y in (b, t)}
    cls = results.changes.set_index("site_id")["class"]
    rows = sites.assign(klass=sites["site_id"].map(cls).fillna("insufficient_data")).set_index("site_id")
    pairs = []
    for sid in F.ordered(results.changes)["site_id"]:
        if sid not in rows.index:
            continue
        r = rows.loc[sid]
        box = (r.center_lon - half_lon, r.center_lat - half_lat, r.center_lon + half_lon, r.center_lat + half_lat)
        if full:
            half_px = (round(half_lon / res), round(half_lat / res))
            before, after = (big[y].around(r.center_lon, r.center_lat, half_px) if big[y] is not None else None
                             for y in (b, t))
        else:
            before, after = (F.composite(results.rasters, box, y, cvg, quality) for y in (b, t))
        if before is not None and after is not None:
            pairs.append((_Row(sid, r), before, after))
    return {"map": big[t], "pairs": pairs}


class _Row:
    """A site row for charts: attribute access, including the class (a Python keyword)."""

    def __init__(self, site_id: str, r: pd.Series):
        self.site_id, self.name, self.name_ko = site_id, r.get("name"), r.get("name_ko")
        self.geometry, self.klass = r.geometry, r.klass

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


# --------------------------------------------------------------------------- GIS


def classified_sites(results: Any) -> gpd.GeoDataFrame:
    """Sites with their class and change, one row per site, for GIS users."""
    sites = results.sites.drop(columns=[c for c in ("source_file",) if c in results.sites])
    ch = results.changes.drop(columns=[c for c in ("name", "name_ko", "province", "batch", "location_confidence",
                                                   "data_kind") if c in results.changes])
    gdf = sites.merge(ch, on="site_id", how="left")
    gdf["data_kind"] = results.verdict["data_kind"]
    return gpd.GeoDataFrame(gdf, geometry="geometry", crs=results.sites.crs)


def write_gis(results: Any, out: Any) -> None:
    gdf = classified_sites(results)
    gdf.to_file(out.path("sites_classified.geojson"), driver="GeoJSON", engine="pyogrio",
                layer_options={"COORDINATE_PRECISION": 6, "WRITE_NAME": "NO"})
    gdf.to_parquet(out.path("sites_classified.parquet"), index=False)
    results.site_months.assign(data_kind=results.verdict["data_kind"]).to_parquet(
        out.path("site_months.parquet"), index=False)


# --------------------------------------------------------------------------- checksums


def sha256_file(path: Path, cache: dict[str, Any] | None = None) -> str:
    """SHA-256 of a file, reused from ``cache`` while its path, size and mtime are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    hit = (cache or {}).get(key)
    if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


def input_checksums(rasters: list[Any], cache_path: Path | None = None) -> dict[str, str]:
    """File name -> sha256 of every input raster (radiance and auxiliary layer); cached in ``cache_path``."""
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable checksum cache, recomputing", cache_path)
    before = dict(cache)
    sums = {}
    for r in rasters:
        for f in (r.radiance, r.aux):
            if f is not None and f.exists():
                sums[f.name] = sha256_file(f, cache)
    if cache_path is not None and cache != before:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
            os.replace(tmp, cache_path)
        except OSError as e:
            log.debug("checksum cache not written (%s)", e)
    return sums


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
    for _, r in F.ordered(results.changes).iterrows():
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
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        files = ", ".join(f"figures/{name}.{f}" for f in style.formats)
        parts.append(f'<figure id="fig-{name}"><img src="{src}" alt="{e(CHARTS[name])}">'
                     f"<figcaption><b>{e(name.replace('_', ' ').capitalize())}.</b> {e(CHARTS[name])} "
                     f"Files: {e(files)}.</figcaption></figure>")
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
    for name in charts:
        lines += [f"![{CHARTS[name]}](figures/{name}.{ext})", "", f"*{CHARTS[name]}*", ""]
    facts, files = _provenance(results, checksums)
    lines += ["## Provenance", ""] + [f"- **{k}**: {val}" for k, val in facts] + ["", credit_line(v), "",
              "| Parameter | Value |", "|---|---|"] + [f"| {k} | `{json.dumps(x)}` |" for k, x in
                                                    v["parameters"].items()]
    lines += ["", "| Month | File | SHA-256 |", "|---|---|---|"] + [f"| {a} | {b} | `{c}` |" for a, b, c in files]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def add_figures_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                       formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    sp = sub.add_parser(
        "figures", parents=[common], formatter_class=formatter, help="re-make charts and report from an output folder",
        description="Re-make the charts, report.html/report.md and GIS files from the output folder of an earlier "
                    "'nightlights run' (verdict.json, site_changes.csv, ...). The monthly rasters are found "
                    "through the folders named in verdict.json.",
        epilog="Examples:\n  nightlights figures --out outputs\n"
               "  nightlights figures --out outputs --format pdf --width-mm 89 --style paper\n"
               "  nightlights figures --out outputs --lang ko --style slide --dpi 200")
    add_style_options(sp)
    sp.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                    help="output folder of an earlier run (default outputs/)")
    sp.add_argument("--data-dir", type=Path, default=Path("data"), metavar="DIR",
                    help="where input checksums are cached, if it exists (default data/)")
    sp.set_defaults(func=cmd_figures)


def load_results(out: Path) -> Any:
    """Rebuild :class:`~pipeline.analysis.Results` from a run's output folder."""
    from pipeline.analysis import Results
    from pipeline.sources import find_monthly_rasters

    need = ["verdict.json", "site_changes.csv", "sites_classified.geojson"]
    missing = [n for n in need if not (out / n).exists()]
    if missing:
        raise ConfigError(f"{out}: no {', '.join(missing)}; run 'nightlights run --out {out}' first")
    verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    changes = pd.read_csv(out / "site_changes.csv").drop(columns=["data_kind"], errors="ignore")
    gdf = gpd.read_file(out / "sites_classified.geojson")
    keep = [c for c in ("site_id", "name", "name_ko", "province", "batch", "location_confidence", "source",
                        "groundbreaking", "inauguration", "radius_m", "center_lon", "center_lat", "from_point")
            if c in gdf]
    sites = gpd.GeoDataFrame(gdf[keep], geometry=gdf.geometry, crs=gdf.crs)
    if (out / "site_months.parquet").exists():
        months = pd.read_parquet(out / "site_months.parquet")
    else:
        months = pd.read_csv(out / "site_months.csv")
    months = months.drop(columns=["data_kind"], errors="ignore")
    sens = pd.read_csv(out / "sensitivity.csv").drop(columns=["data_kind"], errors="ignore") \
        if (out / "sensitivity.csv").exists() else None
    rasters = []
    wanted = {i["file"] for i in verdict.get("inputs", [])}
    for folder in sorted({i["folder"] for i in verdict.get("inputs", [])}):
        if not Path(folder).is_dir():
            raise SourceError(f"{folder}: raster folder named in {out / 'verdict.json'} not found; run from the "
                              "folder the run was made in, or re-run 'nightlights run'")
        found = find_monthly_rasters(folder, eog_config=verdict["parameters"].get("eog_config", "vcmslcfg"))
        rasters += [r for r in found if r.radiance.name in wanted]
    return Results(sites, months, changes, verdict, sens, rasters=sorted(rasters, key=lambda r: r.month))


def cmd_figures(args: argparse.Namespace) -> int:
    from pipeline.outputs import staged

    style = style_from_args(args)
    results = load_results(args.out)
    with staged(args.out, owns=("figures/",)) as out:
        cache = args.data_dir / "cache" if args.data_dir.is_dir() else None
        written = write_publication(results, out, style, cache_dir=cache)
    print(f"{len(written)} charts ({', '.join(style.formats)}), report.html, report.md and GIS files in {args.out}/")
    return 0
