from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL, TOL_BACKWARD
from gradcheck_util import check_layer
from reference.dense import dense_backward, dense_forward


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (33, 64, 17)])
def test_dense_matches_reference(dtype, bias, shape, rng):
    N, I, O = shape
    layer = gs.Dense(I, O, bias=bias, dtype=dtype, seed=1, l2=0.3)
    if bias:
        layer.params["bias"][...] = rng.standard_normal(O)
    x = rng.standard_normal((N, I))
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype) and y.shape == (N, O)
    W = layer.params["weight"]
    xr = x.astype(dtype)
    np.testing.assert_allclose(y, dense_forward(xr, W, layer.params.get("bias")), **TOL[dtype])
    dy = rng.standard_normal((N, O))
    dx = layer.backward(dy)
    rdx, rdW, rdb = dense_backward(dy.astype(dtype), xr, W, l2=0.3)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["weight"], rdW, **TOL_BACKWARD[dtype])
    if bias:
        np.testing.assert_allclose(layer.grads["bias"], rdb, **TOL_BACKWARD[dtype])
    assert layer.penalty() == pytest.approx(0.15 * np.sum(W.astype(np.float64) ** 2), rel=1e-6)


def test_dense_gradcheck(rng):
    layer = gs.Dense(4, 3, dtype="float64", seed=0, l2=0.1)
    layer.params["bias"][...] = rng.standard_normal(3)
    errors = check_layer(layer, rng.standard_normal((5, 4)), rng)
    assert max(errors.values()) < 1e-6, errors


def test_params_are_live_views(rng):
    layer = gs.Dense(3, 2, dtype="float64", seed=0)
    layer.params["weight"][...] = 0.0
    layer.params["bias"][...] = [1.0, 2.0]
    y = layer.forward(rng.standard_normal((4, 3)))
    np.testing.assert_array_equal(y, np.tile([1.0, 2.0], (4, 1)))
    p = {q.name: q for q in layer.parameters()}
    assert np.shares_memory(p["weight"].value, layer.params["weight"])
    assert np.shares_memory(p["weight"].grad, layer.grads["weight"])


def test_backward_overwrites_gradients(rng):
    layer = gs.Dense(3, 2, dtype="float64", seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dy)
    first = layer.grads["weight"].copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads["weight"], first)


def test_other_layouts_give_same_result(rng):
    layer = gs.Dense(6, 3, dtype="float32", seed=0)
    x = rng.standard_normal((5, 12))
    strided = x[:, ::2]
    ref = layer.forward(np.ascontiguousarray(strided, dtype=np.float32))
    np.testing.assert_array_equal(layer.forward(strided), ref)
    np.testing.assert_array_equal(layer.forward(np.asfortranarray(strided)), ref)
    xi = rng.integers(-3, 3, size=(5, 6))
    np.testing.assert_array_equal(layer.forward(xi), layer.forward(xi.astype(np.float32)))
    np.testing.assert_array_equal(layer.forward(xi.astype(np.float16)),
                                  layer.forward(xi.astype(np.float16).astype(np.float32)))


def test_dense_initializers_have_the_stated_variance():
    for init, var in [("he", 2 / 400), ("xavier", 2 / 600), ("lecun", 1 / 400),
                      ("he_uniform", 2 / 400), ("xavier_uniform", 2 / 600), ("normal", 1e-4)]:
        W = gs.Dense(400, 200, init=init, dtype="float64", seed=3).params["weight"]
        assert W.var() == pytest.approx(var, rel=0.03), init
    assert not gs.Dense(4, 4, init="zeros").params["weight"].any()
    W = gs.Dense(2, 3, init=lambda shape, rng: np.full(shape, 0.5)).params["weight"]
    assert np.all(W == 0.5)


def test_seed_gives_same_weights():
    a = gs.Dense(5, 5, seed=7).params["weight"]
    b = gs.Dense(5, 5, seed=7).params["weight"]
    np.testing.assert_array_equal(a, b)
    gs.seed(3)
    c = gs.Dense(5, 5).params["weight"].copy()
    gs.seed(3)
    np.testing.assert_array_equal(gs.Dense(5, 5).params["weight"], c)


