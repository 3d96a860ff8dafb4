"""NASA Black Marble VNP46A3 / VNP46A4 (collection 5200): list, fetch, read, mosaic, crop, cache.

Inputs
    LAADS archive listings ``{laads}/archive/allData/5200/VNP46A3/{YYYY}/{DOY}.json``
    (DOY = first day of the month) naming ``VNP46A3.A{YYYY}{DOY}.h{HH}v{VV}.002.{stamp}.h5``;
    the files behind them, fetched with ``Authorization: Bearer $EARTHDATA_TOKEN`` (kept
    across LAADS's redirect to a signed URL).
Outputs
    ``VNP46A3_YYYY-MM.radiance.tif`` (float32 nW/cm2/sr, scale applied, NaN = fill) and
    ``VNP46A3_YYYY-MM.quality.tif`` (uint8 ``_Quality``: 0 good, 1 poor, 2 gap-filled,
    255 fill) under ``data/blackmarble/``, mosaicked from the tiles touching the sites. The annual
    VNP46A4 (``{YYYY}/001.json``, the same HDF5 group, layers and fill/scale handling) is cached
    as ``VNP46A4_YYYY.{radiance,quality}.tif`` under ``data/blackmarble_annual/``.

Fill value, scale factor and offset are read from each dataset's attributes: collection 1
stored uint16 with fill 65535 and scale 0.1, collection 2 files are reported with float
values and fill -999.9; hard-coding either would silently corrupt the other. Tiles are
10x10 degree plate carree: west = -180 + 10 h, north = 90 - 10 v; the pixel count comes
from the file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from pipeline.errors import DownloadError, SourceError
from pipeline.fetch.http import NotPublished, StaticToken, fetch_file, get_text, public_url
from pipeline.fetch.manifest import Bbox, Context, write_cog
from pipeline.provenance import sha256

log = logging.getLogger(__name__)

PRODUCT = "VNP46A3"
COLLECTION = "5200"
GROUP = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
VARIABLE = "NearNadir_Composite_Snow_Free"
LAYERS = ("radiance", "quality")
QUALITY_FILL = 255
TILE_SIDE = 2400  # pixels per side of a VNP46A3/A4 tile (10 degrees at 15 arc-seconds)
MAX_TILE_SIDE = 2 * TILE_SIDE  # room for a finer future collection, far from what eats memory
H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NAME_RE = re.compile(
    r"^(?P<product>VNP46A[34]|VJ146A[34])\.A(?P<year>\d{4})(?P<doy>\d{3})\.h(?P<h>\d{2})v(?P<v>\d{2})"
    r"\.(?P<coll>\d{3})\.(?P<stamp>\d{13})\.h5$"
)
# Used only when a dataset has no _FillValue attribute (Black Marble User Guide v1.2, Table 9).
FALLBACK_FILL = {"uint16": 65535, "uint8": 255, "float32": -999.9, "float64": -999.9}
TOKEN_HINT = (
    "EARTHDATA_TOKEN is missing, wrong or expired: generate a new one at "
    "https://urs.earthdata.nasa.gov/profile (Generate Token; the profile's Affiliation field must be "
    "filled in), README 'Real data'"
)


ANNUAL_PRODUCT = "VNP46A4"


def cache_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "blackmarble"


def annual_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "blackmarble_annual"


def tile_bounds(h: int, v: int) -> Bbox:
    west, north = -180.0 + 10 * h, 90.0 - 10 * v
    return west, north - 10.0, west + 10.0, north


def tiles_for(bbox: Bbox, geometries: Sequence[Any] | None = None) -> list[tuple[int, int]]:
    """Tiles overlapping the box (with area, not just an edge); only those touching a site
    shape when shapes are given (h31v05 is sea for North Korea though inside its box)."""
    from shapely.geometry import box

    h0, h1 = math.floor((bbox[0] + 180) / 10), math.ceil((bbox[2] + 180) / 10)
    v0, v1 = math.floor((90 - bbox[3]) / 10), math.ceil((90 - bbox[1]) / 10)
    out = []
    for h in range(max(h0, 0), min(h1, 36)):
        for v in range(max(v0, 0), min(v1, 18)):
            t = box(*tile_bounds(h, v))
            if not t.intersection(box(*bbox)).area > 0:
                continue
            if geometries is not None and not any(t.intersection(g).area > 0 for g in geometries):
                continue
            out.append((h, v))
    return out


def first_doy(year: int, month: int) -> int:
    return dt.date(year, month, 1).timetuple().tm_yday


def parse_listing(text: str, url: str) -> list[dict[str, Any]]:
    """LAADS ``.json`` listing: ``{"content": [{"name": ..., "size": ...}]}`` or a bare list."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise DownloadError(
            f"{public_url(url)}: listing is not JSON; check NIGHTLIGHTS_LAADS_URL"
        ) from None
    items = doc.get("content", []) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DownloadError(f"{public_url(url)}: unexpected listing layout (no 'content' list)")
    return [i for i in items if isinstance(i, dict) and "name" in i]


