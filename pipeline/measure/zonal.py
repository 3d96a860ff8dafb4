"""Zonal: the zone-by-month table, from exact coverage weights computed once per grid.

Inputs
    Zones (site polygons, their background rings, radius variants) as a GeoDataFrame
    with a ``zone`` column; a list of :class:`~pipeline.read.sources.MonthlyRaster`.
Outputs
    A DataFrame, one row per zone, month and pixel rule: ``zone``, ``month``,
    ``pixel_rule``, ``mean_radiance``, ``sum_radiance``, ``valid_fraction``,
    ``weight``, ``n_pixels``, ``mean_obs``.

Approach: the sites are smaller than a VIIRS pixel, so every statistic is weighted by
the exact fraction of each pixel a polygon covers (exactextract computes them, once per
grid). The pixels zones touch are grouped into 64-pixel chunks holding all months
(:mod:`pipeline.measure.cube`), and chunks into parts of bounded memory; each part is one dask
task that reads its chunks (from the study cube when given one, else from the monthly
files, never the whole tile) and applies the sparse weights for all months at once.
Parts are independent, so they run in parallel locally or on a cluster. Zones that
tile a window instead (counties) use nearly every pixel of it: they are streamed, one
read of the window per month and task (:mod:`pipeline.measure.zonal_stream`); the path is chosen
per grid from how fully the zones use the chunks they touch.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.threaded
import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.measure.cube import CHUNK, READ_TILE, CubeRef, load_chunks, open_cube
from pipeline.measure.weights import GridWeights, coverage_weights, rule_weights
from pipeline.measure.zonal_stream import choose_stream, plan_stream, stream_stats
from pipeline.read.sources import Grid, MonthlyRaster, valid_mask

log = logging.getLogger(__name__)

TASK_BYTES = 128 * 2**20  # memory a task aims at (all months of its chunks, and the arithmetic)
SPLIT_BYTES = 512 * 2**20  # only past this is a source tile split between tasks (decoded twice)
STREAM_MONTHS = 4  # months per task on the streaming path (one window read each, then dropped)
MIN_TASKS = (
    8  # parts a small job is split into (fixed: the same answers, to the bit, on any machine)
)
STATS = ("mean_radiance", "sum_radiance", "valid_fraction", "weight", "n_pixels", "mean_obs")


@dataclass(frozen=True)
class Part:
    """Cube chunks read together, and the weight entries inside them sorted by zone."""

    chunks: np.ndarray  # (n, 2) chunk row, chunk column
    zones: np.ndarray  # the zones with entries here, ascending (indices into the zone list)
    starts: np.ndarray  # where each zone's run of entries starts
    slot: np.ndarray  # entry -> row of ``chunks``
    pixel: np.ndarray  # entry -> flat index inside the CHUNK x CHUNK chunk
    coverage: np.ndarray  # entry -> exact covered fraction


def plan_parts(
    weights: GridWeights, n_months: int, itemsize: int = 10, n_tasks: int = MIN_TASKS
) -> list[Part]:
    """Split the chunks zones touch into tasks of bounded memory, keeping source tiles whole.

    A task holds all months of its chunks, so its size is capped in bytes
    (:data:`TASK_BYTES`, or :data:`SPLIT_BYTES` within one source tile): memory stays
    flat however many months there are. Small jobs are split into about ``n_tasks``
    parts so that every thread has work. The split never depends on the machine: a zone
    whose chunks fall in two parts is summed per part, so another split would change the
    order of additions, and answers would differ in their last bits between a laptop and
    a cluster.
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
    tile_key = (
        ((cy // per_tile) * (n_cx // per_tile + 1) + cx // per_tile) * (per_tile * per_tile)
        + (cy % per_tile) * per_tile
        + cx % per_tile
    )
    chunk_id = cy * n_cx + cx
    uniq, first, inverse = np.unique(tile_key, return_index=True, return_inverse=True)
    chunk_of_key = chunk_id[first]
    tile_of_key = uniq // (per_tile * per_tile)
    entries_per = np.bincount(inverse, minlength=uniq.size)
    cost = CHUNK * CHUNK * n_months * itemsize + entries_per * n_months * 48
    budget = min(TASK_BYTES, max(int(cost.sum() // n_tasks), 1))
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for k in range(uniq.size):
        new_tile = k == 0 or tile_of_key[k] != tile_of_key[k - 1]
        if current and used + cost[k] > budget and (new_tile or used > SPLIT_BYTES):
            groups.append(current)
            current, used = [], 0
        current.append(k)
        used += int(cost[k])
    groups.append(current)
    parts = []
    for members in groups:
        g = np.asarray(members)
        sel = np.flatnonzero(np.isin(inverse, g))
        local = np.searchsorted(g, inverse[sel])
        order = np.lexsort((col[sel], row[sel], zone[sel]))
        sel, local = sel[order], local[order]
        z = zone[sel]
        starts = np.flatnonzero(np.r_[True, z[1:] != z[:-1]])
        ids = chunk_of_key[g]
        parts.append(
            Part(
                np.stack([ids // n_cx, ids % n_cx], axis=1),
                z[starts],
                starts,
                local,
                (row[sel] % CHUNK) * CHUNK + col[sel] % CHUNK,
                cov[sel],
            )
        )
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
        out[..., 1] = (
            mean * total / share
        )  # sum of lights over the whole zone, unobserved pixels at the mean
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

    With ``cube_dir``, pixels come from the study cube there (:mod:`pipeline.measure.cube`), filled
    on first use and reused while the inputs are unchanged; without, from the monthly files.
    The scheduler is dask's current one: threads by default (GDAL releases the GIL), or
    a ``distributed.Client`` the caller has made current. Zones that tile a window
    (counties) take the streaming path of :mod:`pipeline.measure.zonal_stream` instead, chosen per
    grid from how fully they use the pixels that would be decoded; it needs no cube.
    """
    rules = tuple(rules)
    by_grid: dict[Grid, list[int]] = {}
    for i, r in enumerate(rasters):
        by_grid.setdefault(r.grid, []).append(i)
    tasks: list[Any] = []
    owners: list[
        tuple[int, Any, slice]
    ] = []  # (grid, zone rows or all, month columns) of each task
    inside: list[Any] = []
    run = uuid.uuid4().hex
    for g, (grid, idx) in enumerate(by_grid.items()):
        group = [rasters[i] for i in idx]
        weights = coverage_weights(zones.geometry, grid, group[0].radiance)
        inside.append(weights.inside)
        stream, why = choose_stream(weights)
        log.debug(
            "grid %s: %s path, %s", grid.describe(), "streaming" if stream else "chunked", why
        )
        if stream:
            plan = dask.delayed(plan_stream(weights), traverse=False)
            del (
                weights
            )  # the plan holds what the months need; the entries would stay for the whole run
            for k in range(0, len(group), STREAM_MONTHS):
                months = group[k : k + STREAM_MONTHS]
                tasks.append(
                    dask.delayed(stream_stats)(
                        dask.delayed(months, traverse=False),
                        plan,
                        rules,
                        min_cf_cvg,
                        bm_quality,
                        dask_key_name=f"stream_stats-{run}-{g}-{k}",
                    )
                )
                owners.append((g, slice(None), slice(k, k + len(months))))
            continue
        cube = open_cube(cube_dir, group)
        # shared arguments as one graph node each: dask would otherwise walk every raster per task
        shared = [dask.delayed(v, traverse=False) for v in (group, cube)]
        parts = plan_parts(weights, len(group), np.dtype(cube.rad_dtype).itemsize + 2)
        for k, part in enumerate(parts):
            tasks.append(
                dask.delayed(part_stats)(
                    *shared,
                    dask.delayed(part, traverse=False),
                    rules,
                    min_cf_cvg,
                    bm_quality,
                    dask_key_name=f"part_stats-{run}-{g}-{k}",
                )
            )
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
    client = _client()
    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        for _ in _bar(progress, as_completed(futures), total=len(futures), desc=label, unit="part"):
            pass
        return client.gather(futures)
    from dask.callbacks import Callback

    bar = _bar(progress, total=len(tasks), desc=label, unit="part")

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(key, tuple) or str(key).startswith(("part_stats", "stream_stats")):
                bar.update(1)

    with _Bar():
        # the threaded scheduler as a function: named "threads", dask would import distributed (0.2 s) to look for a client
        results = dask.compute(*tasks, scheduler=dask.threaded.get)
    bar.close()
    return list(results)


def _bar(progress: bool, iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar (``tqdm.auto``: a widget in notebooks), or when none is shown a silent stand-in,
    so a run without a bar never imports tqdm (asyncio and importlib.metadata come with it)."""
    if progress:
        from tqdm.auto import tqdm

        return tqdm(iterable, leave=False, **kwargs)
    return _NoBar(iterable)


class _NoBar:
    """What :func:`_bar` gives without a bar: iterates like ``tqdm(disable=True)``, counts nothing."""

    def __init__(self, iterable: Any = None):
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _client():
    """The current ``distributed`` client, or None. A client exists only once ``distributed`` has been
    imported, so a local run never imports it (0.17 s on every run otherwise)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def _to_frame(
    results: list[np.ndarray], months: list[str], zones: list[str], rules: list[str]
) -> pd.DataFrame:
    if not results:
        return pd.DataFrame(columns=["zone", "month", "pixel_rule", *STATS])
    arr = np.stack(results)  # month, rule, zone, stat
    nm, nr, nz, _ = arr.shape
    idx = pd.MultiIndex.from_product([months, rules, zones], names=["month", "pixel_rule", "zone"])
    df = pd.DataFrame(
        arr.reshape(nm * nr * nz, len(STATS)), index=idx, columns=list(STATS)
    ).reset_index()
    df["n_pixels"] = df["n_pixels"].astype("int64")
    return df[["zone", "month", "pixel_rule", *STATS]]
