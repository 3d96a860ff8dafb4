"""``make bench``: our extraction against exactextract, rasterstats, rioxarray and the decode floor.

    python -m bench.run [--quick] [--timeout S] [--out DIR] [--data DIR]

Not a test: it times identical synthetic work side by side, each tool in its own
process (whole-process wall time and peak memory from the parent, work time and bytes
read from the child), checks the answers agree, and writes ``bench.csv`` and
``bench.md`` to ``outputs/bench/``. Data are generated once under ``data/bench/``.

What each tool computes: the mean of valid (non-nodata) pixels of each site in each
month. Ours and exactextract weight pixels by the exact covered fraction, so they must
agree to rounding; rasterstats and rioxarray can only include whole pixels (centre in
polygon), so they must agree with each other, and differ from the exact mean by the
pixel rule alone. The floor decodes every source tile the sites touch, on all cores,
and computes nothing: no tool reading the monthly files can be faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


TOOLS = (
    "floor",
    "ours",
    "floor-cube",
    "ours-warm",
    "ours-nocube",
    "ours-1thread",
    "ours-chunked",
    "exactextract",
    "rasterstats",
    "rioxarray",
)
SITE_TOOLS = tuple(t for t in TOOLS if t != "ours-chunked")
# counties: the cube is never built (streaming path), so no warm or cube-floor runs; rasterstats and
# rioxarray take minutes per case at this size and were compared on the site cases
COUNTY_TOOLS = ("floor", "ours", "ours-1thread", "ours-chunked", "exactextract")
PANEL_TOOLS = ("floor", "ours", "exactextract")


@dataclass(frozen=True)
class Scale:
    name: str
    layout: str  # "nk" (Korea window) or "tile" (full 28800 x 18000 tile)
    n_sites: int
    n_months: int
    sites: str = (
        "sites.geojson"  # zones: scattered sites, or county units (bench/data.py UNIT_FILES)
    )
    tools: tuple[str, ...] = SITE_TOOLS
    kind: str = "sites"  # "sites", "county" or "panel"


def _county(n: int, months: int) -> Scale:
    return Scale(
        f"county {n}x{months}", "nk", n, months, f"county{n}.geojson", COUNTY_TOOLS, "county"
    )


def _panel(months: int) -> Scale:
    return Scale(f"panel 181x{months}", "nk", 181, months, "panel181.geojson", PANEL_TOOLS, "panel")


SCALES = (
    Scale("nk 20x36", "nk", 20, 36),
    Scale("nk 200x48", "nk", 200, 48),
    Scale("tile 200x48", "tile", 200, 48),
    Scale("nk 2000x120", "nk", 2000, 120),
    _county(120, 72),
    _county(181, 72),
    _county(120, 168),
    _county(181, 168),
    _panel(12),
    _panel(60),
    _panel(168),
)
QUICK = (
    Scale("nk 20x12", "nk", 20, 12),
    Scale("tile 20x12", "tile", 20, 12),
    _county(120, 12),
    _panel(6),
    _panel(24),
)
EXACT_TOL = 1e-6  # relative: exact-coverage tools differ only by summation order
SAME_TOL = 1e-9  # relative: our two paths (streamed, chunked) on the same work
CENTRE_TOL = 1e-5  # rasterstats vs rioxarray (same whole-pixel rule, float32 vs float64 sums)


def run_tool(tool: str, scale: Scale, data: Path, work: Path, timeout: float) -> dict:
    """One tool in a fresh process; whole-process wall time and peak RSS measured here."""
    out = work / f"{tool}.npy"
    cube = work / "cube"
    if tool in ("ours", "ours-1thread", "ours-chunked"):
        shutil.rmtree(cube, ignore_errors=True)  # cold: the cube is built in this run
    argv = [
        sys.executable,
        "-m",
        "bench.worker",
        tool,
        str(data / scale.layout),
        str(data / scale.sites),
        str(scale.n_sites),
        str(scale.n_months),
        str(out),
        str(cube),
    ]
    log_out, log_err = work / f"{tool}.out", work / f"{tool}.err"
    t0 = time.perf_counter()
    with open(log_out, "w") as so, open(log_err, "w") as se:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=so, stderr=se)
    deadline = t0 + timeout
    status = None
    while status is None:
        pid, status_code, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status = status_code
            break
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return {"tool": tool, "status": f"stopped after {timeout:.0f} s"}
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    stdout, stderr = log_out.read_text(), log_err.read_text()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {
            "tool": tool,
            "status": "failed: " + (stderr.strip().splitlines() or ["?"])[-1][:120],
        }
    info = json.loads(stdout.strip().splitlines()[-1])
    return {
        "tool": tool,
        "status": "ok",
        "process_s": wall,
        "work_s": info["work_s"],
        "read_mb": info["read_bytes"] / 1e6,
        "peak_mb": usage.ru_maxrss / 1024,
        "answer": out,
    }


def agreement(results: dict[str, dict]) -> dict[str, str]:
    """Check answers: exact tools against exactextract, centre-rule tools against each other."""

    def load(tool: str) -> np.ndarray | None:
        r = results.get(tool)
        return np.load(r["answer"]) if r and r.get("status") == "ok" else None

    notes = {}
    ref = load("exactextract")
    for tool in ("ours", "ours-warm", "ours-nocube", "ours-1thread", "ours-chunked"):
        a = load(tool)
        if a is None or ref is None:
            continue
        notes[tool] = _compare(a, ref, EXACT_TOL, "exactextract")
    chunked, streamed = load("ours-chunked"), load("ours")
    if chunked is not None and streamed is not None:  # the two paths: equal to 1e-9
        notes["ours-chunked"] = _compare(chunked, streamed, SAME_TOL, "ours")
    rs, rx = load("rasterstats"), load("rioxarray")
    if rs is not None and rx is not None:
        notes["rioxarray"] = _compare(rx, rs, CENTRE_TOL, "rasterstats")
    for tool, a in (("rasterstats", rs), ("rioxarray", rx)):
        if a is not None and ref is not None and tool not in notes:
            both = np.isfinite(a) & np.isfinite(ref)
            rel = np.abs(a[both] - ref[both]) / np.maximum(np.abs(ref[both]), 1e-9)
            notes[tool] = f"centre rule: median {np.median(rel):.1%} from exact mean"
    if "rioxarray" in notes and rs is not None and ref is not None:
        both = np.isfinite(rs) & np.isfinite(ref)
        rel = np.abs(rs[both] - ref[both]) / np.maximum(np.abs(ref[both]), 1e-9)
        notes["rasterstats"] = f"centre rule: median {np.median(rel):.1%} from exact mean"
    return notes


def _compare(a: np.ndarray, ref: np.ndarray, tol: float, name: str) -> str:
    if a.shape != ref.shape:
        return f"MISMATCH: shape {a.shape} vs {name} {ref.shape}"
    if not np.array_equal(np.isnan(a), np.isnan(ref)):
        return f"MISMATCH: missing values differ from {name}"
    both = np.isfinite(a)
    rel = float(
        np.max(np.abs(a[both] - ref[both]) / np.maximum(np.abs(ref[both]), 1e-9), initial=0.0)
    )
    return f"{'agrees' if rel <= tol else 'MISMATCH'} with {name} (max rel diff {rel:.1e})"


def run_repeated(
    tool: str, scale: Scale, data: Path, work: Path, timeout: float, repeat: int
) -> dict:
    """Median times of ``repeat`` runs (one when a run takes over a minute), largest peak memory."""
    runs = [run_tool(tool, scale, data, work, timeout)]
    while len(runs) < repeat and runs[0]["status"] == "ok" and runs[0]["process_s"] < 60:
        runs.append(run_tool(tool, scale, data, work, timeout))
    if runs[0]["status"] != "ok" or any(r["status"] != "ok" for r in runs):
        return next(r for r in runs if r["status"] != "ok")
    out = dict(runs[-1])
    for key in ("process_s", "work_s"):
        out[key] = float(np.median([r[key] for r in runs]))
    out["peak_mb"] = max(r["peak_mb"] for r in runs)
    out["runs"] = len(runs)
    return out


def memory_series(
    data: Path, timeout: float, months: tuple[int, ...] = (12, 48, 120), n_sites: int = 200
) -> list[dict]:
    """Peak memory of our extraction as the months grow, sites fixed: it should stay flat."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="nl-bench-", dir=data) as tmp:
        for m in months:
            scale = Scale(f"nk {n_sites}x{m}", "nk", n_sites, m)
            for tool in ("ours", "ours-warm", "ours-nocube"):
                print(f"  memory {scale.name}: {tool} ...", file=sys.stderr, flush=True)
                r = run_tool(tool, scale, data, Path(tmp), timeout)
                rows.append(
                    {
                        "sites": n_sites,
                        "months": m,
                        "tool": tool,
                        "status": r["status"],
                        "work_s": r.get("work_s"),
                        "peak_mb": r.get("peak_mb"),
                    }
                )
    return rows


def bench_scale(
    scale: Scale, data: Path, timeout: float, skip: set[str], progress: bool, repeat: int = 1
) -> list[dict]:
    _warm_page_cache(data / scale.layout, scale.n_months)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="nl-bench-", dir=data) as tmp:
        for tool in scale.tools:
            if tool in skip:
                results[tool] = {"tool": tool, "status": "skipped: stopped at a smaller scale"}
                continue
            if progress:
                print(f"  {scale.name}: {tool} ...", file=sys.stderr, flush=True)
            results[tool] = run_repeated(tool, scale, data, Path(tmp), timeout, repeat)
            if results[tool]["status"].startswith("stopped"):
                skip.add(tool)
        notes = agreement(results)
    rows = []
    ee, fl, fc = (
        results.get("exactextract", {}),
        results.get("floor", {}),
        results.get("floor-cube", {}),
    )
    for tool, r in results.items():
        row = {
            "scale": scale.name,
            "kind": scale.kind,
            "sites": scale.n_sites,
            "months": scale.n_months,
            "tool": tool,
            "status": r["status"],
            "process_s": r.get("process_s"),
            "work_s": r.get("work_s"),
            "read_mb": r.get("read_mb"),
            "peak_mb": r.get("peak_mb"),
            "runs": r.get("runs", 1),
        }
        row["process_vs_exactextract"] = _ratio(r.get("process_s"), ee.get("process_s"))
        row["work_vs_floor"] = _ratio(r.get("work_s"), fl.get("work_s"))
        row["work_vs_cube_floor"] = _ratio(r.get("work_s"), fc.get("work_s"))
        row["check"] = (
            "reference" if tool == "exactextract" and r["status"] == "ok" else notes.get(tool, "")
        )
        rows.append(row)
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _warm_page_cache(folder: Path, n_months: int) -> None:
    """Read the files once, so no tool pays for being first to touch the disk."""
    for p in sorted(folder.glob("bench_*.tif"))[:n_months]:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def markdown(df: pd.DataFrame, cores: int) -> str:
    show = df.copy()
    for col, fmt in (
        ("process_s", "{:.2f}"),
        ("work_s", "{:.2f}"),
        ("read_mb", "{:.0f}"),
        ("peak_mb", "{:.0f}"),
        ("process_vs_exactextract", "{:.2f}"),
        ("work_vs_floor", "{:.2f}"),
        ("work_vs_cube_floor", "{:.2f}"),
    ):
        show[col] = [fmt.format(v) if pd.notna(v) else "" for v in show[col]]
    show["status"] = [s if s != "ok" else "" for s in show["status"]]
    cols = [
        "scale",
        "tool",
        "process_s",
        "work_s",
        "read_mb",
        "peak_mb",
        "process_vs_exactextract",
        "work_vs_floor",
        "work_vs_cube_floor",
        "status",
        "check",
    ]
    head = [
        "scale",
        "tool",
        "process s",
        "work s",
        "read MB",
        "peak MB",
        "process / exactextract",
        "work / floor",
        "work / cube floor",
        "status",
        "answers",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        "| " + " | ".join(str(v) for v in r) + " |" for r in show[cols].itertuples(index=False)
    ]
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"Machine: {cores} cores, {sys.platform}, load average at the end {load}; synthetic data "
        "(bench/data.py), warm page cache.\n"
        "process s: whole process (start, imports, work, exit); work s: the extraction alone; read MB: "
        "bytes read while working; peak MB: the process's peak resident memory. floor: decode the source "
        "tiles the sites touch; cube floor: decode the cube chunks they touch (what ours-warm reads). "
        "ours: cold, builds the cube; ours-warm: cube already built; ours-nocube: reads the files "
        "directly; ours-1thread: cold on one thread; ours-chunked: cold, the streaming path for counties "
        "disabled (the chunked cube path on the same work). county: Voronoi units tiling a 960 x 800 px "
        "window; panel: 181 units tiling the whole Korea window. Times are medians of the runs; a tool stopped at "
        "one scale is skipped at the larger ones.\n\n" + "\n".join(lines) + "\n"
    )


