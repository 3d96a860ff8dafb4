"""Weights: the exact fraction of each pixel inside each zone, computed once per grid.

Inputs
    Zones (a GeoSeries in the grid's CRS) and a :class:`~pipeline.read.sources.Grid`.
Outputs
    :class:`GridWeights`: sparse (zone, pixel, coverage) entries per read window, and the
    pixel rules (exact, centroid-like, all-touched) derived from the same coverage.

Why its own module: both extraction paths (chunked, :mod:`pipeline.measure.zonal`, and streaming,
:mod:`pipeline.measure.zonal_stream`) and the annual interval (:mod:`pipeline.judge.annual`) apply the same
weights; exactextract computes them, so site means equal exactextract's by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from exactextract import exact_extract
from exactextract.feature import Feature, FeatureSource
from exactextract.raster import NumPyRasterSource
from rasterio.windows import Window

from pipeline.errors import SourceError
from pipeline.read.sources import Grid

MAX_ZONE_PIXELS = 25_000_000  # a 50 km site at 15" is ~220 x 220 px; at 30 m, ~3300 x 3300
MAX_ZONES_PIXELS = 250_000_000  # all zones: every county of China at 15" is about half of it
BLOCK = 512  # zones whose pixels start in the same 512x512 block share one read window


@dataclass(frozen=True)
class BlockWeights:
    """Sparse exact coverage of zones on one read window of a grid."""

    window: Window
    zone: np.ndarray  # int32 zone index per entry
    pixel: np.ndarray  # int64 flat index into the window
    coverage: np.ndarray  # float64 exact covered fraction of the pixel, (0, 1]


@dataclass(frozen=True)
class GridWeights:
    """All zones' weights on one grid, split into read blocks."""

    grid: Grid
    n_zones: int
    blocks: tuple[BlockWeights, ...]
    inside: np.ndarray  # per zone: share of its area inside the grid (0 outside, 1 wholly inside)

    @property
    def n_entries(self) -> int:
        return sum(b.zone.size for b in self.blocks)


def rule_weights(coverage: np.ndarray, rule: str) -> np.ndarray:
    """Pixel-inclusion rule as weights, matching exactextract's options.

    exact: the covered fraction (``mean``); centroid-like: 1 where at least half the
    pixel is covered (``mean(min_coverage_frac=0.5, coverage_weight=none)``);
    all-touched-like: 1 for any covered pixel (``mean(coverage_weight=none)``).
    """
    if rule == "exact":
        return coverage
    if rule == "centroid":
        return (coverage >= 0.5).astype("float64")
    if rule == "all_touched":
        return (coverage > 0).astype("float64")
    raise ValueError(f"pixel rule {rule!r} not valid; must be one of exact, centroid, all_touched")


