"""The map and the county map: borders drawn, a marker per batch, labels beside their own marker;
each county's change computed directly."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.markers import MarkerStyle

from pipeline.compare.panel import panel_floor, unit_changes, unit_tables
from pipeline.config import Params
from pipeline.publish import maps
from pipeline.publish.composites import Composite, boundaries
from pipeline.publish.gis import classified_sites
from pipeline.publish.labels import box_distance, clusters, place_labels, spread
from pipeline.publish.style import Style, styled
from pipeline.read.sites import read_sites
from tests.pubdata import published
from tests.test_fit import problems

# one pytest-xdist worker makes the session's synthetic run once for every file that publishes it
pytestmark = pytest.mark.xdist_group("pubdata")

matplotlib.use("Agg")
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
VERDICT = {
    "data_kind": "synthetic",
    "inputs": [],
    "baseline_year": 2024,
    "target_year": 2025,
    "parameters": {"threshold": 0.25, "statistic": "median"},
}


# --------------------------------------------------------------------------- county change, directly


def test_unit_change_is_the_dids_outcome_from_the_yearly_panel():
    """ln((S_t + eps) / (S_b + eps)) of the yearly mean of valid monthly sums; a half-observed month
    leaves only its own year; a dark county gives 0 through the floor, a county unseen in the target
    year gives NaN."""
    months = [f"{y}-{m:02d}" for y in (2024, 2025) for m in range(1, 13)]
    rows = []
    for unit, base, factor in (("a", 200.0, np.exp(0.3)), ("b", 100.0, 1.0), ("zero", 0.0, 1.0)):
        for mo in months:
            y, m = int(mo[:4]), int(mo[5:])
            value = base * (factor if y == 2025 else 1.0) * (1 + 0.1 * m)
            rows.append((f"unit:{unit}", mo, "exact", value, value / 10, 1.0))
    rows += [("unit:unseen", mo, "exact", 5.0, 0.5, 1.0 if mo < "2025" else 0.2) for mo in months]
    t = pd.DataFrame(
        rows,
        columns=["zone", "month", "pixel_rule", "sum_radiance", "mean_radiance", "valid_fraction"],
    )
    t.loc[
        (t["zone"] == "unit:a") & (t["month"] == "2025-07"), ["sum_radiance", "valid_fraction"]
    ] = (
        9999.0,
        0.4,
    )
    units = pd.DataFrame(
        {"unit_id": ["a", "b", "zero", "unseen"], "name": list("ABZU"), "province": "P"}
    )
    params = Params(baseline_year=2024, target_year=2025, pixel_rule="exact")
    _, panel = unit_tables(t, units, {"a"}, params)
    eps = panel_floor(panel, 2024)
    lit = sorted(v for v in panel.loc[panel["year"] == 2024, "sum_lights"] if v > 0)
    assert eps == pytest.approx(0.01 * float(np.median(lit)))
    out = unit_changes(panel, units, 2024, 2025, eps).set_index("unit_id")
    seasonal = [1 + 0.1 * m for m in range(1, 13)]
    s_b = 200.0 * np.mean(seasonal)
    s_t = 200.0 * np.exp(0.3) * np.mean([v for m, v in enumerate(seasonal, 1) if m != 7])
    assert out.loc["a", "log_change"] == pytest.approx(np.log((s_t + eps) / (s_b + eps)), abs=1e-12)
    assert out.loc["a", "n_months"] == 11 and out.loc["b", "n_months"] == 12
    assert out.loc["b", "log_change"] == pytest.approx(0.0, abs=1e-12)
    assert out.loc["zero", "log_change"] == 0.0  # no light in either year: no change, not an error
    assert np.isnan(out.loc["unseen", "log_change"]) and out.loc["unseen", "n_months"] == 0


# --------------------------------------------------------------------------- label placement, pure


def _check(xs, ys, boxes, r):
    """Labels that collide with nothing and are nearer their own marker than any other."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    for i, b in enumerate(boxes):
        d = box_distance(b, xs, ys)
        assert d[i] < np.delete(d, i).min(), i
        for j, o in enumerate(boxes[:i]):
            assert not (b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]), (i, j)
        markers = [
            (x - r, y - r, x + r, y + r)
            for k, (x, y) in enumerate(zip(xs, ys, strict=True))
            if k != i
        ]
        assert not any(
            b[0] < m[2] and m[0] < b[2] and b[1] < m[3] and m[1] < b[3] for m in markers
        ), i


def test_labels_of_a_tight_cluster_go_to_the_side_of_their_own_marker():
    rng = np.random.default_rng(4)
    xs, ys = rng.uniform(0, 200, 24), rng.uniform(0, 150, 24)
    xs[:2], ys[:2] = (50, 57), (40, 40)  # two markers almost touching (radius 3)
    sizes = [(rng.uniform(15, 35), 8.0) for _ in xs]
    boxes, costs = place_labels(xs, ys, sizes, 3.0, (-60, -40, 260, 190))
    assert costs == [0] * len(xs)
    _check(xs, ys, boxes, 3.0)
    assert boxes[0][2] <= 53.5 <= boxes[1][0]  # each label on its own side of the pair


