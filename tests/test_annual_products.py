"""Annual composites in the analysis: planted classes, and the product dimension of the robustness grid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio

from pipeline.analysis import analyse
from pipeline.cli import main
from pipeline.config import Params
from pipeline.read.sources import find_annual_rasters, find_monthly_rasters, valid_mask
from tests.scenarios import planted


def write_annual_from_months(folder, min_cf_cvg: int = 3) -> None:
    """VNL v2-named annual composites made from a folder's months: per pixel, the mean of its
    valid months (cf_cvg >= 3), and the summed cloud-free count, as EOG's annual product does."""
    months = find_monthly_rasters(folder)
    for year in sorted({r.year for r in months}):
        rad_sum = cnt = cvg = profile = None
        for r in (m for m in months if m.year == year):
            with rasterio.open(r.radiance) as ds, rasterio.open(r.aux) as cv:
                rad, aux, profile = ds.read(1).astype("float64"), cv.read(1), ds.profile
            ok = valid_mask(aux, "cf_cvg", min_cf_cvg, (0,))
            rad_sum = (0 if rad_sum is None else rad_sum) + np.where(ok, np.maximum(rad, 0), 0)
            cnt = (0 if cnt is None else cnt) + ok
            cvg = (0 if cvg is None else cvg) + aux.astype("int64")
        stem = f"VNL_npp_{year}_global_vcmslcfg_v2_c{year + 1}02261200"
        mean = np.where(cnt > 0, rad_sum / np.maximum(cnt, 1), 0).astype("float32")
        for layer, arr in (("average_masked", mean), ("cf_cvg", cvg.astype("uint16"))):
            with rasterio.open(
                folder / f"{stem}.{layer}.dat.tif",
                "w",
                **{**profile, "dtype": arr.dtype.name, "nodata": None},
            ) as ds:
                ds.write(arr, 1)
                ds.update_tags(SYNTHETIC="true")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("both")
    sites, months, truth, folder = planted(tmp, n_sites=20)
    write_annual_from_months(folder)
    return sites, months, truth, folder, tmp


def test_annual_composites_recover_the_planted_classes(both):
    sites, _, truth, folder, _ = both
    annual = find_annual_rasters(folder)
    assert [r.month for r in annual] == ["2023", "2024", "2025"]
    params = Params(product="annual")
    r = analyse(
        sites,
        annual,
        params,
        source="local",
        data_kind="synthetic",
        sensitivity=False,
        progress=False,
    )
    got = r.changes.set_index("site_id")["class"]
    want = truth.set_index("site_id")["planted_class"]
    assert set(want) == {"brightened", "unchanged", "dimmed"}
    assert (got[want.index] == want).sum() >= 19
    # the yearly value is the composite's coverage-weighted mean: the site-by-year table's value
    sm = r.site_months.set_index(["site_id", "month"])["mean_radiance"]
    ch = r.changes.set_index("site_id")
    np.testing.assert_allclose(
        ch["target_value"], sm.xs("2025", level="month")[ch.index], rtol=1e-9
    )
    assert r.verdict["product"] == "annual" and r.verdict["products"] == ["eog-annual-vcmslcfg"]
    assert (r.changes["se_log_ratio"] > 0).all() and (r.changes["n_pixels_eff"] > 5).all()


@pytest.mark.slow
def test_both_products_at_hand_add_a_product_dimension(both, capsys):
    _, _, _, folder, tmp = both
    sites = tmp / "sites.geojson"
    out_a, out_m = tmp / "out_annual", tmp / "out_monthly"
    common = [
        "--source",
        "local",
        "--rasters",
        str(folder),
        "--sites",
        str(sites),
        "--no-figures",
        "-q",
    ]
    assert main(["run", *common, "--product", "annual", "--out", str(out_a)]) == 0
    sens = pd.read_csv(out_a / "sensitivity.csv")
    assert sens.groupby("product").size().to_dict() == {"annual": 72, "monthly": 288}
    assert set(sens.loc[sens["product"] == "annual", "statistic"]) == {"annual"}
    robust = json.loads((out_a / "verdict.json").read_text())["robustness"]
    assert robust["dimensions"]["product"] == ["annual", "monthly"] and robust["n_variants"] == 360
    assert set(robust["by_product"]) == {"annual", "monthly"}
    assert robust["by_product"]["monthly"]["n_variants"] == 288
    # the headline (annual, default threshold, radius, rule, absolute) equals the site table's counts
    head = sens[
        (sens["product"] == "annual")
        & (sens["threshold"] == 0.25)
        & (sens["radius_m"] == 2000)
        & (sens["pixel_rule"] == "exact")
        & (sens["adjustment"] == "absolute")
    ]
    classes = pd.read_csv(out_a / "site_changes.csv")["class"].value_counts()
    assert int(head["brightened"].iloc[0]) == int(classes.get("brightened", 0))
    # monthly run from the same folder: the monthly rows are its own grid, the annual ones join them
    assert main(["run", *common, "--out", str(out_m)]) == 0
    sens_m = pd.read_csv(out_m / "sensitivity.csv")
    assert sens_m.groupby("product").size().to_dict() == {"annual": 72, "monthly": 288}
    monthly_rows = (
        sens_m[sens_m["product"] == "monthly"].drop(columns="product").reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        monthly_rows,
        sens[sens["product"] == "monthly"].drop(columns="product").reset_index(drop=True),
    )
