"""Outputs: staged publishing, and earlier results that a new run does not make are retired."""

from __future__ import annotations

from pipeline.outputs import staged


def test_full_run_retires_what_it_no_longer_makes_and_keeps_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")  # not ours: never touched
    with staged(tmp_path, owns=("",)) as out:
        out.write_text("a.csv", "1")
        out.write_text("figures/chart.png", "png")
    with staged(tmp_path, owns=("",)) as out:
        out.write_text("a.csv", "2")
    assert (tmp_path / "a.csv").read_text() == "2"
    assert not (tmp_path / "figures" / "chart.png").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_scoped_rewrite_only_retires_inside_its_scope(tmp_path):
    with staged(tmp_path, owns=("",)) as out:
        out.write_text("a.csv", "1")
        out.write_text("figures/chart.svg", "svg")
    with staged(tmp_path, owns=("figures/",)) as out:
        out.write_text("figures/chart.png", "png")
    assert (tmp_path / "a.csv").exists() and (tmp_path / "figures" / "chart.png").exists()
    assert not (tmp_path / "figures" / "chart.svg").exists()


def test_failed_run_changes_nothing(tmp_path):
    with staged(tmp_path, owns=("",)) as out:
        out.write_text("a.csv", "1")
    try:
        with staged(tmp_path, owns=("",)) as out:
            out.write_text("b.csv", "new")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert (tmp_path / "a.csv").read_text() == "1" and not (tmp_path / "b.csv").exists()
