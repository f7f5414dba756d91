"""Settings shared by every Gavel service.

Values come from ``GAVEL_*`` environment variables and an optional ``.env``
file; the defaults point at the local stack that ``gavel stack up`` starts.

>>> s = Settings(kafka_port=19092)
>>> s.kafka_bootstrap
'127.0.0.1:19092'
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gavel.schemas import DriftKind, Severity

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KafkaSecurityProtocol(StrEnum):
    """How clients talk to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self.value.startswith("SASL_")


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class MonitorSettings(BaseModel):
    """Drift monitoring (env ``GAVEL_MONITOR__<NAME>``).

    Windows are tumbling. Feature and prediction drift use windows of scored listings,
    performance uses windows of listings joined with their sale. A window closes when it
    holds ``window_events`` events or, if ``window_days`` > 0, when an event from a later
    event-time period arrives, whichever comes first.
    """

    window_events: int = Field(2000, ge=100)
    performance_window_events: int = Field(1000, ge=50)
    window_days: float = Field(0.0, ge=0, description="Event-time window length; 0 = off.")
    max_window_rows: int = Field(5000, ge=100, description="Windows are sampled down to this.")
    numeric_stattest: str = "wasserstein"
    numeric_threshold: float = 0.1
    categorical_stattest: str = "jensenshannon"
    categorical_threshold: float = 0.1
    drift_share: float = Field(0.25, gt=0, le=1, description="Share of drifted features to alert.")
    prediction_threshold: float = 0.1
    mape_tolerance: float = Field(0.25, gt=0, description="Alert when MAPE > ref x (1 + this).")
    bias_tolerance: float = Field(0.04, gt=0, description="Alert when |bias - ref bias| > this.")
    recovery_windows: int = Field(2, ge=1, description="Calm windows that end an episode.")
    adwin_delta: float = 0.002
    adwin_min_width: int = Field(1000, ge=50, description="Sales behind a streaming breach.")
    join_ttl_hours: float = Field(72.0, gt=0, description="Event time a listing waits for a sale.")
    join_max_pending: int = Field(200_000, ge=1000)
    checkpoint_interval_s: float = Field(
        5.0, gt=0, description="How often the state and its offsets are checkpointed to Redis."
    )
    lease_ttl_s: float = Field(
        10.0,
        gt=1,
        description="One monitor per namespace holds a Redis lease of this length, renewed "
        "every third of it; a standby takes over within it when the holder dies.",
    )


class TrainerSettings(BaseModel):
    """The retraining service (env ``GAVEL_TRAINER__<NAME>``)."""

    kinds: list[DriftKind] = Field(
        [DriftKind.PERFORMANCE], description="Alert kinds that may retrain."
    )
    min_severity: Severity = Severity.WARNING
    cooldown_s: float = Field(900.0, ge=0, description="Quiet time after a training.")
    min_new_labels: int = Field(
        5000,
        ge=1,
        description="Labelled sales needed since the drift began and since the last training.",
    )
    max_wait_s: float = Field(1800.0, gt=0, description="How long to wait for those labels.")
    recheck_s: float = Field(5.0, gt=0)
    train_days: float = Field(14.0, gt=0, description="Event-time days of training data.")
    eval_days: float = Field(3.0, gt=0, description="The latest days, held out for gating.")
    blend_share: float = Field(
        0.0, ge=0, le=1, description="Older rows blended in, as a share of the window's rows."
    )
    continue_champion: bool = Field(
        True,
        description="Also try continuing the champion's boosting on the window, "
        "and keep whichever XGBoost validates better.",
    )
    margin: float = Field(0.02, ge=0, description="Relative MAPE gain needed to promote.")
    lock_ttl_s: float = Field(20.0, gt=1, description="Lease of the single-flight Redis lock.")
    read_back_days: float = Field(
        30.0,
        gt=0,
        description="Kafka (ingestion) time read back for a training window: both topics are "
        "read from offsets_for_times(now - this). Cover train_days + eval_days of sales and "
        "how long a listing waits for its sale.",
    )
    read_timeout_s: float = Field(
        60.0, gt=0, description="Longest a window read may take to reach the high watermarks."
    )
    retry_initial_s: float = Field(
        1.0, gt=0, description="First wait while Redis, MLflow or Kafka is down (then doubles)."
    )
    retry_max_s: float = Field(30.0, gt=0, description="Longest wait between two tries.")
    redis_timeout_s: float = Field(
        5.0, gt=0, description="Socket timeout of the trainer's Redis calls."
    )
    nice: int = Field(
        10, ge=0, le=19, description="CPU niceness of `gavel trainer run`: scoring comes first."
    )
    auto_rollback: bool = False
    rollback_ratio: float = Field(
        1.2,
        gt=1,
        description="Roll back when post-promotion MAPE "
        "exceeds the replaced model's by this factor.",
    )
    rollback_guard_s: float = Field(3600.0, gt=0, description="How long after a promotion.")


