"""Zonal: the zone-by-month table, from exact coverage weights computed once per grid.

Inputs
    Zones (site polygons, their background rings, radius variants) as a GeoDataFrame
    with a ``zone`` column; a list of :class:`~pipeline.sources.MonthlyRaster`.
Outputs
    A DataFrame, one row per zone, month and pixel rule: ``zone``, ``month``,
    ``pixel_rule``, ``mean_radiance``, ``sum_radiance``, ``valid_fraction``,
    ``weight``, ``n_pixels``, ``mean_obs``.

Approach: the sites are smaller than a VIIRS pixel, so every statistic is weighted by
the exact fraction of each pixel a polygon covers (exactextract computes them, once per
grid). Zones are grouped into blocks of nearby pixels; each month reads only those
blocks (never the whole tile) and applies the sparse weights with ``np.bincount``.
Months are independent dask tasks, so they run in parallel locally or on a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from rasterio.windows import Window

from pipeline.sources import Grid, MonthlyRaster, read_window, valid_mask

log = logging.getLogger(__name__)

BLOCK = 512  # zones whose pixels start in the same 512x512 block share one read window
STATS = ("mean_radiance", "sum_radiance", "valid_fraction", "weight", "n_pixels", "mean_obs")


@dataclass(frozen=True)
class BlockWeights:
    """Sparse exact coverage of zones on one read window of a grid."""

    window: Window
    zone: np.ndarray  # int32 zone index per entry
    pixel: np.ndarray  # int64 flat index into the window
    coverage: np.ndarray  # float64 exact covered fraction of the pixel, (0, 1]


@dataclass(frozen=True)
class GridWeights:
    """All zones' weights on one grid, split into read blocks."""

    grid: Grid
    n_zones: int
    blocks: tuple[BlockWeights, ...]

    @property
    def n_entries(self) -> int:
        return sum(b.zone.size for b in self.blocks)


def rule_weights(coverage: np.ndarray, rule: str) -> np.ndarray:
    """Pixel-inclusion rule as weights, matching exactextract's options.

    exact: the covered fraction (``mean``); centroid-like: 1 where at least half the
    pixel is covered (``mean(min_coverage_frac=0.5, coverage_weight=none)``);
    all-touched-like: 1 for any covered pixel (``mean(coverage_weight=none)``).
    """
    if rule == "exact":
        return coverage
    if rule == "centroid":
        return (coverage >= 0.5).astype("float64")
    if rule == "all_touched":
        return (coverage > 0).astype("float64")
    raise ValueError(f"pixel rule {rule!r} not valid; must be one of exact, centroid, all_touched")


