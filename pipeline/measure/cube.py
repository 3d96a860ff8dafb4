"""Cube: the monthly rasters re-laid as time-contiguous spatial chunks, built once.

Inputs
    The monthly rasters of one grid (:class:`~pipeline.read.sources.MonthlyRaster`) and the
    spatial chunks that zones touch (chunk row, chunk column on a ``CHUNK`` pixel grid).
Outputs
    Cleaned radiance (float, clipped at 0, 0 where unusable) and auxiliary layer (cf_cvg
    counts, quality codes, or 0/1) for those chunks, shaped (chunk, month, CHUNK, CHUNK),
    exactly what :func:`pipeline.read.sources.read_window` gives for the same pixels.

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

Read and written chunk by chunk without the zarr library: each chunk file is encoded as
zarr's codec chain (bytes, blosc, crc32c) would encode it, with numcodecs' Blosc and
google-crc32c directly, and the metadata documents are zarr v3's own, so ``zarr.open`` and
``xarray.open_zarr`` read the cube (tests/test_cube.py checks both ways). Measured: zarr's
import alone takes 0.23 s and each call about 1 ms through its event loop, more than
decoding a warm cube of 200 sites x 48 months (0.06 s).

Checksummed: the cube's folder name is a hash of the inputs' names, sizes and
modification times, the grid and this layout, so changed inputs give a new cube and an
unchanged set reuses the old. A chunk counts as built once its radiance file exists: that
file is written last, after the chunk's other layers, so an interrupted build is resumed,
never trusted half-done, and needs no marker files.
Each stored chunk ends with its CRC-32C (zarr's ``crc32c`` codec, after blosc), checked
on every read before blosc sees the bytes (so nothing is fsynced: a chunk lost in a crash
fails its check and is refilled): a chunk damaged on disk (bit flips, a cut-off
copy) is named in a warning and refilled from the monthly files, never read as data.

Concurrent writers (several runs on one cache, dask workers in other processes): a chunk
is filled only by the writer holding its lock file (``flock``, released by the kernel if
the writer dies); others fill the chunks they could lock, then wait for the rest and read
them. Each chunk file is written under a temporary name and renamed, so a reader never
sees half a chunk. :func:`prune_cubes` removes cubes whose inputs are gone.

Longer than most modules because filling, locking, checking and repairing chunks must
stay together: a chunk's lifecycle split over files would hide the invariants between them.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.errors import SourceError
from pipeline.read.sources import Grid, MonthlyRaster, clean_pixels, raster_error_reason

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
    doc = {
        "layout": LAYOUT,
        "chunk": CHUNK,
        "grid": [grid.crs_wkt, list(grid.transform), grid.width, grid.height],
        "inputs": items,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def open_cube(cache_dir: Path | str | None, rasters: Sequence[MonthlyRaster]) -> CubeRef:
    """The cube for these rasters (all on one grid) under ``cache_dir``, created empty if new.

    ``cache_dir`` None gives a reference without storage: chunks are read from the files.
    A cube whose metadata cannot be read is set aside (with a warning) and built anew.
    """
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
        log.warning(
            "%s: cube metadata is damaged; building the cube again from the monthly files", path
        )
        remove_cube(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=path.parent))
    try:
        shape, chunks = [len(rasters), grid.height, grid.width], [len(rasters), CHUNK, CHUNK]
        arrays = {
            name: _array_meta(shape, chunks, dtype)
            for name, dtype in [
                ("radiance", rad_dtype),
                *([("aux", aux_dtype)] if aux_dtype else []),
            ]
        }
        for name, meta in arrays.items():
            (tmp / name).mkdir()
            _write_json(tmp / name / "zarr.json", meta)
        # consolidated, so zarr and xarray readers need not list the folder (its locks/ is not zarr's)
        _write_json(
            tmp / "zarr.json",
            {
                "attributes": {
                    "key": key,
                    "layout": LAYOUT,
                    "chunk": CHUNK,
                    "months": [r.month for r in rasters],
                    "aux_kinds": [r.aux_kind for r in rasters],
                    "inputs": [r.radiance.name for r in rasters],
                    "sources": _sources(rasters),
                    "grid": grid.describe(),
                },
                "zarr_format": 3,
                "node_type": "group",
                "consolidated_metadata": {
                    "kind": "inline",
                    "must_understand": False,
                    "metadata": arrays,
                },
            },
        )
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


def _array_meta(shape: list[int], chunks: list[int], dtype: str) -> dict:
    """Zarr v3 array metadata for a layer: the codec chain :func:`_encode` implements."""
    return {
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0 if np.dtype(dtype).kind in "iu" else 0.0,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {
                "name": "blosc",
                "configuration": {
                    "typesize": np.dtype(dtype).itemsize,
                    "cname": "lz4",
                    "clevel": 5,
                    "shuffle": "shuffle",
                    "blocksize": 0,
                },
            },
            {"name": "crc32c"},
        ],
        "attributes": {},
        "dimension_names": ["month", "y", "x"],
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _readable(path: Path, key: str) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
        return meta["attributes"]["key"] == key and all(
            (path / n / "zarr.json").is_file() for n in ("radiance",)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_chunks(
    rasters: Sequence[MonthlyRaster], chunks: np.ndarray, cube: CubeRef
) -> tuple[np.ndarray, np.ndarray | None]:
    """Radiance and aux of ``chunks`` (array of chunk row, column), all months.

    Radiance is cleaned as :func:`pipeline.read.sources.read_window` does, except that
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
    store = _Store(
        Path(cube.path),
        [("radiance", rad), *([("aux", aux)] if aux is not None else [])],
        chunks,
        grid,
    )
    have = np.array([store.built(k) for k in range(n)])
    bad = {k for k in np.flatnonzero(have).tolist() if not store.read(k)}
    need = sorted(
        set(np.flatnonzero(~have).tolist()) | bad, key=lambda k: (chunks[k, 0], chunks[k, 1])
    )
    if need:
        _fill(rasters, grid, store, need, bad, rad, aux)
    return rad, aux


