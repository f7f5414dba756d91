"""Settings shared by every Gavel service.

Values come from ``GAVEL_*`` environment variables and an optional ``.env``
file; the defaults point at the local stack that ``gavel stack up`` starts.

>>> s = Settings(kafka_port=19092)
>>> s.kafka_bootstrap
'127.0.0.1:19092'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GAVEL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Local stack
    stack_dir: Path = Field(PROJECT_ROOT / ".stack", description="All local-stack state.")
    host: str = "127.0.0.1"
    bind_host: str = Field("127.0.0.1", description="Where service HTTP endpoints listen.")
    kafka_version: str = "3.9.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap_mb: int = Field(512, le=512, ge=128)
    redis_port: int = 6379
    mlflow_port: int = 5000
    prometheus_port: int = 9090

    # Connections (derived from the ports unless set explicitly)
    kafka_bootstrap: str = ""
    redis_url: str = ""
    mlflow_tracking_uri: str = ""

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
    worker_batch_within_s: float = Field(0.05, gt=0)
    worker_poll_alias_s: float = Field(30.0, gt=0)
    monitor_metrics_port: int = 9108
    reports_dir: Path = Field(PROJECT_ROOT / "reports")

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

    @property
    def champion_uri(self) -> str:
        return f"models:/{self.model_name}@champion"

    def topic(self, name: str) -> str:
        """The namespaced name of a topic from :mod:`gavel.topics`."""
        return f"{self.namespace}{name}"

    def group(self, service: str) -> str:
        """The namespaced consumer-group (or Faust app) id of a service."""
        return f"{self.namespace}gavel-{service}"

    def _explicit_values(self, mode: str = "python") -> dict[str, object]:
        values = self.model_dump(mode=mode)
        for name, local in self._local_connections().items():
            if values[name] == local:
                del values[name]  # derived from the ports: let it follow them
        return values

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes``; connection URLs follow changed ports unless set explicitly."""
        return Settings(**{**self._explicit_values(), **changes})

    def to_env(self) -> dict[str, str]:
        """These settings as GAVEL_* variables, to hand to a child process."""
        values = self._explicit_values(mode="json")
        return {f"GAVEL_{key.upper()}": str(value) for key, value in values.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
