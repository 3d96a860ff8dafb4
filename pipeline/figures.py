"""Figures: charts of the verdict (the publication set is built on this module).

Inputs
    The per-site change table and the verdict mapping.
Outputs
    Matplotlib figures saved as PNG, SVG and PDF by the caller's writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# Paul Tol's colour-blind-safe "bright" scheme; one colour per class in every chart.
CLASS_COLORS = {"brightened": "#EE6677", "unchanged": "#BBBBBB", "dimmed": "#4477AA",
                "insufficient_data": "#CCBB44"}
CLASS_MARKERS = {"brightened": "^", "unchanged": "o", "dimmed": "v", "insufficient_data": "x"}


def verdict_figure(changes: pd.DataFrame, verdict: dict[str, Any]) -> plt.Figure:
    """Each site's change with its interval, sorted, coloured by class, threshold band shaded."""
    df = changes.sort_values("log_ratio", na_position="first").reset_index(drop=True)
    thr = verdict["parameters"]["threshold"]
    fig, ax = plt.subplots(figsize=(7.2, 0.22 * len(df) + 1.6), dpi=100)
    ax.axvspan(100 * np.expm1(-thr), 100 * np.expm1(thr), color="#EEEEEE", zorder=0,
               label=f"|ln ratio| < {thr:g}")
    ax.axvline(0, color="black", lw=0.6)
    for i, r in df.iterrows():
        color = CLASS_COLORS[r["class"]]
        if np.isfinite(r["change_pct"]):
            ax.plot([r["ci_low"], r["ci_high"]], [i, i], color=color, lw=1.4)
            ax.plot(r["change_pct"], i, CLASS_MARKERS[r["class"]], color=color, mec="black", mew=0.4)
        else:
            ax.text(0, i, "insufficient data", va="center", ha="center", fontsize=7, color="#666666")
    ax.set_yticks(range(len(df)), df["name"].fillna(df["site_id"]), fontsize=7)
    ax.set_xlabel(f"Change in night-time radiance, {verdict['baseline_year']} to {verdict['target_year']} (%)")
    c = verdict["claim_sites"]["counts"]
    ax.set_title(f"{c['brightened']} brightened, {c['unchanged'] + c['dimmed']} similar or dimmer "
                 f"(claim: 5 and 15)", fontsize=9, loc="left")
    if verdict["data_kind"] == "synthetic":
        fig.text(0.5, 0.5, "SYNTHETIC DATA", ha="center", va="center", rotation=30, fontsize=40,
                 color="#CC3311", alpha=0.25, weight="bold")
        fig.text(0.01, 0.005, "Synthetic demo data - not evidence about North Korea", fontsize=7, color="#CC3311")
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path, dpi: int = 300) -> None:
    fig.savefig(path, dpi=dpi, metadata={"Software": "nightlights"} if path.suffix == ".png" else None)
    plt.close(fig)