def test_a_label_with_no_clean_slot_is_reported():
    xs, ys = [0.0, 6.0, -6.0, 0.0, 0.0], [0.0, 0.0, 0.0, 6.0, -6.0]  # boxed in on every side
    _, costs = place_labels(xs, ys, [(30.0, 8.0)] * 5, 2.0, (-100, -100, 100, 100))
    assert costs[0] > 0


def test_markers_over_each_other_move_apart_as_little_as_it_takes():
    xs, ys, radii = [0.0, 0.0, 4.0, 40.0], [0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 2.0, 5.0]
    at = spread(xs, ys, radii)
    gaps = np.hypot(*(at[:, None] - at[None, :]).transpose(2, 0, 1))
    need = np.add.outer(radii, radii)
    assert (gaps[np.triu_indices(4, 1)] >= need[np.triu_indices(4, 1)] - 1e-6).all()
    assert tuple(at[3]) == (40.0, 0.0)  # clear of the others: not moved at all
    # a pair at one place parts evenly about it, touching
    two = spread([10.0, 10.0], [5.0, 5.0], [3.0, 3.0])
    assert two.mean(axis=0) == pytest.approx([10.0, 5.0]) and np.hypot(*(two[0] - two[1])) == (
        pytest.approx(6.0)
    )
    assert (spread([1.0, 9.0], [0.0, 0.0], [2.0, 2.0]) == [[1.0, 0.0], [9.0, 0.0]]).all()


def test_sites_at_one_place_get_markers_apart_tied_to_their_site():
    """Three sites at one point and one 0.01° east: no marker over another, no label over a marker;
    markers moved off their site are tied to it by a line from the site."""
    lon, lat = 126.0, 39.0
    feats = [("a", lon, lat), ("b", lon, lat), ("c", lon, lat), ("d", lon + 0.01, lat)]
    sites = pd.DataFrame(
        {
            "site_id": [f[0] for f in feats],
            "name": [f[0].upper() * 3 for f in feats],
            "center_lon": [f[1] for f in feats],
            "center_lat": [f[2] for f in feats],
            "batch": [2024, 2025, 2024, 2026],
        }
    )
    changes = pd.DataFrame({"site_id": sites["site_id"], "class": ["brightened"] * 4})
    comp = Composite(np.full((60, 60), 0.5), Affine(0.01, 0, lon - 0.3, 0, -0.01, lat + 0.3), 2025)
    style = Style(width_mm=89, formats=("png",), dpi=100)
    with styled(style):
        fig = maps.map_figure(comp, sites, changes, VERDICT, style)
        try:
            assert problems(fig) == []
            ax = fig.axes[0]
            ties = {
                ln.get_gid()[4:]: ln for ln in ax.lines if (ln.get_gid() or "").startswith("tie-")
            }
            assert set(ties) >= {"a", "b", "c"}
            for sid, ln in ties.items():
                x, y = ln.get_data()
                row = sites.set_index("site_id").loc[sid]
                assert (x[0], y[0]) == (row["center_lon"], row["center_lat"]) != (x[1], y[1])
        finally:
            matplotlib.pyplot.close(fig)


# --------------------------------------------------------------------------- the map of every shipped site


@pytest.fixture(scope="module")
def every_site():
    sites = read_sites(sorted((ROOT / "aoi").glob("*.geojson")), 2000.0)
    classes = ["brightened", "unchanged", "dimmed", "insufficient_data"]
    changes = pd.DataFrame(
        {"site_id": sites["site_id"], "class": [classes[i % 4] for i in range(len(sites))]}
    )
    borders = boundaries(sites)
    w, s, e, n = borders.bounds
    res = 0.02
    data = np.random.default_rng(0).lognormal(
        np.log(0.3), 0.5, (int((n - s) / res), int((e - w) / res))
    )
    comp = Composite(data, Affine(res, 0, w, 0, -res, n), 2025)
    return sites, changes, borders, comp


