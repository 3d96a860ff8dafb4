"""The download cache: ``data/manifest.json`` and the cropped COGs it describes.

A month is done only when its files exist, match the size and sha256 recorded here and
cover the area asked for; anything else is fetched again. The URLs stored have no
query string or credentials (:func:`pipeline.fetch.http.public_url`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from pipeline.config import DataSettings
from pipeline.fetch.http import public_url
from pipeline.outputs import atomic_write
from pipeline.provenance import sha256

log = logging.getLogger(__name__)

Bbox = tuple[float, float, float, float]


@dataclass
class Manifest:
    """``data/manifest.json``: what each cached file is, where it came from, its checksum."""

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> Manifest:
        path = data_dir / "manifest.json"
        if not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(path, dict(doc.get("files", {})))
        except (OSError, ValueError, AttributeError) as e:
            log.warning(
                "%s: unreadable (%s); cached months will be checked again",
                path,
                e.__class__.__name__,
            )
            return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "about": "files cached by 'nightlights download': source URL (no credentials), size, sha256",
            "files": dict(sorted(self.files.items())),
        }
        with atomic_write(self.path, ".tmp") as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    def record(
        self, file: Path, data_dir: Path, sources: list[dict[str, Any]], **info: Any
    ) -> None:
        info["sources"] = [{**src, "url": public_url(src["url"])} for src in sources]
        self.files[file.relative_to(data_dir).as_posix()] = {
            "size": file.stat().st_size,
            "sha256": sha256(file),
            **info,
        }

    def entries(self, product: str, month: str) -> dict[str, dict[str, Any]]:
        return {
            k: v
            for k, v in self.files.items()
            if v.get("product") == product and v.get("month") == month
        }

    def complete(
        self, product: str, month: str, layers: Iterable[str], bbox: Bbox, data_dir: Path
    ) -> bool:
        """True when the month's layers are cached, unchanged and cover ``bbox``."""
        entries = self.entries(product, month)
        if not set(layers) <= {v.get("layer") for v in entries.values()}:
            return False
        for rel, v in entries.items():
            f = data_dir / rel
            if not f.is_file() or f.stat().st_size != v["size"] or sha256(f) != v["sha256"]:
                log.warning("%s: differs from the manifest; downloading month %s again", f, month)
                return False
            if not covers(v.get("bbox"), bbox):
                log.info("%s: cached for a smaller area; downloading month %s again", rel, month)
                return False
        return True

    def source_files(self, product: str, period: str) -> dict[str, int | None]:
        """The archive files a cached period was made from: file name -> size (as downloaded)."""
        out: dict[str, int | None] = {}
        for v in self.entries(product, period).values():
            for src in v.get("sources", []):
                out[str(src.get("url", "")).rsplit("/", 1)[-1]] = src.get("size")
        return out

    def forget(self, product: str, month: str, data_dir: Path, keep: Iterable[Path] = ()) -> None:
        """Drop a month's older cached files (e.g. a reprocessed EOG stamp) so each month has one."""
        keep_rel = {p.relative_to(data_dir).as_posix() for p in keep}
        root = data_dir.resolve()
        for rel in list(self.entries(product, month)):
            if rel not in keep_rel:
                target = (data_dir / rel).resolve()
                if target.is_relative_to(root):  # an edited manifest must not point outside data/
                    target.unlink(missing_ok=True)
                del self.files[rel]


def covers(outer: Any, inner: Bbox, tol: float = 1e-6) -> bool:
    if not outer or len(outer) != 4:
        return False
    w, s, e, n = (float(v) for v in outer)
    return (
        w <= inner[0] + tol and s <= inner[1] + tol and e >= inner[2] - tol and n >= inner[3] - tol
    )


def write_cog(
    path: Path,
    array: np.ndarray,
    transform: Any,
    nodata: float | None,
    tags: dict[str, str],
    crs: Any = "EPSG:4326",
) -> None:
    """Write a tiled (256), DEFLATE-compressed COG through a temporary name, then rename."""
    import rasterio

    profile = {
        "driver": "COG",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "blocksize": 256,
        "predictor": "YES",
        "overviews": "NONE",
        "BIGTIFF": "IF_SAFER",
    }
    with atomic_write(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(array, 1)
        ds.update_tags(**tags)


@dataclass
class Context:
    """What every source's month fetcher needs."""

    session: requests.Session
    settings: DataSettings
    data_dir: Path
    bbox: Bbox
    manifest: Manifest
    progress: bool
    geometries: Any = None  # site shapes, to skip tiles no site touches
    refresh: bool = (
        False  # ask the archive whether a cached period was republished (``download`` does)
    )
