"""Sources: find the monthly rasters in a folder and read their pixels.

Inputs
    A folder of monthly rasters as users have them:

    * EOG VNL monthly v10, named as distributed:
      ``SVDNB_npp_YYYYMMDD-YYYYMMDD_<tile>_<vcmcfg|vcmslcfg>_v10_c<stamp>.avg_rade9h.tif``
      with the matching ``.cf_cvg.tif`` (cloud-free observation count) when present;
    * Black Marble months cached by ``nightlights download``:
      ``VNP46A3_YYYY-MM.radiance.tif`` with ``VNP46A3_YYYY-MM.quality.tif``;
    * any GeoTIFF whose name carries the month as ``YYYY-MM`` or ``YYYYMM``;
    * annual composites (:func:`find_annual_rasters`): EOG VNL v2 as distributed (gunzipped),
      ``VNL_v2*_npp_YYYY_global_<cfg>_c<stamp>.average_masked.dat.tif`` or
      ``VNL_npp_YYYY_global_<cfg>_v2_c<stamp>.average_masked.dat.tif`` with ``.cf_cvg.dat.tif``,
      and ``VNP46A4_YYYY.radiance.tif`` / ``.quality.tif`` cached by ``nightlights download``.

    The month comes from the name, the georeferencing from the file (tile names are
    never trusted for bounds). Hidden files and folders (``.*``, e.g. macOS ``._`` copies
    or a downloader's partial files) are ignored.
Outputs
    A list of :class:`MonthlyRaster`, one per month, sorted by month (or of
    :class:`AnnualRaster`, one per year).

Damaged files stop the run, naming the file: a raster that cannot be opened, has no
CRS, or is shorter than its own block table says (a cut-off download) raises
:class:`~pipeline.errors.SourceError` at discovery, and a block that cannot be decoded
raises it when read. We stop rather than skip because a skipped month silently changes
which calendar months are matched, and so the result; the fix (delete the file and
download again) is one command. Files that would be read wrong are refused too (a
rotated grid, several bands, a declared size no VIIRS grid has), and an integer file
without a nodata tag gets its type's fill, with a warning. Months may come on different
grids or CRSs: zonal weights are computed per distinct grid.

Longer than most modules because every way a raster file can be wrong is named here,
where files are found and opened, so each refusal is one line naming the file.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.errors import SourceError

log = logging.getLogger(__name__)

AuxKind = Literal["cf_cvg", "bm_quality", "none"]

EOG_RE = re.compile(
    r"^SVDNB_(?P<sat>npp|j01|j02)_(?P<start>\d{8})-(?P<end>\d{8})_(?P<tile>[0-9A-Z]+|global)_"
    r"(?P<cfg>vcmcfg|vcmslcfg)_v10_c(?P<stamp>\d{12})\.(?P<layer>avg_rade9h|avg_rade9h\.masked|cf_cvg|cvg)"
    r"\.tif$"
)
BM_RE = re.compile(
    r"^(?P<product>VNP46A3|VJ146A3)_(?P<month>\d{4}-\d{2})\.(?P<layer>radiance|quality)\.tif$"
)
# Annual composites. EOG has named VNL v2 files both ways: VNL_v21_npp_2021_..., VNL_v22_npp-j01_2023_...
# and (2024 on) VNL_npp_2024_global_vcmslcfg_v2_c202502261200.average_masked.dat.tif.
EOG_ANNUAL_RE = re.compile(
    r"^VNL_(?:v2\d?_)?(?P<sat>npp|j01|j02|npp-j01)_(?P<year>\d{4})_(?P<tile>global|[0-9A-Z]+)_"
    r"(?P<cfg>vcmcfg|vcmslcfg)(?:_v2\d?)?_c(?P<stamp>\d{12,14})\."
    r"(?P<layer>average_masked|average|median_masked|median|cf_cvg|cvg|maximum|minimum|lit_mask)(?:\.dat)?\.tif$"
)
# Radiance layers of an EOG annual composite, preferred first: average_masked is the outlier-removed
# average with the background zeroed (Elvidge et al. 2021), the layer methods_policy.md names.
EOG_ANNUAL_RADIANCE = ("average_masked", "average", "median_masked", "median")
BM_ANNUAL_RE = re.compile(
    r"^(?P<product>VNP46A4|VJ146A4)_(?P<year>\d{4})\.(?P<layer>radiance|quality)\.tif$"
)
PLAIN_RE = re.compile(r"(?<!\d)(?P<year>(?:19|20)\d{2})-?(?P<month>0[1-9]|1[0-2])(?!\d)")
RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and shape. Equal grids share coverage weights."""

    crs_wkt: str
    transform: tuple[float, ...]
    width: int
    height: int

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a = self.affine
        xs = (a.c, a.c + a.a * self.width)
        ys = (a.f, a.f + a.e * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def describe(self) -> str:
        w, s, e, n = self.bounds
        return f"{self.width}x{self.height} px, bounds ({w:.4f}, {s:.4f}, {e:.4f}, {n:.4f})"


@dataclass(frozen=True)
class MonthlyRaster:
    """One month's radiance file and the auxiliary layer that says which pixels are valid."""

    month: str  # YYYY-MM
    radiance: Path
    aux: Path | None
    aux_kind: AuxKind
    product: str  # "eog-vcmslcfg", "eog-vcmcfg", "VNP46A3", "geotiff"
    grid: Grid
    nodata: float | None

    @property
    def year(self) -> int:
        return int(self.month[:4])

    @property
    def period(self) -> str:
        return "month"


@dataclass(frozen=True)
class AnnualRaster(MonthlyRaster):
    """One year's composite. ``month`` holds the year (``YYYY``): it labels the period in the
    zone table, so the zonal stage reads annual composites exactly as it reads months."""

    @property
    def period(self) -> str:
        return "year"


# A global grid at VIIRS's 15 arc-seconds is 86400 x 33600 px (2.9 billion); a raster declaring
# more, or far more pixels than its file could hold, is damaged or hostile (a 1e6 x 1e6 px GeoTIFF
# of a few KB tried to allocate 39 GiB). Pixels are only ever read by window, so a real big tile is fine.
MAX_RASTER_PIXELS = 10_000_000_000
MAX_PIXELS_PER_BYTE = (
    10_000  # declared uncompressed bytes per byte of file, for rasters of > 1e8 px
)


def grid_of(path: Path) -> tuple[Grid, float | None]:
    """The grid and nodata value of a raster file; errors name the file."""
    grid, nodata, _ = _grid_nodata_dtype(path)
    return grid, nodata


def _grid_nodata_dtype(path: Path) -> tuple[Grid, float | None, str]:
    _check_not_page(path)
    try:
        with rasterio.open(path) as ds:
            _check_complete(ds, path)
            if ds.crs is None:
                raise SourceError(
                    f"{path}: raster has no CRS; georeference it (e.g. gdal_edit.py -a_srs EPSG:4326)"
                )
            _check_readable(ds, path)
            grid = Grid(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height)
            return grid, ds.nodata, ds.dtypes[0]
    except RasterioError as e:
        raise SourceError(
            f"{path}: cannot open raster ({raster_error_reason(e)}); the file may be truncated or not a GeoTIFF"
        ) from e


def _check_readable(ds: rasterio.DatasetReader, path: Path) -> None:
    """Refuse what would be read wrong (a rotated grid, a guessed band) or would eat the machine."""
    t = ds.transform
    # terms below 1e-6 of the pixel size are rounding noise (0.03 px across a whole EOG tile), not a rotation
    if abs(t.b) > 1e-6 * abs(t.a) or abs(t.d) > 1e-6 * abs(t.e):
        raise SourceError(
            f"{path}: rotated or sheared georeferencing (geotransform {tuple(round(v, 9) for v in t[:6])}); "
            "pixels would be placed wrongly: warp it north-up first, e.g. gdalwarp -t_srs EPSG:4326 "
            "in.tif out.tif"
        )
    if ds.count != 1:
        raise SourceError(
            f"{path}: {ds.count} bands; a radiance or coverage file has one and the band is not "
            "guessed: extract it, e.g. gdal_translate -b 1 in.tif out.tif"
        )
    pixels = ds.width * ds.height
    if pixels > MAX_RASTER_PIXELS:
        raise SourceError(
            f"{path}: declares {ds.width} x {ds.height} px, more than a global VIIRS grid "
            "(86400 x 33600); the file is damaged or not a night-light raster"
        )
    size = path.stat().st_size
    declared = pixels * np.dtype(ds.dtypes[0]).itemsize
    if pixels > 100_000_000 and declared > MAX_PIXELS_PER_BYTE * size:
        raise SourceError(
            f"{path}: declares {ds.width} x {ds.height} px ({declared / 2**30:.0f} GiB) in a file of "
            f"{size} bytes; the file is damaged or not a night-light raster"
        )


def _check_not_page(path: Path) -> None:
    """Name the two leftovers of failed downloads: empty files and saved error pages."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror})") from e
    if not head:
        raise SourceError(
            f"{path}: empty file (0 bytes), probably an interrupted download; "
            "delete it and download it again"
        )
    if head.lstrip()[:1] in (b"<", b"{"):
        raise SourceError(
            f"{path}: a web page or text, not a GeoTIFF (a failed download saved under "
            "a raster name?); delete it, check your credentials and download it again"
        )


def _check_complete(ds: rasterio.DatasetReader, path: Path) -> None:
    """Refuse a GeoTIFF whose last data block lies beyond the end of the file (cut off).

    Reads two entries of the TIFF block table, not the pixels, so it is cheap for
    whole-tile EOG files.
    """
    if ds.driver != "GTiff":
        return
    size = path.stat().st_size
    rows, cols = ds.block_shapes[0]
    last = f"{-(-ds.width // cols) - 1}_{-(-ds.height // rows) - 1}"
    for bidx in {1, ds.count}:
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=bidx)
        nbytes = ds.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=bidx)
        if offset and nbytes and int(offset) + int(nbytes) > size:
            raise SourceError(
                f"{path}: truncated GeoTIFF ({size} bytes, its data runs to "
                f"{int(offset) + int(nbytes)}); delete it and download it again"
            )


def raster_error_reason(e: BaseException) -> str:
    """The most specific one-line reason in an exception chain (GDAL wraps the useful one)."""
    reasons: list[str] = []
    cause: BaseException | None = e
    while cause is not None and len(reasons) < 5:
        text = str(cause).strip()
        if text and "see previous exception" not in text.lower():
            reasons.append(text.splitlines()[0][:160])
        cause = cause.__cause__ or cause.__context__
    return reasons[0] if reasons else "unreadable"


def find_monthly_rasters(
    folder: Path | str,
    years: tuple[int, ...] | None = None,
    eog_config: str = "vcmslcfg",
    files: list[Path] | None = None,
) -> list[MonthlyRaster]:
    """Discover one raster per month under ``folder`` (recursively), or among ``files`` only.

    Files whose name carries no month are skipped with a warning. When a month has
    both EOG configurations, ``eog_config`` wins; any other clash is an error naming
    both files, since silently picking one would change the result. ``files`` (the files
    a verdict.json names) means the folder is not scanned at all.
    """
    folder = Path(folder)
    if not folder.exists():
        raise SourceError(f"{folder}: raster folder not found")
    if not folder.is_dir():
        raise SourceError(
            f"{folder}: not a folder; --rasters takes the folder holding the monthly files"
        )
    files = sorted(
        p
        for p in (folder.rglob("*") if files is None else files)
        if p.name.lower().endswith(RASTER_SUFFIXES) and not _hidden(p, folder) and p.is_file()
    )
    if not files:
        raise SourceError(f"{folder}: no GeoTIFF files (.tif) found")
    candidates = _candidates(files)
    chosen = _one_per_month(candidates, eog_config)
    if not chosen:
        raise SourceError(f"{folder}: no GeoTIFF with a month (YYYY-MM or YYYYMM) in its name")
    if years is not None:
        found = sorted(chosen)
        chosen = {m: c for m, c in chosen.items() if int(m[:4]) in years}
        if not chosen:
            raise SourceError(
                f"{folder}: no monthly rasters for {', '.join(map(str, years))} "
                f"(found {found[0]} to {found[-1]})"
            )
    return [_located(MonthlyRaster, month, *chosen[month]) for month in sorted(chosen)]


def _located(
    cls: type[MonthlyRaster],
    label: str,
    radiance: Path,
    aux: Path | None,
    aux_kind: AuxKind,
    product: str,
) -> MonthlyRaster:
    grid, nodata, dtype = _grid_nodata_dtype(radiance)
    if nodata is None and np.dtype(dtype).kind in "iu":
        nodata = _assumed_fill(dtype)
        log.warning(
            "%s: integer raster (%s) without a nodata tag; assuming %s marks missing pixels (else they "
            "would count as radiance); tag the real fill, e.g. gdal_edit.py -a_nodata VALUE",
            radiance,
            dtype,
            nodata,
        )
    if aux is not None:
        aux_grid, _ = grid_of(aux)
        if aux_grid != grid:
            raise SourceError(
                f"{aux}: grid ({aux_grid.describe()}) differs from its radiance file "
                f"{radiance.name} ({grid.describe()}); download both again"
            )
    return cls(label, radiance, aux, aux_kind, product, grid, nodata)


def _assumed_fill(dtype: str) -> float:
    """The conventional fill of an integer type: its minimum when signed (-32768 for int16), its
    maximum when unsigned (65535 for uint16, 255 for uint8, Black Marble's fills)."""
    info = np.iinfo(np.dtype(dtype))
    return float(info.min if np.dtype(dtype).kind == "i" else info.max)


def find_annual_rasters(
    folder: Path | str,
    years: tuple[int, ...] | None = None,
    eog_config: str = "vcmslcfg",
    files: list[Path] | None = None,
) -> list[AnnualRaster]:
    """Discover one annual composite per year under ``folder`` (recursively).

    EOG: the first radiance layer of :data:`EOG_ANNUAL_RADIANCE` present for the year, with its
    ``cf_cvg`` (cloud-free coverage, the validity layer); ``eog_config`` wins when both
    configurations are there. Black Marble: ``VNP46A4_YYYY.radiance.tif`` with its quality.
    Two composites for one year are an error naming both, as for months.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(
            f"{folder}: raster folder not found"
            if not folder.exists()
            else f"{folder}: not a folder; --rasters takes the folder holding the annual files"
        )
    files = sorted(
        p
        for p in (folder.rglob("*") if files is None else files)
        if p.name.lower().endswith(RASTER_SUFFIXES) and not _hidden(p, folder) and p.is_file()
    )
    by_name = {p.name: p for p in files}
    years_found: dict[str, list[_Candidate]] = defaultdict(list)
    for p in files:
        m = EOG_ANNUAL_RE.match(p.name)
        if m and m["layer"] in EOG_ANNUAL_RADIANCE:
            stem = p.name[: m.start("layer")]
            others = [
                lyr
                for lyr in EOG_ANNUAL_RADIANCE[: EOG_ANNUAL_RADIANCE.index(m["layer"])]
                if any(n.startswith(stem + lyr + ".") for n in by_name)
            ]
            if others:
                continue  # a preferred radiance layer of the same composite is there
            cvg = next(
                (
                    by_name[n]
                    for n in (stem + "cf_cvg.dat.tif", stem + "cf_cvg.tif")
                    if n in by_name
                ),
                None,
            )
            years_found[m["year"]].append(
                (p, cvg, "cf_cvg" if cvg else "none", f"eog-annual-{m['cfg']}")
            )
            continue
        b = BM_ANNUAL_RE.match(p.name)
        if b and b["layer"] == "radiance":
            q = by_name.get(p.name.replace(".radiance.tif", ".quality.tif"))
            years_found[b["year"]].append((p, q, "bm_quality" if q else "none", b["product"]))
    chosen = {}
    for year, cands in years_found.items():
        preferred = [c for c in cands if c[3] == f"eog-annual-{eog_config}"]
        if len(cands) > 1 and len(preferred) == 1:
            cands = preferred
        if len(cands) > 1:
            raise SourceError(
                f"year {year} has {len(cands)} annual composites ({', '.join(str(c[0]) for c in cands)}); "
                "keep one per year"
            )
        chosen[year] = cands[0]
    if not chosen:
        raise SourceError(
            f"{folder}: no annual composites (VNL_..._global_<cfg>_..._c<stamp>.average_masked.dat.tif "
            "or VNP46A4_YYYY.radiance.tif); for monthly files use --product monthly"
        )
    if years is not None:
        found = sorted(chosen)
        chosen = {y: c for y, c in chosen.items() if int(y) in years}
        if not chosen:
            raise SourceError(
                f"{folder}: no annual composites for {', '.join(map(str, years))} "
                f"(found {found[0]} to {found[-1]})"
            )
    return [_located(AnnualRaster, year, *chosen[year]) for year in sorted(chosen)]  # type: ignore[misc]


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


_Candidate = tuple[Path, Path | None, AuxKind, str]


def _candidates(files: list[Path]) -> dict[str, list[_Candidate]]:
    by_name = {p.name: p for p in files}
    months: dict[str, list[_Candidate]] = defaultdict(list)
    for p in files:
        m = EOG_RE.match(p.name)
        if m:
            if m["layer"] != "avg_rade9h":
                continue  # cf_cvg / cvg / masked are companions, not months of their own
            cvg = by_name.get(p.name.replace(".avg_rade9h.tif", ".cf_cvg.tif"))
            month = f"{m['start'][:4]}-{m['start'][4:6]}"
            months[month].append((p, cvg, "cf_cvg" if cvg else "none", f"eog-{m['cfg']}"))
            continue
        b = BM_RE.match(p.name)
        if b:
            if b["layer"] == "radiance":
                q = by_name.get(p.name.replace(".radiance.tif", ".quality.tif"))
                months[b["month"]].append((p, q, "bm_quality" if q else "none", b["product"]))
            continue
        if (
            p.name.startswith(("SVDNB_", "VNL_"))
            or ".cf_cvg." in p.name
            or p.name.endswith(".quality.tif")
            or BM_ANNUAL_RE.match(p.name)
        ):
            continue  # companions, and annual composites (find_annual_rasters)
        found = {(y, mo) for y, mo in PLAIN_RE.findall(p.stem)}
        if len(found) == 1:
            y, mo = found.pop()
            months[f"{y}-{mo}"].append((p, None, "none", "geotiff"))
        elif len(found) > 1:
            log.warning(
                "%s: skipped, its name holds several months (%s)",
                p,
                ", ".join(sorted(f"{y}-{mo}" for y, mo in found)),
            )
        else:
            log.warning("%s: skipped, no month (YYYY-MM or YYYYMM) in its name", p)
    return months


def _one_per_month(
    candidates: dict[str, list[_Candidate]], eog_config: str
) -> dict[str, _Candidate]:
    chosen = {}
    for month, cands in candidates.items():
        if len(cands) > 1:
            preferred = [c for c in cands if c[3] == f"eog-{eog_config}"]
            if len(preferred) == 1:
                log.info("%s: using %s (eog_config=%s)", month, preferred[0][0].name, eog_config)
                cands = preferred
        if len(cands) > 1:
            names = ", ".join(str(c[0]) for c in cands)
            raise SourceError(
                f"month {month} has {len(cands)} radiance files ({names}); keep one per month"
            )
        chosen[month] = cands[0]
    return chosen


# --------------------------------------------------------------------------- pixel reading


def read_window(raster: MonthlyRaster, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Radiance (float64, clipped at 0) and validity (bool) for a window of one month.

    Validity: EOG pixels need ``cf_cvg >= min_cf_cvg`` (applied by the caller through
    the returned count); Black Marble pixels carry their quality code; plain files are
    valid where finite and not nodata. The second array is the raw auxiliary layer
    (counts or quality codes) or a 0/1 validity for plain files.
    """
    try:
        with rasterio.open(raster.radiance) as ds:
            rad = ds.read(1, window=window, boundless=False, out_dtype="float64")
        if raster.aux is not None:
            with rasterio.open(raster.aux) as ds:
                aux = ds.read(1, window=window, boundless=False)
        else:
            aux = None
    except RasterioError as e:
        raise SourceError(
            f"{raster.radiance}: cannot read month {raster.month} ({raster_error_reason(e)}); "
            "the file may be truncated: delete it and download again"
        ) from e
    return clean_pixels(rad, aux, raster, fill=0.0)


def clean_pixels(
    rad: np.ndarray, aux: np.ndarray | None, raster: MonthlyRaster, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The one nodata rule, for pixels however they were read.

    Non-finite or nodata radiance is unusable: it becomes ``fill`` and its auxiliary value
    "not observed" (cf_cvg 0, quality 255; without an auxiliary layer, the returned 0/1
    validity is 0); usable radiance is clipped at 0 (negative values are noise around dark).
    ``rad`` is cleaned in place (callers pass the array they just read: two passes over
    it, no copies, which matters when every pixel of a window is read each month).
    """
    usable = np.isfinite(rad)
    if raster.nodata is not None and not np.isnan(raster.nodata):
        usable &= rad != raster.nodata
    np.maximum(rad, 0.0, out=rad)
    np.putmask(rad, ~usable, fill)
    if aux is None:
        return rad, usable.view(np.uint8)
    return rad, np.where(usable, aux, 0 if raster.aux_kind == "cf_cvg" else 255)


def valid_mask(
    aux: np.ndarray, aux_kind: AuxKind, min_cf_cvg: int, bm_quality: tuple[int, ...]
) -> np.ndarray:
    """Which pixels are observed. Zero radiance under zero coverage is missing, not dark."""
    if aux_kind == "cf_cvg":
        return aux >= min_cf_cvg
    if aux_kind == "bm_quality":
        return np.isin(aux, bm_quality)
    return aux.astype(bool)


# --------------------------------------------------------------------------- inputs, written and read back


def inputs_absolute(inputs: Sequence[object], out: Path) -> list[object]:
    """An ``inputs`` list read from the output folder ``out``, each folder found again (beside
    ``out``, else from the current folder) and made absolute, as a run holds it in memory."""
    rows: list[object] = []
    for i in inputs:
        if isinstance(i, dict) and i.get("folder") is not None:
            written = str(i["folder"])
            near = out / written
            found = near if not Path(written).is_absolute() and near.is_dir() else Path(written)
            i = {**i, "folder": str(found.absolute())}
        rows.append(i)
    return rows


def inputs_relative_to(inputs: Sequence[object], out: Path) -> list[object]:
    """An ``inputs`` list (:func:`describe_inputs`) with each folder relative to the output folder
    ``out`` it is written into, so ``nightlights figures`` finds the rasters from any current folder
    as long as the outputs and the data keep their places (``outputs/`` beside ``data/``)."""
    # imported here: extraction reads rasters through this module and never writes outputs
    from pipeline.outputs import portable_path

    return [
        {**i, "folder": portable_path(str(i["folder"]), out)}
        if isinstance(i, dict) and i.get("folder") is not None
        else i
        for i in inputs
    ]


def describe_inputs(rasters: Sequence[MonthlyRaster]) -> list[dict[str, object]]:
    """The rasters a stage read, as ``verdict.json`` and ``did.json`` list them (``inputs``)."""
    return [
        {
            "month": r.month,
            "file": r.radiance.name,
            "aux": r.aux.name if r.aux else None,
            "product": r.product,
            "folder": str(r.radiance.parent.absolute()),  # made relative when written
        }
        for r in rasters
    ]


def rasters_from_inputs(
    inputs: Sequence[object], named_in: Path, *, annual: bool = False, eog_config: str = "vcmslcfg"
) -> list[MonthlyRaster]:
    """The rasters an ``inputs`` list names (:func:`describe_inputs`), found again: a folder is
    looked for beside ``named_in`` (the output folder), then from the current folder. Only the files it names are read, never a scan of a folder it names (``/``). Raises
    :class:`SourceError` naming ``named_in`` when a folder or file is gone."""
    rows = [i for i in inputs if isinstance(i, dict)]
    wanted = {i.get("file") for i in rows}
    rasters: list[MonthlyRaster] = []
    for written in sorted({str(i.get("folder")) for i in rows}):
        mine = [i for i in rows if str(i.get("folder")) == written]
        # relative to the output folder (this version), else to the current folder (earlier ones)
        near = named_in.parent / written
        folder = str(near) if not Path(written).is_absolute() and near.is_dir() else written
        names = sorted({str(i.get("file")) for i in mine})
        if not Path(folder).is_dir():
            raise SourceError(
                f"{written}: raster folder named in {named_in} not found beside it or in the "
                "current folder (folders are written relative to the output folder: a moved output "
                "folder needs its rasters at the same relative place); re-run 'nightlights run'"
            )
        bad = [
            n
            for n in names
            if Path(n).name != n or n.startswith(".") or not (Path(folder) / n).is_file()
        ]
        if bad:
            raise SourceError(
                f"{folder}: raster folder named in {named_in} does not hold {bad[0]} "
                f"({len(bad)} of the {len(names)} files it names missing); re-run 'nightlights run'"
            )
        aux = {
            str(i["aux"])
            for i in mine
            if i.get("aux") and Path(str(i["aux"])).name == str(i["aux"])
        }
        files = [Path(folder) / n for n in sorted({*names, *aux})]
        find = find_annual_rasters if annual else find_monthly_rasters
        found = find(folder, eog_config=eog_config, files=files)
        rasters += [r for r in found if r.radiance.name in wanted]
    return sorted(rasters, key=lambda r: r.month)
