"""Study memo: a stage's results kept on disk, keyed by everything the stage reads.

An identical re-run reads the zone tables, the site analysis and the comparison back instead of
recomputing them; a run with another ``--threshold`` keeps the extraction and recomputes the rest.
A key is a :func:`pipeline.digest.digest` of the stage's inputs (tables, geometry, parameters,
each raster's path, size and modification time), the package's code and the libraries'
versions, so changed code, a changed file or an upgrade never reads an old entry.

Entries are data only, Parquet tables, numeric ``.npy`` arrays and one JSON document, never pickles: a cache folder
holds data, not code. An entry that cannot be read is a miss (recomputed, written again), never an
error. A computed value is handed on as read back from its entry, so the first run and every
re-run publish from the same bytes (a chart drawn by one is kept by the next).
Lives in ``<cache-dir>/results`` (``--cache-dir none``: no memo); at most :data:`KEEP` entries of
each kind are kept, the least recently used removed first.

Below a stage, :func:`remembered` keeps the results of a pure function by a digest of its own
arguments (:meth:`Memo.remembering`): the bootstrap intervals of the site changes do not depend on
the ``--threshold`` that classifies them, so a run with another threshold reads them back while
its stages, keyed by the threshold, are computed again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.digest import code_digest, digest, library_versions

log = logging.getLogger(__name__)

MEMO_VERSION = 3  # bump when an entry's layout changes
KEEP = 32  # entries of each kind; the least recently used go first
LIBRARIES = (
    "numpy",
    "pandas",
    "geopandas",
    "shapely",
    "pyarrow",
    "rasterio",
    "exactextract",
    "scipy",
    "xarray",
    "dask",
)
DOC = "entry.json"
TMP = ".tmp-"

T = TypeVar("T")


@dataclass
class Entry:
    """What a stage keeps: named tables (GeoDataFrames stay geo), numeric arrays (``.npy``, no
    objects) and a JSON document."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)


def file_state(paths: Iterable[Path | str | None]) -> list[tuple[str, int, int] | None]:
    """``(absolute path, size, mtime_ns)`` of each file: what a key and a prune compare."""
    out: list[tuple[str, int, int] | None] = []
    for p in paths:
        if p is None:
            out.append(None)
            continue
        path = Path(p).absolute()
        try:
            st = path.stat()
            out.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(path), -1, -1))
    return out


def raster_state(rasters: Iterable[Any]) -> list[Any]:
    """Each raster's month, product and files as they are on disk now (a changed file: a new key)."""
    return [
        (r.month, r.product, r.aux_kind, r.nodata, file_state([r.radiance, r.aux])) for r in rasters
    ]


