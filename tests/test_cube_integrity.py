"""The cube checks itself: damaged chunks are named and refilled, writers never collide, stale cubes go."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline.measure.cache import prune_cubes
from pipeline.measure.cube import CHUNK, LAYOUT, load_chunks, open_cube
from pipeline.measure.zonal import zone_month_table
from pipeline.read.sources import find_monthly_rasters
from pipeline.words import say
from tests.test_cube import _eog_months, _equal, _zones

ZONES = [(10, 10), (63, 64), (128, 190), (196, 296), (100, 250)]  # 8 chunks, some partial


def _cube(cache: Path) -> Path:
    (cube,) = cache.glob("cube-*.zarr")
    return cube


def _chunk_file(cache: Path, layer: str, cy: int, cx: int) -> Path:
    return _cube(cache) / layer / "c" / "0" / str(cy) / str(cx)


def _flip(path: Path, offsets: tuple[float, ...] = (0.3, 0.5, 0.7)) -> None:
    data = bytearray(path.read_bytes())
    for f in offsets:
        data[int(len(data) * f)] ^= 0x5A
    path.write_bytes(bytes(data))


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def built(tmp_path, rng):
    """Monthly files, zones, the answer read straight from the files, and a filled cube."""
    rasters = _eog_months(tmp_path / "r", rng)
    zones = _zones(ZONES)
    direct = zone_month_table(rasters, zones, progress=False)
    cache = tmp_path / "cache"
    _equal(direct, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    return rasters, zones, direct, cache


def _chunk_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "chunk" in r.getMessage()
    ]


def test_chunks_carry_a_crc32c_after_blosc_and_the_layout_is_new(built):
    *_, cache = built
    meta = json.loads((_cube(cache) / "radiance" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc", "crc32c"]
    attrs = json.loads((_cube(cache) / "zarr.json").read_text())["attributes"]
    assert attrs["layout"] == LAYOUT == 2
    assert len(attrs["sources"]) == 6 and all(
        Path(p).is_absolute() and Path(p).exists() for p, _, _ in attrs["sources"]
    )


@pytest.mark.parametrize("damage", ["flip", "cut", "both"])
def test_damaged_chunks_are_named_refilled_and_answers_equal_a_clean_cache(built, damage, caplog):
    rasters, zones, direct, cache = built
    hit = {
        "flip": [("radiance", 0, 0)],
        "cut": [("aux", 1, 2)],
        "both": [("radiance", 0, 0), ("radiance", 0, 1), ("aux", 2, 3), ("radiance", 3, 4)],
    }[damage]
    for layer, cy, cx in hit:
        (_cut if damage == "cut" or (damage == "both" and cx == 4) else _flip)(
            _chunk_file(cache, layer, cy, cx)
        )
    with caplog.at_level(logging.WARNING):
        again = zone_month_table(rasters, zones, progress=False, cube_dir=cache)
    _equal(direct, again)  # exactly the answer read from the files
    named = _chunk_warnings(caplog)
    assert sorted(m.split("chunk ")[1].split(" ")[0] for m in named) == sorted(
        f"{cy}_{cx}" for _, cy, cx in hit
    )
    assert all("refilling it from the monthly files" in m and str(_cube(cache)) in m for m in named)
    caplog.clear()
    with caplog.at_level(
        logging.WARNING
    ):  # repaired on disk: the next run reads it without complaint
        _equal(direct, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    assert _chunk_warnings(caplog) == []


def test_a_layer_file_lost_behind_its_radiance_file_is_named_and_refilled(built, caplog):
    rasters, zones, direct, cache = built
    _chunk_file(cache, "aux", 1, 2).unlink()  # zarr alone would read the fill value 0 as data
    with caplog.at_level(logging.WARNING):
        _equal(direct, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    assert ["1_2" in m and "missing" in m for m in _chunk_warnings(caplog)] == [True]
    assert _chunk_file(cache, "aux", 1, 2).exists()


def test_damaged_cube_metadata_builds_the_cube_again(built, caplog):
    rasters, zones, direct, cache = built
    (_cube(cache) / "zarr.json").write_text("{ not json")
    with caplog.at_level(logging.WARNING):
        _equal(direct, zone_month_table(rasters, zones, progress=False, cube_dir=cache))
    assert any("metadata is damaged" in r.getMessage() for r in caplog.records)
    assert len(list(cache.glob("cube-*.zarr"))) == 1 and not list(cache.glob(".cube-*"))


# --------------------------------------------------------------------------- one writer per chunk


def test_a_chunk_locked_by_another_writer_is_waited_for_and_read_not_refilled(tmp_path, rng):
    """The other writer (here: the test, holding the lock) fills chunk 0_0 with its own values;
    load_chunks fills the free chunk 0_1 meanwhile, waits, then reads 0_0 as that writer left it."""
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cube = open_cube(tmp_path / "cache", rasters)
    chunks = np.array([[0, 0], [0, 1]])
    other = open_cube(tmp_path / "elsewhere", rasters)  # reference values for 0_0, filled elsewhere
    want, _ = load_chunks(rasters, chunks, other)
    from pipeline.measure.cube import _Store

    rad = np.zeros((2, 2, CHUNK, CHUNK), dtype=cube.rad_dtype)
    aux = np.zeros((2, 2, CHUNK, CHUNK), dtype=cube.aux_dtype)
    store = _Store(Path(cube.path), [("radiance", rad), ("aux", aux)], chunks, rasters[0].grid)
    fd = store.lock(0, wait=False)
    assert (
        fd is not None and store.lock(0, wait=False) is None
    )  # a second lock on the same chunk fails
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(got=load_chunks(rasters, chunks, cube)))
    worker.start()
    while not store.built(1, quiet=True):  # the free chunk is filled while 0_0 is held
        assert worker.is_alive()
        worker.join(0.01)
    assert worker.is_alive() and not store.built(0, quiet=True)
    rad[0] = 7.0  # the other writer's own values: proof that the waiting one reads, not refills
    aux[0] = 3
    store.write([0])
    os.close(fd)
    worker.join()
    got_rad, got_aux = result["got"]
    assert (got_rad[0] == 7.0).all() and (got_aux[0] == 3).all()
    assert np.array_equal(got_rad[1], want[1], equal_nan=True)


def test_a_writer_that_gave_up_leaves_the_chunk_to_the_next(tmp_path, rng):
    rasters = _eog_months(tmp_path / "r", rng, n=2)
    cube = open_cube(tmp_path / "cache", rasters)
    chunks = np.array([[2, 2]])
    want, _ = load_chunks(rasters, chunks, open_cube(None, rasters))
    lock = Path(cube.path) / "locks" / "2_2"
    import fcntl

    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(got=load_chunks(rasters, chunks, cube)))
    worker.start()
    os.close(fd)  # released without filling (a writer that died): the waiting one fills it itself
    worker.join()
    assert np.array_equal(result["got"][0], want, equal_nan=True)
    assert (Path(cube.path) / "radiance" / "c" / "0" / "2" / "2").exists()


# --------------------------------------------------------------------------- pruning


def test_prune_removes_cubes_whose_inputs_are_gone_or_changed_and_says_how_much(tmp_path, rng):
    cache = tmp_path / "cache"
    a = _eog_months(tmp_path / "a", rng, n=2)
    b = _eog_months(tmp_path / "b", rng, n=2)
    c = _eog_months(tmp_path / "c", rng, n=2)
    zones = _zones([(10, 10), (100, 150)])
    for rasters in (a, b, c):
        zone_month_table(rasters, zones, progress=False, cube_dir=cache)
    cubes = {name: Path(open_cube(cache, r).path) for name, r in (("a", a), ("b", b), ("c", c))}
    sizes = {
        k: sum(p.stat().st_size for p in v.rglob("*") if p.is_file()) for k, v in cubes.items()
    }
    assert prune_cubes(cache) == (0, 0)  # every input still there: nothing to do
    b[0].aux.unlink()  # an input deleted
    os.utime(c[1].radiance, ns=(0, c[1].radiance.stat().st_mtime_ns + 10**9))  # an input changed
    old = cache / "cube-00000000000000000000.zarr"  # a cube of an older layout
    old.mkdir()
    (old / "zarr.json").write_text(json.dumps({"attributes": {"layout": 1}}))
    old_size = (old / "zarr.json").stat().st_size
    assert prune_cubes(cache, keep=[cubes["c"]]) == (2, sizes["b"] + old_size)
    assert (
        cubes["a"].exists() and cubes["c"].exists() and not cubes["b"].exists() and not old.exists()
    )
    assert prune_cubes(cache) == (1, sizes["c"])
    assert [p.name for p in cache.iterdir()] == [cubes["a"].name]
    assert prune_cubes(tmp_path / "no-such-cache") == (0, 0)
    rasters = find_monthly_rasters(tmp_path / "a")  # the survivor is still used
    assert open_cube(cache, rasters).path == str(cubes["a"])


# --------------------------------------------------------------------------- whole runs, in processes

CHILD = """
import pathlib, sys, time
flag, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
import pipeline.measure.cube as cube
read = cube._read_sources
def stall(*args, **kwargs):
    if not flag.exists():
        flag.write_text("in")
        while not go.exists():
            time.sleep(0.02)
    return read(*args, **kwargs)
