"""EOG VNL v2 annual composites: find, fetch, crop, cache one year at a time.

Inputs
    ``{eog_url}/annual/`` (an Apache index of version folders ``v21/``, ``v22/``, ...) and
    ``{eog_url}/annual/{version}/{YYYY}/`` holding ``....{layer}.dat.tif.gz`` global files. EOG
    has named them two ways, both accepted: ``VNL_v21_npp_2021_global_vcmslcfg_c202205302300``,
    ``VNL_v22_npp-j01_2023_global_...`` and, from 2024, ``VNL_npp_2024_global_vcmslcfg_v2_c202502261200``
    (``pipeline.read.sources.EOG_ANNUAL_RE``).
Outputs
    ``<EOG name>.average_masked.dat.tif`` and ``.cf_cvg.dat.tif`` cropped to the box, under
    ``data/eog_annual/<cfg>/``, recorded in the manifest as product ``eog-annual-<cfg>``.

Layers. Radiance: ``average_masked`` by default, the average of the year's cloud-free
nights after VNL v2's outlier removal (fires, boats: a 12-month median filter) with
background pixels zeroed (a 3x3 data-range threshold tied to cf_cvg) (data_sources.md §3.6,
S13); it is the layer methods_policy.md §4.1 names for annual VIIRS, and it plays the role the
monthly median plays for monthly composites. Validity: ``cf_cvg``, the year's count of
cloud-free observations, read with the same ``min_cf_cvg`` rule as months. Authentication,
resumable transfers, verification and cropping are those of :mod:`pipeline.fetch.eog`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import EOG_CONFIGS
from pipeline.errors import ConfigError, DownloadError
from pipeline.fetch.eog import EogAuth, Links, verify_gzip, write_layer
from pipeline.fetch.http import NotPublished, fetch_file, get_text, public_url
from pipeline.fetch.manifest import Context
from pipeline.provenance import sha256
from pipeline.read.sources import EOG_ANNUAL_RADIANCE, EOG_ANNUAL_RE

log = logging.getLogger(__name__)

RADIANCE_LAYER = EOG_ANNUAL_RADIANCE[0]  # average_masked
LAYERS = (RADIANCE_LAYER, "cf_cvg")
FALLBACK_VERSIONS = ("v22", "v21")  # tried when the annual/ index cannot be listed


def cache_folder(data_dir: Path, cfg: str) -> Path:
    return Path(data_dir) / "eog_annual" / cfg


def product_name(cfg: str) -> str:
    return f"eog-annual-{cfg}"


def _hrefs(html: str) -> list[str]:
    p = Links()
    p.feed(html)
    return [h for h in p.hrefs if "?" not in h]


def version_folders(html: str) -> list[str]:
    """``v2*`` folders of the annual index, newest (highest number) first."""
    names = {h.rstrip("/").rsplit("/", 1)[-1] for h in _hrefs(html) if h.endswith("/")}
    found = [n for n in names if re.fullmatch(r"v2\d*", n)]
    return sorted(found, key=lambda n: int(n[1:].ljust(2, "0")), reverse=True)


def pick_year(names: list[str], year: int, cfg: str) -> dict[str, str]:
    """The layer -> file name of the newest composite of ``year`` and ``cfg`` holding the radiance
    layer (S-NPP alone preferred over a merged npp-j01 file, to match the monthly satellite)."""
    groups: dict[tuple[bool, str, str], dict[str, str]] = {}
    for name in names:
        if not name.endswith(".gz"):
            continue
        m = EOG_ANNUAL_RE.match(name[:-3])
        if not m or int(m["year"]) != year or m["cfg"] != cfg or m["tile"] != "global":
            continue
        key = (m["sat"] == "npp", m["stamp"], name[: m.start("layer")])
        groups.setdefault(key, {})[m["layer"]] = name
    for key in sorted(groups, reverse=True):
        if RADIANCE_LAYER in groups[key]:
            return {lyr: groups[key][lyr] for lyr in LAYERS if lyr in groups[key]}
    return {}


def ensure_year_fn(ctx: Context, cfg: str) -> Callable[[int], str]:
    if cfg not in EOG_CONFIGS:
        raise ConfigError(f"--eog-config {cfg}: use {' or '.join(EOG_CONFIGS)}")
    auth = EogAuth(ctx.settings, ctx.session)
    if not (auth.static or auth.can_login):
        log.warning(
            "EOG: no credentials configured; trying without (works only for an open mirror). %s",
            auth.hint,
        )
    versions: list[str] = []

    def fetch(year: int) -> str:
        if not versions:
            versions.extend(_versions(ctx, auth))
        return ensure_year(ctx, auth, cfg, year, versions)

    return fetch


def _versions(ctx: Context, auth: EogAuth) -> list[str]:
    base = f"{ctx.settings.eog_url.rstrip('/')}/annual/"
    try:
        found = version_folders(get_text(ctx.session, base, auth))
    except NotPublished:
        found = []
    return found or list(FALLBACK_VERSIONS)


def ensure_year(ctx: Context, auth: EogAuth, cfg: str, year: int, versions: list[str]) -> str:
    """'cached' or 'downloaded'; NotPublished when no version folder has the year."""
    label, product = str(year), product_name(cfg)
    if ctx.manifest.complete(product, label, LAYERS, ctx.bbox, ctx.data_dir):
        return "cached"
    base, files = "", {}
    for version in versions:
        base = f"{ctx.settings.eog_url.rstrip('/')}/annual/{version}/{year}/"
        try:
            names = [h.rsplit("/", 1)[-1] for h in _hrefs(get_text(ctx.session, base, auth))]
        except NotPublished:
            continue
        files = pick_year(names, year, cfg)
        if files:
            break
    if not files:
        raise NotPublished(
            f"no {year} {cfg} {RADIANCE_LAYER} composite under annual/{{{','.join(versions)}}}/"
        )
    if "cf_cvg" not in files:
        raise DownloadError(
            f"{public_url(base)}: {files[RADIANCE_LAYER]} has no cf_cvg companion; without it "
            "unobserved pixels cannot be told from dark ones"
        )
    raw = ctx.data_dir / "raw" / "eog_annual" / cfg
    out = cache_folder(ctx.data_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sources: list[dict[str, Any]] = []
    fetched: dict[str, Any] = {}
    for layer, name in files.items():  # every layer verified before any is cached: no half year
        gz = fetch_file(
            ctx.session, base + name, raw / name, auth, verify=verify_gzip, progress=ctx.progress
        )
        sources.append({"url": base + name, "size": gz.stat().st_size, "sha256": sha256(gz)})
        fetched[layer] = gz
    for layer, gz in fetched.items():
        written[layer] = write_layer(
            f"/vsigzip/{gz.as_posix()}",
            out / gz.name[:-3],
            layer,
            ctx.bbox,
            base + gz.name,
            product="EOG VNL v2 annual",
        )
    ctx.manifest.forget(product, label, ctx.data_dir, keep=written.values())
    for layer, path in written.items():
        ctx.manifest.record(
            path,
            ctx.data_dir,
            sources,
            product=product,
            month=label,
            layer=layer,
            bbox=list(ctx.bbox),
        )
    ctx.manifest.save()
    for s in sources:
        (raw / s["url"].rsplit("/", 1)[-1]).unlink(missing_ok=True)
    return "downloaded"
