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
grid). The pixels zones touch are grouped into 64-pixel chunks holding all months
(:mod:`pipeline.cube`), and chunks into parts of bounded memory; each part is one dask
task that reads its chunks (from the study cube when given one, else from the monthly
files, never the whole tile) and applies the sparse weights for all months at once.
Parts are independent, so they run in parallel locally or on a cluster. Zones that
tile a window instead (counties) use nearly every pixel of it: they are streamed, one
read of the window per month and task (:mod:`pipeline.zonal_stream`); the path is chosen
per grid from how fully the zones use the chunks they touch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from rasterio.windows import Window

from pipeline.cube import CHUNK, READ_TILE, CubeRef, load_chunks, open_cube
from pipeline.sources import Grid, MonthlyRaster, valid_mask
from pipeline.zonal_stream import choose_stream, plan_stream, stream_stats

log = logging.getLogger(__name__)

BLOCK = 512  # zones whose pixels start in the same 512x512 block share one read window
TASK_BYTES = 128 * 2**20  # memory a task aims at (all months of its chunks, and the arithmetic)
SPLIT_BYTES = 512 * 2**20  # only past this is a source tile split between tasks (decoded twice)
MIN_TASKS = 8  # split small jobs at least this much, so every core has work
STREAM_MONTHS = 4  # months per task on the streaming path (one window read each, then dropped)
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
    inside: np.ndarray  # per zone: share of its area inside the grid (0 outside, 1 wholly inside)

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

    Zones outside the grid get no entries (their statistics are missing, not zero); a
    zone partly outside records the share inside, so the part that was never observed
    lowers its ``valid_fraction`` instead of vanishing.
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
    blocks = [b for b in blocks if b.zone.size]
    covered = np.zeros(len(zones))
    for b in blocks:
        covered += np.bincount(b.zone, b.coverage, len(zones))
    area_px = shapely.area(geoms.values) / abs(grid.affine.a * grid.affine.e)  # planar, like exactextract
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.clip(np.where(area_px > 0, covered / area_px, 0.0), 0.0, 1.0)
    return GridWeights(grid, len(zones), tuple(blocks), inside)


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
    keep = cov > 1e-9  # floating-point slivers along pixel edges are not touched pixels
    return BlockWeights(window, zone[keep], pixel[keep], cov[keep])


@dataclass(frozen=True)
class Part:
    """Cube chunks read together, and the weight entries inside them sorted by zone."""

    chunks: np.ndarray  # (n, 2) chunk row, chunk column
    zones: np.ndarray  # the zones with entries here, ascending (indices into the zone list)
    starts: np.ndarray  # where each zone's run of entries starts
    slot: np.ndarray  # entry -> row of ``chunks``
    pixel: np.ndarray  # entry -> flat index inside the CHUNK x CHUNK chunk
    coverage: np.ndarray  # entry -> exact covered fraction


