"""A real HTTP server on 127.0.0.1 imitating EOG, its Keycloak and LAADS, for tests.

Two listening sockets share one state: ``main`` serves Apache-style directory indexes,
``.tgz`` / ``.tif.gz`` / ``.h5`` files with Range support, LAADS ``{DOY}.json`` listings and
an OpenID Connect token endpoint; ``cdn`` is where ``main`` redirects data requests
(like LAADS's 302 to a signed URL on another host) and it checks the bearer token too.
Misbehaviour is queued per path: ``"500"``, ``"drop"`` (connection closed mid-file),
``"html"`` (a login page with HTTP 200), ``"401"``, ``"slow"`` (trickles the body),
``"trickle"`` (one byte per ``trickle_s``); for POST (the token endpoint) ``"307"``/``"302"``/``"308"``
redirect to the same path on ``cdn`` and ``"307-self"`` to the same URL.

Fixture builders make tiny stand-ins with the real names and layouts: EOG GeoTIFFs on the
15 arc-second grid inside a ``.tgz``, VNP46A3 HDF5 files with the real group and variable
names in both fill/scale conventions; the annual products' builders are in
:mod:`tests.loopback_annual`. Listings show sub-folders too (EOG's ``annual/`` index of
version folders). SYNTHETIC: test data only.
"""

from __future__ import annotations

import calendar
import io
import json
import secrets
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in to eog</title></head><body>"
    b'<form id="kc-form-login" action="/realms/eog/login-actions/authenticate" method="post">'
    b'<input name="username"><input name="password" type="password"></form></body></html>'
)
TOKEN_PATH = "/realms/eog/protocol/openid-connect/token"
EOG_RES = 1 / 240
EOG_TILE_ORIGIN = (60.0, 75.0)  # 75N060E upper-left corner


@dataclass
class Request:
    server: str
    method: str
    path: str
    range: str | None
    authorization: str | None
    query: str


@dataclass
class State:
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)  # path prefix -> "401" | "login"
    valid_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.time())
    refresh_tokens: dict[str, float] = field(default_factory=dict)
    redirect_prefixes: list[str] = field(default_factory=list)
    oidc: dict[str, str] = field(
        default_factory=dict
    )  # client_id, client_secret, username, password
    grants: list[str] = field(default_factory=list)  # grant_type of each token request
    token_lifetime: float = 300.0
    slow_bytes_per_s: int = 64 * 1024
    trickle_s: float = 0.1
    log: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def can_bind(host: str) -> bool:
    """Whether a test server can listen on ``host`` (127.0.0.2 is loopback on Linux, not on every system)."""
    import socket

    try:
        with socket.socket() as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


OTHER_HOST = "127.0.0.2"  # "another host" for redirect tests
needs_other_host = pytest.mark.skipif(
    not can_bind(OTHER_HOST), reason=f"cannot listen on {OTHER_HOST}"
)


