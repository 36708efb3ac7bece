"""Config: defaults from the schema, files, --set overrides, clear errors, secrets, limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import assert_one_clear_line, streamrec

from streamrec.config import (
    DEFAULT_CONFIG,
    Config,
    config_to_dict,
    default_yaml,
    example_summary,
    examples,
    load_config,
    show_config,
)
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
        (
            {"cameras": [{"name": "a", "source": "x", "ignore_zones": [[[0, 0, 5]]]}]},
            ["cameras.0.ignore_zones.0.0", "at most 2 items"],
        ),
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


# --- one source of defaults, shipped configs --------------------------------------------------


def test_default_yaml_is_generated_from_the_schema() -> None:
    assert DEFAULT_CONFIG.read_text(encoding="utf-8") == default_yaml(), (
        "configs/default.yaml is out of date; regenerate it with: python -c 'import "
        'streamrec.config as c; print(c.default_yaml(), end="")\' > configs/default.yaml'
    )


def test_no_file_means_the_schema_defaults() -> None:
    cfg = load_config()
    assert cfg.source_file is None
    assert config_to_dict(cfg) == config_to_dict(Config())


def test_every_shipped_example_is_a_valid_config() -> None:
    shipped = examples()
    assert {"default", "cameras"} <= set(shipped)
    for name, path in shipped.items():
        cfg = load_config(path)
        assert example_summary(path), name
        if name == "cameras":
            assert [c.name for c in cfg.cameras] == ["front-door", "garage", "hallway"]


# --- every problem at once ---------------------------------------------------------------------


def test_every_problem_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text("recognition:\n  treshold: 0.4\ndetector:\n  interval: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    lines = str(err.value).splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(f"{f}: ") for line in lines)
    unknown = next(line for line in lines if "treshold" in line)
    assert "unknown key 'recognition.treshold'" in unknown
    assert "did you mean 'threshold'?" in unknown and "allowed here:" in unknown
    bad = next(line for line in lines if "interval" in line)
    assert "detector.interval" in bad and "greater than or equal to 1" in bad


def test_set_problems_name_the_set_key(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text("detector:\n  interval: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, ["runtime.provider=cuda", "recognition.batch_sise=3"])
    lines = sorted(str(err.value).splitlines())
    assert len(lines) == 3, lines
    assert lines[0].startswith("--set recognition.batch_sise: unknown key")
    assert "did you mean 'batch_size'?" in lines[0]
    assert lines[1].startswith("--set runtime.provider: bad value") and "'openvino'" in lines[1]
    assert lines[2].startswith(f"{f}: bad value for 'detector.interval'")


def test_yaml_error_gives_file_line_and_column_in_one_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("detector:\n  interval: 5\n  threshold: [0.5\nrecognition: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}, line 4, column ") and "not valid YAML" in msg
    assert "line 3" in msg  # where the unclosed bracket started
    assert "\n" not in msg and "^" not in msg


# --- secrets -------------------------------------------------------------------------------------

SECRET = "Sup3r/Secret?#@ x%41"


def test_errors_never_echo_secrets(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "http:\n  token: [73190021]\n"
        "events:\n  mqtt: {host: h, password: {p: 1}}\n"
        "  webhook: {url: 'https://h/x', headers: {Authorization: [Bearer, 73190021]}}\n"
        f"live:\n  rtsp_transport: 'rtsp://admin:{SECRET}@127.0.0.1/live'\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    for key in ("http.token", "events.mqtt.password", "events.webhook.headers", "rtsp_transport"):
        assert key in msg
    assert "73190021" not in msg and "Sup3r" not in msg and "x%41" not in msg
    assert "value not shown: a secret" in msg
    # YAML errors do not quote the secret either
    f.write_text(f'events:\n  mqtt:\n    host: h\n    password: "{SECRET}\n')
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "line" in str(err.value) and "Sup3r" not in str(err.value)
    f.write_text("events:\n  mqtt:\n    password: `Sup3rSecret\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "line 3, column 15" in str(err.value) and "`" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["http.token:73190021"])
    assert "73190021" not in str(err.value) and "key=value" in str(err.value)


def test_show_config_masks_secrets() -> None:
    cfg = load_config(
        None,
        {
            "http.token": "73190021",
            "events.mqtt": {"host": "broker", "username": "ha", "password": SECRET},
            "events.webhook": {
                "url": f"https://hook:{SECRET}@example.org/x?%74oken=abc&api_key=def&keep=1",
                "headers": {"Authorization": "Bearer zzz123"},
            },
            "cameras": [{"name": "door", "source": f"rtsp://admin:{SECRET}@10.0.0.9/live"}],
        },
    )
    text = show_config(cfg)
    for secret in ("73190021", "Sup3r", "x%41", "abc", "def", "zzz123", "admin"):
        assert secret not in text, secret
    shown = yaml.safe_load(text)
    assert shown["http"]["token"] == "***"
    assert shown["events"]["mqtt"]["password"] == "***"
    assert shown["events"]["mqtt"]["username"] == "ha"
    assert shown["events"]["webhook"]["headers"] == {"Authorization": "***"}
    assert (
        shown["events"]["webhook"]["url"]
        == "https://***@example.org/x?%74oken=***&api_key=***&keep=1"
    )
    assert shown["cameras"][0]["source"] == "rtsp://***@10.0.0.9/live"
    assert shown["unknowns"]["crops_dir"] is None  # unset values stay null


# --- absurd input --------------------------------------------------------------------------------

HUGE = "1" * 5000


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f"detector:\n  interval: {HUGE}\n", "line 2, column 13: a number of 5000 characters"),
        (f"detector:\n  interval: -{HUGE}\n", "a number of 5001 characters"),
        (f"detector:\n  interval: '{HUGE}'\n", "detector.interval"),
        ("detector: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
        ("".join(" " * i + "k:\n" for i in range(1000)), "nested deeper than"),
        ("detector:\n  threshold: .inf\n", "finite"),
        ("http:\n  port: 99999999\n", "http.port"),
        ("pipeline:\n  queue_size: 1000000\n", "pipeline.queue_size"),
    ],
)
def test_absurd_values_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "absurd.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert msg.startswith(str(f)) and needle in msg
    assert "\n" not in msg and len(msg) < 400


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        (f"detector.interval={HUGE}", "--set detector.interval, line 1, column 1: a number"),
        ("detector.interval=" + "[" * 5000, "--set detector.interval, line 1, column"),
        ("a." * 5000 + "b=1", "more than"),
        (f"detector.interval='{HUGE}'", "--set detector.interval: bad value"),
    ],
)
def test_absurd_overrides_are_refused(item: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and len(msg) < 400


def test_huge_and_binary_files_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    f.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="too large for a config file"):
        load_config(f)
    f.write_bytes(b"detector:\n  interval: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(f)
    f.write_text("detector:\n  interval: \x00\n")
    with pytest.raises(ConfigError, match=r"line 2: not valid YAML"):
        load_config(f)


# --- the command line ----------------------------------------------------------------------------


def test_cli_config_show_and_examples(tmp_path: Path) -> None:
    shown = yaml.safe_load(streamrec("config", "show").stdout)
    assert shown == config_to_dict(Config())
    shown = yaml.safe_load(streamrec("config", "show", "--set", "http.token=73190021").stdout)
    assert shown["http"]["token"] == "***"
    listing = streamrec("config", "example").stdout
    assert "default" in listing and "cameras" in listing
    cameras = streamrec("config", "example", "cameras").stdout
    assert cameras == (DEFAULT_CONFIG.parent / "example-cameras.yaml").read_text()
    mine = tmp_path / "my.yaml"
    mine.write_text(cameras)
    shown = yaml.safe_load(streamrec("config", "show", "--config", str(mine)).stdout)
    assert [c["name"] for c in shown["cameras"]] == ["front-door", "garage", "hallway"]
    assert shown["cameras"][0]["source"] == "rtsp://***@192.168.1.20:554/stream1"
    assert_one_clear_line(
        streamrec("config", "example", "nope", check=False), "no example config named 'nope'"
    )


def test_cli_prints_every_problem_on_its_own_line(tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text("recognition:\n  treshold: 0.4\ndetector:\n  interval: 0\n")
    proc = streamrec("config", "show", "--config", str(f), check=False)
    assert proc.returncode == 2 and not proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert all(line.startswith(f"streamrec: error: {f}: ") for line in lines)
    assert "did you mean 'threshold'?" in proc.stderr and "detector.interval" in proc.stderr


@pytest.mark.parametrize(
    ("content", "override", "needle"),
    [
        (f"detector:\n  interval: {HUGE}\n", None, "a number of 5000 characters"),
        ("detector: " + "[" * 5000 + "]" * 5000 + "\n", None, "nested deeper than"),
        (None, f"detector.interval={HUGE}", "--set detector.interval"),
        (None, "cameras=" + "{a: " * 5000, "--set cameras"),
    ],
)
def test_cli_absurd_input_gives_one_line(
    tmp_path: Path, content: str | None, override: str | None, needle: str
) -> None:
    args, needles = ["config", "show"], [needle]
    if content is not None:
        f = tmp_path / "absurd.yaml"
        f.write_text(content)
        args += ["--config", str(f)]
        needles.append(f"{f}, line")
    if override is not None:
        args += ["--set", override]
    proc = streamrec(*args, check=False)
    assert proc.returncode == 2
    assert_one_clear_line(proc, *needles)
    assert len(proc.stderr) < 400


def test_issue_24_keys_name_the_file_the_key_and_what_is_allowed(tmp_path: Path) -> None:
    """The Frigate, Home Assistant tracker and Double Take keys of issue 24."""
    bad = tmp_path / "bad.yaml"
    frigate = {"url": "http://frigate:5000"}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (
            {"cameras": [{"name": "f", "frigate": {**frigate, "attempts": 0}}]},
            ["bad.yaml", "cameras.0.frigate.attempts", "greater than or equal to 1"],
        ),
        (
            {"cameras": [{"name": "f", "frigate": {**frigate, "delay": -1}}]},
            ["cameras.0.frigate.delay", "greater than or equal to 0"],
        ),
        (
            {"cameras": [{"name": "f", "frigate": {**frigate, "overwrite": "sometimes"}}]},
            ["cameras.0.frigate.overwrite", "bool"],
        ),
        (
            {"cameras": [{"name": "f", "frigate": {**frigate, "password": 12, "user": ""}}]},
            ["cameras.0.frigate.user", "at least 1 character"],
        ),
        (
            {"events": {"mqtt": {"host": "h", "tracker_zones": {"door": "not_home"}}}},
            ["events.mqtt.tracker_zones", "a zone name", "not 'not_home'"],
        ),
        (
            {"events": {"mqtt": {"host": "h", "double_take_timezone": "Nowhere/Else"}}},
            ["events.mqtt.double_take_timezone", "IANA name"],
        ),
        (  # a config written for the previous release says what replaced its key
            {"cameras": [{"name": "f", "frigate": {**frigate, "max_snapshots": 3}}]},
            ["cameras.0.frigate.max_snapshots", "replaced by 'attempts'"],
        ),
        (
            {"runtime": {"sharing": "turns"}},
            ["runtime.sharing", "replaced by nothing", "runtime.threads"],
        ),
    ]
    for section, needles in cases:
        bad.write_text(yaml.safe_dump(section))
        with pytest.raises(ConfigError) as error:
            load_config(bad)
        message = str(error.value)
        assert all(n in message for n in needles), message
    good = {"cameras": [{"name": "f", "frigate": {**frigate, "user": "u", "password": "p"}}]}
    bad.write_text(yaml.safe_dump(good))
    assert load_config(bad).cameras[0].frigate.overwrite is False  # type: ignore[union-attr]
