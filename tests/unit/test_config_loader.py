"""Config loading: file:line:path messages, durations, partial files, schema, default.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.config.loader import ConfigError, config_json_schema, load_config, load_config_text
from detector.config.root import Config

REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    return [str(p) for p in info.value.problems]


def test_partial_file_takes_defaults():
    cfg = load_config_text("pipeline:\n  window: 30s\n", "c.yaml")
    assert cfg.pipeline.window == 30.0
    assert cfg.pipeline.allowed_lateness == Config().pipeline.allowed_lateness
    assert cfg.receiver.grpc.endpoint == "0.0.0.0:4317"


def test_empty_file_is_all_defaults():
    assert load_config_text("", "c.yaml") == Config()
    assert load_config_text("# only a comment\n", "c.yaml") == Config()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http:\n  endpoint: 5\n", "c.yaml:2: http.endpoint: Input should be a valid string (got 5)"),
        ("pipeline:\n  windw: 10s\n", "c.yaml:2: pipeline.windw: unknown key (did you mean 'window'?)"),
        ("alerts:\n  open_after: 2\n  cooldown: 5 minutes\n", "c.yaml:3: alerts.cooldown: invalid duration '5 minutes'"),
        ("pipeline:\n  window: 10\n", "c.yaml:2: pipeline.window: duration 10 needs a unit"),
        ("state:\n  directory: null\nbogus: 1\n", "c.yaml:3: bogus: unknown key"),
        (
            "detectors:\n  error_rate:\n    overrides:\n      - match: {service: x}\n        nope: 1\n",
            "c.yaml:5: detectors.error_rate.overrides.0.nope: unknown key",
        ),
        ("receiver:\n  grpc: [\n  x: 1\n", "c.yaml:4: yaml: invalid YAML"),
        ("a: b\n  c: d\n", "c.yaml:2: yaml: invalid YAML: mapping values are not allowed here"),
        ("- 1\n", "c.yaml:1: <root>: the config must be a mapping of sections, got a list"),
        ("pipeline:\n  window: 5s\npipeline: {}\n", "c.yaml:3: pipeline: duplicate key"),
    ],
)
def test_problem_messages(text, expected):
    got = problems(text)
    assert any(line.startswith(expected) for line in got), got


def test_every_problem_is_reported_in_line_order():
    got = problems("alerts:\n  open_after: 0\n  max_active: x\nhttp:\n  endpont: a\n")
    assert [g.split(":")[1] for g in got] == ["2", "3", "5"]


def test_missing_file():
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/x.yaml")
    assert str(info.value).startswith("/nonexistent/x.yaml: <file>: cannot read")


def test_durations_are_seconds():
    cfg = load_config_text("alerts:\n  cooldown: 1h30m\n  keep_resolved: 250ms\n", "c.yaml")
    assert cfg.alerts.cooldown == 5400.0
    assert cfg.alerts.keep_resolved == 0.25


def test_schema_is_json_schema_with_every_section():
    schema = config_json_schema()
    assert set(schema["properties"]) == set(Config.model_fields)
    json.dumps(schema)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detector", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli_check_config_invalid_exits_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("receiver:\n  grpc:\n    endpoint: 0.0.0.0:4317\n    max_recv_msg_size_mib: big\n")
    r = run_cli("check-config", str(f))
    assert r.returncode == 2, r
    assert r.stdout.startswith(f"{f}:4: receiver.grpc.max_recv_msg_size_mib: Input should be a valid number")


def test_cli_check_config_default_yaml_is_valid():
    r = run_cli("check-config", "config/default.yaml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_config_schema():
    r = run_cli("config-schema")
    assert r.returncode == 0
    assert "pipeline" in json.loads(r.stdout)["properties"]


CASES = {
    "wrong_type.yaml": "3: receiver.grpc.workers: Input should be a valid integer, unable to parse string as an integer (got 'many')",
    "unknown_key.yaml": "3: pipeline.windwo: unknown key (did you mean 'window'?)",
    "bad_duration.yaml": "2: alerts.cooldown: invalid duration '5 minutes': use a number and a unit",
    "bad_yaml.yaml": "2: yaml: invalid YAML: while scanning a quoted scalar found unexpected end of stream",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_check_config_cases(name):
    path = f"tests/data/config/{name}"
    r = run_cli("check-config", path)
    assert r.returncode == 2
    assert r.stdout.startswith(f"{path}:{CASES[name]}"), r.stdout


def test_cli_check_config_reports_unusable_credential_files(tmp_path):
    """Files serve would refuse at start (missing cert, empty secret, garbage PEM) fail check-config too."""
    (tmp_path / "empty-token").write_text("  \n")
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    f = tmp_path / "c.yaml"
    f.write_text(
        "receiver:\n"
        "  grpc:\n"
        "    auth:\n"
        f"      bearer_token_file: {tmp_path / 'empty-token'}\n"
        "http:\n"
        "  tls:\n"
        f"    cert_file: {tmp_path / 'cert.pem'}\n"
        f"    key_file: {tmp_path / 'key.pem'}\n"
        "  basic_auth:\n"
        "    username: prom\n"
        f"    password_file: {tmp_path / 'missing'}\n"
    )
    r = run_cli("check-config", str(f))
    assert r.returncode == 2, r
    out = r.stdout.splitlines()
    assert len(out) == 3, r.stdout
    assert out[0].startswith(f"{f}:3: receiver.grpc.auth: ") and "is empty" in out[0]
    assert out[1].startswith(f"{f}:6: http.tls: cannot load http.tls.cert_file"), out[1]
    assert out[2].startswith(f"{f}:9: http.basic_auth: cannot read http.basic_auth.password_file"), out[2]
    assert "not a key" not in r.stdout  # file contents are never echoed


def test_cli_check_config_accepts_usable_credential_files(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    f = tmp_path / "c.yaml"
    f.write_text(f"receiver:\n  grpc:\n    auth:\n      bearer_token_file: {tmp_path / 'token'}\n")
    r = run_cli("check-config", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "s3cret" not in r.stdout + r.stderr


def test_infinite_and_nan_numbers_are_config_errors():
    """Found by the fuzzer: ``memory_budget_mib: .inf`` passed validation and the memory plan crashed
    (inf // bytes is NaN). Every config number must be finite, overrides included."""
    assert problems("state:\n  memory_budget_mib: .inf\n") == [
        "c.yaml:2: state.memory_budget_mib: Input should be a finite number (got inf)"
    ]
    assert problems("detectors:\n  error_rate:\n    overrides:\n    - match: {service: a}\n      min_ratio: .nan\n") == [
        "c.yaml:5: detectors.error_rate.overrides.0.min_ratio: Input should be a finite number (got nan)"
    ]
