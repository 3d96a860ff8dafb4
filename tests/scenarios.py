"""Planted-truth scenarios: small synthetic study areas whose true changes are known."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd

from pipeline.fetch.demo import DemoSpec, build_demo
from pipeline.read.sites import read_sites
from pipeline.read.sources import MonthlyRaster, find_monthly_rasters
from tests.conftest import point_feature, write_sites

BOUNDS = (125.0, 39.3, 126.5, 40.3)  # 360 x 240 px; Pyongyang stays outside


def grid_sites(n: int, spacing: float = 0.15) -> list[tuple[str, float, float]]:
    cols = 8
    return [
        (
            f"s{i:02d}",
            round(BOUNDS[0] + 0.15 + spacing * (i % cols), 5),
            round(BOUNDS[1] + 0.15 + spacing * (i // cols), 5),
        )
        for i in range(n)
    ]


def planted(
    tmp_path: Path, n_sites: int = 40, **spec: object
) -> tuple[gpd.GeoDataFrame, list[MonthlyRaster], pd.DataFrame, Path]:
    """Write a scenario; return its sites, monthly rasters, truth table and raster folder."""
    points = grid_sites(n_sites)
    site_file = write_sites(
        tmp_path / "sites.geojson",
        [point_feature(s, lon, lat, batch=2024) for s, lon, lat in points],
    )
    demo = DemoSpec(
        **{
            "seed": 11,
            "bounds": BOUNDS,
            "sites": tuple(points),
            "n_other_towns": 8,
            "month_noise": 0.18,
            "change_range": (0.6, 1.2),
            **spec,
        }
    )
    folder = build_demo(tmp_path / "rasters", demo, progress=False)
    sites = read_sites([site_file], 2000.0)
    return sites, find_monthly_rasters(folder), pd.read_csv(folder / "truth.csv"), folder
