"""One settings model: lab defaults, precedence, validation with the field named, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from leverplus.config import load_settings, settings_hash, settings_to_yaml
from leverplus.errors import ConfigError


def test_defaults_reproduce_the_lab_report() -> None:
    s = load_settings()
    assert (s.rl.candidates_per_query, s.rl.train_shots, s.pool.size) == (20, 2, 64)
    assert (s.rl.min_pos_ratio, s.rl.max_pos_ratio) == (0.40, 0.60)
    assert (s.rl.rce_epochs, s.rl.grpo_epochs, s.rl.kl_beta, s.rl.grpo_lr) == (5, 30, 0.1, 5e-6)
    assert s.rl.reward_mode == "hard_plus_soft"
    assert (s.eval.shots, s.eval.num_questions, s.lvlm.max_new_tokens) == ([1, 2, 3, 4], 1000, 5)
    assert (s.rl.rce_tau_start, s.rl.rce_tau_end) == (2.0, 0.5)


def test_precedence_overrides_over_env_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rl:\n  candidates_per_query: 10\n  train_shots: 3\npool:\n  size: 32\n")
    monkeypatch.setenv("LEVERPLUS_RL__TRAIN_SHOTS", "4")
    monkeypatch.setenv("LEVERPLUS_EVAL__SHOTS", "[2, 1]")
    s = load_settings(cfg, {"pool.size": 16})
    assert s.rl.candidates_per_query == 10  # yaml
    assert s.rl.train_shots == 4  # env beats yaml
    assert s.pool.size == 16  # override beats yaml
    assert s.eval.shots == [1, 2]  # sorted


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lvlm:\n  backend: sim\n")
    monkeypatch.setenv("LEVERPLUS_CONFIG", str(cfg))
    assert load_settings().lvlm.backend == "sim"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pool.size": -1}, "pool.size"),
        ({"rl.candidates_per_query": 0}, "rl.candidates_per_query"),
        ({"rl.reward_mode": "hard_plus_magic"}, "rl.reward_mode"),
        ({"rl.min_pos_ratio": 0.7}, "min_pos_ratio"),
        ({"eval.shots": [1, 1]}, "eval.shots"),
        ({"lvlm.backend": "openai"}, "lvlm.backend"),
        ({"eval.metric_mode": "strict"}, "eval.metric_mode"),
    ],
)
def test_invalid_values_fail_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(overrides=overrides)


def test_unknown_keys_are_errors_not_silently_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rl:\n  candidates_per_querry: 10\n")
    with pytest.raises(ConfigError, match=r"rl\.candidates_per_querry"):
        load_settings(cfg)
    monkeypatch.setenv("LEVERPLUS_RLL__X", "1")
    with pytest.raises(ConfigError, match="LEVERPLUS_RLL__X: unknown settings group 'rll'"):
        load_settings()


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(scalar)


def test_secrets_are_masked_and_do_not_change_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = load_settings()
    monkeypatch.setenv("LEVERPLUS_STORE__SECRET_ACCESS_KEY", "s3cr3t-value")
    secret = load_settings()
    assert secret.store.secret_access_key.get_secret_value() == "s3cr3t-value"
    text = settings_to_yaml(secret)
    assert "s3cr3t-value" not in text and "secret_access_key: '***'" in text
    assert "s3cr3t-value" not in repr(secret)
    assert settings_hash(secret) == settings_hash(plain)
    assert settings_hash(load_settings(overrides={"pool.size": 8})) != settings_hash(plain)


def test_service_link_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes injects <SERVICE>_SERVICE_HOST/_PORT* for every Service in the namespace: a Service named
    leverplus-minio must not make every pod fail the strict settings check, and a real typo still must."""
    for name, value in {
        "LEVERPLUS_MINIO_SERVICE_HOST": "10.96.0.7",
        "LEVERPLUS_MINIO_SERVICE_PORT": "9000",
        "LEVERPLUS_MINIO_SERVICE_PORT_API": "9000",
        "LEVERPLUS_MINIO_PORT": "tcp://10.96.0.7:9000",
        "LEVERPLUS_MINIO_PORT_9000_TCP": "tcp://10.96.0.7:9000",
        "LEVERPLUS_MINIO_PORT_9000_TCP_ADDR": "10.96.0.7",
        "LEVERPLUS_MINIO_PORT_9000_TCP_PROTO": "tcp",
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().store.uri == "leverplus-store"
    monkeypatch.setenv("LEVERPLUS_MINIO_HOST", "x")
    with pytest.raises(ConfigError, match="LEVERPLUS_MINIO_HOST"):
        load_settings()
