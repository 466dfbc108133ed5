"""lr_find: the loss against an exponential learning-rate sweep, on a copy of the model."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _checks
from ..layers.batchnorm import BatchNorm
from ..model import Sequential
from ._copies import _clone_model, _require_model


@dataclass
class LRFindResult:
    """The learning-rate sweep: `lrs` and `losses` (smoothed, bias-corrected exponential moving
    average) and `raw_losses` per step; `suggestion` is the lr at the smoothed minimum divided by
    10 (`rule`), `steepest` the lr where the smoothed loss falls fastest, `min_loss_lr` the lr at
    the minimum; `stopped_early` when the loss exceeded 4x its best (or became NaN).

    When the loss never falls clearly (by LR_FIND_DESCENT of its starting level: a model already
    trained, or a sweep that starts too high) the minimum is noise, and the rule becomes the lr
    where the loss rises for good (LR_FIND_RISE above its plateau), divided by 10. The suggestion
    always lies inside the swept range."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float
    steepest: float
    min_loss_lr: float
    stopped_early: bool
    rule: str = "lr at the minimum of the smoothed loss / 10"

    def __str__(self) -> str:
        end = "stopped when the loss diverged" if self.stopped_early else "ran every step"
        return (f"lr finder: {len(self.lrs)} steps from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g} ({end}); "
                f"minimum of the smoothed loss {min(self.losses):.4g} at lr {self.min_loss_lr:.3g}, "
                f"steepest descent at lr {self.steepest:.3g}; suggestion {self.suggestion:.3g} "
                f"({self.rule})")

    def __repr__(self) -> str:
        return (f"LRFindResult(steps={len(self.lrs)}, suggestion={self.suggestion:.3g}, "
                f"steepest={self.steepest:.3g}, stopped_early={self.stopped_early})")


LR_FIND_DESCENT = 0.25  # the smoothed loss must fall this fraction below its start for the minimum to count
# (the moving average of a trained model's noisy batch losses wanders 10-20% on its own)
LR_FIND_RISE = 0.20     # ... else: the lr where it rises this fraction above its plateau for good, / 10


def lr_find(model: Sequential, X: Any, y: Any, min_lr: float = 1e-7, max_lr: float = 10.0,
            steps: int = 100, batch_size: int = 32, beta: float = 0.9, seed: int = 0) -> LRFindResult:
    """Train a copy of the model (same weights, optimizer and optimizer state) for `steps`
    mini-batches while the learning rate grows exponentially from `min_lr` to `max_lr`, and record
    the loss. Stops early when the smoothed loss exceeds 4x its best. The model given is untouched."""
    fn = "lr_find"
    _require_model(model, fn)
    min_lr = _checks.check_float(min_lr, f"{fn}: min_lr", 0.0, min_inclusive=False)
    max_lr = _checks.check_float(max_lr, f"{fn}: max_lr", 0.0, min_inclusive=False)
    if max_lr <= min_lr:
        raise ValueError(f"{fn}: max_lr must be larger than min_lr, got min_lr={min_lr}, max_lr={max_lr}")
    steps = _checks.check_int(steps, f"{fn}: steps", 2)
    batch_size = _checks.check_int(batch_size, f"{fn}: batch_size", 1)
    beta = _checks.check_float(beta, f"{fn}: beta", 0.0, 1.0, max_inclusive=False)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    X, y = model._check_data(X, y, fn)
    n = X.shape[0]
    bn = any(isinstance(l, BatchNorm) for l in model.layers)
    if bn and min(batch_size, n) < 2:
        raise ValueError(f"{fn}: BatchNorm needs batches of at least 2 samples, got batch_size={batch_size}")
    net = _clone_model(model, optimizer_state=True)
    rng = np.random.default_rng(seed)
    factor = (max_lr / min_lr) ** (1.0 / (steps - 1))
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    avg, best = 0.0, math.inf
    order = rng.permutation(n)
    pos = 0
    stopped = False
    for i in range(steps):
        if pos + batch_size > n and pos > 0:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        if bn and idx.size < 2:
            order, pos = rng.permutation(n), 0
            idx = order[:batch_size]
        pos += batch_size
        lr = min_lr * factor ** i
        net.optimizer.lr = lr
        value = net.train_step(X[idx], y[idx])
        lrs.append(lr)
        raw.append(value)
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta ** (i + 1))
        smooth.append(s)
        if not math.isfinite(s) or s > 4 * best:
            stopped = True
            break
        best = min(best, s)
    finite = [j for j, s in enumerate(smooth) if math.isfinite(s)]
    if not finite:
        k = 0
    else:
        k = min(finite, key=lambda j: smooth[j])
    min_loss_lr = lrs[k]
    # The steepest descent: the most negative slope of the smoothed loss against log(lr), up to the minimum.
    # The first tenth is left out: the moving average is still settling there.
    start = max(1, len(lrs) // 10)
    steepest = lrs[k]
    if k - start >= 2:
        ls = np.log(np.asarray(lrs[start:k + 1]))
        slope = np.gradient(np.asarray(smooth[start:k + 1]), ls)
        steepest = lrs[start + int(np.argmin(slope))]
    suggestion, rule = min_loss_lr / 10, "lr at the minimum of the smoothed loss / 10"
    # The starting level: the median raw loss of the first tenth (the moving average is still
    # settling there, and a minimum inside it is noise, not a descent).
    level = float(np.median(raw[:start]))
    if finite and (k < start or not smooth[k] < (1 - LR_FIND_DESCENT) * level):
        # The plateau is the median smoothed loss after the settling steps (noise averages out
        # there); the rise starts after the last step at or below (1 + LR_FIND_RISE) x plateau.
        plateau = float(np.median(smooth[start:])) if len(smooth) > start else smooth[-1]
        below = [j for j in range(start, len(smooth)) if smooth[j] <= (1 + LR_FIND_RISE) * plateau]
        rising = min(below[-1] + 1 if below else start, len(smooth) - 1)
        suggestion = lrs[rising] / 10
        rule = (f"the loss did not fall by {LR_FIND_DESCENT:.0%} in the sweep (a trained model, or min_lr too "
                f"high): lr where it rises {LR_FIND_RISE:.0%} above its plateau / 10")
    suggestion = min(max(suggestion, lrs[0]), lrs[-1])
    return LRFindResult(lrs, smooth, raw, suggestion, steepest, min_loss_lr, stopped, rule)
