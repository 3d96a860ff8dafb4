"""Units: administrative polygons (counties, provinces), and which one holds each site.

Inputs
    A GeoJSON FeatureCollection of Polygon/MultiPolygon units with ``unit_id`` and
    ``name`` (and optionally ``name_ko``, ``province``, ``province_id``): by default the DPRK
    counties shipped in ``aoi/boundaries/`` (see its README for source and licence).
Outputs
    :func:`read_units`: a GeoDataFrame in EPSG:4326, columns :data:`UNIT_COLUMNS` plus any
    other properties. :func:`assign_units`: the sites with ``county`` and ``county_id``.

A site's county is the unit holding its centre point, not the unit its circle overlaps
most: the centre is what the gazetteer located. Name checks only warn, because the
boundary names and the site names use different romanisations and vintages.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.ops import nearest_points

import pipeline
from pipeline.errors import BoundaryError

log = logging.getLogger(__name__)

UNIT_COLUMNS = ["unit_id", "name", "name_ko", "province", "province_id", "geometry"]
BOUNDARY_FILES = {"county": "prk_adm2.geojson", "province": "prk_adm1.geojson"}
OVERLAP_WARN_SHARE = (
    0.005  # overlaps under 0.5% of the smaller unit are digitising slivers, not errors
)
MAX_FILE_BYTES = 100_000_000


def default_units_path(level: Literal["county", "province"] = "county") -> Path | None:
    """``aoi/boundaries/<file>`` in the current folder, else next to the package; None if neither."""
    name = BOUNDARY_FILES[level]
    for root in (Path.cwd(), Path(pipeline.__file__).resolve().parents[1]):
        if (root / "aoi" / "boundaries" / name).is_file():
            return root / "aoi" / "boundaries" / name
    return None


_READ: dict[tuple[str, int, int], tuple[gpd.GeoDataFrame, list[logging.LogRecord]]] = {}


def read_units(path: Path | str) -> gpd.GeoDataFrame:
    """Read and check a unit file; raise :class:`BoundaryError` with one line for what is wrong.

    Missing or duplicate ``unit_id`` and unusable geometry stop the read; invalid polygons
    are repaired and overlapping units reported, as warnings. A run reads the same file for the
    counties, the comparison and the maps: it is parsed once per process while its size and
    modification time stay the same (a copy each time, its warnings said again).
    """
    path = Path(path)
    try:
        st = path.stat()
        key: tuple[str, int, int] | None = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _READ:
        units, said = _READ[key]
        for record in said:
            log.handle(record)
    else:
        said = []
        catch = _Said(said)
        log.addHandler(catch)
        try:
            units = _read_units(path)
        finally:
            log.removeHandler(catch)
        if key is not None:
            while len(_READ) >= 4:  # a run re-reads two or three files; long sessions stay small
                _READ.pop(next(iter(_READ)))
            _READ[key] = (units, said)
    out = units.copy()
    out.attrs = dict(units.attrs)
    return out


class _Said(logging.Handler):
    """Keeps the records a read logs, to say them again when the read is reused."""

    def __init__(self, into: list[logging.LogRecord]):
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def _read_units(path: Path) -> gpd.GeoDataFrame:
    doc = _load(path)
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or not features:
        raise BoundaryError(
            f"{path}: expected a GeoJSON FeatureCollection of unit polygons with features"
        )
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(features):
        props = feat.get("properties") if isinstance(feat, dict) else None
        if not isinstance(props, dict):
            raise BoundaryError(f"{path}: feature {i}: not a GeoJSON Feature with properties")
        uid = props.get("unit_id")
        if uid is None or isinstance(uid, bool) or not str(uid).strip():
            raise BoundaryError(
                f"{path}: feature {i}{_named(props)}: no unit_id; give every unit a unique unit_id"
            )
        uid = str(uid).strip()
        if uid in seen:
            raise BoundaryError(
                f"{path}: feature {i} ({uid}): duplicate unit_id {uid!r} (also feature "
                f"{seen[uid]}); unit_id must be unique"
            )
        seen[uid] = i
        geom = _geometry(feat.get("geometry"), path, i, uid)
        row = {k: v for k, v in props.items() if k != "geometry"}
        row |= {
            "unit_id": uid,
            "name": _text(props.get("name")) or uid,
            "name_ko": _text(props.get("name_ko")),
            "province": _text(props.get("province")),
            "province_id": _text(props.get("province_id")),
            "geometry": geom,
        }
        rows.append(row)
    units = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    units = units[
        UNIT_COLUMNS[:-1] + [c for c in units.columns if c not in UNIT_COLUMNS] + ["geometry"]
    ]
    units.attrs["source_file"] = str(path)
    for line in overlap_problems(units, path):
        log.warning("%s", line)
    return units


def overlap_problems(units: gpd.GeoDataFrame, path: Path | str = "units") -> list[str]:
    """One warning line per pair of units overlapping by more than :data:`OVERLAP_WARN_SHARE`."""
    geoms = units.geometry.values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if not len(left):
        return []
    shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    smaller = np.minimum(shapely.area(geoms[left]), shapely.area(geoms[right]))
    lines = []
    for a, b, s, m in zip(left, right, shared, smaller, strict=True):
        if s > OVERLAP_WARN_SHARE * m:
            lines.append(
                f"{path}: warning: units {units['unit_id'].iat[a]} ({units['name'].iat[a]}) and "
                f"{units['unit_id'].iat[b]} ({units['name'].iat[b]}) overlap by {100 * s / m:.1f}% of the "
                "smaller; a site in the overlap is given the first"
            )
    return lines


def assign_units(
    sites: gpd.GeoDataFrame,
    units: gpd.GeoDataFrame,
    *,
    column: str = "county",
    source: str | None = None,
    outside_level: int = logging.WARNING,
    name_level: int = logging.WARNING,
) -> gpd.GeoDataFrame:
    """The sites with ``<column>`` (unit name) and ``<column>_id`` (unit id) of the unit holding
    each site's centre (``center_lon``/``center_lat``, else a representative point).

    A site outside every unit gets NaN; a site whose name matches no unit it falls in
    (after romanisation is evened out) is warned about, naming the unit of that name
    when there is one, because one of the point or the boundary is then wrong.
    """
    source = source or units.attrs.get("source_file", "units")
    points = _centres(sites)
    tree = shapely.STRtree(units.geometry.values)
    site_idx, unit_idx = tree.query(points, predicate="within")
    first: dict[int, int] = {}
    for s, u in sorted(zip(site_idx.tolist(), unit_idx.tolist(), strict=True)):
        first.setdefault(s, u)  # units in file order: an overlap goes to the first
    out = sites.copy()
    chosen = [first.get(i) for i in range(len(sites))]
    out[column] = [units["name"].iat[u] if u is not None else np.nan for u in chosen]
    out[f"{column}_id"] = [units["unit_id"].iat[u] if u is not None else np.nan for u in chosen]
    by_name: dict[str, list[int]] = {}
    for j, n in enumerate(units["name"]):
        by_name.setdefault(normalise_name(n), []).append(j)
    for i, u in enumerate(chosen):
        sid, name = (
            sites["site_id"].iat[i],
            _text(sites["name"].iat[i]) if "name" in sites else None,
        )
        label = f"site {sid}" + (f" ({name})" if name and name != sid else "")
        if u is None:
            log.log(
                outside_level,
                "%s: warning: %s at %.5f, %.5f is outside every unit; its %s is left empty",
                source,
                label,
                points[i].x,
                points[i].y,
                column,
            )
            continue
        if not name or name == sid or normalise_name(name) == normalise_name(units["name"].iat[u]):
            continue
        others = [j for j in by_name.get(normalise_name(name), []) if j != u]
        elsewhere = (
            "; "
            + ", ".join(
                f"unit {units['unit_id'].iat[j]} ({units['name'].iat[j]}, {_text(units['province'].iat[j]) or '?'}) is "
                f"{_km(points[i], units.geometry.iat[j]):.1f} km away"
                for j in others
            )
            if others
            else ""
        )
        log.log(
            name_level,
            "%s: %s%s falls in %s %s (%s, %s), which has another name%s; check the point or the boundary",
            source,
            "warning: " if name_level >= logging.WARNING else "",
            label,
            column,
            units["name"].iat[u],
            units["unit_id"].iat[u],
            _text(units["province"].iat[u]) or "?",
            elsewhere,
        )
    return out


def with_default_counties(
    sites: gpd.GeoDataFrame,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """The sites with ``county``/``county_id`` from the shipped counties, and those counties.

    Only when the counties cover the sites (some site centre inside their extent): sites
    elsewhere in the world get no county columns and no warnings, and (None) no county map.
    """
    path = default_units_path("county")
    if path is None or not len(sites):
        return sites, None
    units = read_units(path)
    w, s, e, n = units.total_bounds
    points = _centres(sites)
    x, y = shapely.get_x(points), shapely.get_y(points)
    if not ((x >= w) & (x <= e) & (y >= s) & (y <= n)).any():
        log.info("%s: the sites lie outside these counties; no county is given", path)
        return sites, None
    # the county column is a convenience here: a site off the polygons (a coast) is said, not warned
    # about; `compare`, where treatment depends on it, warns
    # the county column is a convenience in `run`: a user's site named after its factory, not its county,
    # is no problem, so name differences are debug lines here (`compare`, where treatment hangs on them, says them)
    return (
        assign_units(
            sites, units, source=str(path), outside_level=logging.INFO, name_level=logging.DEBUG
        ),
        units,
    )


_ROMAN = [("ph", "p"), ("th", "t"), ("kh", "k"), ("ch", "j"), ("oo", "o"), ("ee", "i")]


def normalise_name(name: Any) -> str:
    """A comparison key evening out romanisations: ``"P'yŏngwŏn"``, ``"Phyongwon"`` and
    ``"Pyongwon"`` give the same key, as do ``"Chagang"`` and ``"Jagang"``."""
    text = unicodedata.normalize("NFKD", str(name)).lower()
    text = re.sub(r"[^a-z]", "", "".join(c for c in text if not unicodedata.combining(c)))
    for a, b in _ROMAN:
        text = text.replace(a, b)
    return text


# --------------------------------------------------------------------------- helpers


def _load(path: Path) -> Any:
    if not path.exists():
        raise BoundaryError(f"{path}: boundary file not found")
    if path.is_dir():
        raise BoundaryError(f"{path}: is a folder, expected a .geojson boundary file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise BoundaryError(
            f"{path}: file is over {MAX_FILE_BYTES // 1_000_000} MB; simplify the polygons"
        )
    try:
        with open(path, "rb") as f:  # bounded: a device's size says 0 (/dev/zero)
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise BoundaryError(
                f"{path}: file is over {MAX_FILE_BYTES // 1_000_000} MB; simplify the polygons"
            )
        return json.loads(data.decode("utf-8-sig"), parse_int=_bounded_int)
    except UnicodeDecodeError as e:
        raise BoundaryError(f"{path}: not UTF-8 text; GeoJSON must be UTF-8") from e
    except json.JSONDecodeError as e:
        raise BoundaryError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from e
    except ValueError as e:  # _bounded_int: Python refuses > 4300 digits, naming no file
        raise BoundaryError(f"{path}: {e}; coordinates and properties need far fewer") from None
    except RecursionError:
        raise BoundaryError(
            f"{path}: values nested too deeply (GeoJSON needs a few levels); the file is damaged or "
            "not GeoJSON"
        ) from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise ValueError(f"a number of {len(text.lstrip('-'))} digits")
    return int(text)


def _geometry(g: Any, path: Path, i: int, uid: str) -> Any:
    where = f"{path}: feature {i} ({uid})"
    if not g:
        raise BoundaryError(f"{where}: has no geometry; a unit needs a Polygon or MultiPolygon")
    try:
        geom = shape(g)
    except Exception as e:  # shapely raises several types for malformed coordinates
        raise BoundaryError(f"{where}: malformed geometry ({e.__class__.__name__})") from e
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise BoundaryError(
            f"{where}: geometry type {geom.geom_type} is not a Polygon or MultiPolygon"
        )
    if geom.is_empty:
        raise BoundaryError(f"{where}: has an empty geometry")
    if geom.has_z:
        geom = shapely.force_2d(geom)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(geom)
        fixed = shapely.unary_union(
            [
                p
                for p in getattr(fixed, "geoms", [fixed])
                if p.geom_type in ("Polygon", "MultiPolygon")
            ]
        )
        if fixed.is_empty or fixed.area <= 0:
            raise BoundaryError(
                f"{where}: invalid polygon ({reason}) that cannot be repaired; redraw it"
            )
        log.warning("%s: warning: invalid polygon (%s) repaired with make_valid", where, reason)
        geom = fixed
    return geom


def _centres(sites: pd.DataFrame) -> np.ndarray:
    lon = pd.to_numeric(
        sites.get("center_lon", pd.Series(np.nan, index=sites.index)), errors="coerce"
    ).to_numpy()
    lat = pd.to_numeric(
        sites.get("center_lat", pd.Series(np.nan, index=sites.index)), errors="coerce"
    ).to_numpy()
    rep = shapely.point_on_surface(np.asarray(sites.geometry.values))
    declared = np.isfinite(lon) & np.isfinite(lat)
    return np.where(declared, shapely.points(np.nan_to_num(lon), np.nan_to_num(lat)), rep)


def _km(point: Any, geom: Any) -> float:
    """Approximate distance (km) from a lon/lat point to a polygon, on a local scale."""
    near = nearest_points(point, geom)[1]
    dx = (near.x - point.x) * 111.32 * math.cos(math.radians(point.y))
    return math.hypot(dx, (near.y - point.y) * 110.57)


def _named(props: dict[str, Any]) -> str:
    return f" ({props['name']})" if props.get("name") else ""


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
