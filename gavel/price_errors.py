"""Price-error metrics, defined once so the trainer's reference and the monitor's windows agree.

>>> round(mape([100.0, 200.0], [110.0, 180.0]), 3)
0.1
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _arrays(actual: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    keep = np.isfinite(y) & np.isfinite(p) & (y > 0)
    return y[keep], p[keep]


def absolute_percentage_errors(actual: ArrayLike, predicted: ArrayLike) -> np.ndarray:
    y, p = _arrays(actual, predicted)
    errors: np.ndarray = np.abs(p - y) / y
    return errors


def mape(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute percentage error, as a fraction (0.1 = 10%); NaN when nothing to compare."""
    errors = absolute_percentage_errors(actual, predicted)
    return float(errors.mean()) if errors.size else float("nan")


def mae(actual: ArrayLike, predicted: ArrayLike) -> float:
    y, p = _arrays(actual, predicted)
    return float(np.abs(p - y).mean()) if y.size else float("nan")


def bias(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean relative over-prediction: positive when the model prices too high."""
    y, p = _arrays(actual, predicted)
    return float(((p - y) / y).mean()) if y.size else float("nan")


def r2(actual: ArrayLike, predicted: ArrayLike) -> float:
    y, p = _arrays(actual, predicted)
    if y.size < 2:
        return float("nan")
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / total if total else float("nan")


def price_metrics(actual: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """MAPE, median APE, MAE, R² and bias in one dict."""
    errors = absolute_percentage_errors(actual, predicted)
    return {
        "mape": mape(actual, predicted),
        "median_ape": float(np.median(errors)) if errors.size else float("nan"),
        "mae": mae(actual, predicted),
        "r2": r2(actual, predicted),
        "bias": bias(actual, predicted),
        "rows": float(errors.size),
    }


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}
