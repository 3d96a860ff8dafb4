"""EOG VNL monthly v10: find, authenticate, fetch, crop, cache one month at a time.

Inputs
    ``{eog_url}/monthly/v10/{YYYY}/{YYYYMM}/{cfg}/`` Apache directory listings holding
    ``SVDNB_npp_{start}-{end}_{TILE}_{cfg}_v10_c{stamp}.tgz`` (avg_rade9h, cf_cvg, cvg
    GeoTIFFs inside); when the tiled file is missing, the no-tile tree
    ``monthly_notile/...`` with ``....avg_rade9h.tif.gz`` and ``....cf_cvg.tif.gz``.
Outputs
    The pair ``<real EOG name>.avg_rade9h.tif`` / ``.cf_cvg.tif`` cropped to the box,
    georeferenced from the product's own GeoTIFF, under ``data/eog/<cfg>/``.

The creation stamp ``c...`` cannot be predicted, hence the listing scrape. Since May
2025 EOG authenticates with OpenID Connect (Keycloak realm ``eog``): a password grant
with the user's own client id and secret gives a JWT of a few minutes, renewed here
before it runs out (refresh-token grant, else a new login) and on any 401.

Longer than most modules because login (password and refresh grants, never across hosts), listing,
fetching and unpacking archives within a byte budget each carry the checks a hostile server or
archive makes necessary, and they belong together.
"""

from __future__ import annotations

import calendar
import errno
import gzip
import logging
import re
import shutil
import tarfile
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np
import requests

from pipeline.config import DataSettings
from pipeline.errors import AuthError, ConfigError, DownloadError
from pipeline.fetch.http import TIMEOUT, NotPublished, fetch_file, get_text, public_url
from pipeline.fetch.manifest import Bbox, Context, write_cog
from pipeline.provenance import human_size, sha256

log = logging.getLogger(__name__)

LAYERS = ("avg_rade9h", "cf_cvg")
# Upper-left corner names and extents (W, S, E, N) of the six tiles, cut at the equator.
TILES: dict[str, Bbox] = {
    "75N180W": (-180.0, 0.0, -60.0, 75.0),
    "75N060W": (-60.0, 0.0, 60.0, 75.0),
    "75N060E": (60.0, 0.0, 180.0, 75.0),
    "00N180W": (-180.0, -65.0, -60.0, 0.0),
    "00N060W": (-60.0, -65.0, 60.0, 0.0),
    "00N060E": (60.0, -65.0, 180.0, 0.0),
}
TOKEN_MARGIN_S = 30  # renew this long before the announced expiry
MAX_TOKEN_REDIRECTS = 3  # same-origin 307/308 only (see EogAuth._post)


def cache_folder(data_dir: Path, cfg: str) -> Path:
    return Path(data_dir) / "eog" / cfg


def tile_for(bbox: Bbox) -> str | None:
    """The one tile holding the whole box, or None (then the no-tile file is used)."""
    for name, (w, s, e, n) in TILES.items():
        if w <= bbox[0] and bbox[2] <= e and s <= bbox[1] and bbox[3] <= n:
            return name
    return None


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def listing_names(html: str) -> list[str]:
    """File names linked from an Apache index page."""
    p = Links()
    p.feed(html)
    return [h.rsplit("/", 1)[-1] for h in p.hrefs if not h.endswith("/") and "?" not in h]


def pick(names: list[str], year: int, month: int, pattern: str) -> list[str]:
    """Names for this month matching ``pattern`` (a regex tail), newest stamp first."""
    rx = re.compile(rf"^SVDNB_(?:npp|j01|j02)_{year}{month:02d}01-{year}{month:02d}\d\d_{pattern}$")
    found = [n for n in names if rx.match(n)]
    return sorted(found, key=lambda n: re.search(r"_c(\d{12,14})\.", n)[1], reverse=True)  # type: ignore[index]


# --------------------------------------------------------------------------- auth


