"""Demo: a synthetic, seeded stand-in for EOG VNL monthly composites over North Korea.

SYNTHETIC DATA. Nothing made from these rasters is evidence about North Korea.

Outputs
    ``SVDNB_npp_YYYYMMDD-YYYYMMDD_75N060E_vcmslcfg_v10_c<stamp>.{avg_rade9h,cf_cvg}.tif``
    for every month of the spec's years (2023-01 to 2025-12 by default; the county comparison
    asks for 2020-01 on) on the 15 arc-second EOG grid over lon 124-131 E, lat 37.5-43 N,
    plus ``truth.csv`` with each site's planted change, ``truth.json`` with the planted
    comparison effects, and ``DEMO_DATA_IS_SYNTHETIC.txt``.

What it imitates, so the pipeline meets real-world structure: a dark rural background
(tenths of nW/cm2/sr) with noise and occasional negative values; lit towns at every site
and elsewhere, blurred over neighbouring pixels like VIIRS blooming; a much brighter
Pyongyang; snow-season brightening (identical in every year); cloud-free counts that
fall in the summer monsoon, with months and patches of zero coverage where radiance is
0 (not observed, not dark). Each site's change from the baseline to the target year is
drawn from the seed (a third brighten, a third stay, a third dim, on average), not chosen
to confirm or refute any claim.

For the county comparison (``comparison=True`` with a ``units_file``), the demo also gives
every unit one to three lit towns (so county sums of light are not just background), and
plants, from the seed: a yearly log shock per unit (sd ``unit_noise``, so that units differ
from year to year as real counties do); a log effect on all light inside the ``treated_units``
in the target year only; a spike at the inauguration month decaying over the next months at about half
the sites with an inauguration; and a town 3.5 km from every site whose light changes in the
target year at about 40% of the sites (a near-ring effect, 0-5 km). ``truth.json`` records them.

The world that ``--source demo`` reads (every shipped site, its own time line) is a spec built
by :mod:`pipeline.fetch.world`; tests build small specs of their own. Longer than most modules because
each real-world structure it imitates (blooming, snow, clouds, unit shocks, cohorts, spikes,
near towns) has its own seeded draw here, so that adding one never changes another's numbers.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.transform import from_origin

from pipeline.outputs import atomic_write

log = logging.getLogger(__name__)

DEMO_BOUNDS = (124.0, 37.5, 131.0, 43.0)
RES = 1 / 240  # 15 arc-seconds, the EOG VNL grid
PYONGYANG = (125.7625, 39.0392)
SNOW_MONTHS = (12, 1, 2)
# Mean cloud-free observation counts by calendar month (low in the Jun-Aug monsoon).
MONTH_COVERAGE = (14, 13, 12, 10, 8, 4, 3, 4, 8, 12, 14, 14)
MARKER = "DEMO_DATA_IS_SYNTHETIC.txt"
GENERATOR_VERSION = 5  # bump whenever the rasters for a given spec change


@dataclass(frozen=True)
class Town:
    town_id: str
    lon: float
    lat: float
    peak: float  # nW/cm2/sr at the centre
    sigma_px: float  # spread in pixels (blooming)
    log_change: float = (
        0.0  # applied from change_from on (months since year 0; None: the target year's January)
    )
    is_site: bool = False
    spike: float = 0.0  # log jump at spike_month (months since year 0), decaying with spike_tau
    spike_tau: float = 1.0
    spike_month: int = -1
    change_from: int | None = None


@dataclass(frozen=True)
class DemoSpec:
    """Everything that determines the demo rasters; its hash names the cache folder."""

    seed: int = 2024
    bounds: tuple[float, float, float, float] = DEMO_BOUNDS
    years: tuple[int, ...] = (2023, 2024, 2025)
    target_year: int = 2025
    sites: tuple[tuple[str, float, float], ...] = ()
    n_other_towns: int = 200
    background: float = 0.25
    month_noise: float = 0.12  # log sd of a town's month-to-month variation
    snow_gain: float = 1.3
    regional_change: float = (
        0.0  # log change of all light (towns and background) in the target year
    )
    change_range: tuple[float, float] = (
        0.15,
        1.2,
    )  # |log change| of a site's own light when it changes
    towns: tuple[Town, ...] = field(default=(), compare=False)
    # the county comparison (see the module docstring); off: the rasters are those of earlier versions
    comparison: bool = False
    units_file: str | None = None  # unit polygons (GeoJSON): towns, yearly shocks, treatment
    treated_units: tuple[str, ...] = ()
    inaugurations: tuple[tuple[str, str], ...] = ()  # (site_id, "YYYY-MM")
    treatment_range: tuple[float, float] = (0.2, 0.4)  # planted log effect on treated units' light
    spike_range: tuple[float, float] = (0.6, 1.0)  # log jump at the inauguration month
    spike_share: float = 0.5
    near_share: float = 0.4
    near_range: tuple[float, float] = (0.5, 0.9)  # |log change| (a fall) of the near town
    unit_noise: float = 0.05  # log sd of each unit's yearly shock (all its light)
    # the world's time line (see pipeline.fetch.world.load_world): each site's change from its own month, and per cohort
    # (label, first month, units holding its sites) a treatment effect from that month on
    change_from: tuple[tuple[str, int], ...] = ()  # (site_id, months since year 0)
    cohorts: tuple[tuple[str, int, tuple[str, ...]], ...] = ()

    def key(self) -> str:
        """Names the folder: everything that shapes a month's rasters, not which months are built
        (``years``), so one folder holds any months of one synthetic world."""
        d = asdict(self)
        d.pop("towns")
        d.pop("years")
        if self.units_file:  # the file's content, not its path, names the demo
            d["units_file"] = hashlib.sha256(Path(self.units_file).read_bytes()).hexdigest()
        d["generator"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def shape(self) -> tuple[int, int]:
        w, s, e, n = self.bounds
        return round((n - s) / RES), round((e - w) / RES)

    @property
    def transform(self) -> rasterio.Affine:
        return from_origin(self.bounds[0], self.bounds[3], RES, RES)


def _town_rng(seed: int, town_id: str, *more: int) -> np.random.Generator:
    """A generator per town (and month): adding a site never changes another town's draws."""
    return np.random.default_rng([seed, zlib.crc32(town_id.encode()), *more])