def coverage_weights(zones: gpd.GeoSeries, grid: Grid) -> GridWeights:
    """Exact coverage fractions of every zone on ``grid`` (zones in any CRS).

    Zones outside the grid get no entries (their statistics are missing, not zero).
    """
    geoms = zones.to_crs(grid.crs) if zones.crs is not None else zones
    windows = [_pixel_window(g.bounds, grid) if not g.is_empty else None for g in geoms]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(windows):
        if w is not None:
            groups.setdefault((w.row_off // BLOCK, w.col_off // BLOCK), []).append(i)
    blocks = [
        _block_weights(geoms.iloc[idx], np.asarray(idx, dtype="int32"),
                       [windows[i] for i in idx], grid)
        for idx in groups.values()
    ]
    return GridWeights(grid, len(zones), tuple(b for b in blocks if b.zone.size))


def _pixel_window(bounds: tuple[float, float, float, float], grid: Grid) -> Window | None:
    """The pixel window covering ``bounds`` (padded by one pixel), clipped to the grid."""
    inv = ~grid.affine
    xmin, ymin, xmax, ymax = bounds
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    c0, c1 = int(np.floor(min(cols))) - 1, int(np.ceil(max(cols))) + 1
    r0, r1 = int(np.floor(min(rows))) - 1, int(np.ceil(max(rows))) + 1
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, grid.width), min(r1, grid.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _block_weights(geoms: gpd.GeoSeries, zone_idx: np.ndarray, windows: list[Window], grid: Grid) -> BlockWeights:
    r0 = min(w.row_off for w in windows)
    c0 = min(w.col_off for w in windows)
    r1 = max(w.row_off + w.height for w in windows)
    c1 = max(w.col_off + w.width for w in windows)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    a = grid.affine
    # A dummy raster on the window's exact cells: exactextract only needs its geometry.
    x0, y0 = a @ (c0, r0)
    x1, y1 = a @ (c1, r1)
    src = NumPyRasterSource(np.zeros((r1 - r0, c1 - c0), dtype="float32"),
                            min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), srs_wkt=grid.crs_wkt)
    frame = gpd.GeoDataFrame({"zidx": zone_idx}, geometry=geoms.values, crs=geoms.crs)
    df = exact_extract(src, frame, ["cell_id", "coverage"], include_cols=["zidx"], output="pandas")
    zone = np.repeat(df["zidx"].to_numpy("int32"), df["cell_id"].map(len).to_numpy())
    pixel = np.concatenate([np.asarray(c, dtype="int64") for c in df["cell_id"]]) if len(df) else np.zeros(0, "int64")
    cov = np.concatenate([np.asarray(c, dtype="float64") for c in df["coverage"]]) if len(df) else np.zeros(0)
    if a.e > 0:  # south-up grids: exactextract counts rows from the north
        rows, cols = np.divmod(pixel, c1 - c0)
        pixel = (r1 - r0 - 1 - rows) * (c1 - c0) + cols
    keep = cov > 0
    return BlockWeights(window, zone[keep], pixel[keep], cov[keep])


def month_stats(
    raster: MonthlyRaster,
    weights: GridWeights,
    rules: Sequence[str],
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> np.ndarray:
    """Statistics of every zone for one month: array (rule, zone, stat) in :data:`STATS` order.

    Invalid pixels (no cloud-free observation, bad quality, nodata) carry no weight; a
    zone's ``valid_fraction`` says how much of its weight was observed.
    """
    nz = weights.n_zones
    out = np.full((len(rules), nz, len(STATS)), np.nan)
    acc = np.zeros((len(rules), 5, nz))  # total w, valid w, w*rad, n pixels, w*obs
    for block in weights.blocks:
        rad, aux = read_window(raster, block.window)
        valid = valid_mask(aux, raster.aux_kind, min_cf_cvg, bm_quality).ravel()[block.pixel]
        values = rad.ravel()[block.pixel]
        obs = aux.ravel()[block.pixel].astype("float64") if raster.aux_kind == "cf_cvg" else valid * 1.0
        for r, rule in enumerate(rules):
            w = rule_weights(block.coverage, rule)
            acc[r, 0] += np.bincount(block.zone, w, nz)
            acc[r, 1] += np.bincount(block.zone, w * valid, nz)
            acc[r, 2] += np.bincount(block.zone, w * valid * values, nz)
            acc[r, 3] += np.bincount(block.zone, (w > 0) * 1.0, nz)
            acc[r, 4] += np.bincount(block.zone, w * obs, nz)
    total, vw, wsum, npix, wobs = acc.transpose(1, 0, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(vw > 0, wsum / vw, np.nan)
        out[..., 0] = mean
        out[..., 1] = mean * total  # sum of lights, unobserved pixels filled at the zone mean
        out[..., 2] = np.where(total > 0, vw / total, 0.0)
        out[..., 3] = total
        out[..., 4] = npix
        out[..., 5] = np.where(total > 0, wobs / total, np.nan)
    return out


def zone_month_table(
    rasters: Sequence[MonthlyRaster],
    zones: gpd.GeoDataFrame,
    rules: Sequence[str] = ("exact",),
    min_cf_cvg: int = 3,
    bm_quality: tuple[int, ...] = (0,),
    progress: bool = True,
) -> pd.DataFrame:
    """Statistics for every zone, month and pixel rule; computed with dask, one task per month.

    The scheduler is dask's current one: threads by default (GDAL releases the GIL), or
    a ``distributed.Client`` the caller has made current.
    """
    weights_by_grid: dict[Grid, GridWeights] = {}
    for r in rasters:
        if r.grid not in weights_by_grid:
            weights_by_grid[r.grid] = coverage_weights(zones.geometry, r.grid)
    tasks = [
        dask.delayed(month_stats, pure=True)(r, weights_by_grid[r.grid], tuple(rules), min_cf_cvg, bm_quality)
        for r in rasters
    ]
    results = compute_with_progress(tasks, "extracting months", progress)
    return _to_frame(results, [r.month for r in rasters], list(zones["zone"]), list(rules))


def compute_with_progress(tasks: list, label: str, progress: bool) -> list:
    """``dask.compute`` with a tqdm bar on the local scheduler, or futures on a cluster."""
    from tqdm.auto import tqdm

    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        futures = client.compute(tasks)
        for _ in tqdm(as_completed(futures), total=len(futures), desc=label, unit="month",
                      disable=not progress, leave=False):
            pass
        return client.gather(futures)
    from dask.callbacks import Callback

    bar = tqdm(total=len(tasks), desc=label, unit="month", disable=not progress, leave=False)

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(key, tuple) or str(key).startswith("month_stats"):
                bar.update(1)

    with _Bar():
        results = dask.compute(*tasks, scheduler="threads")
    bar.close()
    return list(results)


def _to_frame(results: list[np.ndarray], months: list[str], zones: list[str], rules: list[str]) -> pd.DataFrame:
    if not results:
        return pd.DataFrame(columns=["zone", "month", "pixel_rule", *STATS])
    arr = np.stack(results)  # month, rule, zone, stat
    nm, nr, nz, _ = arr.shape
    idx = pd.MultiIndex.from_product([months, rules, zones], names=["month", "pixel_rule", "zone"])
    df = pd.DataFrame(arr.reshape(nm * nr * nz, len(STATS)), index=idx, columns=list(STATS)).reset_index()
    df["n_pixels"] = df["n_pixels"].astype("int64")
    return df[["zone", "month", "pixel_rule", *STATS]]
