"""Consistency of the deployment files with the code: the Grafana dashboard's PromQL only uses
metrics the services export, docker-compose.yml runs the Kafka version the local stack runs,
and deploy/prometheus.yml has the jobs `gavel stack up --with-prometheus` writes."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gavel.settings import PROJECT_ROOT, Settings, StackSettings
from monitor.metrics import MonitorMetrics
from shell.stack.components import local_prometheus_config
from stream_app.metrics import WorkerMetrics

DEPLOY = PROJECT_ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gavel.json"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER = DEPLOY / "grafana" / "provisioning" / "dashboards" / "gavel.yml"
PROMETHEUS = DEPLOY / "prometheus.yml"
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
KAFKA_POM = DEPLOY / "local" / "kafka" / "pom.xml"

METRIC_NAME = re.compile(r"\bgavel_[a-zA-Z0-9_:]*")


# -- a small loader, the same reading an integration test can use ---------------------------


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query target of every panel."""
    return [
        (panel.get("title", ""), target)
        for panel in iter_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for _, target in dashboard_targets(dashboard)]


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """The series names a registry exposes, also for labelled metrics without children yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def is_setting(variable: str) -> bool:
    """Whether GAVEL_<FIELD> or GAVEL_<GROUP>__<FIELD> names a field of the settings."""
    model: Any = Settings
    for part in variable.removeprefix("GAVEL_").lower().split("__"):
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return True


def default(field: str) -> Any:
    """A setting's default, unaffected by GAVEL_* variables of the test environment."""
    if field in StackSettings.model_fields:
        return StackSettings.model_fields[field].default
    return Settings.model_fields[field].default


# -- the dashboard ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    return exposed_names(WorkerMetrics().registry) | exposed_names(MonitorMetrics().registry)


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "gavel-drift"
    assert dashboard["title"] == "Gavel — scoring and drift"
    assert dashboard["refresh"] == "5s"
    assert dashboard["time"] == {"from": "now-30m", "to": "now"}
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["templating"]["list"] == []
    ids = [panel["id"] for panel in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_target_has_a_runnable_expr(dashboard: dict[str, Any]) -> None:
    targets = dashboard_targets(dashboard)
    assert len(targets) >= 15
    for title, target in targets:
        expr = target.get("expr", "")
        assert expr.strip(), f"panel {title!r} has a target without expr"
        assert "$" not in expr, f"panel {title!r}: no template variables, {expr!r}"
        assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
        assert METRIC_NAME.search(expr), f"panel {title!r} reads no Gavel metric: {expr!r}"
    for panel in iter_panels(dashboard["panels"]):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"duplicate refId in {panel['title']!r}"


def test_every_metric_in_the_dashboard_is_exported(
    dashboard: dict[str, Any], known_metrics: set[str]
) -> None:
    used = {name for expr in dashboard_exprs(dashboard) for name in METRIC_NAME.findall(expr)}
    unknown = used - known_metrics
    assert not unknown, f"not exported by stream_app/metrics.py or monitor/metrics.py: {unknown}"


def test_the_loader_sees_the_main_panels(dashboard: dict[str, Any]) -> None:
    titles = {title for title, _ in dashboard_targets(dashboard)}
    assert {
        "Drift score per feature",
        "Share of drifted features",
        "Prediction drift",
        "Rolling MAPE vs reference",
        "Drift alerts",
        "Throughput",
        "Consumer lag",
        "Dead-letter rate",
        "Model version",
    } <= titles


def test_rate_windows_cover_a_short_test_run(dashboard: dict[str, Any]) -> None:
    for expr in dashboard_exprs(dashboard):
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in {"1m", "1h"}, f"unexpected range [{window}] in {expr!r}"


def test_is_setting_reads_nested_groups() -> None:
    assert is_setting("GAVEL_KAFKA_BOOTSTRAP")
    assert is_setting("GAVEL_MONITOR__WINDOW_EVENTS")
    assert not is_setting("GAVEL_MONITOR__NO_SUCH_FIELD")
    assert not is_setting("GAVEL_KAFKA_BOOTSTRAP__X")
    assert not is_setting("GAVEL_NO_SUCH_FIELD")


def test_exposed_names_follow_the_exposition_format() -> None:
    names = exposed_names(WorkerMetrics().registry)
    assert "gavel_worker_events_scored_total" in names
    assert "gavel_worker_events_deadlettered_total" in names  # labelled, no child yet
    assert "gavel_worker_event_latency_seconds_bucket" in names
    assert "gavel_worker_consumer_lag" in names
    assert "gavel_worker_events_scored" not in names


def test_grafana_provisioning_matches_the_dashboard() -> None:
    (datasource,) = yaml_file(DATASOURCE)["datasources"]
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    (provider,) = yaml_file(PROVIDER)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# -- docker-compose.yml and the Kafka version ------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml_file(COMPOSE)


def pom_kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", ns)
    assert version is not None and version.text
    return version.text.strip()


def test_compose_runs_the_kafka_version_of_the_local_stack(compose: dict[str, Any]) -> None:
    image = compose["services"]["kafka"]["image"]
    repository, _, tag = image.partition(":")
    assert repository == "apache/kafka"
    assert tag == default("kafka_version") == pom_kafka_version()


def test_compose_gavel_environment_names_real_settings(compose: dict[str, Any]) -> None:
    env = compose["x-gavel-env"]
    assert env["GAVEL_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["GAVEL_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["GAVEL_BIND_HOST"] == "0.0.0.0"
    for service in compose["services"].values():
        for key in service.get("environment") or {}:
            if key.startswith("GAVEL_"):
                assert is_setting(key), f"{key} names no field of gavel.settings.Settings"


def test_compose_services_use_the_settings_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["worker"]["command"] == ["worker"]
    assert services["monitor"]["command"] == ["monitor"]
    # A range of host ports, one per replica of `--scale worker=N`, from the default port.
    assert f":{default('worker_web_port')}-" in services["worker"]["ports"][0]
    assert services["worker"]["ports"][0].endswith(":6066")
    assert f"{default('monitor_metrics_port')}:9108" in services["monitor"]["ports"][0]
    assert services["replay"]["profiles"] == ["replay"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"


# -- deploy/prometheus.yml -------------------------------------------------------------------


def scrape_jobs(config: dict[str, Any]) -> dict[str, list[str]]:
    """Each job's targets: static ones, and DNS names as name:port."""
    jobs: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            targets += [f"{name}:{sd['port']}" for name in sd["names"]]
        jobs[job["job_name"]] = targets
    return jobs


def test_prometheus_config_mirrors_the_local_one() -> None:
    deployed = yaml_file(PROMETHEUS)
    local = yaml.safe_load(local_prometheus_config(Settings()))
    assert (
        set(scrape_jobs(deployed))
        == set(scrape_jobs(local))
        == {
            "gavel-worker",
            "gavel-monitor",
        }
    )
    assert deployed["global"]["scrape_interval"] == local["global"]["scrape_interval"] == "5s"
    assert scrape_jobs(deployed) == {
        "gavel-worker": [f"worker:{default('worker_web_port')}"],
        "gavel-monitor": [f"monitor:{default('monitor_metrics_port')}"],
    }
    first = default("worker_web_port")
    local_workers = scrape_jobs(local)["gavel-worker"]
    assert local_workers[0] == f"127.0.0.1:{first}"
    assert len(local_workers) == default("topic_partitions")  # one per --processes child
