"""The demo's picture: rolling MAPE (served vs. frozen first model) and the monitor's drift
signals over wall-clock time, with markers for the shock, the alert and the promotion."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gavel.demo.story import rolling_mape

ROLLING = 500


def plot_story(
    served: pd.DataFrame,
    frozen: np.ndarray,
    scrapes: list[dict[str, float]],
    markers: dict[str, float],
    reference_mape: float,
    path: Path,
) -> Path:
    """``markers`` maps a label to a wall-clock second; ``t = 0`` is the first score."""
    t0 = float(served["scored_s"].min())
    seconds = served["scored_s"].to_numpy() - t0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(
        seconds,
        rolling_mape(served["sellingprice"], served["price"], ROLLING),
        label="served (champion at the time)",
        color="tab:blue",
    )
    top.plot(
        seconds,
        rolling_mape(served["sellingprice"], frozen, ROLLING),
        label="frozen first model",
        color="tab:red",
        alpha=0.8,
    )
    top.axhline(reference_mape, color="grey", linestyle="--", label="reference MAPE")
    top.set_ylabel(f"MAPE, rolling {ROLLING} sales")
    top.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    top.legend(loc="upper left")
    top.set_title("Gavel demo: market shock → drift alert → retrain → promotion → recovery")
    if scrapes:
        metrics = pd.DataFrame(scrapes)
        x = metrics["at"] - t0
        for column, label in (
            ("gavel_monitor_streaming_bias", "streaming bias (ADWIN)"),
            ("gavel_monitor_window_bias", "window bias"),
        ):
            if column in metrics:
                bottom.plot(x, metrics[column], label=label)
        drift = [c for c in metrics.columns if c.startswith("drift:")]
        if drift:
            bottom.plot(
                x,
                metrics[drift].max(axis=1),
                label="max feature drift score",
                color="tab:purple",
                alpha=0.7,
            )
    bottom.set_ylabel("monitor signals")
    bottom.set_xlabel("seconds since the first priced listing")
    bottom.legend(loc="upper left")
    for axis in (top, bottom):
        for label, at in markers.items():
            axis.axvline(at - t0, color="black", linestyle=":", linewidth=1)
            if axis is top:
                axis.annotate(
                    label,
                    (at - t0, axis.get_ylim()[1]),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=8,
                )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
