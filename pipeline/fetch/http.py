"""HTTP for the downloaders: one session, a redirect policy for tokens, resumable transfers.

Why the care: users of night-light tools lose hours to HTML login pages saved as data,
half files left after a dropped connection and expired tokens. So every transfer goes
to ``<name>.part``, resumes with a Range request, is checked (``verify``) and only then
renamed; HTML or 401/403 where data was expected raises :class:`~pipeline.errors.AuthError`;
5xx and timeouts are retried with backoff (urllib3 ``Retry``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from pipeline.errors import AuthError, DownloadError
from pipeline.provenance import human_size

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 0.5  # urllib3 sleeps factor * 2**(n-1) s between retries (first one immediate)
STREAM_ATTEMPTS = 5  # resumptions after a connection dropped mid-file
TIMEOUT = (15, 120)  # connect, read (s)
MAX_LISTING_BYTES = 32 << 20  # a LAADS day listing is ~100 KB, an EOG index a few KB
MAX_UNANNOUNCED_BYTES = (
    32 << 30
)  # a body without a length: the largest real file (a global annual) is a few GB
CHUNK = 1 << 16  # 64 KB: what a dropped connection can cost, and the progress step
USER_AGENT = "nightlights-downloader/0.1 (python-requests)"


@dataclass(frozen=True)
class Pace:
    """How slow a transfer may be before it is given up (settings ``download_*``, docs/data.md).

    A read timeout alone never fires on a server that sends one byte every 20 s; so the
    bytes received over each ``window_s`` must also reach ``min_rate_kbs`` KB/s.
    """

    read_timeout_s: float = float(TIMEOUT[1])
    min_rate_kbs: float = 1.0
    window_s: float = 60.0


def pace_of(session: requests.Session) -> Pace:
    """The session's :class:`Pace` (set by the downloaders from the settings), else the defaults."""
    pace = getattr(session, "nightlights_pace", None)
    return pace if isinstance(pace, Pace) else Pace()


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


# Where each provider's bearer token may follow a redirect: its own hosts, by exact name, and no
# other provider's (docs/data.md). LAADS answers a download with a 302 to its cloud archive host;
# EOG serves files from eogdata.mines.edu only (its login pages are on eogauth*.mines.edu, which
# need no token: a login page there is reported as an auth error).
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "eog": ("eogdata.mines.edu",),
    "blackmarble": (
        "ladsweb.modaps.eosdis.nasa.gov",
        "data.laadsdaac.earthdatacloud.nasa.gov",
        "urs.earthdata.nasa.gov",
    ),
}


def _keeps_token(old: str, new: str, hosts: tuple[str, ...] = ()) -> bool:
    """Whether a redirect from ``old`` to ``new`` may carry the bearer token.

    Only to the same host (any port: a local mirror, the test server), or over https to one of
    ``hosts``, the token's own provider; never on a downgrade from https to http.
    """
    a, b = urlsplit(old), urlsplit(new)
    if a.scheme == "https" and b.scheme != "https":
        return False
    host = (b.hostname or "").lower()
    if host and host == (a.hostname or "").lower():
        return True
    return b.scheme == "https" and host in hosts


