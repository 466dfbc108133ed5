"""Central finite differences in float64 for the gradient checks of every layer and loss.

rel_error(a, n) = max|a - n| / max(max|a|, max|n|, 1e-8): the error relative to the gradient's
scale, so entries that are near zero do not blow it up.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1e-8)
    return float(np.abs(a - n).max(initial=0.0) / scale)


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences, perturbing `x` in place (it may be a live view)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x is contiguous
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, training: bool = True,
                eps: float = 1e-6) -> dict[str, float]:
    """Relative errors of d(sum(R * layer(x)) + penalty)/d(input and every parameter), R random.

    The layer's own regularization term (`penalty()`, Dense's L2) is part of the objective, since
    its backward adds that term's gradient to the weight gradient."""
    x = np.array(x, dtype=np.float64)
    y = layer.forward(x, training=training)
    R = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(R * layer.forward(x, training=training))) + layer.penalty()

    layer.forward(x, training=training)
    dx = layer.backward(R)
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    errors = {"input": rel_error(dx, numeric_grad(f, x, eps))}
    for name, value in layer.params.items():
        errors[name] = rel_error(analytic[name], numeric_grad(f, value, eps))
    return errors
