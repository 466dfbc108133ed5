"""Metrics reported by `fit`/`evaluate`: "accuracy", "mse", "mae".

Each metric is computed as a sum over a batch, so that `fit` and `evaluate` can add batches and
divide once by the number of samples (accuracy) or of elements (mse, mae).
"""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "mse", "mae")


def check_metrics(metrics) -> list[str]:
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        if not isinstance(m, str):
            raise TypeError(f"compile: metrics must be names from {list(METRICS)}, got {m!r}")
        name = {"acc": "accuracy"}.get(m, m)
        if name not in METRICS:
            raise ValueError(f"compile: unknown metric {m!r}; valid metrics are {list(METRICS)}")
        out.append(name)
    return out


def predicted_classes(outputs: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over classes, or `outputs > threshold` for a single output column."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return np.argmax(outputs, axis=1)
    return (outputs.reshape(-1) > threshold).astype(np.int64)


def true_classes(target: np.ndarray) -> np.ndarray:
    if target.ndim == 2 and target.shape[1] > 1:
        return np.argmax(target, axis=1)  # class probabilities / one-hot
    return np.rint(target.reshape(-1)).astype(np.int64)


def batch_sums(name: str, outputs: np.ndarray, target: np.ndarray, threshold: float) -> tuple[float, int]:
    """(sum over the batch, count) for metric `name`."""
    if name == "accuracy":
        correct = predicted_classes(outputs, threshold) == true_classes(target)
        return float(np.count_nonzero(correct)), correct.size
    diff = outputs.astype(np.float64) - target.reshape(outputs.shape)
    if name == "mse":
        return float(np.sum(diff * diff)), diff.size
    return float(np.sum(np.abs(diff))), diff.size
