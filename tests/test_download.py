"""Downloads that survive faults, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import AuthError, ConfigError, DownloadError
from pipeline.fetch import http as download
from pipeline.fetch import month_list
from pipeline.fetch.http import StaticToken, fetch_file, make_session
from pipeline.fetch.manifest import Manifest
from tests.loopback import (
    OTHER_HOST,
    Loopback,
    eog_month_dir,
    eog_name,
    needs_other_host,
    populate_eog,
)

BLOB = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setattr(download, "BACKOFF_FACTOR", 0.0)


@pytest.fixture
def lb():
    with Loopback() as server:
        server.add("/data/blob.bin", BLOB)
        yield server


def _exact(expected: bytes):
    def verify(path: Path) -> None:
        if hashlib.sha256(path.read_bytes()).digest() != hashlib.sha256(expected).digest():
            raise DownloadError(f"{path.name}: checksum differs")

    return verify


def test_dropped_connection_resumes_with_range(lb, tmp_path):
    lb.fault("/data/blob.bin", "drop", "drop")
    dest = tmp_path / "blob.bin"
    fetch_file(
        make_session(), lb.url + "/data/blob.bin", dest, None, verify=_exact(BLOB), progress=False
    )
    assert dest.read_bytes() == BLOB
    reqs = lb.requests("/data/blob.bin")
    assert len(reqs) == 3
    assert reqs[0].range is None
    resumed_at = int(reqs[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(BLOB) // 2  # what reached the disk before the cut
    assert not list(tmp_path.glob("*.part"))


def test_server_errors_are_retried(lb, tmp_path):
    lb.fault("/data/blob.bin", "500", "500")
    dest = fetch_file(
        make_session(),
        lb.url + "/data/blob.bin",
        tmp_path / "b",
        None,
        verify=_exact(BLOB),
        progress=False,
    )
    assert dest.read_bytes() == BLOB
    assert len(lb.requests("/data/blob.bin")) == 3


def test_html_login_page_is_an_auth_error_and_leaves_nothing(lb, tmp_path):
    lb.fault("/data/blob.bin", "html")
    auth = StaticToken("tok", "get a new token")
    with pytest.raises(AuthError, match=r"authentication failed: .*HTML page.*get a new token"):
        fetch_file(
            make_session(),
            lb.url + "/data/blob.bin",
            tmp_path / "b",
            auth,
            verify=_exact(BLOB),
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_401_is_an_auth_error(lb, tmp_path):
    lb.protect("/data/")
    with pytest.raises(AuthError, match="HTTP 401"):
        fetch_file(
            make_session(),
            lb.url + "/data/blob.bin",
            tmp_path / "b",
            StaticToken("bad", "renew it"),
            verify=_exact(BLOB),
            progress=False,
        )


def test_corrupt_file_is_refetched_once_then_rejected(lb, tmp_path):
    lb.add("/data/bad.bin", b"x" * 1000)
    with pytest.raises(DownloadError, match="fails verification twice"):
        fetch_file(
            make_session(),
            lb.url + "/data/bad.bin",
            tmp_path / "bad.bin",
            None,
            verify=_exact(BLOB),
            progress=False,
        )
    assert len(lb.requests("/data/bad.bin")) == 2
    assert list(tmp_path.iterdir()) == []


def test_stale_part_longer_than_file_restarts(lb, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(b"\0" * (len(BLOB) + 10))
    fetch_file(
        make_session(), lb.url + "/data/blob.bin", dest, None, verify=_exact(BLOB), progress=False
    )
    assert dest.read_bytes() == BLOB


def test_redirect_to_other_host_keeps_bearer_token(lb, tmp_path):
    lb.state.redirect_prefixes.append("/data/")
    lb.protect("/data/")
    lb.allow_token("tok-123")
    fetch_file(
        make_session(),
        lb.url + "/data/blob.bin",
        tmp_path / "b",
        StaticToken("tok-123", ""),
        verify=_exact(BLOB),
        progress=False,
    )
    cdn = lb.requests("/data/blob.bin", server="cdn")
    assert (
        len(cdn) == 1
        and cdn[0].authorization == "Bearer tok-123"
        and cdn[0].query.startswith("X-Signature")
    )


def test_public_url_strips_credentials_and_query():
    assert (
        download.public_url("https://u:p@h.example:8443/a/b.h5?sig=abc#x")
        == "https://h.example:8443/a/b.h5"
    )


def test_manifest_detects_changed_file(tmp_path):
    f = tmp_path / "eog" / "x.tif"
    f.parent.mkdir()
    f.write_bytes(b"abc")
    m = Manifest.load(tmp_path)
    m.record(
        f,
        tmp_path,
        [{"url": "http://h/x.tgz?token=s3cret", "size": 1, "sha256": "0"}],
        product="p",
        month="2024-01",
        layer="avg_rade9h",
        bbox=[0, 0, 1, 1],
    )
    m.save()
    m = Manifest.load(tmp_path)
    assert m.complete("p", "2024-01", ["avg_rade9h"], (0.2, 0.2, 0.8, 0.8), tmp_path)
    assert not m.complete(
        "p", "2024-01", ["avg_rade9h"], (-1, 0.2, 0.8, 0.8), tmp_path
    )  # larger area
    assert not m.complete("p", "2024-01", ["avg_rade9h", "cf_cvg"], (0.2, 0.2, 0.8, 0.8), tmp_path)
    f.write_bytes(b"abd")
    assert not m.complete("p", "2024-01", ["avg_rade9h"], (0.2, 0.2, 0.8, 0.8), tmp_path)
    assert "s3cret" not in (tmp_path / "manifest.json").read_text()


def test_month_list():
    assert month_list("2024-11", "2025-02") == [(2024, 11), (2024, 12), (2025, 1), (2025, 2)]
    with pytest.raises(ConfigError, match="empty"):
        month_list("2025-02", "2024-11")
    with pytest.raises(ConfigError, match="YYYY-MM"):
        month_list("2024-13", "2025-01")


def test_cli_rejects_bad_bbox(capsys):
    rc = main(
        [
            "download",
            "--source",
            "eog",
            "--start",
            "2024-01",
            "--end",
            "2024-02",
            "--bbox",
            "131",
            "37",
            "124",
            "43",
        ]
    )
    assert rc == 2 and "--bbox" in capsys.readouterr().err


def _env(lb: Loopback, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EOG_", "EARTHDATA", "NIGHTLIGHTS_"))
    }
    env.update(
        NIGHTLIGHTS_CONFIG=str(tmp_path / "no-config.yaml"),
        NIGHTLIGHTS_EOG_URL=lb.url + "/nighttime_light",
        EOG_TOKEN="tok-kill-test",
    )
    return env


def test_killed_download_resumes_without_refetching_finished_months(tmp_path, monkeypatch):
    """SIGKILL mid-transfer, then a re-run: finished months are not fetched again, the
    interrupted one resumes with a Range request, and every cached file is intact."""
    with Loopback() as lb:
        lb.protect("/nighttime_light/")
        lb.allow_token("tok-kill-test")
        served = populate_eog(lb, (2021,))
        slow = eog_month_dir(2021, 2) + eog_name(2021, 2) + ".tgz"
        big = served[slow] + os.urandom(0)  # same bytes, served slowly below
        lb.state.slow_bytes_per_s = max(len(big) // 4, 1024)  # ~4 s for the whole file
        lb.fault(slow, "slow")
        data = tmp_path / "data"
        args = [
            "-m",
            "pipeline",
            "download",
            "--source",
            "eog",
            "--start",
            "2021-01",
            "--end",
            "2021-03",
            "--bbox",
            "125.1",
            "39.1",
            "125.6",
            "39.6",
            "--data-dir",
            str(data),
            "-q",
        ]
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=_env(lb, tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        part = data / "raw" / "eog" / "vcmslcfg" / (eog_name(2021, 2) + ".tgz.part")
        deadline = time.monotonic() + 60
        while (
            not (part.exists() and part.stat().st_size > 0)
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 0 < part.stat().st_size < len(big)
        month1 = json.loads((data / "manifest.json").read_text())["files"]
        assert {v["month"] for v in month1.values()} == {"2021-01"}

        for k, v in _env(lb, tmp_path).items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
        assert main(args[2:]) == 0

        jan = eog_month_dir(2021, 1) + eog_name(2021, 1) + ".tgz"
        assert len(lb.requests(jan)) == 1  # not fetched again
        feb = lb.requests(slow)
        assert feb[-1].range is not None and feb[-1].range.startswith("bytes=")
        files = json.loads((data / "manifest.json").read_text())["files"]
        assert {v["month"] for v in files.values()} == {"2021-01", "2021-02", "2021-03"}
        for rel, v in files.items():
            assert hashlib.sha256((data / rel).read_bytes()).hexdigest() == v["sha256"]
        assert not list(data.rglob("*.part")) and not list((data / "raw").rglob("*.tgz"))
        assert main(args[2:]) == 0  # third run: everything cached, nothing fetched
        assert len(lb.requests(".tgz")) == len(feb) + 2


def test_token_follows_redirects_only_to_trusted_hosts():
    from pipeline.fetch.http import _keeps_token

    laads = "https://ladsweb.modaps.eosdis.nasa.gov/archive/allData/5200/VNP46A3/2024/001/x.h5"
    hosts = download.PROVIDER_HOSTS["blackmarble"]
    assert _keeps_token(
        laads, "https://data.laadsdaac.earthdatacloud.nasa.gov/prod-lads/x.h5?sig=1", hosts
    )
    assert _keeps_token(laads, "https://ladsweb.modaps.eosdis.nasa.gov/other", hosts)
    assert not _keeps_token(laads, "https://evil.example.com/x.h5", hosts)
    assert not _keeps_token(
        laads, "http://data.laadsdaac.earthdatacloud.nasa.gov/x.h5", hosts
    )  # downgrade
    assert not _keeps_token(
        laads, "http://ladsweb.modaps.eosdis.nasa.gov/archive/x.h5", hosts
    )  # the same host, but a downgrade to plain http: the token would cross the network in clear
    assert not _keeps_token("http://mirror.example.org/x", "http://elsewhere.example.org/x", hosts)
    assert _keeps_token("http://127.0.0.1:8001/data/x", "http://127.0.0.1:8002/data/x", hosts)
    assert not _keeps_token(
        laads, "https://data.laadsdaac.earthdatacloud.nasa.gov/x"
    )  # no provider: same host only


@needs_other_host
def test_bearer_token_is_not_sent_to_another_loopback_host(tmp_path):
    with Loopback(cdn_host=OTHER_HOST) as other:
        other.add("/data/blob.bin", BLOB)
        other.state.redirect_prefixes.append("/data/")
        other.protect("/data/")
        other.allow_token("tok-123")
        with pytest.raises(AuthError):
            fetch_file(
                make_session(download.PROVIDER_HOSTS["blackmarble"]),
                other.url + "/data/blob.bin",
                tmp_path / "b",
                StaticToken("tok-123", ""),
                verify=_exact(BLOB),
                progress=False,
            )
        cdn = other.requests("/data/blob.bin", server="cdn")
        assert cdn and all(r.authorization is None for r in cdn)


# --------------------------------------------------------------------------- hostile servers (issue 24)


def test_trickling_server_is_given_up_with_one_line(lb, tmp_path):
    """One byte per 0.1 s (the prober's server sent one per 20 s and hung the download for ever):
    under the minimum rate over the window, the transfer ends with one line; the .part stays to resume."""
    session = make_session()
    session.nightlights_pace = download.Pace(read_timeout_s=5, min_rate_kbs=1.0, window_s=0.6)
    lb.fault("/data/blob.bin", "trickle")
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch_file(
            session,
            lb.url + "/data/blob.bin",
            tmp_path / "blob.bin",
            None,
            verify=_exact(BLOB),
            progress=False,
        )
    took = time.monotonic() - t0
    assert 0.6 <= took < 3
    message = str(caught.value)
    assert message.startswith(f"{lb.url}/data/blob.bin: download stalled (")
    assert (
        "under the minimum 1 KB/s" in message
        and "run the same command again later to resume" in message
    )
    assert "\n" not in message
    assert len(lb.requests("/data/blob.bin")) == 1  # given up, not retried for ever
    assert not (tmp_path / "blob.bin").exists()


def test_silent_server_hits_the_read_timeout_and_stops(lb, tmp_path):
    """Headers, then nothing: each attempt ends at the read timeout, then one line after the last."""
    session = make_session()
    session.nightlights_pace = download.Pace(read_timeout_s=0.2, min_rate_kbs=1.0, window_s=60)
    lb.state.trickle_s = 30.0
    lb.fault("/data/blob.bin", *["trickle"] * download.STREAM_ATTEMPTS)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="connection kept dropping"):
        fetch_file(
            session,
            lb.url + "/data/blob.bin",
            tmp_path / "blob.bin",
            None,
            verify=_exact(BLOB),
            progress=False,
        )
    assert time.monotonic() - t0 < 5


def test_pace_settings_come_from_the_environment_and_are_checked(tmp_path):
    from pipeline.config import load_data_settings

    env = {
        "NIGHTLIGHTS_CONFIG": str(tmp_path / "none.yaml"),
        "NIGHTLIGHTS_DOWNLOAD_MIN_RATE_KBS": "4",
        "NIGHTLIGHTS_DOWNLOAD_RATE_WINDOW_S": "30",
    }
    s = load_data_settings(env)
    assert (s.download_min_rate_kbs, s.download_rate_window_s, s.download_read_timeout_s) == (
        4.0,
        30.0,
        120.0,
    )
    env["NIGHTLIGHTS_DOWNLOAD_RATE_WINDOW_S"] = "soon"
    with pytest.raises(
        ConfigError,
        match=r"NIGHTLIGHTS_DOWNLOAD_RATE_WINDOW_S or .*data\.download_rate_window_s="
        r"'soon': must be a number from 1 to 3600",
    ):
        load_data_settings(env)


def test_disk_full_message_never_shows_a_negative_size(tmp_path):
    """A part file longer than the size the server announced gave '-67107864 B more needed'."""
    import errno

    part = tmp_path / "x.tgz.part"
    part.write_bytes(b"x" * 5000)
    line = download._write_failure(part, OSError(errno.ENOSPC, "No space left on device"), 1000)
    assert "more space needed" in line and "-" not in line.split("(", 1)[1].split(")")[0]
    line = download._write_failure(
        part, OSError(errno.ENOSPC, "No space left on device"), 5000 + 2048
    )
    assert "about 2.0 KB more needed" in line


@pytest.mark.parametrize(
    ("sig", "code", "message"),
    [
        (signal.SIGINT, 130, "nightlights: interrupted; earlier outputs were left untouched"),
        (signal.SIGTERM, 143, "nightlights: terminated; earlier outputs were left untouched"),
    ],
)
def test_signal_ends_a_stuck_download_within_seconds(sig, code, message, tmp_path):
    """A server trickling one byte at a time (a blocking read): Ctrl-C or SIGTERM ends the process
    at once with its one line, and the .part stays for the next run to resume."""
    with Loopback() as lb:
        lb.protect("/nighttime_light/")
        lb.allow_token("tok-kill-test")
        served = populate_eog(lb, (2021,))
        stuck = eog_month_dir(2021, 1) + eog_name(2021, 1) + ".tgz"
        lb.state.trickle_s = 0.5
        lb.fault(stuck, "trickle")
        assert stuck in served
        data = tmp_path / "data"
        args = [
            "-m",
            "pipeline",
            "download",
            "--source",
            "eog",
            "--start",
            "2021-01",
            "--end",
            "2021-01",
            "--bbox",
            "125.1",
            "39.1",
            "125.6",
            "39.6",
            "--data-dir",
            str(data),
            "-q",
        ]
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=_env(lb, tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        part = data / "raw" / "eog" / "vcmslcfg" / (eog_name(2021, 1) + ".tgz.part")
        deadline = time.monotonic() + 60
        while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # in the blocking read of the trickle (its bytes sit in the file's buffer)
        assert proc.poll() is None, proc.communicate()
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5
        assert proc.returncode == code
        assert err.strip().splitlines() == [message]
        assert part.exists()  # resumed next time


def test_body_longer_than_any_file_is_cut_off(tmp_path, monkeypatch):
    """A body without a length that never ends would fill the disk: it stops at the cap, one line."""

    class Endless:
        def read1(self, n, decode_content=True):
            return b"\0" * n

    class Response:
        status_code, headers, raw = 200, {"Content-Type": "application/octet-stream"}, Endless()

    monkeypatch.setattr(download, "MAX_UNANNOUNCED_BYTES", 1 << 20)
    part = tmp_path / "x.tgz.part"
    with pytest.raises(
        DownloadError,
        match=r"^http://127\.0\.0\.1/x\.tgz: the server sent more than 1\.0 MB, more "
        r"than it announced or than any listing or night-light file",
    ):
        download._stream(
            Response(), part, 0, None, "http://127.0.0.1/x.tgz", None, False, "x", download.Pace()
        )
    assert part.stat().st_size <= 1 << 20


def test_listing_that_never_ends_is_cut_off(lb, monkeypatch):
    """A listing page is read bounded too (it was read whole into memory)."""
    from pipeline.fetch.http import get_text

    monkeypatch.setattr(download, "MAX_LISTING_BYTES", 1 << 20)
    with pytest.raises(DownloadError, match=r"/data/blob\.bin: the server sent more than 1\.0 MB"):
        get_text(
            make_session(), lb.url + "/data/blob.bin", None
        )  # 3 MB where a listing was expected
    lb.add("/data/index.html", b"<html><a href='x.tgz'>x.tgz</a></html>")
    assert "x.tgz" in get_text(make_session(), lb.url + "/data/index.html", None)


def test_listing_cut_off_midway_is_one_download_error(lb):
    from pipeline.fetch.http import get_text

    lb.add("/data/index.html", b"<html>" + b"<a href='x.tgz'>x.tgz</a>" * 5000 + b"</html>")
    lb.fault("/data/index.html", "drop")
    with pytest.raises(
        DownloadError,
        match=r"/data/index\.html: request failed after retries \(ChunkedEncodingError\)",
    ):
        get_text(make_session(), lb.url + "/data/index.html", None)


def test_login_page_arriving_byte_by_byte_is_still_recognised(lb, tmp_path):
    """Receives are read as they come: the page check waits for the first 64 bytes, not the first byte."""
    from tests.loopback import LOGIN_PAGE

    lb.add("/data/page.bin", LOGIN_PAGE)  # served as application/octet-stream
    lb.state.trickle_s = 0.002
    lb.fault("/data/page.bin", "trickle")
    with pytest.raises(AuthError, match="HTML page"):
        fetch_file(
            make_session(),
            lb.url + "/data/page.bin",
            tmp_path / "page.bin",
            None,
            verify=_exact(BLOB),
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []
