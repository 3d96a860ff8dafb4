"""``make bench-rerun``: the runs a user repeats, as multiples of Python's own import time.

    python -m bench.rerun [--repeat 3] [--out DIR] [--data-dir DIR] [--jobs N] [--charts]

Not a test: on the synthetic demo it times, each as a whole process and the median of
``--repeat`` runs, the yardstick ``python -c "import geopandas, matplotlib.pyplot, dask.array"``
and then

- ``run``: an identical re-run of ``nightlights run`` (nothing changed since the last one);
- ``run --threshold``: a re-run with another ``--threshold`` (0.3 and 0.25 in turn);
- ``figures``: ``nightlights figures`` (all formats) on a warm output folder (its charts drawn
  by the figures before it), and cold (a fresh copy of the run's folder: every chart drawn);

each also as a ratio to the yardstick, measured in the same script so that the machine's load
weighs on both. ``--charts`` adds each chart's own drawing time (one process, ``--jobs 1``).
The load average is recorded before and after: a busy machine makes every number larger.
Writes ``rerun.json`` and ``rerun.md`` to ``outputs/bench/``; the first run (demo months
generated, caches filled) is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YARDSTICK = "import geopandas, matplotlib.pyplot, dask.array"
DRAWN = re.compile(r"figures/(\w+)\.\*: drawn in ([0-9.]+) s")


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of one whole process; its stderr (for --debug lines)."""
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, proc.stderr


def median_of(n: int, args: list[str]) -> list[float]:
    """``n`` timings of the same command (the median is taken by the caller)."""
    return [timed(args)[0] for _ in range(n)]


def fresh_copy(src: Path, dest: Path) -> Path:
    """A copy of an output folder, beside it (its rasters are found the same way): new files,
    so none of its charts is kept."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--jobs", type=int, help="passed to run and figures (default: theirs)")
    ap.add_argument("--charts", action="store_true", help="also each chart's drawing time")
    a = ap.parse_args(argv)
    nl = [sys.executable, "-m", "pipeline"]
    work = a.out / "rerun"
    out, cold = work / "out", work / "cold"
    jobs = ["--jobs", str(a.jobs)] if a.jobs else []
    # a cache of its own, emptied first: the untimed first run fills it (cube, kept results)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    data = ["--data-dir", str(a.data_dir), "--cache-dir", str(cache)]

    def run(*extra: str) -> list[str]:
        return [*nl, "run", "--source", "demo", "--out", str(out), *data, "-q", *jobs, *extra]

    def figures(folder: Path, *extra: str) -> list[str]:
        return [*nl, "figures", "--out", str(folder), *data[:2], "-q", *jobs, *extra]

    def say(label: str, times: list[float]) -> None:
        print(f"{label}: {statistics.median(times):.2f} s", flush=True)

    load_before = os.getloadavg()
    rows: dict[str, list[float]] = {}
    rows["import"] = median_of(a.repeat, [sys.executable, "-c", YARDSTICK])
    say(f"yardstick ({YARDSTICK})", rows["import"])
    timed(run())  # first run: demo months, caches, every chart (not timed)
    rows["run, identical re-run"] = median_of(a.repeat, run())
    say("run, identical re-run", rows["run, identical re-run"])
    # a threshold no earlier run used (the memo would read a used one back): 0.3, 0.29, ...
    rows["run, another --threshold"] = [
        timed(run("--threshold", f"{0.3 - 0.01 * i:.2f}"))[0] for i in range(a.repeat)
    ]
    say("run, another --threshold", rows["run, another --threshold"])
    timed(run())  # leave the folder as a default run made it
    rows["figures (all formats), cold"] = [
        timed(figures(fresh_copy(out, cold)))[0] for _ in range(a.repeat)
    ]
    say("figures, cold", rows["figures (all formats), cold"])
    timed(figures(out))  # the folder's charts now as figures draws them
    rows["figures (all formats), warm"] = median_of(a.repeat, figures(out))
    say("figures, warm", rows["figures (all formats), warm"])
    charts: dict[str, float] = {}
    if a.charts:
        cmd = [c for c in figures(fresh_copy(out, cold), "--debug") if c != "-q"]
        if not a.jobs:
            cmd += ["--jobs", "1"]
        charts = {m[1]: float(m[2]) for m in DRAWN.finditer(timed(cmd)[1])}
    shutil.rmtree(cold, ignore_errors=True)
    load_after = os.getloadavg()

    base = statistics.median(rows["import"])
    result = {
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "repeat": a.repeat,
        "seconds": {k: v for k, v in rows.items()},
        "median": {k: statistics.median(v) for k, v in rows.items()},
        "ratio": {k: statistics.median(v) / base for k, v in rows.items()},
        "chart_seconds": charts,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "rerun.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{result['cores']} cores; median of {a.repeat}.",
        "",
        "| what | median (s) | × import | runs (s) |",
        "|---|---:|---:|---|",
    ]
    for k, v in rows.items():
        runs = ", ".join(f"{x:.2f}" for x in v)
        lines.append(
            f"| {k} | {statistics.median(v):.2f} | {statistics.median(v) / base:.1f} | {runs} |"
        )
    if charts:
        lines += ["", "| chart (one process) | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in sorted(charts.items(), key=lambda kv: -kv[1])]
    (a.out / "rerun.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