def test_dense_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    layer = gs.Dense(8, 5, dtype=dtype, seed=0)
    layer.params["bias"][...] = rng.standard_normal(5)
    x = rng.standard_normal((6, 8)).astype(dtype)
    dy = rng.standard_normal((6, 5)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tW = torch.tensor(layer.params["weight"].T.copy(), requires_grad=True)
    tb = torch.tensor(layer.params["bias"].copy(), requires_grad=True)
    ty = torch.nn.functional.linear(tx, tW, tb)
    ty.backward(torch.tensor(dy))
    tol = TOL_BACKWARD[dtype]
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["weight"], tW.grad.numpy().T, **tol)
    np.testing.assert_allclose(layer.grads["bias"], tb.grad.numpy(), **tol)


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros(4), ValueError, "2-D"),
    (np.zeros((2, 3, 4)), ValueError, "2-D"),
    (np.zeros((2, 5)), ValueError, "4 features"),
    (np.zeros((0, 4)), ValueError, "at least one row"),
    (np.array([["a"] * 4]), TypeError, "numeric"),
    ("hello", TypeError, "numeric"),
])
def test_dense_bad_input(bad, exc, words):
    layer = gs.Dense(4, 2)
    with pytest.raises(exc, match=words) as info:
        layer.forward(bad)
    assert "x" in str(info.value)


def test_dense_backward_errors(rng):
    layer = gs.Dense(4, 2)
    with pytest.raises(ValueError, match="forward before backward"):
        layer.backward(np.zeros((3, 2)))
    layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(3, 2\)"):
        layer.backward(np.zeros((3, 3)))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(in_features=0, out_features=2), ValueError, "in_features must be >= 1"),
    (dict(in_features=2, out_features=-1), ValueError, "out_features must be >= 1"),
    (dict(in_features=2.5, out_features=2), TypeError, "in_features must be an int"),
    (dict(in_features=2, out_features=2, l2=-1.0), ValueError, "l2 must be >= 0"),
    (dict(in_features=2, out_features=2, init="bogus"), ValueError, "init must be one of"),
    (dict(in_features=2, out_features=2, dtype="int32"), ValueError, "dtype"),
])
def test_dense_bad_constructor(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        gs.Dense(**kwargs)


def test_huge_allocation_raises_memory_error():
    with pytest.raises(MemoryError):
        gs.Dense(10**7, 10**7)


def test_core_rejects_bad_arrays_directly():
    from gradstep import _core
    W = np.zeros((3, 2), np.float32)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _core.dense_forward(np.zeros((2, 3), np.int32), W, None)
    with pytest.raises(TypeError, match="W must have dtype float32"):
        _core.dense_forward(np.zeros((2, 3), np.float32), W.astype(np.float64), None)
    with pytest.raises(ValueError, match=r"W must have shape \(3, \*\)"):
        _core.dense_forward(np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32), None)
    with pytest.raises(ValueError, match="dW must be writable"):
        ro = np.zeros((3, 2), np.float32)
        ro.flags.writeable = False
        _core.dense_backward(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32), W, ro, None)


@pytest.mark.parametrize("shape", [(250, 48, 128), (512, 784, 256), (33, 300, 7), (1024, 64, 10),
                                   (1024, 300, 1024)])
def test_dense_bit_identical_for_1_and_2_threads(dtype, shape, rng):
    # OpenBLAS's own threading splits products differently per thread count; gradstep's gemm
    # wrapper cuts them into shape-only blocks (the last shape into 4, more than the 2 or 3 threads
    # here), so the bits cannot depend on the thread count.
    N, I, O = shape
    layer = gs.Dense(I, O, dtype=dtype, seed=0, l2=0.01)
    x, dy = rng.standard_normal((N, I)), rng.standard_normal((N, O))
    runs = []
    for threads in (1, 2, 3):
        gs.set_num_threads(threads)
        y = layer.forward(x)
        dx = layer.backward(dy)
        runs.append((y, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy()))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_set_num_threads_validates_and_reports():
    gs.set_num_threads(2)
    assert gs.get_num_threads() == 2
    with pytest.raises(ValueError, match="n must be >= 1"):
        gs.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an int"):
        gs.set_num_threads(1.5)


def test_unpickled_arrays_are_accepted():
    # An unpickled array carries an equal but distinct dtype object (joblib workers, memmaps).
    import pickle
    x = pickle.loads(pickle.dumps(np.ones((2, 3), np.float32)))
    W = pickle.loads(pickle.dumps(np.ones((3, 2), np.float32)))
    from gradstep import _core
    np.testing.assert_array_equal(_core.dense_forward(x, W, None), np.full((2, 2), 3.0, np.float32))


def test_arena_allocation_too_large_raises_memory_error():
    # The C++ allocator of the flat buffers refuses before asking for the memory.
    from gradstep import _core
    with pytest.raises(MemoryError):
        _core.alloc_zeros(2**45, "float32")
    with pytest.raises(ValueError, match="size must be >= 0"):
        _core.alloc_zeros(-1, "float32")
    a = _core.alloc_zeros(5, "float64")
    assert a.dtype == np.float64 and not a.any() and a.ctypes.data % 64 == 0
