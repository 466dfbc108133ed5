"""The convolutional layers (Conv1D/2D, pools, GlobalAvgPool, Flatten, BatchNorm and Dropout on
3-D/4-D input): forward/backward against the float64 references, finite differences for every
input and parameter, PyTorch parity, and their errors."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradcheck_util import check_layer
from reference.batchnorm import batchnorm_spatial_backward, batchnorm_spatial_forward_train
from reference.conv import conv_backward, conv_forward, same_padding
from reference.pool import avgpool, maxpool

TOL = {"float64": dict(rtol=1e-11, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-4)}

CONV_LAYERS = [
    (gs.Conv2D, dict(in_channels=2, out_channels=3, kernel_size=3, padding=1), (2, 2, 6, 5)),
    (gs.Conv2D, dict(in_channels=2, out_channels=3, kernel_size=(4, 2), padding="same"), (2, 2, 5, 5)),
    (gs.Conv2D, dict(in_channels=1, out_channels=2, kernel_size=(2, 3), stride=(2, 1),
                     padding=(1, 0), dilation=(1, 2), bias=False), (3, 1, 7, 8)),
    (gs.Conv2D, dict(in_channels=3, out_channels=2, kernel_size=1), (2, 3, 4, 4)),
    (gs.Conv1D, dict(in_channels=1, out_channels=4, kernel_size=5, stride=2, padding=1), (3, 1, 20)),
    (gs.Conv1D, dict(in_channels=2, out_channels=2, kernel_size=4, padding="same", dilation=2,
                     l2=0.1), (2, 2, 9)),
]
CONV_IDS = [f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CONV_LAYERS)]


def _pads(layer):
    return layer.kernel_args()


@pytest.mark.parametrize("cls,kw,shape", CONV_LAYERS, ids=CONV_IDS)
def test_conv_layer_matches_reference(cls, kw, shape, dtype, rng):
    layer = cls(**kw, dtype=dtype, seed=3)
    if layer.bias:
        layer.params["bias"][...] = rng.standard_normal(layer.out_channels)
    x = rng.standard_normal(shape)
    y = layer.forward(x)
    s, p, d = _pads(layer)
    w, b = layer.params["weight"], layer.params.get("bias")
    xr = x.astype(dtype)
    assert y.dtype == np.dtype(dtype)
    assert y.shape == (shape[0],) + layer.output_shape(shape[1:])
    np.testing.assert_allclose(y, conv_forward(xr, w, b, s, p, d), **TOL[dtype])
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    rdx, rdw, rdb = conv_backward(dy.astype(dtype), xr, w, s, p, d, l2=layer.l2)
    np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    np.testing.assert_allclose(layer.grads["weight"], rdw, **TOL[dtype])
    if layer.bias:
        np.testing.assert_allclose(layer.grads["bias"], rdb, **TOL[dtype])
    assert layer.penalty() == pytest.approx(0.5 * layer.l2 * np.sum(w.astype(np.float64) ** 2))


@pytest.mark.parametrize("cls,kw,shape", CONV_LAYERS, ids=CONV_IDS)
def test_conv_layer_gradcheck(cls, kw, shape, rng):
    layer = cls(**kw, dtype="float64", seed=1)
    errors = check_layer(layer, rng.standard_normal(shape), rng)
    assert set(errors) == {"input", *layer.params}
    assert max(errors.values()) < 1e-7, errors


def test_same_padding_rule():
    assert gs.Conv2D(1, 1, (4, 3), padding="same").kernel_args()[1] == (1, 1, 2, 1)
    assert gs.Conv1D(1, 1, 4, padding="same", dilation=3).kernel_args()[1] == (
        same_padding(4, 3)[0], same_padding(4, 3)[1])
    y = gs.Conv2D(2, 3, (4, 2), padding="same").forward(np.ones((1, 2, 5, 7)))
    assert y.shape == (1, 3, 5, 7)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding=1, stride=2),
                                dict(kernel_size=(4, 3), padding="same", dilation=(1, 2)),
                                dict(kernel_size=(2, 5), padding=(1, 2), dilation=2)])
def test_conv2d_layer_matches_torch(kw, dtype, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    layer = gs.Conv2D(3, 4, dtype=dtype, seed=0, **kw)
    layer.params["bias"][...] = rng.standard_normal(4)
    tl = torch.nn.Conv2d(3, 4, **kw).to(getattr(torch, dtype))
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(layer.params["weight"]))
        tl.bias.copy_(torch.tensor(layer.params["bias"]))
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    y = layer.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.grads["weight"], tl.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.grads["bias"], tl.bias.grad.numpy(), **TOL[dtype])


def test_conv1d_layer_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    layer = gs.Conv1D(1, 25, 5, stride=2, padding=1, dtype="float32", seed=0)
    tl = torch.nn.Conv1d(1, 25, 5, stride=2, padding=1)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(layer.params["weight"]))
        tl.bias.zero_()
    x = rng.standard_normal((4, 1, 40)).astype(np.float32)
    y = layer.forward(x)
    assert y.shape == (4, 25, 19)
    np.testing.assert_allclose(y, tl(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("init,std", [("he", lambda fi, fo: np.sqrt(2 / fi)),
                                      ("xavier", lambda fi, fo: np.sqrt(2 / (fi + fo))),
                                      ("lecun", lambda fi, fo: np.sqrt(1 / fi))])
def test_conv_init_uses_channel_times_kernel_fans(init, std):
    layer = gs.Conv2D(32, 64, (5, 3), init=init, dtype="float64", seed=0)
    w = layer.params["weight"]
    assert w.shape == (64, 32, 5, 3)
    assert np.std(w) == pytest.approx(std(32 * 15, 64 * 15), rel=0.02)
    assert np.all(layer.params["bias"] == 0)
    same = gs.Conv2D(32, 64, (5, 3), init=init, dtype="float64", seed=0)
    np.testing.assert_array_equal(same.params["weight"], w)   # seeded


def test_conv_init_callable_gets_the_weight_shape():
    seen = []
    gs.Conv1D(3, 4, 5, init=lambda shape, rng: seen.append(shape) or np.ones(shape))
    assert seen == [(4, 3, 5)]


def test_conv_config_round_trip():
    for layer in (gs.Conv2D(2, 3, (3, 1), stride=2, padding=(1, 0), dilation=(1, 1), bias=False,
                            l2=0.5, dtype="float64"),
                  gs.Conv1D(1, 4, 4, padding="same"), gs.MaxPool2D(3, 2, 1), gs.AvgPool1D(2),
                  gs.GlobalAvgPool(), gs.Flatten()):
        again = type(layer)(**layer.get_config())
        assert again.get_config() == layer.get_config()
        assert repr(again) == repr(layer)


# ---- pools, flatten, spatial batchnorm, dropout ------------------------------------------------
POOLS = [
    (gs.MaxPool2D, dict(kernel_size=2), (2, 3, 6, 5)),
    (gs.MaxPool2D, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1)), (1, 2, 7, 6)),
    (gs.MaxPool1D, dict(kernel_size=3, stride=2, padding=1), (2, 2, 9)),
    (gs.AvgPool2D, dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 7)),
    (gs.AvgPool1D, dict(kernel_size=2), (3, 2, 7)),
]
POOL_IDS = [f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(POOLS)]


@pytest.mark.parametrize("cls,kw,shape", POOLS, ids=POOL_IDS)
def test_pool_layer_matches_reference_and_gradcheck(cls, kw, shape, dtype, rng):
    layer = cls(**kw)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype)
    assert y.shape == (shape[0],) + layer.output_shape(shape[1:])
    k, s, p = layer.kernel_args()
    dy = rng.standard_normal(y.shape).astype(dtype)
    if cls in (gs.MaxPool1D, gs.MaxPool2D):
        ry, _, back = maxpool(x, k, s, p)
    else:
        ry, back = avgpool(x, k, s, p)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    np.testing.assert_allclose(layer.backward(dy), back(dy), **TOL[dtype])
    if dtype == "float64":
        errors = check_layer(cls(**kw), rng.standard_normal(shape), rng)
        assert errors["input"] < 1e-7


def test_maxpool_layer_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    x = np.round(rng.standard_normal((2, 3, 8, 7)) * 2)  # ties
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    layer = gs.MaxPool2D(3, 2, 1)
    np.testing.assert_array_equal(layer.forward(x), yt.detach().numpy())
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_global_avgpool_and_flatten(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    gp = gs.GlobalAvgPool()
    y = gp.forward(x)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-12)
    assert check_layer(gs.GlobalAvgPool(), x, rng)["input"] < 1e-7
    fl = gs.Flatten()
    f = fl.forward(x)
    assert f.shape == (3, 40) and np.array_equal(f, x.reshape(3, 40))
    dy = rng.standard_normal((3, 40))
    np.testing.assert_array_equal(fl.backward(dy), dy.reshape(x.shape))
    assert fl.output_shape((4, 5, 2)) == (40,)
    assert fl.forward(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 3, 5), (2, 3, 3, 4)])
def test_batchnorm_layer_spatial(shape, dtype, rng):
    layer = gs.BatchNorm(3, momentum=0.2, dtype=dtype)
    layer.params["gamma"][...] = rng.uniform(0.5, 2, 3)
    x = rng.standard_normal(shape) * 2 + 1
    y = layer.forward(x)
    xr = x.astype(dtype)
    ry, rxhat, _, rinv, rrm, rrv = batchnorm_spatial_forward_train(
        xr, layer.params["gamma"], layer.params["beta"], np.zeros(3), np.ones(3), 0.2)
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    np.testing.assert_allclose(layer.buffers["running_var"], rrv, **TOL[dtype])
    dy = rng.standard_normal(shape)
    rdx, rdg, _ = batchnorm_spatial_backward(dy.astype(dtype), rxhat, rinv, layer.params["gamma"])
    np.testing.assert_allclose(layer.backward(dy), rdx, **TOL[dtype])
    np.testing.assert_allclose(layer.grads["gamma"], rdg, **TOL[dtype])
    if dtype == "float64":
        for training in (True, False):
            bn = gs.BatchNorm(3, dtype="float64")
            bn.buffers["running_var"][...] = [0.5, 1.5, 2.0]
            errors = check_layer(bn, rng.standard_normal(shape), rng, training=training)
            assert max(errors.values()) < 1e-6, (training, errors)


def test_batchnorm2d_matches_torch_over_steps(rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    layer = gs.BatchNorm(4, dtype="float64")
    tl = torch.nn.BatchNorm2d(4).double()
    for _ in range(3):
        x = rng.standard_normal((5, 4, 3, 3)) * 3 + 1
        np.testing.assert_allclose(layer.forward(x), tl(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.buffers["running_var"], tl.running_var.numpy(), rtol=1e-12)
    tl.eval()
    x = rng.standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(layer.forward(x, training=False), tl(torch.tensor(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-10)


def test_dropout_on_images(rng):
    layer = gs.Dropout(0.5, seed=0)
    x = rng.standard_normal((4, 3, 5, 5))
    y = layer.forward(x)
    assert y.shape == x.shape
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], 2 * x[kept])
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, 2 * dy, 0))


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,words", [
    (lambda: gs.Conv2D(1, 2, 0), ValueError, "kernel_size"),
    (lambda: gs.Conv2D(1, 2, 3, stride=0), ValueError, "stride"),
    (lambda: gs.Conv2D(1, 2, 3, stride=(1, 1, 1)), ValueError, "stride"),
    (lambda: gs.Conv2D(1, 2, 3, dilation=0), ValueError, "dilation"),
    (lambda: gs.Conv2D(1, 2, 3, padding=-1), ValueError, "padding"),
    (lambda: gs.Conv2D(1, 2, 3, padding="full"), ValueError, "padding"),
    (lambda: gs.Conv2D(1, 2, 3, stride=2, padding="same"), ValueError, "stride 1"),
    (lambda: gs.Conv1D(0, 2, 3), ValueError, "in_channels"),
    (lambda: gs.Conv1D(1, 2, 3.0), TypeError, "kernel_size"),
    (lambda: gs.Conv1D(1, 2, 3, l2=-1), ValueError, "l2"),
    (lambda: gs.Conv1D(1, 2, 3, init="bad"), ValueError, "init"),
    (lambda: gs.MaxPool2D(2, padding=2), ValueError, "at most half"),
    (lambda: gs.AvgPool1D(0), ValueError, "kernel_size"),
    (lambda: gs.MaxPool1D(2, stride=0), ValueError, "stride"),
])
def test_layer_constructor_errors(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


@pytest.mark.parametrize("layer,x,words", [
    (gs.Conv2D(3, 2, 3), np.ones((2, 3, 5)), "4-D"),
    (gs.Conv2D(3, 2, 3), np.ones((2, 4, 5, 5)), "3 channels"),
    (gs.Conv2D(3, 2, 3), np.ones((2, 3, 2, 5)), "smaller than the kernel"),
    (gs.Conv2D(3, 2, 3, dilation=3), np.ones((2, 3, 6, 6)), "smaller than the kernel"),
    (gs.Conv1D(1, 2, 5), np.ones((2, 1, 4)), "smaller than the kernel"),
    (gs.Conv1D(1, 2, 5), np.ones((2, 1, 4, 4)), "3-D"),
    (gs.MaxPool2D(3), np.ones((2, 1, 2, 5)), "smaller than kernel_size"),
    (gs.AvgPool1D(2), np.ones((2, 5)), "3-D"),
    (gs.GlobalAvgPool(), np.ones((2, 5)), "spatial axis"),
    (gs.Flatten(), np.ones(5), "batch axis"),
])
def test_layer_forward_errors(layer, x, words):
    with pytest.raises(ValueError, match=words):
        layer.forward(x)


def test_conv_backward_errors():
    layer = gs.Conv2D(1, 2, 3)
    with pytest.raises(ValueError, match="call forward before backward"):
        layer.backward(np.ones((1, 2, 3, 3)))
    layer.forward(np.ones((1, 1, 5, 5)))
    with pytest.raises(ValueError, match="grad_y"):
        layer.backward(np.ones((1, 2, 3, 4)))
