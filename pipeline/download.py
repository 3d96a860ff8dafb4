"""Download: fetch real monthly products once, verify them, and cache a cropped copy.

Inputs
    A source (``eog`` or ``blackmarble``), the months wanted, a bounding box (from the
    sites, padded), ``data/`` and the credentials of :func:`pipeline.config.load_data_settings`.
Outputs
    Cropped, tiled (256 px), DEFLATE-compressed cloud-optimised GeoTIFFs per month under
    ``data/eog/<cfg>/`` or ``data/blackmarble/`` (names that :mod:`pipeline.sources`
    reads), and ``data/manifest.json`` with source URL, size and sha256 of each.

Why the care: users of night-light tools lose hours to HTML login pages saved as data,
half files left after a dropped connection and expired tokens. So every transfer goes
to ``<name>.part``, resumes with a Range request, is checked (size, archive integrity,
HDF5 signature) and only then renamed; HTML or 401/403 where data was expected raises
:class:`~pipeline.errors.AuthError`; 5xx and timeouts are retried with backoff
(urllib3 ``Retry``); a month is done only when its files match the manifest.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import logging
import os
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from pipeline.config import DataSettings, load_data_settings
from pipeline.errors import AuthError, ConfigError, DownloadError

log = logging.getLogger(__name__)

PAD_DEG = 0.15  # sites' bbox padding: room for buffers and VIIRS blooming
NK_WINDOW = (124.0, 37.5, 131.0, 43.0)  # used when no sites are given
BACKOFF_FACTOR = 0.5  # urllib3 sleeps factor * 2**(n-1) s between retries (first one immediate)
STREAM_ATTEMPTS = 5  # resumptions after a connection dropped mid-file
TIMEOUT = (15, 120)  # connect, read (s)
CHUNK = 1 << 16  # 64 KB: what a dropped connection can cost, and the progress step
USER_AGENT = "nightlights-downloader/0.1 (python-requests)"


class NotPublished(DownloadError):
    """The provider has no file for this month (yet)."""


class Auth(Protocol):
    def headers(self) -> dict[str, str]: ...

    def renew(self) -> bool: ...

    hint: str


@dataclass
class StaticToken:
    """A ready bearer token (EARTHDATA_TOKEN, EOG_TOKEN); cannot renew itself."""

    token: str | None
    hint: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def renew(self) -> bool:
        return False


# --------------------------------------------------------------------------- HTTP


TRUSTED_REDIRECT_SUFFIXES = (".nasa.gov", ".mines.edu")  # LAADS signs URLs on other NASA hosts
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _keeps_token(old: str, new: str) -> bool:
    """Whether a redirect from ``old`` to ``new`` may carry the bearer token.

    Only to the same host, to a provider host over https, or between loopback addresses
    (a local mirror or the test server); never on a downgrade from https to http.
    """
    a, b = urlsplit(old), urlsplit(new)
    if a.scheme == "https" and b.scheme != "https":
        return False
    host = (b.hostname or "").lower()
    if host == (a.hostname or "").lower():
        return True
    if host in _LOOPBACK and (a.hostname or "").lower() in _LOOPBACK:
        return True
    return b.scheme == "https" and host.endswith(TRUSTED_REDIRECT_SUFFIXES)


class KeepAuthSession(requests.Session):
    """requests drops Authorization on a redirect to another host; LAADS answers a
    download with a 302 to a signed URL on another NASA host that still wants the bearer
    token, so keep it there (see :func:`_keeps_token`), and nowhere else."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if not _keeps_token(response.request.url or "", prepared_request.url or ""):
            prepared_request.headers.pop("Authorization", None)


def make_session() -> requests.Session:
    """A session retrying 5xx, 429 and connection errors with exponential backoff."""
    retry = Retry(total=5, connect=5, read=3, status=4, backoff_factor=BACKOFF_FACTOR, backoff_max=60,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                  raise_on_status=False, respect_retry_after_header=True)
    s = KeepAuthSession()
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    return s


