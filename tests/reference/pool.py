"""float64 numpy reference for the pool family (PyTorch max_pool/avg_pool semantics,
ceil_mode=False, count_include_pad=True), written as a loop over output positions."""
from __future__ import annotations

import numpy as np


def _as_2d(x, kernel, stride, padding):
    x = np.asarray(x, np.float64)
    if x.ndim == 3:
        return x[:, :, None, :], (1, kernel[0]), (1, stride[0]), (0, padding[0], 0, padding[1]), True
    return x, tuple(kernel), tuple(stride), tuple(padding), False


def _windows(x4, kernel, stride, padding, fill):
    """Yields (i, j, window (N, C, KH·KW), row0, col0) over the padded input."""
    N, C, H, W = x4.shape
    (KH, KW), (SH, SW), (PT, PL, PB, PR) = kernel, stride, padding
    xp = np.pad(x4, ((0, 0), (0, 0), (PT, PB), (PL, PR)), constant_values=fill)
    OH = (H + PT + PB - KH) // SH + 1
    OW = (W + PL + PR - KW) // SW + 1
    for i in range(OH):
        for j in range(OW):
            win = xp[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW].reshape(N, C, -1)
            yield i, j, win, i * SH - PT, j * SW - PL
    return OH, OW


def maxpool(x, kernel, stride, padding):
    """(y, argmax as flat input indices h·W + w, dx_fn(dy))."""
    x4, k, s, p, one_d = _as_2d(x, kernel, stride, padding)
    N, C, H, W = x4.shape
    OH = (H + p[0] + p[2] - k[0]) // s[0] + 1
    OW = (W + p[1] + p[3] - k[1]) // s[1] + 1
    y = np.empty((N, C, OH, OW))
    arg = np.empty((N, C, OH, OW), dtype=np.int64)
    for i, j, win, r0, c0 in _windows(x4, k, s, p, -np.inf):
        a = win.argmax(axis=2)  # the first maximum, as PyTorch
        y[:, :, i, j] = np.take_along_axis(win, a[..., None], axis=2)[..., 0]
        arg[:, :, i, j] = (r0 + a // k[1]) * W + (c0 + a % k[1])

    def backward(dy):
        dy4 = np.asarray(dy, np.float64).reshape(N, C, OH, OW)
        dx = np.zeros((N, C, H * W))
        for n in range(N):
            for c in range(C):
                np.add.at(dx[n, c], arg[n, c].ravel(), dy4[n, c].ravel())
        dx = dx.reshape(N, C, H, W)
        return dx[:, :, 0, :] if one_d else dx

    if one_d:
        return y[:, :, 0, :], arg[:, :, 0, :], backward
    return y, arg, backward


def avgpool(x, kernel, stride, padding):
    """(y, dx_fn(dy)); the divisor is always KH·KW (count_include_pad=True)."""
    x4, k, s, p, one_d = _as_2d(x, kernel, stride, padding)
    N, C, H, W = x4.shape
    OH = (H + p[0] + p[2] - k[0]) // s[0] + 1
    OW = (W + p[1] + p[3] - k[1]) // s[1] + 1
    y = np.empty((N, C, OH, OW))
    for i, j, win, _, _ in _windows(x4, k, s, p, 0.0):
        y[:, :, i, j] = win.mean(axis=2)

    def backward(dy):
        dy4 = np.asarray(dy, np.float64).reshape(N, C, OH, OW)
        dxp = np.zeros((N, C, H + p[0] + p[2], W + p[1] + p[3]))
        for i in range(OH):
            for j in range(OW):
                dxp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]] += (
                    dy4[:, :, i, j][:, :, None, None] / (k[0] * k[1]))
        dx = dxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]
        return dx[:, :, 0, :] if one_d else dx

    return (y[:, :, 0, :] if one_d else y), backward


def global_avgpool(x):
    x = np.asarray(x, np.float64)
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)


def global_avgpool_backward(dy, shape):
    dy = np.asarray(dy, np.float64)
    S = int(np.prod(shape[2:]))
    return np.broadcast_to((dy / S).reshape(dy.shape + (1,) * (len(shape) - 2)), shape).copy()
