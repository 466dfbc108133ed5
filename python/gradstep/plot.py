"""Plots with matplotlib (Agg backend when no display): figures are returned, and saved as PNG when
`path` is given.

- `history(history)`: loss and metric curves per epoch, training and validation;
- `lr_find(result)`: the learning-rate finder's loss against the learning rate, suggestion marked;
- `gradients(monitor)`: a GradientMonitor's per-layer gradient norms, update/weight ratios and
  dead/saturated fractions.
- `pretrain(result)`: layer-wise pre-training's reconstruction loss curves, one per layer.

Every axis over epochs counts whole epochs (integer ticks, 1-based), and a run of one epoch gets
an axis around that epoch rather than a sliver of fractions.
"""
from __future__ import annotations

import os
from typing import Any


def _pyplot():
    import matplotlib
    usable = ("agg", "module://matplotlib_inline.backend_inline")  # already draw without a display
    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in usable:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _epoch_axis(ax: Any, epochs: list[int]) -> None:
    """x axis over epochs: integer ticks, labelled, and for a single epoch the span epoch +- 1
    (matplotlib would otherwise zoom onto fractions of an epoch around the one point)."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    if len(set(epochs)) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


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
        _epoch_axis(ax, epochs)
        ax.set_ylabel(key)
        if key == "loss" and min(hist[key]) > 0 and max(hist[key]) / min(hist[key]) > 50:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(key)
    return _finish(fig, path)


def lr_find(result: Any, path: Any = None):
    """The learning-rate finder's loss against the learning rate (log axis): the raw losses faintly,
    the smoothed curve, and the suggested rate as a vertical line with a marker on the curve."""
    from .diagnostics import LRFindResult
    if not isinstance(result, LRFindResult):
        raise TypeError(f"plot.lr_find: result must be what gs.diagnostics.lr_find returns (an LRFindResult), "
                        f"got {type(result).__name__}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lrs, smooth, raw = result.lrs, result.losses, result.raw_losses
    finite = [v for v in smooth if v == v and abs(v) != float("inf")]
    ax.plot(lrs, raw, color="tab:blue", alpha=0.3, lw=1, label="loss per mini-batch")
    ax.plot(lrs, smooth, color="tab:blue", lw=2, label="smoothed loss")
    ax.axvline(result.suggestion, color="tab:red", ls="--", lw=1.2, label=f"suggestion {result.suggestion:.2g}")
    k = min(range(len(lrs)), key=lambda j: abs(lrs[j] - result.suggestion) if lrs[j] > 0 else float("inf"))
    ax.plot([lrs[k]], [smooth[k]], marker="o", ms=8, color="tab:red", ls="none", label="_suggestion")
    ax.plot([result.min_loss_lr], [min(finite)] if finite else [smooth[0]], marker="v", ms=7, color="tab:green",
            ls="none", label=f"minimum at {result.min_loss_lr:.2g}")
    ax.set_xscale("log")
    if finite:
        lo, hi = min(finite), max(finite[:max(1, len(finite) // 2)] + [finite[-1]])
        pad = 0.1 * max(hi - lo, 1e-12)
        ax.set_ylim(lo - pad, hi + 3 * pad)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate finder" + (" (stopped when the loss diverged)" if result.stopped_early else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def gradients(monitor: Any, path: Any = None):
    """A GradientMonitor's records over the epochs, three panels: per-layer weight-gradient norms
    (log axis); per-layer update/weight ratios of one step (log axis, the healthy ~1e-3 marked);
    the fractions of dead ReLU units and of saturated sigmoid/tanh outputs."""
    from .diagnostics import GradientMonitor
    if not isinstance(monitor, GradientMonitor):
        raise TypeError(f"plot.gradients: monitor must be a gs.diagnostics.GradientMonitor, "
                        f"got {type(monitor).__name__}")
    if not monitor.records:
        raise ValueError("plot.gradients: the monitor has no records yet; pass it to fit(callbacks=[...]) first")
    plt = _pyplot()
    fig, (ax_g, ax_r, ax_u) = plt.subplots(1, 3, figsize=(19, 4.2))
    epochs = [e + 1 for e in monitor.epochs]
    names = list(dict.fromkeys(n for r in monitor.records for n, s in r["layers"].items() if "grad_norm" in s))
    names.sort(key=lambda n: int(n.split(".")[0]))
    for name in names:
        vals = monitor.series(name, "grad_norm")
        # log axis: zero norms (all units blocked) cannot be drawn, NaN leaves a gap
        ax_g.plot(epochs, [v if v > 0 else float("nan") for v in vals], marker="o", ms=3, label=name)
        ratios = monitor.series(name, "update_ratio")
        ax_r.plot(epochs, [v if v > 0 else float("nan") for v in ratios], marker="o", ms=3, label=name)
    ax_r.axhline(1e-3, color="gray", ls=":", lw=1, label="~1e-3 healthy")
    ax_r.set_yscale("log")
    _epoch_axis(ax_r, epochs)
    ax_r.set_ylabel("||update|| / ||weights||")
    ax_r.set_title("update/weight ratio per layer (one step)")
    ax_r.grid(alpha=0.3)
    ax_r.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_g.set_yscale("log")
    _epoch_axis(ax_g, epochs)
    ax_g.set_ylabel("weight-gradient norm")
    ax_g.set_title("gradient norm per layer")
    ax_g.grid(alpha=0.3)
    ax_g.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: lines stay visible
    drawn = 0
    for name in sorted((n for n in monitor.layer_names), key=lambda n: int(n.split(".")[0])):
        for key, what in (("dead", "dead units"), ("saturated", "saturated")):
            vals = monitor.series(name, key)
            if all(v != v for v in vals):
                continue
            ax_u.plot(epochs, vals, marker="o", ms=3, ls="-" if key == "dead" else "--", label=f"{name} {what}")
            drawn += 1
    ax_u.set_ylim(-0.03, 1.03)
    _epoch_axis(ax_u, epochs)
    ax_u.set_ylabel("fraction")
    ax_u.set_title("dead ReLUs / saturated sigmoid-tanh units")
    ax_u.grid(alpha=0.3)
    if drawn:
        ax_u.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax_u.text(0.5, 0.5, "no ReLU, sigmoid or tanh layers", ha="center", va="center", transform=ax_u.transAxes)
    return _finish(fig, path)


def pretrain(result: Any, path: Any = None):
    """Greedy pre-training's reconstruction loss per epoch, one curve per pre-trained layer (each
    layer's own loss: binary cross-entropy and MSE values are not comparable across layers)."""
    from .pretrain import PretrainResult
    if not isinstance(result, PretrainResult):
        raise TypeError(f"plot.pretrain: result must be what gs.pretrain.autoencoders returns (a "
                        f"PretrainResult), got {type(result).__name__}")
    if not result.layers:
        raise ValueError("plot.pretrain: the result holds no pre-trained layer")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for layer, curve, name, shape in zip(result.layers, result.losses, result.loss_names, result.shapes):
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3,
                label=f"layer {layer} ({shape[0]} -> {shape[1]}, {name})")
    _epoch_axis(ax, list(range(1, max(len(c) for c in result.losses) + 1)))
    ax.set_ylabel("reconstruction loss (training)")
    noise = result.params.get("noise", 0.0)
    ax.set_title("layer-wise pre-training" + (f" (denoising: {result.params['noise_kind']} {noise:g})" if noise else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)