cube._read_sources = stall
from pipeline.cli import main
sys.exit(main(sys.argv[3:]))
"""


BARRIER = """
import os, pathlib, sys, time
meet = pathlib.Path(sys.argv[1])
import pipeline.measure.cube as cube
fill = cube._fill
def together(*args, **kwargs):  # every writer reaches its first fill before any goes on: a real race
    (meet / str(os.getpid())).touch()
    while len(list(meet.iterdir())) < 3:
        time.sleep(0.01)
    return fill(*args, **kwargs)
cube._fill = together
from pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from tests.scenarios import planted

    root = tmp_path_factory.mktemp("scenario")
    folder = planted(root, n_sites=12)[3]
    return folder, root / "sites.geojson"


def _run_args(scenario, out: Path, cache: Path | str) -> list[str]:
    folder, sites = scenario
    return [
        "run",
        "--source",
        "local",
        "--rasters",
        str(folder),
        "--sites",
        str(sites),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-figures",
        "--no-sensitivity",
        "-q",
    ]


def _files(out: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def solo(scenario, tmp_path_factory):
    from tests.test_faults import clean_env

    tmp = tmp_path_factory.mktemp("solo")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *_run_args(scenario, tmp / "out", tmp / "cache")],
        env=clean_env(tmp),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return _files(tmp / "out")


