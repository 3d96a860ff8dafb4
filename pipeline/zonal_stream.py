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
from rasterio.windows import Window

from pipeline.cube import CHUNK, GDAL_ENV
from pipeline.sources import MonthlyRaster, read_window, valid_mask

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
    used = np.unique(row * grid.width + col).size
    n_cx = -(-grid.width // CHUNK)
    cy, cx = np.divmod(np.unique(row // CHUNK * n_cx + col // CHUNK), n_cx)
    chunk_px = int(np.sum((np.minimum((cy + 1) * CHUNK, grid.height) - cy * CHUNK)
                          * (np.minimum((cx + 1) * CHUNK, grid.width) - cx * CHUNK)))
    window_px = int((row.max() - row.min() + 1) * (col.max() - col.min() + 1))
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

    The sums of :func:`pipeline.zonal.part_stats`; each month's window is read once with
    :func:`pipeline.sources.read_window` (its cleaning and validity rules) and dropped.
    """
    from pipeline.zonal import rule_weights

    n = plan.n_zones
    edge_w = [rule_weights(plan.edge_coverage, rule) for rule in rules]
    acc = np.empty((len(rules), 5, n, len(rasters)))
    for r, w in enumerate(edge_w):
        acc[r, 0] = (plan.n_inner + np.bincount(plan.edge_zone, w, n))[:, None]
        acc[r, 3] = (plan.n_inner + np.bincount(plan.edge_zone, w > 0, n))[:, None]
    with rasterio.Env(**GDAL_ENV):
        for t, raster in enumerate(rasters):
            rad, aux = read_window(raster, plan.window)
            valid = valid_mask(aux, raster.aux_kind, min_cf_cvg, bm_quality)
            obs = aux if raster.aux_kind == "cf_cvg" else valid
            layers = (valid, rad * valid, obs)
            del rad, aux
            for k, layer in zip((1, 2, 4), layers, strict=True):
                if k == 4 and layer is valid:
                    acc[:, 4, :, t] = acc[:, 1, :, t]
                    continue
                inner, edge = _sums(layer, plan)
                for r, w in enumerate(edge_w):
                    acc[r, k, :, t] = inner + np.bincount(plan.edge_zone, w * edge, n)
    return acc


def _sums(layer: np.ndarray, plan: StreamPlan) -> tuple[np.ndarray, np.ndarray]:
    """Per zone, the sum of ``layer`` over its wholly covered pixels; and its values at the edge entries."""
    flat = np.zeros(layer.size + 1)  # one past the end, so every run's stop is a valid index
    flat[:-1] = layer.ravel()
    if plan.run_bounds.size:
        runs = np.add.reduceat(flat, plan.run_bounds)[0::2]
        inner = np.bincount(plan.run_zone, runs, plan.n_zones)
    else:
        inner = np.zeros(plan.n_zones)
    return inner, flat[plan.edge_pixel]
