"""Sites: read and check site GeoJSON files, buffer points into polygons, build rings.

Inputs
    GeoJSON files (FeatureCollection, Feature or bare geometry) with Point, MultiPoint,
    Polygon or MultiPolygon features, in WGS84 (a legacy ``crs`` member naming another
    CRS is honoured by reprojecting, with a warning).
Outputs
    A GeoDataFrame in EPSG:4326, one row per site, columns :data:`SITE_COLUMNS`.

Points are buffered in metres in an azimuthal equidistant projection centred on the
point, never in degrees (a degree of longitude is 85 km at 40 N, not 111 km).

Longer than most modules because every way a hand-made site file can be wrong (JSON
mistakes, CRS, geometry, ids, radii) gets its own one-line message here.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from pipeline.errors import SiteError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50_000_000
MAX_SITE_VERTICES = 100_000  # a drawn site has tens to thousands
MAX_REPAIR_VERTICES = 10_000  # an invalid polygon larger than this is not repaired here
MAX_SITE_POINTS = 1000  # a MultiPoint of 200,000 points took 25 s and 3 GB before failing in GEOS
MAX_RADIUS_M = 50_000.0
MIN_AREA_DEG2 = 1e-10  # about 1 m2: smaller "polygons" are drawing mistakes, not sites
SITE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
SITE_COLUMNS = [
    "site_id",
    "name",
    "name_ko",
    "province",
    "batch",
    "location_confidence",
    "source",
    "groundbreaking",
    "inauguration",
    "inauguration_by",
    "radius_m",
    "center_lon",
    "center_lat",
    "from_point",
    "source_file",
    "geometry",
]
# the site attributes that travel with a site's change (site_changes.csv, sites_classified.*)
CHANGE_META_COLUMNS = [*SITE_COLUMNS[:6], "radius_m", "county", "county_id"]
_OPTIONAL_TEXT = (
    "name",
    "name_ko",
    "province",
    "location_confidence",
    "source",
    "groundbreaking",
    "inauguration",
    "inauguration_by",
)
DATE_KEYS = ("groundbreaking", "inauguration", "inauguration_by")
_SITE_DATE_RE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
_OTHER_FORMATS = {
    ".shp": "shapefile",
    ".kml": "KML file",
    ".kmz": "KMZ file",
    ".gpkg": "GeoPackage",
    ".csv": "CSV file",
    ".xlsx": "spreadsheet",
    ".zip": "zip archive",
    ".gpx": "GPX file",
}
_WGS84_NAMES = {"EPSG:4326", "OGC:CRS84", "CRS84", "WGS84", "OGC:1.3:CRS84"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or repaired) in a site file, printable as one line."""

    file: str
    feature: str | None
    message: str
    severity: str = "error"  # "error" stops the run, "warning" is repaired and reported

    def __str__(self) -> str:
        where = f"{self.file}: {self.feature}: " if self.feature else f"{self.file}: "
        return (
            f"{where}{self.message}"
            if self.severity == "error"
            else f"{where}warning: {self.message}"
        )


class SiteFileError(SiteError):
    """Raised with every problem found, one per line."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def slugify(text: str) -> str:
    """A filename-safe id from free text (``"Kim Hyong Jik"`` -> ``"kim-hyong-jik"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80] or "site"


def local_metric_crs(lon: float, lat: float) -> CRS:
    """Azimuthal equidistant CRS centred on the point: distances from it are true metres."""
    return CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m")