class _Store:
    """One cube's chunks for one call: lock files, single-chunk reads and writes.

    ``layers``: (layer name, buffer of shape (chunk, month, CHUNK, CHUNK)) pairs, radiance first.
    """

    def __init__(
        self, path: Path, layers: list[tuple[str, np.ndarray]], chunks: np.ndarray, grid: Grid
    ):
        self.path, self.layers, self.chunks, self.grid = path, layers, chunks, grid

    def name(self, k: int) -> str:
        return f"{self.chunks[k, 0]}_{self.chunks[k, 1]}"

    def file(self, layer: str, k: int) -> Path:
        """Where zarr's default chunk key encoding puts chunk ``k`` of ``layer``: c/0/row/column."""
        cy, cx = self.chunks[k]
        return self.path / layer / "c" / "0" / str(cy) / str(cx)

    def built(self, k: int, quiet: bool = False) -> bool:
        """The radiance file (written last) is there, and so is every other layer's."""
        if not self.file("radiance", k).exists():
            return False
        lost = [name for name, _ in self.layers[1:] if not self.file(name, k).exists()]
        if lost and not quiet:
            log.warning(
                "%s: chunk %s of %s is missing; refilling it from the monthly files",
                self.path,
                self.name(k),
                "/".join(lost),
            )
        return not lost

    def read(self, k: int, quiet: bool = False) -> bool:
        """Decode chunk ``k`` into the buffers; False (with a warning naming it) when damaged."""
        try:
            for name, buf in self.layers:
                _decode(self.file(name, k).read_bytes(), buf[k])
        except (
            Exception
        ) as e:  # checksum mismatch, blosc error, vanished file: never stop the run for a cache
            if not quiet:
                log.warning(
                    "%s: chunk %s failed its check (%s); refilling it from the monthly files",
                    self.path,
                    self.name(k),
                    str(e).split(". ")[0][:120],
                )
            return False
        return True

    def write(self, members: list[int]) -> None:
        """Store chunks (the caller holds their locks): each file under a temporary name, then renamed;
        radiance last, so a chunk is built only once all its layers are."""
        for k in members:
            for name, buf in self.layers[::-1]:
                _put(self.file(name, k), _encode(buf[k]))

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


def _fill(
    rasters: Sequence[MonthlyRaster],
    grid: Grid,
    store: _Store,
    need: list[int],
    bad: set[int],
    rad: np.ndarray,
    aux: np.ndarray | None,
) -> None:
    """Chunks ``need`` from the sources into the buffers and the cube, one writer per chunk.

    Lock what is free (in a fixed order) and fill it; then wait for each chunk another
    writer holds, and read it once that writer is done (or fill it if it gave up).
    """
    held = {k: fd for k in need if (fd := store.lock(k, wait=False)) is not None}
    try:
        # another writer may have finished a chunk between our look and our lock
        todo = [
            k
            for k in held
            if k in bad or not store.built(k, quiet=True) or not store.read(k, quiet=True)
        ]
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
        assert fd is not None  # a waiting lock is always granted
        try:
            if not (store.built(k, quiet=True) and store.read(k)):
                _read_sources(rasters, grid, store.chunks[[k]], np.array([k]), rad, aux)
                store.write([k])
                filled += 1
        finally:
            os.close(fd)
    log.debug(
        "cube %s: filled %d chunk(s), %d read from other writers",
        store.path.name,
        filled,
        len(need) - filled,
    )


@functools.cache
def _blosc():  # numcodecs takes 0.1 s to import: only runs that use a cube pay it
    import numcodecs.blosc

    numcodecs.blosc.use_threads = (
        False  # as zarr sets it: blosc's own threads are unsafe under ours
    )
    return numcodecs.blosc.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.blosc.Blosc.SHUFFLE)


