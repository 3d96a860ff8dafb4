"""Cache housekeeping: remove study cubes that no run can use again (``nightlights cache prune``).

A cube is keyed by its inputs' names, sizes and modification times, so once an input is
deleted or changed the cube is never opened again, yet it keeps its disk space. Each cube
records its inputs (absolute path, size, mtime) in its metadata; a cube whose inputs no
longer match, or of an older layout, is removed here, never silently during a run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.measure.cube import LAYOUT, TMP_PREFIX, remove_cube
from pipeline.outputs import process_alive
from pipeline.provenance import human_size

log = logging.getLogger(__name__)


def prune_cubes(cache_dir: Path | str, keep: Iterable[str | Path] = ()) -> tuple[int, int]:
    """Remove the cubes in ``cache_dir`` (the folder given to :func:`open_cube`) that no run
    can use again: an older layout, or an input file gone or changed since the cube was made
    (a changed input gives a new cube, so the old one is never read again). Also removes
    half-created cubes of processes that are gone. ``keep``: cube folders (names or paths)
    left alone whatever their state. Returns (cubes removed, bytes freed).
    """
    folder = Path(cache_dir)
    kept = {Path(k).name for k in keep}
    removed = freed = 0
    if not folder.is_dir():
        return 0, 0
    for cube in sorted(folder.glob("cube-*.zarr")):
        if cube.name in kept or not cube.is_dir():
            continue
        why = _stale(cube)
        if why:
            size = _size(cube)
            remove_cube(cube)
            log.info("%s: removed (%s), %s freed", cube, why, human_size(size))
            removed, freed = removed + 1, freed + size
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        pid = tmp.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if tmp.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            freed += _size(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    return removed, freed


def _stale(cube: Path) -> str | None:
    """Why the cube can never be used again, or None when it can."""
    try:
        attrs = json.loads((cube / "zarr.json").read_text(encoding="utf-8"))["attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable metadata"
    if attrs.get("layout") != LAYOUT or "sources" not in attrs:
        return f"layout {attrs.get('layout')}, this version uses {LAYOUT}"
    for path, size, mtime in attrs["sources"]:
        try:
            st = os.stat(path)
        except OSError:
            return f"input {path} no longer exists"
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            return f"input {path} has changed"
    return None


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
