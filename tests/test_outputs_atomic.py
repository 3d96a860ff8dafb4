"""All-or-nothing output sets: a kill at any moment leaves the previous set or the new one, never a mix.

Unit tests drive :mod:`pipeline.outputs` directly; the kill loop runs real ``nightlights run``
processes that SIGKILL themselves at the Nth publishing step (a child script replaces
``pipeline.outputs._step``: no test hook in the package itself), in both publishing modes: the folder swap (the default) and the journal (used when ``--out`` is
the working folder, among other cases).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.outputs as outputs
from pipeline.outputs import JOURNAL, MANIFEST, SIBLING_MARK, atomic_write, recover, staged
from tests.bad_inputs.rasters import write_months, write_sites
from tests.test_faults import clean_env, visible

# --------------------------------------------------------------------------- atomic_write


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")  # same folder: one rename
        tmp.write_text("new\n")
        assert target.read_text() == "old\n"  # nothing visible before the rename
    assert target.read_text() == "new\n"
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left


# --------------------------------------------------------------------------- the folder swap


def test_swap_keeps_foreign_files_and_the_folder_mode(tmp_path):
    out = tmp_path / "out"
    with staged(out, owns=("",)) as s:
        s.write_text("a.csv", "1")
        s.write_text("figures/chart.png", "png")
    (out / "notes.txt").write_text("mine")
    (out / "drafts").mkdir()
    (out / "drafts" / "d.txt").write_text("draft")
    os.chmod(out, 0o750)
    inode = (out / "notes.txt").stat().st_ino
    with staged(out, owns=("",)) as s:
        s.write_text("a.csv", "2")
    assert (out / "a.csv").read_text() == "2" and not (out / "figures" / "chart.png").exists()
    assert (out / "notes.txt").stat().st_ino == inode  # the very same file, linked across
    assert (out / "drafts" / "d.txt").read_text() == "draft"
    assert oct(out.stat().st_mode & 0o777) == oct(0o750)
    assert list(json.loads((out / MANIFEST).read_text())["files"]) == ["a.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_scoped_publish_keeps_the_tables(tmp_path):
    out = tmp_path / "out"
    with staged(out, owns=("",)) as s:
        s.write_text("a.csv", "1")
        s.write_text("figures/old.svg", "svg")
    with staged(out, owns=("figures/",)) as s:
        s.write_text("figures/new.png", "png")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        MANIFEST,
        "a.csv",
        "figures/new.png",
    ]


def test_leftovers_of_killed_runs_are_removed_with_a_warning(tmp_path, caplog):
    out = tmp_path / "out"
    with staged(out, owns=("",)) as s:
        s.write_text("a.csv", "1")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    beside = tmp_path / f".out{SIBLING_MARK}{pid}-abc"
    inside = out / f"{outputs.STAGING_PREFIX}{pid}-def"
    for d in (beside, inside):
        d.mkdir()
        (d / "a.csv").write_text("partial")
    mine = tmp_path / f".out{SIBLING_MARK}{os.getpid()}-live"  # a live process's: left alone
    mine.mkdir()
    with caplog.at_level(logging.WARNING):
        assert sorted(recover(out)) == sorted([beside, inside])
    assert not beside.exists() and not inside.exists() and mine.exists()
    assert (
        sum(
            "leftover staging folder of an interrupted run" in r.getMessage()
            for r in caplog.records
        )
        == 2
    )
    assert (out / "a.csv").read_text() == "1"


# --------------------------------------------------------------------------- the journal


class _Died(BaseException):
    """Stands for SIGKILL inside the test process: no cleanup code of the library may run... except finally."""


def test_journal_publish_killed_midway_is_rolled_forward_by_the_next_run(
    tmp_path, monkeypatch, caplog
):
    out = tmp_path / "out"
    with staged(out, owns=("",)) as s:
        for name in ("a.csv", "b.csv", "c.csv"):
            s.write_text(name, "old")
        s.write_text("gone.csv", "old")
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)  # a file system without the swap

    def die_at(label: str) -> None:
        if label == "move b.csv":
            raise _Died

    monkeypatch.setattr(outputs, "_step", die_at)
    with pytest.raises(_Died), staged(out, owns=("",)) as s:
        for name in ("a.csv", "b.csv", "c.csv"):
            s.write_text(name, "new")
    # killed between two renames: a mix on disk, but the journal says how to finish
    assert {n: (out / n).read_text() for n in ("a.csv", "b.csv", "c.csv")} == {
        "a.csv": "new",
        "b.csv": "new",
        "c.csv": "old",
    }
    assert (out / JOURNAL).exists()
    monkeypatch.setattr(outputs, "_step", lambda label: None)
    with caplog.at_level(logging.WARNING):
        recover(out)
    assert {n: (out / n).read_text() for n in ("a.csv", "b.csv", "c.csv")} == dict.fromkeys(
        ("a.csv", "b.csv", "c.csv"), "new"
    )
    assert not (out / "gone.csv").exists() and not (out / JOURNAL).exists()
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "a.csv", "b.csv", "c.csv"]
    assert any(
        "finished publishing the outputs of an interrupted run (1 files moved)" in r.getMessage()
        for r in caplog.records
    )


# --------------------------------------------------------------------------- the kill loop


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    return write_months(root / "rasters")[0].parent, write_sites(root / "sites.geojson")


KILLER = """
import os, signal, sys
import pipeline.outputs as o
at, steps = int(sys.argv[1]), [0]
def step(label):
    steps[0] += 1
    if steps[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
o._step = step
from pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run(
    inputs, out: Path, cache: Path, cwd: Path, *more: str, kill_at: int | None = None, env_dir: Path
) -> subprocess.CompletedProcess[str]:
    """A real run; with ``kill_at``, SIGKILLed at its Nth publishing step."""
    rasters, sites = inputs
    args = [
        "run",
        "--source",
        "local",
        "--rasters",
        str(rasters),
        "--sites",
        str(sites),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-figures",
        "-q",
        *more,
    ]
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(kill_at or 0), *args],
        cwd=cwd,
        env=clean_env(env_dir),
        text=True,
        capture_output=True,
        timeout=120,
    )