def _encode(chunk: np.ndarray) -> bytes:
    """Zarr's chain for this cube: raw little-endian bytes, blosc (lz4, byte shuffle), CRC-32C appended."""
    data = _blosc().encode(np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<")))
    return data + struct.pack("<I", google_crc32c.value(data))


def _put(path: Path, data: bytes) -> None:
    """Write a chunk file under a temporary name, then rename it: readers see all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _decode(data: bytes, out: np.ndarray) -> None:
    """Check the CRC-32C, then blosc-decode into ``out`` (a contiguous chunk buffer) directly."""
    body = np.frombuffer(
        data, dtype=np.uint8, count=max(len(data) - 4, 0)
    )  # read-only view, no copy
    if len(data) < 4 or struct.pack("<I", google_crc32c.value(body)) != data[-4:]:
        raise ValueError("stored and computed checksum do not match")
    if _blosc_nbytes(body) != out.nbytes:
        raise ValueError(f"chunk holds {_blosc_nbytes(body)} bytes, expected {out.nbytes}")
    _blosc().decode(body, out=out)


def _blosc_nbytes(body: np.ndarray) -> int:
    """Uncompressed size from the blosc header (bytes 4-7), so a wrong-sized chunk is refused, not overrun."""
    return int(body[4:8].view("<u4")[0]) if body.size >= 16 else -1


def _read_sources(
    rasters: Sequence[MonthlyRaster],
    grid: Grid,
    chunks: np.ndarray,
    slots: np.ndarray,
    rad: np.ndarray,
    aux: np.ndarray | None,
) -> None:
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
    later = []  # months cleaned in the chunk buffers once all are read: only the pixels kept, one call per chunk
    with rasterio.Env(**GDAL_ENV):
        for t, r in enumerate(rasters):
            try:
                with (
                    rasterio.open(r.radiance) as rds,
                    rasterio.open(r.aux) if r.aux else _NoAux() as ads,
                ):
                    dtype = _read_dtype(r, rad.dtype)
                    now = (
                        dtype != rad.dtype.name
                    )  # nodata compares differently in the buffer's type: clean as read
                    for window, members in windows:
                        values = rds.read(1, window=window, out_dtype=dtype)
                        extra = ads.read(1, window=window) if r.aux else None
                        if now:
                            values, extra = clean(values, extra, r)
                        for i in members:
                            y = int(chunks[i, 0]) * CHUNK - window.row_off
                            x = int(chunks[i, 1]) * CHUNK - window.col_off
                            h, w = min(CHUNK, window.height - y), min(CHUNK, window.width - x)
                            rad[slots[i], t, :h, :w] = values[y : y + h, x : x + w]
                            if aux is not None and extra is not None:
                                aux[slots[i], t, :h, :w] = extra[y : y + h, x : x + w]
                    if not now:
                        later.append(t)
            except RasterioError as e:
                raise SourceError(
                    f"{r.radiance}: cannot read month {r.month} ({raster_error_reason(e)}); "
                    "the file may be truncated: delete it and download again"
                ) from e
    for t0, t1 in _same_rule_runs(rasters, later):
        r = rasters[t0]
        for k in slots:  # (month, y, x) views of one chunk, cleaned in place (its padding past the grid too: never read)
            _, validity = clean(
                rad[k, t0:t1], aux[k, t0:t1] if aux is not None and r.aux else None, r
            )
            if validity is not None and aux is not None:
                aux[k, t0:t1] = validity


def _same_rule_runs(rasters: Sequence[MonthlyRaster], months: list[int]) -> list[tuple[int, int]]:
    """Consecutive months (of ``months``) that the nodata rule treats alike: one cleaning call each."""

    def rule(t: int) -> tuple:
        r = rasters[t]
        nodata = (
            None if r.nodata is None or np.isnan(r.nodata) else r.nodata
        )  # NaN != NaN: NaN means none
        return nodata, r.aux_kind, r.aux is None

    runs: list[list[int]] = []
    for t in months:
        if runs and t == runs[-1][1] and rule(t) == rule(runs[-1][0]):
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1])
    return [(a, b) for a, b in runs]


def _read_dtype(raster: MonthlyRaster, store: np.dtype) -> str:
    """Read in the storage type when that changes nothing: nodata compares the same in it."""
    nodata = raster.nodata
    if nodata is None or np.isnan(nodata) or float(np.asarray(nodata, dtype=store)) == nodata:
        return store.name
    return "float64"


def clean(
    rad: np.ndarray, aux: np.ndarray | None, raster: MonthlyRaster
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pipeline.read.sources.clean_pixels` with unusable radiance as NaN (the cube's convention)."""
    rad, validity = clean_pixels(rad, aux, raster, fill=np.nan)
    return rad, validity if aux is not None else None


class _NoAux:
    """Stands in for the aux dataset of a month without one (never read: guarded by ``r.aux``)."""

    def __enter__(self) -> _NoAux:
        return self

    def read(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a month without an aux layer has nothing to read")

    def __exit__(self, *exc: object) -> None:
        return None


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


def remove_cube(cube: Path) -> None:
    """Rename aside first, so no reader ever opens a half-deleted cube under its real name."""
    aside = cube.with_name(f"{TMP_PREFIX}{os.getpid()}-gone-{cube.name}")
    try:
        os.replace(cube, aside)
    except OSError:
        aside = cube
    shutil.rmtree(aside, ignore_errors=True)
