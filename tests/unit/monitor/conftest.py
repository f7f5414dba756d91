"""Shared synthetic frames for the monitor tests (seeded, small, fast)."""

from __future__ import annotations

import pandas as pd
import pytest

from producers.sources.synthetic import generate_auctions
from tests.unit.monitor.helpers import REFERENCE_ROWS, with_prediction


@pytest.fixture(scope="session")
def reference_sample() -> pd.DataFrame:
    """A reference-like frame: raw listing columns, ``prediction`` and ``sellingprice``."""
    raw = generate_auctions(REFERENCE_ROWS, start="2015-01-01", end="2015-03-01", seed=1)
    return with_prediction(raw)