class Loopback:
    """Start with ``with Loopback() as lb:``; ``lb.url`` is the main server's base URL.

    ``cdn_host``: the address the ``cdn`` server listens on; ``"127.0.0.2"`` makes it
    another host than ``main`` (a stranger a redirect may point at), 127.0.0.1 the same host.
    """

    def __init__(self, cdn_host: str = "127.0.0.1") -> None:
        self.state = State()
        self._servers: list[ThreadingHTTPServer] = []
        self.url = self.cdn_url = ""
        self.cdn_host = cdn_host

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Loopback:
        for name, host in (("main", "127.0.0.1"), ("cdn", self.cdn_host)):
            srv = ThreadingHTTPServer((host, 0), _handler(self, name))
            srv.daemon_threads = True
            threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            ).start()
            self._servers.append(srv)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://{self.cdn_host}:{self._servers[1].server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    # ---------------------------------------------------------------- configuration
    def add(self, path: str, data: bytes) -> None:
        self.state.files[path] = data

    def fault(self, path: str, *behaviours: str) -> None:
        self.state.faults.setdefault(path, []).extend(behaviours)

    def protect(self, prefix: str, how: str = "401") -> None:
        self.state.protected[prefix] = how

    def allow_token(self, token: str, lifetime: float = 3600) -> None:
        self.state.valid_tokens[token] = time.time() + lifetime

    def expire_tokens(self) -> None:
        self.state.valid_tokens.clear()

    def requests(self, contains: str = "", server: str | None = None) -> list[Request]:
        with self.state.lock:
            return [
                r
                for r in self.state.log
                if contains in r.path and (server is None or r.server == server)
            ]

    # ---------------------------------------------------------------- request handling
    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        exp = self.state.valid_tokens.get(header[7:])
        return exp is not None and exp > time.time()

    def _issue(self) -> dict[str, object]:
        access, refresh = "acc-" + secrets.token_hex(8), "ref-" + secrets.token_hex(8)
        self.state.valid_tokens[access] = time.time() + self.state.token_lifetime
        self.state.refresh_tokens[refresh] = time.time() + 1800
        return {
            "access_token": access,
            "expires_in": self.state.token_lifetime,
            "refresh_token": refresh,
            "refresh_expires_in": 1800,
            "token_type": "Bearer",
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        o = self.state.oidc
        self.state.grants.append(form.get("grant_type", ""))
        client_ok = form.get("client_id") == o.get("client_id") and form.get(
            "client_secret"
        ) == o.get("client_secret")
        if (
            form.get("grant_type") == "password"
            and client_ok
            and form.get("username") == o.get("username")
            and form.get("password") == o.get("password")
        ):
            return 200, self._issue()
        if (
            form.get("grant_type") == "refresh_token"
            and client_ok
            and self.state.refresh_tokens.get(form.get("refresh_token", ""), 0) > time.time()
        ):
            return 200, self._issue()
        if not client_ok:
            return 401, {
                "error": "unauthorized_client",
                "error_description": "Invalid client or Invalid client credentials",
            }
        return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}

    def listing(self, path: str) -> bytes | None:
        """Apache index for ``dir/`` or LAADS JSON for ``dir.json`` from the served files."""
        if path.endswith(".json"):
            folder = path[:-5] + "/"
        elif path.endswith("/"):
            folder = path
        else:
            return None
        names = sorted(
            p[len(folder) :]
            for p in self.state.files
            if p.startswith(folder) and "/" not in p[len(folder) :]
        )
        subdirs = sorted(
            {
                p[len(folder) :].split("/")[0] + "/"
                for p in self.state.files
                if p.startswith(folder) and "/" in p[len(folder) :]
            }
        )
        if not names and not (subdirs and not path.endswith(".json")):
            return None
        if path.endswith(".json"):
            return json.dumps(
                {
                    "content": [
                        {
                            "name": n,
                            "size": len(self.state.files[folder + n]),
                            "last-modified": "2025-02-03 10:11",
                            "kind": "file",
                        }
                        for n in names
                    ]
                }
            ).encode()
        rows = "".join(
            f'<tr class="{"odd" if i % 2 else "even"}"><td><a href="{n}">{n}</a></td>'
            f'<td align="right">2025-02-03 10:11</td><td align="right">{len(self.state.files[folder + n])}</td></tr>\n'
            for i, n in enumerate(names)
        )
        rows = (
            "".join(
                f'<tr><td><a href="{d}">{d}</a></td><td align="right">2025-02-03 10:11</td>'
                f'<td align="right">-</td></tr>\n'
                for d in subdirs
            )
            + rows
        )
        return (
            f'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN"><html><head><title>Index of {folder}'
            f"</title></head><body><h1>Index of {folder}</h1><table><tr><th>Name</th><th>Last modified</th>"
            f'<th>Size</th></tr><tr><td><a href="../">Parent Directory</a></td></tr>\n{rows}</table>'
            f"</body></html>"
        ).encode()


