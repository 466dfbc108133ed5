from __future__ import annotations

import json

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL, TOL_BACKWARD
from gradcheck_util import check_layer
from gradstep import _core
from gradstep._arena import Arena
from reference.batchnorm import (batchnorm_backward, batchnorm_backward_eval,
                                 batchnorm_forward_eval, batchnorm_forward_train)


def _layer(F, dtype, rng, **kwargs):
    layer = gs.BatchNorm(F, dtype=dtype, **kwargs)
    layer.params["gamma"][...] = rng.uniform(0.5, 2.0, F)
    layer.params["beta"][...] = rng.standard_normal(F)
    return layer


@pytest.mark.parametrize("shape", [(2, 1), (7, 5), (64, 70), (300, 3)])
def test_batchnorm_train_matches_reference(dtype, shape, rng):
    N, F = shape
    layer = _layer(F, dtype, rng, momentum=0.2, eps=1e-3)
    rm0, rv0 = rng.standard_normal(F), rng.uniform(0.5, 2.0, F)
    layer.buffers["running_mean"][...] = rm0
    layer.buffers["running_var"][...] = rv0
    x = (rng.standard_normal((N, F)) * rng.uniform(0.1, 10, F) + rng.standard_normal(F) * 3)
    xr = x.astype(dtype)
    g, b = layer.params["gamma"], layer.params["beta"]
    ry, rxhat, _, rinv, rrm, rrv = batchnorm_forward_train(
        xr, g, b, rm0.astype(dtype), rv0.astype(dtype), 0.2, 1e-3)
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype) and y.shape == (N, F)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    np.testing.assert_allclose(layer.buffers["running_mean"], rrm, **TOL[dtype])
    np.testing.assert_allclose(layer.buffers["running_var"], rrv, **TOL[dtype])
    dy = rng.standard_normal((N, F))
    dx = layer.backward(dy)
    rdx, rdg, rdb = batchnorm_backward(dy.astype(dtype), rxhat, rinv, g)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["gamma"], rdg, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["beta"], rdb, **TOL_BACKWARD[dtype])


@pytest.mark.parametrize("shape", [(1, 4), (9, 5), (40, 70)])
def test_batchnorm_eval_matches_reference(dtype, shape, rng):
    N, F = shape
    layer = _layer(F, dtype, rng, eps=1e-4)
    layer.buffers["running_mean"][...] = rng.standard_normal(F)
    layer.buffers["running_var"][...] = rng.uniform(0.1, 3.0, F)
    rm, rv = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    x = rng.standard_normal((N, F)) * 2
    xr = x.astype(dtype)
    g, b = layer.params["gamma"], layer.params["beta"]
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y, batchnorm_forward_eval(xr, g, b, rm, rv, 1e-4), **TOL[dtype])
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)  # eval leaves them alone
    np.testing.assert_array_equal(layer.buffers["running_var"], rv)
    dy = rng.standard_normal((N, F))
    dx = layer.backward(dy)
    rdx, rdg, rdb = batchnorm_backward_eval(dy.astype(dtype), xr, g, rm, rv, 1e-4)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["gamma"], rdg, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["beta"], rdb, **TOL_BACKWARD[dtype])


def test_running_statistics_over_several_steps(rng):
    layer = gs.BatchNorm(6, momentum=0.3, dtype="float64")
    rm, rv = np.zeros(6), np.ones(6)
    for step in range(5):
        x = rng.standard_normal((10 + step, 6)) * (step + 1) + step
        layer.forward(x)
        _, _, _, _, rm, rv = batchnorm_forward_train(x, np.ones(6), np.zeros(6), rm, rv, 0.3)
    np.testing.assert_allclose(layer.buffers["running_mean"], rm, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], rv, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_momentum_extremes(momentum, rng):
    layer = gs.BatchNorm(3, momentum=momentum, dtype="float64")
    x = rng.standard_normal((8, 3)) + 5
    layer.forward(x)
    if momentum == 0.0:
        np.testing.assert_array_equal(layer.buffers["running_mean"], 0.0)
        np.testing.assert_array_equal(layer.buffers["running_var"], 1.0)
    else:
        np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(layer.buffers["running_var"], x.var(axis=0, ddof=1), rtol=1e-13)


