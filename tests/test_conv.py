"""The conv kernels (gradstep._core.conv_*) against the float64 numpy reference, their plain C++
references, PyTorch, and themselves across thread counts; and their argument validation."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core
from reference.conv import conv_backward, conv_forward, same_padding

# (x shape, w shape, stride, padding, dilation); padding (left, right) or (top, left, bottom, right)
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((3, 2, 9, 8), (5, 2, 3, 2), (2, 3), (0, 1, 2, 0), (1, 2)),      # asymmetric pads, dilation
    ((1, 1, 5, 5), (2, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),      # kernel = input, batch 1
    ((4, 3, 6, 5), (2, 3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1: no unfolding
    ((2, 2, 5, 5), (3, 2, 1, 1), (2, 2), (1, 1, 1, 1), (1, 1)),      # 1x1 with stride and pad
    ((9, 1, 8, 8), (16, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),     # several images per chunk
    ((3, 2, 4, 4), (2, 2, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),      # pad wider than dilation
    ((2, 2, 6, 7), (3, 2, 4, 2), (1, 1), (1, 0, 2, 1), (1, 1)),      # "same" with even kernels
    ((3, 1, 40), (4, 1, 5), (2,), (1, 1), (1,)),                     # 1-D, mnist1d's first layer
    ((2, 3, 11), (2, 3, 3), (1,), (1, 2), (2,)),
    ((1, 1, 4), (1, 1, 4), (1,), (0, 0), (1,)),                      # 1-D kernel = input
]
IDS = [f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}" for c in CASES]
TOL = {"float64": dict(rtol=1e-11, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-4)}


def _data(case, dtype, rng):
    xs, ws, *_ = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


def _backward(dy, x, w, s, p, d, bias=True, need_dx=True, l2=0.0):
    dw = np.empty_like(w)
    db = np.empty(w.shape[0], w.dtype) if bias else None
    dx = _core.conv_backward(dy, x, w, dw, db, s, p, d, need_dx, l2)
    return dx, dw, db


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv_matches_reference(case, dtype, rng):
    x, w, b = _data(case, dtype, rng)
    _, _, s, p, d = case
    y = _core.conv_forward(x, w, b, s, p, d)
    ry = conv_forward(x, w, b, s, p, d)
    assert y.dtype == np.dtype(dtype) and y.shape == ry.shape
    np.testing.assert_allclose(y, ry, **TOL[dtype])
    np.testing.assert_allclose(_core.conv_forward(x, w, None, s, p, d),
                               conv_forward(x, w, None, s, p, d), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = _backward(dy, x, w, s, p, d, l2=0.3)
    rdx, rdw, rdb = conv_backward(dy, x, w, s, p, d, l2=0.3)
    np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    np.testing.assert_allclose(dw, rdw, **TOL[dtype])
    np.testing.assert_allclose(db, rdb, **TOL[dtype])
    # the plain C++ loops agree too
    np.testing.assert_allclose(_core.conv_forward_ref(x, w, b, s, p, d), ry, **TOL[dtype])
    for got, want in zip(_core.conv_backward_ref(dy, x, w, s, p, d, 0.3), (rdx, rdw, rdb)):
        np.testing.assert_allclose(got, want, **TOL[dtype])


def test_conv_backward_without_dx_or_bias(rng):
    x, w, _ = _data(CASES[1], "float64", rng)
    _, _, s, p, d = CASES[1]
    dy = rng.standard_normal(conv_forward(x, w, None, s, p, d).shape)
    dx, dw, db = _backward(dy, x, w, s, p, d, bias=False, need_dx=False)
    assert dx is None and db is None
    np.testing.assert_allclose(dw, conv_backward(dy, x, w, s, p, d)[1], rtol=1e-12, atol=1e-12)


def test_conv_backward_overwrites(rng):
    x, w, b = _data(CASES[0], "float64", rng)
    _, _, s, p, d = CASES[0]
    dy = rng.standard_normal(conv_forward(x, w, b, s, p, d).shape)
    dw = np.full_like(w, 7.0)
    db = np.full(w.shape[0], 7.0)
    _core.conv_backward(dy, x, w, dw, db, s, p, d)
    _, rdw, rdb = conv_backward(dy, x, w, s, p, d)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)


# ---- PyTorch ---------------------------------------------------------------------------------
def _torch_conv(x, w, b, s, p, d):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    if x.ndim == 3:
        y = F.conv1d(F.pad(xt, (p[0], p[1])), wt, bt, stride=s[0], dilation=d[0])
    else:
        y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, bt, stride=tuple(s),
                     dilation=tuple(d))
    return xt, wt, bt, y


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    x, w, b = _data(case, dtype, rng)
    _, _, s, p, d = case
    xt, wt, bt, yt = _torch_conv(x, w, b, s, p, d)
    y = _core.conv_forward(x, w, b, s, p, d)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(dy))
    dx, dw, db = _backward(dy, x, w, s, p, d)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dw, wt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(db, bt.grad.numpy(), **TOL[dtype])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k,dil", [(3, 1), (4, 1), (2, 3), (5, 2)])
def test_same_padding_matches_torch(k, dil, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    x = rng.standard_normal((2, 2, 7, 6))
    w = rng.standard_normal((3, 2, k, k - 1 if k > 2 else k))
    ph, pw = same_padding(w.shape[2], dil), same_padding(w.shape[3], dil)
    y = _core.conv_forward(x, w, None, (1, 1), (ph[0], pw[0], ph[1], pw[1]), (dil, dil))
    yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same",
                                    dilation=dil)
    assert y.shape == x.shape[:1] + (3,) + x.shape[2:]
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-12, atol=1e-12)


# ---- threads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    ((37, 3, 12, 12), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),   # 8 groups of 2-image chunks
    ((21, 4, 9, 9), (6, 4, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),     # 1x1
    ((50, 5, 19), (7, 5, 3), (2,), (1, 1), (1,)),                    # 1-D
])
def test_conv_bit_identical_for_1_and_2_threads(case, rng):
    x, w, b = _data(case, "float32", rng)
    _, _, s, p, d = case
    dy = rng.standard_normal(conv_forward(x, w, b, s, p, d).shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        y = _core.conv_forward(x, w, b, s, p, d)
        results.append((y, *_backward(dy, x, w, s, p, d, l2=0.01)))
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


# ---- validation ------------------------------------------------------------------------------
def _args(**kw):
    rng = np.random.default_rng(0)
    a = dict(x=rng.standard_normal((2, 3, 5, 5)), w=rng.standard_normal((4, 3, 3, 3)), b=None,
             stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1))
    a.update(kw)
    return a


@pytest.mark.parametrize("kw,exc,words", [
    (dict(x=np.ones((2, 3, 5, 5), np.int64)), TypeError, "x"),
    (dict(w=np.ones((4, 3, 3, 3), np.float32)), TypeError, "w"),
    (dict(b=np.ones(4, np.float32)), TypeError, "b"),
    (dict(x=np.ones((2, 3, 5))), ValueError, "w must be 3-D"),
    (dict(x=np.ones((3, 5, 5))[None, None]), ValueError, "x must be 3-D"),
    (dict(x=np.ones((5, 5))), ValueError, "x must be 3-D"),
    (dict(w=np.ones((4, 2, 3, 3))), ValueError, "channels"),
    (dict(b=np.ones(3)), ValueError, "b"),
    (dict(stride=(0, 1)), ValueError, "stride"),
    (dict(stride=(1,)), ValueError, "stride"),
    (dict(dilation=(1, 0)), ValueError, "dilation"),
    (dict(padding=(0, -1, 0, 0)), ValueError, "padding"),
    (dict(padding=(1, 1)), ValueError, "padding"),
    (dict(w=np.ones((4, 3, 6, 3))), ValueError, "smaller than the dilated kernel"),
    (dict(dilation=(3, 1)), ValueError, "smaller than the dilated kernel"),
    (dict(w=np.ones((4, 3, 0, 3))), ValueError, "kernel"),
    (dict(x=np.ones((2, 0, 5, 5)), w=np.ones((4, 0, 3, 3))), ValueError, "channel"),
    (dict(x=np.ones((2, 3, 5, 5))[:, :, ::-1]), ValueError, "C-contiguous"),
    (dict(padding=(0, 1 << 40, 0, 0)), ValueError, "padding"),
])
def test_conv_forward_rejects(kw, exc, words):
    a = _args(**kw)
    with pytest.raises(exc, match=words):
        _core.conv_forward(a["x"], a["w"], a["b"], a["stride"], a["padding"], a["dilation"])


def test_conv_workspace_argument(rng):
    x, w, b = _data(CASES[5], "float32", rng)
    _, _, s, p, d = CASES[5]
    need = _core.conv_workspace_elems(x, w, s, p, d)
    assert need > 0
    ws = np.full(need + 5, np.nan, np.float32)  # garbage in the scratch must not matter
    np.testing.assert_array_equal(_core.conv_forward(x, w, b, s, p, d, ws=ws),
                                  _core.conv_forward(x, w, b, s, p, d))
    dy = rng.standard_normal(conv_forward(x, w, b, s, p, d).shape).astype(np.float32)
    dw1, dw2 = np.empty_like(w), np.empty_like(w)
    dx1 = _core.conv_backward(dy, x, w, dw1, None, s, p, d, ws=ws)
    dx2 = _core.conv_backward(dy, x, w, dw2, None, s, p, d)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dw1, dw2)
    with pytest.raises(ValueError, match="ws must have at least"):
        _core.conv_forward(x, w, b, s, p, d, ws=np.empty(need - 1, np.float32))
    with pytest.raises(TypeError, match="ws"):
        _core.conv_forward(x, w, b, s, p, d, ws=np.empty(need, np.float64))
    ro = np.empty(need, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="ws must be writable"):
        _core.conv_backward(dy, x, w, dw1, None, s, p, d, ws=ro)


def test_conv_forward_rejects_non_integer_geometry():
    a = _args()
    with pytest.raises(TypeError):
        _core.conv_forward(a["x"], a["w"], None, (1.5, 1), a["padding"], a["dilation"])


def test_conv_backward_rejects(rng):
    a = _args()
    x, w = a["x"], a["w"]
    dy = np.ones((2, 4, 3, 3))
    geo = (a["stride"], a["padding"], a["dilation"])
    with pytest.raises(ValueError, match="dy"):
        _core.conv_backward(np.ones((2, 4, 3, 4)), x, w, np.empty_like(w), None, *geo)
    ro = np.empty_like(w)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="dw must be writable"):
        _core.conv_backward(dy, x, w, ro, None, *geo)
    with pytest.raises(ValueError, match="dw"):
        _core.conv_backward(dy, x, w, np.empty((4, 3, 3)), None, *geo)
    with pytest.raises(ValueError, match="db"):
        _core.conv_backward(dy, x, w, np.empty_like(w), np.empty(5), *geo)
    with pytest.raises(TypeError, match="dy"):
        _core.conv_backward(dy.astype(np.float32), x, w, np.empty_like(w), None, *geo)
    with pytest.raises(ValueError, match="l2"):
        _core.conv_backward(dy, x, w, np.empty_like(w), None, *geo, True, -1.0)
