"""The bad-input corpus: each input gets its one-line message, a non-zero exit, no traceback.

Site and config files live in ``tests/bad_inputs/`` with their expected lines in
``expected.yaml``; raster folders are binary, so they are made here (SYNTHETIC, tiny).
Everything runs through ``pipeline.cli.main`` exactly as the command line does.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin

from pipeline.cli import main
from pipeline.read.sites import MAX_FILE_BYTES
from tests.bad_inputs.rasters import (
    GRID,
    SIZE,
    lon_field,
    write_declared_huge,
    write_eog_sized_tile,
    write_int16_without_nodata,
    write_months,
    write_multiband,
    write_raster,
    write_rotated,
    write_sites,
)

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
SITE_DIR = CORPUS / "sites"
SITE_CASES = EXPECTED["sites"]
ERROR_CASES = [
    k for k, v in SITE_CASES.items() if any("warning:" not in line for line in v["lines"])
]
USABLE_CASES = [k for k in SITE_CASES if k not in ERROR_CASES]


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def here(line: str) -> str:
    return line.replace("{dir}", str(SITE_DIR))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("nightlights: ")]


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2023-2025, 2 -> 3 -> 4 nW everywhere, plus a lon gradient for the grid tests."""
    folder = tmp_path_factory.mktemp("rasters") / "monthly"
    write_months(folder)
    return folder


# --------------------------------------------------------------------------- the corpus files


def test_corpus_lists_every_file() -> None:
    listed = {f for case in SITE_CASES.values() for f in case["files"]}
    assert listed == {p.name for p in SITE_DIR.iterdir()}
    configs = {case["file"] for case in EXPECTED["config"].values()}
    assert configs - {"no_such_config.yaml"} == {p.name for p in (CORPUS / "config").iterdir()}


