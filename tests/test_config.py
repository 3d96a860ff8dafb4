"""Configuration: one place for defaults, validated at load, secrets never shown."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import Params, load_data_settings, params_from_mapping, read_yaml
from pipeline.errors import ConfigError


def test_every_parameter_documents_itself():
    for f in dataclasses.fields(Params):
        assert f.metadata.get("help"), f.name


def test_yaml_overrides_and_names_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("threshold: 0.3\nmonths: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n")
    p = params_from_mapping(read_yaml(cfg), str(cfg))
    assert p.threshold == 0.3 and p.months[0] == 2 and p.statistic == "median"
    cfg.write_text("treshold: 0.3\n")
    with pytest.raises(ConfigError, match=rf"{cfg}: unknown parameter 'treshold'; valid ones are"):
        params_from_mapping(read_yaml(cfg), str(cfg))
    cfg.write_text("threshold: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{cfg}: not valid YAML at line"):
        read_yaml(cfg)


def test_invalid_values_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="must be one of median, mean, sol"):
        Params(statistic="max")
    with pytest.raises(ConfigError, match="target_year"):
        Params(baseline_year=2025, target_year=2024)


def test_environment_beats_user_config_and_secrets_are_masked(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "data:\n  earthdata_token: from-file-123\n  eog_url: http://mirror.example/eog\n"
    )
    env = {"NIGHTLIGHTS_CONFIG": str(cfg), "EARTHDATA_TOKEN": "from-env-456"}
    s = load_data_settings(env)
    assert s.earthdata_token == "from-env-456" and s.eog_url == "http://mirror.example/eog"
    assert "from-env-456" not in repr(s) and s.has_blackmarble() and not s.has_eog()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_year": 20255}, "parameter target_year=20255: must be a year from 2012 to "),
        ({"baseline_year": 2011}, "parameter baseline_year=2011: must be a year from 2012 to "),
        ({"seed": -1}, "parameter seed=-1: must be a whole number from 0 to 2**63 - 1"),
        ({"n_boot": 10**12}, "parameter n_boot=1000000000000: must be at most 100000"),
        ({"ring_outer_m": 1e7}, "parameter ring_outer_m=10000000.0: must be at most 100000 m"),
        (
            {"compare_start_year": 2005},
            "parameter compare_start_year=2005: must be a year from 2012 to baseline_year",
        ),
    ],
)
def test_parameters_that_would_eat_the_machine_are_refused_before_work(changes, message):
    """Before: --target-year 20255 started generating 218,832 demo months; seed -1 and a huge n_boot
    ended in 'unexpected error' (ValueError, MemoryError) after the extraction."""
    with pytest.raises(ConfigError) as caught:
        Params(**changes)
    assert str(caught.value).startswith(message)


def test_next_year_is_the_last_year_allowed():
    import datetime as dt

    nxt = dt.date.today().year + 1
    assert Params(baseline_year=nxt - 1, target_year=nxt).target_year == nxt
    with pytest.raises(
        ConfigError, match=f"target_year={nxt + 1}: must be a year from 2012 to {nxt}"
    ):
        Params(target_year=nxt + 1)


def test_download_month_range_years_are_checked():
    from pipeline.fetch import month_list, year_list

    with pytest.raises(
        ConfigError, match=r"^month range 2012-01\.\.99999-01: years must be from 2012 to "
    ):
        month_list("2012-01", "99999-01")
    with pytest.raises(ConfigError, match=r"^year range 1990\.\.2020: years must be from 2012 to "):
        year_list("1990", "2020")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "n_boot: 0x" + "f" * 4000,
            "n_boot: a whole number of 4000 digits is too large for any setting",
        ),
        (
            "seed: 0b" + "1" * 20000,
            "seed: a whole number of 20000 digits is too large for any setting",
        ),
        (
            "analysis:\n  seed: " + "9" * 31,
            "analysis.seed: a whole number of 31 digits is too large for any setting",
        ),
    ],
)
def test_integers_too_long_for_python_are_refused_naming_the_key(tmp_path, text, line):
    """Hex escapes Python's 4300-digit limit on parsing, not on printing: the message crashed."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml(cfg)
    assert str(caught.value) == f"{cfg}: {line}"


def test_a_huge_value_in_a_message_is_cut():
    from pipeline.config import _short

    assert _short(16**5000) == "<a number of 20001 bits>"
    assert _short("x" * 500) == "'" + "x" * 56 + "..."


def test_default_comparison_panel_starts_no_earlier_than_viirs():
    assert Params(baseline_year=2013, target_year=2014).compare_years == (2012, 2013, 2014)
