"""float64 numpy reference for the activation family (stable formulas, exact derivatives)."""
from __future__ import annotations

import numpy as np


def _f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def sigmoid_forward(x):
    (x,) = _f64(x)
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy, x):
    dy, x = _f64(dy, x)
    s = sigmoid_forward(x)
    return dy * s * (1.0 - s)


def tanh_forward(x):
    (x,) = _f64(x)
    return np.tanh(x)


def tanh_backward(dy, x):
    dy, x = _f64(dy, x)
    return dy / np.cosh(np.clip(x, -300.0, 300.0)) ** 2


def relu_forward(x):
    (x,) = _f64(x)
    return np.where(x > 0, x, 0.0)


def relu_backward(dy, x):
    dy, x = _f64(dy, x)
    return np.where(x > 0, dy, 0.0)


def leaky_relu_forward(x, alpha):
    (x,) = _f64(x)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_backward(dy, x, alpha):
    dy, x = _f64(dy, x)
    return np.where(x > 0, dy, alpha * dy)


def elu_forward(x, alpha):
    (x,) = _f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(dy, x, alpha):
    dy, x = _f64(dy, x)
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0.0)))


def prelu_forward(x, alpha):
    """x (N, F), alpha (1,) or (F,)."""
    x, alpha = _f64(x, alpha)
    return np.where(x > 0, x, alpha * x)


def prelu_backward(dy, x, alpha):
    """Returns dx (N, F) and dalpha (C,), summed over the batch (and the features when C == 1)."""
    dy, x, alpha = _f64(dy, x, alpha)
    dx = np.where(x > 0, dy, alpha * dy)
    per = np.where(x > 0, 0.0, x * dy)
    dalpha = np.array([per.sum()]) if alpha.shape[0] == 1 else per.sum(axis=0)
    return dx, dalpha


def softmax_forward(x):
    (x,) = _f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, x):
    dy, x = _f64(dy, x)
    y = softmax_forward(x)
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