def coverage_weights(zones: gpd.GeoSeries, grid: Grid, source: object = None) -> GridWeights:
    """Exact coverage fractions of every zone on ``grid`` (zones in any CRS).

    Zones outside the grid get no entries (their statistics are missing, not zero); a
    zone partly outside records the share inside, so the part that was never observed
    lowers its ``valid_fraction`` instead of vanishing.
    """
    geoms = zones.to_crs(grid.crs) if zones.crs is not None else zones
    windows = [_pixel_window(g.bounds, grid) if not g.is_empty else None for g in geoms]
    _check_windows(windows, grid, source)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(windows):
        if w is not None:
            groups.setdefault((w.row_off // BLOCK, w.col_off // BLOCK), []).append(i)
    blocks = [
        _block_weights(
            geoms.iloc[idx], np.asarray(idx, dtype="int32"), [windows[i] for i in idx], grid
        )
        for idx in groups.values()
    ]
    blocks = [b for b in blocks if b.zone.size]
    covered = np.zeros(len(zones))
    for b in blocks:
        covered += np.bincount(b.zone, b.coverage, len(zones))
    area_px = shapely.area(geoms.values) / abs(
        grid.affine.a * grid.affine.e
    )  # planar, like exactextract
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.clip(np.where(area_px > 0, covered / area_px, 0.0), 0.0, 1.0)
    return GridWeights(grid, len(zones), tuple(blocks), inside)


def _check_windows(windows: list[Window | None], grid: Grid, source: object) -> None:
    """Refuse, before allocating, a zone spanning more pixels than any site or county can on a
    night-light grid (a raster of absurdly fine pixels made a 2 km site a window of billions)."""
    sizes = [w.width * w.height for w in windows if w is not None]
    if not sizes:
        return
    where = f"{source}: " if source is not None else ""
    a = grid.affine
    fix = (
        "its pixels are far finer than VIIRS's 15 arc-seconds: resample it, e.g. gdalwarp -tr 0.004166667 "
        "0.004166667 in.tif out.tif"
    )
    if max(sizes) > MAX_ZONE_PIXELS:
        big = max((w for w in windows if w is not None), key=lambda w: w.width * w.height)
        raise SourceError(
            f"{where}one zone spans {big.width} x {big.height} px of this raster (pixels of "
            f"{abs(a.a):.3g} x {abs(a.e):.3g}), more than the {MAX_ZONE_PIXELS} px allowed per zone; "
            f"{fix}"
        )
    if sum(sizes) > MAX_ZONES_PIXELS:
        raise SourceError(
            f"{where}the {len(sizes)} zones span {sum(sizes)} px of this raster (pixels of "
            f"{abs(a.a):.3g} x {abs(a.e):.3g}), more than the {MAX_ZONES_PIXELS} px allowed in all; {fix}"
        )


def _pixel_window(bounds: tuple[float, float, float, float], grid: Grid) -> Window | None:
    """The pixel window covering ``bounds`` (padded by one pixel), clipped to the grid."""
    inv = ~grid.affine
    xmin, ymin, xmax, ymax = bounds
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    c0, c1 = int(np.floor(min(cols))) - 1, int(np.ceil(max(cols))) + 1
    r0, r1 = int(np.floor(min(rows))) - 1, int(np.ceil(max(rows))) + 1
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, grid.width), min(r1, grid.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _block_weights(
    geoms: gpd.GeoSeries, zone_idx: np.ndarray, windows: list[Window], grid: Grid
) -> BlockWeights:
    r0 = min(w.row_off for w in windows)
    c0 = min(w.col_off for w in windows)
    r1 = max(w.row_off + w.height for w in windows)
    c1 = max(w.col_off + w.width for w in windows)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    a = grid.affine
    # A dummy raster on the window's exact cells: exactextract only needs its geometry.
    x0, y0 = a @ (c0, r0)
    x1, y1 = a @ (c1, r1)
    src = NumPyRasterSource(
        np.zeros((r1 - r0, c1 - c0), dtype="float32"),
        min(x0, x1),
        min(y0, y1),
        max(x0, x1),
        max(y0, y1),
        srs_wkt=grid.crs_wkt,
    )
    features = _WkbFeatures(geoms.values, zone_idx, geoms.crs.to_wkt())
    df = exact_extract(
        src, features, ["cell_id", "coverage"], include_cols=["zidx"], output="pandas"
    )
    zone = np.repeat(df["zidx"].to_numpy("int32"), df["cell_id"].map(len).to_numpy())
    pixel = (
        np.concatenate([np.asarray(c, dtype="int64") for c in df["cell_id"]])
        if len(df)
        else np.zeros(0, "int64")
    )
    cov = (
        np.concatenate([np.asarray(c, dtype="float64") for c in df["coverage"]])
        if len(df)
        else np.zeros(0)
    )
    if a.e > 0:  # south-up grids: exactextract counts rows from the north
        rows, cols = np.divmod(pixel, c1 - c0)
        pixel = (r1 - r0 - 1 - rows) * (c1 - c0) + cols
    keep = cov > 1e-9  # floating-point slivers along pixel edges are not touched pixels
    return BlockWeights(window, zone[keep], pixel[keep], cov[keep])


class _WkbFeatures(FeatureSource):
    """Zones handed to exactextract as WKB with their index (``zidx``), the way its own GDAL
    source hands features over. Its GeoDataFrame source writes each geometry out as GeoJSON
    text to be parsed back (twice the time of the whole coverage computation for 200
    sites); WKB carries the same coordinates bit for bit, so the weights are identical."""

    def __init__(self, geoms: np.ndarray, zone_idx: np.ndarray, srs_wkt: str):
        super().__init__()
        self.wkb = shapely.to_wkb(geoms)
        self.zone_idx = zone_idx.tolist()
        self.wkt = srs_wkt

    def count(self) -> int:
        return len(self.zone_idx)

    def __iter__(self):
        for wkb, z in zip(self.wkb, self.zone_idx, strict=True):
            yield _WkbFeature(wkb, z)

    def srs_wkt(self) -> str:
        return self.wkt


class _WkbFeature(Feature):
    """One zone: WKB geometry and its ``zidx``."""

    def __init__(self, wkb: bytes | None = None, zidx: int | None = None):
        Feature.__init__(self)
        self.wkb = wkb
        self.props: dict[str, object] = {} if zidx is None else {"zidx": zidx}

    def geometry(self) -> bytes | None:
        return self.wkb

    def set_geometry(self, wkb: bytes | None) -> None:
        self.wkb = wkb or None

    def set_geometry_format(self) -> str:
        return "wkb"

    def get(self, name: str) -> object:
        return self.props[name]

    def set(self, name: str, value: object) -> None:
        self.props[name] = value

    def fields(self) -> list[str]:
        return list(self.props)