class EogAuth:
    """Bearer token for EOG: a ready ``EOG_TOKEN``, or OpenID Connect password grant."""

    def __init__(self, settings: DataSettings, session: requests.Session):
        self.session = session
        self.settings = settings
        self.static = settings.eog_token
        self.can_login = bool(
            settings.eog_client_id and settings.eog_username and settings.eog_password
        )
        self._access: str | None = None
        self._expires = 0.0
        self._refresh: str | None = None
        self._refresh_expires = 0.0
        if self.static:
            self.hint = (
                "EOG_TOKEN was refused (EOG tokens last minutes): paste a fresh one, or set "
                "EOG_CLIENT_ID, EOG_CLIENT_SECRET, EOG_USERNAME and EOG_PASSWORD so tokens renew"
            )
        elif self.can_login:
            self.hint = (
                "the token from EOG was refused; check the account at https://eogdata.mines.edu and "
                "EOG_CLIENT_ID/EOG_CLIENT_SECRET (README 'Real data')"
            )
        else:
            self.hint = (
                "set EOG_TOKEN, or EOG_CLIENT_ID, EOG_CLIENT_SECRET, EOG_USERNAME and EOG_PASSWORD "
                "(README 'Real data')"
            )

    def headers(self) -> dict[str, str]:
        if self.static:
            return {"Authorization": f"Bearer {self.static}"}
        if not self.can_login:
            return {}
        if self._access is None or time.monotonic() > self._expires - TOKEN_MARGIN_S:
            self._obtain()
        return {"Authorization": f"Bearer {self._access}"}

    def renew(self) -> bool:
        if self.static or not self.can_login:
            return False
        self._access = None
        self._obtain()
        return True

    def _obtain(self) -> None:
        s = self.settings
        client = {"client_id": s.eog_client_id or ""}
        if s.eog_client_secret:
            client["client_secret"] = str(s.eog_client_secret)
        if self._refresh and time.monotonic() < self._refresh_expires - TOKEN_MARGIN_S:
            try:
                self._token_request(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh, **client}
                )
                return
            except AuthError:
                log.info("EOG refresh token refused; logging in again")
        self._token_request(
            {
                "grant_type": "password",
                "username": s.eog_username or "",
                "password": str(s.eog_password),
                **client,
            }
        )

    def _token_request(self, data: dict[str, str]) -> None:
        url = self.settings.eog_token_url
        r = self._post(url, data)
        if r.status_code in (400, 401, 403):
            try:
                why = str(r.json().get("error_description") or r.json().get("error") or "")[:120]
            except ValueError:
                why = f"HTTP {r.status_code}"
            raise AuthError(
                f"authentication failed: EOG token endpoint {public_url(url)} refused the "
                f"credentials ({why}); check EOG_USERNAME/EOG_PASSWORD and EOG_CLIENT_ID/"
                "EOG_CLIENT_SECRET (since 2025 EOG issues client ids by email, README 'Real data')"
            )
        try:
            r.raise_for_status()
            doc = r.json()
            self._access = str(doc["access_token"])
        except (requests.HTTPError, ValueError, KeyError):
            raise DownloadError(
                f"EOG token endpoint {public_url(url)}: unexpected answer (HTTP {r.status_code}, "
                f"{r.headers.get('Content-Type', '?')}); check NIGHTLIGHTS_EOG_TOKEN_URL"
            ) from None
        now = time.monotonic()
        self._expires = now + float(doc.get("expires_in") or 300)
        self._refresh = doc.get("refresh_token")
        self._refresh_expires = now + float(doc.get("refresh_expires_in") or 1800)
        log.debug("EOG token obtained, valid %ss", doc.get("expires_in"))

    def _post(self, url: str, data: dict[str, str]) -> requests.Response:
        """POST the credentials to the token endpoint, and nowhere else: a redirect is followed
        only to the same origin (scheme, host, port) with the method kept (307, 308); any other
        redirect is an error, so username, password and client secret never reach another host."""
        origin = _origin(url)
        for _ in range(MAX_TOKEN_REDIRECTS + 1):
            try:
                r = self.session.post(url, data=data, timeout=TIMEOUT, allow_redirects=False)
            except requests.RequestException as e:
                raise DownloadError(
                    f"EOG token endpoint {public_url(url)}: unreachable ({e.__class__.__name__}); "
                    "check NIGHTLIGHTS_EOG_TOKEN_URL and the network"
                ) from None
            if not r.is_redirect:
                return r
            target = urljoin(url, r.headers.get("Location", ""))
            r.close()
            if r.status_code not in (307, 308) or _origin(target) != origin:
                raise AuthError(
                    f"EOG token endpoint {public_url(url)} redirected (HTTP {r.status_code}) to "
                    f"{public_url(target)}; credentials are sent only to the configured endpoint, so "
                    "nothing was sent there: if that address is EOG's, set NIGHTLIGHTS_EOG_TOKEN_URL to it"
                )
            url = target
        raise DownloadError(
            f"EOG token endpoint {public_url(url)}: too many redirects; check NIGHTLIGHTS_EOG_TOKEN_URL"
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return (
        p.scheme.lower(),
        (p.hostname or "").lower(),
        p.port or {"http": 80, "https": 443}.get(p.scheme.lower()),
    )


# --------------------------------------------------------------------------- verification and cropping


def verify_tgz(path: Path) -> None:
    """Read the whole archive (gzip CRC, tar headers) and require an avg_rade9h member."""
    try:
        with tarfile.open(path, "r:gz") as tf:
            names = [m.name for m in tf]
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise DownloadError(
            f"{path.name}: broken or truncated archive ({e.__class__.__name__})"
        ) from None
    if not any(n.endswith(".avg_rade9h.tif") for n in names):
        raise DownloadError(
            f"{path.name}: archive holds no .avg_rade9h.tif (members: {', '.join(names)[:200]})"
        )


def verify_gzip(path: Path) -> None:
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError) as e:
        raise DownloadError(
            f"{path.name}: broken or truncated gzip file ({e.__class__.__name__})"
        ) from None


