"""Cross-check with an established package (issue 23): pyfixest's fixed-effects regressions (unit and
province x year effects, the within-province comparison) reproduce the 2x2 estimate on clean controls
and a batch's event-study coefficients, on a planted numpy panel; unit and year effects alone give the
unadjusted difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.did_calibration import cohort_panel
from pipeline.compare.cohorts import clean_did, group_time_effects

pf = pytest.importorskip(
    "pyfixest", reason="pyfixest (optional test dependency, pip install pyfixest) not installed"
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:The inplace keyword"
)  # pyfixest 0.60 under pandas 3

EPS = 10.0


@pytest.fixture(scope="module")
def planted():
    return cohort_panel(3, effect=0.3, contamination=0.3)


def test_two_by_two_equals_twfe_on_the_same_units(planted):
    panel, schedule = planted
    r, _ = clean_did(panel, schedule, 2024, 2025, eps=EPS, n_draws=99)
    p = panel[~panel["unit_id"].isin(r.excluded) & panel["year"].isin([2024, 2025])].copy()
    p["y"] = np.log(p["sum_lights"].clip(lower=0) + EPS)
    p["treated_post"] = (p["treated"] & (p["year"] == 2025)).astype(int)
    fit = pf.feols("y ~ treated_post | unit_id + province^year", data=p)
    assert fit.coef()["treated_post"] == pytest.approx(r.estimate_log, abs=1e-10)
    assert r.estimate_log == pytest.approx(0.3, abs=0.06)
    plain = pf.feols("y ~ treated_post | unit_id + year", data=p)
    assert plain.coef()["treated_post"] == pytest.approx(r.estimate_log_unadjusted, abs=1e-10)


def test_event_study_coefficients_equal_twfe_with_year_interactions(planted):
    """Batch 2025 has one control set in every year (never-treated and batch 2026, base 2024), so
    fixed effects with treated x year dummies (reference 2024) estimate exactly its group-time cells."""
    panel, schedule = planted
    cells = pd.DataFrame(list(group_time_effects(panel, schedule, eps=EPS, n_draws=99).cells))
    cells = cells[cells["batch"] == "2025"].set_index("year")["estimate_log"]
    members = set(schedule.loc[schedule["batch"] == "2025", "unit_id"])
    later = set(schedule.loc[schedule["batch"] == "2026", "unit_id"])
    never = set(panel["unit_id"]) - set(schedule["unit_id"])
    p = panel[panel["unit_id"].isin(members | later | never)].copy()
    p["y"] = np.log(p["sum_lights"].clip(lower=0) + EPS)
    p["batch2025"] = p["unit_id"].isin(members).astype(int)
    fit = pf.feols("y ~ i(year, batch2025, ref=2024) | unit_id + province^year", data=p)
    coef = {int(k.split("::")[1].split(":")[0]): v for k, v in fit.coef().items()}
    assert sorted(coef) == sorted(cells.index) == [2020, 2021, 2022, 2023, 2025]
    for year, value in coef.items():
        assert value == pytest.approx(cells[year], abs=1e-10), year
