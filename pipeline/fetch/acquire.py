"""Acquire: turn ``--source auto|demo|local|eog|blackmarble`` into monthly rasters and a data kind.

Inputs
    The requested source, the sites (for the demo's towns and the download area), the
    years wanted, ``--rasters`` (local) and ``--data-dir`` (demo and download caches).
Outputs
    :class:`Acquired`: the resolved source, the folder read, the rasters of the wanted years
    (monthly, or annual with ``Params.product``), whether they are ``synthetic`` or ``real``,
    and the other product's rasters when they are at hand for the same years (cached, or in
    the same ``--rasters`` folder; never downloaded for this), for the robustness grid.

Why one place: what counts as synthetic decides every label the outputs carry, so it
is decided once, here, from the source *and* the files (demo folders carry a marker,
demo GeoTIFFs a ``SYNTHETIC=true`` tag, so generated rasters copied elsewhere and read
with ``--source local`` are still labelled).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Params, load_data_settings
from pipeline.errors import ConfigError, SourceError
from pipeline.read.sources import MonthlyRaster, find_annual_rasters, find_monthly_rasters
from pipeline.words import say, synthetic_notice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acquired:
    source: str  # resolved: demo, local, eog or blackmarble
    folder: Path
    rasters: list[MonthlyRaster]
    data_kind: str  # "synthetic" or "real"
    product: str = "monthly"
    alternatives: dict[str, list[MonthlyRaster]] = field(
        default_factory=dict
    )  # other product, same years


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

    from pipeline.fetch.demo import is_synthetic_folder

    if not rasters:
        return False
    first = rasters[0].radiance
    if is_synthetic_folder(first.parent):
        return True
    with rasterio.open(first) as ds:
        return ds.tags().get("SYNTHETIC", "").lower() == "true"


def acquire(
    requested: str,
    sites: Any,
    params: Params,
    years: Sequence[int],
    *,
    rasters_dir: Path | None,
    data_dir: Path,
    progress: bool = True,
    required: Sequence[int] = (),
) -> Acquired:
    """The monthly rasters of ``years`` for ``sites``: read from the demo world, found (local) or
    downloaded (the sites give the download area).

    ``required`` years must have data, else a :class:`SourceError` says what the folder holds.
    """
    source = resolve_source(requested, rasters_dir)
    if rasters_dir is not None and source != "local":
        raise ConfigError(
            f"--rasters is only read with --source local (this run's source is {source})"
        )
    product = params.product
    if source == "demo" and product == "annual":
        raise ConfigError(
            "--product annual: the synthetic demo is monthly; use --source eog|blackmarble "
            "(or --source local --rasters DIR of annual composites)"
        )
    if source == "demo":
        why = say("synthetic_no_credentials" if requested == "auto" else "synthetic_requested")
        log.warning("%s (%s)", synthetic_notice(), say("synthetic_demo_run", why=why))
        folder = demo_folder(data_dir, years, progress=progress)
    elif source == "local":
        if rasters_dir is None:
            raise ConfigError("--source local needs --rasters DIR (the folder of monthly rasters)")
        folder = rasters_dir
    else:
        from pipeline.fetch import ensure_months

        folder = ensure_months(
            source,
            tuple(years),
            sites,
            data_dir,
            progress=progress,
            eog_config=params.eog_config,
            product=product,
        )
    available = _find(product, folder, params.eog_config)
    rasters = [r for r in available if r.year in set(years)]
    data_kind = "synthetic" if source == "demo" or is_synthetic(rasters) else "real"
    if data_kind == "synthetic" and source != "demo":
        log.warning("%s (%s)", synthetic_notice(), say("synthetic_tagged", folder=folder))
    missing = [y for y in required if not any(r.year == y for r in rasters)]
    if missing:
        raise SourceError(
            f"{folder}: no {'annual composites' if product == 'annual' else 'monthly rasters'} for "
            f"{', '.join(map(str, missing))} (the folder has {available[0].month} to "
            f"{available[-1].month}); choose --baseline-year/--target-year within that range"
        )
    alternatives = {}
    if source != "demo":
        alt = _other_product(source, product, folder, data_dir, params.eog_config, years, required)
        if alt:
            alternatives[alt[0]] = alt[1]
    return Acquired(source, folder, rasters, data_kind, product, alternatives)


def _find(product: str, folder: Path, eog_config: str) -> list[MonthlyRaster]:
    if product == "annual":
        return list(find_annual_rasters(folder, eog_config=eog_config))
    return find_monthly_rasters(folder, eog_config=eog_config)


def _other_product(
    source: str,
    product: str,
    folder: Path,
    data_dir: Path,
    eog_config: str,
    years: Sequence[int],
    required: Sequence[int],
) -> tuple[str, list[MonthlyRaster]] | None:
    """The other product's rasters for ``years``, when they are already here and cover ``required``."""
    from pipeline.config import PRODUCTS

    other = next(p for p in PRODUCTS if p != product)
    where: Path | None
    if source == "local":
        where = folder
    else:
        from pipeline.fetch import cache_folders

        where = cache_folders(source, data_dir, eog_config).get(other)
    if where is None or not Path(where).is_dir():
        return None
    logger = logging.getLogger("pipeline.read.sources")
    level = logger.level
    logger.setLevel(logging.ERROR)  # a folder of one product names the other's files as skipped
    try:
        found = [r for r in _find(other, Path(where), eog_config) if r.year in set(years)]
    except SourceError:
        return None
    finally:
        logger.setLevel(level)
    if not found or any(not any(r.year == y for r in found) for y in required):
        return None
    log.info(
        "%s %s rasters for the same years found in %s: the robustness grid gains a product dimension",
        other,
        source,
        where,
    )
    return other, found


def demo_folder(data_dir: Path, years: Sequence[int], progress: bool = True) -> Path:
    """The synthetic demo world's folder under ``<data_dir>/demo``, with the months of ``years``
    generated (once; later runs add the months they need). The same world whatever the run's sites,
    claim or flags (:func:`pipeline.fetch.world.load_world`)."""
    from pipeline.fetch.demo import build_demo
    from pipeline.fetch.world import load_world

    return build_demo(data_dir / "demo", load_world().spec_for(years), progress=progress)
