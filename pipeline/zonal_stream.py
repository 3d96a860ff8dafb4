"""Zonal, county regime: zones that tile a window, one read of the window per month.

Inputs
    The coverage weights of all zones on one grid (:class:`pipeline.zonal.GridWeights`)
    and that grid's monthly rasters.
Outputs
    The same weighted sums as :func:`pipeline.zonal.part_stats`, array (rule, sum, zone,
    month), for the months given.

Why a second path: the chunked cube (:mod:`pipeline.cube`) pays off for small scattered
sites, whose chunks are a small share of the tiles. Zones that cover most of a window
(counties tiling a region) use nearly every pixel of it, so the least work is to decode
that window once per month and apply every zone's weights to it; stacking months per
chunk would only add copies and memory that grows with the months. Each month is read,
reduced to a few numbers per zone and dropped, so memory is flat in the number of months.

How the weights are applied (no scipy needed): pixels a zone covers wholly (coverage 1,
the same weight under every pixel rule) are grouped into runs of consecutive flat
indices and summed with one ``np.add.reduceat`` pass over the window; the few edge
pixels a zone covers in part are gathered and weighted per rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.cube import CHUNK, GDAL_ENV, clean
from pipeline.errors import SourceError
from pipeline.sources import MonthlyRaster, raster_error_reason, valid_mask

if TYPE_CHECKING:
    from pipeline.zonal import GridWeights

log = logging.getLogger(__name__)

STREAM_MIN_COVERAGE = 0.5  # zones must use at least this share of the chunk pixels they touch
STREAM_MAX_DECODE = 3.0  # and the window must hold at most this many pixels per pixel they use


@dataclass(frozen=True)
class StreamPlan:
    """Zone weights on one window, laid out for one pass over it per month. Small, picklable."""

    window: Window
    n_zones: int
    run_bounds: np.ndarray  # interleaved start, stop of runs of wholly covered pixels, by start
    run_zone: np.ndarray  # zone of each run
    n_inner: np.ndarray  # per zone: number of wholly covered pixels
    edge_zone: np.ndarray  # partly covered entries: zone, flat pixel in the window, coverage
    edge_pixel: np.ndarray
    edge_coverage: np.ndarray


def _entries(weights: GridWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All entries as (zone, row, column on the grid, coverage)."""
    rows, cols = [], []
    for b in weights.blocks:
        r, c = np.divmod(b.pixel, b.window.width)
        rows.append(r + b.window.row_off)
        cols.append(c + b.window.col_off)
    return (np.concatenate([b.zone for b in weights.blocks]), np.concatenate(rows), np.concatenate(cols),
            np.concatenate([b.coverage for b in weights.blocks]))


