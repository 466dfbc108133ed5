"""Metrics reported by `fit`/`evaluate`: "accuracy", "mse", "mae".

Each metric is computed as a sum over a batch, so that `fit` and `evaluate` can add batches and
divide once by the number of samples (accuracy) or of elements (mse, mae).
"""
from __future__ import annotations

from typing import Any

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


def batch_sums(name: str, outputs: np.ndarray, target: np.ndarray, loss: Any) -> tuple[float, int]:
    """(sum over the batch, count) for metric `name`. The classes behind "accuracy" are the loss's
    (`loss.predicted_classes` / `target_classes`): it knows whether outputs are logits or
    probabilities, and that every output of a multi-output BCE is its own binary decision."""
    if name == "accuracy":
        correct = loss.predicted_classes(outputs) == loss.target_classes(target)
        return float(np.count_nonzero(correct)), correct.size
    diff = outputs.astype(np.float64) - target.reshape(outputs.shape)
    if name == "mse":
        return float(np.sum(diff * diff)), diff.size
    return float(np.sum(np.abs(diff))), diff.size