def make_towns(spec: DemoSpec) -> tuple[Town, ...]:
    """Sites, other towns and Pyongyang, with brightness and planted change from the seed."""
    towns = []
    start = dict(spec.change_from)
    for site_id, lon, lat in spec.sites:
        rng = _town_rng(spec.seed, site_id)
        kind = rng.choice(["brightened", "unchanged", "dimmed"])
        magnitude = rng.uniform(*spec.change_range)
        change = {"brightened": magnitude, "unchanged": 0.0, "dimmed": -magnitude}[kind]
        peak = float(np.clip(rng.lognormal(np.log(6.0), 0.4), 3.0, 20.0))
        towns.append(
            Town(
                site_id,
                lon,
                lat,
                peak,
                float(rng.uniform(1.0, 1.6)),
                change,
                True,
                change_from=start.get(site_id),
            )
        )
    w, s, e, n = spec.bounds
    rng = np.random.default_rng(spec.seed)
    for i in range(spec.n_other_towns):
        towns.append(
            Town(
                f"town-{i:03d}",
                float(rng.uniform(w, e)),
                float(rng.uniform(s, n)),
                float(np.clip(rng.lognormal(np.log(2.5), 0.6), 0.8, 15)),
                float(rng.uniform(0.8, 1.5)),
            )
        )
    if w < PYONGYANG[0] < e and s < PYONGYANG[1] < n:
        towns.append(Town("pyongyang", *PYONGYANG, 60.0, 5.0))
    if spec.comparison:
        towns = _with_spikes(spec, towns) + near_towns(spec) + unit_towns(spec)
    return tuple(towns)


