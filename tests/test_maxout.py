from __future__ import annotations

import json

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL, TOL_BACKWARD
from gradcheck_util import check_layer
from gradstep import _core
from reference.maxout import maxout_backward, maxout_forward, maxout_pieces


def _layer(I, O, P, dtype, rng, seed=1):
    layer = gs.Maxout(I, O, P, dtype=dtype, seed=seed)
    layer.params["bias"][...] = rng.standard_normal((P, O))
    return layer


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 5, 3, 3), (33, 64, 17, 4), (6, 4, 5, 1)])
def test_maxout_matches_reference(dtype, shape, rng):
    N, I, O, P = shape
    layer = _layer(I, O, P, dtype, rng)
    x = rng.standard_normal((N, I))
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype) and y.shape == (N, O)
    xr = x.astype(dtype)
    W, b = layer.params["weight"], layer.params["bias"]
    ry, rarg = maxout_forward(xr, W, b)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    argmax = layer.argmax
    if dtype == "float64":
        np.testing.assert_array_equal(argmax, rarg)
    dy = rng.standard_normal((N, O))
    dx = layer.backward(dy)
    # The reference routes the gradient with the kernel's own argmax: in float32 a near-tie may
    # legitimately pick the other piece than the float64 reference would.
    rdx, rdW, rdb = maxout_backward(dy.astype(dtype), xr, W, argmax)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["weight"], rdW, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["bias"], rdb, **TOL_BACKWARD[dtype])


