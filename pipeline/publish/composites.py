"""Composites: the one place publishing reads files, for the maps and before/after charts.

Inputs
    Monthly rasters (:class:`pipeline.read.sources.MonthlyRaster`), the sites, the changes and
    the run's parameters; the shipped boundaries (``aoi/boundaries/``, via :mod:`pipeline.read.units`).
Outputs
    :class:`Composite` arrays (per-pixel mean of valid months in a year), decimated so a
    country-wide map stays small, :class:`Boundaries` and the hangul names they give
    (:class:`KoreanNames`); charts and the reports take them as plain data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.errors import WindowError
from rasterio.windows import Window, from_bounds

from pipeline.memo import Entry, Memo, raster_state
from pipeline.publish.charts import ordered
from pipeline.read.sources import MonthlyRaster, read_window, valid_mask
from pipeline.read.units import default_units_path, normalise_name, read_units

BOUNDARY_PAD_DEG = 0.1  # the map shows the whole country outline with this margin


@dataclass(frozen=True)
class Boundaries:
    """County polygons (with ``unit_id``), province polygons and the country outline, in lon/lat."""

    counties: gpd.GeoDataFrame
    provinces: gpd.GeoDataFrame | None
    country: Any

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        w, s, e, n = shapely.bounds(self.country)
        return (
            w - BOUNDARY_PAD_DEG,
            s - BOUNDARY_PAD_DEG,
            e + BOUNDARY_PAD_DEG,
            n + BOUNDARY_PAD_DEG,
        )


def boundaries(sites: Any) -> Boundaries | None:
    """The shipped county and province boundaries when they cover the sites (some centre inside), else None."""
    path = default_units_path("county")
    if path is None:
        return None
    counties = read_units(path)
    w, s, e, n = counties.total_bounds
    x, y = sites["center_lon"].to_numpy(float), sites["center_lat"].to_numpy(float)
    if not ((x >= w) & (x <= e) & (y >= s) & (y <= n)).any():
        return None
    prov_path = default_units_path("province")
    provinces = read_units(prov_path) if prov_path is not None else None
    outline = shapely.unary_union(
        list((provinces if provinces is not None else counties).geometry.values)
    )
    return Boundaries(counties, provinces, outline)


@dataclass(frozen=True)
class KoreanNames:
    """The hangul names the shipped boundaries give, so Korean outputs never show a romanised
    place name they have the hangul of, and never make one up (``prk_adm2.geojson`` has
    ``name_ko`` for 9 of its 181 counties, ``prk_adm1.geojson`` for all 12 provinces).

    ``county``: a county's own ``name_ko``, else its province's when the county bears the
    province's name (P'yŏngyang in P'yŏngyang: 평양); ``province_of``: by county ``unit_id``, its
    province; ``province``: by romanised province name (:func:`normalise_name`, so a site file's
    "South Pyongan" or "Jagang" finds 평안남도 or 자강도)."""

    county: dict[str, str]
    province_of: dict[str, str]
    province: dict[str, str]

    def county_name(self, unit_id: Any) -> str | None:
        return self.county.get(str(unit_id)) if _given(unit_id) else None

    def province_name(self, unit_id: Any, name: Any) -> str | None:
        """By the county that holds a site, else by the province name the site file gives."""
        if _given(unit_id) and str(unit_id) in self.province_of:
            return self.province_of[str(unit_id)]
        return self.province.get(normalise_name(name)) if _given(name) else None


def _given(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def korean_names(borders: Boundaries | None) -> KoreanNames:
    """The hangul names of ``borders`` (none without them)."""
    if borders is None:
        return KoreanNames({}, {}, {})
    c = borders.counties
    by_name: dict[str, str] = {}
    if borders.provinces is not None and "name_ko" in borders.provinces:
        by_name = {
            normalise_name(n): str(k)
            for n, k in zip(borders.provinces["name"], borders.provinces["name_ko"], strict=True)
            if _given(n) and _given(k)
        }
    province_of, county = {}, {}
    for uid, name, ko, prov, prov_ko in zip(
        c["unit_id"].astype(str),
        c["name"],
        c["name_ko"] if "name_ko" in c else [None] * len(c),
        c["province"] if "province" in c else [None] * len(c),
        c["province_ko"] if "province_ko" in c else [None] * len(c),
        strict=True,
    ):
        p = (
            prov_ko
            if _given(prov_ko)
            else by_name.get(normalise_name(prov))
            if _given(prov)
            else None
        )
        if p:
            province_of[uid] = str(p)
        if _given(ko):
            county[uid] = str(ko)
        elif p and _given(name) and _given(prov) and normalise_name(name) == normalise_name(prov):
            county[uid] = str(p)
    return KoreanNames(county, province_of, by_name)


def boundary_digest() -> str:
    """SHA-256 of the county and province files :func:`boundaries` reads (part of the maps' content key)."""
    h = hashlib.sha256()
    for level in ("county", "province"):
        path = default_units_path(level)
        h.update(path.read_bytes() if path is not None else b"-")
    return h.hexdigest()


@dataclass(frozen=True)
class Composite:
    """Per-pixel mean radiance over a year's valid months (NaN where never observed)."""

    data: np.ndarray
    transform: Affine
    year: int

    @property
    def extent(self) -> tuple[float, float, float, float]:
        h, w = self.data.shape
        a = self.transform
        return a.c, a.c + a.a * w, a.f + a.e * h, a.f

    def around(self, lon: float, lat: float, half_px: tuple[int, int]) -> Composite:
        """A window of the same pixel size around every site, so all panels line up."""
        col, row = (~self.transform) * (lon, lat)
        hx, hy = half_px
        r0, c0 = max(int(row) - hy, 0), max(int(col) - hx, 0)
        data = self.data[r0 : int(row) + hy + 1, c0 : int(col) + hx + 1]
        return Composite(data, self.transform * Affine.translation(c0, r0), self.year)

    def crop(self, bounds: tuple[float, float, float, float]) -> Composite:
        win = from_bounds(*bounds, transform=self.transform).round_offsets().round_lengths()
        r0, c0 = max(int(win.row_off), 0), max(int(win.col_off), 0)
        r1 = min(int(win.row_off + win.height), self.data.shape[0])
        c1 = min(int(win.col_off + win.width), self.data.shape[1])
        return Composite(
            self.data[r0:r1, c0:c1], self.transform * Affine.translation(c0, r0), self.year
        )


def composite(
    rasters: Sequence[MonthlyRaster],
    bounds: tuple[float, float, float, float],
    year: int,
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
    max_px: int = 2000,
) -> Composite | None:
    """Mean of each pixel's valid months in ``year`` within ``bounds`` (lon/lat), decimated to ``max_px``."""
    months = [r for r in rasters if r.year == year]
    if not months:
        return None
    grid = months[0].grid
    win = from_bounds(*bounds, transform=grid.affine).round_offsets().round_lengths()
    try:
        win = win.intersection(Window(0, 0, grid.width, grid.height))
    except (
        WindowError
    ):  # the box is off the rasters: nothing to draw (its sites are insufficient_data)
        return None
    if win.width < 1 or win.height < 1:
        return None
    step = max(1, int(np.ceil(max(win.width, win.height) / max_px)))
    total: np.ndarray | None = None
    count: np.ndarray | None = None
    for r in months:
        if r.grid != grid:
            continue
        rad, aux = _read_decimated(r, win, step)
        ok = valid_mask(aux, r.aux_kind, min_cf_cvg, bm_quality)
        if total is None or count is None:
            total, count = np.zeros(rad.shape), np.zeros(rad.shape)
        total += np.where(ok, rad, 0.0)
        count += ok
    if total is None or count is None:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        data = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    transform = grid.affine * Affine.translation(win.col_off, win.row_off) * Affine.scale(step)
    return Composite(data, transform, year)


def _read_decimated(r: MonthlyRaster, win: Window, step: int) -> tuple[np.ndarray, np.ndarray]:
    if step == 1:
        return read_window(r, win)
    rads, auxs = [], []
    strip = 256 * step
    for row in range(int(win.row_off), int(win.row_off + win.height), strip):
        part = Window(win.col_off, row, win.width, min(strip, win.row_off + win.height - row))
        rad, aux = read_window(r, part)
        rads.append(rad[::step, ::step])
        auxs.append(aux[::step, ::step])
    return np.vstack(rads), np.vstack(auxs)


def site_composites(
    rasters: Sequence[MonthlyRaster],
    sites: Any,
    changes: pd.DataFrame,
    p: dict[str, Any],
    extent: tuple[float, float, float, float] | None = None,
    memo: Memo | None = None,
) -> dict[str, Any]:
    """Target-year composite for the map (the sites' area, grown to ``extent``, e.g. the country,
    within the rasters); per-site baseline/target windows for before/after. ``memo``: where the
    two yearly composites are kept (:mod:`pipeline.memo`), so a re-run that redraws the maps (e.g.
    another ``--threshold``) does not read a year of rasters again."""
    b, t = int(p["baseline_year"]), int(p["target_year"])
    cvg, quality = int(p.get("min_cf_cvg", 3)), tuple(p.get("bm_quality", (0,)))
    # Sites whose centre is off the rasters are insufficient_data in the tables; they are listed
    # as off the map rather than stretching it to the other side of the world (or failing).
    rw, rs, re_, rn = raster_lonlat_bounds(rasters[0].grid)
    x, y = sites["center_lon"].to_numpy(float), sites["center_lat"].to_numpy(float)
    on = (x >= rw) & (x <= re_) & (y >= rs) & (y <= rn)
    off_map = [str(sid) for sid in sites.loc[~on, "site_id"]]
    if not on.any():
        return {"map": None, "pairs": [], "off_map": off_map}
    sites = sites[on]
    w, s, e, n = (float(x) for x in sites.total_bounds)
    lat = np.deg2rad((s + n) / 2)
    half_lat = (
        0.75 * float(p.get("ring_outer_m", 8000.0)) / 111_320
    )  # the site and most of its ring
    half_lon = half_lat / np.cos(lat)
    margin = max(0.25, 0.06 * max(e - w, n - s))
    map_bounds = (w - margin / np.cos(lat), s - margin, e + margin / np.cos(lat), n + margin)
    if extent is not None:
        map_bounds = (
            min(map_bounds[0], extent[0]),
            min(map_bounds[1], extent[1]),
            max(map_bounds[2], extent[2]),
            max(map_bounds[3], extent[3]),
        )
    res = abs(rasters[0].grid.affine.a)
    full = ((map_bounds[2] - map_bounds[0]) / res) * ((map_bounds[3] - map_bounds[1]) / res) <= 16e6
    big = {
        y: kept_composite(
            memo or Memo(None), rasters, map_bounds, y, cvg, quality, 10**6 if full else 2000
        )
        for y in (b, t)
    }
    cls = changes.set_index("site_id")["class"]
    rows = sites.assign(klass=sites["site_id"].map(cls).fillna("insufficient_data")).set_index(
        "site_id"
    )
    pairs = []
    for sid in ordered(changes)["site_id"]:
        if sid not in rows.index:
            continue
        r = rows.loc[sid]
        box = (
            r.center_lon - half_lon,
            r.center_lat - half_lat,
            r.center_lon + half_lon,
            r.center_lat + half_lat,
        )
        if full:
            half_px = (round(half_lon / res), round(half_lat / res))
            before, after = (
                c.around(r.center_lon, r.center_lat, half_px) if (c := big[y]) is not None else None
                for y in (b, t)
            )
        else:
            before, after = (composite(rasters, box, y, cvg, quality) for y in (b, t))
        if before is not None and after is not None:
            pairs.append((_Row(sid, r), before, after))
    return {"map": big[t], "pairs": pairs, "off_map": off_map}


def kept_composite(
    memo: Memo,
    rasters: Sequence[MonthlyRaster],
    bounds: tuple[float, float, float, float],
    year: int,
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
    max_px: int,
) -> Composite | None:
    """:func:`composite`, kept in ``memo`` under the year's raster files and the window."""
    months = [r for r in rasters if r.year == year]

    def encode(c: Composite | None) -> Entry:
        if c is None:
            return Entry(doc={"none": True})
        return Entry(
            doc={"none": False, "transform": list(c.transform)[:6]}, arrays={"data": c.data}
        )

    def decode(e: Entry) -> Composite | None:
        if e.doc["none"]:
            return None
        return Composite(e.arrays["data"], Affine(*e.doc["transform"]), year)

    return memo.through(
        "composite",
        (raster_state(months), [float(v) for v in bounds], year, min_cf_cvg, bm_quality, max_px),
        partial(composite, rasters, bounds, year, min_cf_cvg, bm_quality, max_px),
        encode,
        decode,
        inputs=[f for r in months for f in (r.radiance, r.aux)],
    )


def raster_lonlat_bounds(grid: Any) -> tuple[float, float, float, float]:
    """A grid's bounds in longitude/latitude."""
    if grid.crs.is_geographic:
        return grid.bounds
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds(grid.crs, "EPSG:4326", *grid.bounds))


class _Row:
    """A site row for charts: attribute access, including the class (a Python keyword)."""

    def __init__(self, site_id: str, r: pd.Series):
        self.site_id, self.name, self.name_ko = site_id, r.get("name"), r.get("name_ko")
        self.geometry, self.klass = r.geometry, r.klass

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)
