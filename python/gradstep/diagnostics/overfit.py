"""overfit_small: can a copy of the model drive a few samples' loss to ~0? (judged against the
problem's scale: ln C, ln 2 or the variance of the targets)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from ..layers.batchnorm import BatchNorm
from ..model import Sequential
from ._copies import _accuracy, _clone_model, _is_classification, _require_model, _subset
from .findings import Finding, _lr_text
from .initial_loss import _expected_initial_loss


def overfit_small(model: Sequential, X: Any, y: Any, n: int = 20, max_steps: int = 1000,
                  tol: float = 1e-2, seed: int = 0) -> Finding:
    """Train a copy of the model (regularization off: no L2, dropout as identity, a fresh optimizer
    with the same settings) on `n` samples, full batch, for at most `max_steps` steps. It passes
    ("ok") when the loss falls below `tol` times the problem's scale (the loss of uniform
    predictions, ln C or ln 2, for a classifier; the variance of the n targets for MSE; else the
    first step's loss), or, for a classifier, when every sample is classified right and the loss
    is below 5% of that scale; otherwise "cannot_overfit"."""
    fn = "overfit_small"
    _require_model(model, fn)
    n = _checks.check_int(n, f"{fn}: n", 1)
    max_steps = _checks.check_int(max_steps, f"{fn}: max_steps", 1)
    tol = _checks.check_float(tol, f"{fn}: tol", 0.0, min_inclusive=False)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    X, y = model._check_data(X, y, fn)
    if n > X.shape[0]:
        raise ValueError(f"{fn}: n must be at most the number of samples {X.shape[0]}, got {n}")
    if n < 2 and any(isinstance(l, BatchNorm) for l in model.layers):
        raise ValueError(f"{fn}: n must be at least 2 for a model with BatchNorm, got {n}")
    idx = _subset(X.shape[0], n, seed)
    Xs, ys = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
    net = _clone_model(model, dropout_as_identity=True, drop_l2=True)
    classification = _is_classification(net)
    lr = float(net.optimizer.lr)
    scale, _ = _expected_initial_loss(net, ys)
    if scale is not None and not scale > 0:  # constant targets: fall back on the first loss
        scale = None
    target = None if scale is None else tol * scale
    first = last = best = math.nan
    acc = math.nan
    steps = 0
    passed = False
    for steps in range(1, max_steps + 1):
        last = net.train_step(Xs, ys)
        if steps == 1:
            first = best = last
            if target is None:
                scale, target = abs(first), tol * abs(first)
        if not math.isfinite(last):
            break
        best = min(best, last)
        if last < target:
            passed = True
            break
        if classification and (steps % 10 == 0 or steps == max_steps) and last < 0.05 * scale:
            acc = _accuracy(net, net.predict(Xs), ys)
            if acc == 1.0:
                passed = True
                break
    if classification and math.isfinite(last) and math.isnan(acc):
        acc = _accuracy(net, net.predict(Xs), ys)
    evidence: dict[str, Any] = {"samples": n, "steps": steps, "initial_loss": first, "final_loss": last,
                                "best_loss": best, "target": target, "lr": lr}
    if classification:
        evidence["accuracy"] = acc
    if passed:
        what = f"loss {last:.3g}" + (f", accuracy {acc:.0%}" if classification and not math.isnan(acc) else "")
        return Finding("ok", f"a copy of the model fits {n} samples in {steps} steps ({what}): the model "
                             f"and the gradients can learn", evidence)
    opt = type(net.optimizer).__name__
    if not math.isfinite(last) or last > first:
        msg = (f"on {n} samples the loss goes from {first:.4g} to {last:.4g} in {steps} steps: the "
               f"learning rate {_lr_text(lr)} is too high for {opt}; try {_lr_text(lr / 10)}")
    elif last > 0.9 * first:
        msg = (f"on {n} samples the loss barely moves ({first:.4g} -> {last:.4g} in {steps} steps): the "
               f"learning rate {_lr_text(lr)} is too low (try {_lr_text(lr * 10)}), or the gradients do "
               f"not reach the weights (run gradcheck)")
    else:
        msg = (f"on {n} samples the loss falls from {first:.4g} only to {last:.4g} in {steps} steps "
               f"(want < {target:.3g}, {tol:g} x the problem's scale {scale:.4g}): the model may be too small (add units or layers), the learning rate "
               f"{_lr_text(lr)} too low (try {_lr_text(lr * 3)}), or there is a bug (run gradcheck)")
    return Finding("cannot_overfit", msg, evidence)