# A real tile's layer is 28800 x 18000 float32 (~2 GB) from an archive of some hundreds of MB. A member
# unpacks to at most UNPACK_RATIO x the archive (at least UNPACK_FLOOR, for small test archives), never
# over UNPACK_MAX: a 306 KB archive declaring a sparse member of terabytes filled the disk before these.
UNPACK_MAX, UNPACK_RATIO, UNPACK_FLOOR = 4 << 30, 100, 64 << 20
MAX_CROP_PIXELS = 200_000_000  # 0.8 GB of float32: a 55 x 55 degree box at 15 arc-seconds


def unpack_budget(archive_size: int) -> int:
    """The most bytes one member of an archive of ``archive_size`` bytes may unpack to."""
    return min(UNPACK_MAX, max(UNPACK_FLOOR, UNPACK_RATIO * archive_size))


def unpack_member(
    tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, budget: int, archive: Path
) -> None:
    """Copy one member to ``dest``: refused when its declared size passes ``budget`` or the free space,
    stopped when the bytes read pass ``budget`` (a lying header); the caller removes ``dest`` on failure."""

    def refuse(size: str) -> DownloadError:
        return DownloadError(
            f"{archive}: member {Path(member.name).name} unpacks to {size}, more than the "
            f"{human_size(budget)} allowed for an archive of {human_size(archive.stat().st_size)} (a real EOG "
            "layer is about 2 GB); the file is damaged or not from EOG: delete it and download again"
        )

    if member.size > budget:
        raise refuse(human_size(member.size))
    free = shutil.disk_usage(dest.parent).free
    if member.size > free:
        raise DownloadError(
            f"{dest.parent}: disk full: unpacking {Path(member.name).name} needs {human_size(member.size)}, "
            f"{human_size(free)} free; free space or choose another --data-dir, then run again"
        )
    src = tf.extractfile(member)
    if src is None:
        raise DownloadError(
            f"{archive}: member {member.name} cannot be read; delete the file and download again"
        )
    done = 0
    try:
        with src, open(dest, "wb") as dst:
            while block := src.read(1 << 22):
                done += len(block)
                if done > budget:
                    raise refuse(f"more than {human_size(budget)}")
                dst.write(block)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DownloadError(
            f"{dest.parent}: disk full while unpacking {Path(member.name).name} ({human_size(done)} "
            f"of {human_size(member.size)} written); free space or choose another --data-dir, then "
            "run again"
        ) from None


