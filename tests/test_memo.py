"""The study memo (pipeline.memo): a stage's result kept as data, read back only while its inputs hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from pipeline.memo import DOC, TMP, Entry, Memo, file_state, prune_memo


def _table() -> pd.DataFrame:
    index = pd.Index(["x", "y", "z"], dtype=object)
    t = pd.DataFrame(
        {
            "zone": ["a", "b", "c"],  # pandas' text dtype
            "value": [1.5, np.nan, -0.25],
            "n": np.array([3, 0, 7], dtype="int64"),
            "flag": [True, False, True],
        },
        index=index,
    )
    t["batch"] = pd.Series(["2024", None, "pilot"], index=index, dtype=object)  # with a None
    return t


class Calls:
    def __init__(self, value):
        self.value, self.n = value, 0

    def __call__(self):
        self.n += 1
        return self.value


def _through(memo: Memo, parts, compute, inputs=()):
    return memo.through(
        "t",
        parts,
        compute,
        lambda v: Entry({"table": v[0]}, {"doc": v[1]}),
        lambda e: (e.tables["table"], e.doc["doc"]),
        inputs=inputs,
    )


def test_a_stage_is_computed_once_and_read_back_exactly(tmp_path):
    doc = {"eps": 0.1, "nan": float("nan"), "years": [2024, 2025], "name": "이름"}
    compute = Calls((_table(), doc))
    memo = Memo(tmp_path / "results")
    first = _through(memo, ("same", 1), compute)
    again = _through(Memo(tmp_path / "results"), ("same", 1), compute)  # another process, say
    assert compute.n == 1
    for table, d in (first, again):
        pd.testing.assert_frame_equal(table, _table())  # dtypes and index too
        assert table["batch"].dtype == object and table["batch"].iloc[1] is None
        assert d["years"] == [2024, 2025] and d["name"] == "이름" and np.isnan(d["nan"])
    # other parts: another entry
    _through(memo, ("same", 2), compute)
    assert compute.n == 2
    # data only: Parquet and JSON, no pickle anywhere
    files = {p.suffix for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert files == {".parquet", ".json"}


def test_a_changed_input_file_is_a_new_key(tmp_path):
    src = tmp_path / "month.tif"
    src.write_bytes(b"1234")
    compute = Calls((_table(), {}))
    memo = Memo(tmp_path / "results")
    _through(memo, (file_state([src]),), compute, inputs=[src])
    _through(memo, (file_state([src]),), compute, inputs=[src])
    assert compute.n == 1
    src.write_bytes(b"12345")  # new size
    _through(memo, (file_state([src]),), compute, inputs=[src])
    assert compute.n == 2
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, touched
    _through(memo, (file_state([src]),), compute, inputs=[src])
    assert compute.n == 3


def test_a_damaged_entry_is_computed_again_never_an_error(tmp_path):
    compute = Calls((_table(), {"a": 1}))
    memo = Memo(tmp_path / "results")
    _through(memo, ("k",), compute)
    (entry,) = (tmp_path / "results").iterdir()
    (entry / "table.parquet").write_bytes(b"not parquet")
    table, doc = _through(memo, ("k",), compute)
    assert compute.n == 2 and doc == {"a": 1}
    pd.testing.assert_frame_equal(table, _table())
    (entry / DOC).write_text("{", encoding="utf-8")
    _through(memo, ("k",), compute)
    assert compute.n == 3
    _through(memo, ("k",), compute)  # rewritten whole
    assert compute.n == 3


def test_no_folder_or_a_part_without_a_digest_computes_and_keeps_nothing(tmp_path):
    compute = Calls((_table(), {}))
    _through(Memo(None), ("k",), compute)
    _through(Memo(None), ("k",), compute)
    assert compute.n == 2
    memo = Memo(tmp_path / "results")
    _through(memo, (object(),), compute)  # an object has no content digest
    assert compute.n == 3 and not (tmp_path / "results").exists()


def test_a_value_parquet_cannot_hold_is_returned_not_kept(tmp_path):
    odd = pd.DataFrame({"mixed": pd.Series([1, "a", 2.5], dtype=object)})
    compute = Calls((odd, {}))
    memo = Memo(tmp_path / "results")
    table, _ = _through(memo, ("k",), compute)
    assert table is odd
    _through(memo, ("k",), compute)
    assert compute.n == 2
    assert not [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(TMP)]


def test_geodataframes_come_back_geo_with_their_crs(tmp_path):
    gdf = gpd.GeoDataFrame(
        {"site_id": ["s1", "s2"], "name_ko": ["가", None]},
        geometry=[Point(125.0, 39.0), Point(126.5, 40.25)],
        crs="EPSG:4326",
    )
    memo = Memo(tmp_path / "results")
    enc = lambda g: Entry({"sites": g})  # noqa: E731
    back = memo.through("g", ("k",), lambda: gdf, enc, lambda e: e.tables["sites"])
    assert isinstance(back, gpd.GeoDataFrame) and back.crs == gdf.crs
    pd.testing.assert_frame_equal(pd.DataFrame(back), pd.DataFrame(gdf))


def test_only_the_most_recently_used_entries_are_kept(tmp_path):
    memo = Memo(tmp_path / "results", keep=3)
    for i in range(5):
        _through(memo, (i,), Calls((_table(), {})))
    assert len(list((tmp_path / "results").glob("t-*"))) == 3


def test_prune_removes_entries_whose_inputs_changed_and_half_written_ones(tmp_path):
    folder = tmp_path / "results"
    keep, gone = tmp_path / "keep.tif", tmp_path / "gone.tif"
    keep.write_bytes(b"k")
    gone.write_bytes(b"g")
    memo = Memo(folder)
    _through(memo, ("keep",), Calls((_table(), {})), inputs=[keep])
    _through(memo, ("gone",), Calls((_table(), {})), inputs=[gone])
    gone.unlink()
    dead = folder / f"{TMP}999999999-abcd"  # no such process
    dead.mkdir()
    removed, freed = prune_memo(folder)
    assert removed == 2 and freed > 0
    (left,) = list(folder.iterdir())
    assert json.loads((left / DOC).read_text())["inputs"][0][0] == str(keep.absolute())
    assert prune_memo(folder) == (0, 0)


@pytest.mark.parametrize("bad", ["", "[]", '{"memo_version": 1}'])
def test_prune_removes_unreadable_entries(tmp_path, bad):
    entry = tmp_path / "results" / "t-0123"
    entry.mkdir(parents=True)
    (entry / DOC).write_text(bad, encoding="utf-8")
    assert prune_memo(tmp_path / "results")[0] == 1
    assert not entry.exists()


def test_the_key_covers_code_and_parts_not_the_folder(tmp_path):
    a, b = Memo(tmp_path / "a"), Memo(tmp_path / "b")
    assert a.key("t", 1, "x") == b.key("t", 1, "x")
    assert a.key("t", 1, "x") != a.key("t", 1, "y") != a.key("u", 1, "x")
    assert Memo(None).key("t", 1) is None
    assert isinstance(file_state([Path("/no/such/file")])[0], tuple)


def test_cache_prune_on_the_command_line_removes_stale_results(tmp_path, capsys):
    from pipeline.cli import main

    src = tmp_path / "m.tif"
    src.write_bytes(b"1")
    _through(Memo(tmp_path / "cache" / "results"), ("k",), Calls((_table(), {})), inputs=[src])
    src.unlink()
    assert main(["cache", "prune", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "removed 1 kept result(s)" in out and "removed 0 cube(s)" in out
    assert not list((tmp_path / "cache" / "results").iterdir())


def test_arrays_come_back_as_numbers_never_objects(tmp_path):
    data = np.array([[1.0, np.nan], [0.25, 3.0]], dtype="float32")
    memo = Memo(tmp_path / "results")
    calls = Calls(data)
    for _ in range(2):
        back = memo.through(
            "a", ("k",), calls, lambda a: Entry(arrays={"data": a}), lambda e: e.arrays["data"]
        )
        np.testing.assert_array_equal(back, data)
        assert back.dtype == np.float32
    assert calls.n == 1
    objects = memo.through(  # an object array cannot be kept as data: computed each time
        "o",
        ("k",),
        lambda: np.array([{}], dtype=object),
        lambda a: Entry(arrays={"data": a}),
        lambda e: e.arrays["data"],
    )
    assert objects.dtype == object and not list((tmp_path / "results").glob("o-*"))


# --------------------------------------------------------------------------- remembered values


def _settings(**kw):
    from pipeline.judge.change import ChangeSettings

    base = dict(
        baseline_year=2024,
        target_year=2025,
        months=tuple(range(1, 13)),
        statistic="median",
        epsilon=0.1,
        threshold=0.25,
        min_valid_fraction=0.5,
        min_matched_months=6,
        confidence=0.9,
        n_boot=200,
        seed=7,
    )
    return ChangeSettings(**{**base, **kw})


def _counted_paired(monkeypatch):
    """Count the bootstrap's own computations (not its look-ups)."""
    import pipeline.judge.change as change

    calls = {"n": 0}
    real = change._paired

    def counted(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(change, "_paired", counted)
    return calls


def test_intervals_are_read_back_under_another_threshold_and_classes_follow_it(
    tmp_path, monkeypatch
):
    from pipeline.judge.change import paired_changes

    rng = np.random.default_rng(3)
    base, targ = rng.gamma(2, 1, (5, 10)), rng.gamma(2, 1.4, (5, 10))
    keys, w = [f"s{i}" for i in range(5)], np.ones(5)
    calls = _counted_paired(monkeypatch)
    fresh = paired_changes(base, targ, _settings(), keys, w)  # no block: computed
    assert calls["n"] == 1
    memo = Memo(tmp_path / "results")
    with memo.remembering("intervals", ("study",)):
        first = paired_changes(base, targ, _settings(), keys, w)
    assert calls["n"] == 2
    with Memo(tmp_path / "results").remembering("intervals", ("study",)):  # another process
        again = paired_changes(base, targ, _settings(threshold=0.9), keys, w)
        assert calls["n"] == 2  # the threshold is not among what the intervals read
        other = paired_changes(base, targ, _settings(seed=8), keys, w)
        assert calls["n"] == 3  # the seed is
    for a, b in zip(fresh, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype == np.float64
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(other[1], first[1])


def test_site_classes_change_with_the_threshold_from_read_back_intervals(tmp_path, monkeypatch):
    from pipeline.judge.change import site_changes

    months = [f"{y}-{m:02d}" for y in (2024, 2025) for m in range(1, 13)]
    up = {"a": 1.0, "b": 1.5, "c": 3.0}  # ln ratios ~0, 0.41, 1.10
    rows = [
        {
            "zone": z,
            "month": mo,
            "mean_radiance": 2.0 * (f if mo.startswith("2025") else 1.0) * (1 + 0.01 * i),
            "sum_radiance": 0.0,
            "valid_fraction": 1.0,
            "weight": 10.0,
        }
        for z, f in up.items()
        for i, mo in enumerate(months)
    ]
    table = pd.DataFrame(rows)
    sites = pd.DataFrame({"site_id": list(up)})
    calls = _counted_paired(monkeypatch)
    memo = Memo(tmp_path / "results")
    with memo.remembering("intervals", ("t",)):
        low = site_changes(table, sites, list(up), None, _settings(threshold=0.2))
    n = calls["n"]
    with memo.remembering("intervals", ("t",)):
        high = site_changes(table, sites, list(up), None, _settings(threshold=0.5))
    assert calls["n"] == n  # nothing recomputed
    assert list(low["class"]) == ["unchanged", "brightened", "brightened"]
    assert list(high["class"]) == ["unchanged", "unchanged", "brightened"]
    pd.testing.assert_frame_equal(low.drop(columns="class"), high.drop(columns="class"))


def test_a_remembered_entry_keeps_what_its_last_block_used_and_a_damaged_one_is_recomputed(
    tmp_path,
):
    from pipeline.memo import remembered

    memo = Memo(tmp_path / "results")
    made = []

    def value(i):
        def compute():
            made.append(i)
            return np.arange(3, dtype=np.float64) + i

        return compute

    with memo.remembering("r", ("k",)):
        for i in range(3):
            remembered(("v", i), value(i))
    with memo.remembering("r", ("k",)):
        np.testing.assert_array_equal(remembered(("v", 1), value(1)), [1.0, 2.0, 3.0])
    assert made == [0, 1, 2]
    (entry,) = (tmp_path / "results").glob("r-*")
    assert json.loads((entry / DOC).read_text())["doc"]["keys"].__len__() == 1  # shrunk to the used
    (entry / "values.npy").write_bytes(b"not an array")
    with memo.remembering("r", ("k",)):
        np.testing.assert_array_equal(remembered(("v", 1), value(1)), [1.0, 2.0, 3.0])
    assert made == [0, 1, 2, 1]
    with Memo(None).remembering("r", ("k",)):  # no memo folder: computed, nothing written
        remembered(("v", 9), value(9))
    assert made[-1] == 9


def test_the_memo_says_which_stage_it_computes_and_not_what_it_reads_back(tmp_path):
    told: list[str] = []
    memo = Memo(tmp_path / "results", on_compute=told.append)
    _through(memo, ("p",), Calls((_table(), {})))
    _through(memo, ("p",), Calls((_table(), {})))  # read back: nothing said
    assert told == ["t"]
    _through(Memo(None, on_compute=told.append), ("p",), Calls((_table(), {})))
    assert told == ["t", "t"]  # no memo: every stage is computed
