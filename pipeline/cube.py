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
Each stored chunk ends with its CRC-32C (zarr's ``crc32c`` codec, after blosc), checked
on every read before blosc sees the bytes: a chunk damaged on disk (bit flips, a cut-off
copy) is named in a warning and refilled from the monthly files, never read as data.

Concurrent writers (several runs on one cache, dask workers in other processes): a chunk
is filled only by the writer holding its lock file (``flock``, released by the kernel if
the writer dies); others fill the chunks they could lock, then wait for the rest and read
them. Zarr writes each chunk file through a temporary name and a rename, so a reader
never sees half a chunk. :func:`prune_cubes` removes cubes whose inputs are gone.

Longer than most modules because filling, locking, checking and repairing chunks must
stay together: a chunk's lifecycle split over files would hide the invariants between them.
"""

from __future__ import annotations

import errno
import fcntl
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
from pipeline.outputs import atomic_write
from pipeline.sources import Grid, MonthlyRaster, clean_pixels, raster_error_reason

log = logging.getLogger(__name__)

CHUNK = 64  # pixels per chunk side: a site (plus ring) spans one to four chunks
READ_TILE = 256  # chunks in the same 256-px source tile are read with one window per month
LAYOUT = 2  # 2: crc32c after blosc, input paths in attrs. Bump when the on-disk layout changes: old cubes are then ignored
TMP_PREFIX = ".cube-"  # a cube being created: .cube-<pid>-<random>
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
    A cube whose metadata cannot be read is set aside (with a warning) and built anew.
    """
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec

    grid = _one_grid(rasters)
    rad_dtype, aux_dtype = _dtypes(rasters)
    if cache_dir is None:
        return CubeRef(None, rad_dtype, aux_dtype, len(rasters), grid.height, grid.width)
    key = cube_key(rasters)
    path = Path(cache_dir) / f"cube-{key[:20]}.zarr"
    ref = CubeRef(str(path), rad_dtype, aux_dtype, len(rasters), grid.height, grid.width)
    if (path / "zarr.json").exists():
        if _readable(path, key):
            return ref
        log.warning("%s: cube metadata is damaged; building the cube again from the monthly files", path)
        _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=path.parent))
    try:
        root = zarr.open_group(tmp, mode="w")
        codecs = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]  # crc of the stored bytes
        shape, chunks = (len(rasters), grid.height, grid.width), (len(rasters), CHUNK, CHUNK)
        layers = [("radiance", rad_dtype), *([("aux", aux_dtype)] if aux_dtype else [])]
        for name, dtype in layers:
            root.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                              compressors=codecs, config={"write_empty_chunks": True})
        root.attrs.update({"key": key, "layout": LAYOUT, "chunk": CHUNK, "months": [r.month for r in rasters],
                           "aux_kinds": [r.aux_kind for r in rasters],
                           "inputs": [r.radiance.name for r in rasters], "sources": _sources(rasters),
                           "grid": grid.describe()})
        (tmp / "filled").mkdir()
        (tmp / "locks").mkdir()
        os.replace(tmp, path)
    except OSError:
        if not (path / "zarr.json").exists():  # lost a race to another process: theirs is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("study cube %s: %d months on %s", path.name, len(rasters), grid.describe())
    return ref