def test_maxout_argmax_is_a_winner(rng):
    """In float32 the chosen piece's value is the pieces' maximum (within rounding)."""
    layer = _layer(16, 8, 3, "float32", rng)
    x = rng.standard_normal((40, 16)).astype(np.float32)
    y = layer.forward(x)
    z = maxout_pieces(x, layer.params["weight"], layer.params["bias"])
    chosen = np.take_along_axis(z, layer.argmax[None].astype(np.int64), axis=0)[0]
    np.testing.assert_allclose(chosen, z.max(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, chosen, rtol=1e-5, atol=1e-5)


def test_ties_go_to_the_lowest_piece(dtype, rng):
    layer = gs.Maxout(3, 4, 3, dtype=dtype, seed=0)
    W = layer.params["weight"]
    W[1] = W[0]
    W[2] = W[0]
    x = rng.standard_normal((5, 3))
    layer.forward(x)
    np.testing.assert_array_equal(layer.argmax, 0)
    layer.backward(np.ones((5, 4)))
    assert np.any(layer.grads["weight"][0] != 0)
    np.testing.assert_array_equal(layer.grads["weight"][1:], 0)
    np.testing.assert_array_equal(layer.grads["bias"][1:], 0)
    np.testing.assert_array_equal(layer.grads["bias"][0], 5.0)
    # Pieces 1 and 2 tie above piece 0: piece 1 wins.
    W[0] = 0.0
    W[1:] = 0.0
    layer.params["bias"][...] = [[0.0] * 4, [1.0] * 4, [1.0] * 4]
    layer.forward(x)
    np.testing.assert_array_equal(layer.argmax, 1)


def test_nan_in_a_piece_propagates(rng):
    layer = gs.Maxout(3, 2, 3, dtype="float64", seed=0)
    layer.params["bias"][1, 0] = np.nan
    y = layer.forward(rng.standard_normal((4, 3)))
    assert np.all(np.isnan(y[:, 0])) and np.all(np.isfinite(y[:, 1]))
    np.testing.assert_array_equal(layer.argmax[:, 0], 1)


def test_maxout_gradcheck(rng):
    layer = _layer(4, 3, 3, "float64", rng, seed=0)
    x = rng.standard_normal((6, 4))
    # Away from ties: the two best pieces of every output must be well separated, or a
    # finite-difference step could switch the winner.
    z = np.sort(maxout_pieces(x, layer.params["weight"], layer.params["bias"]), axis=0)
    assert (z[-1] - z[-2]).min() > 1e-3
    errors = check_layer(layer, x, rng)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < 1e-6, errors


def test_maxout_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    N, I, O, P = 9, 7, 5, 3
    layer = _layer(I, O, P, dtype, rng)
    x = rng.standard_normal((N, I)).astype(dtype)
    dy = rng.standard_normal((N, O)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tW = torch.tensor(layer.params["weight"].copy(), requires_grad=True)
    tb = torch.tensor(layer.params["bias"].copy(), requires_grad=True)
    z = torch.stack([torch.nn.functional.linear(tx, tW[k].T, tb[k]) for k in range(P)])
    ty = z.max(dim=0).values
    ty.backward(torch.tensor(dy))
    tol = TOL_BACKWARD[dtype]
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["weight"], tW.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["bias"], tb.grad.numpy(), **tol)


def _run_at_threads(layer, x, dy, threads):
    gs.set_num_threads(threads)
    y = layer.forward(x)
    dx = layer.backward(dy)
    return y, layer.argmax.copy(), dx, layer.grads["weight"].copy(), layer.grads["bias"].copy()


def test_maxout_own_loops_threads_bit_identical(dtype, rng):
    """Small integers make every product and sum exact, so the gemms give the same bits whatever
    their blocking; any difference between 1 and 2 threads then comes from maxout's own loops
    (bias fill, max/argmax with its many ties, gradient routing, bias-gradient sums)."""
    N, I, O, P = 256, 8, 128, 3  # y has 32768 elements, z 98304: all loops cross kParallelMin
    layer = gs.Maxout(I, O, P, dtype=dtype, seed=0)
    layer.params["weight"][...] = rng.integers(-2, 3, size=(P, I, O))
    layer.params["bias"][...] = rng.integers(-2, 3, size=(P, O))
    x = rng.integers(-2, 3, size=(N, I))
    dy = rng.integers(-2, 3, size=(N, O))
    one, two = _run_at_threads(layer, x, dy, 1), _run_at_threads(layer, x, dy, 2)
    assert len(np.unique(one[1])) == P  # every piece wins somewhere
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_maxout_threads_bit_identical(dtype, rng):
    N, I, O, P = 250, 48, 128, 3
    layer = _layer(I, O, P, dtype, rng)
    x = rng.standard_normal((N, I))
    dy = rng.standard_normal((N, O))
    for a, b in zip(_run_at_threads(layer, x, dy, 1), _run_at_threads(layer, x, dy, 2)):
        np.testing.assert_array_equal(a, b)


def test_maxout_init_and_seed():
    layer = gs.Maxout(300, 100, 4, dtype="float64", seed=3)
    W = layer.params["weight"]
    assert W.shape == (4, 300, 100) and layer.params["bias"].shape == (4, 100)
    assert W.var() == pytest.approx(2 / 400, rel=0.03)  # xavier with the fans of one piece
    assert not layer.params["bias"].any()
    again = gs.Maxout(300, 100, 4, dtype="float64", seed=3)
    np.testing.assert_array_equal(again.params["weight"], W)
    assert gs.Maxout(300, 100, 4, init="he", dtype="float64", seed=3).params["weight"].var() == \
        pytest.approx(2 / 300, rel=0.03)
    assert not gs.Maxout(3, 2, init="zeros").params["weight"].any()
    custom = gs.Maxout(3, 2, 2, init=lambda shape, rng: np.full(shape, 0.25))
    assert np.all(custom.params["weight"] == 0.25)


def test_maxout_params_live_and_grads_overwritten(rng):
    layer = gs.Maxout(3, 2, 2, dtype="float64", seed=0)
    layer.params["weight"][...] = 0.0
    layer.params["bias"][...] = [[1.0, -1.0], [0.5, 2.0]]
    y = layer.forward(rng.standard_normal((4, 3)))
    np.testing.assert_array_equal(y, np.tile([1.0, 2.0], (4, 1)))
    p = {q.name: q for q in layer.parameters()}
    assert set(p) == {"weight", "bias"}
    assert np.shares_memory(p["weight"].grad, layer.grads["weight"])
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dy)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for k in first:
        np.testing.assert_array_equal(layer.grads[k], first[k])


def test_maxout_other_layouts_give_same_result(rng):
    layer = gs.Maxout(6, 3, 2, dtype="float32", seed=0)
    x = rng.standard_normal((5, 12))
    strided = x[:, ::2]
    ref = layer.forward(np.ascontiguousarray(strided, dtype=np.float32))
    np.testing.assert_array_equal(layer.forward(strided), ref)
    np.testing.assert_array_equal(layer.forward(np.asfortranarray(strided)), ref)
    xi = rng.integers(-3, 3, size=(5, 6))
    np.testing.assert_array_equal(layer.forward(xi), layer.forward(xi.astype(np.float32)))


