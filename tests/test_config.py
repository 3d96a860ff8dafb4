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
    cfg.write_text("data:\n  earthdata_token: from-file-123\n  eog_url: http://mirror.example/eog\n")
    env = {"NIGHTLIGHTS_CONFIG": str(cfg), "EARTHDATA_TOKEN": "from-env-456"}
    s = load_data_settings(env)
    assert s.earthdata_token == "from-env-456" and s.eog_url == "http://mirror.example/eog"
    assert "from-env-456" not in repr(s) and s.has_blackmarble() and not s.has_eog()
