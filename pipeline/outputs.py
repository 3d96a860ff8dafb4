"""Outputs: the one place that writes into ``--out``, atomically.

Every file of a run is first written into a hidden staging folder inside ``--out``,
then moved into place with ``os.replace`` once the whole run has succeeded. A run that
fails or is interrupted before that leaves the earlier contents of ``--out`` untouched
and removes its staging folder. A run killed outright (SIGKILL, power loss) cannot clean
up: its staging folder carries its process id, and the next run into the same folder
removes it once that process is gone. Publishing renames one file at a time, so only a
kill inside that last step (milliseconds) can leave a mix of old and new files; each
file is always whole.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import NightlightsError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".nightlights-staging-"
MANIFEST = ".nightlights-outputs.json"  # what earlier runs wrote here, so stale results can go


class Staging:
    """A staging folder whose files are published together by :meth:`commit`."""

    def __init__(self, out: Path):
        self.out = out
        self.dir = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
        self.files: list[Path] = []

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(p)
        return p

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")

    def write_csv(self, name: str, df: pd.DataFrame, data_kind: str | None = None) -> None:
        if data_kind is not None:
            df = df.assign(data_kind=data_kind)
        df.to_csv(self.path(name), index=False, float_format="%.6g", lineterminator="\n")

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        writer(self.path(name))

    def commit(self, owns: tuple[str, ...] | None = None) -> list[Path]:
        """Publish the staged files; with ``owns``, also remove earlier outputs under those
        prefixes that this run did not write again (a run without figures must not leave
        the previous run's charts beside its new tables)."""
        published = []
        for f in self.files:
            if not f.exists():
                continue
            dest = self.out / f.relative_to(self.dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            published.append(dest)
        if owns is not None:
            self._retire_stale(owns, {p.relative_to(self.out).as_posix() for p in published})
        return published

    def _retire_stale(self, owns: tuple[str, ...], written: set[str]) -> None:
        manifest = self.out / MANIFEST
        try:
            earlier = set(json.loads(manifest.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            earlier = set()
        stale = {p for p in earlier - written if p.startswith(owns) and ".." not in Path(p).parts}
        for rel in sorted(stale):
            target = self.out / rel
            if target.is_file():
                target.unlink()
                log.info("%s: removed, an output of an earlier run that this run does not make", target)
        tmp = self.dir / MANIFEST
        tmp.write_text(json.dumps(sorted((earlier - stale) | written), indent=0) + "\n", encoding="utf-8")
        os.replace(tmp, manifest)


@contextmanager
def staged(out: Path | str, owns: tuple[str, ...] | None = None) -> Iterator[Staging]:
    """Stage a run's files in ``out``; publish on success, discard on any failure.

    ``owns``: output path prefixes this run replaces as a whole (``("",)`` for a full
    run): earlier outputs there that it does not write again are removed.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NightlightsError(f"{out}: cannot create output folder ({e.strerror})") from e
    if not os.access(out, os.W_OK):
        raise NightlightsError(f"{out}: output folder is not writable")
    remove_stale_staging(out)
    staging = Staging(out)
    try:
        yield staging
        staging.commit(owns)
    finally:
        shutil.rmtree(staging.dir, ignore_errors=True)


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove staging folders left in ``out`` by runs that were killed (their process is gone)."""
    removed = []
    for d in out.glob(f"{STAGING_PREFIX}*"):
        pid = d.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            log.info("%s: removed the staging folder of an interrupted run", d)
            removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextmanager
def atomic_write(path: Path | str, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The one way this package writes a file outside a staging folder (caches, downloads,
    the demo, the cube's markers): a reader sees the old file or the whole new one, never
    a part; on any error the temporary file is removed. Any writer that takes a path
    (``open``, rasterio, ``savefig``) can write to the yielded one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv_atomic(path: Path | str, df: pd.DataFrame, data_kind: str | None = None) -> None:
    """One CSV written through a temporary file in the same folder, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged(path.parent) as s:
        s.write_csv(path.name, df, data_kind)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x
