"""float64 numpy reference for the batchnorm family (PyTorch BatchNorm1d semantics)."""
from __future__ import annotations

import numpy as np


def _f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    """(y, xhat, mean, invstd, new_running_mean, new_running_var)."""
    x, gamma, beta, rm, rv = _f64(x, gamma, beta, running_mean, running_var)
    N = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)           # biased: used to normalize
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    new_rm = (1 - momentum) * rm + momentum * mean
    new_rv = (1 - momentum) * rv + momentum * var * N / (N - 1)  # unbiased: running estimate
    return gamma * xhat + beta, xhat, mean, invstd, new_rm, new_rv


def batchnorm_backward(dy, xhat, invstd, gamma):
    """(dx, dgamma, dbeta) through the batch statistics."""
    dy, xhat, invstd, gamma = _f64(dy, xhat, invstd, gamma)
    N = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * invstd / N * (N * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5):
    x, gamma, beta, rm, rv = _f64(x, gamma, beta, running_mean, running_var)
    return gamma * (x - rm) / np.sqrt(rv + eps) + beta


def batchnorm_backward_eval(dy, x, gamma, running_mean, running_var, eps=1e-5):
    """(dx, dgamma, dbeta) with the running statistics held constant."""
    dy, x, gamma, rm, rv = _f64(dy, x, gamma, running_mean, running_var)
    invstd = 1.0 / np.sqrt(rv + eps)
    xhat = (x - rm) * invstd
    return dy * gamma * invstd, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# ---- spatial (N, C, ...): the (N, F) formulas on the channel-last rows --------------------------
def _rows(a):
    """(N, C, *S) -> (N·S, C): every spatial position of every image is one row."""
    a = np.asarray(a, np.float64)
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unrows(r, shape):
    return np.moveaxis(r.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)), -1, 1)


def batchnorm_spatial_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1,
                                    eps=1e-5):
    y, xhat, mean, invstd, rm, rv = batchnorm_forward_train(_rows(x), gamma, beta, running_mean,
                                                            running_var, momentum, eps)
    return _unrows(y, x.shape), _unrows(xhat, x.shape), mean, invstd, rm, rv


def batchnorm_spatial_backward(dy, xhat, invstd, gamma):
    dx, dg, db = batchnorm_backward(_rows(dy), _rows(xhat), invstd, gamma)
    return _unrows(dx, dy.shape), dg, db


def batchnorm_spatial_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5):
    return _unrows(batchnorm_forward_eval(_rows(x), gamma, beta, running_mean, running_var, eps),
                   x.shape)


def batchnorm_spatial_backward_eval(dy, x, gamma, running_mean, running_var, eps=1e-5):
    dx, dg, db = batchnorm_backward_eval(_rows(dy), _rows(x), gamma, running_mean, running_var, eps)
    return _unrows(dx, dy.shape), dg, db
