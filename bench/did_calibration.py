"""Calibration of the county difference-in-differences on planted panels (issue 23).

Usage: ``python -m bench.did_calibration [--reps 500] [--draws 999]``. Prints one table row per
scenario and design: the mean bias of the estimate, the rejection rate at 5% (the size when
nothing is planted on the batch under test, the power when +0.3 is), the 95% interval's
coverage of the truth, the mean minimum detectable effect (80% power) and the rejection rate of
the wild cluster bootstrap by province (the unequal-variance check beside the main result).

Panels are pure numpy (no rasters): 180 units in 12 provinces, 2020-2025, log light = unit level
+ a national and a province shock per year + unit noise (sd 0.10). Batch 2024 (20 units, broke
ground 2024-03, inaugurated 2025-01) is the batch under test, compared 2024 -> 2025; batch 2025
(20 units, broke ground 2025-02) and batch 2026 (20 units, 2026-02) are the next cohorts.

Scenarios: ``null`` (nothing planted), ``contaminated`` (batch 2025 brightens +0.3 in 2025 while
building), ``planted`` (contaminated, and +0.3 on batch 2024 in 2025), ``noisy`` (nothing
planted; batch 2024's units three times as noisy, sd 0.30). Designs: ``before`` (every unit outside
batch 2024 is a control, the design before issue 23) and ``after``
(:func:`pipeline.compare.cohorts.clean_did`: units building by the target year left out).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.compare.cohorts import clean_did, unit_schedule, wild_cluster_bootstrap
from pipeline.compare.did import estimate_did, unit_log_change_set

YEARS = tuple(range(2020, 2026))
SCENARIOS = {  # effect on batch 2024, contamination by batch 2025, noise sd of batch 2024
    "null": (0.0, 0.0, 0.10),
    "contaminated": (0.0, 0.3, 0.10),
    "planted": (0.3, 0.3, 0.10),
    "noisy": (0.0, 0.0, 0.30),
}
BATCHES = (
    ("2024", "2024-03", "2025-01"),
    ("2025", "2025-02", "2025-12"),
    ("2026", "2026-02", None),
)


def cohort_panel(
    seed: int,
    *,
    effect: float = 0.0,
    contamination: float = 0.3,
    treated_noise: float = 0.10,
    noise: float = 0.10,
    n_units: int = 180,
    per_batch: int = 20,
    n_provinces: int = 12,
    years: tuple[int, ...] = YEARS,
    target: int = 2025,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(panel, schedule): the unit-year panel (``treated`` = batch 2024) and one schedule row per
    batch unit, as :func:`pipeline.compare.cohorts.unit_schedule` makes from site files."""
    rng = np.random.default_rng(seed)
    prov = np.arange(n_units) % n_provinces
    order = rng.permutation(n_units)
    batch = np.full(n_units, "", dtype=object)
    for k, (label, _, _) in enumerate(BATCHES):
        batch[order[k * per_batch : (k + 1) * per_batch]] = label
    level = rng.normal(7.0, 1.5, n_units)
    sd = np.where(batch == "2024", treated_noise, noise)
    ids = np.array([f"u{i:03d}" for i in range(n_units)])
    frames = []
    for y in years:
        log_s = (
            level
            + rng.normal(0, 0.1)
            + rng.normal(0, 0.05, n_provinces)[prov]
            + rng.normal(0, 1, n_units) * sd
            + effect * (batch == "2024") * (y == target)
            + contamination * (batch == "2025") * (y == 2025)
        )
        frames.append(
            pd.DataFrame(
                {
                    "unit_id": ids,
                    "province": [f"P{p:02d}" for p in prov],
                    "year": y,
                    "sum_lights": np.exp(log_s),
                    "treated": batch == "2024",
                }
            )
        )
    dates = {b: (g, i) for b, g, i in BATCHES}
    sites = pd.DataFrame(
        {
            "unit_id": ids[batch != ""],
            "batch": batch[batch != ""],
            "groundbreaking": [dates[b][0] for b in batch[batch != ""]],
            "inauguration": [dates[b][1] for b in batch[batch != ""]],
        }
    )
    return pd.concat(frames, ignore_index=True), unit_schedule(sites)


@dataclass(frozen=True)
class Row:
    scenario: str
    design: str
    reps: int
    truth: float
    mean_bias: float
    reject_rate: float  # size when truth is 0, power otherwise
    coverage: float
    mean_mde: float
    mean_controls: float
    wcb_reject: (
        float  # rejection rate of the wild cluster bootstrap by province (unequal variances)
    )


def calibrate(
    scenario: str, design: str, reps: int, draws: int, seed0: int = 0, wcb_boot: int = 499
) -> Row:
    """Replicate one scenario under one design (seeds ``seed0..seed0 + reps - 1``)."""
    effect, contamination, treated_noise = SCENARIOS[scenario]
    est, rej, cov, mde, nc, wcb = [], [], [], [], [], []
    for s in range(seed0, seed0 + reps):
        panel, schedule = cohort_panel(
            s, effect=effect, contamination=contamination, treated_noise=treated_noise
        )
        if design == "after":
            r, _ = clean_did(panel, schedule, 2024, 2025, n_draws=draws, seed=s)
        else:
            r = estimate_did(panel, 2024, 2025, n_draws=draws, seed=s)
        est.append(r.estimate_log)
        rej.append(r.p_value < 0.05)
        cov.append(r.ci_low <= effect <= r.ci_high)
        mde.append(np.nan if r.mde_log is None else r.mde_log)
        nc.append(r.n_control)
        u = unit_log_change_set(panel, 2024, 2025, r.eps, r.excluded)
        wcb.append(
            wild_cluster_bootstrap(u.d, u.treated, u.strata, n_boot=wcb_boot, seed=s).p_value < 0.05
        )
    return Row(
        scenario,
        design,
        reps,
        effect,
        float(np.mean(est)) - effect,
        float(np.mean(rej)),
        float(np.mean(cov)),
        float(np.nanmean(mde)),
        float(np.mean(nc)),
        float(np.mean(wcb)),
    )


def table(reps: int, draws: int) -> pd.DataFrame:
    rows = [calibrate(s, d, reps, draws) for s in SCENARIOS for d in ("before", "after")]
    return pd.DataFrame([r.__dict__ for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--draws", type=int, default=999)
    args = ap.parse_args(argv)
    t = table(args.reps, args.draws)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(t.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
