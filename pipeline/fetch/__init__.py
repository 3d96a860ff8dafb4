"""Fetching real data: the one dispatcher from a source name to its downloader.

Modules: :mod:`~pipeline.fetch.http` (session, redirect policy, resumable transfer),
:mod:`~pipeline.fetch.manifest` (what is cached, the COG writer, the job context),
:mod:`~pipeline.fetch.eog` (EOG VNL monthly v10), :mod:`~pipeline.fetch.eog_annual` (EOG VNL v2
annual), :mod:`~pipeline.fetch.blackmarble` (NASA Black Marble VNP46A3 and VNP46A4). None of them
imports this module back.

Outputs: cropped, tiled (256 px), DEFLATE-compressed cloud-optimised GeoTIFFs per month
under ``data/eog/<cfg>/`` or ``data/blackmarble/`` (annual composites: ``data/eog_annual/<cfg>/``,
``data/blackmarble_annual/``; names that :mod:`pipeline.read.sources` reads), and ``data/manifest.json``
with source URL, size and sha256 of each.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.config import FIRST_YEAR, FIRST_YEAR_WHY, DataSettings, load_data_settings
from pipeline.errors import ConfigError
from pipeline.fetch.http import PROVIDER_HOSTS, NotPublished, Pace, make_session
from pipeline.fetch.manifest import Bbox, Context, Manifest

log = logging.getLogger(__name__)

PAD_DEG = 0.15  # sites' bbox padding: room for buffers and VIIRS blooming
NK_WINDOW = (124.0, 37.5, 131.0, 43.0)  # used when no sites are given


def sites_bbox(sites: Any, pad: float = PAD_DEG) -> Bbox:
    w, s, e, n = (float(v) for v in sites.to_crs("EPSG:4326").total_bounds)
    return (max(w - pad, -180.0), max(s - pad, -90.0), min(e + pad, 180.0), min(n + pad, 90.0))


def _check_years(what: str, *years: int) -> None:
    """Refuse a typo such as 20255 before it becomes 200,000 periods to fetch."""
    last = dt.date.today().year + 1
    if any(not FIRST_YEAR <= y <= last for y in years):
        raise ConfigError(f"{what}: years must be from {FIRST_YEAR} to {last} ({FIRST_YEAR_WHY})")


def month_list(start: str, end: str) -> list[tuple[int, int]]:
    try:
        y0, m0 = (int(v) for v in start.split("-"))
        y1, m1 = (int(v) for v in end.split("-"))
        if not (1 <= m0 <= 12 and 1 <= m1 <= 12):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"month range {start}..{end}: use YYYY-MM, e.g. --start 2024-01 --end 2025-12"
        ) from None
    _check_years(f"month range {start}..{end}", y0, y1)
    months = [
        (y, m) for y in range(y0, y1 + 1) for m in range(1, 13) if (y0, m0) <= (y, m) <= (y1, m1)
    ]
    if not months:
        raise ConfigError(f"month range {start}..{end} is empty; --start must not be after --end")
    return months


def year_list(start: str, end: str) -> list[int]:
    """Years from ``YYYY`` (or ``YYYY-MM``, reduced to its year) to ``YYYY``, inclusive."""
    try:
        y0, y1 = (int(v.split("-")[0]) for v in (start, end))
        if not all(len(v.split("-")[0]) == 4 for v in (start, end)):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"year range {start}..{end}: use YYYY, e.g. --start 2023 --end 2025"
        ) from None
    _check_years(f"year range {start}..{end}", y0, y1)
    if y1 < y0:
        raise ConfigError(f"year range {start}..{end} is empty; --start must not be after --end")
    return list(range(y0, y1 + 1))


def _context(
    data_dir: Path,
    bbox: Bbox,
    progress: bool,
    geometries: Any,
    settings: DataSettings | None,
    refresh: bool = False,
    source: str = "",
) -> Context:
    """The job context; its session lets the token follow redirects only to ``source``'s own hosts,
    and gives up on a server slower than the pace settings."""
    settings = settings or load_data_settings()
    session = make_session(PROVIDER_HOSTS.get(source, ()))
    pace = Pace(
        settings.download_read_timeout_s,
        settings.download_min_rate_kbs,
        settings.download_rate_window_s,
    )
    session.nightlights_pace = pace  # type: ignore[attr-defined]  # read by http.fetch_file
    return Context(
        session,
        settings,
        Path(data_dir),
        bbox,
        Manifest.load(Path(data_dir)),
        progress,
        geometries,
        refresh,
    )


def _fetch_each(
    source: str, items: list[tuple[str, dt.date, Any]], progress: bool, unit: str
) -> dict[str, list[str]]:
    """Run each period's fetcher (label, last day, call) unless the period is not over yet."""
    today = dt.date.today()
    outcome: dict[str, list[str]] = {"cached": [], "downloaded": [], "not_published": []}
    for label, last_day, fetch in tqdm(
        items, desc=f"{source} {unit}s", unit=unit, disable=not progress or len(items) < 2
    ):
        if last_day >= today:
            log.info("%s: %s not over yet; skipped", label, unit)
            outcome["not_published"].append(label)
            continue
        try:
            outcome[fetch()].append(label)
        except NotPublished as e:
            log.warning("%s %s: not published yet, skipped (%s)", source, label, e)
            outcome["not_published"].append(label)
    return outcome


