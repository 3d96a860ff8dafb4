"""Where the time of one extraction goes, stage by stage (``make bench`` gives the totals).

    python -m bench.phases [--scale "nk 200x48"] [--cube cold|warm|none] [--threads N]

Runs one of the benchmark's cases in this process, after its own start-up (Python,
geopandas, reading the zones), and prints the wall seconds of the serial stages (imports,
listing the rasters, exact coverage weights, opening the cube, the tasks as a whole) and,
inside the tasks, the CPU seconds of each kind of work summed over threads
(``time.thread_time``: a thread waiting for the GIL or the disk is not counted). Stages are
timed by wrapping the pipeline's own functions, so the split is exclusive: reading the
windows excludes cleaning them, the arithmetic excludes reading chunks.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, function, stage name): exclusive CPU time is the function's own minus its listed children
TIMED = (
    ("pipeline.measure.cube", "_read_sources", "read and decode windows (GDAL)"),
    ("pipeline.measure.cube", "clean", "clean nodata"),
    ("pipeline.measure.cube", "_encode", "cube: compress chunks"),
    ("pipeline.measure.cube", "_put", "cube: write chunk files"),
    ("pipeline.measure.cube", "_decode", "cube: check and decode chunks"),
    ("pipeline.measure.zonal", "part_stats", "apply weights (chunked)"),
    ("pipeline.measure.zonal_stream", "_read", "read and decode windows (GDAL)"),
    ("pipeline.measure.zonal_stream", "clean_pixels", "clean nodata"),
    ("pipeline.measure.zonal", "stream_stats", "apply weights (streamed)"),
)


def _instrument(cpu: dict[str, float]) -> None:
    """Wrap the functions of :data:`TIMED`; each adds its CPU time minus its wrapped callees'."""
    import importlib

    local = threading.local()
    for module, name, stage in TIMED:
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            continue
        inner = getattr(mod, name)

        def timed(*args, _inner=inner, _stage=stage, **kwargs):
            stack = getattr(local, "stack", None)
            if stack is None:
                stack = local.stack = []
            stack.append(0.0)
            t0 = time.thread_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent = time.thread_time() - t0
                children = stack.pop()
                cpu[_stage] += spent - children
                if stack:
                    stack[-1] += spent

        setattr(mod, name, timed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__.splitlines()[0])
    p.add_argument(
        "--scale",
        default="nk 200x48",
        help="a scale of bench.run, e.g. 'county 120x72' (default nk 200x48)",
    )
    p.add_argument(
        "--cube",
        choices=("cold", "warm", "none"),
        default="cold",
        help="build the cube (cold), reuse one built just before (warm), or read the files (none)",
    )
    p.add_argument("--threads", type=int, help="dask threads (default: one per core)")
    p.add_argument(
        "--data", type=Path, default=ROOT / "data" / "bench", help="cache of generated bench data"
    )
    args = p.parse_args(argv)
    import geopandas as gpd

    from bench.data import ensure_data
    from bench.run import QUICK, SCALES

    scale = next((s for s in SCALES + QUICK if s.name == args.scale), None)
    if scale is None:
        p.error(f"no scale {args.scale!r}; choose among: {', '.join(s.name for s in SCALES)}")
    data = ensure_data(args.data)
    sites = gpd.read_file(data / scale.sites).iloc[: scale.n_sites].reset_index(drop=True)
    files = sorted((data / scale.layout).glob("bench_*.tif"))[: scale.n_months]
    wall: dict[str, float] = {}
    cpu: dict[str, float] = defaultdict(float)
    cache = Path(tempfile.mkdtemp(prefix="nl-phases-", dir=data))
    try:
        t = time.perf_counter()
        import dask

        from pipeline.measure import cube, weights, zonal
        from pipeline.read.sources import find_monthly_rasters

        wall["imports (dask, rasterio, exactextract, pipeline)"] = time.perf_counter() - t
        t = time.perf_counter()
        months = {f.name for f in files}
        years = tuple(sorted({int(f.stem.split("_")[1][:4]) for f in files}))
        rasters = [
            r for r in find_monthly_rasters(files[0].parent, years) if r.radiance.name in months
        ]
        wall["list the rasters"] = time.perf_counter() - t
        zones = gpd.GeoDataFrame(
            {"zone": sites["site_id"]}, geometry=sites.geometry.values, crs=sites.crs
        )
        cube_dir = None if args.cube == "none" else cache
        if args.cube == "warm":
            zonal.zone_month_table(rasters, zones, ("exact",), progress=False, cube_dir=cube_dir)
        for name, stage in (
            ("coverage_weights", "exact coverage weights"),
            ("open_cube", "open the cube"),
        ):
            inner = getattr(zonal, name)

            def serial(*a, _inner=inner, _stage=stage, **k):
                t0 = time.perf_counter()
                try:
                    return _inner(*a, **k)
                finally:
                    wall[_stage] = wall.get(_stage, 0.0) + time.perf_counter() - t0

            setattr(zonal, name, serial)
        _instrument(cpu)
        del cube, weights  # imported above only to time their imports
        t = time.perf_counter()
        with dask.config.set(num_workers=args.threads) if args.threads else dask.config.set({}):
            zonal.zone_month_table(rasters, zones, ("exact",), progress=False, cube_dir=cube_dir)
        total = time.perf_counter() - t
        serial_s = wall.get("exact coverage weights", 0.0) + wall.get("open the cube", 0.0)
        wall["tasks (wall, on all threads) and assembling the table"] = total - serial_s
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"{scale.name}, cube {args.cube}, threads {args.threads or 'one per core'}")
    print("\nserial stages, wall s:")
    for k, v in wall.items():
        print(f"  {v:7.3f}  {k}")
    print("\ninside the tasks, CPU s summed over threads (exclusive):")
    for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {v:7.3f}  {k}")
    print(f"  {sum(cpu.values()):7.3f}  all of the above")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
