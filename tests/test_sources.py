"""Sources: monthly rasters found by name, georeferenced from the file."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SourceError
from pipeline.fetch.demo import eog_name
from pipeline.read.sources import EOG_RE, find_monthly_rasters
from tests.conftest import write_eog_month, write_tif


def test_real_eog_name_parses():
    m = EOG_RE.match(
        "SVDNB_npp_20251001-20251031_75N060E_vcmslcfg_v10_c202511071000.avg_rade9h.tif"
    )
    assert m and m["start"] == "20251001" and m["tile"] == "75N060E" and m["cfg"] == "vcmslcfg"


def test_eog_pairs_and_georeferencing_from_file(tmp_path):
    # deliberately NOT at the 75N060E tile origin: bounds must come from the file
    write_eog_month(tmp_path, 2024, 5, np.ones((8, 9)), np.full((8, 9), 4), 126.5, 39.75)
    (r,) = find_monthly_rasters(tmp_path)
    assert r.month == "2024-05" and r.aux_kind == "cf_cvg" and r.aux.name.endswith(".cf_cvg.tif")
    w, _s, e, n = r.grid.bounds
    assert (w, n) == pytest.approx((126.5, 39.75)) and e == pytest.approx(126.5 + 9 / 240)


def test_eog_without_cf_cvg_is_still_read(tmp_path):
    write_tif(tmp_path / eog_name(2024, 2, "avg_rade9h"), np.ones((4, 4), "float32"), 126.0, 40.0)
    (r,) = find_monthly_rasters(tmp_path)
    assert r.aux is None and r.aux_kind == "none"


@pytest.mark.parametrize(
    "name, month",
    [
        ("viirs_2024-03.tif", "2024-03"),
        ("ntl202411_korea.tif", "2024-11"),
        ("2023-12.tiff", "2023-12"),
    ],
)
def test_plain_names_carry_the_month(tmp_path, name, month):
    write_tif(tmp_path / name, np.ones((3, 3), "float32"), 126.0, 40.0)
    assert find_monthly_rasters(tmp_path)[0].month == month


def test_both_eog_configs_prefer_the_configured_one(tmp_path):
    write_eog_month(tmp_path, 2024, 1, np.ones((3, 3)), np.ones((3, 3)), 126.0, 40.0)
    other = tmp_path / eog_name(2024, 1, "avg_rade9h").replace("vcmslcfg", "vcmcfg")
    write_tif(other, np.ones((3, 3), "float32"), 126.0, 40.0)
    assert find_monthly_rasters(tmp_path)[0].product == "eog-vcmslcfg"
    assert find_monthly_rasters(tmp_path, eog_config="vcmcfg")[0].product == "eog-vcmcfg"


def test_two_files_for_one_month_is_an_error(tmp_path):
    write_tif(tmp_path / "a_2024-01.tif", np.ones((3, 3), "float32"), 126.0, 40.0)
    write_tif(tmp_path / "b_202401.tif", np.ones((3, 3), "float32"), 126.0, 40.0)
    with pytest.raises(SourceError, match="month 2024-01 has 2 radiance files"):
        find_monthly_rasters(tmp_path)


def test_year_filter(tmp_path):
    for m in ("2023-05", "2024-05"):
        write_tif(tmp_path / f"{m}.tif", np.ones((3, 3), "float32"), 126.0, 40.0)
    assert [r.month for r in find_monthly_rasters(tmp_path, years=(2024,))] == ["2024-05"]
    with pytest.raises(SourceError, match="no monthly rasters for 2030"):
        find_monthly_rasters(tmp_path, years=(2030,))
