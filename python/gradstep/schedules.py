"""Learning-rate schedules: `schedule(epoch) -> lr` with `epoch` 0-based.

Each schedule is also a callback: pass it to `fit(callbacks=[...])` and it sets
`model.optimizer.lr` at the start of every epoch.

- `StepDecay(initial_lr, drop=0.5, every=10)`: lr = initial_lr · drop^floor(epoch / every)
- `ExponentialDecay(initial_lr, rate=0.96)`: lr = initial_lr · rate^epoch
- `CosineDecay(initial_lr, epochs, min_lr=0.0)`:
  lr = min_lr + (initial_lr − min_lr) · (1 + cos(π · min(epoch, epochs) / epochs)) / 2
- `LinearWarmup(then, epochs, start_factor=0.1)`: lr rises linearly from start_factor · then(0)
  to then(0) over `epochs` epochs, then follows `then` (a schedule, restarted at 0, or a fixed
  rate): `LinearWarmup(CosineDecay(0.1, 50), 5)` warms up for 5 epochs, then decays for 50.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from . import _checks
from .callbacks import Callback

__all__ = ["Schedule", "StepDecay", "ExponentialDecay", "CosineDecay", "LinearWarmup"]


class Schedule(Callback):
    """Base class: subclasses implement `_lr(epoch)`; calling checks the epoch."""

    initial_lr: float

    def __call__(self, epoch: int) -> float:
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"{type(self).__name__}: epoch must be an int, got "
                            f"{type(epoch).__name__} {epoch!r}")
        if epoch < 0:
            raise ValueError(f"{type(self).__name__}: epoch must be >= 0 (0-based), got {epoch}")
        return self._lr(int(epoch))

    def _lr(self, epoch: int) -> float:
        raise NotImplementedError

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        model = self._require_model("setting the learning rate")
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise RuntimeError(f"{type(self).__name__}: the model has no optimizer; compile it "
                               f"first")
        optimizer.lr = self(epoch)

    def _args(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"


def _initial_lr(value: Any, owner: str) -> float:
    return _checks.check_float(value, f"{owner}: initial_lr", 0.0, min_inclusive=False)


class StepDecay(Schedule):
    """lr = initial_lr · drop^floor(epoch / every): multiply by `drop` every `every` epochs."""

    def __init__(self, initial_lr: float, drop: float = 0.5, every: int = 10) -> None:
        self.initial_lr = _initial_lr(initial_lr, "StepDecay")
        self.drop = _checks.check_float(drop, "StepDecay: drop", 0.0, 1.0, min_inclusive=False)
        self.every = _checks.check_int(every, "StepDecay: every", 1)

    def _lr(self, epoch: int) -> float:
        return self.initial_lr * self.drop ** (epoch // self.every)

    def _args(self) -> dict[str, Any]:
        return {"initial_lr": self.initial_lr, "drop": self.drop, "every": self.every}


class ExponentialDecay(Schedule):
    """lr = initial_lr · rate^epoch."""

    def __init__(self, initial_lr: float, rate: float = 0.96) -> None:
        self.initial_lr = _initial_lr(initial_lr, "ExponentialDecay")
        self.rate = _checks.check_float(rate, "ExponentialDecay: rate", 0.0, 1.0,
                                        min_inclusive=False)

    def _lr(self, epoch: int) -> float:
        return self.initial_lr * self.rate ** epoch

    def _args(self) -> dict[str, Any]:
        return {"initial_lr": self.initial_lr, "rate": self.rate}


class CosineDecay(Schedule):
    """Half a cosine from `initial_lr` at epoch 0 down to `min_lr` at epoch `epochs` (and after).

    lr = min_lr + (initial_lr − min_lr) · (1 + cos(π · min(epoch, epochs) / epochs)) / 2.
    """

    def __init__(self, initial_lr: float, epochs: int, min_lr: float = 0.0) -> None:
        self.initial_lr = _initial_lr(initial_lr, "CosineDecay")
        self.epochs = _checks.check_int(epochs, "CosineDecay: epochs", 1)
        self.min_lr = _checks.check_float(min_lr, "CosineDecay: min_lr", 0.0)
        if self.min_lr > self.initial_lr:
            raise ValueError(f"CosineDecay: min_lr must be <= initial_lr ({self.initial_lr}), "
                             f"got {self.min_lr}")

    def _lr(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.min_lr + (self.initial_lr - self.min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0

    def _args(self) -> dict[str, Any]:
        return {"initial_lr": self.initial_lr, "epochs": self.epochs, "min_lr": self.min_lr}


class LinearWarmup(Schedule):
    """Linear warm-up in front of another schedule (PyTorch's LinearLR followed by the schedule,
    as SequentialLR chains them).

    For epoch < `epochs`: lr = then(0) · (start_factor + (1 − start_factor) · epoch / epochs);
    from epoch `epochs` on: lr = then(epoch − epochs), the schedule starting from its own epoch 0.
    `then` is a Schedule (any `epoch -> lr` callable) or a fixed learning rate.
    """

    def __init__(self, then: Any, epochs: int, start_factor: float = 0.1) -> None:
        if isinstance(then, numbers.Real) and not isinstance(then, bool):
            then = float(_initial_lr(then, "LinearWarmup"))
        elif not callable(then):
            raise TypeError(f"LinearWarmup: then must be a schedule (epoch -> lr) or a learning rate, "
                            f"got {type(then).__name__}")
        self.then = then
        self.epochs = _checks.check_int(epochs, "LinearWarmup: epochs", 1)
        self.start_factor = _checks.check_float(start_factor, "LinearWarmup: start_factor", 0.0, 1.0,
                                                min_inclusive=False)
        self.initial_lr = self._after(0) * self.start_factor

    def _after(self, epoch: int) -> float:
        return float(self.then(epoch)) if callable(self.then) else self.then

    def _lr(self, epoch: int) -> float:
        if epoch < self.epochs:
            return self._after(0) * (self.start_factor + (1.0 - self.start_factor) * epoch / self.epochs)
        return self._after(epoch - self.epochs)

    def _args(self) -> dict[str, Any]:
        return {"then": self.then, "epochs": self.epochs, "start_factor": self.start_factor}
