"""The contracts stay light: a consumer of Gavel's topics imports them without the
services' dependencies (the base install has only pydantic, numpy and pandas)."""

from __future__ import annotations

import subprocess
import sys

CONTRACTS = [
    "gavel.schemas",
    "gavel.settings",
    "gavel.topics",
    "gavel.features",
    "gavel.times",
    "gavel.market",
]
HEAVY = ["mlflow", "confluent_kafka", "faust", "evidently", "xgboost", "sklearn", "redis", "shell"]


def test_importing_the_contracts_loads_no_service_dependency() -> None:
    probe = (
        f"import sys\nfor name in {CONTRACTS!r}: __import__(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", f"the contracts pull in {result.stdout.strip()}"


def test_the_probe_would_see_a_heavy_import() -> None:
    probe = "import sys, confluent_kafka\nprint('confluent_kafka' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "True"
