"""`gavel train` on the shared Kaggle sample, through the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gavel.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]


def test_training_on_the_real_sample_reports_mape_next_to_mmr(
    isolated: Settings, sample_csv: Path
) -> None:
    env = {**os.environ, **isolated.to_env(), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "shell.cli", "train", "--source", str(sample_csv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        label: float(mape)
        for label, mape in re.findall(
            r"│ (XGBoost \(registered\)|MMR estimate)\s*│\s*([\d.]+)%", result.stdout
        )
    }
    assert set(rows) == {"XGBoost (registered)", "MMR estimate"}, result.stdout
    assert 0 < rows["XGBoost (registered)"] < 100 and 0 < rows["MMR estimate"] < 100
    assert "promoted" in result.stdout