def _handler(lb: Loopback, server: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _record(self) -> tuple[str, str]:
            parts = urlsplit(self.path)
            with lb.state.lock:
                lb.state.log.append(
                    Request(
                        server,
                        self.command,
                        parts.path,
                        self.headers.get("Range"),
                        self.headers.get("Authorization"),
                        parts.query,
                    )
                )
            return parts.path, parts.query

        def _send(
            self,
            code: int,
            body: bytes,
            ctype: str = "application/octet-stream",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_POST(self) -> None:
            path, _ = self._record()
            n = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}
            fault = _pop(lb, path)
            if fault == "500":
                return self._send(500, b"busy", "text/plain")
            if fault in ("307", "302", "308"):  # the token endpoint sends the client elsewhere
                return self._send(
                    int(fault), b"", "text/plain", {"Location": f"{lb.cdn_url}{path}"}
                )
            if fault == "307-self":  # ... or to itself, on the same origin
                return self._send(307, b"", "text/plain", {"Location": f"{lb.url}{path}"})
            if path != TOKEN_PATH:
                return self._send(404, b"not found", "text/plain")
            code, doc = lb.token(form)
            self._send(code, json.dumps(doc).encode(), "application/json")

        def do_GET(self) -> None:
            path, _ = self._record()
            fault = _pop(lb, path)
            if fault == "500":
                return self._send(500, b"<html>Internal Server Error</html>", "text/html")
            if fault == "html":
                return self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
            if fault == "401":
                return self._send(401, b"unauthorized", "text/plain")
            if path == "/login":
                return self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
            how = next((h for p, h in lb.state.protected.items() if path.startswith(p)), None)
            if how and not lb._authorised(self.headers.get("Authorization")):
                if how == "login":
                    return self._send(302, b"", "text/html", {"Location": f"{lb.url}/login"})
                return self._send(401, b"<html>401 Unauthorized</html>", "text/html")
            if (
                server == "main"
                and path in lb.state.files
                and any(path.startswith(p) for p in lb.state.redirect_prefixes)
            ):
                sig = "sig-" + secrets.token_hex(6)
                return self._send(
                    302, b"", "text/plain", {"Location": f"{lb.cdn_url}{path}?X-Signature={sig}"}
                )
            if path in lb.state.files:
                return self._file(lb.state.files[path], fault)
            body = lb.listing(path)
            if body is not None:
                return self._send(
                    200,
                    body,
                    "application/json" if path.endswith(".json") else "text/html;charset=UTF-8",
                )
            self._send(404, b"<html>404 Not Found</html>", "text/html")

        def _file(self, data: bytes, fault: str | None) -> None:
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= len(data):
                    return self._send(
                        416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"}
                    )
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if fault == "drop":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if fault == "trickle":  # one byte per trickle_s, as a stuck or hostile server does
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(lb.state.trickle_s)
                except OSError:  # the client gave up
                    pass
                return
            if fault == "slow":
                step = max(lb.state.slow_bytes_per_s // 20, 1)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            self.wfile.write(body)

    return Handler


def _pop(lb: Loopback, path: str) -> str | None:
    with lb.state.lock:
        queue = lb.state.faults.get(path)
        return queue.pop(0) if queue else None


# --------------------------------------------------------------------------- fixture builders


def geotiff_bytes(
    array: np.ndarray, west: float, north: float, res: float, nodata: float | None = None
) -> bytes:
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=array.shape[1],
            height=array.shape[0],
            count=1,
            dtype=array.dtype,
            crs="EPSG:4326",
            transform=from_origin(west, north, res, res),
            nodata=nodata,
        ) as ds:
            ds.write(array, 1)
        return mem.read()


def eog_window(sites: list[tuple[float, float]], pad_px: int = 60) -> tuple[float, float, int, int]:
    """West, north, width, height of a small window on the real 75N060E grid around sites."""
    lons, lats = [s[0] for s in sites], [s[1] for s in sites]
    c0 = int((min(lons) - EOG_TILE_ORIGIN[0]) / EOG_RES) - pad_px
    c1 = int((max(lons) - EOG_TILE_ORIGIN[0]) / EOG_RES) + pad_px
    r0 = int((EOG_TILE_ORIGIN[1] - max(lats)) / EOG_RES) - pad_px
    r1 = int((EOG_TILE_ORIGIN[1] - min(lats)) / EOG_RES) + pad_px
    return EOG_TILE_ORIGIN[0] + c0 * EOG_RES, EOG_TILE_ORIGIN[1] - r0 * EOG_RES, c1 - c0, r1 - r0


def radiance_field(
    west: float,
    north: float,
    res: float,
    shape: tuple[int, int],
    sites: list[tuple[float, float, float]],
    seed: int,
) -> np.ndarray:
    """Background 0.3 nW plus a lit blob of the given peak at each (lon, lat, peak)."""
    rng = np.random.default_rng(seed)
    lon = west + (np.arange(shape[1]) + 0.5) * res
    lat = north - (np.arange(shape[0]) + 0.5) * res
    glon, glat = np.meshgrid(lon, lat)
    field_ = 0.3 + 0.05 * rng.standard_normal(shape)
    for x, y, peak in sites:
        field_ += peak * np.exp(-((glon - x) ** 2 + (glat - y) ** 2) / (2 * (3 * res) ** 2))
    return field_.astype("float32")


def eog_name(
    year: int, month: int, cfg: str = "vcmslcfg", tile: str = "75N060E", stamp: str | None = None
) -> str:
    last = calendar.monthrange(year, month)[1]
    stamp = stamp or f"{year + (month == 12)}{month % 12 + 1:02d}071000"
    return f"SVDNB_npp_{year}{month:02d}01-{year}{month:02d}{last:02d}_{tile}_{cfg}_v10_c{stamp}"


def eog_tgz(
    stem: str, radiance: np.ndarray, cf_cvg: np.ndarray, west: float, north: float
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for layer, arr in (("avg_rade9h", radiance), ("cf_cvg", cf_cvg), ("cvg", cf_cvg + 3)):
            data = geotiff_bytes(arr, west, north, EOG_RES)
            info = tarfile.TarInfo(f"{stem}.{layer}.tif")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def eog_month_dir(year: int, month: int, cfg: str = "vcmslcfg", tree: str = "monthly") -> str:
    return f"/nighttime_light/{tree}/v10/{year}/{year}{month:02d}/{cfg}/"


def bm_h5(
    h: int,
    v: int,
    radiance: np.ndarray,
    quality: np.ndarray,
    convention: str,
    product: str = "VNP46A3",
) -> bytes:
    """A VNP46A3-like HDF5 tile. convention 'c1': uint16, fill 65535, scale 0.1;
    'c2': float32, fill -999.9, scale 1. NaN in ``radiance`` becomes the fill value."""
    import h5py

    buf = io.BytesIO()
    n = radiance.shape[0]
    with h5py.File(buf, "w") as f:
        f.attrs["HorizontalTileNumber"] = np.bytes_(f"{h:02d}")
        f.attrs["VerticalTileNumber"] = np.bytes_(f"{v:02d}")
        f.attrs["ProductID"] = np.bytes_(product)
        g = f.create_group("HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields")
        var = "NearNadir_Composite_Snow_Free"
        if convention == "c1":
            raw = np.where(np.isnan(radiance), 65535, np.round(radiance / 0.1)).astype("uint16")
            d = g.create_dataset(var, data=raw, compression="gzip")
            d.attrs["_FillValue"] = np.array([65535], "uint16")
            d.attrs["scale_factor"] = np.array([0.1], "float64")
            d.attrs["offset"] = np.array([0.0], "float64")
        else:
            raw = np.where(np.isnan(radiance), -999.9, radiance).astype("float32")
            d = g.create_dataset(var, data=raw, compression="gzip")
            d.attrs["_FillValue"] = np.array([-999.9], "float32")
            d.attrs["scale_factor"] = np.array([1.0], "float32")
            d.attrs["add_offset"] = np.array([0.0], "float32")
        d.attrs["units"] = np.bytes_("nW/(cm2 sr)")
        q = g.create_dataset(f"{var}_Quality", data=quality.astype("uint8"), compression="gzip")
        q.attrs["_FillValue"] = np.array([255], "uint8")
        num = g.create_dataset(
            f"{var}_Num", data=np.where(quality == 255, 65535, 8).astype("uint16")
        )
        num.attrs["_FillValue"] = np.array([65535], "uint16")
        g.create_dataset("lat", data=(90 - 10 * v) - (np.arange(n) + 0.5) * 10 / n)
        g.create_dataset("lon", data=(-180 + 10 * h) + (np.arange(n) + 0.5) * 10 / n)
    return buf.getvalue()


def bm_name(year: int, month: int, h: int, v: int) -> str:
    doy = (np.datetime64(f"{year}-{month:02d}-01") - np.datetime64(f"{year}-01-01")).astype(int) + 1
    return f"VNP46A3.A{year}{doy:03d}.h{h:02d}v{v:02d}.002.{year + 1}033101520.h5"


def bm_dir(year: int, month: int) -> str:
    doy = (np.datetime64(f"{year}-{month:02d}-01") - np.datetime64(f"{year}-01-01")).astype(int) + 1
    return f"/archive/allData/5200/VNP46A3/{year}/{doy:03d}/"


def sites_geojson(sites: list[tuple[str, float, float]]) -> str:
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"site_id": sid, "name": sid, "radius_m": 2000},
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                }
                for sid, lon, lat in sites
            ],
        }
    )


