"""The vanishing/exploding-gradient rule, on one GradientMonitor record (used by the monitor as it
records and by diagnose)."""
from __future__ import annotations

import math

from .findings import Finding, _lr_text

VANISHING_RATIO = 1e-3        # first-layer / last-layer weight-gradient norm below this: vanishing
VANISHING_ABS = 1e-7          # every weight-gradient norm below this: vanishing
EXPLODING_NORM = 1e2          # a weight-gradient norm above this (or inf/NaN): exploding (He-init nets start at 1-10)
EXPLODING_GROWTH = 1e2        # the total gradient norm growing by this factor over the run: exploding
# Layers whose weight gradients tell vanishing/exploding gradients (those with a matrix or filters).
_WEIGHT_LAYERS = ("Dense", "Maxout", "Conv1D", "Conv2D")


def _param_layers(rec: dict) -> list[tuple[str, dict]]:
    return sorted(((n, s) for n, s in rec["layers"].items() if "grad_norm" in s), key=lambda t: t[1]["index"])


def _gradient_findings(rec: dict, first: dict | None, scale: float = 1.0) -> list[Finding]:
    """Vanishing or exploding gradients in one epoch's record (against the first record); the
    absolute thresholds are multiplied by `scale` (GradientMonitor.gradient_scale)."""
    found: list[Finding] = []
    when = "at the first step" if "batch" in rec else f"at epoch {rec['epoch'] + 1}"
    layers = [(n, s) for n, s in _param_layers(rec) if s["type"] in _WEIGHT_LAYERS]
    if not layers:
        return found
    norms = [s["grad_norm"] for _, s in layers]
    bad = [(n, g) for (n, _), g in zip(layers, norms) if not math.isfinite(g)]
    biggest = max((g for g in norms if math.isfinite(g)), default=math.nan)
    growth = math.nan
    if first is not None and math.isfinite(rec.get("grad_norm", math.nan)) and first.get("grad_norm", 0) > 0:
        growth = rec["grad_norm"] / first["grad_norm"]
    if bad or biggest > EXPLODING_NORM * scale or growth > EXPLODING_GROWTH:
        where = (f"the gradient of {bad[0][0]} is {bad[0][1]}" if bad else
                 f"the largest weight-gradient norm is {biggest:.3g}" if biggest > EXPLODING_NORM * scale else
                 f"the gradient norm grew {growth:.3g}x since the first measurement")
        found.append(Finding("exploding_gradients",
                             f"exploding gradients {when}: {where}; lower the learning "
                             f"rate (e.g. to {_lr_text(rec.get('lr', 1e-3) / 10)}), use a smaller "
                             f"initialization (He/Xavier) or add BatchNorm",
                             {"epoch": rec["epoch"] + 1, "max_grad_norm": biggest, "growth": growth}))
        return found
    # Exactly zero gradients mean blocked units (dead ReLUs), not vanishing ones: dead_relu names them.
    if len(layers) >= 2 and norms[0] > 0 and norms[-1] > 0:
        g_first, g_last = norms[0], norms[-1]
        ratio = g_first / g_last
        if ratio < VANISHING_RATIO or biggest < VANISHING_ABS * scale:
            found.append(Finding("vanishing_gradients",
                                 f"vanishing gradients {when}: the first layer's weight "
                                 f"gradient ({layers[0][0]}, norm {g_first:.3g}) is {ratio:.2g} times the last "
                                 f"layer's ({layers[-1][0]}, {g_last:.3g}); use ReLU with init='he' (or Xavier for "
                                 f"tanh), fewer sigmoid layers, or BatchNorm",
                                 {"epoch": rec["epoch"] + 1, "first_grad_norm": g_first,
                                  "last_grad_norm": g_last, "ratio": ratio}))
    elif len(layers) == 1 and 0 < biggest < VANISHING_ABS * scale:
        found.append(Finding("vanishing_gradients",
                             f"vanishing gradients {when}: the weight-gradient norm is "
                             f"{biggest:.3g}", {"epoch": rec["epoch"] + 1, "max_grad_norm": biggest}))
    return found
