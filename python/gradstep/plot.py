"""Plots with matplotlib (Agg backend when no display): figures are returned, and saved as PNG when
`path` is given."""
from __future__ import annotations

import os
from typing import Any


def _pyplot():
    import matplotlib
    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig: Any, path: Any) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110)
    return fig


def history(history: Any, path: Any = None):
    """Loss and metric curves per epoch, training and validation side by side."""
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or "loss" not in hist:
        raise TypeError("plot.history: history must be a History (or its .history dict) with a 'loss' entry")
    plt = _pyplot()
    metrics = [k for k in hist if not k.startswith("val_") and k not in ("loss", "lr")]
    panels = ["loss"] + metrics
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    epochs = list(range(1, len(hist["loss"]) + 1))
    for ax, key in zip(axes[0], panels):
        ax.plot(epochs, hist[key], marker="o", ms=3, label=f"train {key}")
        if "val_" + key in hist:
            ax.plot(epochs, hist["val_" + key], marker="o", ms=3, label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        if key == "loss" and min(hist[key]) > 0 and max(hist[key]) / min(hist[key]) > 50:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(key)
    return _finish(fig, path)