# --------------------------------------------------------------------------- whole archives

EOG_SITES = [
    ("alpha", 125.20, 39.20),
    ("bravo", 125.35, 39.35),
    ("charlie", 125.50, 39.25),
    ("delta", 125.30, 39.50),
]
# Around the corner of four Black Marble tiles: h30v05, h30v04, h31v04 (h31v05 only sea here).
BM_SITES = [("papa", 129.70, 39.80), ("quebec", 129.70, 40.30), ("romeo", 130.30, 40.30)]
CHANGE = {
    "alpha": 3.0,
    "bravo": 0.3,
    "papa": 3.0,
    "romeo": 0.3,
}  # peak factor from the last year on


def _peaks(
    sites: list[tuple[str, float, float]], year: int, last_year: int
) -> list[tuple[float, float, float]]:
    return [
        (lon, lat, 8.0 * (CHANGE.get(sid, 1.0) if year == last_year else 1.0))
        for sid, lon, lat in sites
    ]


def populate_eog(
    lb: Loopback,
    years: tuple[int, ...],
    cfg: str = "vcmslcfg",
    sites: list[tuple[str, float, float]] = EOG_SITES,
) -> dict[str, bytes]:
    """Serve tiled EOG months (and a wrong tile and the other config, to be ignored)."""
    west, north, w, h = eog_window([(lon, lat) for _, lon, lat in sites])
    served = {}
    for year in years:
        for month in range(1, 13):
            rad = radiance_field(
                west, north, EOG_RES, (h, w), _peaks(sites, year, max(years)), year * 100 + month
            )
            cvg = np.full((h, w), 2 if month in (7, 8) else 12, "uint16")
            stem = eog_name(year, month, cfg)
            data = eog_tgz(stem, rad, cvg, west, north)
            folder = eog_month_dir(year, month, cfg)
            lb.add(folder + stem + ".tgz", data)
            lb.add(folder + eog_name(year, month, cfg, tile="00N060E") + ".tgz", b"not this tile")
            served[folder + stem + ".tgz"] = data
    return served


