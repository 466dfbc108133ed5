"""gradcheck: backpropagation against central differences in float64, per parameter."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _checks
from .. import losses as _losses
from ..layers.base import Layer
from ..layers.batchnorm import BatchNorm
from ..layers.dropout import Dropout
from ..model import Sequential
from ._copies import _clone_layer, _clone_model, _subset
from .findings import Finding

GRADCHECK_TOL = 1e-6          # max relative error for GradcheckReport.ok


@dataclass
class GradcheckReport:
    """Backprop against central finite differences (float64), per parameter and for the input.

    `errors` maps "input" and each parameter ("0.weight" for a model, "weight" for a layer) to its
    max relative error max|a - n| / max(max|a|, max|n|, 1e-8) over the coordinates checked;
    `checked` maps the same names to (coordinates checked, coordinates in all); `ok` is True when
    every error is below `tolerance`."""

    errors: dict[str, float]
    checked: dict[str, tuple[int, int]]
    tolerance: float = GRADCHECK_TOL
    objective: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e < self.tolerance for e in self.errors.values())

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __str__(self) -> str:
        rows = [("gradient", "checked", "max rel. error", "")]
        for name, err in self.errors.items():
            done, total = self.checked[name]
            rows.append((name, f"{done}/{total}", f"{err:.2e}", "ok" if err < self.tolerance else "FAIL"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [f"Gradient check ({self.objective}; central differences in float64):"]
        for j, r in enumerate(rows):
            lines.append("  " + "  ".join(r[c].ljust(widths[c]) if c == 0 else r[c].rjust(widths[c])
                                          for c in range(4)).rstrip())
            if j == 0:
                lines.append("  " + "-" * (sum(widths) + 6))
        verdict = "PASSED" if self.ok else "FAILED"
        lines.append(f"  {verdict}: max relative error {self.max_error:.2e} "
                     f"(tolerance {self.tolerance:.0e})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def finding(self) -> Finding:
        """The verdict as a Finding: "ok", or "gradcheck_failed" naming the worst gradient."""
        evidence = {"max_error": self.max_error, "tolerance": self.tolerance}
        if self.ok:
            return Finding("ok", f"backprop agrees with finite differences (max relative error "
                                 f"{self.max_error:.2g})", evidence)
        worst = max(self.errors, key=self.errors.get)
        return Finding("gradcheck_failed",
                       f"backprop disagrees with finite differences for {worst} (relative error "
                       f"{self.errors[worst]:.2g}, want < {self.tolerance:.0e}): the backward pass of that "
                       f"layer (or of the loss, for 'input' and every parameter) is wrong", evidence)

    def __repr__(self) -> str:
        return f"GradcheckReport(ok={self.ok}, max_error={self.max_error:.3g}, errors={self.errors})"


def _rel_error(a: np.ndarray, n: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)), 1e-8)
    return float(np.max(np.abs(a - n), initial=0.0) / scale)


def _targets(model: Sequential, loss: Any, y: Any, n: int, fn: str) -> np.ndarray:
    labels = isinstance(loss, (_losses.SoftmaxCrossEntropy, _losses.NLL))
    a = _checks.numeric_array(y, f"{fn}: y")
    if a.shape[:1] != (n,):
        raise ValueError(f"{fn}: x and y must have the same number of samples, got {n} and "
                         f"{a.shape[0] if a.ndim else 'a scalar'}")
    if labels and a.ndim == 1:
        return _checks.class_labels(a, f"{fn}: y", model.out_features if model else None)
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim == 1 and model is not None and model.out_features == 1:
        a = a.reshape(-1, 1)
    return a


def gradcheck(model_or_layer: Any, x: Any, y: Any = None, loss: Any = None, eps: float = 1e-6,
              max_coords: int = 200, seed: int = 0) -> GradcheckReport:
    """Compare backprop's gradients with central differences, in float64, on a copy.

    For a model the objective is loss(model(x), y) + the L2 terms, with the model's compiled loss
    unless `loss` is given; for a layer (or a model given no `y`) it is sum(R * output) + the L2
    terms, with R a fixed random array. Dropout is evaluated as the identity (its mask is random);
    BatchNorm runs in training mode (batch statistics, deterministic). Parameters (and inputs)
    larger than `max_coords` are checked on `max_coords` coordinates drawn with `seed`.
    """
    fn = "gradcheck"
    eps = _checks.check_float(eps, f"{fn}: eps", 0.0, min_inclusive=False)
    max_coords = _checks.check_int(max_coords, f"{fn}: max_coords", 1)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    if loss is not None:
        loss = _losses.get(loss)
    notes: list[str] = []
    if isinstance(model_or_layer, Sequential):
        model = model_or_layer
        if any(isinstance(l, Dropout) for l in model.layers):
            notes.append("Dropout layers were evaluated as the identity (their masks are random)")
        net: Any = _clone_model(model, "float64", dropout_as_identity=True)
        layers = net.layers
        prefix = [f"{i}." for i in range(len(layers))]
        if y is None and loss is not None:
            raise ValueError(f"{fn}: loss was given without y; pass the targets too")
        if y is not None and loss is None:
            if model.loss is None:
                raise ValueError(f"{fn}: y was given but the model has no loss; compile it or pass loss=")
            loss = copy.deepcopy(model.loss)
        x64 = _checks.float_array(x, f"{fn}: x", np.dtype(np.float64))
        want = model.input_shape
        if want is None or len(want) == 1:
            if x64.ndim != 2:
                raise ValueError(f"{fn}: x must be a 2-D array (N, features), got shape {x64.shape}")
            if model.in_features is not None and x64.shape[1] != model.in_features:
                raise ValueError(f"{fn}: x must have {model.in_features} features (the model's "
                                 f"in_features), got shape {x64.shape}")
        elif x64.shape[1:] != want:
            raise ValueError(f"{fn}: x must have shape (N, {', '.join(map(str, want))}) (the model's "
                             f"input_shape), got {x64.shape}")
        owner = model
    elif isinstance(model_or_layer, Layer):
        layer = model_or_layer
        if isinstance(layer, Dropout):
            notes.append("a Dropout layer is checked as the identity (its mask is random)")
        layers = [_clone_layer(layer, "float64", dropout_as_identity=True)]
        net = layers[0]
        prefix = [""]
        if (y is None) != (loss is None):
            raise ValueError(f"{fn}: for a layer pass both y and loss (objective loss(layer(x), y)) "
                             f"or neither (objective sum(R * layer(x)))")
        x64 = _checks.float_array(x, f"{fn}: x", np.dtype(np.float64))
        owner = None
    else:
        raise TypeError(f"{fn}: model_or_layer must be a gs.Sequential or a gs layer, "
                        f"got {type(model_or_layer).__name__}")
    if x64.ndim < 1 or x64.shape[0] < 1:
        raise ValueError(f"{fn}: x must have at least one row, got shape {x64.shape}")
    if not np.all(np.isfinite(x64)):
        raise ValueError(f"{fn}: x holds NaN or inf")
    if any(isinstance(l, BatchNorm) for l in layers):
        if x64.shape[0] < 2:
            raise ValueError(f"{fn}: BatchNorm runs in training mode here and needs x with at "
                             f"least 2 rows, got {x64.shape[0]}")
        notes.append("BatchNorm ran in training mode (batch statistics)")

    def penalty() -> float:
        return float(sum(l.penalty() for l in layers))

    out = net.forward(x64, training=True)
    if y is not None:
        target = _targets(owner, loss, y, x64.shape[0], fn)
        lossc = copy.deepcopy(loss)
        objective = f"{type(lossc).__name__} + L2 terms"

        def f() -> float:
            return lossc.forward(net.forward(x64, training=True), target) + penalty()

        f0 = f()
        grad_out = lossc.backward()
    else:
        R = np.random.default_rng(seed).standard_normal(out.shape)
        objective = "sum(R * output) + L2 terms, R fixed random"

        def f() -> float:
            return float(np.vdot(R, net.forward(x64, training=True))) + penalty()

        f0 = f()
        grad_out = R
    grad_x = net.backward(grad_out)
    analytic: dict[str, np.ndarray] = {"input": np.array(grad_x, dtype=np.float64)}
    values: dict[str, np.ndarray] = {"input": x64}
    for p, l in zip(prefix, layers):
        for name, g in l.grads.items():
            analytic[p + name] = g.copy()
            values[p + name] = l.params[name]

    # Below this size a central difference is rounding noise: a gradient that is zero (a Dense bias
    # right before BatchNorm, whose mean the normalization removes) measures as noise of about
    # eps_machine * |f| / eps, and its relative error would be meaningless.
    noise = 100 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / eps
    zero: list[str] = []
    rng = np.random.default_rng(seed + 1)
    errors: dict[str, float] = {}
    checked: dict[str, tuple[int, int]] = {}
    for name, v in values.items():
        flat = v.reshape(-1)  # a view: parameters and x64 are contiguous
        idx = _subset(flat.size, max_coords, int(rng.integers(0, 2**31)))
        numeric = np.empty(idx.size)
        for j, k in enumerate(idx):
            old = flat[k]
            flat[k] = old + eps
            fp = f()
            flat[k] = old - eps
            fm = f()
            flat[k] = old
            numeric[j] = (fp - fm) / (2 * eps)
        a = analytic[name].reshape(-1)[idx]
        if float(np.max(np.abs(a), initial=0.0)) <= noise and float(np.max(np.abs(numeric), initial=0.0)) <= noise:
            errors[name] = 0.0
            zero.append(name)
        else:
            errors[name] = _rel_error(a, numeric)
        checked[name] = (int(idx.size), int(flat.size))
    if zero:
        notes.append(f"zero gradient (both sides below the finite-difference noise {noise:.1e}), error set "
                     f"to 0: {', '.join(zero)}")
    if any(done < total for done, total in checked.values()):
        notes.append(f"gradients with more than {max_coords} coordinates were checked on {max_coords} "
                     f"of them, drawn with seed {seed}")
    return GradcheckReport(errors, checked, GRADCHECK_TOL, objective, notes)
