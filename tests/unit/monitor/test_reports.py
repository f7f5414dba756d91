"""Tests for monitor.reports: HTML reports for alerting windows, never fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently import Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift

from gavel.schemas import DriftKind
from monitor.reports import ReportWriter


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    current = Dataset.from_pandas(pd.DataFrame({"x": np.arange(40.0)}))
    reference = Dataset.from_pandas(pd.DataFrame({"x": np.arange(40.0) + 5}))
    return Report([ValueDrift(column="x")]).run(current, reference)


def priced(n: int, factor: float) -> pd.DataFrame:
    actual = np.linspace(5_000.0, 30_000.0, n)
    return pd.DataFrame(
        {
            "make": ["ford", "kia", "bmw"] * (n // 3),
            "prediction": actual * factor,
            "sellingprice": actual,
        }
    )


def is_html(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return "<html" in text[:500].lower() and len(text) > 1_000


@pytest.mark.parametrize("kind", list(DriftKind))
def test_path_for(tmp_path: Path, kind: DriftKind) -> None:
    writer = ReportWriter(tmp_path / "reports")
    at = datetime(2015, 4, 1, 9, 5, 7, tzinfo=UTC)
    path = writer.path_for(kind, "0123456789abcdef", at)
    assert path == tmp_path / "reports" / f"20150401T090507-{kind.value}-01234567.html"


def test_save_snapshot_writes_html_and_makes_directories(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    path = tmp_path / "deep" / "er" / "report.html"
    assert ReportWriter(tmp_path).save_snapshot(snapshot, path) == path
    assert is_html(path)


def test_performance_writes_html(tmp_path: Path) -> None:
    window = priced(90, 1.2)
    reference = priced(300, 1.0).assign(year=2012.0)  # extra columns are left out
    path = tmp_path / "perf.html"
    assert ReportWriter(tmp_path).performance(window, reference, path) == path
    assert is_html(path)


def test_save_snapshot_swallows_errors(tmp_path: Path, snapshot: Snapshot) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "report.html"  # its parent is a file: cannot be created
    assert ReportWriter(tmp_path).save_snapshot(snapshot, path) is None
    assert not path.exists()


def test_performance_swallows_write_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = blocker / "sub" / "perf.html"
    assert ReportWriter(tmp_path).performance(priced(30, 1.1), priced(30, 1.0), path) is None


def test_performance_swallows_bad_frames(tmp_path: Path) -> None:
    window = priced(30, 1.1)
    reference = priced(30, 1.0).drop(columns=["make"])  # lacks a window column
    path = tmp_path / "perf.html"
    assert ReportWriter(tmp_path).performance(window, reference, path) is None
    assert not path.exists()