def public_url(url: str) -> str:
    """The URL as it may be logged or stored: no user:password, query or fragment
    (signed redirect URLs carry credentials in their query)."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def looks_like_html(head: bytes) -> bool:
    return head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def _auth_error(url: str, what: str, auth: Auth | None) -> AuthError:
    hint = auth.hint if auth is not None else "configure credentials (README 'Real data')"
    return AuthError(f"authentication failed: {public_url(url)} {what}; {hint}")


def get(session: requests.Session, url: str, auth: Auth | None, *, stream: bool = False,
        headers: dict[str, str] | None = None) -> requests.Response:
    """GET with auth; renew the token once on 401/403; 404 -> NotPublished."""
    for attempt in (1, 2):
        try:
            r = session.get(url, headers={**(auth.headers() if auth else {}), **(headers or {})},
                            stream=stream, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise DownloadError(f"{public_url(url)}: request failed after retries "
                                f"({e.__class__.__name__}); check the network or the mirror URL") from None
        if r.status_code in (401, 403):
            r.close()
            if attempt == 1 and auth is not None and auth.renew():
                continue
            raise _auth_error(url, f"answered HTTP {r.status_code}", auth)
        if r.status_code == 404:
            r.close()
            raise NotPublished(f"{public_url(url)}: not found (HTTP 404)")
        if r.status_code >= 400 and r.status_code != 416:
            r.close()
            raise DownloadError(f"{public_url(url)}: HTTP {r.status_code} after retries; try again later")
        return r
    raise AssertionError("unreachable")


def get_text(session: requests.Session, url: str, auth: Auth | None, expect: str = "html") -> str:
    """A listing page (HTML index or JSON). HTML where JSON was expected is a login page."""
    r = get(session, url, auth)
    text = r.text
    if expect == "json" and looks_like_html(text[:200].encode()):
        raise _auth_error(url, "returned an HTML page instead of the JSON listing", auth)
    if expect == "html" and _is_login_page(text):
        raise _auth_error(url, "returned a login page instead of the directory listing", auth)
    return text


def _is_login_page(text: str) -> bool:
    low = text[:20000].lower()
    return ('type="password"' in low or "kc-form-login" in low or "openid-connect/auth" in low
            or "urs.earthdata.nasa.gov/oauth" in low)


def fetch_file(session: requests.Session, url: str, dest: Path, auth: Auth | None, *,
               verify: Callable[[Path], None], expected_size: int | None = None,
               progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it when possible.

    ``verify(path)`` raises DownloadError for a corrupt file; a file that fails it is
    deleted and fetched once more from scratch. ``dest`` exists only when complete.
    """
    if dest.exists():
        try:
            verify(dest)
            return dest
        except DownloadError:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for fresh in (False, True):
        if fresh:
            part.unlink(missing_ok=True)
        _transfer(session, url, part, auth, expected_size, progress, dest.name)
        try:
            verify(part)
        except DownloadError as e:
            log.warning("%s; downloading it again from the start", e)
            continue
        os.replace(part, dest)
        return dest
    part.unlink(missing_ok=True)
    raise DownloadError(f"{public_url(url)}: downloaded file fails verification twice; "
                        "the server may be serving a broken file, try again later")


