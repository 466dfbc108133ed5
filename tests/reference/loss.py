"""float64 numpy reference for the loss family (PyTorch's definitions, written out plainly).

Every function takes arrays of any float dtype, computes in float64 and returns (value, grad)
with value the mean loss and grad its derivative with respect to the prediction.
"""
from __future__ import annotations

import numpy as np

LOG_CLAMP = -100.0  # torch's clamp of log in binary_cross_entropy


def _f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def mse(pred, target):
    p, t = _f64(pred, target)
    return np.mean((p - t) ** 2), 2.0 * (p - t) / p.size


def bce(prob, target, eps=1e-12):
    """torch's binary_cross_entropy; `eps` is the backward's clamp (float(1e-12) in float32)."""
    p, t = _f64(prob, target)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), LOG_CLAMP)
        log_1mp = np.maximum(np.log1p(-p), LOG_CLAMP)
    value = np.mean((t - 1.0) * log_1mp - t * log_p)
    return value, (p - t) / np.maximum((1.0 - p) * p, eps) / p.size


def bce_logits(logits, target):
    x, t = _f64(logits, target)
    value = np.mean(np.maximum(x, 0.0) - t * x + np.log1p(np.exp(-np.abs(x))))
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return value, (sig - t) / x.size


def softmax(logits):
    (x,) = _f64(logits)
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits):
    (x,) = _f64(logits)
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_xent(logits, labels):
    """Integer labels (N,): mean_n -log softmax(x_n)[y_n]."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    N = x.shape[0]
    value = -np.mean(log_softmax(x)[np.arange(N), y])
    grad = softmax(x)
    grad[np.arange(N), y] -= 1.0
    return value, grad / N


def softmax_xent_soft(logits, target):
    """Class probabilities (N, K): mean_n -Σ_k t_nk log softmax(x_n)_k."""
    x, t = _f64(logits, target)
    N = x.shape[0]
    value = -np.sum(t * log_softmax(x)) / N
    return value, (softmax(x) * t.sum(axis=1, keepdims=True) - t) / N


def nll(prob, labels):
    """-mean_n max(log p[n, y_n], -100); gradient -1/(N p) at the label, 0 where clamped."""
    (p,) = _f64(prob)
    y = np.asarray(labels, dtype=np.int64)
    N = p.shape[0]
    py = p[np.arange(N), y]
    with np.errstate(divide="ignore"):
        log_py = np.log(py)
        value = -np.mean(np.maximum(log_py, LOG_CLAMP))
        grad = np.zeros_like(p)
        grad[np.arange(N), y] = np.where(log_py >= LOG_CLAMP, -1.0 / (N * py), 0.0)
    return value, grad


def weighted(fn, pred, target, w):
    """Keras's weighted mean of any loss above: (1/N) Σ_i w_i·loss_i, with loss_i the loss of
    sample i alone (fn on that one row: the mean over its outputs), and its gradient (w_i / N)·
    d loss_i / d pred_i, row by row."""
    pred = np.asarray(pred)
    w = np.asarray(w, dtype=np.float64)
    N = pred.shape[0]
    value, grad = 0.0, np.zeros(pred.shape, dtype=np.float64)
    for i in range(N):
        v, g = fn(pred[i:i + 1], np.asarray(target)[i:i + 1])
        value += w[i] * v
        grad[i:i + 1] = w[i] * g / N
    return value / N, grad
