"""Bench worker: one competitor, one scale, in its own process.

    python -m bench.worker TOOL FOLDER SITES N_SITES N_MONTHS OUT.npy [CUBE_DIR]

Prints one JSON line: work time (after imports and input loading), bytes the process
read while working (``rchar`` from /proc/self/io: every read() of the files, cached or
not) and the answer's shape. The answer, the mean of valid pixels of each site in each
month (sites x months), is saved to OUT.npy so the runner can check tools agree.
The parent measures whole-process wall time and peak memory (ru_maxrss via wait4).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TOOLS = (
    "floor",
    "ours",
    "floor-cube",
    "ours-warm",
    "ours-nocube",
    "ours-1thread",
    "ours-chunked",
    "exactextract",
    "rasterstats",
    "rioxarray",
)


def _rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


def _files(folder: Path, n_months: int) -> list[Path]:
    return sorted(folder.glob("bench_*.tif"))[:n_months]


def floor(files: list[Path], sites, **_: object) -> np.ndarray:
    """Decode every source tile a site touches, in every month, on all cores; nothing else."""
    import rasterio
    from rasterio.windows import Window, from_bounds

    with rasterio.open(files[0]) as ds:
        bh, bw = ds.block_shapes[0]
        transform, height, width = ds.transform, ds.height, ds.width
    blocks = set()
    for b in sites.geometry.bounds.itertuples(index=False):
        w = from_bounds(*b, transform=transform).round_offsets().round_lengths()
        r0, c0 = max(int(w.row_off) - 1, 0), max(int(w.col_off) - 1, 0)
        r1, c1 = (
            min(int(w.row_off + w.height) + 1, height),
            min(int(w.col_off + w.width) + 1, width),
        )
        blocks |= {
            (i, j)
            for i in range(r0 // bh, (r1 - 1) // bh + 1)
            for j in range(c0 // bw, (c1 - 1) // bw + 1)
        }
    windows = [
        Window(j * bw, i * bh, min(bw, width - j * bw), min(bh, height - i * bh))
        for i, j in sorted(blocks)
    ]

    def one(path: Path) -> int:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(path) as ds:
            return sum(ds.read(1, window=w).size for w in windows)

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, files))
    return np.full((len(sites), len(files)), np.nan)


def floor_cube(files: list[Path], sites, cube_dir: str | None = None, **_: object) -> np.ndarray:
    """Decode every cube chunk the sites touch (those the cold run built), on all cores; nothing else.

    Reads the chunk files and decodes them with the cube's codec directly, skipping
    zarr's bookkeeping: the least any reader of this cube can do.
    """
    import numcodecs

    (cube,) = Path(str(cube_dir)).glob("cube-*.zarr")
    chunk_files = [p for p in (cube / "radiance" / "c").rglob("*") if p.is_file()]
    codec = numcodecs.Blosc()

    def one(path: Path) -> int:
        return len(codec.decode(path.read_bytes()))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, chunk_files))
    return np.full((len(sites), len(files)), np.nan)


def ours(
    files: list[Path],
    sites,
    cube_dir: str | None = None,
    threads: int | None = None,
    chunked: bool = False,
    **_: object,
) -> np.ndarray:
    """``chunked``: never take the streaming path (bench only: shows what it saves on counties)."""
    import dask
    import geopandas as gpd

    from pipeline.measure import zonal_stream

    if chunked:
        zonal_stream.STREAM_MIN_COVERAGE = 2.0

    from pipeline.measure.zonal import zone_month_table
    from pipeline.read.sources import find_monthly_rasters

    months = {p.name for p in files}
    years = tuple(
        sorted({int(p.stem.split("_")[1][:4]) for p in files})
    )  # open only these years' files
    rasters = [r for r in find_monthly_rasters(files[0].parent, years) if r.radiance.name in months]
    zones = gpd.GeoDataFrame(
        {"zone": sites["site_id"]}, geometry=sites.geometry.values, crs=sites.crs
    )
    with dask.config.set(num_workers=threads) if threads else dask.config.set({}):
        t = zone_month_table(rasters, zones, ("exact",), progress=False, cube_dir=cube_dir)
    wide = t.pivot(index="zone", columns="month", values="mean_radiance")
    return wide.loc[list(sites["site_id"]), [r.month for r in rasters]].to_numpy()


def exactextract_tool(files: list[Path], sites, **_: object) -> np.ndarray:
    from exactextract import exact_extract

    df = exact_extract(
        [str(p) for p in files], sites, "mean", include_cols=["site_id"], output="pandas"
    )
    return df[[f"{p.stem}_mean" for p in files]].to_numpy(dtype="float64")


def rasterstats_tool(files: list[Path], sites, **_: object) -> np.ndarray:
    from rasterstats import zonal_stats

    cols = [[s["mean"] for s in zonal_stats(sites, str(p), stats=["mean"])] for p in files]
    return np.array(cols, dtype="float64").T


def rioxarray_tool(files: list[Path], sites, **_: object) -> np.ndarray:
    import rioxarray

    out = np.full((len(sites), len(files)), np.nan)
    for j, p in enumerate(files):
        with rioxarray.open_rasterio(p, masked=True) as da:
            for i, geom in enumerate(sites.geometry):
                out[i, j] = float(da.rio.clip([geom], sites.crs, from_disk=True).mean())
    return out


def main(argv: list[str]) -> int:
    tool, folder, sites_path, n_sites, n_months, out = argv[:6]
    cube_dir = argv[6] if len(argv) > 6 else None
    import geopandas as gpd

    sites = gpd.read_file(sites_path).iloc[: int(n_sites)].reset_index(drop=True)
    files = _files(Path(folder), int(n_months))
    run = {
        "floor": floor,
        "floor-cube": floor_cube,
        "ours": ours,
        "ours-warm": ours,
        "ours-nocube": ours,
        "ours-1thread": ours,
        "ours-chunked": ours,
        "exactextract": exactextract_tool,
        "rasterstats": rasterstats_tool,
        "rioxarray": rioxarray_tool,
    }[tool]
    kwargs: dict[str, object] = {}
    if tool in ("ours", "ours-warm", "ours-1thread", "ours-chunked", "floor-cube"):
        kwargs["cube_dir"] = cube_dir
    if tool == "ours-chunked":
        kwargs["chunked"] = True
    if tool == "ours-1thread":
        kwargs["threads"] = 1
    r0, t0 = _rchar(), time.perf_counter()
    answer = run(files, sites, **kwargs)
    work, read = time.perf_counter() - t0, _rchar() - r0
    np.save(out, answer)
    print(json.dumps({"work_s": work, "read_bytes": read, "shape": list(answer.shape)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