class Memo:
    """The memo folder of a run (``None``: nothing kept, everything computed)."""

    def __init__(
        self,
        folder: Path | None,
        keep: int = KEEP,
        on_compute: Callable[[str], None] | None = None,
    ):
        self.folder, self.keep, self.on_compute = folder, keep, on_compute

    def key(self, kind: str, *parts: Any) -> str | None:
        """The entry's key, or None when a part has no content digest (then nothing is kept)."""
        if self.folder is None:
            return None
        try:
            return digest(
                "nightlights memo",
                MEMO_VERSION,
                kind,
                __version__,
                code_digest(),
                library_versions(LIBRARIES),
                parts,
            )
        except TypeError as e:
            log.debug("%s: not kept (%s)", kind, e)
            return None

    def through(
        self,
        kind: str,
        parts: tuple[Any, ...],
        compute: Callable[[], T],
        encode: Callable[[T], Entry],
        decode: Callable[[Entry], T],
        inputs: Iterable[Path | str | None] = (),
    ) -> T:
        """``compute()``, or its value read back from the entry its ``parts`` key (``on_compute``
        is told before a value is computed)."""
        key = self.key(kind, *parts)
        if key is None:
            self._computing(kind)
            return compute()
        got = self.get(kind, key)
        if got is not None:
            try:
                value = decode(got)
                log.debug("%s: read back from %s", kind, self._path(kind, key))
                return value
            except Exception as e:  # an entry of another layout or damaged: a miss
                log.debug("%s: entry unusable (%s); computing", kind, e)
        self._computing(kind)
        value = compute()
        try:
            stored = self.put(kind, key, encode(value), inputs)
        except Exception as e:  # a value Parquet or JSON cannot hold: computed, not kept
            log.debug("%s: not kept (%s)", kind, e)
            return value
        if stored is None:
            return value
        try:
            return decode(stored)
        except Exception as e:
            log.debug("%s: kept entry unusable (%s)", kind, e)
            return value

    def _computing(self, kind: str) -> None:
        if self.on_compute is not None:
            self.on_compute(kind)

    def get(self, kind: str, key: str) -> Entry | None:
        path = self._path(kind, key)
        try:
            doc = json.loads((path / DOC).read_text(encoding="utf-8"))
            if doc.get("key") != key or doc.get("memo_version") != MEMO_VERSION:
                return None
            tables = {name: _read_table(path, name, how) for name, how in doc["tables"].items()}
            arrays = {n: np.load(path / f"{n}.npy", allow_pickle=False) for n in doc["arrays"]}
            os.utime(path / DOC)  # recently used: kept longest
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        except Exception as e:  # pyarrow's own errors on a damaged file
            log.debug("%s: unreadable entry (%s)", path, e)
            return None
        return Entry(tables, doc["doc"], arrays)

    def put(
        self, kind: str, key: str, entry: Entry, inputs: Iterable[Path | str | None] = ()
    ) -> Entry | None:
        """Write ``entry`` (all or nothing) and return it as read back; None if it could not be kept."""
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._path(kind, key)
        tmp = self.folder / f"{TMP}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            names = {name: _write_table(tmp, name, t) for name, t in entry.tables.items()}
            for name, a in entry.arrays.items():
                np.save(tmp / f"{name}.npy", np.asarray(a), allow_pickle=False)
            doc = {
                "memo_version": MEMO_VERSION,
                "kind": kind,
                "key": key,
                "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "inputs": [s for s in file_state(inputs) if s is not None],
                "tables": names,
                "arrays": sorted(entry.arrays),
                "doc": entry.doc,
            }
            (tmp / DOC).write_text(json.dumps(doc, default=_json_default), encoding="utf-8")
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._evict(kind)
        return self.get(kind, key)

    @contextmanager
    def remembering(
        self, kind: str, parts: tuple[Any, ...], inputs: Iterable[Path | str | None] = ()
    ) -> Iterator[None]:
        """In the block, :func:`remembered` answers from, and adds to, the entry ``parts`` key; on
        leaving it the entry is written again if the block computed anything new or used less
        (an entry holds what its last run used, so it does not grow)."""
        key = self.key(kind, *parts)
        if key is None:
            yield
            return
        got = self.get(kind, key)
        values: dict[str, np.ndarray] = {}
        if got is not None:
            try:
                values = _unpack(got)
            except Exception as e:  # another layout or damaged: everything computed again
                log.debug("%s: entry unusable (%s)", kind, e)
        bag = _Remembered(dict(values))
        token = _REMEMBERED.set(bag)
        try:
            yield
        finally:
            _REMEMBERED.reset(token)
        if bag.new or set(values) - bag.used:
            try:
                self.put(kind, key, _pack(bag), inputs)
            except Exception as e:
                log.debug("%s: not kept (%s)", kind, e)
        else:
            log.debug("%s: %d values read back", kind, len(bag.used))

    def _path(self, kind: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{kind}-{key[:40]}"

    def _evict(self, kind: str) -> None:
        assert self.folder is not None
        entries = []
        for p in self.folder.glob(f"{kind}-*"):
            try:
                entries.append(((p / DOC).stat().st_mtime, p))
            except OSError:
                entries.append((0.0, p))
        for _, p in sorted(entries, reverse=True)[self.keep :]:
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class _Remembered:
    """The values of one :meth:`Memo.remembering` block: digest -> array."""

    values: dict[str, np.ndarray]
    used: set[str] = field(default_factory=set)
    new: bool = False


_REMEMBERED: ContextVar[_Remembered | None] = ContextVar("nightlights_remembered", default=None)


def remembered(parts: tuple[Any, ...], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, a float array, or the array an earlier run computed from the same ``parts``.

    ``parts`` must hold everything ``compute`` reads (it is a pure function of them). Outside a
    :meth:`Memo.remembering` block, or for parts without a content digest, it is computed.
    """
    bag = _REMEMBERED.get()
    if bag is None:
        return compute()
    try:
        key = digest("nightlights remembered", parts)
    except TypeError:
        return compute()
    hit = bag.values.get(key)
    if hit is not None:
        bag.used.add(key)
        return hit.copy()
    value = compute()
    if isinstance(value, np.ndarray) and value.dtype == np.float64:
        bag.values[key], bag.new = value.copy(), True
        bag.used.add(key)
    return value


def _pack(bag: _Remembered) -> Entry:
    """The values used, as one flat float array and their keys and shapes."""
    keys = sorted(bag.used)
    flat = [bag.values[k].ravel() for k in keys]
    return Entry(
        doc={"keys": keys, "shapes": [list(bag.values[k].shape) for k in keys]},
        arrays={"values": np.concatenate(flat) if flat else np.empty(0)},
    )


def _unpack(e: Entry) -> dict[str, np.ndarray]:
    flat = np.asarray(e.arrays["values"], dtype=np.float64)
    out, at = {}, 0
    for key, shape in zip(e.doc["keys"], e.doc["shapes"], strict=True):
        n = int(np.prod(shape))
        out[str(key)] = flat[at : at + n].reshape(shape)
        at += n
    if at != flat.size:
        raise ValueError(f"{flat.size} values for {at}")
    return out


def prune_memo(folder: Path) -> tuple[int, int]:
    """Remove the memo entries no run can use again (an input file gone or changed, another
    layout, half-written). Returns (entries removed, bytes freed)."""
    removed = freed = 0
    if not folder.is_dir():
        return 0, 0
    for p in sorted(folder.iterdir()):
        if not p.is_dir():
            continue
        stale = p.name.startswith(TMP) and _tmp_is_dead(p.name)
        if not p.name.startswith(TMP):
            try:
                doc = json.loads((p / DOC).read_text(encoding="utf-8"))
                stale = doc.get("memo_version") != MEMO_VERSION or any(
                    tuple(s) != tuple(now or ())
                    for s, now in zip(
                        doc["inputs"], file_state(s[0] for s in doc["inputs"]), strict=True
                    )
                )
            except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
                stale = True
        if stale:
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            shutil.rmtree(p, ignore_errors=True)
            removed, freed = removed + 1, freed + size
    return removed, freed


def _tmp_is_dead(name: str) -> bool:
    from pipeline.outputs import process_alive

    pid = name[len(TMP) :].split("-", 1)[0]
    return pid.isdigit() and not process_alive(int(pid))


def _write_table(folder: Path, name: str, table: pd.DataFrame) -> dict[str, Any]:
    """Write one table; what Parquet does not keep (which columns were ``object``) is returned
    for the entry's document, so the table reads back with the dtypes it had."""
    import geopandas as gpd

    table.to_parquet(folder / f"{name}.parquet")
    return {
        "geo": isinstance(table, gpd.GeoDataFrame),
        "object": [str(c) for c in table.columns if table[c].dtype == object],
        "object_index": table.index.dtype == object,
    }


def _read_table(folder: Path, name: str, how: dict[str, Any]) -> pd.DataFrame:
    if how["geo"]:
        import geopandas as gpd

        table = gpd.read_parquet(folder / f"{name}.parquet")
    else:
        table = pd.read_parquet(folder / f"{name}.parquet")
    for c in how["object"]:  # pandas reads text back as ``str``; missing values as None
        col = table[c].astype(object)
        table[c] = col.where(col.notna(), None)
    if how["object_index"]:
        table.index = table.index.astype(object)
    return table


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists (NaN stays NaN: JSON's NaN token)."""
    import numpy as np

    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"no JSON for a {type(obj).__name__}")