def crop(src: str, bbox: Bbox) -> tuple[np.ndarray, object, float | None, object, dict[str, str]]:
    """The pixels of ``src`` covering ``bbox`` (whole pixels, outward), with georeferencing."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        if ds.crs is None:
            raise DownloadError(f"{src}: the EOG GeoTIFF has no CRS; report this file")
        inv = ~ds.transform
        cols, rows = zip(
            *(inv * (x, y) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])), strict=True
        )
        c0, c1 = (
            max(int(np.floor(min(cols) + 1e-9)), 0),
            min(int(np.ceil(max(cols) - 1e-9)), ds.width),
        )
        r0, r1 = (
            max(int(np.floor(min(rows) + 1e-9)), 0),
            min(int(np.ceil(max(rows) - 1e-9)), ds.height),
        )
        if c1 <= c0 or r1 <= r0:
            raise DownloadError(
                f"{src}: does not overlap lon {bbox[0]}..{bbox[2]}, lat {bbox[1]}..{bbox[3]}"
            )
        window = Window(c0, r0, c1 - c0, r1 - r0)
        if window.width * window.height > MAX_CROP_PIXELS:
            raise DownloadError(
                f"{src}: cropping lon {bbox[0]}..{bbox[2]}, lat {bbox[1]}..{bbox[3]} would read {window.width}x"
                f"{window.height} px (the file declares {ds.width}x{ds.height} px of {abs(ds.transform.a):.3g}); "
                "not a 15-arc-second EOG product, or a box too large for one run: delete the file and download "
                "again, or use fewer sites"
            )
        return ds.read(1, window=window), ds.window_transform(window), ds.nodata, ds.crs, ds.tags()


# --------------------------------------------------------------------------- one month


def ensure_month_fn(ctx: Context, cfg: str) -> Callable[[int, int], str]:
    auth = EogAuth(ctx.settings, ctx.session)
    if not (auth.static or auth.can_login):
        log.warning(
            "EOG: no credentials configured; trying without (works only for an open mirror). %s",
            auth.hint,
        )
    if cfg not in ("vcmslcfg", "vcmcfg"):
        raise ConfigError(f"--eog-config {cfg}: use vcmslcfg or vcmcfg")
    return lambda year, month: ensure_month(ctx, auth, cfg, year, month)


def ensure_month(ctx: Context, auth: EogAuth, cfg: str, year: int, month: int) -> str:
    """'cached' or 'downloaded'; NotPublished when EOG has no file for the month."""
    label = f"{year}-{month:02d}"
    product = f"eog-{cfg}"
    if ctx.manifest.complete(product, label, LAYERS, ctx.bbox, ctx.data_dir) and not _republished(
        ctx, auth, cfg, year, month
    ):
        return "cached"
    tile = tile_for(ctx.bbox)
    if tile is not None:
        try:
            _tiled(ctx, auth, cfg, year, month, tile)
            return "downloaded"
        except NotPublished as e:
            log.info("%s: %s; trying the no-tile tree", label, e)
    _notile(ctx, auth, cfg, year, month)
    return "downloaded"


def _republished(ctx: Context, auth: EogAuth, cfg: str, year: int, month: int) -> bool:
    """With ``ctx.refresh``: whether EOG now lists a newer file (a reprocessed ``c`` stamp) for a cached month.

    One listing request; a month that cannot be listed (offline, moved) counts as unchanged.
    """
    if not ctx.refresh:
        return False
    tile = tile_for(ctx.bbox)
    tree, pattern = (
        ("monthly", rf"{tile}_{cfg}_v10_c\d{{12,14}}\.tgz")
        if tile
        else ("monthly_notile", rf"[0-9A-Za-z]+_{cfg}_v10_c\d{{12,14}}\.avg_rade9h\.tif\.gz")
    )
    try:
        names = pick(
            listing_names(get_text(ctx.session, _month_url(ctx, tree, cfg, year, month), auth)),
            year,
            month,
            pattern,
        )
    except (NotPublished, DownloadError) as e:
        log.info(
            "%d-%02d: cannot check for a republished file (%s); keeping the cached month",
            year,
            month,
            e,
        )
        return False
    cached = ctx.manifest.source_files(f"eog-{cfg}", f"{year}-{month:02d}")
    if not names or names[0] in cached:
        return False
    log.warning(
        "EOG %d-%02d: republished as %s (cached from %s); downloading it again",
        year,
        month,
        names[0],
        ", ".join(sorted(cached)) or "an unknown file",
    )
    return True


def _month_url(ctx: Context, tree: str, cfg: str, year: int, month: int) -> str:
    return f"{ctx.settings.eog_url.rstrip('/')}/{tree}/v10/{year}/{year}{month:02d}/{cfg}/"


def _raw_dir(ctx: Context, cfg: str) -> Path:
    return ctx.data_dir / "raw" / "eog" / cfg


def _tiled(ctx: Context, auth: EogAuth, cfg: str, year: int, month: int, tile: str) -> None:
    base = _month_url(ctx, "monthly", cfg, year, month)
    names = pick(
        listing_names(get_text(ctx.session, base, auth)),
        year,
        month,
        rf"{tile}_{cfg}_v10_c\d{{12,14}}\.tgz",
    )
    if not names:
        raise NotPublished(f"{public_url(base)}: no {tile} {cfg} .tgz in the listing")
    archive = fetch_file(
        ctx.session,
        base + names[0],
        _raw_dir(ctx, cfg) / names[0],
        auth,
        verify=verify_tgz,
        progress=ctx.progress,
    )
    url = base + names[0]
    source = {"url": url, "size": archive.stat().st_size, "sha256": sha256(archive)}
    out = cache_folder(ctx.data_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    budget = unpack_budget(archive.stat().st_size)
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            layer = next((lyr for lyr in LAYERS if member.name.endswith(f".{lyr}.tif")), None)
            if layer is None or not member.isfile():
                continue
            name = Path(member.name).name
            tmp = archive.with_name(name + ".extracted")
            try:
                unpack_member(tf, member, tmp, budget, archive)
                written[layer] = write_layer(tmp.as_posix(), out / name, layer, ctx.bbox, url)
            finally:  # whatever happened (budget, full disk, a signal), no part file is left
                tmp.unlink(missing_ok=True)
    _finish(ctx, cfg, year, month, written, [source])
    archive.unlink()


def _notile(ctx: Context, auth: EogAuth, cfg: str, year: int, month: int) -> None:
    base = _month_url(ctx, "monthly_notile", cfg, year, month)
    names = listing_names(get_text(ctx.session, base, auth))
    out = cache_folder(ctx.data_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sources: list[dict[str, Any]] = []
    for layer in LAYERS:
        found = pick(names, year, month, rf"[0-9A-Za-z]+_{cfg}_v10_c\d{{12,14}}\.{layer}\.tif\.gz")
        if not found:
            raise NotPublished(f"{public_url(base)}: no {layer}.tif.gz in the listing")
        gz = fetch_file(
            ctx.session,
            base + found[0],
            _raw_dir(ctx, cfg) / found[0],
            auth,
            verify=verify_gzip,
            progress=ctx.progress,
        )
        sources.append({"url": base + found[0], "size": gz.stat().st_size, "sha256": sha256(gz)})
        written[layer] = write_layer(
            f"/vsigzip/{gz.as_posix()}", out / found[0][:-3], layer, ctx.bbox, base + found[0]
        )
    _finish(ctx, cfg, year, month, written, sources)
    for s in sources:
        (_raw_dir(ctx, cfg) / s["url"].rsplit("/", 1)[-1]).unlink(missing_ok=True)


def write_layer(
    src: str, dest: Path, layer: str, bbox: Bbox, url: str, product: str = "EOG VNL monthly v10"
) -> Path:
    array, transform, nodata, crs, tags = crop(src, bbox)
    keep = {k: v for k, v in tags.items() if k in ("AREA_OR_POINT",)}
    write_cog(
        dest,
        array,
        transform,
        nodata,
        {**keep, "SOURCE": public_url(url), "LAYER": layer, "PRODUCT": product},
        crs=crs,
    )
    return dest


def _finish(
    ctx: Context, cfg: str, year: int, month: int, written: dict[str, Path], sources: list[dict]
) -> None:
    label = f"{year}-{month:02d}"
    if "avg_rade9h" not in written:
        raise DownloadError(f"EOG {label}: no avg_rade9h layer found in {sources[0]['url']}")
    if "cf_cvg" not in written:
        log.warning(
            "EOG %s: no cf_cvg layer; pixels cannot be checked for cloud-free coverage", label
        )
    product = f"eog-{cfg}"
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
            days=calendar.monthrange(year, month)[1],
        )
    ctx.manifest.save()