def download_years(
    source: str,
    years: list[int],
    bbox: Bbox,
    data_dir: Path,
    *,
    progress: bool = True,
    eog_config: str = "vcmslcfg",
    geometries: Any = None,
    settings: DataSettings | None = None,
    refresh: bool = False,
) -> tuple[Path, dict[str, list[str]]]:
    """Annual composites (EOG VNL v2, VNP46A4): fetch what is missing; folder and years by outcome."""
    from pipeline.fetch import blackmarble, eog_annual

    ctx = _context(data_dir, bbox, progress, geometries, settings, refresh, source)
    if source == "eog":
        folder, fetch = (
            eog_annual.cache_folder(ctx.data_dir, eog_config),
            eog_annual.ensure_year_fn(ctx, eog_config),
        )
    elif source == "blackmarble":
        folder, fetch = blackmarble.annual_folder(ctx.data_dir), blackmarble.ensure_year_fn(ctx)
    else:
        raise ConfigError(f"--source {source}: downloads exist for eog and blackmarble only")
    log.info(
        "%s annual: %d year(s) over lon %.2f..%.2f, lat %.2f..%.2f into %s",
        source,
        len(years),
        bbox[0],
        bbox[2],
        bbox[1],
        bbox[3],
        folder,
    )
    items = [(str(y), dt.date(y, 12, 31), lambda y=y: fetch(y)) for y in years]
    outcome = _fetch_each(source, items, progress, "year")
    ctx.manifest.save()
    return folder, outcome


def download_months(
    source: str,
    months: list[tuple[int, int]],
    bbox: Bbox,
    data_dir: Path,
    *,
    progress: bool = True,
    eog_config: str = "vcmslcfg",
    geometries: Any = None,
    settings: DataSettings | None = None,
    refresh: bool = False,
) -> tuple[Path, dict[str, list[str]]]:
    """Fetch what is missing; return the cache folder and months by outcome."""
    from pipeline.fetch import blackmarble, eog

    ctx = _context(data_dir, bbox, progress, geometries, settings, refresh, source)
    if source == "eog":
        folder, fetch = (
            eog.cache_folder(ctx.data_dir, eog_config),
            eog.ensure_month_fn(ctx, eog_config),
        )
    elif source == "blackmarble":
        folder, fetch = blackmarble.cache_folder(ctx.data_dir), blackmarble.ensure_month_fn(ctx)
    else:
        raise ConfigError(f"--source {source}: downloads exist for eog and blackmarble only")
    log.info(
        "%s: %d month(s) over lon %.2f..%.2f, lat %.2f..%.2f into %s",
        source,
        len(months),
        bbox[0],
        bbox[2],
        bbox[1],
        bbox[3],
        folder,
    )
    items = [
        (f"{y}-{m:02d}", dt.date(y, m, calendar.monthrange(y, m)[1]), lambda y=y, m=m: fetch(y, m))
        for y, m in months
    ]
    outcome = _fetch_each(source, items, progress, "month")
    ctx.manifest.save()
    return folder, outcome


def ensure_months(
    source: str,
    years: tuple[int, ...],
    sites: Any,
    data_dir: Path,
    progress: bool,
    eog_config: str = "vcmslcfg",
    product: str = "monthly",
) -> Path:
    """Download whatever is missing for ``years`` over the sites' padded bbox: every month of
    them, or (``product="annual"``) their annual composites."""
    geoms = list(sites.to_crs("EPSG:4326").geometry.buffer(PAD_DEG).values)
    if product == "annual":
        folder, outcome = download_years(
            source,
            sorted(set(years)),
            sites_bbox(sites),
            Path(data_dir),
            progress=progress,
            eog_config=eog_config,
            geometries=geoms,
        )
    else:
        months = [(y, m) for y in sorted(set(years)) for m in range(1, 13)]
        folder, outcome = download_months(
            source,
            months,
            sites_bbox(sites),
            Path(data_dir),
            progress=progress,
            eog_config=eog_config,
            geometries=geoms,
        )
    log.info(
        "%s: %d %s period(s) already cached, %d downloaded, %d not published",
        source,
        len(outcome["cached"]),
        product,
        len(outcome["downloaded"]),
        len(outcome["not_published"]),
    )
    return folder


def cache_folders(source: str, data_dir: Path, eog_config: str = "vcmslcfg") -> dict[str, Path]:
    """Where each product of a source is cached (no download): product -> folder."""
    from pipeline.fetch import blackmarble, eog, eog_annual

    if source == "eog":
        return {
            "monthly": eog.cache_folder(data_dir, eog_config),
            "annual": eog_annual.cache_folder(data_dir, eog_config),
        }
    if source == "blackmarble":
        return {
            "monthly": blackmarble.cache_folder(data_dir),
            "annual": blackmarble.annual_folder(data_dir),
        }
    return {}


def area(
    bbox: Sequence[float] | None, site_paths: Sequence[Path] = ()
) -> tuple[Bbox, list[Any] | None]:
    """The download area: ``bbox`` when given, else the sites' padded box, else the Korea window.

    Also returns the sites' padded shapes (or None), so tiles no site touches are skipped.
    """
    if bbox:
        w, s, e, n = (float(v) for v in bbox)
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ConfigError(f"--bbox {w} {s} {e} {n}: need W < E and S < N in degrees")
        return (w, s, e, n), None
    if not site_paths:
        return NK_WINDOW, None
    from pipeline.config import Params
    from pipeline.read.sites import read_sites

    sites = read_sites(site_paths, Params().default_radius_m)
    return sites_bbox(sites), list(sites.geometry.buffer(PAD_DEG).values)
