"""The pool kernels (gradstep._core.*pool*) against the float64 numpy reference, PyTorch, and
themselves across thread counts; and their argument validation."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core
from reference.pool import avgpool, global_avgpool, global_avgpool_backward, maxpool

# (x shape, kernel, stride, padding)
CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((1, 1, 7, 5), (3, 2), (2, 1), (1, 1, 1, 0)),     # odd sizes, overlap, asymmetric pads
    ((3, 2, 5, 5), (5, 5), (1, 1), (0, 0, 0, 0)),     # window = input
    ((2, 2, 6, 7), (3, 3), (3, 2), (1, 1, 1, 1)),
    ((2, 4, 9), (3,), (2,), (1, 1)),                  # 1-D
    ((1, 1, 5), (1,), (1,), (0, 0)),                  # 1-D window 1
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}" for c in CASES]
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-6)}


def _x(shape, dtype, rng, ties=False):
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)  # many equal values: the first maximum must win
    return x.astype(dtype)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_maxpool_matches_reference(case, ties, dtype, rng):
    xs, k, s, p = case
    x = _x(xs, dtype, rng, ties)
    y, arg = _core.maxpool_forward(x, k, s, p)
    ry, rarg, rback = maxpool(x, k, s, p)
    assert y.dtype == np.dtype(dtype) and arg.dtype == np.int32
    np.testing.assert_array_equal(y, ry.astype(dtype))
    np.testing.assert_array_equal(arg, rarg)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = _core.maxpool_backward(dy, arg, list(x.shape), k, s, p)
    np.testing.assert_allclose(dx, rback(dy), **TOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_avgpool_matches_reference(case, dtype, rng):
    xs, k, s, p = case
    x = _x(xs, dtype, rng)
    y = _core.avgpool_forward(x, k, s, p)
    ry, rback = avgpool(x, k, s, p)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = _core.avgpool_backward(dy, list(x.shape), k, s, p)
    np.testing.assert_allclose(dx, rback(dy), **TOL[dtype])


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 7), (3, 2, 1, 1)])
def test_global_avgpool_matches_reference(shape, dtype, rng):
    x = _x(shape, dtype, rng)
    y = _core.global_avgpool_forward(x)
    np.testing.assert_allclose(y, global_avgpool(x), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = _core.global_avgpool_backward(dy, list(shape))
    np.testing.assert_allclose(dx, global_avgpool_backward(dy, shape), **TOL[dtype])


def test_maxpool_propagates_nan_and_handles_inf():
    x = np.array([[[1.0, np.nan, 3.0, -np.inf, -np.inf, 2.0]]])
    y, arg = _core.maxpool_forward(x, [2], [2], [0, 0])
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 3.0 and y[0, 0, 2] == 2.0
    y, arg = _core.maxpool_forward(np.full((1, 1, 4), -np.inf), [2], [2], [0, 0])
    assert np.all(y == -np.inf) and list(arg[0, 0]) == [0, 2]  # PyTorch: the window's first index


# ---- PyTorch ---------------------------------------------------------------------------------
def _symmetric(p):
    half = len(p) // 2
    return tuple(p[:half]) == tuple(p[half:])


# PyTorch's pools take symmetric padding only; the reference covers the asymmetric cases.
@pytest.mark.parametrize("case", [c for c in CASES if _symmetric(c[3])],
                         ids=[i for c, i in zip(CASES, IDS) if _symmetric(c[3])])
def test_pools_match_torch(case, dtype, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    F = torch.nn.functional
    xs, k, s, p = case
    x = _x(xs, dtype, rng, ties=True)
    tp = p[:len(p) // 2]
    mp, ap = (F.max_pool1d, F.avg_pool1d) if x.ndim == 3 else (F.max_pool2d, F.avg_pool2d)
    for fn, ours in ((mp, "max"), (ap, "avg")):
        xt = torch.tensor(x, requires_grad=True)
        yt = fn(xt, k, s, tp)
        if ours == "max":
            y, arg = _core.maxpool_forward(x, k, s, p)
        else:
            y = _core.avgpool_forward(x, k, s, p)
        np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
        dy = rng.standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(dy))
        if ours == "max":
            dx = _core.maxpool_backward(dy, arg, list(xs), k, s, p)
        else:
            dx = _core.avgpool_backward(dy, list(xs), k, s, p)
        np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])


def test_pools_bit_identical_for_1_and_2_threads(rng):
    x = rng.standard_normal((64, 16, 14, 14)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 7, 7)).astype(np.float32)
    out = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        y, arg = _core.maxpool_forward(x, [3, 3], [2, 2], [1, 1, 1, 1])
        a = _core.avgpool_forward(x, [2, 2], [2, 2], [0, 0, 0, 0])
        out.append((y, arg, _core.maxpool_backward(dy, arg, list(x.shape), [3, 3], [2, 2],
                                                   [1, 1, 1, 1]),
                    a, _core.avgpool_backward(dy, list(x.shape), [2, 2], [2, 2], [0, 0, 0, 0]),
                    _core.global_avgpool_forward(x)))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


# ---- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("args,exc,words", [
    ((np.ones((2, 3, 4, 4), np.int32), [2, 2], [2, 2], [0, 0, 0, 0]), TypeError, "x"),
    ((np.ones((4, 4)), [2, 2], [2, 2], [0, 0, 0, 0]), ValueError, "x must be 3-D"),
    ((np.ones((2, 3, 4, 4)), [2], [2, 2], [0, 0, 0, 0]), ValueError, "kernel_size"),
    ((np.ones((2, 3, 4, 4)), [2, 0], [2, 2], [0, 0, 0, 0]), ValueError, "kernel_size"),
    ((np.ones((2, 3, 4, 4)), [2, 2], [0, 2], [0, 0, 0, 0]), ValueError, "stride"),
    ((np.ones((2, 3, 4, 4)), [2, 2], [2, 2], [0, -1, 0, 0]), ValueError, "padding"),
    ((np.ones((2, 3, 4, 4)), [2, 2], [2, 2], [2, 0, 0, 0]), ValueError, "at most half"),
    ((np.ones((2, 3, 4, 4)), [5, 2], [1, 1], [0, 0, 0, 0]), ValueError, "smaller than kernel"),
    ((np.ones((2, 0, 4, 4)), [2, 2], [2, 2], [0, 0, 0, 0]), ValueError, "channel"),
])
@pytest.mark.parametrize("fn", ["maxpool_forward", "avgpool_forward"])
def test_pool_forward_rejects(fn, args, exc, words):
    with pytest.raises(exc, match=words):
        getattr(_core, fn)(*args)


def test_pool_backward_rejects():
    dy = np.ones((2, 3, 2, 2))
    geo = ([2, 2], [2, 2], [0, 0, 0, 0])
    arg = np.zeros((2, 3, 2, 2), np.int32)
    with pytest.raises(ValueError, match="dy"):
        _core.maxpool_backward(dy, arg, [2, 3, 6, 6], *geo)
    with pytest.raises(TypeError, match="argmax"):
        _core.maxpool_backward(dy, arg.astype(np.int64), [2, 3, 4, 4], *geo)
    with pytest.raises(ValueError, match="argmax"):
        _core.maxpool_backward(dy, arg[:1], [2, 3, 4, 4], *geo)
    with pytest.raises(ValueError, match="input_shape"):
        _core.avgpool_backward(dy, [2, 3], *geo)
    with pytest.raises(ValueError, match="input_shape"):
        _core.global_avgpool_backward(np.ones((2, 3)), [2, 3])
    with pytest.raises(ValueError, match="dy"):
        _core.global_avgpool_backward(np.ones((2, 4)), [2, 3, 5])
    # argmax entries outside the plane are skipped, never written through
    bad = np.full((2, 3, 2, 2), 10**6, np.int32)
    assert np.all(_core.maxpool_backward(dy, bad, [2, 3, 4, 4], *geo) == 0)
