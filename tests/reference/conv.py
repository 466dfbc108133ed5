"""float64 numpy reference for the conv family (PyTorch conv1d/conv2d semantics).

Independent of the C++ unfolding: the input is zero-padded once, and the convolution is a sum over
the kernel offsets (kh, kw) of one strided slice of the padded input contracted with the weights'
(O, C) slice at that offset (einsum). The backward pass applies the same slices in reverse.
1-D inputs (N, C, L) run as H = 1.
"""
from __future__ import annotations

import numpy as np


def _as_2d(x, w, stride, padding, dilation):
    """4-D arrays and per-axis tuples, whether the call is 1-D or 2-D."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    if x.ndim == 3:
        return (x[:, :, None, :], w[:, :, None, :], (1, stride[0]), (0, padding[0], 0, padding[1]),
                (1, dilation[0]), True)
    return x, w, tuple(stride), tuple(padding), tuple(dilation), False


def _slices(KH, KW, OH, OW, stride, dilation):
    SH, SW = stride
    DH, DW = dilation
    for kh in range(KH):
        for kw in range(KW):
            rows = slice(kh * DH, kh * DH + SH * (OH - 1) + 1, SH)
            cols = slice(kw * DW, kw * DW + SW * (OW - 1) + 1, SW)
            yield kh, kw, rows, cols


def output_size(size, k, s, p_before, p_after, d):
    return (size + p_before + p_after - d * (k - 1) - 1) // s + 1


def conv_forward(x, w, b, stride, padding, dilation):
    """y = conv(x, w) + b; padding is (left, right) for 1-D, (top, left, bottom, right) for 2-D."""
    x4, w4, st, pad, dil, one_d = _as_2d(x, w, stride, padding, dilation)
    N, C, H, W = x4.shape
    O, _, KH, KW = w4.shape
    PT, PL, PB, PR = pad
    OH = output_size(H, KH, st[0], PT, PB, dil[0])
    OW = output_size(W, KW, st[1], PL, PR, dil[1])
    xp = np.pad(x4, ((0, 0), (0, 0), (PT, PB), (PL, PR)))
    y = np.zeros((N, O, OH, OW))
    for kh, kw, rows, cols in _slices(KH, KW, OH, OW, st, dil):
        y += np.einsum("nchw,oc->nohw", xp[:, :, rows, cols], w4[:, :, kh, kw])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y[:, :, 0, :] if one_d else y


def conv_backward(dy, x, w, stride, padding, dilation, l2=0.0):
    """(dx, dw, db) for the loss sum(dy * conv_forward(x, w, b)) (+ l2/2 ||w||²)."""
    x4, w4, st, pad, dil, one_d = _as_2d(x, w, stride, padding, dilation)
    dy4 = np.asarray(dy, np.float64)
    if one_d:
        dy4 = dy4[:, :, None, :]
    N, C, H, W = x4.shape
    O, _, KH, KW = w4.shape
    PT, PL, PB, PR = pad
    OH, OW = dy4.shape[2:]
    xp = np.pad(x4, ((0, 0), (0, 0), (PT, PB), (PL, PR)))
    dxp = np.zeros_like(xp)
    dw = l2 * w4.copy()
    for kh, kw, rows, cols in _slices(KH, KW, OH, OW, st, dil):
        dw[:, :, kh, kw] += np.einsum("nohw,nchw->oc", dy4, xp[:, :, rows, cols])
        dxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", dy4, w4[:, :, kh, kw])
    dx = dxp[:, :, PT:PT + H, PL:PL + W]
    db = dy4.sum(axis=(0, 2, 3))
    if one_d:
        return dx[:, :, 0, :], dw[:, :, 0, :], db
    return dx, dw, db


def same_padding(kernel, dilation):
    """PyTorch's padding="same" for stride 1: (before, after) per axis, the odd zero at the end."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2
