"""``gavel worker`` with Faust options changed, for the benchmarks only (not part of Gavel).

``GAVEL_BENCH_FAUST`` holds a JSON object merged over the worker's Faust settings (say
``{"broker_max_poll_records": 2000}``, or ``{"broker": "confluent://127.0.0.1:9092"}``
for Faust's confluent-kafka driver), so that a benchmark can compare variants without a
setting in Gavel for each.

Usage: GAVEL_BENCH_FAUST='{...}' python bench/worker_variant.py [gavel worker options]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gavel.settings import Settings
from stream_app import app as worker_app

_original = worker_app.faust_settings


def _with_overrides(settings: Settings) -> dict[str, Any]:
    return {**_original(settings), **json.loads(os.environ.get("GAVEL_BENCH_FAUST", "{}"))}


worker_app.faust_settings = _with_overrides  # type: ignore[assignment]  # a benchmark's variant

if __name__ == "__main__":
    from shell.cli import app

    sys.argv = ["gavel", "worker", *sys.argv[1:]]
    app()
