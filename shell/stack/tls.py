"""A self-signed CA and broker keystore for the local stack's SASL_SSL listener.

For trying TLS locally and for tests; a real cluster has certificates of its own.
Made with ``openssl`` (on every Debian machine)::

    ca, keystore = make_broker_keystore(Path(".stack/tls"), "keystore-password")
    # GAVEL_STACK__KAFKA_KEYSTORE=<keystore>, GAVEL_KAFKA_SSL_CA_FILE=<ca>
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shell.stack.process import StackError


def _openssl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("openssl is needed to make certificates (apt-get install -y openssl).")
    result = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{result.stderr[-1500:]}")


def make_broker_keystore(
    directory: Path, keystore_password: str, host: str = "127.0.0.1", days: int = 30
) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``broker.p12`` (PKCS12, the broker's key and a certificate for
    ``host`` signed by the CA) into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # private keys
    valid = str(days)
    # fmt: off
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", valid, "-subj", "/CN=gavel-local-ca", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key",
             "-out", "broker.csr", "-subj", f"/CN={host}", cwd=directory)
    san = f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"
    (directory / "san.cnf").write_text(f"subjectAltName={san},DNS:localhost\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "broker.pem", "-days", valid, "-extfile", "san.cnf",
             cwd=directory)
    _openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
             "-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12",
             "-passout", "env:GAVEL_KEYSTORE_PASSWORD", cwd=directory,
             env={"GAVEL_KEYSTORE_PASSWORD": keystore_password})  # not on a command line
    # fmt: on
    return directory / "ca.pem", directory / "broker.p12"
