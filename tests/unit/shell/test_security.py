"""Credentials and transport security: settings, client configs, redaction."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gavel.logs import redact, redact_secrets
from gavel.settings import KafkaSecurityProtocol, Settings, redact_url
from shell.kafka import client_config, consumer_config, producer_config
from shell.stack.components import Kafka, MLflow, Redis
from stream_app.app import faust_credentials, faust_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GAVEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def sasl_ssl(tmp_path: Path, **changes: object) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed by the settings")
    values: dict[str, object] = {
        "kafka_bootstrap": "broker:9094",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "gavel",
        "kafka_sasl_password": "kafka-pw-123",
        "kafka_ssl_ca_file": ca,
    }
    return Settings(**{**values, **changes})


def test_every_librdkafka_client_gets_tls_and_sasl(tmp_path: Path) -> None:
    settings = sasl_ssl(tmp_path)
    expected = {
        "bootstrap.servers": "broker:9094",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "gavel",
        "sasl.password": "kafka-pw-123",
    }
    assert client_config(settings) == expected
    assert expected.items() <= producer_config(settings).items()
    assert expected.items() <= consumer_config(settings, "g").items()


def test_plain_sasl_without_tls_sends_no_tls_options() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p-secret",
    )
    config = client_config(settings)
    assert config["security.protocol"] == "SASL_PLAINTEXT" and config["sasl.mechanism"] == "PLAIN"
    assert not any(key.startswith("ssl.") for key in config)


def test_sasl_without_credentials_is_refused_with_the_variables_to_set() -> None:
    with pytest.raises(ValidationError, match="GAVEL_KAFKA_SASL_PASSWORD"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u")


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="TLS")


def test_a_missing_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a file"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "nope.pem")


def test_faust_gets_the_same_credentials_and_ignores_its_own_env_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faust

    monkeypatch.setenv("BROKER_URL", "kafka://elsewhere:1")
    monkeypatch.setenv("WEB_PORT", "1")
    settings = sasl_ssl(tmp_path, kafka_ssl_ca_file=None, worker_web_port=6123)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "gavel" and credentials.password == "kafka-pw-123"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None and credentials.ssl_context.check_hostname
    app = faust.App("gavel-unit-security", **faust_settings(settings))
    assert [str(url) for url in app.conf.broker] == ["kafka://broker:9094"]
    assert app.conf.web_port == 6123
    assert app.conf.broker_credentials is credentials or app.conf.broker_credentials


def test_faust_gets_tls_alone_and_nothing_for_plaintext(tmp_path: Path) -> None:
    import faust

    tls = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    credentials = faust_credentials(tls)
    assert isinstance(credentials, faust.SSLCredentials)
    assert not credentials.context.check_hostname
    assert faust_credentials(Settings()) is None
    brokers = faust_settings(Settings(kafka_bootstrap="a:1,b:2"))["broker"]
    assert brokers == "kafka://a:1;kafka://b:2"


def test_secrets_are_hidden_in_repr_and_dumps_but_reach_child_processes(tmp_path: Path) -> None:
    settings = sasl_ssl(
        tmp_path,
        redis_password="redis-pw-456",
        mlflow_tracking_username="m",
        mlflow_tracking_password="mlflow-pw-789",
    )
    shown = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
    for secret in ("kafka-pw-123", "redis-pw-456", "mlflow-pw-789"):
        assert secret not in shown
    env = settings.to_env()
    assert env["GAVEL_KAFKA_SASL_PASSWORD"] == "kafka-pw-123"
    assert env["GAVEL_REDIS_PASSWORD"] == "redis-pw-456"
    assert env["GAVEL_MLFLOW_TRACKING_PASSWORD"] == "mlflow-pw-789"
    assert "GAVEL_KAFKA_SASL_PASSWORD" not in Settings().to_env()
    child = Settings(**{k[6:].lower(): v for k, v in env.items() if "__" not in k})
    assert child.kafka_sasl_password is not None
    assert child.kafka_sasl_password.get_secret_value() == "kafka-pw-123"
    assert sorted(settings.secrets()) == ["kafka-pw-123", "mlflow-pw-789", "redis-pw-456"]


def test_passwords_in_urls_count_as_secrets_and_are_masked_for_display() -> None:
    settings = Settings(redis_url="redis://app:url-pw-1@cache:6379/0")
    assert settings.secrets() == ["url-pw-1"]
    assert settings.redis_display_url == "redis://app:***@cache:6379/0"
    assert redact_url("redis://:only-pw@cache:6379") == "redis://:***@cache:6379"


@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=4))
def test_a_redacted_url_never_contains_its_password(password: str) -> None:
    url = f"redis://user:{password}@host:1/0"
    assert password not in redact_url(url).replace("user", "").replace("host", "")


def test_log_records_never_carry_a_registered_secret(caplog: pytest.LogCaptureFixture) -> None:
    redact_secrets(["log-secret-42", "abc"])  # "abc" is too short to mask
    log = logging.getLogger("gavel.tests.security")
    with caplog.at_level(logging.INFO):
        log.info("connecting with %s to abc", "log-secret-42")
        try:
            raise ConnectionError("refused for password log-secret-42")
        except ConnectionError:
            log.exception("failed")
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "log-secret-42" not in text
    assert "connecting with *** to abc" in text and "refused for password ***" in text
    assert redact("x log-secret-42 y") == "x *** y"


def test_the_local_broker_opens_a_sasl_ssl_listener_behind_a_setting(tmp_path: Path) -> None:
    plain = Kafka(Settings(stack={"dir": tmp_path}))
    assert plain.secure_listener_properties() == {}
    settings = Settings(
        kafka_port=9092,
        stack={
            "dir": tmp_path,
            "kafka_controller_port": 9093,
            "kafka_sasl_ssl_port": 9094,
            "kafka_keystore": tmp_path / "broker.p12",
            "kafka_keystore_password": "store-pw-1",
        },
        kafka_sasl_username="gavel",
        kafka_sasl_password='we"ird\\pw',
    )
    kafka = Kafka(settings)
    kafka.write_config()
    text = kafka.config_file.read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094,CONTROLLER" in text
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094\n" in text
    assert 'user_gavel="we\\\\"ird\\\\\\\\pw";' in text  # JAAS quoting, then properties escaping
    assert "listener.name.sasl_ssl.ssl.keystore.password=store-pw-1" in text
    assert kafka.config_file.stat().st_mode & 0o077 == 0, "the config holds passwords"


def test_the_local_redis_and_mlflow_take_their_passwords_from_private_files(
    tmp_path: Path,
) -> None:
    settings = Settings(
        stack={"dir": tmp_path},
        redis_password="redis-pw-456",
        mlflow_tracking_username="admin",
        mlflow_tracking_password="mlflow-pw-789",
    )
    redis = Redis(settings)
    assert "requirepass redis-pw-456" in redis.config_text()
    assert "redis-pw-456" not in " ".join(redis.command())
    acl = Redis(settings.replace(redis_username="gavel")).config_text()
    assert "user default off" in acl and "user gavel on >redis-pw-456" in acl
    mlflow = MLflow(settings)
    mlflow.prepare()
    assert "--app-name" in mlflow.command() and "mlflow-pw-789" not in " ".join(mlflow.command())
    assert "admin_password = mlflow-pw-789" in mlflow.auth_config_file.read_text()
    assert mlflow.auth_config_file.stat().st_mode & 0o077 == 0
    assert "--app-name" not in MLflow(Settings(stack={"dir": tmp_path})).command()
    assert KafkaSecurityProtocol.SASL_SSL.uses_tls and KafkaSecurityProtocol.SASL_SSL.uses_sasl


def test_empty_credentials_from_compose_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SASL_USERNAME", "REDIS_PASSWORD", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(f"GAVEL_{name}", "")
    settings = Settings()
    assert settings.kafka_sasl_username is None and settings.redis_password is None
    assert settings.mlflow_tracking_password is None and settings.secrets() == []