@pytest.mark.xdist_group("solo_run")  # one worker makes the scenario and solo
@pytest.mark.slow
def test_three_runs_at_once_on_one_cache_equal_a_solo_run(scenario, solo, tmp_path):
    from tests.test_faults import clean_env

    cache, meet = tmp_path / "shared-cache", tmp_path / "meet"
    meet.mkdir()
    logs = [
        tmp_path / f"log{i}" for i in range(3)
    ]  # files, not pipes: a full pipe would stall a writer
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                BARRIER,
                str(meet),
                *_run_args(scenario, tmp_path / f"out{i}", cache),
                "--debug",
            ],
            env=clean_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        for i, log in enumerate(logs)
    ]
    filled = 0
    for p, log in zip(procs, logs, strict=True):
        p.wait(timeout=180)
        err = log.read_text()
        assert p.returncode == 0, err[-2000:]
        assert (
            "failed its check" not in err and "missing" not in err
        )  # never a damaged or half-written chunk
        filled += sum(
            int(x.split("filled ")[1].split(" ")[0]) for x in err.splitlines() if " filled " in x
        )
    for i in range(3):
        assert _files(tmp_path / f"out{i}") == solo
    (cube,) = (cache / "cube").glob("cube-*.zarr")
    built = len(list((cube / "radiance" / "c" / "0").glob("*/*")))
    assert built > 4 and filled == built  # every chunk filled by exactly one writer of the three
    assert not list(cube.rglob("*.partial"))


@pytest.mark.xdist_group("solo_run")  # one worker makes the scenario and solo
@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "word", "stage"),
    [
        (signal.SIGINT, 130, "interrupted", "extraction"),
        (signal.SIGTERM, 143, "terminated", "cube fill"),
        (signal.SIGINT, 130, "interrupted", "cube fill"),
    ],
)
def test_ctrl_c_or_sigterm_while_reading_exits_with_one_line_and_nothing_corrupt(
    scenario, solo, tmp_path, sig, code, word, stage
):
    from tests.test_faults import clean_env

    out, cache = tmp_path / "out", (tmp_path / "cache" if stage == "cube fill" else "none")
    out.mkdir()
    (out / "earlier.csv").write_text("kept")
    flag, go = tmp_path / "flag", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flag), str(go), *_run_args(scenario, out, cache)],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        subprocess.run(["sleep", "0.05"])
    proc.send_signal(sig)
    go.write_text("go")  # the stalled read may finish now: the signal is already pending
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    lines = [
        x for x in err.strip().splitlines() if not x.startswith(say("synthetic_mark"))
    ]  # the scenario's label
    assert lines == [f"nightlights: {word}; earlier outputs were left untouched"]
    assert sorted(p.name for p in out.iterdir()) == ["earlier.csv"]
    assert not [p for p in tmp_path.iterdir() if ".nightlights-staging-" in p.name]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *_run_args(scenario, out, cache)],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "chunk" not in done.stderr, done.stderr
    assert {k: v for k, v in _files(out).items() if k != "earlier.csv"} == solo


def test_cache_prune_command_prints_what_it_freed(tmp_path, rng, capsys):
    from pipeline.cli import build_parser

    parser = build_parser()
    rasters = _eog_months(tmp_path / "r", rng, n=1)
    cache = tmp_path / "cache"
    zone_month_table(rasters, _zones([(10, 10)]), progress=False, cube_dir=cache / "cube")
    size = sum(p.stat().st_size for p in _cube(cache / "cube").rglob("*") if p.is_file())
    rasters[0].radiance.unlink()
    args = parser.parse_args(["cache", "prune", "--cache-dir", str(cache)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == (
        f"{cache / 'cube'}: removed 1 cube(s) whose inputs are gone or changed, "
        f"freed {size / 1024:.1f} KB\n"
        f"{cache / 'results'}: removed 0 kept result(s) whose inputs are gone or changed, "
        "freed 0 B\n"
    )
    assert list((cache / "cube").iterdir()) == []
