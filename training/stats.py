"""Figures with their uncertainty: bootstrap confidence intervals over clips."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn.metrics import balanced_accuracy_score


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the genres present in y_true (a resample may miss some)."""
    if not len(y_true):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return float(balanced_accuracy_score(y_true, y_pred))


def with_ci(
    metric: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray, y_pred: np.ndarray,
    resamples: int = 2000, seed: int = 0,
) -> dict[str, float]:
    """{"value", "ci_low", "ci_high"}: the metric and its 95 % percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        draws.append(metric(y_true[idx], y_pred[idx]))
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return {"value": metric(y_true, y_pred), "ci_low": float(low), "ci_high": float(high), "n": int(n)}


def fmt(figure: dict[str, float]) -> str:
    return f"{figure['value']:.3f} [{figure['ci_low']:.2f}, {figure['ci_high']:.2f}]"
