"""The demo's picture: rolling MAPE (served vs. frozen first model) and the monitor's drift
signals over auction (event) time, with markers for the shock, the alert and the
promotion."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from shell.demo.story import rolling_mape

ROLLING = 1000


def event_time_at(served: pd.DataFrame, wall_clock: float) -> pd.Timestamp:
    """The auction time the stream had reached at a wall-clock second."""
    reached = served.loc[served["scored_s"] <= wall_clock, "listed_at"]
    return pd.Timestamp(reached.max() if len(reached) else served["listed_at"].min())


def plot_story(
    served: pd.DataFrame,
    frozen: np.ndarray,
    scrapes: list[dict[str, float]],
    markers: dict[str, float],
    reference_mape: float,
    path: Path,
) -> Path:
    """``markers`` maps a label to the wall-clock second it happened."""
    order = np.argsort(served["listed_at"].to_numpy(), kind="stable")
    by_time = served.iloc[order]
    x = by_time["listed_at"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(
        x,
        rolling_mape(by_time["sellingprice"], by_time["price"], ROLLING),
        label="served (the champion of the moment)",
        color="tab:blue",
    )
    top.plot(
        x,
        rolling_mape(by_time["sellingprice"], frozen[order], ROLLING),
        label="frozen first model",
        color="tab:red",
        alpha=0.8,
    )
    top.axhline(reference_mape, color="grey", linestyle="--", label="reference MAPE")
    top.set_ylabel(f"MAPE, rolling {ROLLING} sales")
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    # Above the axes: inside, the legend hides the marker labels.
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False)
    fig.suptitle("Gavel demo: market shock → drift alert → retrain → promotion → recovery")
    if scrapes:
        metrics = pd.DataFrame(scrapes)
        times = [event_time_at(served, at) for at in metrics["at"]]
        for column, label in (
            ("gavel_monitor_streaming_bias", "streaming bias (ADWIN)"),
            ("gavel_monitor_window_bias", "window bias"),
        ):
            if column in metrics:
                bottom.plot(times, metrics[column], label=label)
        drift = [c for c in metrics.columns if c.startswith("drift:")]
        if drift:
            bottom.plot(
                times,
                metrics[drift].max(axis=1),
                label="max feature drift score",
                color="tab:purple",
                alpha=0.7,
            )
    bottom.set_ylabel("monitor signals")
    bottom.set_xlabel("auction time (listing date)")
    bottom.legend(loc="upper left")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
    placed = [(event_time_at(served, at), label) for label, at in markers.items()]
    for when, label in _merge_close(sorted(placed), served["listed_at"]):
        for axis in (top, bottom):
            axis.axvline(when, color="black", linestyle=":", linewidth=1)
        top.annotate(
            label,
            (mdates.date2num(when), top.get_ylim()[1]),  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
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


def _merge_close(
    markers: list[tuple[pd.Timestamp, str]], times: pd.Series, share: float = 0.01
) -> list[tuple[pd.Timestamp, str]]:
    """Markers closer than ``share`` of the time axis share one line, their labels joined,
    so that e.g. a promotion and the swap a second later do not print over each other."""
    span = (times.max() - times.min()) * share if len(times) else pd.Timedelta(0)
    merged: list[tuple[pd.Timestamp, str]] = []
    for when, label in markers:
        if merged and when - merged[-1][0] <= span:
            merged[-1] = (merged[-1][0], f"{merged[-1][1]} / {label}")
        else:
            merged.append((when, label))
    return merged
