"""Pixels: the monthly rasters of a run as one lazy ``xarray.Dataset`` for notebooks.

Inputs
    Monthly rasters (:class:`pipeline.read.sources.MonthlyRaster`, one grid) and a lon/lat box.
Outputs
    ``xarray.Dataset`` with dims ``(time, y, x)``: ``radiance`` (nW/cm²/sr, cleaned by the
    one nodata rule, 0 where unusable), ``valid`` (the run's valid-pixel rule), ``aux`` (cf_cvg
    counts, quality codes or 0/1), coordinates ``x``/``y`` (pixel centres in the rasters' CRS)
    and attributes naming the data kind. Each month is one dask task: nothing is read until
    asked (``.load()``, ``.sel(...)``, a plot).

Why not the study cube's Zarr store directly: the cube holds only the chunks sites touched,
in a layout made for extraction; reading through :func:`pipeline.read.sources.read_window` gives
the same cleaned values for any box, from any source, cube or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from rasterio.windows import Window, from_bounds

from pipeline.errors import SourceError
from pipeline.read.sources import MonthlyRaster, read_window, valid_mask
from pipeline.words import synthetic_notice


def open_pixels(
    rasters: Sequence[MonthlyRaster],
    bounds: tuple[float, float, float, float],
    data_kind: str = "",
    *,
    min_cf_cvg: int = 3,
    bm_quality: tuple[int, ...] = (0,),
) -> Any:
    """A lazy (time, y, x) Dataset of the months in ``rasters`` over ``bounds`` (lon/lat for EPSG:4326 grids)."""
    import xarray as xr

    if not rasters:
        raise SourceError("no monthly rasters to open; run the analysis first")
    grid = rasters[0].grid
    other = [r.month for r in rasters if r.grid != grid]
    if other:
        raise SourceError(
            f"months {', '.join(other[:3])} lie on another grid than {rasters[0].month}; "
            "open each grid separately"
        )
    win = from_bounds(*bounds, transform=grid.affine).round_offsets().round_lengths()
    win = win.intersection(Window(0, 0, grid.width, grid.height))
    shape = (int(win.height), int(win.width))

    def layer(r: MonthlyRaster, which: int, dtype: str) -> da.Array:
        block = dask.delayed(_read)(r, win, min_cf_cvg, bm_quality)[which]
        return da.from_delayed(block, shape=shape, dtype=dtype)

    a = grid.affine
    xs = a.c + a.a * (int(win.col_off) + np.arange(shape[1]) + 0.5)
    ys = a.f + a.e * (int(win.row_off) + np.arange(shape[0]) + 0.5)
    time = pd.to_datetime([r.month for r in rasters])
    dims = ("time", "y", "x")
    return xr.Dataset(
        {
            "radiance": (
                dims,
                da.stack([layer(r, 0, "float64") for r in rasters]),
                {"units": "nW/cm2/sr", "long_name": "radiance, unusable pixels 0"},
            ),
            "valid": (
                dims,
                da.stack([layer(r, 1, "bool") for r in rasters]),
                {"long_name": "observed pixel"},
            ),
            "aux": (
                dims,
                da.stack([layer(r, 2, "float64") for r in rasters]),
                {"long_name": "cf_cvg count, quality code or 0/1 validity"},
            ),
        },
        coords={"time": time, "y": ys, "x": xs},
        attrs={
            "data_kind": data_kind,
            "crs": grid.crs.to_string(),
            "products": ", ".join(sorted({r.product for r in rasters})),
            "note": synthetic_notice("en") if data_kind == "synthetic" else "",
        },
    )


def _read(
    r: MonthlyRaster, win: Window, min_cf_cvg: int, bm_quality: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rad, aux = read_window(r, win)
    return rad, valid_mask(aux, r.aux_kind, min_cf_cvg, bm_quality), aux.astype("float64")
