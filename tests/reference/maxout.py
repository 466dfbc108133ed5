"""float64 numpy reference for the maxout family."""
from __future__ import annotations

import numpy as np


def maxout_pieces(x, W, b=None):
    """z (P, N, O): every piece's affine output."""
    z = np.einsum("ni,kio->kno", x.astype(np.float64), W.astype(np.float64))
    return z if b is None else z + b.astype(np.float64)[:, None, :]


def maxout_forward(x, W, b=None):
    """(y, argmax): numpy's argmax takes the first maximum, i.e. ties go to the lowest piece."""
    z = maxout_pieces(x, W, b)
    return z.max(axis=0), z.argmax(axis=0).astype(np.int32)


def maxout_backward(dy, x, W, argmax):
    """(dx, dW, db) with each output's gradient routed to its winning piece."""
    dy, x, W = (a.astype(np.float64) for a in (dy, x, W))
    P = W.shape[0]
    dz = np.stack([np.where(argmax == k, dy, 0.0) for k in range(P)])
    dx = np.einsum("kno,kio->ni", dz, W)
    dW = np.einsum("ni,kno->kio", x, dz)
    return dx, dW, dz.sum(axis=1)
