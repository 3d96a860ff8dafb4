"""Provenance: SHA-256 of files, with a cache so a re-run does not re-read gigabytes.

Used by the downloader's manifest (what was fetched) and by the report (what was read).
The cache lives in the run's cache folder, never in ``$HOME``; an entry is reused only
while the file's path, size and modification time are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.outputs import atomic_write

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # bytes read at a time
HASH_CACHE_NAME = "sha256.json"


def human_size(n: float) -> str:
    """Bytes for people: ``512 B``, ``3.4 MB`` (powers of 1024), in logs and messages."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: Path, cache: dict[str, Any] | None = None) -> str:
    """SHA-256 of a file, reused from ``cache`` while its path, size and mtime are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    hit = (cache or {}).get(key)
    if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return hit["sha256"]
    digest = sha256(path)
    if cache is not None:
        cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


def input_checksums(rasters: Iterable[Any], cache_path: Path | None = None) -> dict[str, str]:
    """File name -> sha256 of every input raster (radiance and auxiliary layer); cached in ``cache_path``."""
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable checksum cache, recomputing", cache_path)
    before = dict(cache)
    sums = {}
    for r in rasters:
        for f in (r.radiance, r.aux):
            if f is not None and f.exists():
                sums[f.name] = sha256_file(f, cache)
    if cache_path is not None and cache != before:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(cache_path) as tmp:
                tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
        except OSError as e:
            log.debug("checksum cache not written (%s)", e)
    return sums