@pytest.mark.slow
@pytest.mark.parametrize("lang,width", [("ko", 89), ("en", 89), ("en", 183), ("ko", 183)])
def test_map_draws_borders_and_labels_each_site_beside_its_own_marker(every_site, lang, width):
    sites, changes, borders, comp = every_site
    style = Style(width_mm=width, lang=lang, formats=("png",))
    verdict = {**VERDICT, "counts": changes["class"].value_counts().to_dict()}
    with styled(style):
        fig = maps.map_figure(comp, sites, changes, verdict, style, borders)
        fig.canvas.draw()
        ax = fig.axes[0]
        lines = {c.get_gid(): c for c in ax.collections if isinstance(c, LineCollection)}
        assert {"county-borders", "province-borders", "country-borders"} <= set(lines)
        assert len(lines["county-borders"].get_segments()) >= len(borders.counties) == 181
        assert len(lines["province-borders"].get_segments()) >= 12
        # one marker shape per batch
        shapes = {
            ln.get_gid(): ln.get_marker()
            for ln in ax.lines
            if (ln.get_gid() or "").startswith("sites-")
        }
        assert len(set(shapes.values())) == len(shapes) == 3
        renderer = fig.canvas.get_renderer()
        label = {t.get_gid()[6:]: t for t in ax.texts if (t.get_gid() or "").startswith("label-")}
        leader = {
            ln.get_gid()[7:]: ln for ln in ax.lines if (ln.get_gid() or "").startswith("leader-")
        }
        ties = {ln.get_gid()[4:]: ln for ln in ax.lines if (ln.get_gid() or "").startswith("tie-")}
        marked = {  # each drawn marker's place: (marker, size)
            tuple(p): (ln.get_marker(), ln.get_markersize())
            for ln in ax.lines
            if (ln.get_gid() or "").startswith("sites-")
            for p in ln.get_xydata()
        }
        ids = list(sites["site_id"])
        assert set(label) == set(leader) == set(ids)
        at = [tuple(leader[sid].get_xydata()[0]) for sid in ids]  # where each leader starts
        assert set(at) <= set(marked)  # ... is a drawn marker
        site = np.column_stack([sites["center_lon"], sites["center_lat"]])
        xy, drawn = ax.transData.transform(site), ax.transData.transform(np.array(at))
        ms = marked[at[0]][1]
        # markers that would cover each other at their sites are moved apart and told apart by the
        # line, not by nearness: each marker's outer radius, in pixels, with half its 0.6 pt edge
        outer = []
        for p in at:
            m = MarkerStyle(marked[p][0])
            corners = m.get_path().transformed(m.get_transform()).vertices
            outer.append((np.hypot(*corners.T).max() * marked[p][1] + 0.3) * fig.dpi / 72)
        group = clusters(xy[:, 0], xy[:, 1], outer)
        key = fig.legends[0].get_texts() if len(fig.legends) > 1 else []
        keyed = {t.get_text().split(" ", 1)[0]: t.get_text().split(" ", 1)[1] for t in key}
        astray = []
        for i, sid in enumerate(ids):
            bb = label[sid].get_window_extent(renderer)
            d = box_distance((bb.x0, bb.y0, bb.x1, bb.y1), drawn[:, 0], drawn[:, 1])
            apart = group != group[i]
            if not d[i] < d[apart].min():
                astray.append(sid)
                assert label[sid].get_text().isdigit(), (
                    sid
                )  # only a key number, never a name, may stray
            # each leader starts at its site's marker: at the site, or tied back to it
            if sid in ties:
                assert [tuple(p) for p in ties[sid].get_xydata()] == [tuple(site[i]), at[i]]
            else:  # moved less than a quarter of its size
                assert np.hypot(*(drawn[i] - xy[i])) <= ms * fig.dpi / 72 / 4 + 1e-9
            text = label[sid].get_text()
            name = sites["name_ko" if lang == "ko" else "name"].iat[i]
            assert text == name or keyed.get(text) == name, (sid, text)
        # at two-column width every name sits beside its own marker; in a column, all but at most one
        # number in the densest cluster (Taean and Ryonggang moved apart, neighbours on all sides)
        assert len(astray) <= (0 if width == 183 else 1), astray
        if width == 183:
            assert not keyed  # names fit at two-column width
        assert problems(fig) == []  # no text over a marker or a text, no marker over another
    matplotlib.pyplot.close(fig)


# --------------------------------------------------------------------------- the published run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return published(tmp_path_factory)


def test_county_map_colours_every_county_by_its_change(run):
    results, _ = run
    borders = boundaries(results.sites)
    units = results.unit_changes
    assert (
        len(units) == 181 and units["log_change"].notna().any() and units["log_change"].isna().any()
    )
    style = Style()
    with styled(style):
        fig = maps.county_change_figure(borders, units, results.sites, results.verdict, style)
        ax = fig.axes[0]
        cols = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
        have = (
            units.set_index("unit_id")["log_change"].reindex(borders.counties["unit_id"]).to_numpy()
        )
        np.testing.assert_allclose(
            np.asarray(cols["county-change"].get_array()), have[np.isfinite(have)]
        )
        assert len(cols["county-no-data"].get_paths()) == int(np.isnan(have).sum())
        assert cols["county-no-data"].get_hatch() == "////"
    matplotlib.pyplot.close(fig)


def test_classified_sites_carry_their_county(run):
    results, out = run
    gdf = classified_sites(results)
    assert list(gdf.columns)[-4:] == ["data_kind", "county", "county_id", "geometry"]
    assert gdf["county_id"].notna().sum() == 4  # alpha lies in the sea, off the coast: no county
    assert (out / "figures" / "county_change.png").exists()
    assert "county change" in (out / "report.md").read_text(
        encoding="utf-8"
    ).lower() or "Change in light of every county" in (out / "report.md").read_text(
        encoding="utf-8"
    )