SET_A = ()  # with the sensitivity table
SET_B = ("--no-sensitivity", "--threshold", "0.5")  # without it, other classes


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["swap", "journal"])
def test_sigkill_at_every_publishing_step_leaves_one_complete_set(inputs, tmp_path, mode):
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    cwd = (
        out if mode == "journal" else tmp_path
    )  # --out as the working folder: no swap, the journal
    sets = {}
    for name, flags in (("B", SET_B), ("A", SET_A)):
        done = _run(inputs, out, cache, cwd, *flags, env_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        sets[name] = visible(out)
    (out / "notes.txt").write_text("mine")  # a foreign file: always kept
    a, b = ({**sets[k], "notes.txt": b"mine"} for k in ("A", "B"))
    assert set(a) - set(b) == {"sensitivity.csv"} and a["verdict.json"] != b["verdict.json"]
    assert a["site_changes.csv"] != b["site_changes.csv"]
    state, moments = a, 0
    first = (
        1 if mode == "swap" else 4
    )  # the staging steps are the same in both modes: once is enough
    for n in range(first, 10):
        target, flags = (b, SET_B) if state is a else (a, SET_A)
        killed = _run(inputs, out, cache, cwd, *flags, kill_at=n, env_dir=tmp_path)
        if killed.returncode == 0:
            continue  # the run has fewer steps than n
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        moments += 1
        if mode == "journal":
            recover(out)  # what the next run does first
        now = visible(out)
        assert now in (state, target), f"kill at step {n}: a mix of old and new files"
        state = target if now == target else state
    assert moments >= (7 if mode == "swap" else 5)  # 12 or more kill moments over both modes
    final = _run(inputs, out, cache, cwd, *SET_B, env_dir=tmp_path)
    assert final.returncode == 0, final.stderr
    assert visible(out) == b
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MANIFEST]
    assert not [p for p in tmp_path.iterdir() if SIBLING_MARK in p.name]