class StackSettings(BaseModel):
    """The local stack only (env ``GAVEL_STACK__<NAME>``): where it keeps its state and
    how its servers run. No service reads these."""

    dir: Path = Field(PROJECT_ROOT / ".stack", description="All local-stack state.")
    kafka_version: str = "3.9.1"
    kafka_controller_port: int = 9093
    kafka_heap_mb: int = Field(512, le=512, ge=128)
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: float = Field(5.0, gt=0)
    kafka_sasl_ssl_port: int | None = Field(
        None,
        description="Also open a SASL_SSL listener on this port. It needs kafka_keystore; "
        "the SASL user is the settings' kafka_sasl_username.",
    )
    kafka_keystore: Path | None = Field(
        None, description="PKCS12 keystore with the broker's key and certificate."
    )
    kafka_keystore_password: SecretStr | None = None

    @field_validator(
        "kafka_sasl_ssl_port", "kafka_keystore", "kafka_keystore_password", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_listener(self) -> StackSettings:
        if self.kafka_sasl_ssl_port is not None and self.kafka_keystore is None:
            raise ValueError("stack.kafka_sasl_ssl_port needs stack.kafka_keystore")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GAVEL_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Where things listen; the connection URLs below derive from these.
    host: str = "127.0.0.1"
    bind_host: str = Field("127.0.0.1", description="Where service HTTP endpoints listen.")
    kafka_port: int = 9092
    redis_port: int = 6379
    mlflow_port: int = 5000

    stack: StackSettings = Field(default_factory=StackSettings)

    # Connections (derived from the ports unless set explicitly)
    kafka_bootstrap: str = ""
    redis_url: str = ""
    mlflow_tracking_uri: str = ""

    # Credentials and transport security; every client takes them from here.
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that signed the brokers'; unset: system CAs."
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="Verify that the broker's certificate names the host connected to."
    )
    redis_username: str | None = Field(None, description="Redis ACL user; unset: 'default'.")
    redis_password: SecretStr | None = None
    mlflow_tracking_username: str | None = Field(
        None, description="MLflow basic auth (the server's basic-auth app)."
    )
    mlflow_tracking_password: SecretStr | None = None

    # Topics; the namespace prefixes topic names, consumer groups and Redis keys so that
    # several environments (or test runs) can share one cluster.
    namespace: str = Field("", pattern=r"^[A-Za-z0-9._-]*$")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the keyed data topics.")
    topic_replication: int = Field(1, ge=1)

    # Model registry
    model_name: str = "gavel-price"
    experiment_name: str = "gavel"

    # Services
    worker_web_port: int = 6066
    worker_batch_size: int = Field(500, ge=1)
    worker_batch_within_s: float = Field(
        0.05, gt=0, description="Longest wait to fill a micro-batch (seconds)."
    )
    worker_batches_in_flight: int = Field(
        4, ge=1, description="Micro-batches scored while earlier ones await the broker."
    )
    worker_poll_alias_s: float = Field(30.0, gt=0)
    worker_model_cache_dir: Path = Field(
        PROJECT_ROOT / ".cache" / "models",
        description="The last champion served, kept locally: a worker that starts while "
        "the registry is down serves it.",
    )
    worker_predict_max_bytes: int = Field(
        1_048_576, ge=1024, le=1_048_576, description="Largest POST /predict body (413 above)."
    )
    worker_predict_concurrency: int = Field(
        4, ge=1, description="POST /predict requests priced at once; more get 429."
    )
    worker_max_listing_bytes: int = Field(
        65_536,
        ge=1024,
        description="Larger listings are dead-lettered unread (a listing is ~0.5 KB).",
    )
    worker_deadletter_payload_bytes: int = Field(
        8192,
        ge=256,
        le=262_144,
        description="Raw payload kept in a dead letter (size and sha256 always).",
    )
    worker_session_timeout_s: float = Field(
        6.0,
        ge=6,
        le=300,
        description="Kafka session timeout: how soon a dead worker's partitions move to the "
        "others (6 s is the brokers' default group.min.session.timeout.ms).",
    )
    worker_heartbeat_s: float = Field(1.0, gt=0, description="Kafka heartbeat interval.")
    worker_instance_id: str | None = Field(
        None,
        description="Static group membership (group.instance.id): a restarted worker with the "
        "same id takes its partitions back without a rebalance. Unique per worker process; "
        "'{hostname}' is replaced by the host's name (a container's survives restarts).",
    )
    worker_commit_interval_s: float = Field(
        1.0, gt=0, description="Offset commits; bounds the duplicates replayed after a crash."
    )
    worker_output_timeout_s: float = Field(
        30.0, ge=1, description="How long the producer tries one output (message.timeout.ms)."
    )
    worker_output_retries: int = Field(
        3, ge=0, description="Re-sends of an output that timed out before the worker gives up."
    )
    worker_stall_after_s: float = Field(
        30.0, gt=0, description="/health degrades when lag stays without progress this long."
    )
    worker_stop_timeout_s: float = Field(
        8.0, gt=0, description="SIGTERM: longest wait for in-flight outputs before exiting."
    )
    monitor_metrics_port: int = 9108
    reports_dir: Path = Field(PROJECT_ROOT / "reports")
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)

    def _local_connections(self) -> dict[str, str]:
        return {
            "kafka_bootstrap": f"{self.host}:{self.kafka_port}",
            "redis_url": f"redis://{self.host}:{self.redis_port}/0",
            "mlflow_tracking_uri": f"http://{self.host}:{self.mlflow_port}",
        }

    @model_validator(mode="after")
    def _derive_connections(self) -> Settings:
        for name, value in self._local_connections().items():
            if not getattr(self, name):
                setattr(self, name, value)
        return self

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_file",
        "redis_username",
        "redis_password",
        "mlflow_tracking_username",
        "mlflow_tracking_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose passes `${VAR:-}` as an empty string: that means "not set".
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        if self.kafka_security_protocol.uses_sasl and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"kafka_security_protocol={self.kafka_security_protocol.value} needs "
                "GAVEL_KAFKA_SASL_USERNAME and GAVEL_KAFKA_SASL_PASSWORD"
            )
        if self.kafka_ssl_ca_file is not None and not self.kafka_ssl_ca_file.is_file():
            raise ValueError(f"kafka_ssl_ca_file {self.kafka_ssl_ca_file} is not a file")
        if bool(self.mlflow_tracking_username) != bool(self.mlflow_tracking_password):
            raise ValueError("MLflow basic auth needs both a username and a password")
        return self

    def secrets(self) -> list[str]:
        """Every secret value in these settings, to keep out of logs."""
        values = [secret.get_secret_value() for _, _, secret in _secret_fields(self)]
        for url in (self.redis_url, self.mlflow_tracking_uri):
            password = urlsplit(url).password
            if password:
                values.append(password)
        return values

    @property
    def redis_display_url(self) -> str:
        """The Redis URL without any password in it, for logs and status tables."""
        return redact_url(self.redis_url)

    @property
    def mlflow_display_uri(self) -> str:
        return redact_url(self.mlflow_tracking_uri)

    def topic(self, name: str) -> str:
        """The namespaced name of a topic from :mod:`gavel.topics`."""
        return f"{self.namespace}{name}"

    def group(self, service: str) -> str:
        """The namespaced consumer-group (or Faust app) id of a service."""
        return f"{self.namespace}gavel-{service}"

    def _explicit_values(self, mode: str = "python") -> dict[str, Any]:
        values = self.model_dump(mode=mode)
        for name, local in self._local_connections().items():
            if values[name] == local:
                del values[name]  # derived from the ports: let it follow them
        return values

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``; connection URLs follow changed ports unless set explicitly.

        A nested group (``stack``, ``monitor``, ``trainer``) given as a dict changes only
        the fields it names.
        """
        values = self._explicit_values()
        for name, change in changes.items():
            if isinstance(change, dict) and isinstance(values.get(name), dict):
                change = {**values[name], **change}
            values[name] = change
        return Settings(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as GAVEL_* variables, to hand to a child process.

        Secrets are passed in clear: the environment of a child is not a log.
        """
        env: dict[str, str] = {}
        values = self._explicit_values(mode="json")
        for group, name, secret in _secret_fields(self):
            holder = values if group is None else values[group]
            holder[name] = secret.get_secret_value()
        for key, value in values.items():
            if value is None:
                continue  # unset: the child takes the same default
            if isinstance(value, dict):
                env |= {
                    f"GAVEL_{key.upper()}__{k.upper()}": _env_text(v)
                    for k, v in value.items()
                    if v is not None
                }
            else:
                env[f"GAVEL_{key.upper()}"] = _env_text(value)
        return env


def _secret_fields(settings: Settings) -> list[tuple[str | None, str, SecretStr]]:
    """(group or None, field, value) of every secret set, nested groups included."""
    found: list[tuple[str | None, str, SecretStr]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            found.append((None, name, value))
        elif isinstance(value, BaseModel):
            for inner in type(value).model_fields:
                secret = getattr(value, inner)
                if isinstance(secret, SecretStr):
                    found.append((name, inner, secret))
    return found


def redact_url(url: str) -> str:
    """``url`` with the password of its user part masked.

    >>> redact_url("redis://gavel:s3cret@cache:6379/0")
    'redis://gavel:***@cache:6379/0'
    >>> redact_url("http://127.0.0.1:5000")
    'http://127.0.0.1:5000'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _env_text(value: object) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; their secrets are masked in every log."""
    from gavel.logs import redact_secrets

    settings = Settings()
    redact_secrets(settings.secrets())
    return settings
