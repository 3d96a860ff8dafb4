"""Bench data: synthetic monthly rasters and site polygons, generated once and cached.

SYNTHETIC DATA, made only to time extraction; it says nothing about any place.

Two layouts of the same pixels, so their timings compare directly:

* ``nk/``: the North Korea window (1680 x 1320 px, 15 arc-seconds, lon 124-131 E,
  lat 37.5-43 N), 120 months of noisy radiance (noise everywhere, so tiles decode at
  a realistic cost) with cloud gaps as nodata;
* ``nk/`` also holds months 121-168 (same recipe), for the county and national-panel
  cases, which need 14 years; the tile layout stops at 120;
* ``county*.geojson`` / ``panel181.geojson``: Voronoi units (county-like polygons)
  tiling a 960 x 800 px window of the Korea grid, or the whole Korea window;
* ``tile/``: the same months embedded in a full-size 28800 x 18000 px tile shaped like
  EOG's ``75N060E`` (60-180 E, 0-75 N). Only the Korea tiles are written; the rest are
  sparse (absent blocks read as nodata), so the file is small and fast to make.

Unusable pixels are nodata (-999) in the radiance itself, rather than a separate
cf_cvg layer, so every competitor (exactextract, rasterstats, rioxarray) can be asked
for exactly the same thing: the mean of valid pixels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point, box
from shapely.ops import transform as shp_transform

RES = 1 / 240
NK_WEST, NK_NORTH, NK_W, NK_H = 124.0, 43.0, 1680, 1320
TILE_WEST, TILE_NORTH, TILE_W, TILE_H = 60.0, 75.0, 28800, 18000
NODATA = -999.0
MAX_MONTHS = 120
NK_MONTHS = 168  # the Korea window has 14 years (county and national-panel cases)
COUNTY_WINDOW = (300, 200, 960, 800)  # column, row offsets and size (px) of the county window in nk
MAX_SITES = 2000
SEED = 6
LAYOUT = "v1"  # bump to regenerate cached data after changing this module
MARKER = "BENCH_DATA_IS_SYNTHETIC.txt"


def month_names(n: int, start_year: int = 2016) -> list[str]:
    return [f"{start_year + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


def bench_sites(n: int = MAX_SITES, radius_m: float = 2000.0) -> gpd.GeoDataFrame:
    """``n`` circular sites of ``radius_m`` at seeded random places in the Korea window."""
    rng = np.random.default_rng(SEED)
    lon = rng.uniform(NK_WEST + 0.1, NK_WEST + NK_W * RES - 0.1, n)
    lat = rng.uniform(NK_NORTH - NK_H * RES + 0.1, NK_NORTH - 0.1, n)
    geoms = []
    for x, y in zip(lon, lat, strict=True):
        kx = radius_m / (111_320 * np.cos(np.radians(y)))
        ky = radius_m / 110_574
        circle = Point(0, 0).buffer(1.0, 16)
        geoms.append(
            shp_transform(lambda a, b, x=x, y=y, kx=kx, ky=ky: (x + a * kx, y + b * ky), circle)
        )
    return gpd.GeoDataFrame(
        {"site_id": [f"s{i:04d}" for i in range(n)]}, geometry=geoms, crs="EPSG:4326"
    )


def voronoi_units(
    n: int, window: tuple[int, int, int, int] = COUNTY_WINDOW, seed: int = SEED
) -> gpd.GeoDataFrame:
    """``n`` Voronoi cells tiling a pixel window of the Korea grid: county-sized units."""
    import shapely

    c0, r0, w, h = window
    frame = box(
        NK_WEST + c0 * RES, NK_NORTH - (r0 + h) * RES, NK_WEST + (c0 + w) * RES, NK_NORTH - r0 * RES
    )
    rng = np.random.default_rng([seed, n])
    seeds = shapely.multipoints(rng.uniform(frame.bounds[:2], frame.bounds[2:], (n, 2)))
    cells = [
        c.intersection(frame)
        for c in shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=frame))
    ]
    cells.sort(key=lambda g: (-g.centroid.y, g.centroid.x))
    return gpd.GeoDataFrame(
        {"site_id": [f"u{i:03d}" for i in range(n)]}, geometry=cells, crs="EPSG:4326"
    )


UNIT_FILES = {
    "county120.geojson": (120, COUNTY_WINDOW),
    "county181.geojson": (181, COUNTY_WINDOW),
    "panel181.geojson": (181, (0, 0, NK_W, NK_H)),
}


def _static_fields(sites: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Lights at the sites and at other towns, blurred like VIIRS blooming."""
    rng = np.random.default_rng(SEED + 1)
    inv = ~from_origin(NK_WEST, NK_NORTH, RES, RES)
    fields = []
    n_towns = 300
    town_xy = [
        (rng.uniform(NK_WEST, NK_WEST + NK_W * RES), rng.uniform(NK_NORTH - NK_H * RES, NK_NORTH))
        for _ in range(n_towns)
    ]
    b = sites.bounds
    site_xy = list(zip((b.minx + b.maxx) / 2, (b.miny + b.maxy) / 2, strict=True))
    for points in (site_xy, town_xy):
        f = np.zeros((NK_H, NK_W))
        for x, y in points:
            col, row = inv * (x, y)
            peak, sigma = rng.lognormal(np.log(5.0), 0.6), rng.uniform(1.0, 2.5)
            r = int(4 * sigma) + 1
            r0, r1, c0, c1 = (
                max(int(row) - r, 0),
                min(int(row) + r + 1, NK_H),
                max(int(col) - r, 0),
                min(int(col) + r + 1, NK_W),
            )
            yy, xx = np.mgrid[r0:r1, c0:c1]
            f[r0:r1, c0:c1] += peak * np.exp(
                -((yy + 0.5 - row) ** 2 + (xx + 0.5 - col) ** 2) / (2 * sigma**2)
            )
        fields.append(f)
    return fields[0], fields[1]