def plan_parts(weights: GridWeights, n_months: int, itemsize: int = 10) -> list[Part]:
    """Split the chunks zones touch into tasks of bounded memory, keeping source tiles whole.

    A task holds all months of its chunks, so its size is capped in bytes
    (:data:`TASK_BYTES`, or :data:`SPLIT_BYTES` within one source tile): memory stays
    flat however many months there are.
    """
    if not weights.blocks:
        return []
    rows, cols = [], []
    for b in weights.blocks:
        r, c = np.divmod(b.pixel, b.window.width)
        rows.append(r + b.window.row_off)
        cols.append(c + b.window.col_off)
    row, col = np.concatenate(rows), np.concatenate(cols)
    zone = np.concatenate([b.zone for b in weights.blocks])
    cov = np.concatenate([b.coverage for b in weights.blocks])
    n_cx = -(-weights.grid.width // CHUNK)
    per_tile = READ_TILE // CHUNK
    cy, cx = row // CHUNK, col // CHUNK
    # order chunks by source tile, then chunk, so a tile's chunks land in one task
    tile_key = ((cy // per_tile) * (n_cx // per_tile + 1) + cx // per_tile) * (per_tile * per_tile) \
        + (cy % per_tile) * per_tile + cx % per_tile
    chunk_id = cy * n_cx + cx
    uniq, first, inverse = np.unique(tile_key, return_index=True, return_inverse=True)
    chunk_of_key = chunk_id[first]
    tile_of_key = uniq // (per_tile * per_tile)
    entries_per = np.bincount(inverse, minlength=uniq.size)
    cost = CHUNK * CHUNK * n_months * itemsize + entries_per * n_months * 48
    budget = min(TASK_BYTES, max(int(cost.sum() // MIN_TASKS), 1))
    groups, current, used = [], [], 0
    for k in range(uniq.size):
        new_tile = k == 0 or tile_of_key[k] != tile_of_key[k - 1]
        if current and used + cost[k] > budget and (new_tile or used > SPLIT_BYTES):
            groups.append(current)
            current, used = [], 0
        current.append(k)
        used += int(cost[k])
    groups.append(current)
    parts = []
    for g in groups:
        g = np.asarray(g)
        sel = np.flatnonzero(np.isin(inverse, g))
        local = np.searchsorted(g, inverse[sel])
        order = np.lexsort((col[sel], row[sel], zone[sel]))
        sel, local = sel[order], local[order]
        z = zone[sel]
        starts = np.flatnonzero(np.r_[True, z[1:] != z[:-1]])
        ids = chunk_of_key[g]
        parts.append(Part(np.stack([ids // n_cx, ids % n_cx], axis=1), z[starts], starts, local,
                          (row[sel] % CHUNK) * CHUNK + col[sel] % CHUNK, cov[sel]))
    return parts


def part_stats(
    rasters: Sequence[MonthlyRaster],
    cube: CubeRef,
    part: Part,
    rules: Sequence[str],
    min_cf_cvg: int,
    bm_quality: tuple[int, ...],
) -> np.ndarray:
    """Weighted sums for the zones of one part, all months: array (rule, sum, zone, month).

    Sums: total weight, observed weight, weight x radiance over observed pixels, pixel
    count, weight x observation count. Invalid pixels (no cloud-free observation, bad
    quality, nodata) carry no weight.
    """
    rad, aux = load_chunks(rasters, part.chunks, cube)
    n, t = rad.shape[:2]
    values = rad.reshape(n, t, -1)[part.slot, :, part.pixel].astype("float64")  # (entry, month)
    usable = ~np.isnan(values)
    values[~usable] = 0.0
    raw = aux.reshape(n, t, -1)[part.slot, :, part.pixel] if aux is not None else None
    del rad, aux
    valid = np.zeros(values.shape, dtype=bool)
    obs = np.zeros(values.shape)
    for kind in {r.aux_kind for r in rasters}:
        cols = [i for i, r in enumerate(rasters) if r.aux_kind == kind]
        layer = usable[:, cols] if kind == "none" or raw is None else raw[:, cols]
        valid[:, cols] = valid_mask(layer, kind, min_cf_cvg, bm_quality)
        obs[:, cols] = layer if kind == "cf_cvg" else valid[:, cols]
    weighted = values * valid
    acc = np.empty((len(rules), 5, part.zones.size, t))
    for r, rule in enumerate(rules):
        w = rule_weights(part.coverage, rule)
        acc[r, 0] = np.add.reduceat(w, part.starts)[:, None]
        acc[r, 1] = np.add.reduceat(w[:, None] * valid, part.starts, axis=0)
        acc[r, 2] = np.add.reduceat(w[:, None] * weighted, part.starts, axis=0)
        acc[r, 3] = np.add.reduceat((w > 0) * 1.0, part.starts)[:, None]
        acc[r, 4] = np.add.reduceat(w[:, None] * obs, part.starts, axis=0)
    return acc


def finish_stats(acc: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Statistics from summed weights: array (month, rule, zone, stat) in :data:`STATS` order.

    A zone's ``valid_fraction`` says how much of its weight was observed, counting any
    part outside the grid (``inside``: share of each zone within it) as unobserved; zones
    without weight (outside the grid) get missing means, not zeros.
    """
    total, vw, wsum, npix, wobs = acc.transpose(1, 0, 2, 3)  # each (rule, zone, month)
    share = np.ones(total.shape[1]) if inside is None else inside
    share = share[None, :, None]
    out = np.empty((*total.shape, len(STATS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(vw > 0, wsum / vw, np.nan)
        out[..., 0] = mean
        out[..., 1] = mean * total / share  # sum of lights over the whole zone, unobserved pixels at the mean
        out[..., 2] = np.where(total > 0, vw / total * share, 0.0)
        out[..., 3] = total
        out[..., 4] = npix
        out[..., 5] = np.where(total > 0, wobs / total, np.nan)
    return out.transpose(2, 0, 1, 3)


def zone_month_table(
    rasters: Sequence[MonthlyRaster],
    zones: gpd.GeoDataFrame,
    rules: Sequence[str] = ("exact",),
    min_cf_cvg: int = 3,
    bm_quality: tuple[int, ...] = (0,),
    progress: bool = True,
    cube_dir: Path | str | None = None,
) -> pd.DataFrame:
    """Statistics for every zone, month and pixel rule; computed with dask, one task per part.

    With ``cube_dir``, pixels come from the study cube there (:mod:`pipeline.cube`), filled
    on first use and reused while the inputs are unchanged; without, from the monthly files.
    The scheduler is dask's current one: threads by default (GDAL releases the GIL), or
    a ``distributed.Client`` the caller has made current. Zones that tile a window
    (counties) take the streaming path of :mod:`pipeline.zonal_stream` instead, chosen per
    grid from how fully they use the pixels that would be decoded; it needs no cube.
    """
    rules = tuple(rules)
    by_grid: dict[Grid, list[int]] = {}
    for i, r in enumerate(rasters):
        by_grid.setdefault(r.grid, []).append(i)
    tasks, owners, inside = [], [], []
    run = uuid.uuid4().hex
    for g, (grid, idx) in enumerate(by_grid.items()):
        group = [rasters[i] for i in idx]
        weights = coverage_weights(zones.geometry, grid)
        inside.append(weights.inside)
        stream, why = choose_stream(weights)
        log.debug("grid %s: %s path, %s", grid.describe(), "streaming" if stream else "chunked", why)
        if stream:
            plan = dask.delayed(plan_stream(weights), traverse=False)
            del weights  # the plan holds what the months need; the entries would stay for the whole run
            for k in range(0, len(group), STREAM_MONTHS):
                months = group[k:k + STREAM_MONTHS]
                tasks.append(dask.delayed(stream_stats)(dask.delayed(months, traverse=False), plan, rules,
                                                        min_cf_cvg, bm_quality,
                                                        dask_key_name=f"stream_stats-{run}-{g}-{k}"))
                owners.append((g, slice(None), slice(k, k + len(months))))
            continue
        cube = open_cube(cube_dir, group)
        # shared arguments as one graph node each: dask would otherwise walk every raster per task
        shared = [dask.delayed(v, traverse=False) for v in (group, cube)]
        for k, part in enumerate(plan_parts(weights, len(group), np.dtype(cube.rad_dtype).itemsize + 2)):
            tasks.append(dask.delayed(part_stats)(*shared, dask.delayed(part, traverse=False), rules, min_cf_cvg,
                                                  bm_quality, dask_key_name=f"part_stats-{run}-{g}-{k}"))
            owners.append((g, part.zones, slice(None)))
    results = compute_with_progress(tasks, "extracting", progress)
    nz = len(zones)
    acc = [np.zeros((len(rules), 5, nz, len(idx))) for idx in by_grid.values()]
    for (g, zone_idx, month_idx), res in zip(owners, results, strict=True):
        acc[g][:, :, zone_idx, month_idx] += res
    out = np.empty((len(rasters), len(rules), nz, len(STATS)))
    for a, share, idx in zip(acc, inside, by_grid.values(), strict=True):
        out[idx] = finish_stats(a, share)
    return _to_frame(list(out), [r.month for r in rasters], list(zones["zone"]), list(rules))


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
        for _ in tqdm(as_completed(futures), total=len(futures), desc=label, unit="part",
                      disable=not progress, leave=False):
            pass
        return client.gather(futures)
    from dask.callbacks import Callback

    bar = tqdm(total=len(tasks), desc=label, unit="part", disable=not progress, leave=False)

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(key, tuple) or str(key).startswith(("part_stats", "stream_stats")):
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
