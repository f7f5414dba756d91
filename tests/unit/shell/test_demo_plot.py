"""The demo's plot: markers that coincide share a line, and the figure is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shell.demo.plot import _merge_close, plot_story


def test_markers_a_moment_apart_share_one_label() -> None:
    day = pd.Timestamp("2015-05-01", tz="UTC")
    times = pd.Series(pd.date_range(day, periods=30, freq="D"))
    markers = [
        (day + pd.Timedelta(days=5), "alert"),
        (day + pd.Timedelta(days=14), "promoted"),
        (day + pd.Timedelta(days=14, hours=1), "swap"),
    ]
    assert _merge_close(markers, times) == [
        (day + pd.Timedelta(days=5), "alert"),
        (day + pd.Timedelta(days=14), "promoted / swap"),
    ]


def test_plot_story_writes_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    price = rng.uniform(5000, 30000, n)
    served = pd.DataFrame(
        {
            "listed_at": pd.date_range("2015-05-01", periods=n, freq="10min", tz="UTC"),
            "scored_s": np.linspace(0, 60, n),
            "sellingprice": price,
            "price": price * rng.normal(1, 0.15, n),
        }
    )
    scrapes = [{"at": float(t), "gavel_monitor_window_bias": 0.02} for t in range(0, 60, 5)]
    path = plot_story(
        served,
        price * 1.2,
        scrapes,
        {"shock": 10.0, "alert": 30.0, "promoted": 45.0},
        0.15,
        tmp_path / "demo.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
