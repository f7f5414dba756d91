"""Gavel on a secured stack: Kafka over SASL_SSL, Redis with a password, MLflow with
basic auth. The services work with credentials, clients without them are refused, and
no secret reaches a log or `gavel stack status`.

The stack here is a second one of the test's own (fresh ports and state, the shared
stack's Kafka jars), so that the shared broker keeps its configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console

from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from producers.replay import ReplayOptions, replay
from producers.sources.synthetic import generate_auctions
from shell import redis_client
from shell.kafka import client_config, ensure_topics
from shell.stack import manager
from shell.stack.components import Kafka
from shell.stack.tls import make_broker_keystore
from tests.e2e.conftest import worker_health_url
from tests.e2e.test_monitor import read_records
from tests.helpers import consume, free_port, http_ok, service, wait_for
from tests.integration.trainer_fixtures import (
    send_alert,
    train_first_champion,
    trainer_process,
    trainer_settings,
    wait_trained,
)
from trainer.service import TrainerStore

pytestmark = pytest.mark.e2e

LISTINGS = 3000


@dataclass
class SecuredStack:
    server: Settings  # how the stack itself is configured
    client: Settings  # what a Gavel service is given: SASL_SSL and every credential
    secrets: list[str]
    workdir: Path

    def without(self, **changes: object) -> Settings:
        return self.client.replace(**changes)


@pytest.fixture(scope="module")
def secured(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    root = tmp_path_factory.mktemp("secured")
    tag = uuid.uuid4().hex[:10]
    passwords = {
        "keystore": f"ks-{tag}",
        "kafka": f"kafka-{tag}",
        "redis": f"redis-{tag}",
        "mlflow": f"mlflow-{tag}",
    }
    ca, keystore = make_broker_keystore(root / "tls", passwords["keystore"])
    server = Settings(
        stack={
            "dir": root / "stack",
            "kafka_version": stack.stack.kafka_version,
            "kafka_controller_port": free_port(),
            "kafka_sasl_ssl_port": free_port(),
            "kafka_keystore": keystore,
            "kafka_keystore_password": passwords["keystore"],
        },
        kafka_port=free_port(),
        redis_port=free_port(),
        mlflow_port=free_port(),
        kafka_sasl_username="gavel",
        kafka_sasl_password=passwords["kafka"],
        redis_password=passwords["redis"],
        mlflow_tracking_username="gavel-admin",
        mlflow_tracking_password=passwords["mlflow"],
        topic_partitions=2,
    )
    # The shared stack has fetched the Kafka jars already.
    libs = Kafka(server).libs_dir
    libs.parent.mkdir(parents=True)
    libs.symlink_to(Kafka(stack).libs_dir)
    client = server.replace(
        kafka_bootstrap=f"{server.host}:{server.stack.kafka_sasl_ssl_port}",
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=ca,
        namespace=f"secured-{tag}.",
        model_name=f"gavel-secured-{tag}",
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        worker_model_cache_dir=root / "model-cache",
        reports_dir=root / "reports",
    )
    started = time.monotonic()
    try:
        manager.up(client, manager.CORE, console=Console(stderr=True, quiet=True))
    except BaseException:
        for name in manager.CORE:
            log = server.stack.dir / "logs" / f"{name}.log"
            if log.exists():
                print(f"--- {name} log ---\n{log.read_text(errors='replace')[-3000:]}")
        manager.down(server, manager.CORE, console=Console(stderr=True, quiet=True))
        raise
    print(f"secured stack up in {time.monotonic() - started:.1f}s")
    ensure_topics(client)
    try:
        yield SecuredStack(server, client, list(passwords.values()), root / "services")
    finally:
        manager.down(server, manager.CORE, console=Console(stderr=True, quiet=True))


def test_replay_worker_monitor_and_trainer_work_over_sasl_ssl_with_credentials(
    secured: SecuredStack,
) -> None:
    settings = trainer_settings(secured.client)
    began = time.monotonic()
    champion = train_first_champion(settings)
    print(f"champion trained and registered in {time.monotonic() - began:.1f}s")
    frame = generate_auctions(LISTINGS, start="2015-03-01", end="2015-03-20", seed=5)
    health = worker_health_url(settings)
    metrics = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    workdir = secured.workdir
    monitor_up = lambda: read_records(metrics) >= 0  # noqa: E731
    store = TrainerStore(settings)
    with (
        service("worker", ["worker"], settings, workdir, ready=http_ok(health)),
        service("monitor", ["monitor"], settings, workdir, ready=monitor_up),
        trainer_process(settings, workdir) as trainer,
    ):
        print(f"worker, monitor and trainer up {time.monotonic() - began:.1f}s after the start")
        started = time.monotonic()
        stats = replay(frame, settings, ReplayOptions(with_sales=True))
        replayed_s = time.monotonic() - started
        assert stats.failed == 0 and stats.acked == stats.sent
        scored = consume(settings, PRICES_SCORED, until=lambda records: len(records) >= LISTINGS)
        scored_s = time.monotonic() - started
        assert {r.key for r in scored} == set(frame["auction_id"])
        assert {r.json()["model_version"] for r in scored} == {champion.version}
        wait_for(
            lambda: read_records(metrics) >= LISTINGS + stats.sales,
            60,
            "the monitor reading the scored listings and their sales over SASL_SSL",
            progress=lambda: read_records(metrics),
        )
        # The trainer reads the replayed window back over SASL_SSL and trains on it.
        alert = send_alert(settings, champion.version)
        done = wait_trained(store, trainer, timeout_s=300)
    assert [d["alert_id"] for d in done] == [alert.alert_id]
    assert done[0]["skipped"] == {
        PRICES_SCORED: {"read": LISTINGS, "skipped": {}},
        AUCTIONS_SOLD: {"read": stats.sales, "skipped": {}},
    }
    print(
        f"over SASL_SSL: replay {stats.sent:,} events in {replayed_s:.1f}s "
        f"({stats.rate:,.0f} events/s); {LISTINGS:,} listings scored {scored_s:.1f}s after "
        f"the replay began; trained on them {time.monotonic() - started:.1f}s after it began"
    )


def test_a_wrong_password_and_a_client_without_tls_are_refused(secured: SecuredStack) -> None:
    def reaches_broker(settings: Settings, timeout_s: float = 3.0) -> bool:
        admin = AdminClient({**client_config(settings), "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=timeout_s).brokers)
        except KafkaException:
            return False

    assert reaches_broker(secured.client, timeout_s=20)
    plain = secured.client.replace(kafka_sasl_mechanism="PLAIN")
    assert reaches_broker(plain, timeout_s=20), "PLAIN logins are served too"
    assert not reaches_broker(secured.client.replace(kafka_sasl_password="wrong-password"))
    assert not reaches_broker(
        plain.replace(kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_ca_file=None)
    ), "a client without TLS"
    assert not reaches_broker(secured.client.replace(kafka_ssl_ca_file=None)), (
        "the broker's certificate is trusted only through the test's CA"
    )


def test_redis_and_mlflow_refuse_clients_without_credentials_and_say_so(
    secured: SecuredStack,
) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis_client.connect(secured.without(redis_password=None), timeout_s=3).ping()
    with pytest.raises(redis.AuthenticationError):
        redis_client.connect(secured.without(redis_password="wrong-password"), timeout_s=3).ping()
    assert redis_client.connect(secured.client, timeout_s=3).ping()

    anonymous = secured.without(mlflow_tracking_username=None, mlflow_tracking_password=None)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_TRACKING_", "GAVEL_"))
    }
    env |= {**anonymous.to_env(), "COLUMNS": "200"}
    status = subprocess.run(
        [sys.executable, "-m", "shell.cli", "trainer", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = status.stdout + status.stderr
    print(output[-2000:])
    assert status.returncode == 1
    assert "MLflow refused the credentials" in output

    store = TrainerStore(secured.without(redis_password=None))
    with pytest.raises(redis.AuthenticationError):
        store.load()


def test_no_secret_appears_in_any_log_or_in_stack_status(secured: SecuredStack) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAVEL_")}
    status = subprocess.run(
        [sys.executable, "-m", "shell.cli", "stack", "status"],
        env={**env, **secured.client.to_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "healthy" in status.stdout
    logs = {
        path: path.read_text(errors="replace")
        for directory in (secured.server.stack.dir, secured.workdir)
        for path in directory.rglob("*.log")
    }
    services = {path.stem for path in logs}
    assert {"kafka", "redis", "mlflow", "worker", "monitor", "trainer"} <= services, services
    assert sum(len(text) for text in logs.values()) > 10_000, "the services did log"
    for secret in secured.secrets:
        assert secret not in status.stdout + status.stderr, f"stack status shows {secret}"
        for path, text in logs.items():
            assert secret not in text, f"{path} contains a secret"
