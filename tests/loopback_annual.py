"""Annual products for the loopback server: EOG VNL v2 and NASA VNP46A4 in their real formats.

EOG: ``.dat.tif.gz`` layers (average_masked, cf_cvg, and others to be ignored) on the real 15"
grid under ``annual/v2x/YYYY/``, in both published naming forms. LAADS: VNP46A4 HDF5 tiles dated
``A{YYYY}001`` with the real group, variable names and fill/scale attributes. SYNTHETIC: test data only.
"""

from __future__ import annotations

import numpy as np

from tests.loopback import (
    BM_SITES,
    EOG_RES,
    EOG_SITES,
    Loopback,
    _peaks,
    bm_h5,
    eog_window,
    geotiff_bytes,
    radiance_field,
)

# Both EOG naming forms, as published: VNL_v2x_npp_... (v21, v22) and, from 2024, VNL_npp_..._v2_c...
EOG_ANNUAL_STEMS = {
    2022: ("v21", "VNL_v21_npp_2022_global_vcmslcfg_c202303062300"),
    2023: ("v22", "VNL_v22_npp-j01_2023_global_vcmslcfg_c202402081600"),
    2024: ("v22", "VNL_npp_2024_global_vcmslcfg_v2_c202502261200"),
}


def eog_annual_dir(year: int) -> str:
    return f"/nighttime_light/annual/{EOG_ANNUAL_STEMS[year][0]}/{year}/"


def populate_eog_annual(
    lb: Loopback,
    years: tuple[int, ...],
    sites: list[tuple[str, float, float]] = EOG_SITES,
    last_year: int | None = None,
) -> dict[str, bytes]:
    """Serve VNL v2 annual layers (average_masked: background zeroed; cf_cvg; median_masked and a
    vcmcfg composite that must be ignored) as ``.dat.tif.gz`` on the real 15" grid."""
    import gzip

    west, north, w, h = eog_window([(lon, lat) for _, lon, lat in sites])
    last = last_year or max(years)
    served = {}
    for year in years:
        rad = radiance_field(west, north, EOG_RES, (h, w), _peaks(sites, year, last), year)
        masked = np.where(rad < 0.6, 0.0, rad).astype("float32")  # VNL v2 zeroes the background
        cvg = np.full((h, w), 40, "uint16")
        cvg[:3] = 0  # a never-observed strip along the window's top edge
        folder, stem = eog_annual_dir(year), EOG_ANNUAL_STEMS[year][1]
        layers = {"average_masked": masked, "cf_cvg": cvg, "median_masked": masked * 0 + 99.0}
        for layer, arr in layers.items():
            data = gzip.compress(geotiff_bytes(arr, west, north, EOG_RES), compresslevel=1)
            lb.add(f"{folder}{stem}.{layer}.dat.tif.gz", data)
            served[f"{folder}{stem}.{layer}.dat.tif.gz"] = data
        other = stem.replace("vcmslcfg", "vcmcfg")
        lb.add(f"{folder}{other}.average_masked.dat.tif.gz", b"not this configuration")
    return served


def bm_annual_name(year: int, h: int, v: int) -> str:
    return f"VNP46A4.A{year}001.h{h:02d}v{v:02d}.002.{year + 1}040101520.h5"


def bm_annual_dir(year: int) -> str:
    return f"/archive/allData/5200/VNP46A4/{year}/001/"


def populate_bm_annual(
    lb: Loopback,
    years: tuple[int, ...],
    n: int = 240,
    sites: list[tuple[str, float, float]] = BM_SITES,
) -> dict[str, bytes]:
    """Serve VNP46A4 years for h30v04, h30v05, h31v04, h31v05 (collection-2 float convention;
    the first year in the collection-1 uint16 one, since the reader must take either)."""
    served = {}
    for year in years:
        folder = bm_annual_dir(year)
        for h, v in ((30, 4), (30, 5), (31, 4), (31, 5)):
            west, north = -180 + 10 * h, 90 - 10 * v
            rad = np.maximum(
                radiance_field(
                    west, north, 10 / n, (n, n), _peaks(sites, year, max(years)), year * 7 + h + v
                ),
                0,
            )
            quality = np.zeros((n, n), "uint8")
            mid, band = n // 2, max(n // 40, 1)
            quality[mid : mid + band] = 255
            rad[mid : mid + band] = np.nan
            quality[mid + band : mid + 2 * band] = 2
            data = bm_h5(
                h, v, rad, quality, "c1" if year == min(years) else "c2", product="VNP46A4"
            )
            lb.add(folder + bm_annual_name(year, h, v), data)
            served[folder + bm_annual_name(year, h, v)] = data
    return served