def test_batchnorm_gradcheck_training(rng):
    layer = _layer(4, "float64", rng)
    errors = check_layer(layer, rng.standard_normal((6, 4)) * 2 + 1, rng, training=True)
    assert set(errors) == {"input", "gamma", "beta"}
    assert max(errors.values()) < 1e-6, errors


def test_batchnorm_gradcheck_eval(rng):
    layer = _layer(4, "float64", rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(4)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 4)
    errors = check_layer(layer, rng.standard_normal((5, 4)), rng, training=False)
    assert set(errors) == {"input", "gamma", "beta"}
    assert max(errors.values()) < 1e-6, errors


def _torch_bn(torch, layer, dtype):
    F = layer.num_features
    bn = torch.nn.BatchNorm1d(F, eps=layer.eps, momentum=layer.momentum,
                              dtype=getattr(torch, dtype))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.params["gamma"]))
        bn.bias.copy_(torch.tensor(layer.params["beta"]))
    return bn


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.35, 1e-2)])
def test_batchnorm_matches_torch(dtype, momentum, eps, rng):
    torch = pytest.importorskip("torch")
    F = 7
    layer = _layer(F, dtype, rng, momentum=momentum, eps=eps)
    bn = _torch_bn(torch, layer, dtype)
    tol = tolb = TOL_BACKWARD[dtype]
    for step in range(4):
        x = (rng.standard_normal((16, F)) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal((16, F)).astype(dtype)
        training = step < 3  # three training steps, then evaluation with the running statistics
        bn.train(training)
        y = layer.forward(x, training=training)
        dx = layer.backward(dy)
        tx = torch.tensor(x, requires_grad=True)
        bn.zero_grad()
        ty = bn(tx)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), **tolb)
        np.testing.assert_allclose(layer.grads["gamma"], bn.weight.grad.numpy(), **tolb)
        np.testing.assert_allclose(layer.grads["beta"], bn.bias.grad.numpy(), **tolb)
        np.testing.assert_allclose(layer.buffers["running_mean"], bn.running_mean.numpy(), **tol)
        np.testing.assert_allclose(layer.buffers["running_var"], bn.running_var.numpy(), **tol)


def test_constant_feature_is_finite_and_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    layer = _layer(3, dtype, rng)
    x = rng.standard_normal((8, 3)).astype(dtype)
    x[:, 1] = 0.1  # zero variance
    dy = rng.standard_normal((8, 3)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    for a in (y, dx, layer.grads["gamma"], layer.grads["beta"], layer.buffers["running_var"]):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(y[:, 1], layer.params["beta"][1], rtol=1e-5, atol=1e-5)
    bn = _torch_bn(torch, layer, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = bn(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["gamma"], bn.weight.grad.numpy(), **TOL_BACKWARD[dtype])


def test_large_offset_is_stable(rng):
    """A feature with |mean| >> std: the two-pass variance keeps full float32 accuracy, where
    E[x²] - E[x]² in float32 would lose every digit of the variance."""
    x = (1000.0 + rng.standard_normal((256, 4))).astype(np.float32)
    layer = gs.BatchNorm(4, dtype="float32")
    y = layer.forward(x)
    ry = batchnorm_forward_train(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4))[0]
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)


def test_single_row_eval_works_training_raises(rng):
    layer = _layer(3, "float64", rng)
    layer.buffers["running_var"][...] = [1.0, 2.0, 0.5]
    x = rng.standard_normal((1, 3))
    y = layer.forward(x, training=False)
    g, b = layer.params["gamma"], layer.params["beta"]
    np.testing.assert_allclose(y, batchnorm_forward_eval(x, g, b, np.zeros(3), [1.0, 2.0, 0.5]),
                               **TOL["float64"])
    with pytest.raises(ValueError, match="Expected more than 1 value per channel") as info:
        layer.forward(x, training=True)
    assert "x" in str(info.value)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        _core.batchnorm_forward_train(x, g, b, np.zeros(3), np.ones(3), 0.1, 1e-5)


