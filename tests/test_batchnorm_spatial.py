"""The spatial batch-norm kernels ((N, C, L) and (N, C, H, W) input) against the float64
reference, PyTorch's batch_norm, and themselves across thread counts."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL, TOL_BACKWARD
from gradstep import _core
from reference.batchnorm import (batchnorm_spatial_backward, batchnorm_spatial_backward_eval,
                                 batchnorm_spatial_forward_eval, batchnorm_spatial_forward_train)

SHAPES = [(2, 3, 5), (1, 2, 3, 4), (4, 1, 2, 2), (5, 6, 7)]


def _params(C, dtype, rng):
    return (rng.uniform(0.5, 2, C).astype(dtype), rng.standard_normal(C).astype(dtype),
            rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_spatial_train_matches_reference(shape, dtype, rng):
    C = shape[1]
    g, b, rm, rv = _params(C, dtype, rng)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, xhat, mean, invstd = _core.batchnorm_spatial_forward_train(x, g, b, rm, rv, 0.2, 1e-3)
    ry, rxhat, rmean, rinv, rrm, rrv = batchnorm_spatial_forward_train(x, g, b, rm0, rv0, 0.2, 1e-3)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    np.testing.assert_allclose(mean, rmean, **TOL[dtype])
    np.testing.assert_allclose(rm, rrm, **TOL[dtype])
    np.testing.assert_allclose(rv, rrv, **TOL[dtype])
    dy = rng.standard_normal(shape).astype(dtype)
    dg, db = np.empty_like(g), np.empty_like(g)
    dx = _core.batchnorm_spatial_backward(dy, xhat, invstd, g, dg, db)
    rdx, rdg, rdb = batchnorm_spatial_backward(dy, rxhat, rinv, g)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(dg, rdg, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(db, rdb, **TOL_BACKWARD[dtype])


@pytest.mark.parametrize("shape", SHAPES)
def test_spatial_eval_matches_reference(shape, dtype, rng):
    C = shape[1]
    g, b, rm, rv = _params(C, dtype, rng)
    x = rng.standard_normal(shape).astype(dtype)
    y = _core.batchnorm_spatial_forward_eval(x, g, b, rm, rv, 1e-4)
    np.testing.assert_allclose(y, batchnorm_spatial_forward_eval(x, g, b, rm, rv, 1e-4), **TOL[dtype])
    dy = rng.standard_normal(shape).astype(dtype)
    dg, db = np.empty_like(g), np.empty_like(g)
    dx = _core.batchnorm_spatial_backward_eval(dy, x, g, rm, rv, dg, db, 1e-4)
    for got, want in zip((dx, dg, db), batchnorm_spatial_backward_eval(dy, x, g, rm, rv, 1e-4)):
        np.testing.assert_allclose(got, want, **TOL_BACKWARD[dtype])


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 3, 5, 4)])
def test_spatial_matches_torch(shape, dtype, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    C = shape[1]
    g, b, rm, rv = _params(C, dtype, rng)
    x = rng.standard_normal(shape).astype(dtype)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    xt = torch.tensor(x, requires_grad=True)
    gt, bt = torch.tensor(g, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, trm, trv, gt, bt, training=True, momentum=0.1, eps=1e-5)
    y, xhat, _, invstd = _core.batchnorm_spatial_forward_train(x, g, b, rm, rv, 0.1, 1e-5)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(rm, trm.numpy(), **tol)
    np.testing.assert_allclose(rv, trv.numpy(), **tol)
    dy = rng.standard_normal(shape).astype(dtype)
    yt.backward(torch.tensor(dy))
    dg, db = np.empty_like(g), np.empty_like(g)
    dx = _core.batchnorm_spatial_backward(dy, xhat, invstd, g, dg, db)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dg, gt.grad.numpy(), **tol)
    np.testing.assert_allclose(db, bt.grad.numpy(), **tol)


def test_spatial_bit_identical_for_1_and_2_threads(rng):
    x = rng.standard_normal((32, 16, 12, 12)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        g, b, rm, rv = _params(16, "float32", np.random.default_rng(1))
        y, xhat, mean, invstd = _core.batchnorm_spatial_forward_train(x, g, b, rm, rv, 0.1, 1e-5)
        dg, db = np.empty_like(g), np.empty_like(g)
        dx = _core.batchnorm_spatial_backward(dy, xhat, invstd, g, dg, db)
        out.append((y, rm, rv, dx, dg, db))
    for a, c in zip(*out):
        np.testing.assert_array_equal(a, c)


def test_spatial_rejects(rng):
    g = np.ones(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _core.batchnorm_spatial_forward_train(np.ones((1, 3, 1)), g, g, np.zeros(3), np.ones(3), 0.1, 1e-5)
    with pytest.raises(ValueError, match="at least 3-D"):
        _core.batchnorm_spatial_forward_train(np.ones((4, 3)), g, g, np.zeros(3), np.ones(3), 0.1, 1e-5)
    with pytest.raises(ValueError, match="gamma"):
        _core.batchnorm_spatial_forward_eval(np.ones((2, 4, 5)), g, g, g, g, 1e-5)
    with pytest.raises(ValueError, match="xhat"):
        _core.batchnorm_spatial_backward(np.ones((2, 3, 5)), np.ones((2, 3, 4)), g, g,
                                         np.empty(3), np.empty(3))