def choose_stream(weights: GridWeights) -> tuple[bool, str]:
    """Whether to stream whole windows, and why: from how fully the zones use what would be decoded.

    Coverage: share of the pixels of the touched CHUNK x CHUNK chunks that carry weight
    (scattered sites use a few percent; tiling counties nearly all). Decode: pixels of
    the zones' union window per pixel they use (what one read per month costs).
    """
    if not weights.blocks:
        return False, "no zone touches the grid"
    _, row, col, _ = _entries(weights)
    grid = weights.grid
    r0, c0 = int(row.min()), int(col.min())
    h, w = int(row.max()) - r0 + 1, int(col.max()) - c0 + 1
    window_px = h * w
    mark = np.zeros(window_px, dtype=bool)  # distinct pixels by marking (np.unique sorts: 10x slower)
    mark[(row - r0) * w + (col - c0)] = True
    used = int(np.count_nonzero(mark))
    n_cx = -(-grid.width // CHUNK)
    touched = np.zeros(-(-grid.height // CHUNK) * n_cx, dtype=bool)
    touched[row // CHUNK * n_cx + col // CHUNK] = True
    cy, cx = np.divmod(np.flatnonzero(touched), n_cx)
    chunk_px = int(np.sum((np.minimum((cy + 1) * CHUNK, grid.height) - cy * CHUNK)
                          * (np.minimum((cx + 1) * CHUNK, grid.width) - cx * CHUNK)))
    coverage, decode = used / chunk_px, window_px / used
    stream = coverage >= STREAM_MIN_COVERAGE and decode <= STREAM_MAX_DECODE
    why = (f"zones use {coverage:.0%} of the {cy.size} chunks they touch and their {window_px}-pixel window "
           f"holds {decode:.2f} pixels per pixel used (stream when >= {STREAM_MIN_COVERAGE:.0%} and "
           f"<= {STREAM_MAX_DECODE:g})")
    return stream, why


def plan_stream(weights: GridWeights) -> StreamPlan:
    """Runs of wholly covered pixels and the partly covered edge entries, on the union window."""
    zone, row, col, cov = _entries(weights)
    r0, c0 = int(row.min()), int(col.min())
    window = Window(c0, r0, int(col.max()) - c0 + 1, int(row.max()) - r0 + 1)
    pixel = (row - r0) * window.width + (col - c0)
    inner = cov >= 1.0
    zi, pi = zone[inner], pixel[inner]
    order = np.lexsort((pi, zi))
    zi, pi = zi[order], pi[order]
    new = np.r_[True, (zi[1:] != zi[:-1]) | (pi[1:] != pi[:-1] + 1)] if zi.size else np.zeros(0, bool)
    starts = np.flatnonzero(new)
    stops = np.r_[starts[1:], zi.size]
    run_start, run_len, run_zone = pi[starts], stops - starts, zi[starts]
    by_start = np.argsort(run_start, kind="stable")
    run_start, run_len, run_zone = run_start[by_start], run_len[by_start], run_zone[by_start]
    bounds = np.empty(2 * run_start.size, dtype="int64")
    bounds[0::2], bounds[1::2] = run_start, run_start + run_len
    n = weights.n_zones
    return StreamPlan(window, n, bounds, run_zone.astype("int64"), np.bincount(zi, minlength=n).astype("float64"),
                      zone[~inner].astype("int64"), pixel[~inner], cov[~inner])


def stream_stats(
    rasters: Sequence[MonthlyRaster],
    plan: StreamPlan,
    rules: Sequence[str],
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> np.ndarray:
    """Weighted sums for all zones, for ``rasters`` (months of one grid): array (rule, sum, zone, month).

    The sums of :func:`pipeline.zonal.part_stats`, with its cleaning and validity rules;
    each month's window is read once, reduced to sums per zone and dropped.
    """
    from pipeline.zonal import rule_weights

    n = plan.n_zones
    edge_w = [rule_weights(plan.edge_coverage, rule) for rule in rules]
    acc = np.empty((len(rules), 5, n, len(rasters)))
    for r, w in enumerate(edge_w):
        acc[r, 0] = (plan.n_inner + np.bincount(plan.edge_zone, w, n))[:, None]
        acc[r, 3] = (plan.n_inner + np.bincount(plan.edge_zone, w > 0, n))[:, None]
    size = plan.window.width * plan.window.height
    bufs = [np.zeros(size + 1) for _ in range(3)]  # one past the end: every run's stop is a valid index
    with rasterio.Env(**GDAL_ENV):
        for t, raster in enumerate(rasters):
            rad, aux = _read(raster, plan.window)
            usable = ~np.isnan(rad)
            layer = usable if raster.aux_kind == "none" or aux is None else aux
            valid = valid_mask(layer, raster.aux_kind, min_cf_cvg, bm_quality)
            np.copyto(bufs[0][:-1], valid.ravel())
            np.multiply(np.where(usable, rad, 0.0).ravel(), bufs[0][:-1], out=bufs[1][:-1])
            obs = raster.aux_kind == "cf_cvg"
            if obs:
                np.copyto(bufs[2][:-1], layer.ravel())
            del rad, aux, usable, layer, valid
            for k, buf in zip((1, 2, 4), bufs if obs else bufs[:2], strict=False):
                inner, edge = _sums(buf, plan)
                for r, w in enumerate(edge_w):
                    acc[r, k, :, t] = inner + np.bincount(plan.edge_zone, w * edge, n)
            if not obs:  # observed means valid
                acc[:, 4, :, t] = acc[:, 1, :, t]
    return acc


def _read(raster: MonthlyRaster, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
    """One month's window cleaned as the cube path cleans it (:func:`pipeline.cube.clean`).

    Radiance is read in the file's float32 when nodata compares the same in it (what
    :func:`pipeline.sources.read_window` gives, without its float64 copy of the window).
    """
    try:
        with rasterio.open(raster.radiance) as ds:
            nodata = raster.nodata
            same = nodata is None or np.isnan(nodata) or float(np.float32(nodata)) == nodata
            rad = ds.read(1, window=window, out_dtype="float32" if ds.dtypes[0] == "float32" and same else "float64")
        aux = None
        if raster.aux is not None:
            with rasterio.open(raster.aux) as ds:
                aux = ds.read(1, window=window)
    except RasterioError as e:
        raise SourceError(f"{raster.radiance}: cannot read month {raster.month} ({raster_error_reason(e)}); "
                          "the file may be truncated: delete it and download again") from e
    return clean(rad, aux, raster)


def _sums(flat: np.ndarray, plan: StreamPlan) -> tuple[np.ndarray, np.ndarray]:
    """Per zone, the sum of ``flat`` (the window, one 0 past its end) over its wholly covered pixels;
    and its values at the edge entries."""
    if plan.run_bounds.size:
        runs = np.add.reduceat(flat, plan.run_bounds)[0::2]
        inner = np.bincount(plan.run_zone, runs, plan.n_zones)
    else:
        inner = np.zeros(plan.n_zones)
    return inner, flat[plan.edge_pixel]
