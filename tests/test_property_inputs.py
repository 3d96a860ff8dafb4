"""Site and claim files shaped like users' files, generated (hypothesis), run end to end with figures.

Random subsets of the optional properties, batch labels of every kind or none, unicode and white
space in names, points, polygons and multipolygons, unknown extra properties, dates real and not,
and claim files about those labels. Every run must succeed, or stop with clear
``nightlights: error: <file>: ...`` lines and exit 2; none may print a traceback or an
"unexpected error". Seeded and bounded (``derandomize``), so ``make test`` is repeatable; each
failure found becomes a fixed case in ``tests/bad_inputs/`` (see test_bad_inputs.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.fetch.demo import DemoSpec, build_demo
from tests.scenarios import BOUNDS

pytestmark = pytest.mark.slow

W, S, E, N = BOUNDS
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
LABELS = st.one_of(
    st.none(),
    st.just(""),
    st.integers(2012, 2030),
    st.floats(2012, 2030).map(lambda x: float(int(x))),
    st.sampled_from(
        ["pilot", " 2024-extra ", "H7", "한글 묶음", "batch\tA", "2025", "  ", "x" * 41]
    ),
    TEXT,
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
DATES = st.one_of(
    st.none(),
    st.sampled_from(["2025-01-14", "2025-01", "2026-02-30", "2025-13", "soon", "2024"]),
    st.dates().map(str),
)
OPTIONAL = {
    "name_ko": TEXT,
    "province": TEXT,
    "location_confidence": st.sampled_from(["high", "low", "medium"]),
    "source": TEXT,
    "groundbreaking": DATES,
    "inauguration": DATES,
    "inauguration_by": DATES,
    "radius_m": st.one_of(st.integers(300, 5000), st.floats(300, 5000)),
    "notes": TEXT,
}


@st.composite
def feature(draw: st.DrawFn, i: int) -> dict:
    x = draw(st.floats(W + 0.1, E - 0.1))
    y = draw(st.floats(S + 0.1, N - 0.1))
    d = draw(st.floats(0.005, 0.03))
    square = [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]
    kind = draw(st.sampled_from(["Point", "Polygon", "MultiPolygon"]))
    geometry = {
        "Point": {"type": "Point", "coordinates": [x, y]},
        "Polygon": {"type": "Polygon", "coordinates": [square]},
        "MultiPolygon": {
            "type": "MultiPolygon",
            "coordinates": [[square], [[[p[0] + 2 * d, p[1]] for p in square]]],
        },
    }[kind]
    props: dict = {}
    if draw(st.booleans()):
        props["site_id"] = f"site-{i}"
    props["name"] = draw(st.one_of(TEXT, st.just(f"  Site {i}  "), st.just(f"지점 {i}")))
    if draw(st.booleans()):
        props["batch"] = draw(LABELS)
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True, max_size=5)):
        props[key] = draw(OPTIONAL[key])
    if draw(st.booleans()):
        props[draw(st.sampled_from(["colour", "한글키", "extra"]))] = draw(
            st.one_of(TEXT, st.integers(), st.none())
        )
    return {"type": "Feature", "properties": props, "geometry": geometry}


@st.composite
def user_files(draw: st.DrawFn) -> tuple[dict, dict | None]:
    n = draw(st.integers(1, 4))
    features = [draw(feature(i)) for i in range(n)]
    claim = None
    if draw(st.booleans()):
        labels = [f["properties"].get("batch") for f in features]
        label = draw(
            st.sampled_from(
                [b for b in labels if isinstance(b, str | int) and not isinstance(b, bool)]
                or ["pilot"]
            )
        )
        n_sites = max(
            1,
            sum(1 for b in labels if str(b).strip() == str(label).strip())
            + draw(st.sampled_from([0, 0, 1])),
        )
        claim = {
            "text": draw(TEXT.filter(lambda t: t.strip())),
            "source": "a user",
            "batch": label,
            "baseline_year": 2024,
            "target_year": 2025,
            "n_sites": n_sites,
            "brightened": draw(st.integers(0, n_sites)),
        }
    return {"type": "FeatureCollection", "features": features}, claim


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> Path:
    spec = DemoSpec(seed=3, bounds=BOUNDS, sites=(), n_other_towns=30)
    return build_demo(tmp_path_factory.mktemp("property-rasters"), spec, progress=False)


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def label_of(value: object) -> str | None:
    """The documented spelling of a batch label (aoi/README.md), written out independently of the code:
    a whole number as its digits, text with its white space folded, nothing else; over 40 characters
    is ignored."""
    if isinstance(value, bool) or value is None:
        return None
    if (isinstance(value, float) and value.is_integer()) or isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        text = " ".join(value.split())
        return text if text and len(text) <= 40 else None
    return None


# no shrinking: a failure is reported as generated (shrinking a run with figures takes many minutes)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(files=user_files())
def test_users_files_run_with_figures_or_stop_in_clear_lines(rasters, files):
    doc, claim = files
    tmp = Path(tempfile.mkdtemp(prefix="nl-property-"))
    try:
        site_file = tmp / "my sites.geojson"
        site_file.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        argv = [
            "run",
            "-q",
            "--source",
            "local",
            "--rasters",
            str(rasters),
            "--sites",
            str(site_file),
            "--out",
            str(tmp / "out"),
            "--no-sensitivity",
            "--cache-dir",
            "none",
        ]
        if claim is not None:
            import yaml

            (tmp / "claim.yaml").write_text(
                yaml.safe_dump(claim, allow_unicode=True), encoding="utf-8"
            )
            argv += ["--claim", str(tmp / "claim.yaml")]
        code, err = _run(argv)
        assert "Traceback" not in err and "unexpected error" not in err, err
        lines = [ln for ln in err.splitlines() if ln.startswith("nightlights")]
        if code:
            assert code == 2, err
            assert lines and all(ln.startswith("nightlights: error: ") for ln in lines), err
            assert all(str(site_file) in ln or "claim.yaml" in ln for ln in lines), err
            return
        verdict = json.loads((tmp / "out" / "verdict.json").read_text(encoding="utf-8"))
        assert verdict["n_sites"] == len(doc["features"])
        assert (tmp / "out" / "figures" / "map.png").exists() and (
            tmp / "out" / "report.html"
        ).exists()
        if claim is not None:
            label = label_of(claim["batch"])
            have = sum(label_of(f["properties"].get("batch")) == label for f in doc["features"])
            assert verdict["claim"]["batch"] == label
            assert verdict["claim_sites"]["n_sites"] == have
            # judged when the run holds the claim's sites (a count that differs stopped the run above)
            assert verdict["claim_status"].startswith("not judged") == (have == 0), verdict[
                "claim_status"
            ]
        # what validate says agrees with what run did: a file run read is a usable file
        code, _ = _run(["sites", "validate", str(site_file)])
        assert code == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
