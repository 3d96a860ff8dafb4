"""Report and GIS files: self-contained HTML, checksums, provenance, and a real headless browser."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from pipeline.provenance import input_checksums, sha256_file
from tests.pubdata import CHARTS, SITES, published

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")

CHROMIUM = Path(
    shutil.which("chromium") or "/usr/bin/chromium"
)  # Debian's package ('make browser')


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return published(tmp_path_factory)


def test_report_is_self_contained(run):
    _, out = run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", page), "report.html must not reference outside resources"
    srcs = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(srcs) == len(CHARTS) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<(script|link rel=\"stylesheet\"|iframe)", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for name in CHARTS:
        assert f'id="fig-{name}"' in page


def test_report_content(run):
    results, out = run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="synthetic-warning"' in page and "SYNTHETIC DEMO DATA" in page
    assert (
        '<h2 id="method">Method</h2>' in page
        and "missing, not dark" in page
        and "288 defensible variants" in page
    )
    for sid, _, _, ko, _, _ in SITES:
        assert f"<td>{sid.capitalize()}</td>" in page and ko in page
    for key, value in results.verdict["parameters"].items():
        assert f"<td>{key}</td><td>{html.escape(json.dumps(value))}</td>" in page
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("> **SYNTHETIC DEMO DATA")
    assert all(f"figures/{n}.png" in md for n in CHARTS)


def test_report_checksums_are_the_files_sha256(run):
    results, out = run
    page = (out / "report.html").read_text(encoding="utf-8")
    for r in results.rasters[:3] + results.rasters[-2:]:
        digest = hashlib.sha256(r.radiance.read_bytes()).hexdigest()
        assert re.search(rf"{re.escape(r.radiance.name)}</td><td class=hash>{digest}<", page), (
            r.radiance.name
        )
    # file and sha256 per file (radiance and coverage), the month beside them, never wrapped
    assert page.count("<td class=hash>") == 2 * 2 * len(results.rasters)
    assert page.count("<td class=month>") == 2 * len(results.rasters)


def test_checksum_cache_is_keyed_by_size_and_mtime(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"night lights")
    cache: dict = {}
    assert sha256_file(f, cache) == hashlib.sha256(b"night lights").hexdigest()
    cache[str(f.resolve())]["sha256"] = "from-cache"
    assert sha256_file(f, cache) == "from-cache"  # unchanged file: not read again
    f.write_bytes(b"night lights, changed")
    assert sha256_file(f, cache) == hashlib.sha256(b"night lights, changed").hexdigest()


def test_input_checksums_persist_in_the_cache_file_only(run, tmp_path):
    results, _ = run
    cache = tmp_path / "data" / "cache" / "sha256.json"
    sums = input_checksums(results.rasters[:2], cache)
    assert len(sums) == 4  # radiance and cf_cvg of two months
    stored = json.loads(cache.read_text())
    assert sorted(v["sha256"] for v in stored.values()) == sorted(sums.values())
    assert input_checksums(results.rasters[:2]) == sums  # no cache file: computed, nothing written
    assert [p.name for p in cache.parent.iterdir()] == ["sha256.json"]


def test_gis_files_carry_class_and_change(run):
    results, out = run
    gj = gpd.read_file(out / "sites_classified.geojson")
    gp = gpd.read_parquet(out / "sites_classified.parquet")
    expected = results.changes.set_index("site_id")
    for gdf in (gj, gp):
        assert gdf.crs.to_epsg() == 4326
        got = gdf.set_index("site_id").loc[expected.index]
        assert list(got["class"]) == list(expected["class"])
        np.testing.assert_allclose(got["change_pct"], expected["change_pct"], rtol=1e-9)
        assert set(gdf["data_kind"]) == {"synthetic"}
        assert gdf.geometry.geom_type.eq("Polygon").all()
    months = pd.read_parquet(out / "site_months.parquet")
    assert len(months) == len(results.site_months)
    np.testing.assert_allclose(
        months["mean_radiance"], results.site_months["mean_radiance"], equal_nan=True
    )


# --------------------------------------------------------------------------- headless browser


def _chromium(page: Path, tmp: Path) -> tuple[str, list[str], list[str]]:
    """Load ``page``; return the DOM, the console messages and the URLs the page itself requested."""
    netlog = tmp / "net.json"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-pings",
        "--disable-domain-reliability",
        f"--user-data-dir={tmp / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        f"--log-net-log={netlog}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp)}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start
        and "url" in e.get("params", {})
        and e["params"].get("initiator") != "not an origin"
    ]  # the browser's own jobs have no origin
    return proc.stdout, console, [u for u in requested if not u.startswith(("file:", "data:"))]


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless chromium not installed at /usr/bin/chromium (run 'make browser')",
)


@pytest.mark.browser
@needs_chromium
def test_browser_detects_console_errors_and_outside_requests(tmp_path):
    """The check below can fail: a page with an error and an outside image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("planted error")</script></body></html>',
        encoding="utf-8",
    )
    _, console, requested = _chromium(bad, tmp_path)
    assert any("planted error" in c for c in console)
    assert requested == ["http://127.0.0.1:9/x.png"]


@pytest.mark.browser
@needs_chromium
def test_report_loads_in_headless_chromium(run, tmp_path):
    _, out = run
    dom, console, requested = _chromium(out / "report.html", tmp_path)
    assert console == []
    assert requested == []
    assert 'id="synthetic-warning"' in dom
    assert dom.count("<figure") == len(CHARTS)
