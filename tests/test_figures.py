"""Charts: every chart in every format, print resolution, synthetic mark, reproducible bytes, options."""

from __future__ import annotations

import difflib
import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from pipeline.cli import main
from pipeline.publish.charts import verdict_figure
from pipeline.publish.style import CLASS_COLORS, CLASS_MARKERS, FORMATS, Style, save, styled
from pipeline.words import say, synthetic_notice
from tests.pubdata import CHARTS, EPOCH, SITES, publish, published

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return published(tmp_path_factory)


@pytest.mark.slow
def test_every_chart_in_every_format(run):
    _, out = run
    for name in CHARTS:
        for fmt in FORMATS:
            f = out / "figures" / f"{name}.{fmt}"
            assert f.exists() and f.stat().st_size > 1000, f
    assert not list(out.glob(".nightlights-staging-*"))


def test_png_is_print_resolution_and_column_width(run):
    _, out = run
    for name in CHARTS:
        with Image.open(out / "figures" / f"{name}.png") as im:
            dpi = im.info["dpi"]
            assert min(dpi) >= 299.5, (name, dpi)
            # the figure is exactly the journal width: 183 mm at 300 dpi
            assert im.width == int(183 / 25.4 * 300), (name, im.width)


def test_demo_charts_carry_the_synthetic_mark(run):
    _, out = run
    for name in CHARTS:
        svg = (out / "figures" / f"{name}.svg").read_text(encoding="utf-8")
        # the watermark is the mark, the banner the short notice: one wording (pipeline/words.toml)
        assert svg.count(say("synthetic_mark")) >= 2 and synthetic_notice() in svg, name
        pdf = PdfReader(out / "figures" / f"{name}.pdf")
        text = "".join(p.extract_text() for p in pdf.pages)
        assert "SYNTHETIC" in text, name
        assert "SYNTHETIC" in pdf.metadata["/Subject"]
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert "SYNTHETIC" in im.info["Description"]


def test_credit_line_names_product_period_and_processing(run):
    _, out = run
    svg = (out / "figures" / "verdict.svg").read_text(encoding="utf-8")
    assert "EOG VIIRS DNB monthly composites" in svg
    assert "2023-01 to 2025-12" in svg
    assert "nightlights" in svg and "median of matched valid months" in svg


def test_real_data_charts_have_no_synthetic_mark(run, tmp_path):
    results, _ = run
    verdict = {**results.verdict, "data_kind": "real"}
    verdict.pop("WARNING", None)
    style = Style(formats=("svg", "pdf"), dpi=100)
    with styled(style):
        save(verdict_figure(results.changes, verdict, style), tmp_path / "v", style, verdict, "t")
    assert "SYNTHETIC" not in (tmp_path / "v.svg").read_text(encoding="utf-8")
    assert "SYNTHETIC" not in "".join(p.extract_text() for p in PdfReader(tmp_path / "v.pdf").pages)


def test_classes_differ_by_marker_not_only_colour():
    assert len(set(CLASS_MARKERS.values())) == len(CLASS_MARKERS)
    assert len(set(CLASS_COLORS.values())) == len(CLASS_COLORS)


@pytest.mark.slow
def test_same_bytes_twice_with_source_date_epoch(run, tmp_path, monkeypatch):
    results, _ = run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    style = Style(width_mm=89, dpi=100)
    a = publish(results, tmp_path / "a", style)
    b = publish(results, tmp_path / "b", style)
    names = [f"figures/{n}.{fmt}" for n in CHARTS for fmt in FORMATS] + ["report.html", "report.md"]
    for n in names:
        x, y = (a / n).read_bytes(), (b / n).read_bytes()
        diff = (
            []
            if x == y or n.endswith((".png", ".pdf"))
            else list(
                difflib.unified_diff(
                    x.decode().splitlines(), y.decode().splitlines(), lineterm="", n=0
                )
            )[:8]
        )
        assert x == y, (n, diff)
    assert b"2026" in (a / "figures/verdict.pdf").read_bytes()  # the date is SOURCE_DATE_EPOCH's