def test_maxout_describes_itself():
    layer = gs.Maxout(4, 3, 5, dtype="float64")
    cfg = layer.get_config()
    assert cfg == {"in_features": 4, "out_features": 3, "pieces": 5, "dtype": "float64",
                   "init": "xavier"}
    json.dumps(cfg)
    assert repr(layer).startswith("Maxout(in_features=4, out_features=3, pieces=5")
    assert layer.input_features() == 4 and layer.output_features(4) == 3
    assert gs.layers.LAYER_REGISTRY["Maxout"] is gs.Maxout
    assert "Maxout" in gs.__all__


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros(4), ValueError, "2-D"),
    (np.zeros((2, 3, 4)), ValueError, "2-D"),
    (np.zeros((2, 5)), ValueError, "4 features"),
    (np.zeros((0, 4)), ValueError, "at least one row"),
    (np.array([["a"] * 4]), TypeError, "numeric"),
])
def test_maxout_bad_input(bad, exc, words):
    with pytest.raises(exc, match=words) as info:
        gs.Maxout(4, 2).forward(bad)
    assert "Maxout.forward: x" in str(info.value)


def test_maxout_backward_errors():
    layer = gs.Maxout(4, 2)
    with pytest.raises(ValueError, match="Maxout.backward: call forward before backward"):
        layer.backward(np.zeros((3, 2)))
    layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(3, 2\)"):
        layer.backward(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="grad_y must be a numeric array"):
        layer.backward(np.full((3, 2), "a"))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(in_features=0, out_features=2), ValueError, "in_features must be >= 1"),
    (dict(in_features=2, out_features=0), ValueError, "out_features must be >= 1"),
    (dict(in_features=2, out_features=2, pieces=0), ValueError, "pieces must be >= 1"),
    (dict(in_features=2, out_features=2, pieces=2.0), TypeError, "pieces must be an int"),
    (dict(in_features="2", out_features=2), TypeError, "in_features must be an int"),
    (dict(in_features=2, out_features=2, init="bogus"), ValueError, "init must be one of"),
    (dict(in_features=2, out_features=2, init=3), TypeError, "init must be a string or a callable"),
    (dict(in_features=2, out_features=2, init=lambda s, r: np.zeros(3)), ValueError,
     "init returned"),
    (dict(in_features=2, out_features=2, dtype="int32"), ValueError, "dtype"),
    (dict(in_features=2, out_features=2, seed=-1), ValueError, "seed must be >= 0"),
])
def test_maxout_bad_constructor(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        gs.Maxout(**kwargs)


def test_maxout_core_rejects_bad_arrays():
    f32 = np.float32
    x, W, b = np.zeros((2, 3), f32), np.zeros((2, 3, 4), f32), np.zeros((2, 4), f32)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _core.maxout_forward(x.astype(np.int32), W, b)
    with pytest.raises(TypeError, match="W must have dtype float32"):
        _core.maxout_forward(x, W.astype(np.float64), b)
    with pytest.raises(ValueError, match=r"W must have shape \(\*, 3, \*\)"):
        _core.maxout_forward(x, np.zeros((2, 4, 4), f32), b)
    with pytest.raises(ValueError, match=r"b must have shape \(2, 4\)"):
        _core.maxout_forward(x, W, np.zeros((4,), f32))
    with pytest.raises(ValueError, match="W must hold at least one piece"):
        _core.maxout_forward(x, np.zeros((0, 3, 4), f32), None)
    y, argmax = _core.maxout_forward(x, W, None)
    assert argmax.dtype == np.int32 and y.shape == (2, 4)
    dy, dW, db = np.zeros((2, 4), f32), np.zeros((2, 3, 4), f32), np.zeros((2, 4), f32)
    with pytest.raises(TypeError, match="argmax must have dtype int32"):
        _core.maxout_backward(dy, x, W, argmax.astype(np.int64), dW, db)
    with pytest.raises(ValueError, match=r"argmax must have shape \(2, 4\)"):
        _core.maxout_backward(dy, x, W, argmax[:1], dW, db)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 4\)"):
        _core.maxout_backward(dy[:, :3], x, W, argmax, dW, db)
    ro = dW.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="dW must be writable"):
        _core.maxout_backward(dy, x, W, argmax, ro, db)
    with pytest.raises(ValueError, match="db must be C-contiguous"):
        _core.maxout_backward(dy, x, W, argmax, dW, np.zeros((4, 2), f32).T)
    assert _core.maxout_backward(dy, x, W, argmax, dW, None, False) is None
