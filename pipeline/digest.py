"""Content digests: a SHA-256 of what a thing is made of, so unchanged work can be kept.

Chart files (:mod:`pipeline.publish.render`) and a study's stages (:mod:`pipeline.memo`) are
keyed by their inputs fed through :func:`feed`: tables by column (geometry as WKB), arrays by
bytes, dataclasses by field, and an unknown type is an error, never its ``repr`` (a ``repr`` may
hide a difference, or differ between processes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def digest(*parts: Any) -> str:
    """Hex SHA-256 of ``parts`` fed in order (:func:`feed`)."""
    h = hashlib.sha256()
    feed(h, parts)
    return h.hexdigest()


@cache
def code_digest() -> str:
    """The package's own code, words and chart style (changed code makes new keys)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(f for ext in ("py", "toml", "mplstyle") for f in root.rglob(f"*.{ext}")):
        if "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@cache
def library_versions(names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``(name, version)`` of each installed distribution ("" when absent)."""
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, ""))
    return tuple(out)


def feed(h: Any, obj: Any) -> None:
    """Feed ``obj`` into hash ``h`` unambiguously (type-tagged, length-prefixed).

    Tables go in by column (names, dtypes, values; geometry as WKB), arrays by dtype, shape
    and bytes; an unknown type is an error, never its ``repr``."""
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool | np.bool_):
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int | np.integer):
        _tagged(h, b"I", str(int(obj)).encode())
    elif isinstance(obj, float | np.floating):
        _tagged(h, b"F", float(obj).hex().encode())
    elif isinstance(obj, str):
        _tagged(h, b"S", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, bytes):
        _tagged(h, b"Y", obj)
    elif isinstance(obj, Path):
        _tagged(h, b"P", str(obj).encode("utf-8", "surrogateescape"))
    elif isinstance(obj, datetime | date | pd.Timestamp):
        _tagged(h, b"T", obj.isoformat().encode())
    elif isinstance(obj, slice):
        _tagged(h, b"Z", repr((obj.start, obj.stop, obj.step)).encode())
    elif isinstance(obj, dict) or (isinstance(obj, Mapping) and not is_dataclass(obj)):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        _tagged(h, b"D", str(len(items)).encode())
        for k, v in items:
            feed(h, str(k))
            feed(h, v)
    elif isinstance(obj, list | tuple):
        _tagged(h, b"L", str(len(obj)).encode())
        for v in obj:
            feed(h, v)
    elif isinstance(obj, pd.DataFrame):
        _tagged(h, b"Q", str(obj.shape).encode())
        feed(h, obj.index)
        for col in obj.columns:
            feed(h, str(col))
            feed(h, obj[col])
    elif isinstance(obj, pd.Series | pd.Index):
        _feed_values(h, obj.to_numpy(), str(obj.dtype))
    elif isinstance(obj, np.ndarray):
        _feed_values(h, obj, str(obj.dtype))
    elif hasattr(obj, "wkb"):  # a shapely geometry
        _tagged(h, b"G", obj.wkb)
    elif is_dataclass(obj) and not isinstance(obj, type):
        _tagged(h, b"C", type(obj).__qualname__.encode())
        feed(h, {f.name: getattr(obj, f.name) for f in fields(obj)})
    else:
        raise TypeError(f"no content key for a {type(obj).__name__}")


def _tagged(h: Any, tag: bytes, data: bytes) -> None:
    h.update(tag + str(len(data)).encode() + b":" + data)


def _feed_values(h: Any, values: np.ndarray, dtype: str) -> None:
    _tagged(h, b"V", f"{dtype}{values.shape}".encode())
    if values.dtype.kind in "biufcmM":
        h.update(np.ascontiguousarray(values).tobytes())
    elif dtype == "geometry":
        import shapely

        for wkb in shapely.to_wkb(values):
            feed(h, wkb)
    else:
        for v in values.ravel().tolist():
            feed(h, v)
