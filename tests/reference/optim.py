"""float64 numpy reference for the optim family: the update rules written out as in torch.optim's
documentation (state in a dict, one call per step), no attempt at reproducing roundings."""
from __future__ import annotations

import numpy as np


def sgd(w, g, state, step, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    g = g + weight_decay * w
    if momentum != 0:
        if step == 1:
            buf = g.copy()
        else:
            buf = momentum * state["momentum_buffer"] + (1 - dampening) * g
        state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    return w - lr * g


def rmsprop(w, g, state, step, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    g = g + weight_decay * w
    sq = alpha * state.get("square_avg", np.zeros_like(w)) + (1 - alpha) * g * g
    state["square_avg"] = sq
    avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf = momentum * state.get("momentum_buffer", np.zeros_like(w)) + g / avg
        state["momentum_buffer"] = buf
        return w - lr * buf
    return w - lr * g / avg


def adam(w, g, state, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
         decoupled=False):
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    b1, b2 = betas
    if decoupled:
        w = w * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * w
    m = b1 * state.get("exp_avg", np.zeros_like(w)) + (1 - b1) * g
    v = b2 * state.get("exp_avg_sq", np.zeros_like(w)) + (1 - b2) * g * g
    state["exp_avg"], state["exp_avg_sq"] = m, v
    m_hat = m / (1 - b1 ** step)
    v_hat = v / (1 - b2 ** step)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(w, g, state, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    return adam(w, g, state, step, lr, betas, eps, weight_decay, decoupled=True)


RULES = {"SGD": sgd, "RMSprop": rmsprop, "Adam": adam, "AdamW": adamw}
