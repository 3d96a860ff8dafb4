"""Publishing speed without changing a byte: one layout per chart, worker processes, unchanged charts kept."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from pipeline.cli import main
from pipeline.outputs import MANIFEST, staged
from pipeline.publish import chart_specs, render, start_chart_workers
from pipeline.publish.render import content_key, draw_charts, feed, stage
from pipeline.publish.style import Style
from tests.pubdata import CHARTS, EPOCH, publish, published

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return published(tmp_path_factory)


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """Each chart file's inode and modification time: the very file, or a new one."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((out / "figures").iterdir())
    }


def _linked_copy(src: Path, dest: Path) -> Path:
    """An output folder as its run left it (hard links: the files' stamps hold, so they are ours)."""
    shutil.copytree(src, dest, copy_function=os.link)
    return dest


def _redrawn(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    assert set(before) == set(after)
    return {name.rsplit(".", 1)[0] for name in before if before[name] != after[name]}


# --------------------------------------------------------------------------- kept when unchanged


def test_an_unchanged_chart_is_kept_and_a_changed_input_redraws_only_its_charts(
    run, tmp_path, monkeypatch
):
    results, src = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)  # as the fixture was published
    out = _linked_copy(src, tmp_path / "out")
    first = _stamps(out)

    publish(results, out)  # nothing changed: every chart's files are the very same files
    assert _redrawn(first, _stamps(out)) == set()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(CHARTS)  # kept charts are in the report

    sens = results.sensitivity.copy()
    sens.loc[sens.index[0], "brightened"] += 1
    before = _stamps(out)
    publish(replace(results, sensitivity=sens), out)  # robustness draws the sensitivity table
    assert _redrawn(before, _stamps(out)) == {"robustness"}

    months = results.site_months.copy()
    months.loc[months.index[0], "mean_radiance"] *= 1.5
    before = _stamps(out)
    publish(replace(results, sensitivity=sens, site_months=months), out)
    assert _redrawn(before, _stamps(out)) == {"small_multiples"}


def test_a_chart_changed_since_is_drawn_again(run, tmp_path, monkeypatch):
    results, src = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    out = _linked_copy(src, tmp_path / "out")
    edited = out / "figures" / "verdict.svg"
    fresh = edited.with_name("verdict.svg.new")
    fresh.write_bytes(edited.read_bytes().replace(b"</svg>", b"<!-- mine --></svg>"))
    os.replace(fresh, edited)  # a new file (the fixture's own stays as it was)
    before = _stamps(out)
    publish(results, out)
    assert _redrawn(before, _stamps(out)) == {"verdict"}
    assert b"<!-- mine -->" not in edited.read_bytes()


def test_a_draw_counter_sees_kept_charts_not_drawn(run, tmp_path, monkeypatch):
    results, src = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    out = _linked_copy(src, tmp_path / "out")
    drawn: list[str] = []
    real = render.draw_one
    monkeypatch.setattr(render, "draw_one", lambda job: drawn.append(job.name) or real(job))
    sens = results.sensitivity.assign(brightened=results.sensitivity["brightened"] + 1)
    publish(replace(results, sensitivity=sens), out, jobs=1)
    assert drawn == ["robustness"]
    drawn.clear()
    publish(replace(results, sensitivity=sens), out, jobs=1)
    assert drawn == []


# --------------------------------------------------------------------------- parallel == serial


def _draw(results, out: Path, style: Style, jobs: int, names: tuple[str, ...]) -> Path:
    specs = [c for c in chart_specs(results, style, {}) if c.name in names]
    with staged(out) as s:
        drawn = draw_charts(specs, style, s, results.verdict["data_kind"], jobs=jobs)
        assert sorted(drawn.pngs) == sorted(names) and not drawn.kept
    return out


def test_worker_processes_draw_the_same_bytes_as_this_process(run, tmp_path, monkeypatch):
    results, _ = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    style, names = Style(dpi=50), ("verdict", "robustness")
    serial = _draw(results, tmp_path / "serial", style, 1, names)
    parallel = _draw(results, tmp_path / "parallel", style, 2, names)
    for n in [f"figures/{n}.{f}" for n in names for f in style.formats]:
        assert (serial / n).read_bytes() == (parallel / n).read_bytes(), n


def test_workers_started_ahead_draw_the_charts_and_unused_ones_are_stopped(
    run, tmp_path, monkeypatch
):
    """``run`` starts the chart workers while a stage computes (render.start_workers): the charts
    are drawn by those very workers, with the same bytes; workers no chart needed are ended."""
    results, _ = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    style, names = Style(dpi=50), ("verdict", "robustness")
    serial = _draw(results, tmp_path / "serial", style, 1, names)
    start_chart_workers(2)
    (pool,) = render._WARM
    ahead = _draw(results, tmp_path / "ahead", style, 2, names)
    assert not render._WARM  # taken by the drawing, and shut down after it
    assert pool._shutdown_thread
    for n in [f"figures/{n}.{f}" for n in names for f in style.formats]:
        assert (serial / n).read_bytes() == (ahead / n).read_bytes(), n
    render.start_workers(2)
    render.start_workers(2)  # started once
    (pool,) = render._WARM
    pids = list(pool._processes)
    assert pids
    render.stop_workers()
    assert not render._WARM
    assert _all_end(pids)  # read from /proc: the pool's own thread may be reaping them meanwhile
    render.start_workers(1)  # one process: nothing to start ahead
    assert not render._WARM


