"""Cube: the monthly rasters re-laid as time-contiguous spatial chunks, built once.

Inputs
    The monthly rasters of one grid (:class:`~pipeline.sources.MonthlyRaster`) and the
    spatial chunks that zones touch (chunk row, chunk column on a ``CHUNK`` pixel grid).
Outputs
    Cleaned radiance (float, clipped at 0, 0 where unusable) and auxiliary layer (cf_cvg
    counts, quality codes, or 0/1) for those chunks, shaped (chunk, month, CHUNK, CHUNK),
    exactly what :func:`pipeline.sources.read_window` gives for the same pixels.

Why: sites are small and scattered, so reading monthly tiles decodes far more than the
sites use, once per month and per layer. The cube stores each 64x64-pixel chunk with
all months together, so a site's whole history is one or a few small decodes.

Why Zarr rather than a COG: one file per chunk means dask workers (threads, processes,
or cluster nodes on a shared or object store) write disjoint chunks without locks, the
cube can be filled lazily with only the chunks sites touch (unwritten chunks cost
nothing, so the cube spans the whole source grid yet holds only what sites need, and
new sites add chunks without rebuilding), and a GeoTIFF would need one band per month,
fixed at creation, decoded together per tile anyway. Blosc-lz4 with byte shuffle
decodes at memory speed, several times faster than the sources' deflate.

Checksummed: the cube's folder name is a hash of the inputs' names, sizes and
modification times, the grid and this layout, so changed inputs give a new cube and an
unchanged set reuses the old. A chunk counts as built only once its marker file exists
(written after its data), so an interrupted build is resumed, never trusted half-done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.errors import SourceError
from pipeline.sources import Grid, MonthlyRaster, clean_pixels, raster_error_reason

log = logging.getLogger(__name__)

CHUNK = 64  # pixels per chunk side: a site (plus ring) spans one to four chunks
READ_TILE = 256  # chunks in the same 256-px source tile are read with one window per month
LAYOUT = 1  # bump when the on-disk layout changes: old cubes are then ignored
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}  # no directory listing per open


@dataclass(frozen=True)
class CubeRef:
    """Where a grid's cube lives (``path`` None: no cube, read the monthly files each time).

    Small and picklable, so it travels to cluster workers.
    """

    path: str | None
    rad_dtype: str
    aux_dtype: str | None  # None: no month has an auxiliary layer
    n_months: int
    height: int
    width: int


def cube_key(rasters: Sequence[MonthlyRaster]) -> str:
    """Hash of the inputs (names, sizes, mtimes, how to read them), the grid and the layout."""
    grid = rasters[0].grid
    items = []
    for r in rasters:
        files = [r.radiance, *([r.aux] if r.aux is not None else [])]
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        items.append([r.month, r.aux_kind, r.nodata, stats])
    doc = {"layout": LAYOUT, "chunk": CHUNK, "grid": [grid.crs_wkt, list(grid.transform), grid.width,
                                                      grid.height], "inputs": items}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def open_cube(cache_dir: Path | str | None, rasters: Sequence[MonthlyRaster]) -> CubeRef:
    """The cube for these rasters (all on one grid) under ``cache_dir``, created empty if new.

    ``cache_dir`` None gives a reference without storage: chunks are read from the files.
    """
    import zarr
    from zarr.codecs import BloscCodec

    grid = _one_grid(rasters)
    rad_dtype, aux_dtype = _dtypes(rasters)
    if cache_dir is None:
        return CubeRef(None, rad_dtype, aux_dtype, len(rasters), grid.height, grid.width)
    key = cube_key(rasters)
    path = Path(cache_dir) / f"cube-{key[:20]}.zarr"
    ref = CubeRef(str(path), rad_dtype, aux_dtype, len(rasters), grid.height, grid.width)
    if (path / "zarr.json").exists():
        return ref
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cube-", dir=path.parent))
    try:
        root = zarr.open_group(tmp, mode="w")
        codec = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        shape, chunks = (len(rasters), grid.height, grid.width), (len(rasters), CHUNK, CHUNK)
        layers = [("radiance", rad_dtype), *([("aux", aux_dtype)] if aux_dtype else [])]
        for name, dtype in layers:
            root.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                              compressors=codec, config={"write_empty_chunks": True})
        root.attrs.update({"key": key, "layout": LAYOUT, "chunk": CHUNK, "months": [r.month for r in rasters],
                           "aux_kinds": [r.aux_kind for r in rasters],
                           "inputs": [r.radiance.name for r in rasters], "grid": grid.describe()})
        (tmp / "filled").mkdir()
        os.replace(tmp, path)
    except OSError:
        if not (path / "zarr.json").exists():  # lost a race to another process: theirs is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("study cube %s: %d months on %s", path.name, len(rasters), grid.describe())
    return ref


def load_chunks(rasters: Sequence[MonthlyRaster], chunks: np.ndarray,
                cube: CubeRef) -> tuple[np.ndarray, np.ndarray | None]:
    """Radiance and aux of ``chunks`` (array of chunk row, column), all months.

    Radiance is cleaned as :func:`pipeline.sources.read_window` does, except that
    unusable pixels (non-finite, nodata) are NaN rather than 0, so files without an
    auxiliary layer need none stored. Aux is the cleaned auxiliary layer, or None when
    no month has one. Chunks already in the cube are decoded from it; the rest are read
    from the monthly files (one window per month per source tile) and, with a cube,
    stored for next time.
    """
    grid = _one_grid(rasters)
    n, t = len(chunks), len(rasters)
    rad = np.zeros((n, t, CHUNK, CHUNK), dtype=cube.rad_dtype)
    aux = np.zeros((n, t, CHUNK, CHUNK), dtype=cube.aux_dtype) if cube.aux_dtype else None
    if n == 0:
        return rad, aux
    if cube.path is None:
        _read_sources(rasters, grid, chunks, np.arange(n), rad, aux)
        return rad, aux
    import zarr

    root = zarr.open_group(cube.path, mode="r+")
    layers = [(root["radiance"], rad), *([(root["aux"], aux)] if aux is not None else [])]
    filled_dir = Path(cube.path) / "filled"
    have = np.array([(filled_dir / f"{cy}_{cx}").exists() for cy, cx in chunks])
    missing = np.flatnonzero(~have)
    if missing.size:
        _read_sources(rasters, grid, chunks[missing], missing, rad, aux)
    for members, ys, xs in _runs(chunks, have, grid):
        if have[members[0]]:
            for array, buf in layers:
                _split(array[:, ys, xs], buf, members)
        else:
            for array, buf in layers:
                array[:, ys, xs] = _join(buf, members, ys.stop - ys.start, xs.stop - xs.start)
            for k in members:
                _touch(filled_dir / f"{chunks[k, 0]}_{chunks[k, 1]}")
    return rad, aux


def _runs(chunks: np.ndarray, have: np.ndarray, grid: Grid) -> list[tuple[list[int], slice, slice]]:
    """Chunks side by side in a row, all built or all not: one zarr call each (calls cost ~ms)."""
    order = np.lexsort((chunks[:, 1], chunks[:, 0]))
    runs: list[list[int]] = []
    for k in order:
        last = runs[-1][-1] if runs else None
        if (last is not None and chunks[k, 0] == chunks[last, 0] and chunks[k, 1] == chunks[last, 1] + 1
                and have[k] == have[last]):
            runs[-1].append(int(k))
        else:
            runs.append([int(k)])
    out = []
    for members in runs:
        cy, cx0, cx1 = int(chunks[members[0], 0]), int(chunks[members[0], 1]), int(chunks[members[-1], 1])
        out.append((members, slice(cy * CHUNK, min((cy + 1) * CHUNK, grid.height)),
                    slice(cx0 * CHUNK, min((cx1 + 1) * CHUNK, grid.width))))
    return out


def _split(block: np.ndarray, buf: np.ndarray, members: list[int]) -> None:
    h = block.shape[1]
    for i, k in enumerate(members):
        part = block[:, :, i * CHUNK:(i + 1) * CHUNK]
        buf[k, :, :h, :part.shape[2]] = part


def _join(buf: np.ndarray, members: list[int], h: int, w: int) -> np.ndarray:
    return np.concatenate([buf[k] for k in members], axis=2)[:, :h, :w]


def _read_sources(rasters: Sequence[MonthlyRaster], grid: Grid, chunks: np.ndarray, slots: np.ndarray,
                  rad: np.ndarray, aux: np.ndarray | None) -> None:
    """Fill ``rad[slots[i]]``/``aux[slots[i]]`` with chunk ``chunks[i]`` from the monthly files."""
    per_tile = READ_TILE // CHUNK
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (cy, cx) in enumerate(chunks):
        groups.setdefault((int(cy) // per_tile, int(cx) // per_tile), []).append(i)
    windows = []
    for members in groups.values():
        cys, cxs = chunks[members, 0], chunks[members, 1]
        r0, c0 = int(cys.min()) * CHUNK, int(cxs.min()) * CHUNK
        r1 = min((int(cys.max()) + 1) * CHUNK, grid.height)
        c1 = min((int(cxs.max()) + 1) * CHUNK, grid.width)
        windows.append((Window(c0, r0, c1 - c0, r1 - r0), members))
    with rasterio.Env(**GDAL_ENV):
        for t, r in enumerate(rasters):
            try:
                with rasterio.open(r.radiance) as rds, (rasterio.open(r.aux) if r.aux else _NoAux()) as ads:
                    for window, members in windows:
                        values = rds.read(1, window=window, out_dtype=_read_dtype(r, rad.dtype))
                        extra = ads.read(1, window=window) if r.aux else None
                        values, extra = clean(values, extra, r)
                        for i in members:
                            y = int(chunks[i, 0]) * CHUNK - window.row_off
                            x = int(chunks[i, 1]) * CHUNK - window.col_off
                            h, w = min(CHUNK, window.height - y), min(CHUNK, window.width - x)
                            rad[slots[i], t, :h, :w] = values[y:y + h, x:x + w]
                            if aux is not None and extra is not None:
                                aux[slots[i], t, :h, :w] = extra[y:y + h, x:x + w]
            except RasterioError as e:
                raise SourceError(f"{r.radiance}: cannot read month {r.month} ({raster_error_reason(e)}); "
                                  "the file may be truncated: delete it and download again") from e


def _read_dtype(raster: MonthlyRaster, store: np.dtype) -> str:
    """Read in the storage type when that changes nothing: nodata compares the same in it."""
    nodata = raster.nodata
    if nodata is None or np.isnan(nodata) or float(np.asarray(nodata, dtype=store)) == nodata:
        return store.name
    return "float64"


def clean(rad: np.ndarray, aux: np.ndarray | None, raster: MonthlyRaster) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pipeline.sources.clean_pixels` with unusable radiance as NaN (the cube's convention)."""
    rad, validity = clean_pixels(rad, aux, raster, fill=np.nan)
    return rad, validity if aux is not None else None


class _NoAux:
    def __enter__(self) -> _NoAux:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _touch(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.touch()
    os.replace(tmp, path)


def _one_grid(rasters: Sequence[MonthlyRaster]) -> Grid:
    grids = {r.grid for r in rasters}
    if len(grids) != 1:
        raise ValueError(f"a cube holds one grid; got {len(grids)} grids")
    return next(iter(grids))


def _dtypes(rasters: Sequence[MonthlyRaster]) -> tuple[str, str | None]:
    """Storage types that hold the cleaned values exactly (float32 sources stay float32).

    Aux type None: no month has an auxiliary layer, so none is stored.
    """
    rad_types, aux_types = [np.dtype("float32")], []
    with rasterio.Env(**GDAL_ENV):
        for r in rasters:
            with rasterio.open(r.radiance) as ds:
                rad_types.append(np.dtype(ds.dtypes[0]))
            if r.aux is not None:
                with rasterio.open(r.aux) as ds:
                    aux_types.append(np.dtype(ds.dtypes[0]))
    rad_t = np.result_type(*rad_types)
    if rad_t.kind != "f":
        rad_t = np.dtype("float64")
    aux_t = np.result_type(np.uint8, *aux_types).name if aux_types else None
    return rad_t.name, aux_t
