"""The servers of the local stack: Kafka (KRaft), Redis and MLflow, plus Prometheus on request.

Each component knows how to get its prerequisites, start, and check its health.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import httpx
from pydantic import SecretStr

from gavel.settings import PROJECT_ROOT, Settings
from shell.stack.process import ManagedProcess, StackError

KAFKA_RECIPE = PROJECT_ROOT / "deploy" / "local" / "kafka"
MIN_JAVA = 17


class Component(ABC):
    name: str
    start_timeout_s: float = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.stack.dir)

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    @abstractmethod
    def address(self) -> str: ...

    def prepare(self) -> None:  # noqa: B027 - most servers need nothing beforehand
        """Fetch or install what the server needs; idempotent."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def healthy(self) -> bool: ...

    def start(self) -> int:
        return self.process.start(self.command(), cwd=self.settings.stack.dir)

    def after_start(self) -> None:  # noqa: B027 - most servers need nothing afterwards
        """Set up what needs the running server (users, for example); idempotent."""

    @property
    def home(self) -> Path:
        return self.settings.stack.dir / self.name


class Kafka(Component):
    """Apache Kafka, one node acting as broker and KRaft controller."""

    name = "kafka"
    start_timeout_s = 90.0

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def internal_address(self) -> str:
        """The broker's own PLAINTEXT listener, which the stack itself uses."""
        return f"{self.settings.host}:{self.settings.kafka_port}"

    @property
    def libs_dir(self) -> Path:
        return self.home / f"libs-{self.settings.stack.kafka_version}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> None:
        java = require_java()
        self.fetch_jars()
        self.write_config()
        if not (self.data_dir / "meta.properties").exists():
            self.format_storage(java)

    def fetch_jars(self) -> None:
        marker = self.libs_dir / f"kafka_2.13-{self.settings.stack.kafka_version}.jar"
        if marker.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central. "
                "Install it (apt-get install -y maven) and run `gavel stack up` again."
            )
        staging = self.libs_dir.with_name(self.libs_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(KAFKA_RECIPE / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={self.settings.stack.kafka_version}",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not (staging / marker.name).exists():
            raise StackError(
                "Maven could not fetch the Kafka jars (is Maven Central reachable?):\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        staging.rename(self.libs_dir)

    def write_config(self) -> None:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        voters = f"1@{s.host}:{s.stack.kafka_controller_port}"
        listeners = [f"PLAINTEXT://{s.host}:{s.kafka_port}"]
        if s.stack.kafka_sasl_ssl_port is not None:
            listeners.append(f"SASL_SSL://{s.host}:{s.stack.kafka_sasl_ssl_port}")
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": voters,
            "listeners": ",".join(
                [*listeners, f"CONTROLLER://{s.host}:{s.stack.kafka_controller_port}"]
            ),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL"
            ),
            "log.dirs": str(self.data_dir),
            "num.partitions": str(s.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            **self.secure_listener_properties(),
        }
        text = "# Written by `gavel stack up`; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in properties.items())
        write_private(self.config_file, text)

    def secure_listener_properties(self) -> dict[str, str]:
        """The SASL_SSL listener: TLS from the keystore, PLAIN and SCRAM logins.

        The PLAIN user is written into the JAAS line; SCRAM users live in the cluster
        metadata and are added by :meth:`after_start`.
        """
        s = self.settings
        if s.stack.kafka_sasl_ssl_port is None or s.stack.kafka_keystore is None:
            return {}
        keystore_password = secret_text(s.stack.kafka_keystore_password)
        plain_users = ""
        if s.kafka_sasl_username and s.kafka_sasl_password:
            password = jaas_quote(s.kafka_sasl_password.get_secret_value())
            plain_users = f' user_{s.kafka_sasl_username}="{password}"'
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        prefix = "listener.name.sasl_ssl."
        return {
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            prefix + "plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"
            ),
            prefix + "scram-sha-256.sasl.jaas.config": scram,
            prefix + "scram-sha-512.sasl.jaas.config": scram,
            prefix + "ssl.keystore.type": "PKCS12",
            prefix + "ssl.keystore.location": str(s.stack.kafka_keystore),
            prefix + "ssl.keystore.password": keystore_password,
            prefix + "ssl.key.password": keystore_password,
        }

    def after_start(self) -> None:
        """Create (or update) the SCRAM user of the settings for the SASL_SSL listener."""
        s = self.settings
        if s.stack.kafka_sasl_ssl_port is None or not s.kafka_sasl_username:
            return
        from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports the SCRAM classes without __all__
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        password = secret_text(s.kafka_sasl_password).encode()
        admin = AdminClient({"bootstrap.servers": self.internal_address, "log_level": 0})
        # One request per mechanism: Kafka refuses two changes of one user in a request.
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            upsert = UserScramCredentialUpsertion(
                s.kafka_sasl_username, ScramCredentialInfo(mechanism, 8192), password
            )
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result(timeout=30)

    def format_storage(self, java: str) -> None:
        storage_tool = [java, "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool"]
        cluster_id = subprocess.run(
            [*storage_tool, "random-uuid"], capture_output=True, text=True, check=True
        ).stdout.strip()
        config = str(self.config_file)
        result = subprocess.run(
            [*storage_tool, "format", "-t", cluster_id, "-c", config, "--ignore-formatted"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")

    def command(self) -> list[str]:
        heap = self.settings.stack.kafka_heap_mb
        return [
            require_java(),
            f"-Xmx{heap}m",
            f"-Xms{min(heap, 256)}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{KAFKA_RECIPE / 'log4j.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.config_file),
        ]

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.internal_address, "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False


class Redis(Component):
    name = "redis"
    start_timeout_s = 15.0

    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def address(self) -> str:
        return self.settings.redis_display_url

    @property
    def config_file(self) -> Path:
        return self.home / "redis.conf"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if find_redis_server() is None:
            apt_install("redis-server", binary="redis-server")
        write_private(self.config_file, self.config_text())

    def config_text(self) -> str:
        """The password lives in a private file: a command line is visible to everyone."""
        s = self.settings
        text = "# Written by `gavel stack up`; edits are overwritten.\n"
        if s.redis_password is None:
            return text
        password = s.redis_password.get_secret_value()
        if any(c.isspace() for c in password):
            raise StackError("the local Redis takes no whitespace in GAVEL_REDIS_PASSWORD")
        if s.redis_username and s.redis_username != "default":
            return text + f"user default off\nuser {s.redis_username} on >{password} ~* &* +@all\n"
        return text + f"requirepass {password}\n"

    def command(self) -> list[str]:
        server = find_redis_server()
        if server is None:
            raise StackError("redis-server is not installed (apt-get install -y redis-server).")
        return [
            server,
            str(self.config_file),
            "--port",
            str(self.port),
            "--bind",
            self.settings.host,
            "--dir",
            str(self.home),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]

    def healthy(self) -> bool:
        from shell import redis_client

        try:
            return bool(redis_client.connect(self.settings, timeout_s=1).ping())
        except Exception:
            return False


# MLflow 3's server starts a job runner with seven huey consumers (about 250 MB each,
# 1.7 GB together) for jobs Gavel never submits. Measured: the server's processes took
# 2.46 GB of RSS with them, 0.50 GB without.
JOBS_OFF = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MLflow(Component):
    """An MLflow tracking server and model registry on sqlite with local artifacts."""

    name = "mlflow"
    start_timeout_s = 120.0

    @property
    def port(self) -> int:
        return self.settings.mlflow_port

    @property
    def address(self) -> str:
        return self.settings.mlflow_display_uri

    @property
    def auth_config_file(self) -> Path:
        return self.home / "basic_auth.ini"

    @property
    def secured(self) -> bool:
        return bool(self.settings.mlflow_tracking_username)

    def prepare(self) -> None:
        (self.home / "artifacts").mkdir(parents=True, exist_ok=True)
        if self.secured:
            write_private(self.auth_config_file, self.auth_config_text())

    def flask_secret_key(self) -> str:
        """The key of the auth app's CSRF tokens, made once and kept with the server."""
        path = self.home / "flask_secret_key"
        if not path.exists():
            write_private(path, secrets.token_hex(32))
        return path.read_text().strip()

    def auth_config_text(self) -> str:
        """MLflow's basic-auth app; the settings' user is its admin, others get nothing."""
        s = self.settings
        return (
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{self.home / 'basic_auth.db'}\n"
            f"admin_username = {s.mlflow_tracking_username}\n"
            f"admin_password = {secret_text(s.mlflow_tracking_password)}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )

    def start(self) -> int:
        env = {**os.environ, **JOBS_OFF}
        if self.secured:
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth_config_file)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.flask_secret_key()
        return self.process.start(self.command(), cwd=self.settings.stack.dir, env=env)

    def command(self) -> list[str]:
        auth = ["--app-name", "basic-auth"] if self.secured else []
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            *auth,
            "--backend-store-uri",
            f"sqlite:///{self.home / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.home / "artifacts"),
            "--host",
            self.settings.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def healthy(self) -> bool:
        try:
            url = f"{self.settings.mlflow_tracking_uri}/health"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class Prometheus(Component):
    """Debian's Prometheus server, scraping the Gavel services (used to check dashboards)."""

    name = "prometheus"
    start_timeout_s = 30.0

    @property
    def port(self) -> int:
        return self.settings.stack.prometheus_port

    @property
    def address(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if shutil.which("prometheus") is None:
            apt_install("prometheus", binary="prometheus")
        self.config_file.write_text(local_prometheus_config(self.settings))

    def command(self) -> list[str]:
        return [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address={self.settings.host}:{self.port}",
            "--storage.tsdb.retention.time=2d",
        ]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.address}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def local_prometheus_config(settings: Settings) -> str:
    """deploy/prometheus.yml with the targets moved to the local ports.

    Workers: the port of each of up to one worker per partition, as `gavel worker
    --processes N` numbers them (the ports of workers not running show as down).
    """
    host = settings.host
    scrape_interval_s = settings.stack.prometheus_scrape_interval_s
    ports = range(settings.worker_web_port, settings.worker_web_port + settings.topic_partitions)
    workers = ", ".join(f'"{host}:{port}"' for port in ports)
    return f"""# Written by `gavel stack up --with-prometheus`; mirrors deploy/prometheus.yml.
global:
  scrape_interval: {scrape_interval_s:g}s
  evaluation_interval: {scrape_interval_s:g}s
scrape_configs:
  - job_name: gavel-worker
    static_configs:
      - targets: [{workers}]
  - job_name: gavel-monitor
    static_configs:
      - targets: ["{host}:{settings.monitor_metrics_port}"]
"""


def secret_text(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


def jaas_quote(text: str) -> str:
    """``text`` inside a JAAS double-quoted value in a properties file."""
    if "\n" in text or "\r" in text:
        raise StackError("a Kafka password cannot contain a line break")
    return text.replace("\\", "\\\\\\\\").replace('"', '\\\\"')


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it may hold passwords."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def require_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            f"Java {MIN_JAVA}+ is needed to run Kafka and was not found. "
            "Install it (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME."
        )
    version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise StackError(
            f"Kafka here runs on Java {MIN_JAVA}+, but {java} is Java {major}. "
            "Install openjdk-17-jre-headless or point JAVA_HOME at a newer JDK."
        )
    return java


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def apt_install(package: str, *, binary: str) -> None:
    """Install a Debian package when running as root; otherwise say how."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"{binary} is not installed. Install it with `sudo apt-get install -y {package}` "
            "and run the command again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep apt from starting the distribution's own service on our ports.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        ):
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(f"`{' '.join(argv)}` failed:\n{result.stderr[-1500:]}")
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