def month_number(month: str) -> int:
    """``"YYYY-MM"`` (or a longer date) as months since year 0."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _with_spikes(spec: DemoSpec, towns: list[Town]) -> list[Town]:
    """Sites with an inauguration month get, with probability ``spike_share``, a decaying spike."""
    inaug = dict(spec.inaugurations)
    out = []
    for t in towns:
        if t.is_site and t.town_id in inaug:
            rng = _town_rng(spec.seed, t.town_id, 1)
            if rng.random() < spec.spike_share:
                t = dataclasses.replace(
                    t,
                    spike=float(rng.uniform(*spec.spike_range)),
                    spike_tau=float(rng.uniform(1.5, 3.0)),
                    spike_month=month_number(inaug[t.town_id]),
                )
        out.append(t)
    return out


def near_towns(spec: DemoSpec) -> list[Town]:
    """A town 3.5 km from each site; at ``near_share`` of them it dims in the target year."""
    out = []
    start = dict(spec.change_from)
    for site_id, lon, lat in spec.sites:
        rng = _town_rng(spec.seed, site_id, 2)
        planted = rng.random() < spec.near_share
        bearing = rng.uniform(0, 2 * np.pi)
        dlon = 3.5 * np.sin(bearing) / (111.32 * np.cos(np.radians(lat)))
        dlat = 3.5 * np.cos(bearing) / 110.57
        change = -float(rng.uniform(*spec.near_range)) if planted else 0.0
        out.append(
            Town(
                f"{site_id}~near",
                lon + dlon,
                lat + dlat,
                8.0,
                1.0,
                change,
                change_from=start.get(site_id),
            )
        )
    return out


@functools.cache
def _units(path: str) -> gpd.GeoDataFrame:
    """The demo's unit polygons, read once; their overlap warnings are the boundary file's business,
    not the run's (a user's own units file gets them when the run reads it)."""
    from pipeline.read.units import read_units

    logger = logging.getLogger("pipeline.read.units")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return read_units(path)
    finally:
        logger.setLevel(level)


def unit_towns(spec: DemoSpec) -> list[Town]:
    """One lit town at each unit's representative point, and up to two more inside it."""
    if not spec.units_file:
        return []
    units = _units(spec.units_file)
    out = []
    for uid, geom in zip(units["unit_id"], units.geometry, strict=True):
        rng = _town_rng(spec.seed, f"unit:{uid}")
        points = [geom.representative_point()]
        x0, y0, x1, y1 = geom.bounds
        for _ in range(int(rng.integers(0, 3))):
            for _try in range(50):
                p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
                if geom.contains(p):
                    points.append(p)
                    break
        for j, p in enumerate(points):
            peak = float(np.clip(rng.lognormal(np.log(2.0 if j else 4.0), 0.5), 0.5, 15.0))
            out.append(Town(f"unit-{uid}-{j}", p.x, p.y, peak, float(rng.uniform(1.0, 2.0))))
    return out


def treatment_effect(spec: DemoSpec) -> float:
    """The planted log effect on the treated units' light in the target year (0 without any)."""
    if not (spec.comparison and spec.treated_units):
        return 0.0
    return float(
        np.random.default_rng([spec.seed, zlib.crc32(b"treatment")]).uniform(*spec.treatment_range)
    )


def cohort_effect(spec: DemoSpec, label: str) -> float:
    """The planted log effect on the units holding a cohort's sites, from the cohort's first month on."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(b"treatment"), zlib.crc32(label.encode())])
    return float(rng.uniform(*spec.treatment_range))


@dataclass(frozen=True)
class UnitLayer:
    """Which unit each pixel's centre lies in (-1: none), and which units are treated."""

    index: np.ndarray  # int32 (rows, cols)
    treated: np.ndarray  # bool per unit
    cohorts: tuple[
        tuple[int, float, np.ndarray], ...
    ] = ()  # (first month, log effect, bool per unit)


def unit_layer(spec: DemoSpec) -> UnitLayer | None:
    """The units rasterised on the demo grid (None without a comparison)."""
    from rasterio.features import rasterize

    if not (spec.comparison and spec.units_file):
        return None
    units = _units(spec.units_file)
    index = rasterize(
        ((g, i) for i, g in enumerate(units.geometry)),
        out_shape=spec.shape,
        transform=spec.transform,
        fill=-1,
        dtype="int32",
    )
    cohorts = tuple(
        (start, cohort_effect(spec, label), units["unit_id"].isin(set(ids)).to_numpy())
        for label, start, ids in spec.cohorts
    )
    return UnitLayer(index, units["unit_id"].isin(set(spec.treated_units)).to_numpy(), cohorts)


def unit_year_factor(spec: DemoSpec, layer: UnitLayer, year: int, month: int = 1) -> np.ndarray:
    """Per-pixel light factor of the month: each unit's own yearly shock (local economy, supply), the
    treatment effect on treated units in the target year, and each cohort's effect from its first month."""
    shock = np.random.default_rng([spec.seed, zlib.crc32(b"unit-year"), year]).normal(
        0, spec.unit_noise, len(layer.treated)
    )
    if year == spec.target_year:
        shock = shock + treatment_effect(spec) * layer.treated
    for start, effect, treated in layer.cohorts:
        if year * 12 + month - 1 >= start:
            shock = shock + effect * treated
    return np.where(layer.index >= 0, np.exp(shock[np.maximum(layer.index, 0)]), 1.0)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], coarse: int = 14) -> np.ndarray:
    """A smooth random field (cloud pattern) by bilinear upsampling of coarse noise."""
    g = rng.normal(size=(coarse, coarse))
    rows = np.linspace(0, coarse - 1, shape[0])
    cols = np.linspace(0, coarse - 1, shape[1])
    tmp = np.stack([np.interp(cols, np.arange(coarse), r) for r in g])
    return np.stack([np.interp(rows, np.arange(coarse), c) for c in tmp.T]).T