def test_batchnorm_threads_bit_identical(dtype, rng):
    N, F = 700, 75  # 52500 elements, 3 column blocks
    results = []
    x = rng.standard_normal((N, F)) * 3 + 1
    dy = rng.standard_normal((N, F))
    for threads in (1, 2):
        gs.set_num_threads(threads)
        layer = _layer(F, dtype, np.random.default_rng(5))
        out = [layer.forward(x), layer.backward(dy), layer.grads["gamma"].copy(),
               layer.grads["beta"].copy()]
        out += [layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()]
        out += [layer.forward(x, training=False), layer.backward(dy), layer.grads["gamma"].copy(),
                layer.grads["beta"].copy()]
        results.append(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_buffers_are_live_views(rng):
    layer = gs.BatchNorm(3, dtype="float64")
    buf = layer.buffers
    assert set(buf) == {"running_mean", "running_var"}
    np.testing.assert_array_equal(buf["running_mean"], 0.0)
    np.testing.assert_array_equal(buf["running_var"], 1.0)
    np.testing.assert_array_equal(layer.params["gamma"], 1.0)
    np.testing.assert_array_equal(layer.params["beta"], 0.0)
    layer.forward(rng.standard_normal((5, 3)))
    assert np.any(buf["running_mean"] != 0.0)  # updated in place: the same arrays
    buf["running_mean"][...] = 2.0
    buf["running_var"][...] = 4.0 - 1e-5
    y = layer.forward(np.full((2, 3), 4.0), training=False)
    np.testing.assert_allclose(y, 1.0, rtol=1e-12)
    assert [p.name for p in layer.parameters()] == ["gamma", "beta"]


def test_cast_buffers_with_the_model_dtype(rng):
    layer = gs.BatchNorm(3, dtype="float32")
    x = rng.standard_normal((6, 3))
    layer.forward(x)
    rm = layer.buffers["running_mean"].copy()
    same = layer.buffers["running_var"]
    layer._cast_buffers(np.dtype(np.float32))
    assert layer.buffers["running_var"] is same  # same dtype: views stay live
    layer._move_to(Arena(layer._param_shapes().items(), np.dtype(np.float64)), "")
    assert layer.dtype == np.float64
    for v in (*layer.params.values(), *layer.buffers.values()):
        assert v.dtype == np.float64
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm.astype(np.float64))
    assert layer.forward(x).dtype == np.float64
    assert layer.get_config()["dtype"] == "float64"


def test_batchnorm_other_layouts_give_same_result(rng):
    layer = gs.BatchNorm(6, dtype="float32")
    x = rng.standard_normal((5, 12))
    strided = x[:, ::2]
    ref = layer.forward(np.ascontiguousarray(strided, dtype=np.float32), training=False)
    np.testing.assert_array_equal(layer.forward(strided, training=False), ref)
    np.testing.assert_array_equal(layer.forward(np.asfortranarray(strided), training=False), ref)
    xi = rng.integers(-3, 3, size=(5, 6))
    np.testing.assert_array_equal(layer.forward(xi, training=False),
                                  layer.forward(xi.astype(np.float32), training=False))


def test_batchnorm_backward_overwrites(rng):
    layer = _layer(3, "float64", rng)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer.forward(x)
    layer.backward(dy)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for k in first:
        np.testing.assert_array_equal(layer.grads[k], first[k])