def panel_markdown(df: pd.DataFrame) -> str:
    """National panel: time and peak memory by months, and their growth from the fewest months."""
    panel = df[(df["kind"] == "panel") & (df["status"] == "ok")]
    if panel.empty:
        return ""
    lines = [
        "National panel (181 Voronoi units tiling the Korea window, 1680 x 1320 px), as months grow:",
        "",
        "| months | tool | process s | work s | peak MB | read MB | time x | memory x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool, rows in panel.sort_values("months").groupby("tool", sort=False):
        first = rows.iloc[0]
        for r in rows.itertuples():
            lines.append(
                f"| {r.months} | {tool} | {r.process_s:.2f} | {r.work_s:.2f} | {r.peak_mb:.0f} | "
                f"{r.read_mb:.0f} | {r.process_s / first.process_s:.2f} | {r.peak_mb / first.peak_mb:.2f} |"
            )
    return "\n".join(lines) + "\n"


def memory_markdown(mem: pd.DataFrame) -> str:
    """Peak memory (MB) by months, one column per variant of ours."""
    wide = mem.pivot(index="months", columns="tool", values="peak_mb")
    lines = [
        "Peak memory (MB, whole process) of our extraction, 200 sites, as months grow:",
        "",
        "| months | " + " | ".join(wide.columns) + " |",
        "|---|" + "---|" * len(wide.columns),
    ]
    lines += [
        f"| {m} | " + " | ".join(f"{v:.0f}" for v in row) + " |" for m, row in wide.iterrows()
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two small scales only: a smoke run")
    p.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds before a tool is stopped (default 180)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "outputs" / "bench",
        help="where bench.csv and bench.md go",
    )
    p.add_argument(
        "--data", type=Path, default=ROOT / "data" / "bench", help="cache of generated bench data"
    )
    p.add_argument("--tools", nargs="+", choices=TOOLS, help="only these tools")
    p.add_argument(
        "--scales",
        nargs="+",
        metavar="NAME",
        help="only these scales, e.g. 'nk 200x48' 'county 120x72' (skips the memory series)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per tool, median reported (default 3; 1 with --quick)",
    )
    args = p.parse_args(argv)
    from bench.data import ensure_data

    data = ensure_data(args.data)
    scales = QUICK if args.quick else SCALES
    if args.scales:
        scales = tuple(s for s in SCALES + QUICK if s.name in args.scales)
    skip: set[str] = set(TOOLS) - set(args.tools) if args.tools else set()
    rows = []
    repeat = 1 if args.quick else args.repeat
    for scale in scales:
        rows += [
            r
            for r in bench_scale(scale, data, args.timeout, skip, True, repeat)
            if not (args.tools and r["tool"] not in args.tools)
        ]
    df = pd.DataFrame(rows)
    mem = (
        pd.DataFrame()
        if args.scales
        else pd.DataFrame(
            memory_series(data, args.timeout, (12, 36) if args.quick else (12, 48, 120))
        )
    )
    cores = os.cpu_count() or 1
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bench-quick" if args.quick else "bench"
    _write_atomic(args.out / f"{name}.csv", df.to_csv(index=False))
    _write_atomic(args.out / f"{name}-memory.csv", mem.to_csv(index=False))
    md = (
        markdown(df, cores)
        + "\n"
        + panel_markdown(df)
        + ("\n" + memory_markdown(mem) if len(mem) else "")
    )
    _write_atomic(args.out / f"{name}.md", md)
    print(md)
    print(f"written: {args.out / (name + '.csv')}, {args.out / (name + '.md')}")
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
