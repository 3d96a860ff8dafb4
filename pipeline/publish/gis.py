"""GIS files: the classified sites for GIS users, and the site-by-month table as Parquet.

Outputs (through the run's staging folder): ``sites_classified.geojson``,
``sites_classified.parquet`` (GeoParquet) and ``site_months.parquet``.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd


def classified_sites(results: Any) -> gpd.GeoDataFrame:
    """Sites with their class and change, one row per site, for GIS users."""
    sites = results.sites.drop(columns=[c for c in ("source_file",) if c in results.sites])
    ch = results.changes.drop(columns=[c for c in ("name", "name_ko", "province", "batch", "location_confidence",
                                                   "county", "county_id", "data_kind")
                                  if c in results.changes and (c == "data_kind" or c in results.sites)])
    gdf = sites.merge(ch, on="site_id", how="left")
    gdf["data_kind"] = results.verdict["data_kind"]
    added = [c for c in ("county", "county_id") if c in gdf]  # newer columns after the existing ones
    gdf = gdf[[c for c in gdf.columns if c not in added and c != "geometry"] + added + ["geometry"]]
    return gpd.GeoDataFrame(gdf, geometry="geometry", crs=results.sites.crs)


def write_gis(results: Any, out: Any) -> None:
    gdf = classified_sites(results)
    gdf.to_file(out.path("sites_classified.geojson"), driver="GeoJSON", engine="pyogrio",
                layer_options={"COORDINATE_PRECISION": 6, "WRITE_NAME": "NO"})
    gdf.to_parquet(out.path("sites_classified.parquet"), index=False)
    results.site_months.assign(data_kind=results.verdict["data_kind"]).to_parquet(
        out.path("site_months.parquet"), index=False)