@pytest.mark.parametrize("settled", [1.5, 0.0], ids=["waiting", "still-starting"])
def test_chart_workers_end_when_their_parent_is_killed(tmp_path, settled):
    """A run killed with SIGKILL (the OOM killer, ``kill -9``) while its chart workers wait, or
    while they are still starting, leaves no worker behind holding its caller's pipes open."""
    import subprocess
    import sys

    child = (
        "import os, signal, time\n"
        "from pipeline.publish import render, start_chart_workers\n"
        "start_chart_workers(2)\n"
        "pool = render._WARM[0]\n"
        "while len(pool._processes) < 2: time.sleep(0.05)\n"
        f"time.sleep({settled})\n"
        "print(*pool._processes, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    # capture_output: communicate() waits for every holder of the pipes, workers included
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    assert _all_end(pids)


def _all_end(pids: list[int], within: float = 10.0) -> bool:
    """Whether every process ends within ``within`` seconds (a zombie has ended)."""

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        return "State:\tZ" not in state

    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


@pytest.mark.slow
def test_every_chart_drawn_in_worker_processes_is_byte_identical_to_serial(
    run, tmp_path, monkeypatch
):
    """Many panels: the constrained layout's last bits differ between processes unless snapped."""
    results, _ = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    style = Style(width_mm=89, dpi=50)  # not the fixture's: nothing is kept
    serial = publish(results, tmp_path / "serial", style, jobs=1)
    parallel = publish(results, tmp_path / "parallel", style, jobs=2)
    names = [f"figures/{n}.{f}" for n in CHARTS for f in style.formats]
    for n in [*names, "report.html", "report.md"]:
        assert (serial / n).read_bytes() == (parallel / n).read_bytes(), n


def test_a_failing_chart_stops_the_run_and_leaves_no_output(run, tmp_path, monkeypatch):
    results, _ = run
    bad = results.site_months.drop(columns=["mean_radiance"])  # small multiples cannot draw this
    out = tmp_path / "out"
    with pytest.raises(KeyError):
        publish(replace(results, site_months=bad), out, Style(dpi=50), jobs=2)
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if ".nightlights-staging-" in p.name]


# --------------------------------------------------------------------------- content keys


def _key(obj) -> str:
    h = hashlib.sha256()
    feed(h, obj)
    return h.hexdigest()


def test_content_keys_tell_apart_what_charts_draw():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", None], "t": pd.to_datetime(["2024-01-01"] * 2)})
    variants = [
        df,
        df.assign(a=[1.0, 2.0000001]),
        df.assign(b=["x", "None"]),  # missing is not the text "None"
        df.assign(b=["x", ""]),
        df.rename(columns={"a": "c"}),
        df.astype({"a": "float32"}),
        df.iloc[::-1],
        df.assign(t=pd.to_datetime(["2024-01-02"] * 2)),
    ]
    assert len({_key(v) for v in variants}) == len(variants)
    assert _key(df) == _key(df.copy())
    geo = [shapely.Point(0, 0), shapely.Point(0, 1e-9)]
    assert _key(pd.Series(geo[:1], dtype=object)) != _key(pd.Series(geo[1:], dtype=object))
    assert _key({"a": 1, "b": 2}) == _key({"b": 2, "a": 1})
    assert _key((1, "1")) != _key(("1", 1)) and _key(1) != _key(1.0) and _key(True) != _key(1)
    assert _key(np.arange(3)) != _key(np.arange(3).reshape(3, 1))
    with pytest.raises(TypeError):
        _key(object())  # never a repr


def test_content_key_covers_the_style_but_not_the_format_list(monkeypatch):
    base = content_key("map", ({"x": 1},), Style())
    assert content_key("map", ({"x": 1},), Style(formats=("png",))) == base
    for other in (Style(dpi=200), Style(lang="ko"), Style(kind="slide"), Style(width_mm=89)):
        assert content_key("map", ({"x": 1},), other) != base
    assert content_key("verdict", ({"x": 1},), Style()) != base
    assert content_key("map", ({"x": 2},), Style()) != base
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert content_key("map", ({"x": 1},), Style()) != base