def _transfer(session: requests.Session, url: str, part: Path, auth: Auth | None,
              expected_size: int | None, progress: bool, label: str) -> None:
    for attempt in range(1, STREAM_ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if expected_size and offset == expected_size:
            return
        if expected_size and offset > expected_size:
            part.unlink()
            offset = 0
        r = get(session, url, auth, stream=True, headers={"Range": f"bytes={offset}-"} if offset else None)
        with r:
            if r.status_code == 416:  # range beyond the file: our part is stale, restart
                part.unlink(missing_ok=True)
                continue
            if offset and r.status_code != 206:
                log.info("%s: server ignored the resume request; restarting the file", label)
                offset = 0
            if "text/html" in r.headers.get("Content-Type", ""):
                raise _auth_error(url, "returned an HTML page (a login page?) instead of data", auth)
            total = _total_size(r, offset)
            if expected_size and total and total != expected_size:
                raise DownloadError(f"{public_url(url)}: server announces {total} bytes, listing said "
                                    f"{expected_size}; try again later")
            try:
                _stream(r, part, offset, total or expected_size, url, auth, progress, label)
            except (requests.RequestException, OSError) as e:
                if not isinstance(e, requests.RequestException | ConnectionError | TimeoutError):
                    raise DownloadError(f"{part}: cannot write ({e.__class__.__name__}: {e}); "
                                        "free disk space or choose another --data-dir") from e
                log.warning("%s: connection lost at %s (%s); resuming (attempt %d of %d)", label,
                            _human(part.stat().st_size if part.exists() else 0), e.__class__.__name__,
                            attempt, STREAM_ATTEMPTS)
                time.sleep(BACKOFF_FACTOR * 2 ** (attempt - 1))
                continue
        size = part.stat().st_size
        want = total or expected_size
        if want and size != want:
            log.warning("%s: got %s of %s; resuming", label, _human(size), _human(want))
            continue
        return
    raise DownloadError(f"{public_url(url)}: connection kept dropping ({STREAM_ATTEMPTS} attempts); "
                        "run the same command again to resume")


def _total_size(r: requests.Response, offset: int) -> int | None:
    if r.status_code == 206:
        cr = r.headers.get("Content-Range", "")
        if "/" in cr and not cr.endswith("*"):
            return int(cr.rsplit("/", 1)[1])
    length = r.headers.get("Content-Length")
    if length and "Content-Encoding" not in r.headers:
        return int(length) + (offset if r.status_code == 206 else 0)
    return None


def _stream(r: requests.Response, part: Path, offset: int, total: int | None, url: str,
            auth: Auth | None, progress: bool, label: str) -> None:
    mode = "ab" if r.status_code == 206 else "wb"
    first = True
    with open(part, mode) as f, tqdm(total=total, initial=offset if mode == "ab" else 0, unit="B",
                                     unit_scale=True, unit_divisor=1024, desc=label[:40], leave=False,
                                     disable=not progress, dynamic_ncols=True) as bar:
        for chunk in r.iter_content(CHUNK):
            if first:
                first = False
                if "text/html" in r.headers.get("Content-Type", "") or looks_like_html(chunk[:64]):
                    f.close()
                    if mode == "wb":
                        part.unlink(missing_ok=True)
                    raise _auth_error(url, "returned an HTML page (a login page?) instead of data", auth)
            f.write(chunk)
            bar.update(len(chunk))


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- manifest


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
            log.warning("%s: unreadable (%s); cached months will be checked again", path, e.__class__.__name__)
            return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        doc = {"about": "files cached by 'nightlights download': source URL (no credentials), size, sha256",
               "files": dict(sorted(self.files.items()))}
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def record(self, file: Path, data_dir: Path, sources: list[dict[str, Any]], **info: Any) -> None:
        info["sources"] = [{**src, "url": public_url(src["url"])} for src in sources]
        self.files[file.relative_to(data_dir).as_posix()] = {
            "size": file.stat().st_size, "sha256": sha256(file), **info}

    def entries(self, product: str, month: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.files.items() if v.get("product") == product and v.get("month") == month}

    def complete(self, product: str, month: str, layers: Iterable[str], bbox: Bbox, data_dir: Path) -> bool:
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


Bbox = tuple[float, float, float, float]


def covers(outer: Any, inner: Bbox, tol: float = 1e-6) -> bool:
    if not outer or len(outer) != 4:
        return False
    w, s, e, n = (float(v) for v in outer)
    return w <= inner[0] + tol and s <= inner[1] + tol and e >= inner[2] - tol and n >= inner[3] - tol


def sites_bbox(sites: Any, pad: float = PAD_DEG) -> Bbox:
    w, s, e, n = (float(v) for v in sites.to_crs("EPSG:4326").total_bounds)
    return (max(w - pad, -180.0), max(s - pad, -90.0), min(e + pad, 180.0), min(n + pad, 90.0))


# --------------------------------------------------------------------------- writing


def write_cog(path: Path, array: np.ndarray, transform: Any, nodata: float | None,
              tags: dict[str, str], crs: Any = "EPSG:4326") -> None:
    """Write a tiled (256), DEFLATE-compressed COG via a ``.part`` name, then rename."""
    import rasterio

    tmp = path.with_name(path.name + ".part")
    profile = {"driver": "COG", "width": array.shape[1], "height": array.shape[0], "count": 1,
               "dtype": array.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "DEFLATE", "blocksize": 256, "predictor": "YES", "overviews": "NONE",
               "BIGTIFF": "IF_SAFER"}
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(array, 1)
        ds.update_tags(**tags)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- months


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


def month_list(start: str, end: str) -> list[tuple[int, int]]:
    try:
        y0, m0 = (int(v) for v in start.split("-"))
        y1, m1 = (int(v) for v in end.split("-"))
        if not (1 <= m0 <= 12 and 1 <= m1 <= 12):
            raise ValueError
    except ValueError:
        raise ConfigError(f"month range {start}..{end}: use YYYY-MM, e.g. --start 2024-01 --end 2025-12") from None
    months = [(y, m) for y in range(y0, y1 + 1) for m in range(1, 13) if (y0, m0) <= (y, m) <= (y1, m1)]
    if not months:
        raise ConfigError(f"month range {start}..{end} is empty; --start must not be after --end")
    return months


def download_months(source: str, months: list[tuple[int, int]], bbox: Bbox, data_dir: Path, *,
                    progress: bool = True, eog_config: str = "vcmslcfg", geometries: Any = None,
                    settings: DataSettings | None = None) -> tuple[Path, dict[str, list[str]]]:
    """Fetch what is missing; return the cache folder and months by outcome."""
    from pipeline import blackmarble, eog

    settings = settings or load_data_settings()
    ctx = Context(make_session(), settings, Path(data_dir), bbox, Manifest.load(Path(data_dir)), progress,
                  geometries)
    today = dt.date.today()
    outcome: dict[str, list[str]] = {"cached": [], "downloaded": [], "not_published": []}
    if source == "eog":
        folder, fetch = eog.cache_folder(ctx.data_dir, eog_config), eog.ensure_month_fn(ctx, eog_config)
    elif source == "blackmarble":
        folder, fetch = blackmarble.cache_folder(ctx.data_dir), blackmarble.ensure_month_fn(ctx)
    else:
        raise ConfigError(f"--source {source}: downloads exist for eog and blackmarble only")
    log.info("%s: %d month(s) over lon %.2f..%.2f, lat %.2f..%.2f into %s", source, len(months),
             bbox[0], bbox[2], bbox[1], bbox[3], folder)
    for year, month in tqdm(months, desc=f"{source} months", unit="month", disable=not progress or len(months) < 2):
        label = f"{year}-{month:02d}"
        if dt.date(year, month, calendar.monthrange(year, month)[1]) >= today:
            log.info("%s: month not over yet; skipped", label)
            outcome["not_published"].append(label)
            continue
        try:
            outcome[fetch(year, month)].append(label)
        except NotPublished as e:
            log.warning("%s %s: not published yet, skipped (%s)", source, label, e)
            outcome["not_published"].append(label)
    ctx.manifest.save()
    return folder, outcome


def ensure_months(source: str, years: tuple[int, ...], sites: Any, data_dir: Path, progress: bool,
                  eog_config: str = "vcmslcfg") -> Path:
    """Download whatever is missing for every month of ``years`` over the sites' padded bbox."""
    months = [(y, m) for y in sorted(set(years)) for m in range(1, 13)]
    geoms = list(sites.to_crs("EPSG:4326").geometry.buffer(PAD_DEG).values)
    folder, outcome = download_months(source, months, sites_bbox(sites), Path(data_dir), progress=progress,
                                      eog_config=eog_config, geometries=geoms)
    log.info("%s: %d month(s) already cached, %d downloaded, %d not published", source,
             len(outcome["cached"]), len(outcome["downloaded"]), len(outcome["not_published"]))
    return folder


# --------------------------------------------------------------------------- CLI


def add_download_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                        formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    sp = sub.add_parser(
        "download", parents=[common], formatter_class=formatter, help="fetch and cache real monthly data",
        description=textwrap.dedent("""\
            Fetch EOG VNL monthly v10 or NASA Black Marble VNP46A3 months for an area, verify
            them and cache cropped GeoTIFFs under --data-dir (plus data/manifest.json with
            source URL, size and sha256). Months already cached are not fetched again; an
            interrupted download resumes; months not yet published are skipped with a warning.

            Credentials (environment or the user config's 'data:' section; README 'Real data'):
              EOG           EOG_TOKEN, or EOG_CLIENT_ID, EOG_CLIENT_SECRET, EOG_USERNAME, EOG_PASSWORD
              Black Marble  EARTHDATA_TOKEN
            Mirrors: NIGHTLIGHTS_EOG_URL, NIGHTLIGHTS_EOG_TOKEN_URL, NIGHTLIGHTS_LAADS_URL."""),
        epilog="Examples:\n  nightlights download --source eog --start 2023-01 --end 2025-12\n"
               "  nightlights download --source blackmarble --start 2024-01 --end 2024-12 "
               "--bbox 124 37.5 131 43\n  nightlights download --source eog --sites aoi/sites_2024.geojson "
               "--start 2025-01 --end 2025-06 --eog-config vcmcfg")
    sp.add_argument("--source", choices=("eog", "blackmarble"), required=True, help="which product")
    sp.add_argument("--start", required=True, metavar="YYYY-MM", help="first month")
    sp.add_argument("--end", required=True, metavar="YYYY-MM", help="last month (inclusive)")
    area = sp.add_mutually_exclusive_group()
    area.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                      help="area in degrees (default: the sites' box padded by 0.15 deg)")
    area.add_argument("--sites", action="extend", nargs="+", type=Path, metavar="PATH",
                      help="site GeoJSON (repeatable; default: every aoi/*.geojson, else lon 124-131, lat 37.5-43)")
    sp.add_argument("--data-dir", type=Path, default=Path("data"), metavar="DIR", help="cache folder (default data/)")
    sp.add_argument("--eog-config", choices=("vcmslcfg", "vcmcfg"), default="vcmslcfg",
                    help="EOG configuration (default vcmslcfg: stray-light corrected)")
    sp.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    months = month_list(args.start, args.end)
    geoms = None
    if args.bbox:
        w, s, e, n = args.bbox
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ConfigError(f"--bbox {w} {s} {e} {n}: need W < E and S < N in degrees")
        bbox: Bbox = (w, s, e, n)
    else:
        paths = args.sites or sorted(Path("aoi").glob("*.geojson"))
        if paths:
            from pipeline.config import Params
            from pipeline.sites import read_sites

            sites = read_sites(paths, Params().default_radius_m)
            bbox = sites_bbox(sites)
            geoms = list(sites.geometry.buffer(PAD_DEG).values)
        else:
            bbox = NK_WINDOW
    folder, outcome = download_months(args.source, months, bbox, args.data_dir, progress=not args.quiet,
                                      eog_config=args.eog_config, geometries=geoms)
    print(f"{args.source}: {len(outcome['downloaded'])} month(s) downloaded, {len(outcome['cached'])} already "
          f"cached, {len(outcome['not_published'])} not published; files in {folder}/")
    if outcome["not_published"]:
        print("not published (skipped): " + ", ".join(outcome["not_published"]))
    return 0
