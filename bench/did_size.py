"""Size, coverage, bias and power of the county comparison's test on planted panels (issue 23).

Usage: ``python -m bench.did_size [--reps 1000] [--draws 999] [--before REV]``. One row per
scenario: the mean bias of ``estimate_log``, the rejection rate of "no effect" at 5%
(``p <= 0.05``: the size when nothing is planted on the batch under test, the power when +0.3 is),
the 95% interval's coverage of the truth, the share meeting issue 23's done-when (interval covers
the truth, and p >= 0.05 when the truth is 0) and the mean minimum detectable effects (80% power)
both ways. With ``--before REV`` the same rows are measured with ``pipeline/`` as it was at the
git revision REV (copied to a temporary folder, run in a subprocess beside this one) and
printed above them.

Panels and seeds are those of :mod:`bench.did_calibration` (180 units in 12 provinces, batch 2024
under test from 2024 to 2025 with :func:`pipeline.compare.cohorts.clean_did`; panel seed ``s``,
randomization seed ``1000 + s``, ``s = 0 .. reps - 1``). Scenarios: ``null``; ``contaminated``
(batch 2025 +0.3 in 2025 while building; it is left out of the controls, so with the clean design
this row equals ``null``); ``planted`` (contaminated, and +0.3 on batch 2024); ``noisy`` (nothing
planted, batch 2024's units three times as noisy as the others).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

from bench.did_calibration import SCENARIOS, cohort_panel

try:
    from pipeline.compare.cohorts import clean_did
except ImportError:  # a revision before the package's folders (``--before 6f35e6a``)
    from pipeline.cohorts import clean_did  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def measure(scenario: str, reps: int, draws: int) -> dict[str, object]:
    """One scenario over seeds ``0 .. reps - 1``."""
    effect, contamination, treated_noise = SCENARIOS[scenario]
    est, rej, cov, done, up, down = [], [], [], [], [], []
    for s in range(reps):
        panel, schedule = cohort_panel(
            s, effect=effect, contamination=contamination, treated_noise=treated_noise
        )
        r, _ = clean_did(panel, schedule, 2024, 2025, n_draws=draws, seed=1000 + s)
        covers = r.ci_low <= effect <= r.ci_high
        est.append(r.estimate_log)
        rej.append(r.p_value <= 0.05)
        cov.append(covers)
        done.append(covers and (effect != 0 or r.p_value >= 0.05))
        up.append(np.nan if r.mde_log is None else r.mde_log)
        down.append(np.nan if r.mde_log_negative is None else r.mde_log_negative)
    return {
        "scenario": scenario,
        "truth": effect,
        "reps": reps,
        "mean_bias": float(np.mean(est)) - effect,
        "sd_estimate": float(np.std(est)),
        "reject_5pct": float(np.mean(rej)),
        "coverage": float(np.mean(cov)),
        "done_when": float(np.mean(done)),
        "mde_up": float(np.nanmean(up)),
        "mde_down": float(np.nanmean(down)),
        "mde_asymmetry": float(np.nanmean(np.abs(np.add(up, down)))),
    }


def rows(reps: int, draws: int, scenarios: list[str]) -> list[dict[str, object]]:
    return [measure(s, reps, draws) for s in scenarios]


def start_at(rev: str, reps: int, draws: int, scenarios: list[str]) -> Callable[[], list]:
    """Start :func:`rows` with ``pipeline/`` (and ``bench/``) as at git revision ``rev`` in a
    subprocess (it runs beside this one); the returned function waits for its rows."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "pipeline", "bench"],
        check=True,
        capture_output=True,
    ).stdout
    tmp = tempfile.TemporaryDirectory()
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp.name, filter="data")
    (Path(tmp.name) / "bench" / "did_size.py").write_text(Path(__file__).read_text())
    cmd = [sys.executable, "-m", "bench.did_size", "--json", "--reps", str(reps)]
    cmd += ["--draws", str(draws), "--scenarios", *scenarios]
    env = {**os.environ, "PYTHONPATH": tmp.name}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=tmp.name, env=env)

    def wait() -> list:
        out, _ = proc.communicate()
        tmp.cleanup()
        if proc.returncode:
            raise RuntimeError(f"the run at {rev} failed ({proc.returncode})")
        return list(json.loads(out))

    return wait


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=999)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--before", metavar="REV", help="also measure pipeline/ at this git revision")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.json:
        print(json.dumps(rows(args.reps, args.draws, args.scenarios)))
        return 0
    before = start_at(args.before, args.reps, args.draws, args.scenarios) if args.before else None
    after = [{"code": "this tree", **r} for r in rows(args.reps, args.draws, args.scenarios)]
    table = [{"code": args.before, **r} for r in before()] if before else []
    table += after
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(pd.DataFrame(table).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