# --------------------------------------------------------------------------- HDF5


def verify_h5(path: Path) -> None:
    """HDF5 signature (at 0 or a user-block offset), opens with h5py, has the grid group."""
    import h5py

    with open(path, "rb") as f:
        head = f.read(8)
        ok = head == H5_SIGNATURE
        offset = 512
        while not ok and offset < min(path.stat().st_size, 1 << 20):
            f.seek(offset)
            ok = f.read(8) == H5_SIGNATURE
            offset *= 2
    if not ok:
        raise DownloadError(f"{path.name}: not an HDF5 file (no signature); truncated or not data")
    try:
        with h5py.File(path, "r") as h5:
            if GROUP not in h5 or VARIABLE not in h5[GROUP]:
                raise DownloadError(
                    f"{path.name}: no {GROUP}/{VARIABLE}; not a VNP46A3/A4 collection-2 file"
                )
            try:
                _check_declared_shape(path, h5[GROUP], VARIABLE)
            except (
                SourceError
            ) as e:  # a download failing its check is fetched once more, then refused
                raise DownloadError(str(e)) from None
    except OSError as e:
        raise DownloadError(
            f"{path.name}: HDF5 file cannot be read ({str(e)[:80]}); truncated?"
        ) from None


def _attr(ds: Any, *names: str) -> float | None:
    for n in names:
        if n in ds.attrs:
            return float(np.asarray(ds.attrs[n]).ravel()[0])
    return None


