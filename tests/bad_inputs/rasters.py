"""Tiny synthetic monthly rasters and a site file for the bad-input and fault tests.

SYNTHETIC: test data only. The grid is 40x40 px of 0.01 degree over lon 125.0-125.4,
lat 39.6-40.0 (EPSG:4326). Every pixel's radiance is ``base + slope * (lon - 125)``
with ``lon`` the pixel centre, so a site's exact-coverage mean is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine, from_origin

WEST, NORTH, RES, SIZE = 125.0, 40.0, 0.01, 40
GRID = from_origin(WEST, NORTH, RES, RES)

# Two sites inside the grid (a point and a square polygon) used by every run.
SITES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"site_id": "alpha", "batch": 2024},
            "geometry": {"type": "Point", "coordinates": [125.2, 39.8]},
        },
        {
            "type": "Feature",
            "properties": {"site_id": "beta", "batch": 2024},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[125.1, 39.7], [125.16, 39.7], [125.16, 39.76], [125.1, 39.76], [125.1, 39.7]]
                ],
            },
        },
    ],
}


def write_sites(path: Path, doc: dict | None = None) -> Path:
    path.write_text(json.dumps(doc or SITES), encoding="utf-8")
    return path


def write_raster(
    path: Path,
    values: np.ndarray,
    transform: Affine = GRID,
    crs: str | None = "EPSG:4326",
    **profile: object,
) -> Path:
    h, w = values.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=-999.0,
        **profile,
    ) as ds:
        ds.write(values.astype("float32"), 1)
    return path


def lon_field(
    transform: Affine, shape: tuple[int, int], crs: str, base: float, slope: float
) -> np.ndarray:
    """``base + slope * (lon - 125)`` at every pixel centre of a grid in any CRS."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    lon, _ = Transformer.from_crs(crs, 4326, always_xy=True).transform(xs, ys)
    return base + slope * (np.asarray(lon) - WEST)


def write_months(
    folder: Path,
    years: tuple[int, ...] = (2023, 2024, 2025),
    base: float = 2.0,
    step: float = 1.0,
    slope: float = 0.0,
    name: str = "{y}-{m:02d}.tif",
) -> list[Path]:
    """One raster per month; year ``y`` is ``base + step * (y - years[0])`` plus the lon slope."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for y in years:
        values = lon_field(GRID, (SIZE, SIZE), "EPSG:4326", base + step * (y - years[0]), slope)
        for m in range(1, 13):
            paths.append(write_raster(folder / name.format(y=y, m=m), values))
    return paths


def write_rotated(path: Path, shear: float = 0.002) -> Path:
    """One month on a grid with a rotation/shear term (GDAL geotransform b, d != 0)."""
    t = Affine(RES, shear, WEST, shear, -RES, NORTH)
    return write_raster(path, np.full((SIZE, SIZE), 3.0), transform=t)


def write_multiband(path: Path, count: int = 3) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=count,
        dtype="float32",
        crs="EPSG:4326",
        transform=GRID,
        nodata=-999.0,
    ) as ds:
        for b in range(1, count + 1):
            ds.write(np.full((SIZE, SIZE), float(b), "float32"), b)
    return path


def write_int16_without_nodata(path: Path, value: int, fill_rows: int = SIZE // 2) -> Path:
    """int16 radiance, the top ``fill_rows`` rows holding -32768 (a fill nobody tagged)."""
    values = np.full((SIZE, SIZE), value, "int16")
    values[:fill_rows] = -32768
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype="int16",
        crs="EPSG:4326",
        transform=GRID,
    ) as ds:
        ds.write(values, 1)
    return path


def write_declared_huge(path: Path, side: int = 1_000_000) -> Path:
    """A GeoTIFF of a few hundred KB declaring ``side`` x ``side`` px: no block is written
    (SPARSE_OK), only the block table, 4096-px blocks keeping that small."""
    res = 0.4 / side
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(WEST, NORTH, res, res),
        nodata=-999.0,
        tiled=True,
        blockxsize=4096,
        blockysize=4096,
        compress="deflate",
        sparse_ok=True,
        BIGTIFF="YES",
    ):
        pass
    return path


def write_eog_sized_tile(path: Path, value: float = 2.0) -> Path:
    """A month the size of a real EOG tile (28800 x 18000 px, 75N060E, 2 GB of float32 when read
    whole) in a 2.6 MB file: constant, deflate-compressed, written 512 rows at a time."""
    from rasterio.windows import Window

    width, height = 28800, 18000
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(60.0, 75.0, 1 / 240, 1 / 240),
        nodata=-999.0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        zlevel=1,
    ) as ds:
        rows = np.full((512, width), value, "float32")
        for r in range(0, height, 512):
            h = min(512, height - r)
            ds.write(rows[:h], 1, window=Window(0, r, width, h))
    return path