def test_staging_keeps_only_the_very_file_it_recorded(tmp_path):
    out = tmp_path / "out"
    key = "ab" * 32
    with staged(out) as s:
        s.write_text("figures/a.svg", "a")
        s.made_from("figures/a.svg", key)
        s.write_text("figures/b.svg", "b")
        s.made_from("figures/b.svg", key)
    ino = (out / "figures/a.svg").stat().st_ino
    (out / "figures/b.svg").write_text("edited")  # changed since: not ours any more
    with staged(out) as s:
        assert not s.unchanged("figures/a.svg", "cd" * 32)  # another key
        assert not s.keep("figures/b.svg", key)
        assert s.keep("figures/a.svg", key)
    assert (out / "figures/a.svg").stat().st_ino == ino
    assert json.loads((out / MANIFEST).read_text())["keys"] == {"figures/a.svg": key}
    with staged(out) as s:  # carried over by a run that does not touch it
        s.write_text("other.csv", "x")
    with staged(out) as s:
        assert s.keep("figures/a.svg", key)
        s.write_text("figures/a.svg", "new")  # written after all: a new file, not through the link
    assert (out / "figures/a.svg").read_text() == "new"
    assert "keys" not in json.loads((out / MANIFEST).read_text())


# --------------------------------------------------------------------------- saying what it does


def test_a_long_step_says_what_it_is_doing_and_quiet_says_nothing(caplog):
    caplog.set_level(logging.INFO, logger="pipeline.publish.render")
    with stage("yearly composites for the maps", progress=True, after=0.0):
        pass
    assert "yearly composites for the maps" in caplog.text
    caplog.clear()
    with stage("yearly composites for the maps", progress=False, after=0.0):
        pass
    assert caplog.text == ""


def test_jobs_must_be_a_positive_number(capsys):
    with pytest.raises(SystemExit) as e:
        main(["figures", "--jobs", "0"])
    assert e.value.code == 2 and "--jobs" in capsys.readouterr().err


def test_the_placebo_chart_is_keyed_by_the_numbers_it_prints_not_every_setting():
    """Another --threshold changes did.json's parameters, not the placebo chart: it stays kept."""
    import pandas as pd

    from pipeline.compare.county import Comparison
    from pipeline.publish.comparison import chart_specs
    from pipeline.publish.style import Style

    def key(**did) -> str:
        base = {"estimate_log": 0.2, "p_value": 0.04, "n_placebo": 999, "baseline_year": 2024}
        base |= {"target_year": 2025, "parameters": {"threshold": 0.25}, "n_treated": 20}
        empty = pd.DataFrame()
        comp = Comparison(empty, empty, base | did, empty, empty, empty, "synthetic", (0.1, -0.1))
        (chart,) = [c for c in chart_specs(comp, "synthetic", Style()) if c.name == "did_placebo"]
        return content_key(chart.name, chart.depends, Style())

    assert key() == key(parameters={"threshold": 0.3}) == key(spillover_note="x")
    assert key() != key(p_value=0.05) != key(estimate_log=0.21)


@pytest.mark.parametrize("face", ["white", "none"])
def test_png_has_matplotlibs_pixels_in_rgb_when_opaque(tmp_path, face):
    """``save_png`` writes what ``savefig`` would draw, pixel for pixel, with its metadata and
    resolution; an opaque chart loses only its (all-255) alpha channel, a transparent one keeps
    it."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from pipeline.publish.style import save_png

    fig, ax = plt.subplots(figsize=(2.3, 1.7), facecolor=face, layout="none")
    ax.plot([0, 1, 3], [2, 0, 1], lw=2)
    ax.imshow(np.arange(12.0).reshape(3, 4), extent=(0, 3, 0, 2), alpha=0.6)
    ax.set_title("radiance ≥ 0.25 − x")
    fig.savefig(tmp_path / "mpl.png", dpi=137)
    save_png(fig, tmp_path / "ours.png", 137, {"Title": "t", "Description": "d"})
    plt.close(fig)
    with Image.open(tmp_path / "mpl.png") as a, Image.open(tmp_path / "ours.png") as b:
        assert b.mode == ("RGB" if face == "white" else "RGBA")
        assert a.size == b.size == (int(2.3 * 137), int(1.7 * 137))
        assert np.array_equal(np.asarray(a.convert("RGBA")), np.asarray(b.convert("RGBA")))
        assert b.info["dpi"] == a.info["dpi"]
        assert (b.info["Title"], b.info["Description"]) == ("t", "d")


def test_svg_ids_are_numbered_in_order_and_references_follow():
    from pipeline.publish.style import stable_svg_ids

    svg = (
        '<clipPath id="p9f8e7d6c5b"/><path id="m0a1b2c3d4e"/>'
        '<g clip-path="url(#p9f8e7d6c5b)"><use xlink:href="#m0a1b2c3d4e"/></g>'
        '<image id="image00aa11bb22"/><use xlink:href="#image00aa11bb22"/>'
        '<text>#pffffffffff) id="x0a1b2c3d4e"</text>'
    )
    assert stable_svg_ids(svg) == (
        '<clipPath id="p0000"/><path id="m0001"/>'
        '<g clip-path="url(#p0000)"><use xlink:href="#m0001"/></g>'
        '<image id="img0002"/><use xlink:href="#img0002"/>'
        '<text>#pffffffffff) id="x0a1b2c3d4e"</text>'
    )
