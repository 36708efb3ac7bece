"""Config loading: defaults, files, --set overrides, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from streamrec.config import DEFAULT_CONFIG, Config, config_to_dict, load_config
from streamrec.errors import ConfigError


def test_default_yaml_mirrors_builtin_defaults() -> None:
    assert DEFAULT_CONFIG.is_file()
    from_file = config_to_dict(load_config(DEFAULT_CONFIG))
    builtin = dataclasses.asdict(Config())
    builtin.pop("source_file")
    assert from_file == builtin


def test_required_keys_exist() -> None:
    cfg = load_config()
    for key in (
        "models.detector",
        "models.recognizer",
        "detector.input_size",
        "detector.threshold",
        "detector.interval",
        "recognition.threshold",
        "runtime.provider",
        "runtime.device",
        "runtime.threads",
    ):
        section, name = key.split(".")
        assert hasattr(getattr(cfg, section), name), key


def test_overrides_mapping_and_strings(tmp_path: Path) -> None:
    cfg = load_config(None, ["detector.interval=3", "runtime.provider=cpu", "gallery=g.db"])
    assert (cfg.detector.interval, cfg.runtime.provider, cfg.gallery) == (3, "cpu", "g.db")
    cfg = load_config(None, {"models.recognizer": "mobilefacenet_128d.onnx"})
    assert cfg.models.recognizer == "mobilefacenet_128d.onnx"
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"detector": {"interval": 7}, "recognition": {"threshold": 0.4}}))
    cfg = load_config(f, ["detector.interval=2"])
    assert cfg.detector.interval == 2 and cfg.recognition.threshold == 0.4
    assert cfg.source_file == str(f)


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"detector": {"intervall": 5}}, ["detector.intervall", "unknown key", "interval"]),
        ({"detector": {"interval": "five"}}, ["detector.interval", "integer"]),
        ({"detector": {"interval": 0}}, ["detector.interval", "greater than or equal to 1"]),
        ({"runtime": {"provider": "cuda"}}, ["runtime.provider", "'openvino' or 'cpu'"]),
        ({"detector": {"input_size": 100}}, ["detector.input_size", "multiple of 32"]),
        ({"bogus": 1}, ["unknown key 'bogus'", "models"]),
        ({"cameras": [{"name": "a", "source": "x", "zone": 1}]}, ["cameras.0.zone"]),
    ],
)
def test_bad_config_names_file_key_and_allowed(tmp_path: Path, data: dict, needles: list) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert str(f) in msg
    for needle in needles:
        assert needle in msg
    assert "\n" not in msg


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    f = tmp_path / "x.yaml"
    f.write_text("detector: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["detector.interval"])