class KeepAuthSession(requests.Session):
    """requests drops Authorization on a redirect to another host; LAADS answers a
    download with a 302 to a signed URL on another NASA host that still wants the bearer
    token, so keep it there (see :func:`_keeps_token`), and nowhere else."""

    def __init__(self, token_hosts: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.token_hosts = tuple(h.lower() for h in token_hosts)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        if not _keeps_token(
            response.request.url or "", prepared_request.url or "", self.token_hosts
        ):
            prepared_request.headers.pop("Authorization", None)


def make_session(token_hosts: tuple[str, ...] = ()) -> requests.Session:
    """A session retrying 5xx, 429 and connection errors with exponential backoff, whose bearer
    token follows redirects only to the same host or to ``token_hosts`` (:data:`PROVIDER_HOSTS`)."""
    retry = Retry(
        total=5,
        connect=5,
        read=3,
        status=4,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=60,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    s = KeepAuthSession(token_hosts)
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


def get(
    session: requests.Session,
    url: str,
    auth: Auth | None,
    *,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """GET with auth; renew the token once on 401/403; 404 -> NotPublished."""
    for attempt in (1, 2):
        try:
            r = session.get(
                url,
                headers={**(auth.headers() if auth else {}), **(headers or {})},
                stream=stream,
                timeout=(TIMEOUT[0], pace_of(session).read_timeout_s),
            )
        except requests.RequestException as e:
            raise DownloadError(
                f"{public_url(url)}: request failed after retries "
                f"({e.__class__.__name__}); check the network or the mirror URL"
            ) from None
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
            raise DownloadError(
                f"{public_url(url)}: HTTP {r.status_code} after retries; try again later"
            )
        return r
    raise AssertionError("unreachable")


def get_text(session: requests.Session, url: str, auth: Auth | None, expect: str = "html") -> str:
    """A listing page (HTML index or JSON). HTML where JSON was expected is a login page."""
    r = get(session, url, auth, stream=True)
    try:
        with r:  # bounded and paced like a file: a listing that never ends must not fill memory
            body = b"".join(_paced_chunks(r, url, pace_of(session), MAX_LISTING_BYTES))
    except requests.RequestException as e:
        raise DownloadError(
            f"{public_url(url)}: request failed after retries "
            f"({e.__class__.__name__}); check the network or the mirror URL"
        ) from None
    text = body.decode(r.encoding or "utf-8", errors="replace")
    if expect == "json" and looks_like_html(text[:200].encode()):
        raise _auth_error(url, "returned an HTML page instead of the JSON listing", auth)
    if expect == "html" and _is_login_page(text):
        raise _auth_error(url, "returned a login page instead of the directory listing", auth)
    return text


def _is_login_page(text: str) -> bool:
    low = text[:20000].lower()
    return (
        'type="password"' in low
        or "kc-form-login" in low
        or "openid-connect/auth" in low
        or "urs.earthdata.nasa.gov/oauth" in low
    )


def fetch_file(
    session: requests.Session,
    url: str,
    dest: Path,
    auth: Auth | None,
    *,
    verify: Callable[[Path], None],
    expected_size: int | None = None,
    progress: bool = True,
) -> Path:
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
    raise DownloadError(
        f"{public_url(url)}: downloaded file fails verification twice; "
        "the server may be serving a broken file, try again later"
    )


def _transfer(
    session: requests.Session,
    url: str,
    part: Path,
    auth: Auth | None,
    expected_size: int | None,
    progress: bool,
    label: str,
) -> None:
    for attempt in range(1, STREAM_ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if expected_size and offset == expected_size:
            return
        if expected_size and offset > expected_size:
            part.unlink()
            offset = 0
        r = get(
            session,
            url,
            auth,
            stream=True,
            headers={"Range": f"bytes={offset}-"} if offset else None,
        )
        with r:
            if r.status_code == 416:  # range beyond the file: our part is stale, restart
                part.unlink(missing_ok=True)
                continue
            if offset and r.status_code != 206:
                log.info("%s: server ignored the resume request; restarting the file", label)
                offset = 0
            if "text/html" in r.headers.get("Content-Type", ""):
                raise _auth_error(
                    url, "returned an HTML page (a login page?) instead of data", auth
                )
            total = _total_size(r, offset)
            if (
                total and r.status_code == 206 and offset > total
            ):  # a stale part longer than the file
                part.unlink(missing_ok=True)
                continue
            if expected_size and total and total != expected_size:
                raise DownloadError(
                    f"{public_url(url)}: server announces {total} bytes, listing said "
                    f"{expected_size}; try again later"
                )
            try:
                _stream(
                    r,
                    part,
                    offset,
                    total or expected_size,
                    url,
                    auth,
                    progress,
                    label,
                    pace_of(session),
                )
            except (requests.RequestException, OSError) as e:
                if not isinstance(e, requests.RequestException | ConnectionError | TimeoutError):
                    raise DownloadError(_write_failure(part, e, total or expected_size)) from e
                log.warning(
                    "%s: connection lost at %s (%s); resuming (attempt %d of %d)",
                    label,
                    human_size(part.stat().st_size if part.exists() else 0),
                    e.__class__.__name__,
                    attempt,
                    STREAM_ATTEMPTS,
                )
                time.sleep(BACKOFF_FACTOR * 2 ** (attempt - 1))
                continue
        size = part.stat().st_size
        want = total or expected_size
        if want and size != want:
            log.warning("%s: got %s of %s; resuming", label, human_size(size), human_size(want))
            continue
        return
    raise DownloadError(
        f"{public_url(url)}: connection kept dropping ({STREAM_ATTEMPTS} attempts); "
        "run the same command again to resume"
    )


def _total_size(r: requests.Response, offset: int) -> int | None:
    if r.status_code == 206:
        cr = r.headers.get("Content-Range", "")
        if "/" in cr and not cr.endswith("*"):
            return int(cr.rsplit("/", 1)[1])
    length = r.headers.get("Content-Length")
    if length and "Content-Encoding" not in r.headers:
        return int(length) + (offset if r.status_code == 206 else 0)
    return None


def _stream(
    r: requests.Response,
    part: Path,
    offset: int,
    total: int | None,
    url: str,
    auth: Auth | None,
    progress: bool,
    label: str,
    pace: Pace | None = None,
) -> None:
    mode = "ab" if r.status_code == 206 else "wb"
    first = True
    with (
        open(part, mode) as f,
        tqdm(
            total=total,
            initial=offset if mode == "ab" else 0,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label[:40],
            leave=False,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
    ):
        limit = (total or MAX_UNANNOUNCED_BYTES) - (offset if mode == "ab" else 0)
        for chunk in _whole_head(_paced_chunks(r, url, pace or Pace(), limit)):
            if first:
                first = False
                if "text/html" in r.headers.get("Content-Type", "") or looks_like_html(chunk[:64]):
                    f.close()
                    if mode == "wb":
                        part.unlink(missing_ok=True)
                    raise _auth_error(
                        url, "returned an HTML page (a login page?) instead of data", auth
                    )
            f.write(chunk)
            bar.update(len(chunk))


def _whole_head(chunks: Iterator[bytes], n: int = 64) -> Iterator[bytes]:
    """The same bytes, the first chunk holding at least ``n`` of them (a page is recognised by its head)."""
    head: bytes | None = b""
    for chunk in chunks:
        if head is None:
            yield chunk
            continue
        head += chunk
        if len(head) >= n:
            yield head
            head = None
    if head:
        yield head


def _paced_chunks(
    r: requests.Response, url: str, pace: Pace, limit: int | None = None
) -> Iterator[bytes]:
    """The body as it arrives (``read1``: whatever one receive gives, so a trickle is seen at
    once, where ``iter_content`` would wait for a whole chunk), ending the transfer with one
    :class:`DownloadError` when fewer than ``pace.min_rate_kbs`` KB/s came over ``pace.window_s``,
    or more than ``limit`` bytes (what the server announced, else :data:`MAX_UNANNOUNCED_BYTES`).
    urllib3's errors are turned into requests' as ``iter_content`` does (the caller resumes those)."""
    from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

    start, got, received = time.monotonic(), 0, 0
    while True:
        try:
            chunk = r.raw.read1(CHUNK, decode_content=True)
        except ProtocolError as e:
            raise requests.exceptions.ChunkedEncodingError(e) from e
        except ReadTimeoutError as e:
            raise requests.exceptions.ConnectionError(e) from e
        except DecodeError as e:
            raise requests.exceptions.ContentDecodingError(e) from e
        if not chunk:
            return
        received += len(chunk)
        if limit is not None and received > limit:
            raise DownloadError(
                f"{public_url(url)}: the server sent more than {human_size(limit)}, more than it "
                "announced or than any listing or night-light file; try again later or use another "
                "mirror"
            )
        yield chunk
        got += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed >= pace.window_s:
            if got < pace.min_rate_kbs * 1024 * elapsed:
                raise DownloadError(
                    f"{public_url(url)}: download stalled ({human_size(got)} in the last {elapsed:.0f} s, under the "
                    f"minimum {pace.min_rate_kbs:g} KB/s); the server is overloaded or the network too slow: run the "
                    "same command again later to resume (or lower download_min_rate_kbs, docs/data.md)"
                )
            start, got = time.monotonic(), 0


def _write_failure(part: Path, e: OSError, total: int | None) -> str:
    """One line for a download that cannot be written: the folder, the space it needs, what to do.

    The ``.part`` file stays (the next run resumes it) and is never used before it is complete
    and verified, so a full disk leaves nothing a later run would trust.
    """
    import errno
    import shutil

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        have = part.stat().st_size if part.exists() else 0
        free = shutil.disk_usage(part.parent).free
        # ``have`` can exceed ``total`` (a server announcing fewer bytes than it sends, a stale part):
        # then how much more is needed is unknown, not negative
        need = f"about {human_size(total - have)} more" if total and total > have else "more space"
        return (
            f"{part.parent}: disk full while downloading {part.name} ({human_size(free)} free, {need} "
            "needed, plus room to unpack it); free space or choose another --data-dir, then run again to resume"
        )
    return f"{part}: cannot write ({e.__class__.__name__}: {e}); free disk space or choose another --data-dir"
