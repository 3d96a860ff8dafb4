"""Zonal, county regime: zones that tile a window, one read of the window per month.

Inputs
    The coverage weights of all zones on one grid (:class:`pipeline.measure.zonal.GridWeights`)
    and that grid's monthly rasters.
Outputs
    The same weighted sums as :func:`pipeline.measure.zonal.part_stats`, array (rule, sum, zone,
    month), for the months given.

Why a second path: the chunked cube (:mod:`pipeline.measure.cube`) pays off for small scattered
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

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.errors import SourceError
from pipeline.measure.cube import CHUNK, GDAL_ENV
from pipeline.measure.weights import GridWeights, rule_weights
from pipeline.read.sources import MonthlyRaster, clean_pixels, raster_error_reason, valid_mask

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


def _blocks(weights: GridWeights):
    """Each block's entries as (zone, row, column on the grid, coverage): one block at a time,
    so planning never holds a second copy of all entries."""
    for b in weights.blocks:
        r, c = np.divmod(b.pixel, b.window.width)
        yield b.zone, r + b.window.row_off, c + b.window.col_off, b.coverage


def _union_window(weights: GridWeights) -> Window:
    """The smallest window holding every entry."""
    r0 = c0 = np.iinfo("int64").max
    r1 = c1 = -1
    for _, row, col, _ in _blocks(weights):
        r0, r1, c0, c1 = (
            min(r0, row.min()),
            max(r1, row.max()),
            min(c0, col.min()),
            max(c1, col.max()),
        )
    return Window(int(c0), int(r0), int(c1 - c0 + 1), int(r1 - r0 + 1))


def choose_stream(weights: GridWeights) -> tuple[bool, str]:
    """Whether to stream whole windows, and why: from how fully the zones use what would be decoded.

    Coverage: share of the pixels of the touched CHUNK x CHUNK chunks that carry weight
    (scattered sites use a few percent; tiling counties nearly all). Decode: pixels of
    the zones' union window per pixel they use (what one read per month costs).
    """
    if not weights.blocks:
        return False, "no zone touches the grid"
    grid, win = weights.grid, _union_window(weights)
    n_cx = -(-grid.width // CHUNK)
    mark = np.zeros(
        win.width * win.height, dtype=bool
    )  # distinct pixels by marking (np.unique sorts: slower)
    touched = np.zeros(-(-grid.height // CHUNK) * n_cx, dtype=bool)
    for _, row, col, _ in _blocks(weights):
        mark[(row - win.row_off) * win.width + (col - win.col_off)] = True
        touched[row // CHUNK * n_cx + col // CHUNK] = True
    used = int(np.count_nonzero(mark))
    cy, cx = np.divmod(np.flatnonzero(touched), n_cx)
    chunk_px = int(
        np.sum(
            (np.minimum((cy + 1) * CHUNK, grid.height) - cy * CHUNK)
            * (np.minimum((cx + 1) * CHUNK, grid.width) - cx * CHUNK)
        )
    )
    coverage, decode = used / chunk_px, mark.size / used
    stream = coverage >= STREAM_MIN_COVERAGE and decode <= STREAM_MAX_DECODE
    why = (
        f"zones use {coverage:.0%} of the {cy.size} chunks they touch and their {mark.size}-pixel window "
        f"holds {decode:.2f} pixels per pixel used (stream when >= {STREAM_MIN_COVERAGE:.0%} and "
        f"<= {STREAM_MAX_DECODE:g})"
    )
    return stream, why


def plan_stream(weights: GridWeights) -> StreamPlan:
    """Runs of wholly covered pixels and the partly covered edge entries, on the union window."""
    window, n = _union_window(weights), weights.n_zones
    runs, edges, n_inner = [], [], np.zeros(n)
    for zone, row, col, cov in _blocks(weights):
        pixel = (row - window.row_off) * window.width + (col - window.col_off)
        inner = cov >= 1.0
        zi, pi = zone[inner], pixel[inner]
        # Runs of consecutive pixels of one zone, in the entries' order (zone by zone, row-major
        # from exactextract); any order is correct, an unsorted one only makes more runs.
        if zi.size:
            starts = np.flatnonzero(np.r_[True, (zi[1:] != zi[:-1]) | (pi[1:] != pi[:-1] + 1)])
            runs.append((pi[starts], pi[np.r_[starts[1:], zi.size] - 1] + 1, zi[starts]))
        edges.append((zone[~inner], pixel[~inner], cov[~inner]))
        n_inner += np.bincount(zi, minlength=n)
    start, stop, run_zone = (
        (np.concatenate(v) for v in zip(*runs, strict=True))
        if runs
        else (np.zeros(0, "int64"),) * 3
    )
    last = stop == window.width * window.height
    if (
        last.any()
    ):  # reduceat cannot stop past the end: the window's last pixel becomes an edge entry
        edges.append((run_zone[last], stop[last] - 1, np.ones(int(last.sum()))))
        n_inner -= np.bincount(run_zone[last], minlength=n)
        stop = np.where(last, stop - 1, stop)
        keep = stop > start
        start, stop, run_zone = start[keep], stop[keep], run_zone[keep]
    by_start = np.argsort(start, kind="stable")  # reduceat then walks the window once
    bounds = np.empty(2 * start.size, dtype="int64")
    bounds[0::2], bounds[1::2] = start[by_start], stop[by_start]
    edge_zone, edge_pixel, edge_cov = (np.concatenate(v) for v in zip(*edges, strict=True))
    return StreamPlan(
        window,
        n,
        bounds,
        run_zone[by_start].astype("int64"),
        n_inner,
        edge_zone.astype("int64"),
        edge_pixel,
        edge_cov,
    )


def stream_stats(
    rasters: Sequence[MonthlyRaster],
    plan: StreamPlan,
    rules: Sequence[str],
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> np.ndarray:
    """Weighted sums for all zones, for ``rasters`` (months of one grid): array (rule, sum, zone, month).

    The sums of :func:`pipeline.measure.zonal.part_stats`, with its cleaning and validity rules;
    each month's window is read once, reduced to sums per zone and dropped.
    """

    n = plan.n_zones
    edge_w = [rule_weights(plan.edge_coverage, rule) for rule in rules]
    acc = np.empty((len(rules), 5, n, len(rasters)))
    for r, w in enumerate(edge_w):
        acc[r, 0] = (plan.n_inner + np.bincount(plan.edge_zone, w, n))[:, None]
        acc[r, 3] = (plan.n_inner + np.bincount(plan.edge_zone, w > 0, n))[:, None]
    with rasterio.Env(**GDAL_ENV):
        for t, raster in enumerate(rasters):
            rad, layer = _read(
                raster, plan.window
            )  # unusable radiance is 0, and unobserved in ``layer``
            kind = raster.aux_kind
            valid = valid_mask(layer, kind, min_cf_cvg, bm_quality)
            _add(acc, 1, t, valid.view(np.uint8).ravel(), plan, edge_w)
            observed = (
                rad if kind == "none" else np.where(valid, rad, 0)
            )  # "none": valid is usable, rad 0 elsewhere
            _add(acc, 2, t, observed.ravel(), plan, edge_w)  # radiance where observed
            if kind == "cf_cvg":  # observation counts
                _add(acc, 4, t, layer.ravel(), plan, edge_w)
            else:  # observed means valid
                acc[:, 4, :, t] = acc[:, 1, :, t]
    return acc


def _add(
    acc: np.ndarray, k: int, t: int, flat: np.ndarray, plan: StreamPlan, edge_w: list[np.ndarray]
) -> None:
    """Sum the window ``flat`` per zone (in float64) into ``acc[:, k, :, t]``, with each rule's weights."""
    if plan.run_bounds.size:
        runs = np.add.reduceat(flat, plan.run_bounds, dtype=np.float64)[0::2]
        inner: np.ndarray = np.bincount(plan.run_zone, runs, plan.n_zones)
    else:
        inner = np.zeros(plan.n_zones)
    edge = flat[plan.edge_pixel].astype(np.float64)
    for r, w in enumerate(edge_w):
        acc[r, k, :, t] = inner + np.bincount(plan.edge_zone, w * edge, plan.n_zones)


def _read(raster: MonthlyRaster, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """One month's window, cleaned by :func:`pipeline.read.sources.clean_pixels`: radiance with
    unusable pixels 0, and the auxiliary layer with them unobserved (or the 0/1 usable mask).

    Radiance is read in the file's float32 when nodata compares the same in it (what
    :func:`pipeline.read.sources.read_window` gives, without its float64 copy of the window).
    """
    try:
        with rasterio.open(raster.radiance) as ds:
            nodata = raster.nodata
            same = nodata is None or np.isnan(nodata) or float(np.float32(nodata)) == nodata
            rad = ds.read(
                1,
                window=window,
                out_dtype="float32" if ds.dtypes[0] == "float32" and same else "float64",
            )
        aux = None
        if raster.aux is not None:
            with rasterio.open(raster.aux) as ds:
                aux = ds.read(1, window=window)
    except RasterioError as e:
        raise SourceError(
            f"{raster.radiance}: cannot read month {raster.month} ({raster_error_reason(e)}); "
            "the file may be truncated: delete it and download again"
        ) from e
    return clean_pixels(rad, aux, raster, fill=0.0)