def decode(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Physical values (float32) and fill mask of one dataset, from its own attributes."""
    raw = ds[()]
    fill = _attr(ds, "_FillValue")
    if fill is None:
        fill = FALLBACK_FILL.get(raw.dtype.name)
        log.warning(
            "%s: no _FillValue attribute; assuming %s (Black Marble User Guide)", ds.name, fill
        )
    if fill is None:
        is_fill = np.zeros(raw.shape, bool)
    elif raw.dtype.kind == "f":
        is_fill = np.isclose(raw, fill, rtol=0, atol=1e-3) | ~np.isfinite(raw)
    else:
        is_fill = raw == fill
    scale = _attr(ds, "scale_factor")
    offset = _attr(ds, "add_offset", "offset")
    values = raw.astype("float32")
    if scale is not None:
        values *= np.float32(scale)
    if offset is not None:
        values += np.float32(offset)
    values[is_fill] = np.nan
    return values, is_fill


@dataclass(frozen=True)
class Tile:
    h: int
    v: int
    radiance: np.ndarray  # float32, NaN = fill
    quality: np.ndarray  # uint8, 255 = fill

    @property
    def res(self) -> float:
        return 10.0 / self.radiance.shape[1]


def read_tile(path: Path, variable: str = VARIABLE) -> Tile:
    """Radiance and quality of one tile; h/v from the file attributes, checked against its name."""
    import h5py

    m = NAME_RE.match(path.name)
    try:
        with h5py.File(path, "r") as h5:
            h, v = _tile_numbers(h5, m, path)
            fields = h5[GROUP]
            _check_declared_shape(path, fields, variable)
            radiance, fill = decode(fields[variable])
            qname = f"{variable}_Quality"
            if qname in fields:
                qds = fields[qname]
                quality = np.asarray(qds[()]).astype("uint8")
                qfill = _attr(qds, "_FillValue")
                quality[(quality == (QUALITY_FILL if qfill is None else int(qfill))) | fill] = (
                    QUALITY_FILL
                )
            else:
                log.warning(
                    "%s: no %s; every observed pixel counts as good quality", path.name, qname
                )
                quality = np.where(fill, QUALITY_FILL, 0).astype("uint8")
    except (OSError, KeyError) as e:
        raise SourceError(f"{path}: cannot read {GROUP}/{variable} ({str(e)[:80]})") from None
    if (
        radiance.ndim != 2
        or radiance.shape[0] != radiance.shape[1]
        or quality.shape != radiance.shape
    ):
        raise SourceError(
            f"{path}: expected square 2-D layers, found {radiance.shape} and {quality.shape}"
        )
    return Tile(h, v, radiance, quality)


def _check_declared_shape(path: Path, fields: Any, variable: str) -> None:
    """Refuse a layer whose declared shape is not a tile's, before reading it: an HDF5 file
    of 6 KB can declare 100000 x 100000 px (unwritten chunks cost nothing on disk) and the
    read would allocate tens of GB. Black Marble tiles are 2400 x 2400 (10 degrees at 15")."""
    for name in (variable, f"{variable}_Quality"):
        if name not in fields:
            continue
        shape = tuple(fields[name].shape)
        if len(shape) != 2 or shape[0] != shape[1] or not 0 < shape[0] <= MAX_TILE_SIDE:
            raise SourceError(
                f"{path}: {name} declares {' x '.join(map(str, shape)) or 'a scalar'} px; a Black "
                f"Marble tile is {TILE_SIDE} x {TILE_SIDE}: the file is damaged or not VNP46A3/A4 "
                "(refused before reading it); delete it and download it again"
            )


def _tile_numbers(h5: Any, m: re.Match[str] | None, path: Path) -> tuple[int, int]:
    def num(key: str) -> int | None:
        if key not in h5.attrs:
            return None
        val = np.asarray(h5.attrs[key]).ravel()[0]
        return int(val.decode() if isinstance(val, bytes) else val)

    h, v = num("HorizontalTileNumber"), num("VerticalTileNumber")
    if m is not None:
        if (h, v) not in ((None, None), (int(m["h"]), int(m["v"]))):
            raise SourceError(f"{path}: name says h{m['h']}v{m['v']} but attributes say h{h}v{v}")
        return int(m["h"]), int(m["v"])
    if h is None or v is None:
        raise SourceError(f"{path}: no tile number in the name or attributes")
    return h, v


def mosaic(tiles: Sequence[Tile], bbox: Bbox) -> tuple[np.ndarray, np.ndarray, Affine]:
    """Paste tiles into one grid covering ``bbox`` (outward to whole pixels)."""
    res = tiles[0].res
    if any(not math.isclose(t.res, res) for t in tiles):
        raise SourceError("Black Marble tiles of one month have different pixel sizes")
    eps = 1e-6
    c0, c1 = math.floor((bbox[0] + 180) / res + eps), math.ceil((bbox[2] + 180) / res - eps)
    r0, r1 = math.floor((90 - bbox[3]) / res + eps), math.ceil((90 - bbox[1]) / res - eps)
    rad = np.full((r1 - r0, c1 - c0), np.nan, "float32")
    qual = np.full(rad.shape, QUALITY_FILL, "uint8")
    for t in tiles:
        n = t.radiance.shape[0]
        tr, tc = t.v * n, t.h * n  # the tile's first global row and column
        rs, re_ = max(r0, tr), min(r1, tr + n)
        cs, ce = max(c0, tc), min(c1, tc + n)
        if rs >= re_ or cs >= ce:
            continue
        rad[rs - r0 : re_ - r0, cs - c0 : ce - c0] = t.radiance[
            rs - tr : re_ - tr, cs - tc : ce - tc
        ]
        qual[rs - r0 : re_ - r0, cs - c0 : ce - c0] = t.quality[
            rs - tr : re_ - tr, cs - tc : ce - tc
        ]
    transform = Affine(res, 0.0, -180.0 + c0 * res, 0.0, -res, 90.0 - r0 * res)
    return rad, qual, transform


# --------------------------------------------------------------------------- one month


def ensure_month_fn(ctx: Context) -> Callable[[int, int], str]:
    token = ctx.settings.earthdata_token
    auth = StaticToken(str(token) if token else None, TOKEN_HINT)
    if not token:
        log.warning(
            "Black Marble: EARTHDATA_TOKEN not set; trying without (works only for an open mirror)"
        )
    return lambda year, month: ensure_month(ctx, auth, year, month)


def ensure_year_fn(ctx: Context) -> Callable[[int], str]:
    """VNP46A4: one file per tile and year, dated ``A{YYYY}001``."""
    token = ctx.settings.earthdata_token
    auth = StaticToken(str(token) if token else None, TOKEN_HINT)
    if not token:
        log.warning(
            "Black Marble: EARTHDATA_TOKEN not set; trying without (works only for an open mirror)"
        )
    return lambda year: ensure_period(
        ctx, auth, ANNUAL_PRODUCT, year, 1, str(year), annual_folder(ctx.data_dir)
    )


def ensure_month(ctx: Context, auth: StaticToken, year: int, month: int) -> str:
    return ensure_period(
        ctx,
        auth,
        PRODUCT,
        year,
        first_doy(year, month),
        f"{year}-{month:02d}",
        cache_folder(ctx.data_dir),
    )


def _listed_tiles(
    ctx: Context, auth: StaticToken, base: str, product: str, year: int, doy: int
) -> dict[tuple[int, int], dict[str, Any]]:
    """The newest listed file of each tile for one period, from the LAADS ``<doy>.json`` listing."""
    listing = parse_listing(
        get_text(ctx.session, f"{base}.json", auth, expect="json"), f"{base}.json"
    )
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for item in listing:
        m = NAME_RE.match(str(item["name"]))
        if m and m["product"] == product and int(m["year"]) == year and int(m["doy"]) == doy:
            key = (int(m["h"]), int(m["v"]))
            if key not in found or str(item["name"]) > str(found[key]["name"]):  # newest stamp
                found[key] = item
    return found


def _same_file(item: dict[str, Any], cached: dict[str, int | None]) -> bool:
    """A listed file is the one cached when its name matches and its listed size (if any) too."""
    name, size = str(item["name"]), str(item.get("size", ""))
    return name in cached and (
        not size.isdigit() or cached[name] is None or int(size) == cached[name]
    )


def ensure_period(
    ctx: Context, auth: StaticToken, product: str, year: int, doy: int, label: str, out: Path
) -> str:
    """One composite period (a month of VNP46A3, a year of VNP46A4): 'cached' or 'downloaded'.

    Writes ``<product>_<label>.radiance.tif`` and ``.quality.tif`` under ``out``.
    """
    complete = ctx.manifest.complete(product, label, LAYERS, ctx.bbox, ctx.data_dir)
    if complete and not ctx.refresh:
        return "cached"
    wanted = tiles_for(ctx.bbox, ctx.geometries)
    if not wanted:
        raise DownloadError(
            f"lon {ctx.bbox[0]}..{ctx.bbox[2]}, lat {ctx.bbox[1]}..{ctx.bbox[3]}: no Black Marble tile"
        )
    base = f"{ctx.settings.laads_url.rstrip('/')}/archive/allData/{COLLECTION}/{product}/{year}/{doy:03d}"
    try:
        found = _listed_tiles(ctx, auth, base, product, year, doy)
    except DownloadError as e:  # includes NotPublished
        if complete:  # refresh asked, archive not reachable: the cache stands
            log.info(
                "%s %s: cannot check for a changed file (%s); keeping the cached period",
                product,
                label,
                e,
            )
            return "cached"
        raise
    missing = [f"h{h:02d}v{v:02d}" for h, v in wanted if (h, v) not in found]
    if missing:
        raise NotPublished(f"{public_url(base)}.json lists no {', '.join(missing)}")
    if complete:
        cached = ctx.manifest.source_files(product, label)
        changed = [str(found[k]["name"]) for k in wanted if not _same_file(found[k], cached)]
        if not changed:
            return "cached"
        log.warning(
            "%s %s: %s changed on LAADS (new name or size); downloading it again",
            product,
            label,
            ", ".join(changed),
        )
    raw = ctx.data_dir / "raw" / "blackmarble"
    tiles: list[Any] = []
    sources: list[dict[str, Any]] = []
    files: list[Path] = []
    for key in wanted:
        item = found[key]
        url = f"{base}/{item['name']}"
        size = int(item["size"]) if str(item.get("size", "")).isdigit() else None
        path = fetch_file(
            ctx.session,
            url,
            raw / str(item["name"]),
            auth,
            verify=verify_h5,
            expected_size=size,
            progress=ctx.progress,
        )
        tiles.append(read_tile(path))
        sources.append({"url": url, "size": path.stat().st_size, "sha256": sha256(path)})
        files.append(path)
    rad, qual, transform = mosaic(tiles, ctx.bbox)
    out.mkdir(parents=True, exist_ok=True)
    tags = {
        "PRODUCT": f"{product} collection {COLLECTION}",
        "VARIABLE": VARIABLE,
        "SOURCE": " ".join(public_url(s["url"]) for s in sources),
    }
    qpath = out / f"{product}_{label}.quality.tif"
    rpath = out / f"{product}_{label}.radiance.tif"
    write_cog(
        qpath,
        qual,
        transform,
        QUALITY_FILL,
        {
            **tags,
            "LAYER": f"{VARIABLE}_Quality",
            "VALUES": "0 good, 1 poor, 2 gap-filled, 255 fill",
        },
    )
    write_cog(
        rpath,
        rad,
        transform,
        float("nan"),
        {
            **tags,
            "LAYER": VARIABLE,
            "UNITS": "nW/cm2/sr",
            "SCALING": "fill masked, scale_factor and offset applied",
        },
    )
    ctx.manifest.forget(product, label, ctx.data_dir, keep=(qpath, rpath))
    for layer, path in (("radiance", rpath), ("quality", qpath)):
        ctx.manifest.record(
            path,
            ctx.data_dir,
            sources,
            product=product,
            month=label,
            layer=layer,
            bbox=list(ctx.bbox),
            tiles=[f"h{h:02d}v{v:02d}" for h, v in wanted],
        )
    ctx.manifest.save()
    for f in files:
        f.unlink(missing_ok=True)
    return "downloaded"