def populate_bm(
    lb: Loopback,
    years: tuple[int, ...],
    n: int = 240,
    sites: list[tuple[str, float, float]] = BM_SITES,
) -> dict[str, bytes]:
    """Serve VNP46A3 months for h30v04, h30v05, h31v04 (+ h31v05, never needed); even months
    in the collection-1 convention (uint16, 65535, x0.1), odd months in collection 2 (float, -999.9)."""
    served = {}
    for year in years:
        for month in range(1, 13):
            folder = bm_dir(year, month)
            for h, v in ((30, 4), (30, 5), (31, 4), (31, 5)):
                west, north = -180 + 10 * h, 90 - 10 * v
                rad = radiance_field(
                    west,
                    north,
                    10 / n,
                    (n, n),
                    _peaks(sites, year, max(years)),
                    year * 1000 + month * 10 + h + v,
                )
                rad = np.maximum(rad, 0)
                quality = np.zeros((n, n), "uint8")
                mid, band = n // 2, max(n // 40, 1)  # bands across mid-tile, away from the sites
                quality[mid : mid + band] = 255  # fill
                rad[mid : mid + band] = np.nan
                quality[mid + band : mid + 2 * band] = 2  # gap-filled
                data = bm_h5(h, v, rad, quality, "c1" if month % 2 == 0 else "c2")
                lb.add(folder + bm_name(year, month, h, v), data)
                served[folder + bm_name(year, month, h, v)] = data
    return served