def _sources(rasters: Sequence[MonthlyRaster]) -> list[list]:
    """Every input file as [absolute path, size, mtime_ns]: what :func:`prune_cubes` checks."""
    files = [p for r in rasters for p in (r.radiance, *([r.aux] if r.aux is not None else []))]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _readable(path: Path, key: str) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
        return meta["attributes"]["key"] == key and all((path / n / "zarr.json").is_file() for n in ("radiance",))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_chunks(rasters: Sequence[MonthlyRaster], chunks: np.ndarray,
                cube: CubeRef) -> tuple[np.ndarray, np.ndarray | None]:
    """Radiance and aux of ``chunks`` (array of chunk row, column), all months.

    Radiance is cleaned as :func:`pipeline.sources.read_window` does, except that
    unusable pixels (non-finite, nodata) are NaN rather than 0, so files without an
    auxiliary layer need none stored. Aux is the cleaned auxiliary layer, or None when
    no month has one. Chunks already in the cube are decoded from it (a chunk failing its
    checksum is refilled); the rest are read from the monthly files (one window per month
    per source tile) and, with a cube, stored for next time by whichever writer locks them.
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
    store = _Store(Path(cube.path), [(root["radiance"], rad), *([(root["aux"], aux)] if aux is not None else [])],
                   chunks, grid)
    have = np.array([store.built(k) for k in range(n)])
    bad: set[int] = set()
    for members, ys, xs in _runs(chunks, have, grid):
        if have[members[0]]:
            try:
                for array, buf in store.layers:
                    _split(array[:, ys, xs], buf, members)
            except Exception:  # a damaged chunk in the run: find which, one by one
                bad.update(k for k in members if not store.read(k))
    need = sorted(set(np.flatnonzero(~have).tolist()) | bad, key=lambda k: (chunks[k, 0], chunks[k, 1]))
    if need:
        _fill(rasters, grid, store, need, bad, rad, aux)
    return rad, aux


class _Store:
    """One cube's chunks for one call: markers, lock files, single-chunk reads and writes."""

    def __init__(self, path: Path, layers: list, chunks: np.ndarray, grid: Grid):
        self.path, self.layers, self.chunks, self.grid = path, layers, chunks, grid

    def name(self, k: int) -> str:
        return f"{self.chunks[k, 0]}_{self.chunks[k, 1]}"

    def marker(self, k: int) -> Path:
        return self.path / "filled" / self.name(k)

    def built(self, k: int, quiet: bool = False) -> bool:
        """Marker present and every layer's chunk file too (a half-copied cube may lack some)."""
        if not self.marker(k).exists():
            return False
        cy, cx = self.chunks[k]
        lost = [a.basename for a, _ in self.layers if not (self.path / a.basename / "c" / "0" / str(cy) / str(cx)).exists()]
        if lost and not quiet:
            log.warning("%s: chunk %s of %s is missing; refilling it from the monthly files", self.path,
                        self.name(k), "/".join(lost))
        return not lost

    def window(self, k: int) -> tuple[slice, slice]:
        cy, cx = int(self.chunks[k, 0]), int(self.chunks[k, 1])
        return (slice(cy * CHUNK, min((cy + 1) * CHUNK, self.grid.height)),
                slice(cx * CHUNK, min((cx + 1) * CHUNK, self.grid.width)))

    def read(self, k: int, quiet: bool = False) -> bool:
        """Decode chunk ``k`` into the buffers; False (with a warning naming it) when damaged."""
        ys, xs = self.window(k)
        try:
            for array, buf in self.layers:
                _split(array[:, ys, xs], buf, [k])
        except Exception as e:  # checksum mismatch, blosc error: the chunk is unusable
            if not quiet:
                log.warning("%s: chunk %s failed its check (%s); refilling it from the monthly files",
                            self.path, self.name(k), str(e).split(". ")[0][:120])
            return False
        return True

    def write(self, members: list[int]) -> None:
        """Store chunks (the caller holds their locks), then their markers."""
        for k in members:
            self.marker(k).unlink(missing_ok=True)  # a damaged chunk being rewritten is not built
        sub = self.chunks[members]
        for run, ys, xs in _runs(sub, np.zeros(len(members), dtype=bool), self.grid):
            ks = [members[i] for i in run]
            for array, buf in self.layers:
                array[:, ys, xs] = _join(buf, ks, ys.stop - ys.start, xs.stop - xs.start)
        for k in members:
            _touch(self.marker(k))

    def lock(self, k: int, wait: bool) -> int | None:
        """An exclusive lock on chunk ``k`` (an open fd), or None when another writer holds it."""
        folder = self.path / "locks"
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / self.name(k), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return fd


def _fill(rasters: Sequence[MonthlyRaster], grid: Grid, store: _Store, need: list[int], bad: set[int],
          rad: np.ndarray, aux: np.ndarray | None) -> None:
    """Chunks ``need`` from the sources into the buffers and the cube, one writer per chunk.

    Lock what is free (in a fixed order) and fill it; then wait for each chunk another
    writer holds, and read it once that writer is done (or fill it if it gave up).
    """
    held = {k: fd for k in need if (fd := store.lock(k, wait=False)) is not None}
    try:
        # another writer may have finished a chunk between our look and our lock
        todo = [k for k in held if k in bad or not store.built(k, quiet=True) or not store.read(k, quiet=True)]
        if todo:
            _read_sources(rasters, grid, store.chunks[todo], np.array(todo), rad, aux)
            store.write(todo)
    finally:
        for fd in held.values():
            os.close(fd)
    filled = len(todo)
    for k in need:
        if k in held:
            continue
        fd = store.lock(k, wait=True)
        try:
            if not (store.built(k, quiet=True) and store.read(k)):
                _read_sources(rasters, grid, store.chunks[[k]], np.array([k]), rad, aux)
                store.write([k])
                filled += 1
        finally:
            os.close(fd)
    log.debug("cube %s: filled %d chunk(s), %d read from other writers", store.path.name, filled,
              len(need) - filled)


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
    with atomic_write(path) as tmp:
        tmp.touch()


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


def _remove(cube: Path) -> None:
    """Rename aside first, so no reader ever opens a half-deleted cube under its real name."""
    aside = cube.with_name(f"{TMP_PREFIX}{os.getpid()}-gone-{cube.name}")
    try:
        os.replace(cube, aside)
    except OSError:
        aside = cube
    shutil.rmtree(aside, ignore_errors=True)