def render(i: int, sites_field: np.ndarray, towns_field: np.ndarray) -> np.ndarray:
    """Month ``i``: background + lights with a trend and season, noise, cloud gaps as nodata."""
    rng = np.random.default_rng([SEED, i])
    season = 1.0 + 0.25 * np.cos(2 * np.pi * (i % 12) / 12)
    light = 0.3 * season + sites_field * season * (1 + 0.004 * i) + towns_field * season
    rad = light + rng.normal(0.0, 1.0, light.shape) * (0.05 + 0.03 * light)
    coarse = rng.uniform(size=(NK_H // 60 + 1, NK_W // 60 + 1)) < 0.12 + 0.2 * (i % 12 in (5, 6, 7))
    clouds = np.kron(coarse, np.ones((60, 60), dtype=bool))[:NK_H, :NK_W]
    rad = np.maximum(rad, 0.0)
    rad[clouds] = NODATA
    return rad.astype("float32")


def _profile(width: int, height: int, west: float, north: float) -> dict:
    return dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        nodata=NODATA,
        crs="EPSG:4326",
        transform=from_origin(west, north, RES, RES),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        zlevel=1,
        SPARSE_OK="TRUE",
    )


def _write(
    path: Path, profile: dict, array: np.ndarray, window: rasterio.windows.Window | None
) -> None:
    tmp = path.with_name(path.name + ".part")
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(array, 1, window=window)
        ds.update_tags(SYNTHETIC="true", GENERATOR="nightlights bench")
    os.replace(tmp, path)


def ensure_data(root: Path, progress: bool = True) -> Path:
    """Generate (or reuse) sites and both layouts under ``root/<LAYOUT>``; return that folder."""
    from tqdm.auto import tqdm

    out = Path(root) / LAYOUT
    if (out / MARKER).exists():
        _ensure_extras(out, progress)
        return out
    for sub in ("nk", "tile"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sites = bench_sites()
    sites.to_file(out / "sites.geojson", driver="GeoJSON")
    s_field, t_field = _static_fields(sites)
    nk = _profile(NK_W, NK_H, NK_WEST, NK_NORTH)
    tile = _profile(TILE_W, TILE_H, TILE_WEST, TILE_NORTH)
    col_off = round((NK_WEST - TILE_WEST) / RES)
    row_off = round((TILE_NORTH - NK_NORTH) / RES)
    where = rasterio.windows.Window(col_off, row_off, NK_W, NK_H)

    def one(i: int) -> None:
        name = f"bench_{month_names(MAX_MONTHS)[i]}.tif"
        rad = render(i, s_field, t_field)
        _write(out / "nk" / name, nk, rad, None)
        _write(out / "tile" / name, tile, rad, where)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(
            tqdm(
                pool.map(one, range(MAX_MONTHS)),
                total=MAX_MONTHS,
                desc="generating bench data",
                unit="month",
                disable=not progress,
                leave=False,
            )
        )
    (out / MARKER).write_text(
        "SYNTHETIC rasters made by bench/data.py to time extraction; "
        "not observations of any place.\n",
        encoding="utf-8",
    )
    _ensure_extras(out, progress)
    return out


def _ensure_extras(out: Path, progress: bool) -> None:
    """Months 121-168 of the Korea window and the county units, added to existing data if missing."""
    from tqdm.auto import tqdm

    for name, (n, window) in UNIT_FILES.items():
        if not (out / name).exists():
            voronoi_units(n, window).to_file(out / name, driver="GeoJSON")
    names = month_names(NK_MONTHS)
    todo = [
        i
        for i in range(MAX_MONTHS, NK_MONTHS)
        if not (out / "nk" / f"bench_{names[i]}.tif").exists()
    ]
    if not todo:
        return
    s_field, t_field = _static_fields(bench_sites())
    nk = _profile(NK_W, NK_H, NK_WEST, NK_NORTH)

    def one(i: int) -> None:
        _write(out / "nk" / f"bench_{names[i]}.tif", nk, render(i, s_field, t_field), None)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(
            tqdm(
                pool.map(one, todo),
                total=len(todo),
                desc="generating months 121-168",
                unit="month",
                disable=not progress,
                leave=False,
            )
        )