@pytest.mark.slow
def test_figures_command_remakes_with_options(run, tmp_path, capsys):
    _, src = run
    out = (
        src.parent / f"copy-{tmp_path.name}"
    )  # beside the run: verdict.json's folders are relative
    out.mkdir()
    for f in (
        "verdict.json",
        "site_changes.csv",
        "site_months.parquet",
        "sensitivity.csv",
        "sites_classified.geojson",
    ):
        (out / f).write_bytes((src / f).read_bytes())
    code = main(
        [
            "figures",
            "--out",
            str(out),
            "-q",
            "--format",
            "png,svg",
            "--dpi",
            "150",
            "--width-mm",
            "89",
            "--style",
            "slide",
            "--lang",
            "ko",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert not list((out / "figures").glob("*.*"))  # Korean charts go to figures/ko/ only
    assert not list((out / "figures" / "ko").glob("*.pdf"))
    with Image.open(out / "figures" / "ko" / "verdict.png") as im:
        assert im.width == int(89 / 25.4 * 150)  # Matplotlib truncates width x dpi
        assert round(im.info["dpi"][0]) == 150
    svg = (out / "figures" / "ko" / "small_multiples.svg").read_text(encoding="utf-8")
    for _, _, _, ko, _, _ in SITES:
        assert ko in svg
    assert "Noto Sans KR" in svg
    # the Korean report sits beside the English one, never over it
    assert (out / "report.ko.html").exists() and (out / "report.ko.md").exists()
    assert not (out / "report.html").exists()


def test_figures_command_rejects_bad_options(run, tmp_path, capsys):
    _, src = run
    assert main(["figures", "--out", str(src), "--format", "gif"]) == 2
    assert "--format gif" in capsys.readouterr().err
    assert main(["figures", "--out", str(tmp_path)]) == 2
    assert "verdict.json" in capsys.readouterr().err


def test_png_bytes_read_back(run):
    _, out = run
    data = (out / "figures" / "map.png").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    assert (
        Path(out / "figures" / "map.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    )


def test_verdict_chart_shows_missing_and_other_batch_sites(run, tmp_path):
    results, _ = run
    changes = results.changes.copy()
    gone = changes.index[0]
    for col in ("change_pct", "ci_low", "ci_high", "log_ratio", "log_ci_low", "log_ci_high"):
        changes.loc[gone, col] = float("nan")
    changes.loc[gone, "class"] = "insufficient_data"
    moved = changes.loc[changes.index[1], "site_id"]
    verdict = {
        **results.verdict,
        "claim_site_ids": [s for s in results.verdict["claim_site_ids"] if s != moved],
    }
    style = Style(formats=("svg",), dpi=100)
    with styled(style):
        fig = verdict_figure(changes, verdict, style)
        # two panels: the claim's sites, then the other one with its own heading and count
        assert len(fig.axes) == 2
        assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == [
            changes.loc[changes.index[1], "name"]
        ]
        save(fig, tmp_path / "v", style, verdict, "t")
    svg = (tmp_path / "v.svg").read_text(encoding="utf-8")
    assert ">insufficient data<" in svg
    assert "Other sites, not in the claim’s batch 2024 (1): 1 " in svg.replace(
        "&#8217;", "’"
    ).replace("'", "’")


@pytest.mark.parametrize("lang,width", [("en", 183), ("ko", 183), ("en", 89), ("ko", 89)])
def test_robustness_labels_clear_the_bars_beside_them(lang, width):
    """'this run: 12' over a short bar between two tall ones, 'claim: 5' two bars from it: neither
    label covers a bar or a bar's count (Matplotlib's own extents, text only, not the arrow)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    from pipeline.publish.charts import robustness_figure

    counts = {4: 7, 5: 6, 6: 33, 7: 20, 9: 23, 10: 34, 11: 39, 12: 25, 13: 13, 14: 10}
    sens = pd.DataFrame(
        [
            {"brightened": k, "n_sites": 20, "threshold": 0.25}
            for k, n in counts.items()
            for _ in range(n)
        ]
    )
    verdict = {
        "data_kind": "synthetic",
        "claim": {"brightened": 5, "n_sites": 20},
        "claim_sites": {"counts": {"brightened": 12}},
        "parameters": {"statistic": "median", "threshold": 0.25},
        "inputs": [{"month": "2024-01", "product": "eog-vcmslcfg"}],
    }
    style = Style(lang=lang, width_mm=width, formats=("png",))
    with styled(style):
        fig = robustness_figure(sens, verdict, style)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        ax = fig.axes[0]
        # bar_label's counts are annotations too: the two labels are the ones with a colon
        labels = [Text.get_window_extent(t, r) for t in ax.texts if ":" in t.get_text()]
        counts_drawn = [
            t.get_window_extent(r) for t in ax.texts if t.get_text() and ":" not in t.get_text()
        ]
        bars = [p.get_window_extent(r) for p in ax.patches if isinstance(p, Rectangle)]
        plt.close(fig)
    assert len(labels) == 2 and len(counts_drawn) == len(counts)
    for label in labels:
        for other in counts_drawn + bars:
            assert not label.overlaps(other), (label, other)
    assert not labels[0].overlaps(labels[1])


def test_pdf_embeds_each_font_once_with_every_character(run):
    """One TrueType subset per typeface (ps.fonttype 42: Matplotlib 3.11 otherwise puts the
    characters past code 255 in a second subset of the same font), and the text, minus signs
    and >= included, is all there."""
    _, out = run
    for name in CHARTS:
        pdf = PdfReader(out / "figures" / f"{name}.pdf")
        fonts = [f.get_object() for p in pdf.pages for f in p["/Resources"]["/Font"].values()]
        faces = [str(f["/BaseFont"]).split("+")[-1] for f in fonts]
        assert {str(f["/Subtype"]) for f in fonts} <= {"/Type0", "/TrueType"}
        assert len(faces) == len(set(faces)), (name, faces)
    text = "".join(p.extract_text() for p in PdfReader(out / "figures" / "verdict.pdf").pages)
    assert "≥" in text
