"""Acquire: turn ``--source auto|demo|local|eog|blackmarble`` into monthly rasters and a data kind.

Inputs
    The requested source, the sites (for the demo's towns and the download area), the
    years wanted, ``--rasters`` (local) and ``--data-dir`` (demo and download caches).
Outputs
    :class:`Acquired`: the resolved source, the folder read, the monthly rasters of the
    wanted years and whether they are ``synthetic`` or ``real``.

Why one place: what counts as synthetic decides every label the outputs carry, so it
is decided once, here, from the source *and* the files (demo folders carry a marker,
demo GeoTIFFs a ``SYNTHETIC=true`` tag, so generated rasters copied elsewhere and read
with ``--source local`` are still labelled).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, load_data_settings
from pipeline.errors import ConfigError, SourceError
from pipeline.sources import MonthlyRaster, find_monthly_rasters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acquired:
    source: str  # resolved: demo, local, eog or blackmarble
    folder: Path
    rasters: list[MonthlyRaster]
    data_kind: str  # "synthetic" or "real"


def resolve_source(requested: str, rasters_dir: Path | None) -> str:
    """``auto``: local with ``--rasters``, else EOG or Black Marble when credentials are configured, else demo."""
    if requested != "auto":
        return requested
    if rasters_dir is not None:
        return "local"
    settings = load_data_settings()
    if settings.has_eog():
        return "eog"
    if settings.has_blackmarble():
        return "blackmarble"
    return "demo"


def is_synthetic(rasters: Sequence[MonthlyRaster]) -> bool:
    """True when the rasters come from a demo folder or carry the demo's ``SYNTHETIC`` tag."""
    import rasterio

    from pipeline.demo import is_synthetic_folder

    if not rasters:
        return False
    first = rasters[0].radiance
    if is_synthetic_folder(first.parent):
        return True
    with rasterio.open(first) as ds:
        return ds.tags().get("SYNTHETIC", "").lower() == "true"


def acquire(requested: str, sites: Any, params: Params, years: Sequence[int], *, rasters_dir: Path | None,
            data_dir: Path, progress: bool = True, required: Sequence[int] = (),
            units_file: Path | None = None, treated_units: Sequence[str] = ()) -> Acquired:
    """The monthly rasters of ``years`` for ``sites``: built (demo), found (local) or downloaded.

    ``required`` years must have data, else a :class:`SourceError` says what the folder holds.
    ``units_file`` and ``treated_units`` (the county comparison) make the demo plant its
    comparison effects (:mod:`pipeline.demo`); other sources ignore them.
    """
    source = resolve_source(requested, rasters_dir)
    if rasters_dir is not None and source != "local":
        raise ConfigError(f"--rasters is only read with --source local (this run's source is {source})")
    if source == "demo":
        why = "no data credentials configured, so this run uses" if requested == "auto" else "this run uses"
        log.warning("SYNTHETIC DEMO DATA: %s generated rasters; its results are no evidence about North Korea "
                    "(see README 'Real data').", why)
        folder = demo_folder(data_dir, sites, years, params.target_year, progress=progress,
                             units_file=units_file, treated_units=treated_units)
    elif source == "local":
        if rasters_dir is None:
            raise ConfigError("--source local needs --rasters DIR (the folder of monthly rasters)")
        folder = rasters_dir
    else:
        from pipeline.fetch import ensure_months

        folder = ensure_months(source, tuple(years), sites, data_dir, progress=progress,
                               eog_config=params.eog_config)
    available = find_monthly_rasters(folder, eog_config=params.eog_config)
    rasters = [r for r in available if r.year in set(years)]
    data_kind = "synthetic" if source == "demo" or is_synthetic(rasters) else "real"
    if data_kind == "synthetic" and source != "demo":
        log.warning("SYNTHETIC DATA: the rasters in %s are tagged synthetic; outputs are labelled so.", folder)
    missing = [y for y in required if not any(r.year == y for r in rasters)]
    if missing:
        raise SourceError(f"{folder}: no monthly rasters for {', '.join(map(str, missing))} (the folder has "
                          f"{available[0].month} to {available[-1].month}); choose --baseline-year/--target-year "
                          "within that range")
    return Acquired(source, folder, rasters, data_kind)


def demo_folder(data_dir: Path, sites: Any, years: Sequence[int], target_year: int, progress: bool = True,
                units_file: Path | None = None, treated_units: Sequence[str] = ()) -> Path:
    """The synthetic demo for these sites and years, generated once under ``<data_dir>/demo``."""
    from pipeline.demo import DemoSpec, build_demo

    extra: dict[str, Any] = {}
    if units_file is not None:
        inaug = [(str(r.site_id), str(r.inauguration)[:7]) for r in sites.itertuples()
                 if isinstance(getattr(r, "inauguration", None), str) and len(r.inauguration) >= 7]
        extra = {"comparison": True, "units_file": str(units_file), "treated_units": tuple(sorted(treated_units)),
                 "inaugurations": tuple(inaug)}
    spec = DemoSpec(sites=tuple((r.site_id, float(r.center_lon), float(r.center_lat)) for r in sites.itertuples()),
                    years=tuple(years), target_year=target_year, **extra)
    return build_demo(data_dir / "demo", spec, progress=progress)
