"""Tests for gavel.settings; every test runs in an empty directory with no GAVEL_* variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from gavel import topics
from gavel.settings import PROJECT_ROOT, Settings, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GAVEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_defaults_point_at_the_local_stack() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.namespace == ""
    assert settings.stack.dir == PROJECT_ROOT / ".stack"


def test_connections_derive_from_host_and_ports() -> None:
    settings = Settings(host="10.0.0.5", kafka_port=19092, redis_port=16379, mlflow_port=15000)
    assert settings.kafka_bootstrap == "10.0.0.5:19092"
    assert settings.redis_url == "redis://10.0.0.5:16379/0"
    assert settings.mlflow_tracking_uri == "http://10.0.0.5:15000"


def test_explicit_connections_are_kept() -> None:
    settings = Settings(
        kafka_port=19092,
        kafka_bootstrap="broker-1:29092,broker-2:29092",
        redis_url="redis://cache:6380/3",
        mlflow_tracking_uri="https://mlflow.example.org",
    )
    assert settings.kafka_bootstrap == "broker-1:29092,broker-2:29092"
    assert settings.redis_url == "redis://cache:6380/3"
    assert settings.mlflow_tracking_uri == "https://mlflow.example.org"


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAVEL_KAFKA_PORT", "19092")
    monkeypatch.setenv("GAVEL_REDIS_URL", "redis://elsewhere:1/2")
    monkeypatch.setenv("GAVEL_NAMESPACE", "dev1.")
    monkeypatch.setenv("GAVEL_MODEL_NAME", "gavel-test")
    monkeypatch.setenv("GAVEL_WORKER_BATCH_WITHIN_S", "0.25")
    settings = Settings()
    assert settings.kafka_port == 19092
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.redis_url == "redis://elsewhere:1/2"
    assert settings.namespace == "dev1."
    assert settings.model_name == "gavel-test"
    assert settings.worker_batch_within_s == 0.25


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GAVEL_MLFLOW_PORT=5555\nGAVEL_EXPERIMENT_NAME=from-file\n")
    settings = Settings()
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5555"
    assert settings.experiment_name == "from-file"


def test_env_var_beats_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GAVEL_MODEL_NAME=from-file\n")
    monkeypatch.setenv("GAVEL_MODEL_NAME", "from-env")
    assert Settings().model_name == "from-env"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("GAVEL_STACK__KAFKA_HEAP_MB", "2048"),
        ("GAVEL_TOPIC_PARTITIONS", "0"),
        ("GAVEL_WORKER_BATCH_WITHIN_S", "0"),
        ("GAVEL_NAMESPACE", "has space"),
        ("GAVEL_NAMESPACE", "a/b"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


def fresh_namespace_applies_to_topics_and_groups() -> None:
    settings = Settings(namespace="test-1a2b.")
    assert settings.topic(topics.AUCTIONS_LISTED) == "test-1a2b.auctions.listed"
    assert settings.topic(topics.MODELS_UPDATES) == "test-1a2b.models.updates"
    assert settings.group("worker") == "test-1a2b.gavel-worker"


def test_no_namespace_leaves_names_alone() -> None:
    settings = Settings()
    names = [spec.name for spec in topics.TOPICS]
    assert [settings.topic(name) for name in names] == names
    assert settings.group("monitor") == "gavel-monitor"


def test_to_env_uses_gavel_prefix_and_strings() -> None:
    env = Settings(namespace="ns.", kafka_port=19092, redis_url="redis://cache:6380/3").to_env()
    assert all(key.startswith("GAVEL_") and key == key.upper() for key in env)
    assert all(isinstance(value, str) for value in env.values())
    assert env["GAVEL_NAMESPACE"] == "ns."
    assert env["GAVEL_KAFKA_PORT"] == "19092"
    assert env["GAVEL_REDIS_URL"] == "redis://cache:6380/3"
    derived = {"kafka_bootstrap", "mlflow_tracking_uri"}
    scalars = {
        name
        for name, value in Settings().model_dump().items()
        if not isinstance(value, dict) and value is not None  # None: unset, not written
    }
    assert {f"GAVEL_{name.upper()}" for name in scalars - derived} <= set(env)
    assert not {f"GAVEL_{name.upper()}" for name in derived} & set(env)


def test_to_env_leaves_derived_connections_to_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Settings().to_env()
    assert "GAVEL_KAFKA_BOOTSTRAP" not in env
    for key, value in {**env, "GAVEL_KAFKA_PORT": "29092"}.items():
        monkeypatch.setenv(key, value)
    assert Settings().kafka_bootstrap == "127.0.0.1:29092"


def test_replace_follows_ports_unless_explicit() -> None:
    moved = Settings(namespace="a.").replace(kafka_port=19092, redis_port=16379)
    assert moved.kafka_bootstrap == "127.0.0.1:19092"
    assert moved.redis_url == "redis://127.0.0.1:16379/0"
    assert moved.namespace == "a."
    pinned = Settings(kafka_bootstrap="broker:9092").replace(kafka_port=19092)
    assert pinned.kafka_bootstrap == "broker:9092"


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = Settings(
        namespace="child.",
        host="192.168.1.9",
        kafka_port=19092,
        redis_url="redis://cache:6380/3",
        worker_batch_size=64,
        worker_batch_within_s=0.125,
        reports_dir=tmp_path / "reports",
        stack={"dir": tmp_path / "stack"},
        monitor={"window_events": 300, "drift_share": 0.5},
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child == original
    assert child.reports_dir == tmp_path / "reports"
    assert child.kafka_bootstrap == "192.168.1.9:19092"
    assert child.monitor.window_events == 300


def test_nested_monitor_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAVEL_MONITOR__WINDOW_EVENTS", "300")
    settings = Settings()
    assert settings.monitor.window_events == 300
    assert settings.to_env()["GAVEL_MONITOR__WINDOW_EVENTS"] == "300"


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("GAVEL_MODEL_NAME", "cached")
    try:
        first = get_settings()
        monkeypatch.setenv("GAVEL_MODEL_NAME", "changed")
        assert get_settings() is first
        assert first.model_name == "cached"
    finally:
        get_settings.cache_clear()


def test_stack_knobs_are_a_group_of_their_own_merged_by_replace(tmp_path: Path) -> None:
    settings = Settings(stack={"dir": tmp_path, "kafka_heap_mb": 256})
    moved = settings.replace(stack={"prometheus_port": 19090})
    assert moved.stack.dir == tmp_path and moved.stack.kafka_heap_mb == 256
    assert moved.stack.prometheus_port == 19090
    secured = settings.replace(
        stack={"kafka_sasl_ssl_port": 9094, "kafka_keystore": tmp_path / "k.p12",
               "kafka_keystore_password": "ks-secret"},
    )  # fmt: skip
    env = secured.to_env()
    assert env["GAVEL_STACK__KAFKA_KEYSTORE_PASSWORD"] == "ks-secret"
    assert env["GAVEL_STACK__DIR"] == str(tmp_path)
    assert "ks-secret" in secured.secrets() and "ks-secret" not in repr(secured)
    assert "GAVEL_STACK__KAFKA_SASL_SSL_PORT" not in settings.to_env()  # unset stays unset
    with pytest.raises(ValueError, match="kafka_keystore"):
        Settings(stack={"kafka_sasl_ssl_port": 9094})
