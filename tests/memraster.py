"""In-memory rasters for statistics tests: arrays in, MonthlyRaster out, no files on disk.

GDAL's ``/vsimem/`` file system holds the GeoTIFF bytes, so the real reading path
(:func:`pipeline.read.sources.read_window`, the zonal extraction) is exercised without a folder.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from pipeline.read.sources import Grid, MonthlyRaster

RES = 1 / 240


def mem_tif(
    array: np.ndarray, west: float, north: float, res: float = RES, nodata: float | None = None
) -> Path:
    """A single-band GeoTIFF in GDAL's memory file system; returns its /vsimem path."""
    path = Path(f"/vsimem/nightlights-test/{uuid.uuid4().hex}.tif")
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs="EPSG:4326",
        transform=from_origin(west, north, res, res),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array, 1)
    return path


def mem_month(
    month: str,
    rad: np.ndarray,
    cvg: np.ndarray | None,
    west: float,
    north: float,
    nodata: float | None = None,
) -> MonthlyRaster:
    """One EOG-like month (radiance and cf_cvg) or, without ``cvg``, a plain GeoTIFF month."""
    rad_path = mem_tif(rad.astype("float32"), west, north, nodata=nodata)
    aux = mem_tif(cvg.astype("uint16"), west, north) if cvg is not None else None
    with rasterio.open(
        rad_path
    ) as ds:  # grid_of() also checks the bytes with open(): not for /vsimem
        grid, nd = Grid(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height), ds.nodata
    return MonthlyRaster(
        month,
        rad_path,
        aux,
        "cf_cvg" if aux else "none",
        "eog-vcmslcfg" if aux else "geotiff",
        grid,
        nd,
    )