def _reproject(transformer: Transformer, geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(
        geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


@functools.lru_cache(maxsize=8192)
def _to_metric(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    """Transformers to and from the point's own metric CRS, cached: a site's polygon, its ring
    and its radius variants all reuse them (building a pair costs milliseconds)."""
    crs = local_metric_crs(lon, lat)
    fwd = Transformer.from_crs(4326, crs, always_xy=True)
    inv = Transformer.from_crs(crs, 4326, always_xy=True)
    return fwd, inv


_GEOD = Geod(ellps="WGS84")
_AZIMUTHS = np.linspace(0.0, 360.0, 64, endpoint=False)


def geodesic_circle(lon: float, lat: float, radius_m: float) -> shapely.Polygon:
    """The points ``radius_m`` from (lon, lat) along the ellipsoid, as a 64-gon.

    Equal to buffering in the point's azimuthal equidistant projection, without building
    a projection per site (thousands of sites take milliseconds, not minutes).
    """
    return geodesic_circles([lon], [lat], radius_m)[0]


def geodesic_circles(
    lons: Sequence[float] | np.ndarray, lats: Sequence[float] | np.ndarray, radius_m: float
) -> list[shapely.Polygon]:
    """:func:`geodesic_circle` for many centres in one vectorised call (sites, controls, rings)."""
    lons, lats = np.asarray(lons, float), np.asarray(lats, float)
    n, k = lons.size, _AZIMUTHS.size
    x, y, _ = _GEOD.fwd(
        np.repeat(lons, k),
        np.repeat(lats, k),
        np.tile(_AZIMUTHS[::-1], n),
        np.full(n * k, radius_m),
    )
    return list(shapely.polygons(np.stack([np.reshape(x, (n, k)), np.reshape(y, (n, k))], axis=-1)))


def buffer_metres(
    geom: BaseGeometry, distance_m: float, center: tuple[float, float]
) -> BaseGeometry:
    """Buffer a WGS84 geometry by ``distance_m`` metres (negative shrinks) around ``center``."""
    if geom.geom_type == "Point" and distance_m > 0:
        return geodesic_circle(geom.x, geom.y, distance_m)
    fwd, inv = _to_metric(round(center[0], 6), round(center[1], 6))
    metric = _reproject(fwd, geom)
    return _reproject(inv, metric.buffer(distance_m, quad_segs=16))


def read_sites(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    default_radius_m: float = 2000.0,
) -> gpd.GeoDataFrame:
    """Read site files (one path or several) into one table; raise :class:`SiteFileError`
    listing every error.

    Warnings (repairs, reprojection, derived ids) are logged, one line each. ``batch`` is an
    object column of labels (None without one), so a user may set a label of any kind.
    """
    files: list[Path] = (
        [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    )
    if not files:
        raise SiteError("no site files given (and no aoi/*.geojson found); pass --sites PATH")
    rows, problems = _collect(files, default_radius_m)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SiteFileError(errors)
    for p in problems:
        log.warning("%s", p)
    out = gpd.GeoDataFrame(rows, columns=SITE_COLUMNS, geometry="geometry", crs="EPSG:4326")
    out["batch"] = pd.Series(list(out["batch"]), index=out.index, dtype=object)
    return out


def validate_site_files(paths: Iterable[Path | str], default_radius_m: float) -> list[Problem]:
    """Every problem (errors and warnings) in the given files, in file order."""
    return _collect([Path(p) for p in paths], default_radius_m)[1]


def _collect(
    paths: list[Path], default_radius_m: float
) -> tuple[list[dict[str, Any]], list[Problem]]:
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        file_rows, file_problems = _read_file(path, default_radius_m)
        problems += file_problems
        for row in file_rows:
            index = row.pop("_index")
            where = f"{path.name} feature {index}"
            if row["site_id"] in seen:
                problems.append(
                    Problem(
                        str(path),
                        f"feature {index} ({row['site_id']})",
                        f"duplicate site_id {row['site_id']!r} (also in {seen[row['site_id']]}); "
                        "site_id must be unique across all site files",
                    )
                )
                continue
            seen[row["site_id"]] = where
            rows.append(row)
    return rows, problems


def _load_json(path: Path) -> tuple[Any, list[Problem]]:
    f = str(path)
    if not path.exists():
        return None, [Problem(f, None, "file not found")]
    if path.is_dir():
        return None, [Problem(f, None, "is a folder, expected a .geojson file")]
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return None, [
            Problem(
                f,
                None,
                f"file is {size / 1e6:.1f} MB, above the {MAX_FILE_BYTES / 1e6:.0f} MB "
                "limit for site files; simplify the polygons or split the file",
            )
        ]
    if size == 0:
        return None, [Problem(f, None, "file is empty")]
    if path.suffix.lower() in _OTHER_FORMATS:
        return None, [
            Problem(
                f,
                None,
                f"is a {_OTHER_FORMATS[path.suffix.lower()]}, not GeoJSON; "
                f"convert it, e.g. ogr2ogr -f GeoJSON -t_srs EPSG:4326 "
                f"{path.stem}.geojson {path.name}",
            )
        ]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [
            Problem(f, None, "not UTF-8 text; GeoJSON must be UTF-8 (re-save it as UTF-8)")
        ]
    try:
        return json.loads(text, parse_int=_bounded_int), []
    except json.JSONDecodeError as e:
        return None, [Problem(f, None, f"not valid JSON ({_json_hint(e)})")]
    except _LongNumber as e:  # Python refuses > 4300 digits, with an error naming no file
        return None, [
            Problem(f, None, f"a number of {e} digits; coordinates and properties need far fewer")
        ]
    except RecursionError:
        return None, [
            Problem(
                f,
                None,
                "values nested too deeply (GeoJSON needs a few levels); the file is "
                "damaged or not GeoJSON",
            )
        ]


class _LongNumber(ValueError):
    """A JSON integer with more digits than any coordinate or property has."""


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > 30:
        raise _LongNumber(digits)
    return int(text)


def _json_hint(e: json.JSONDecodeError) -> str:
    """Where the JSON breaks, naming the two mistakes hand edits and cut-off copies make."""
    doc, pos = e.doc, e.pos
    if not doc[pos:].strip():
        return (
            f"it ends at line {e.lineno} before the data is complete: the file is cut off; "
            "copy or download it again"
        )
    before = doc[:pos].rstrip()
    if before.endswith(",") and doc[pos : pos + 1] in ("]", "}"):
        comma = len(before) - 1
        line = doc.count("\n", 0, comma) + 1
        col = comma - doc.rfind("\n", 0, comma)
        return f"trailing comma at line {line}, column {col}: JSON allows no comma before ']' or '}}'; delete it"
    return f"line {e.lineno}, column {e.colno}: {e.msg}"


def _features(doc: Any, f: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    if not isinstance(doc, dict):
        return [], [
            Problem(
                f,
                None,
                f"valid JSON but not GeoJSON: the top level is a {_json_kind(doc)}, "
                "expected an object with a 'type' member (e.g. FeatureCollection)",
            )
        ]
    if "type" not in doc:
        return [], [
            Problem(f, None, "valid JSON but not GeoJSON (no 'type' member at the top level)")
        ]
    kind = doc["type"]
    if kind == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            return [], [Problem(f, None, "FeatureCollection without a 'features' list")]
        if not feats:
            return [], [Problem(f, None, "FeatureCollection has no features")]
        return feats, []
    if kind == "Feature":
        return [doc], []
    if kind in ("Point", "MultiPoint", "Polygon", "MultiPolygon"):
        return [{"type": "Feature", "geometry": doc, "properties": {}}], []
    return [], [
        Problem(f, None, f"GeoJSON type {kind!r} is not a FeatureCollection, Feature or geometry")
    ]


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _declared_crs(doc: Any, f: str) -> tuple[CRS | None, list[Problem]]:
    """The legacy (2008) ``crs`` member, if it names something other than WGS84."""
    if not isinstance(doc, dict) or not doc.get("crs"):
        return None, []
    member = doc["crs"]
    name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    if not isinstance(name, str):
        return None, [
            Problem(f, None, "unreadable 'crs' member; remove it and store WGS84 coordinates")
        ]
    short = name.replace("urn:ogc:def:crs:", "").replace("::", ":").upper()
    if short in _WGS84_NAMES:
        return None, []
    try:
        crs = CRS.from_user_input(name)
    except CRSError:
        return None, [
            Problem(f, None, f"unknown CRS {name!r}; reproject the file to WGS84 (EPSG:4326)")
        ]
    if crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return None, []
    return crs, [Problem(f, None, f"declares CRS {name}; reprojected to WGS84", "warning")]


def _read_file(path: Path, default_radius_m: float) -> tuple[list[dict[str, Any]], list[Problem]]:
    f = str(path)
    doc, problems = _load_json(path)
    if problems:
        return [], problems
    feats, problems = _features(doc, f)
    crs, crs_problems = _declared_crs(doc, f)
    problems += crs_problems
    if any(p.severity == "error" for p in problems):
        return [], problems
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True) if crs else None
    rows = []
    for i, feat in enumerate(feats):
        row, feat_problems = _read_feature(feat, i, path, to_wgs84, default_radius_m)
        problems += feat_problems
        if row is not None:
            rows.append(row)
    return rows, problems


def _feature_label(i: int, props: dict[str, Any]) -> str:
    for key in ("site_id", "name"):
        if isinstance(props.get(key), str | int) and str(props[key]).strip():
            return f"feature {i} ({str(props[key]).strip()[:40]})"
    return f"feature {i}"


def _encodable(text: Any) -> bool:
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_feature(
    feat: Any, i: int, path: Path, to_wgs84: Transformer | None, default_radius_m: float
) -> tuple[dict[str, Any] | None, list[Problem]]:
    f = str(path)
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        return None, [Problem(f, f"feature {i}", "is not a GeoJSON Feature object")]
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        return None, [Problem(f, f"feature {i}", "'properties' is not an object")]
    broken = next(
        (
            k
            for k, v in props.items()
            if not _encodable(k) or (isinstance(v, str) and not _encodable(v))
        ),
        None,
    )
    if broken is not None:  # JSON allows "\ud800"; no file or terminal can hold it
        return None, [
            Problem(
                f,
                f"feature {i}",
                f"property {broken!r} holds a lone surrogate (a \\uD800-\\uDFFF "
                "escape, which is no character); remove it",
            )
        ]
    label = _feature_label(i, props)
    problems: list[Problem] = []

    def err(msg: str) -> tuple[None, list[Problem]]:
        return None, [*problems, Problem(f, label, msg)]

    batch, batch_problem = _batch(props.get("batch"))
    if batch_problem:
        problems.append(Problem(f, label, batch_problem, "warning"))
    site_id, id_problem = _site_id(props, path, i)
    if id_problem:
        if id_problem.severity == "error":
            return err(id_problem.message)
        problems.append(Problem(f, label, id_problem.message, "warning"))

    geom_json = feat.get("geometry")
    if not geom_json:
        return err("has no geometry (null); give it a Point or Polygon")
    shape_problem = _geometry_json_problem(geom_json)
    if shape_problem:
        return err(shape_problem)
    try:
        geom = shape(geom_json)
    except Exception as e:  # shapely raises several types for malformed coordinates
        return err(f"malformed geometry ({e.__class__.__name__}: {str(e)[:80]})")
    if geom.is_empty:
        return err("has an empty geometry")
    if geom.geom_type not in ("Point", "MultiPoint", "Polygon", "MultiPolygon"):
        return err(f"geometry type {geom.geom_type} is not supported; use Point or Polygon")
    if geom.has_z:
        geom = shapely.force_2d(geom)
    if to_wgs84 is not None:
        geom = _reproject(to_wgs84, geom)
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        return err("has non-finite coordinates")
    lon, lat = coords[:, 0], coords[:, 1]
    if (np.abs(lon) > 180).any() or (np.abs(lat) > 90).any():
        hint = (
            " (they look like projected metres: declare the CRS or reproject to WGS84)"
            if (np.abs(coords) > 1000).any()
            else "; GeoJSON order is [longitude, latitude]"
        )
        return err(f"coordinates outside longitude/latitude range{hint}")

    radius, radius_problem = _radius(props, default_radius_m)
    if radius_problem:
        return err(radius_problem)

    if geom.geom_type == "MultiPoint" and len(geom.geoms) > MAX_SITE_POINTS:
        return err(
            f"MultiPoint of {len(geom.geoms)} points; a site has at most {MAX_SITE_POINTS} (each is buffered "
            "by radius_m and the circles united): split it into sites or draw its polygon"
        )
    if geom.geom_type in ("Point", "MultiPoint"):
        center = geom.centroid
        poly = buffer_metres(geom, radius, (center.x, center.y))
        # only a single point can be re-buffered from its centre (radius variants, rings);
        # a MultiPoint's circles are kept as drawn, like a polygon
        from_point = geom.geom_type == "Point"
    else:
        n = shapely.get_num_coordinates(geom)
        if n > MAX_SITE_VERTICES:  # checking validity alone took 6 s at 200,000
            return err(
                f"polygon of {n} vertices; a site needs far fewer (at most {MAX_SITE_VERTICES}): simplify "
                "it, e.g. ogr2ogr -simplify 0.0001 out.geojson in.geojson"
            )
        reason = shapely.is_valid_reason(geom)
        if reason != "Valid Geometry":
            if (
                n > MAX_REPAIR_VERTICES
            ):  # repairs cost up to the square of the crossings: 200,000 took 28 s, 2 GB
                return err(
                    f"invalid polygon ({reason}) of {n} vertices, too many to repair here; fix it in a GIS "
                    "(e.g. QGIS 'Fix geometries') and save it again"
                )
            geom = shapely.make_valid(geom)
            geom = shapely.unary_union(
                [
                    g
                    for g in getattr(geom, "geoms", [geom])
                    if g.geom_type in ("Polygon", "MultiPolygon")
                ]
            )
            if geom.is_empty:
                return err(f"invalid polygon ({reason}) that cannot be repaired")
            problems.append(
                Problem(f, label, f"invalid polygon ({reason}) repaired with make_valid", "warning")
            )
        if geom.area < MIN_AREA_DEG2:
            return err(
                "polygon has no area (its corners lie on a line or one spot); draw it again "
                "or give a Point with radius_m"
            )
        center = _declared_center(props) or geom.centroid
        from_point = _declared_center(props) is not None and _is_number(props.get("radius_m"))
        poly = geom
    if _wraps(poly):
        w, _, east, _ = poly.bounds
        if geom.geom_type in ("Point", "MultiPoint"):
            what, fix = (
                f"its {radius:g} m circle",
                "give a smaller radius_m or move the point off 180°",
            )
        else:
            what, fix = "it", "split it into two sites, one each side"
        return err(
            f"crosses the antimeridian (180° longitude): {what} would span longitudes {w:.3f} to {east:.3f}, "
            f"round the globe; sites across 180° are not supported: {fix}"
        )
    row = {
        "_index": i,
        "site_id": site_id,
        "batch": batch,
        "radius_m": radius if from_point or geom.geom_type == "MultiPoint" else math.nan,
        "center_lon": round(center.x, 6),
        "center_lat": round(center.y, 6),
        "from_point": from_point,
        "source_file": path.name,
        "geometry": poly,
    }
    for key in _OPTIONAL_TEXT:
        value = props.get(key)
        row[key] = str(value).strip() if value not in (None, "") else None
    if row["name"] is None:
        row["name"] = site_id
    for key in DATE_KEYS:
        if row[key] is not None and site_date(row[key]) is None:
            problems.append(
                Problem(
                    f,
                    label,
                    f"{key}={row[key][:40]!r} is not a date (YYYY-MM-DD, or YYYY-MM when "
                    "only the month is known); ignored",
                    "warning",
                )
            )
            row[key] = None
    return row, problems


_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "Polygon": 2,
    "MultiLineString": 2,
    "MultiPolygon": 3,
}


def _geometry_json_problem(g: Any) -> str | None:
    """What is wrong with a geometry's JSON structure, in words (shapely's errors are cryptic)."""
    if not isinstance(g, dict):
        return f"geometry is a {_json_kind(g)}, expected an object with 'type' and 'coordinates'"
    kind = g.get("type")
    if kind not in _DEPTH:
        return None  # GeometryCollection and unknown types are reported after parsing
    if "coordinates" not in g:
        return f"{kind} geometry has no 'coordinates'"

    def check(node: Any, depth: int) -> str | None:
        if depth == 0:
            if (
                not isinstance(node, list)
                or len(node) not in (2, 3)
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in node)
            ):
                return f"position {json.dumps(node)[:40]} is not [longitude, latitude] numbers"
            return None
        if not isinstance(node, list):
            return f"coordinates hold a {_json_kind(node)} where a list was expected"
        if depth == 1 and kind in ("Polygon", "MultiPolygon") and 0 < len(node) < 4:
            return f"a polygon ring needs at least 4 positions (the last repeating the first), found {len(node)}"
        return next((msg for child in node if (msg := check(child, depth - 1))), None)

    return check(g["coordinates"], _DEPTH[kind])


def _site_id(props: dict[str, Any], path: Path, i: int) -> tuple[str, Problem | None]:
    raw = props.get("site_id")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        base = props.get("name")
        sid = slugify(str(base)) if base else f"{slugify(path.stem)}-{i + 1}"
        return sid, Problem(
            str(path),
            None,
            f"no site_id; using {sid!r} (derived from "
            f"{'name' if base else 'file name and position'})",
            "warning",
        )
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return "", Problem(str(path), None, f"site_id must be text, found {type(raw).__name__}")
    sid = str(raw).strip()
    if not SITE_ID_RE.match(sid):
        return "", Problem(
            str(path),
            None,
            f"site_id {sid[:40]!r} is not filename-safe: use letters, digits, '.', '-', '_' "
            f"(up to 80 characters), e.g. {slugify(sid)!r}",
        )
    return sid, None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _radius(props: dict[str, Any], default: float) -> tuple[float, str | None]:
    value = props.get("radius_m")
    if value is None:
        return default, None
    if not _is_number(value) or not 0 < value <= MAX_RADIUS_M:
        return default, f"radius_m={value!r} must be a number of metres in (0, {MAX_RADIUS_M:.0f}]"
    return float(value), None


def _declared_center(props: dict[str, Any]) -> Point | None:
    lon, lat = props.get("center_lon"), props.get("center_lat")
    if (
        isinstance(lon, int | float)
        and isinstance(lat, int | float)
        and _is_number(lon)
        and _is_number(lat)
        and abs(lon) <= 180
        and abs(lat) <= 90
    ):
        return Point(lon, lat)
    return None


def _batch(value: Any) -> tuple[str | None, str | None]:
    """A batch label and, when the value cannot be one, why (the label is then None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"batch must be a label (text or a year), found {_json_kind(value)}; ignored"
    label = batch_label(value)
    if label is not None and len(label) > MAX_BATCH_CHARS:
        return None, f"batch label is {len(label)} characters, more than {MAX_BATCH_CHARS}; ignored"
    return label, None


MAX_BATCH_CHARS = 40


def batch_label(value: Any) -> str | None:
    """The one spelling of a batch label: text with its white space folded; a whole number
    (``2024``, ``2024.0``, as JSON, YAML, CSV or pandas may give it) as its digits; nothing
    (None, NaN, blank) as None. A year is a label like any other: nothing parses it."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = " ".join(str(value).split())
    return text or None


def batch_labels(sites: Any) -> pd.Series:
    """Each site's batch label (None without one), whatever type the column arrived as."""
    if "batch" not in sites:
        return pd.Series([None] * len(sites), index=sites.index, dtype=object)
    return pd.Series([batch_label(v) for v in sites["batch"]], index=sites.index, dtype=object)


def in_batch(sites: Any, label: Any) -> np.ndarray:
    """Which sites carry the batch ``label`` (compared as labels: ``2024`` and ``"2024"`` agree)."""
    want = batch_label(label)
    return (
        (batch_labels(sites) == want).to_numpy(bool)
        if want is not None
        else np.zeros(len(sites), bool)
    )


def batch_order(labels: Iterable[Any]) -> list[str]:
    """Distinct labels in reading order: numbers by value (years in time order), then text."""

    def key(label: str) -> tuple[int, float, str]:
        try:
            return 0, float(label), label
        except ValueError:
            return 1, 0.0, label.casefold()

    return sorted({x for v in labels if (x := batch_label(v)) is not None}, key=key)


def site_date(value: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last day a site date can mean: ``2025-01-14`` that day, ``2025-01`` the
    whole month; None for anything else (the one parser of site dates, so every count agrees)."""
    if not isinstance(value, str):
        return None
    m = _SITE_DATE_RE.match(value.strip())
    if not m:
        return None
    try:
        first = pd.Timestamp(int(m[1]), int(m[2]), int(m[3] or 1))
    except ValueError:  # 2026-02-30, month 13
        return None
    if not 1900 <= first.year <= 2100:
        return None
    return first, (first if m[3] else first + pd.offsets.MonthEnd(0))


def inauguration_month(value: Any) -> str | None:
    """``YYYY-MM`` of an inauguration date (the event study's month), None when not a date."""
    d = site_date(value)
    return f"{d[0]:%Y-%m}" if d else None


# --------------------------------------------------------------------------- derived geometry


def _wraps(geom: BaseGeometry) -> bool:
    """Whether a lon/lat polygon crosses the antimeridian: a part reaching both sides of 180°
    (a circle round a point at 179.99° E has vertices at -179.99°, and as drawn spans the globe)."""
    parts = getattr(geom, "geoms", [geom])
    return any(not p.is_empty and p.bounds[2] - p.bounds[0] > 180 for p in parts)


def _refuse_wrap(geom: BaseGeometry, row: Any, what: str) -> BaseGeometry:
    if _wraps(geom):
        where = getattr(row, "source_file", "sites")
        raise SiteError(
            f"{where}: site {row.site_id}: {what} crosses the antimeridian (180° longitude); sites "
            "within that distance of 180° are not supported: use a smaller radius or move the site"
        )
    return geom


def with_radius(sites: gpd.GeoDataFrame, radius_m: float) -> gpd.GeoDataFrame:
    """Sites re-buffered to ``radius_m`` (point-derived sites only; drawn polygons kept)."""
    out = sites.copy()
    geoms = []
    for row in sites.itertuples():
        if row.from_point:
            c = (row.center_lon, row.center_lat)
            geoms.append(
                _refuse_wrap(
                    buffer_metres(Point(c), radius_m, c), row, f"its {radius_m:g} m circle"
                )
            )
        else:
            geoms.append(row.geometry)
    out["geometry"] = geoms
    out["radius_m"] = np.where(sites["from_point"], radius_m, np.nan)
    return out


def background_rings(sites: gpd.GeoDataFrame, inner_m: float, outer_m: float) -> gpd.GeoSeries:
    """An annulus around each site with every site's polygon removed.

    Radii are from the centre for point-derived sites and from the edge for drawn
    polygons. The ring measures region-wide change (supply, calibration, weather)
    near the site without the site's own light.

    Near-linear in the number of sites: the union of the site polygons is built once per
    cell of a grid (cells twice a typical ring, the sites in each found with an STRtree),
    and each ring subtracts the few cells it overlaps. Uniting the sites near each ring anew made
    the step quadratic for many close sites (2,000 sites: 95 s, 10,000: past 600 s). The
    result is the same region as subtracting the union of the sites that reach the ring.
    """
    polygons = sites.geometry.values
    annuli = []
    for row in sites.itertuples():
        c = (row.center_lon, row.center_lat)
        base = Point(c) if row.from_point else row.geometry
        outer = _refuse_wrap(
            buffer_metres(base, outer_m, c), row, f"its background ring ({outer_m:g} m)"
        )
        inner = buffer_metres(base, inner_m, c) if inner_m > 0 else shapely.Polygon()
        annuli.append((outer, inner))
    if not annuli:
        return gpd.GeoSeries([], index=sites.index, crs=sites.crs)
    bounds = shapely.bounds(np.array([o for o, _ in annuli]))
    x0, y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
    # cells twice a typical ring: most rings overlap at most four; a few large ones (rings round big drawn
    # polygons) overlap more, which costs time, not correctness
    size = (
        float(np.median(np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]))) * 2
        or 1.0
    )
    tree = shapely.STRtree(polygons)
    cells: dict[tuple[int, int], BaseGeometry] = {}

    def cell(i: int, j: int) -> BaseGeometry:
        """The union of the site polygons clipped to cell (i, j); built once."""
        if (i, j) not in cells:
            box = shapely.box(
                x0 + i * size, y0 + j * size, x0 + (i + 1) * size, y0 + (j + 1) * size
            )
            near = polygons[tree.query(box)]
            cells[i, j] = (
                shapely.intersection(shapely.unary_union(near), box)
                if len(near)
                else shapely.Polygon()
            )
        return cells[i, j]

    rings = []
    for (outer, inner), (w, s, e, n) in zip(annuli, bounds, strict=True):
        pieces = [
            cell(i, j)
            for i in range(int((w - x0) // size), int((e - x0) // size) + 1)
            for j in range(int((s - y0) // size), int((n - y0) // size) + 1)
        ]
        ring = outer.difference(inner)
        for piece in pieces:
            if shapely.intersects(piece, outer):
                ring = ring.difference(piece)
        rings.append(ring)
    return gpd.GeoSeries(rings, index=sites.index, crs=sites.crs)
