"""GIS files: the classified sites for GIS users, and the site-by-month table as Parquet.

Outputs (through the run's staging folder): ``sites_classified.geojson``,
``sites_classified.parquet`` (GeoParquet) and ``site_months.parquet``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.results import classified_sites

if TYPE_CHECKING:
    from pipeline.results import Results


def write_gis(results: Results, out: Any) -> None:
    gdf = classified_sites(results)
    gdf.to_file(
        out.path("sites_classified.geojson"),
        driver="GeoJSON",
        engine="pyogrio",
        layer_options={"COORDINATE_PRECISION": 6, "WRITE_NAME": "NO"},
    )
    gdf.to_parquet(out.path("sites_classified.parquet"), index=False)
    results.site_months.assign(data_kind=results.verdict["data_kind"]).to_parquet(
        out.path("site_months.parquet"), index=False
    )