def render_month(
    spec: DemoSpec, towns: Sequence[Town], year: int, month: int, units: UnitLayer | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Radiance (float32, nW/cm2/sr) and cloud-free count (uint16) for one month.

    ``units`` (from :func:`unit_layer`): the unit-year shocks and the treatment effect.
    """
    rng = np.random.default_rng([spec.seed, year, month])
    h, w = spec.shape
    season = spec.snow_gain if month in SNOW_MONTHS else 1.0
    regional = float(rng.lognormal(0.0, 0.04)) * (
        np.exp(spec.regional_change) if year >= spec.target_year else 1.0
    )
    light = np.full((h, w), spec.background * season * regional, dtype="float64")
    inv = ~spec.transform
    for t in towns:
        col, row = inv @ (t.lon, t.lat)
        since_change = (
            year * 12
            + month
            - 1
            - (spec.target_year * 12 if t.change_from is None else t.change_from)
        )
        change = t.log_change if since_change >= 0 else 0.0
        wobble = _town_rng(spec.seed, t.town_id, year, month).normal(0.0, spec.month_noise)
        level = t.peak * season * regional * np.exp(change + wobble)
        since = year * 12 + month - 1 - t.spike_month
        if t.spike and since >= 0:
            level *= np.exp(t.spike * np.exp(-since / t.spike_tau))
        r = int(np.ceil(5 * t.sigma_px))
        r0, r1 = max(int(row) - r, 0), min(int(row) + r + 1, h)
        c0, c1 = max(int(col) - r, 0), min(int(col) + r + 1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        d2 = (yy + 0.5 - row) ** 2 + (xx + 0.5 - col) ** 2
        light[r0:r1, c0:c1] += level * np.exp(-d2 / (2 * t.sigma_px**2))
    if units is not None:
        light *= unit_year_factor(spec, units, year, month)
    clouds = np.exp(0.7 * _smooth_field(rng, (h, w)))
    cut = 0.5 if (year, month) in ((2024, 7), (2025, 8)) else 0.3
    cvg = rng.poisson(MONTH_COVERAGE[month - 1] * clouds).astype("uint16")
    cvg[clouds < cut] = 0
    noise = rng.normal(0.0, 1.0, size=(h, w)) * (0.15 + 0.05 * light) / np.sqrt(np.maximum(cvg, 1))
    rad = (light + noise).astype("float32")
    rad[cvg == 0] = 0.0
    return rad, cvg


def eog_name(year: int, month: int, layer: str) -> str:
    """A real EOG VNL monthly v10 file name (creation stamp: the 5th of the next month)."""
    last = calendar.monthrange(year, month)[1]
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"SVDNB_npp_{year}{month:02d}01-{year}{month:02d}{last:02d}_75N060E_vcmslcfg_v10_"
        f"c{ny}{nm:02d}051200.{layer}.tif"
    )


def _write_tif(path: Path, array: np.ndarray, spec: DemoSpec) -> None:
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs="EPSG:4326",
        transform=spec.transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        zlevel=1,
    )
    with atomic_write(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(array, 1)
        ds.update_tags(SYNTHETIC="true", GENERATOR="nightlights.demo", SEED=str(spec.seed))


def month_text(month: int | None) -> str | None:
    return None if month is None else f"{month // 12}-{month % 12 + 1:02d}"


def truth_table(spec: DemoSpec, towns: Sequence[Town]) -> pd.DataFrame:
    rows = []
    for t in towns:
        if not t.is_site:
            continue
        cls = "brightened" if t.log_change > 0 else "dimmed" if t.log_change < 0 else "unchanged"
        row = {
            "site_id": t.town_id,
            "planted_class": cls,
            "planted_log_change": round(t.log_change, 4),
            "peak_radiance": round(t.peak, 3),
            "sigma_px": round(t.sigma_px, 3),
        }
        if spec.change_from:
            row["change_from"] = month_text(
                t.change_from if t.change_from is not None else spec.target_year * 12
            )
        if spec.comparison:
            near = {n.town_id: n.log_change for n in towns if n.town_id.endswith("~near")}
            row |= {
                "inauguration": dict(spec.inaugurations).get(t.town_id),
                "spike_log": round(t.spike, 4),
                "spike_tau_months": round(t.spike_tau, 3) if t.spike else None,
                "near_log_change": round(near.get(f"{t.town_id}~near", 0.0), 4),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def truth_summary(spec: DemoSpec) -> dict[str, object]:
    """The planted comparison effects (``truth.json``)."""
    out: dict[str, object] = {
        "synthetic": True,
        "seed": spec.seed,
        "target_year": spec.target_year,
        "treatment_log_effect": round(treatment_effect(spec), 6),
        "treatment_years": [spec.target_year],
        "treated_units": sorted(spec.treated_units),
        "near_ring_km": [0, 5],
        "near_town_distance_km": 3.5,
    }
    if spec.cohorts:
        out["cohorts"] = [
            {
                "batch": label,
                "from_month": month_text(start),
                "log_effect": round(cohort_effect(spec, label), 6),
                "units": sorted(ids),
            }
            for label, start, ids in spec.cohorts
        ]
        out["construction_effect"] = 0.0
    return out


def _marker_text(spec: DemoSpec) -> str:
    return (
        "These rasters are SYNTHETIC, generated by nightlights.demo from seed "
        f"{spec.seed} (generator {GENERATOR_VERSION}). They imitate the EOG VNL monthly format; they are "
        "not observations and are no evidence about North Korea or any place.\n"
    )


def _month_done(out: Path, ym: tuple[int, int]) -> bool:
    return all((out / eog_name(*ym, layer)).exists() for layer in ("avg_rade9h", "cf_cvg"))


def build_demo(folder: Path, spec: DemoSpec, progress: bool = True) -> Path:
    """Write the months of ``spec.years`` still missing under ``folder/<key>``; return that folder.

    A month's rasters depend only on the spec and the month, so months are added as runs ask for
    them and never rebuilt; nothing another run or an output folder reads is deleted. A folder made
    by an older generator is replaced once, with a warning. Ctrl-C or SIGTERM stop the generation
    within a month's time: queued months are cancelled, finished ones kept (each written atomically).
    """
    from tqdm.auto import tqdm

    out = Path(folder) / spec.key()
    _retire_older(Path(folder), out)
    months = [(y, m) for y in spec.years for m in range(1, 13)]
    todo = [ym for ym in months if not _month_done(out, ym)]
    if not todo and (out / MARKER).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        _marker_text(spec), encoding="utf-8"
    )  # first: a half-built folder is synthetic too
    towns = make_towns(spec)
    if not (out / "truth.csv").exists():
        with atomic_write(out / "truth.csv") as tmp:
            truth_table(spec, towns).to_csv(tmp, index=False)
    if spec.comparison and not (out / "truth.json").exists():
        with atomic_write(out / "truth.json") as tmp:
            tmp.write_text(json.dumps(truth_summary(spec), indent=2) + "\n", encoding="utf-8")
    if not todo:
        return out
    layer = unit_layer(spec)

    def one(ym: tuple[int, int]) -> None:
        rad, cvg = render_month(spec, towns, *ym, units=layer)
        _write_tif(out / eog_name(*ym, "cf_cvg"), cvg, spec)
        _write_tif(out / eog_name(*ym, "avg_rade9h"), rad, spec)

    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    try:
        list(
            tqdm(
                pool.map(one, todo),
                total=len(todo),
                desc="generating synthetic demo",
                unit="month",
                disable=not progress,
                leave=False,
            )
        )
    except BaseException:
        pool.shutdown(
            wait=True, cancel_futures=True
        )  # interrupted: drop the queue, finish the months under way
        raise
    pool.shutdown(wait=True)
    return out


def _retire_older(folder: Path, keep: Path) -> None:
    """Remove demo folders an older generator made here (their marker names no current generator)."""
    if not folder.is_dir():
        return
    for marker in folder.glob("*/" + MARKER):
        old = marker.parent
        if old == keep or not re.fullmatch(r"[0-9a-f]{12}", old.name) or old.is_symlink():
            continue
        text = marker.read_text(encoding="utf-8", errors="replace")
        if f"(generator {GENERATOR_VERSION})" in text:
            continue  # another world of this version (other tests, other seeds): not ours to remove
        size = sum(f.stat().st_size for f in old.iterdir() if f.is_file())
        log.warning(
            "replacing the synthetic demo made by an older version of nightlights (%s, %.0f MB)",
            old,
            size / 1e6,
        )
        shutil.rmtree(old, ignore_errors=True)


def is_synthetic_folder(folder: Path) -> bool:
    """True for a folder made by :func:`build_demo` (or any file in it tagged SYNTHETIC)."""
    return (Path(folder) / MARKER).exists()