def test_batchnorm_describes_itself():
    layer = gs.BatchNorm(4, momentum=0.2, eps=1e-3, dtype="float64")
    cfg = layer.get_config()
    assert cfg == {"num_features": 4, "momentum": 0.2, "eps": 1e-3, "dtype": "float64"}
    json.dumps(cfg)
    assert repr(layer) == "BatchNorm(num_features=4, momentum=0.2, eps=0.001, dtype='float64')"
    assert layer.input_features() == 4 and layer.output_features(4) == 4
    assert gs.layers.LAYER_REGISTRY["BatchNorm"] is gs.BatchNorm
    assert "BatchNorm" in gs.__all__


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(num_features=0), ValueError, "num_features must be >= 1"),
    (dict(num_features=2.0), TypeError, "num_features must be an int"),
    (dict(num_features=2, momentum=-0.1), ValueError, "momentum must be in"),
    (dict(num_features=2, momentum=1.5), ValueError, "momentum must be in"),
    (dict(num_features=2, momentum="0.1"), TypeError, "momentum must be a number"),
    (dict(num_features=2, momentum=None), TypeError, "momentum must be a number"),
    (dict(num_features=2, eps=0.0), ValueError, "eps must be > 0"),
    (dict(num_features=2, eps=-1e-5), ValueError, "eps must be > 0"),
    (dict(num_features=2, eps=float("nan")), ValueError, "eps must be finite"),
    (dict(num_features=2, dtype="float16"), ValueError, "dtype"),
])
def test_batchnorm_bad_constructor(kwargs, exc, words):
    with pytest.raises(exc, match=words) as info:
        gs.BatchNorm(**kwargs)
    if "dtype" not in kwargs:
        assert str(info.value).startswith("BatchNorm: ")


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros(3), ValueError, "1-D array"),
    (np.zeros((2, 3, 1, 1, 1)), ValueError, r"\(N, 3, H, W\)"),   # (N, C, L), (N, C, H, W) are fine
    (np.zeros((2, 4, 5)), ValueError, "3 channels"),
    (np.zeros((2, 4)), ValueError, "3 features"),
    (np.zeros((0, 3)), ValueError, "at least one row"),
    (np.full((2, 3), "a"), TypeError, "numeric"),
])
def test_batchnorm_bad_input(bad, exc, words):
    with pytest.raises(exc, match=words) as info:
        gs.BatchNorm(3).forward(bad)
    assert "BatchNorm.forward: x" in str(info.value)


def test_batchnorm_backward_errors():
    layer = gs.BatchNorm(3)
    with pytest.raises(ValueError, match="BatchNorm.backward: call forward before backward"):
        layer.backward(np.zeros((2, 3)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(2, 3\)"):
        layer.backward(np.zeros((3, 3)))


def test_batchnorm_core_rejects_bad_arrays():
    f = np.float32
    x, g, b = np.zeros((4, 3), f), np.ones(3, f), np.zeros(3, f)
    rm, rv = np.zeros(3, f), np.ones(3, f)
    train = _core.batchnorm_forward_train
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        train(x.astype(np.int64), g, b, rm, rv, 0.1, 1e-5)
    with pytest.raises(TypeError, match="gamma must have dtype float32"):
        train(x, g.astype(np.float64), b, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        train(x, g, np.zeros(4, f), rm, rv, 0.1, 1e-5)
    ro = rv.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_var must be writable"):
        train(x, g, b, rm, ro, 0.1, 1e-5)
    with pytest.raises(ValueError, match="momentum must be in"):
        train(x, g, b, rm, rv, 1.5, 1e-5)
    with pytest.raises(ValueError, match="eps must be"):
        train(x, g, b, rm, rv, 0.1, 0.0)
    with pytest.raises(ValueError, match="eps must be"):
        _core.batchnorm_forward_eval(x, g, b, rm, rv, -1.0)
    y, xhat, mean, invstd = train(x, g, b, rm, rv, 0.1, 1e-5)
    dg, db = np.zeros(3, f), np.zeros(3, f)
    with pytest.raises(ValueError, match=r"xhat must have shape \(4, 3\)"):
        _core.batchnorm_backward(x, xhat[:2], invstd, g, dg, db)
    with pytest.raises(ValueError, match="dgamma must be C-contiguous"):
        _core.batchnorm_backward(x, xhat, invstd, g, np.zeros(6, f)[::2], db)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        _core.batchnorm_backward_eval(x, x, g, np.zeros(2, f), rv, dg, db, 1e-5)
    assert _core.batchnorm_backward(x, xhat, invstd, g, dg, db, False) is None