@pytest.mark.parametrize("case", list(SITE_CASES))
def test_sites_validate(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SITE_CASES[case]
    code, out, _ = cli(capsys, "sites", "validate", *(SITE_DIR / f for f in spec["files"]))
    expected = [here(line) for line in spec["lines"]]
    lines = out.splitlines()
    if case in ERROR_CASES:
        assert code == 1
        assert lines == expected
    else:
        assert code == 0
        ok = f"ok: {len(spec['files'])} file(s) usable" + (
            f", {len(expected)} warning(s)" if expected else ""
        )
        assert lines == [*expected, ok]


@pytest.mark.parametrize("command", ["run", "extract"])
@pytest.mark.parametrize("case", ERROR_CASES)
def test_bad_sites_stop_run_and_extract(
    case: str, command: str, months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = SITE_CASES[case]
    sites = [a for f in spec["files"] for a in ("--sites", SITE_DIR / f)]
    out = tmp_path / ("out" if command == "run" else "out.csv")
    extra = ("--source", "local") if command == "run" else ()
    code, stdout, err = cli(capsys, command, *sites, "--rasters", months, "--out", out, *extra)
    assert code == 2
    expected = [
        f"nightlights: error: {here(line)}" for line in spec["lines"] if "warning:" not in line
    ]
    assert error_lines(err) == expected
    assert stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("case", USABLE_CASES)
def test_usable_sites_extract_with_warnings(
    case: str, months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = SITE_CASES[case]
    sites = [a for f in spec["files"] for a in ("--sites", SITE_DIR / f)]
    out = tmp_path / "site_months.csv"
    code, _, err = cli(capsys, "extract", *sites, "--rasters", months, "--out", out)
    assert code == 0
    for line in spec["lines"]:
        assert here(line) in err.splitlines()
    table = pd.read_csv(out)
    assert list(dict.fromkeys(table["site_id"])) == spec["site_ids"]
    assert len(table) == 36 * len(spec["site_ids"])
    # 2 nW in 2023 everywhere on the grid: every site inside it reads exactly that.
    jan = table[table["month"] == "2023-01"]
    assert np.allclose(jan["mean_radiance"], 2.0)


def test_legacy_crs_member_is_reprojected_to_the_right_place(
    months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.read.sites import read_sites

    sites = read_sites([SITE_DIR / "legacy_crs_3857.geojson"], 2000.0)
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(13937833.6, 4852834.1)
    assert sites.loc[0, "center_lon"] == pytest.approx(lon, abs=1e-6)
    assert sites.loc[0, "center_lat"] == pytest.approx(lat, abs=1e-6)
    assert 124 < lon < 126 and 39 < lat < 41


def test_three_d_coordinates_are_flattened() -> None:
    from pipeline.read.sites import read_sites

    sites = read_sites([SITE_DIR / "mixed_3d_multi.geojson"], 2000.0)
    assert not sites.geometry.has_z.any()
    # a MultiPoint is buffered point by point, then kept as drawn (only single points re-buffer)
    assert list(sites["from_point"]) == [True, False, False, False]
    assert (
        sites.geometry.iloc[3].geom_type in ("Polygon", "MultiPolygon")
        and sites["radius_m"].iloc[3] == 2000.0
    )


def test_site_file_over_the_size_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "huge.geojson"
    with open(big, "wb") as f:  # sparse: the limit is checked before anything is read
        f.truncate(MAX_FILE_BYTES + 1)
    code, out, _ = cli(capsys, "sites", "validate", big)
    assert code == 1
    assert out.splitlines() == [
        f"{big}: file is 50.0 MB, above the 50 MB limit for site files; "
        "simplify the polygons or split the file"
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.geojson", "file not found"), ("a_folder", "is a folder, expected a .geojson file")],
)
def test_site_path_that_is_no_file(
    name: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a_folder").mkdir()
    code, out, _ = cli(capsys, "sites", "validate", tmp_path / name)
    assert code == 1 and out.splitlines() == [f"{tmp_path / name}: {message}"]


@pytest.mark.parametrize("case", list(EXPECTED["config"]))
def test_bad_config(
    case: str, months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = EXPECTED["config"][case]
    path = CORPUS / "config" / spec["file"]
    sites = write_sites(tmp_path / "sites.geojson")
    code, _, err = cli(
        capsys,
        "run",
        "--config",
        path,
        "--sites",
        sites,
        "--source",
        "local",
        "--rasters",
        months,
        "--out",
        tmp_path / "out",
    )
    assert code == 2
    line = (
        spec["line"]
        .replace("{file}", str(path))
        .replace("{next_year}", str(dt.date.today().year + 1))
    )
    assert error_lines(err) == [f"nightlights: error: {line}"]
    assert not (tmp_path / "out").exists()


HOSTILE_YAML = [
    ("run", "--config", CORPUS / "config" / "billion_laughs.yaml"),
    ("run", "--claim", CORPUS / "claims" / "billion_laughs.yaml"),
    ("run", "--config", CORPUS / "config" / "deep_nesting.yaml"),
    ("run", "--claim", CORPUS / "claims" / "deep_nesting.yaml"),
    ("run", "--config", CORPUS / "config" / "recursive_alias.yaml"),
    ("run", "--config", Path("/dev/zero")),  # its size says 0: it read until memory ran out
    ("run", "--claim", Path("/dev/zero")),
]


@pytest.mark.parametrize("argv", HOSTILE_YAML, ids=lambda a: f"{a[1]}-{a[2].stem}")
def test_hostile_yaml_is_refused_in_bounded_memory(argv: tuple, tmp_path: Path) -> None:
    """Under a 1 GB address-space limit, at once: before the fix, 158 s, 5.5 GB and 2.1 GB of error text."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *map(str, argv),
            "--source",
            "demo",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.startswith(f"nightlights: error: {argv[2]}: ")
    assert len(done.stderr) < 300 and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- raster folders


def _truncate(path: Path, keep: int) -> tuple[int, int]:
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return keep, len(data)


def _corrupt_block(path: Path) -> None:
    """Garble the middle of the (deflate-compressed) pixel data, leaving the header intact."""
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + size - 2] = b"\xff" * (size - 4)
    path.write_bytes(bytes(data))


def _raster_case(case: str, tmp: Path) -> tuple[Path, list[str]]:
    """Make the folder for a raster case; return it and the exact error lines."""
    folder = tmp / "rasters"
    if case == "missing_folder":
        return folder, [f"{folder}: raster folder not found"]
    if case == "folder_is_a_file":
        folder.write_text("not a folder")
        return folder, [
            f"{folder}: not a folder; --rasters takes the folder holding the monthly files"
        ]
    folder.mkdir()
    if case == "empty_folder":
        (folder / "README.txt").write_text("downloads go here")
        return folder, [f"{folder}: no GeoTIFF files (.tif) found"]
    if case == "no_month_in_any_name":
        write_raster(folder / "mosaic.tif", np.ones((SIZE, SIZE)))
        return folder, [f"{folder}: no GeoTIFF with a month (YYYY-MM or YYYYMM) in its name"]
    if case == "no_months_for_years":
        write_months(folder, years=(2019,))
        return folder, [
            f"{folder}: no monthly rasters for 2024, 2025 (the folder has 2019-01 to 2019-12); "
            "choose --baseline-year/--target-year within that range"
        ]
    if case == "target_year_missing":
        write_months(folder, years=(2023, 2024))
        return folder, [
            f"{folder}: no monthly rasters for 2025 (the folder has 2023-01 to 2024-12); "
            "choose --baseline-year/--target-year within that range"
        ]
    write_months(folder)
    bad = folder / "2024-05.tif"
    if case == "truncated_tif":
        size, full = _truncate(bad, 3000)
        return folder, [
            f"{bad}: truncated GeoTIFF ({size} bytes, its data runs to {full}); "
            "delete it and download it again"
        ]
    if case == "truncated_header":
        size, full = _truncate(bad, 300)
        return folder, [
            f"{bad}: truncated GeoTIFF ({size} bytes, its data runs to {full}); "
            "delete it and download it again"
        ]
    if case == "zero_bytes":
        bad.write_bytes(b"")
        return folder, [
            f"{bad}: empty file (0 bytes), probably an interrupted download; "
            "delete it and download it again"
        ]
    if case == "html_saved_as_tif":
        bad.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
        return folder, [
            f"{bad}: a web page or text, not a GeoTIFF (a failed download saved under a raster "
            "name?); delete it, check your credentials and download it again"
        ]
    if case == "not_a_tif":
        bad.write_bytes(b"PK\x03\x04" + bytes(200))
        return folder, [
            f"{bad}: cannot open raster ('{bad}' not recognized as being in a supported file "
            "format.); the file may be truncated or not a GeoTIFF"
        ]
    if case == "no_crs":
        write_raster(bad, np.ones((SIZE, SIZE)), crs=None)
        return folder, [
            f"{bad}: raster has no CRS; georeference it (e.g. gdal_edit.py -a_srs EPSG:4326)"
        ]
    if case == "two_files_one_month":
        other = write_raster(folder / "viirs_202405_v2.tif", np.ones((SIZE, SIZE)))
        return folder, [f"month 2024-05 has 2 radiance files ({bad}, {other}); keep one per month"]
    if case == "rotated_grid":
        write_rotated(bad)
        return folder, [
            f"{bad}: rotated or sheared georeferencing (geotransform (0.01, 0.002, 125.0, 0.002, -0.01, "
            "40.0)); pixels would be placed wrongly: warp it north-up first, e.g. gdalwarp -t_srs "
            "EPSG:4326 in.tif out.tif"
        ]
    if case == "three_bands":
        write_multiband(bad)
        return folder, [
            f"{bad}: 3 bands; a radiance or coverage file has one and the band is not guessed: extract "
            "it, e.g. gdal_translate -b 1 in.tif out.tif"
        ]
    if case == "declares_a_trillion_px":
        write_declared_huge(bad)
        return folder, [
            f"{bad}: declares 1000000 x 1000000 px, more than a global VIIRS grid (86400 x 33600); "
            "the file is damaged or not a night-light raster"
        ]
    if case == "corrupt_pixels":
        write_raster(bad, np.random.default_rng(1).random((SIZE, SIZE)) * 50, compress="deflate")
        _corrupt_block(bad)
        return folder, [
            f"{bad}: cannot read month 2024-05 ("
        ]  # GDAL's reason follows; prefix checked
    raise AssertionError(case)


RASTER_CASES = [
    "missing_folder",
    "folder_is_a_file",
    "empty_folder",
    "no_month_in_any_name",
    "no_months_for_years",
    "target_year_missing",
    "truncated_tif",
    "truncated_header",
    "zero_bytes",
    "html_saved_as_tif",
    "not_a_tif",
    "no_crs",
    "two_files_one_month",
    "corrupt_pixels",
    "rotated_grid",
    "three_bands",
    "declares_a_trillion_px",
]
RUN_ONLY = {"no_months_for_years", "target_year_missing"}  # extract takes whatever months there are


@pytest.mark.parametrize(
    ("case", "command"),
    [
        (case, command)
        for case in RASTER_CASES
        for command in ("run", "extract")
        if command == "run" or case not in RUN_ONLY
    ],
)
def test_bad_raster_folder(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, expected = _raster_case(case, tmp_path)
    sites = write_sites(tmp_path / "sites.geojson")
    out = tmp_path / ("out" if command == "run" else "out.csv")
    extra = ("--source", "local", "--no-sensitivity", "--no-figures") if command == "run" else ()
    code, _, err = cli(
        capsys, command, "--sites", sites, "--rasters", folder, "--out", out, "-q", *extra
    )
    assert code == 2
    lines = error_lines(err)
    if case == "corrupt_pixels":
        assert len(lines) == 1
        assert lines[0].startswith(f"nightlights: error: {expected[0]}")
        assert lines[0].endswith("the file may be truncated: delete it and download again")
    else:
        assert lines == [f"nightlights: error: {line}" for line in expected]
    assert "CPLE_" not in err  # GDAL's own chatter only with --debug
    assert not out.exists()


def test_names_without_a_month_and_hidden_files_are_skipped(
    months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rasters"
    shutil.copytree(months, folder)
    write_raster(folder / "mosaic.tif", np.ones((SIZE, SIZE)))
    (folder / "._2024-01.tif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS copy litter
    (folder / ".partial").mkdir()
    write_raster(folder / ".partial" / "2024-01.tif", np.ones((SIZE, SIZE)))
    out = tmp_path / "out.csv"
    code, _, err = cli(
        capsys,
        "extract",
        "--sites",
        write_sites(tmp_path / "s.geojson"),
        "--rasters",
        folder,
        "--out",
        out,
    )
    assert code == 0
    assert (
        f"{folder / 'mosaic.tif'}: skipped, no month (YYYY-MM or YYYYMM) in its name"
        in err.splitlines()
    )
    assert pd.read_csv(out)["month"].nunique() == 36


def test_months_on_different_grids_and_crs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three grids (two in EPSG:4326, one in Web Mercator) give the same site means.

    Radiance is 100 * (lon - 125) at each pixel centre, so a site's exact-coverage mean
    is about 100 * (its centroid lon - 125) on any grid: 20 for the point site at 125.2.
    """
    folder = tmp_path / "rasters"
    folder.mkdir()
    grid_b = from_origin(124.9937, 40.0113, 0.0125, 0.0125)
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(125.0, 40.0)
    grid_c = from_origin(x0, y0, 1000.0, 1000.0)
    grids = [
        (GRID, (SIZE, SIZE), "EPSG:4326"),
        (grid_b, (36, 36), "EPSG:4326"),
        (grid_c, (40, 40), "EPSG:3857"),
    ]
    for y in (2023, 2024, 2025):
        for m in range(1, 13):
            transform, shape, crs = grids[m % 3]
            write_raster(
                folder / f"{y}-{m:02d}.tif",
                lon_field(transform, shape, crs, 0.0, 100.0),
                transform=transform,
                crs=crs,
            )
    out = tmp_path / "out.csv"
    code, _, _ = cli(
        capsys,
        "extract",
        "--sites",
        write_sites(tmp_path / "s.geojson"),
        "--rasters",
        folder,
        "--out",
        out,
    )
    assert code == 0
    table = pd.read_csv(out)
    alpha = table[table["site_id"] == "alpha"]
    assert len(alpha) == 36
    assert np.allclose(alpha["mean_radiance"], 20.0, atol=0.6)  # within ~half a pixel of lon
    assert (alpha["valid_fraction"] == 1).all()
    by_grid = alpha.groupby(alpha["month"].str[5:].astype(int) % 3)["n_pixels"].first()
    assert by_grid.nunique() == 3  # really three different grids


def test_site_outside_the_rasters_is_insufficient_data(
    months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"site_id": "inside", "batch": 2024},
                "geometry": {"type": "Point", "coordinates": [125.2, 39.8]},
            },
            {
                "type": "Feature",
                "properties": {"site_id": "far-away", "batch": 2024},
                "geometry": {"type": "Point", "coordinates": [129.5, 42.0]},
            },
        ],
    }
    out = tmp_path / "out"
    code, _, _ = cli(
        capsys,
        "run",
        "--sites",
        write_sites(tmp_path / "s.geojson", doc),
        "--source",
        "local",
        "--rasters",
        months,
        "--out",
        out,
        "--no-sensitivity",
        "--no-figures",
        "-q",
    )
    assert code == 0
    changes = pd.read_csv(out / "site_changes.csv").set_index("site_id")
    assert changes.loc["far-away", "class"] == "insufficient_data"
    assert changes.loc["inside", "class"] == "brightened"  # 3 -> 4 nW: ln(4.1 / 3.1) = 0.28 > 0.25


# --------------------------------------------------------------------------- claim files through 'sites validate'

CLAIM_CASES = EXPECTED["claims"]


@pytest.mark.parametrize("case", list(CLAIM_CASES))
def test_sites_validate_explains_a_bad_claim_file(
    case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CORPUS / "claims" / CLAIM_CASES[case]["file"]
    code, out, _ = cli(capsys, "sites", "validate", path)
    assert code == 1
    assert out.splitlines() == [CLAIM_CASES[case]["line"].replace("{file}", str(path))]


def test_sites_validate_checks_a_claim_against_the_site_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import point_feature
    from tests.conftest import write_sites as write_site_file

    sites = write_site_file(
        tmp_path / "s.geojson",
        [point_feature(f"s{i}", 126 + i / 10, 40, batch=2025) for i in range(3)],
    )
    good, wrong, other = (tmp_path / f"{n}.yaml" for n in ("good", "wrong", "other"))
    base = "text: 'Of 3 sites, 1 brightened.'\nsource: 'Test Daily'\nbaseline_year: 2024\ntarget_year: 2025\n"
    good.write_text(base + "batch: 2025\nn_sites: 3\nbrightened: 1\n", encoding="utf-8")
    wrong.write_text(base + "batch: 2025\nn_sites: 4\nbrightened: 1\n", encoding="utf-8")
    other.write_text(base + "batch: 2030\nn_sites: 3\nbrightened: 1\n", encoding="utf-8")
    assert cli(capsys, "sites", "validate", sites, good)[:2] == (0, "ok: 2 file(s) usable\n")
    code, out, _ = cli(capsys, "sites", "validate", sites, wrong)
    assert code == 1 and out.splitlines() == [
        f"{wrong}: n_sites=4, but the run has 3 site(s) of batch 2025; correct n_sites or pass the site files "
        "that hold the whole batch"
    ]
    code, out, _ = cli(capsys, "sites", "validate", sites, other)
    assert code == 0 and out.splitlines()[0].startswith(
        f"{other}: warning: not judged: the claim is about batch 2030"
    )
    assert out.splitlines()[-1] == "ok: 2 file(s) usable, 1 warning(s)"


# --------------------------------------------------------------------------- hostile rasters (issue 24)


def test_raster_declaring_a_huge_size_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """Before: 'unexpected error: MemoryError: Unable to allocate 39.2 GiB' (the site's window on its grid)."""
    folder = tmp_path / "rasters"
    write_months(folder)
    write_declared_huge(folder / "2024-05.tif")
    sites = write_sites(tmp_path / "sites.geojson")
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "extract",
            "--sites",
            str(sites),
            "--rasters",
            str(folder),
            "--out",
            str(tmp_path / "out.csv"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr == (
        f"nightlights: error: {folder / '2024-05.tif'}: declares 1000000 x 1000000 px, more than "
        "a global VIIRS grid (86400 x 33600); the file is damaged or not a night-light raster\n"
    )


def test_zone_spanning_too_many_pixels_is_refused_before_allocating() -> None:
    """A grid of 1e-6 degree pixels under the 10-billion-pixel cap: a 2 km site is 36000 x 47000 px."""
    import geopandas as gpd
    from pyproj import CRS
    from shapely.geometry import Point

    from pipeline.errors import SourceError
    from pipeline.measure.weights import coverage_weights
    from pipeline.read.sources import Grid

    res = 1e-6
    grid = Grid(CRS.from_epsg(4326).to_wkt(), (res, 0.0, 125.0, 0.0, -res, 40.0), 90_000, 90_000)
    zones = gpd.GeoSeries([Point(125.05, 39.95).buffer(0.02)], crs=4326)
    with pytest.raises(
        SourceError,
        match=r"^x\.tif: one zone spans \d+ x \d+ px of this raster \(pixels of 1e-06 x "
        r"1e-06\), more than the 25000000 px allowed per zone; .*gdalwarp -tr",
    ):
        coverage_weights(zones, grid, "x.tif")
    many = gpd.GeoSeries(
        [Point(125.0005 + 0.0002 * i, 39.9955).buffer(0.00015) for i in range(30)], crs=4326
    )
    fine = Grid(CRS.from_epsg(4326).to_wkt(), (1e-7, 0.0, 125.0, 0.0, -1e-7, 40.0), 90_000, 90_000)
    with pytest.raises(
        SourceError,
        match=r"^x\.tif: the 30 zones span \d+ px of this raster \(pixels of 1e-07 x "
        r"1e-07\), more than the 250000000 px allowed in all; ",
    ):
        coverage_weights(many, fine, "x.tif")


def test_integer_raster_without_nodata_warns_and_masks_the_assumed_fill(
    months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """int16 with -32768 fill and no nodata tag: the fill counted as 0 radiance (alpha read 1.5 for 3 nW)."""
    folder = tmp_path / "rasters"
    shutil.copytree(months, folder)
    bad = write_int16_without_nodata(
        folder / "2024-05.tif", 3
    )  # the lower half (alpha's rows too) is 3 nW
    out = tmp_path / "out.csv"
    code, _, err = cli(
        capsys,
        "extract",
        "--sites",
        write_sites(tmp_path / "s.geojson"),
        "--rasters",
        folder,
        "--out",
        out,
    )
    assert code == 0
    assert (
        f"{bad}: integer raster (int16) without a nodata tag; assuming -32768.0 marks missing pixels (else "
        "they would count as radiance); tag the real fill, e.g. gdal_edit.py -a_nodata VALUE"
    ) in err.splitlines()
    table = pd.read_csv(out).set_index(["site_id", "month"])
    alpha = table.loc[("alpha", "2024-05")]
    assert alpha["mean_radiance"] == pytest.approx(3.0)  # the valid half only
    assert alpha["valid_fraction"] == pytest.approx(0.5, abs=0.01)
    assert table.loc[("beta", "2024-05"), "mean_radiance"] == pytest.approx(3.0)


def test_site_far_outside_the_rasters_is_insufficient_data_and_listed_off_the_map(
    months: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 'unexpected error: WindowError: Intersection is empty' while drawing the map."""
    doc = json.loads(write_sites(tmp_path / "s0.geojson").read_text())
    doc["features"].append(
        {
            "type": "Feature",
            "properties": {"site_id": "faraway", "batch": 2024},
            "geometry": {"type": "Point", "coordinates": [10.0, 50.0]},
        }
    )
    sites = tmp_path / "sites.geojson"
    sites.write_text(json.dumps(doc))
    out = tmp_path / "out"
    code, _, err = cli(
        capsys,
        "run",
        "--sites",
        sites,
        "--source",
        "local",
        "--rasters",
        months,
        "--out",
        out,
        "--no-sensitivity",
        "--lang",  # the English map is the one read here: the Korean chart set is not drawn
        "en",
        "-q",
    )
    assert code == 0, err
    changes = pd.read_csv(out / "site_changes.csv").set_index("site_id")
    assert changes.loc["faraway", "class"] == "insufficient_data"
    assert set(changes.loc[["alpha", "beta"], "class"]) != {"insufficient_data"}
    svg = (out / "figures" / "map.svg").read_text()
    assert 'id="off-map' in svg and "faraway" in svg


@pytest.mark.slow
def test_a_real_sized_tile_is_read_by_window_in_bounded_memory(tmp_path: Path) -> None:
    """The size checks refuse what would be allocated whole, not big real tiles: an EOG-sized tile
    (2 GB when read whole) is read by window under a 1 GB address-space limit."""
    import os

    folder = tmp_path / "rasters"
    folder.mkdir()
    tile = write_eog_sized_tile(folder / "2024-01.tif")
    os.link(tile, folder / "2025-01.tif")
    sites, out = write_sites(tmp_path / "sites.geojson"), tmp_path / "out.csv"
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "extract",
            "--sites",
            str(sites),
            "--rasters",
            str(folder),
            "--out",
            str(out),
            "-q",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-800:]
    table = pd.read_csv(out)
    assert len(table) == 4 and np.allclose(table["mean_radiance"], 2.0)
