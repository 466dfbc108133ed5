from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL, TOL_BACKWARD
from gradcheck_util import check_layer
from gradstep import _core
from gradstep.layers import LAYER_REGISTRY
from reference import activation as ref

# name -> (layer factory, forward reference f(x), backward reference f(dy, x)); all elementwise.
ELEMENTWISE = {
    "Sigmoid": (gs.Sigmoid, ref.sigmoid_forward, ref.sigmoid_backward),
    "Tanh": (gs.Tanh, ref.tanh_forward, ref.tanh_backward),
    "ReLU": (gs.ReLU, ref.relu_forward, ref.relu_backward),
    "Identity": (gs.Identity, lambda x: x.astype(np.float64), lambda dy, x: dy.astype(np.float64)),
    "LeakyReLU": (lambda: gs.LeakyReLU(0.1), lambda x: ref.leaky_relu_forward(x, 0.1),
                  lambda dy, x: ref.leaky_relu_backward(dy, x, 0.1)),
    "LeakyReLU(-0.3)": (lambda: gs.LeakyReLU(-0.3), lambda x: ref.leaky_relu_forward(x, -0.3),
                        lambda dy, x: ref.leaky_relu_backward(dy, x, -0.3)),
    "ELU": (gs.ELU, lambda x: ref.elu_forward(x, 1.0), lambda dy, x: ref.elu_backward(dy, x, 1.0)),
    "ELU(0.5)": (lambda: gs.ELU(0.5), lambda x: ref.elu_forward(x, 0.5),
                 lambda dy, x: ref.elu_backward(dy, x, 0.5)),
}
# Every layer of the family, built with its defaults (PReLU in both slope modes).
ALL_LAYERS = {
    "Sigmoid": gs.Sigmoid, "Tanh": gs.Tanh, "ReLU": gs.ReLU, "Identity": gs.Identity,
    "LeakyReLU": gs.LeakyReLU, "ELU": gs.ELU, "PReLU": gs.PReLU,
    "PReLU(3)": lambda: gs.PReLU(3), "Softmax": gs.Softmax,
}


def _with_zeros(x: np.ndarray) -> np.ndarray:
    """x with a few exact zeros, where the kinks are."""
    x = np.array(x, dtype=np.float64)
    x.reshape(-1)[::7] = 0.0
    return x


# ---- against the float64 numpy reference ---------------------------------------------------------

@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (11,), (7, 5), (2, 3, 4), (3, 70)])
def test_elementwise_matches_reference(name, shape, dtype, rng):
    make, fwd, bwd = ELEMENTWISE[name]
    layer = make()
    x = _with_zeros(3 * rng.standard_normal(shape)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype) and y.shape == shape
    np.testing.assert_allclose(y, fwd(x), **TOL[dtype])
    dy = rng.standard_normal(shape).astype(dtype)
    dx = layer.backward(dy)
    assert dx.dtype == np.dtype(dtype) and dx.shape == shape
    np.testing.assert_allclose(dx, bwd(dy, x), **TOL_BACKWARD[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (9, 37), (2, 300)])
def test_softmax_matches_reference(shape, dtype, rng):
    layer = gs.Softmax()
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, ref.softmax_forward(x), **TOL[dtype])
    np.testing.assert_allclose(y.sum(axis=1), 1.0, **TOL[dtype])
    dy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(layer.backward(dy), ref.softmax_backward(dy, x),
                               **TOL_BACKWARD[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (9, 37), (4, 300)])
def test_softmax_forward_matches_its_plain_reference(shape, dtype, rng):
    x = (5 * rng.standard_normal(shape)).astype(dtype)
    fast, plain = _core.softmax_forward(x), _core.softmax_forward_ref(x)
    np.testing.assert_allclose(plain, ref.softmax_forward(x), **TOL[dtype])
    # float32: vmath's exp against libm's expf, each within an ulp or so, then one division.
    tol = dict(rtol=1e-14, atol=0) if dtype == "float64" else dict(rtol=6e-7, atol=0)
    np.testing.assert_allclose(fast, plain, **tol)


@pytest.mark.parametrize("num_parameters, shape",
                         [(1, (6, 4)), (1, (1, 1)), (4, (6, 4)), (300, (3, 300))])
def test_prelu_matches_reference(num_parameters, shape, dtype, rng):
    layer = gs.PReLU(num_parameters, init=0.2, dtype=dtype)
    layer.params["alpha"][...] = rng.uniform(-0.5, 0.5, num_parameters)
    alpha = layer.params["alpha"].copy()
    x = _with_zeros(rng.standard_normal(shape))
    y = layer.forward(x)
    assert y.dtype == np.dtype(dtype)
    xr = x.astype(dtype)
    np.testing.assert_allclose(y, ref.prelu_forward(xr, alpha), **TOL[dtype])
    dy = rng.standard_normal(shape)
    dx = layer.backward(dy)
    rdx, rda = ref.prelu_backward(dy.astype(dtype), xr, alpha)
    np.testing.assert_allclose(dx, rdx, **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.grads["alpha"], rda, **TOL_BACKWARD[dtype])


# ---- gradient checks (float64, central differences) ---------------------------------------------

def _away_from_kink(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 0.1, np.sign(x) * 0.1 + x, x)


@pytest.mark.parametrize("make", [gs.Sigmoid, gs.Tanh, gs.ReLU, gs.Identity,
                                  lambda: gs.LeakyReLU(0.2), lambda: gs.LeakyReLU(-0.5), gs.ELU,
                                  lambda: gs.ELU(2.5), gs.Softmax],
                         ids=["Sigmoid", "Tanh", "ReLU", "Identity", "LeakyReLU", "LeakyReLU(-0.5)",
                              "ELU", "ELU(2.5)", "Softmax"])
def test_gradcheck(make, rng):
    x = _away_from_kink(2 * rng.standard_normal((4, 5)))
    errors = check_layer(make(), x, rng)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("num_parameters", [1, 5])
def test_prelu_gradcheck(num_parameters, rng):
    layer = gs.PReLU(num_parameters, dtype="float64")
    layer.params["alpha"][...] = rng.uniform(-0.5, 0.5, num_parameters)
    x = _away_from_kink(rng.standard_normal((6, 5)))
    errors = check_layer(layer, x, rng)
    assert set(errors) == {"input", "alpha"}
    assert max(errors.values()) < 1e-6, errors


# ---- PyTorch parity ------------------------------------------------------------------------------

def _torch_fn(name, torch):
    F = torch.nn.functional
    return {
        "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "ReLU": torch.relu,
        "Identity": lambda t: t * 1,
        "LeakyReLU": lambda t: F.leaky_relu(t, 0.1),
        "LeakyReLU(-0.3)": lambda t: F.leaky_relu(t, -0.3),
        "ELU": lambda t: F.elu(t, 1.0), "ELU(0.5)": lambda t: F.elu(t, 0.5),
        "Softmax": lambda t: torch.softmax(t, dim=-1),
    }[name]


def _gs_layer(name):
    return gs.Softmax() if name == "Softmax" else ELEMENTWISE[name][0]()


@pytest.mark.parametrize("name", list(ELEMENTWISE) + ["Softmax"])
def test_matches_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    x = _with_zeros(4 * rng.standard_normal((9, 13))).astype(dtype)
    x[0, :4] = [30.0, -30.0, 90.0, -90.0]  # saturated regions
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = _gs_layer(name)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_fn(name, torch)(tx)
    ty.backward(torch.tensor(dy))
    tol = TOL_BACKWARD[dtype]
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)


@pytest.mark.parametrize("num_parameters", [1, 13])
def test_prelu_matches_torch(num_parameters, dtype, rng):
    torch = pytest.importorskip("torch")
    layer = gs.PReLU(num_parameters, dtype=dtype)
    layer.params["alpha"][...] = rng.uniform(-0.5, 0.5, num_parameters)
    x = _with_zeros(rng.standard_normal((9, 13))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.params["alpha"].copy(), requires_grad=True)
    ty = torch.nn.functional.prelu(tx, tw)
    ty.backward(torch.tensor(dy))
    tol = TOL_BACKWARD[dtype]
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["alpha"], tw.grad.numpy(), **tol)


@pytest.mark.parametrize("name", list(ELEMENTWISE) + ["Softmax", "PReLU"])
def test_nan_and_inf_propagate_as_in_torch(name, dtype):
    torch = pytest.importorskip("torch")
    # Tiled to 70 elements: PyTorch's vectorized loops (which cover the NaN at [0, 0]) and its
    # scalar tail disagree on ELU's gradient at a NaN input (NaN vs dy); we follow the vectorized
    # one, which is what any real batch goes through.
    x = np.tile(np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.5],
                          [0.5, -2.0, 1.0, 3.0, -1.0, 0.0, 2.0]], dtype=dtype), 5)
    dy = np.tile(np.array([[1.0, -2.0, 3.0, 0.5, 1.0, -1.0, 2.0],
                           [np.inf, -np.inf, 1.0, 2.0, np.nan, 1.0, -1.0]], dtype=dtype), 5)
    tx = torch.tensor(x, requires_grad=True)
    if name == "PReLU":
        layer = gs.PReLU(dtype=dtype)
        tw = torch.tensor(layer.params["alpha"].copy(), requires_grad=True)
        ty = torch.nn.functional.prelu(tx, tw)
    else:
        layer = _gs_layer(name)
        ty = _torch_fn(name, torch)(tx)
    ty.backward(torch.tensor(dy))
    # Same values, and NaN exactly where PyTorch has NaN (assert_array_equal treats NaN == NaN).
    np.testing.assert_array_equal(np.isnan(layer.forward(x)), np.isnan(ty.detach().numpy()))
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), **TOL_BACKWARD[dtype])
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL_BACKWARD[dtype])
    if name == "PReLU":
        np.testing.assert_allclose(layer.grads["alpha"], tw.grad.numpy(), **TOL_BACKWARD[dtype])


# ---- kinks and numerical edge cases ------------------------------------------------------------

def test_gradients_at_zero_follow_torch(dtype):
    x = np.array([[-1.0, 0.0, 1.0]], dtype=dtype)
    dy = np.ones_like(x)

    def grad(layer):
        layer.forward(x)
        return layer.backward(dy)

    np.testing.assert_array_equal(grad(gs.ReLU()), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(grad(gs.LeakyReLU(0.25)), [[0.25, 0.25, 1.0]])
    np.testing.assert_allclose(grad(gs.ELU(0.5)), [[0.5 * np.exp(-1.0), 0.5, 1.0]],
                               **TOL_BACKWARD[dtype])
    prelu = gs.PReLU(init=0.3, dtype=dtype)
    np.testing.assert_allclose(grad(prelu), [[0.3, 0.3, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(prelu.grads["alpha"], [-1.0])


def test_sigmoid_and_tanh_saturate_exactly(dtype):
    x = np.array([-np.inf, -1e30, -1000.0, -800.0, 800.0, 1000.0, 1e30, np.inf], dtype=dtype)
    for layer, lo, hi in [(gs.Sigmoid(), 0.0, 1.0), (gs.Tanh(), -1.0, 1.0)]:
        y = layer.forward(x)
        np.testing.assert_array_equal(y, [lo] * 4 + [hi] * 4)
        dx = layer.backward(np.ones_like(x))
        np.testing.assert_array_equal(dx, np.zeros_like(x))  # 0, not NaN
    y = gs.Sigmoid().forward(np.array([-90.0, -30.0, 0.0, 30.0], dtype=dtype))
    # e^-90 is subnormal in float32: still there, not flushed to 0.
    np.testing.assert_allclose(y, ref.sigmoid_forward([-90.0, -30.0, 0.0, 30.0]), rtol=1e-5, atol=0)
    np.testing.assert_array_equal(gs.Tanh().forward(np.array([0.0, -0.0], dtype=dtype)), [0.0, 0.0])


def test_elu_saturates_at_minus_alpha(dtype):
    layer = gs.ELU(0.7)
    x = np.array([-np.inf, -1000.0, -40.0, -1e-8, 1e-8, 5.0], dtype=dtype)
    y = layer.forward(x)
    np.testing.assert_array_equal(y[:3], np.full(3, -0.7, dtype=dtype))
    # expm1, not exp - 1: relative accuracy right down to 0.
    np.testing.assert_allclose(y[3:], ref.elu_forward(x[3:], 0.7), rtol=2e-7, atol=0)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(dx, ref.elu_backward(np.ones(6), x, 0.7), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("logits", [
    [[1e4, -1e4, 0.0]], [[-1e4, -1e4, -1e4]], [[1e4, 1e4, 0.0]], [[-1e4, 0.0, 1e4]],
])
def test_softmax_is_stable_for_huge_logits(logits, dtype):
    layer = gs.Softmax()
    x = np.array(logits, dtype=dtype)
    y = layer.forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref.softmax_forward(x), **TOL[dtype])
    dx = layer.backward(np.array([[1.0, 2.0, 3.0]]))
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, ref.softmax_backward(np.array([[1.0, 2.0, 3.0]]), x), atol=1e-6)


# ---- float32 math accuracy (vmath) ---------------------------------------------------------------

def _ulp_error(got: np.ndarray, ref64: np.ndarray) -> float:
    """max |got - ref| in units of the float32 spacing at ref (subnormal spacing below 2^-126)."""
    got = got.astype(np.float64)
    with np.errstate(over="ignore"):
        ref32 = ref64.astype(np.float32)
    big = ~np.isfinite(ref32)
    np.testing.assert_array_equal(got[big], ref32[big])  # beyond float32: exactly ±inf
    r, g = ref64[~big], got[~big]
    _, e = np.frexp(np.abs(r))
    ulp = np.where(r == 0, 2.0**-149, np.ldexp(1.0, np.maximum(e - 24, -149)))
    return float(np.max(np.abs(g - r) / ulp))


def _wide_float32_grid(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    even = np.linspace(lo, hi, 400_001)
    mags = np.exp(rng.uniform(np.log(1e-9), np.log(max(-lo, hi)), 400_000))
    signed = mags * rng.choice([-1.0, 1.0], mags.size)
    x = np.concatenate([even, signed[(signed >= lo) & (signed <= hi)]]).astype(np.float32)
    return x


# Bounds: the largest errors found over every float32 with 2^-30 <= |x| < 128 (exhaustive run
# against float64 in C++, see the vmath comment in activation.hpp); the grid here must stay below.
def test_vexp_is_accurate_to_an_ulp(rng):
    x = _wide_float32_grid(rng, -110.0, 90.0)
    assert _ulp_error(_core.vexp(x), np.exp(x.astype(np.float64))) <= 1.0
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72, 88.73, -87.33, -103.2, -104.0,
                        -1e30], dtype=np.float32)
    with np.errstate(over="ignore"):
        want = np.exp(special.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(_core.vexp(special), want, rtol=1.2e-7, atol=1.5e-45)
    assert np.isnan(_core.vexp(special)[0]) and _core.vexp(special)[2] == 0.0


def test_vexpm1_is_accurate(rng):
    x = _wide_float32_grid(rng, -30.0, 89.0)
    assert _ulp_error(_core.vexpm1(x), np.expm1(x.astype(np.float64))) <= 1.7
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, -1e-30, 89.0, -1e30],
                       dtype=np.float32)
    got = _core.vexpm1(special)
    want = np.array([np.nan, np.inf, -1.0, -0.0, 1e-30, -1e-30, np.inf, -1.0], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[3])


def test_float32_activations_are_accurate(rng):
    x = _wide_float32_grid(rng, -100.0, 100.0)
    assert _ulp_error(_core.tanh_forward(x), np.tanh(x.astype(np.float64))) <= 1.5
    assert _ulp_error(_core.sigmoid_forward(x), ref.sigmoid_forward(x)) <= 2.5
    assert _ulp_error(_core.elu_forward(x, 1.0), ref.elu_forward(x, 1.0)) <= 1.7


def test_float64_uses_accurate_math(rng):
    x = _wide_float32_grid(rng, -100.0, 100.0).astype(np.float64)
    # libm against numpy's own: a couple of float64 ulps apart at most.
    np.testing.assert_allclose(_core.vexp(x), np.exp(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(_core.tanh_forward(x), np.tanh(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(_core.sigmoid_forward(x), ref.sigmoid_forward(x), rtol=1e-15, atol=0)


# ---- threads, in-place kernels, layouts -------------------------------------------------------

def _run_all(x, dy, dtype):
    """Forward and backward of every layer on x (N, F); returns all outputs and gradients."""
    out = []
    for make in [gs.Sigmoid, gs.Tanh, gs.ReLU, lambda: gs.LeakyReLU(0.1), gs.ELU, gs.Softmax,
                 lambda: gs.PReLU(dtype=dtype), lambda: gs.PReLU(x.shape[1], dtype=dtype)]:
        layer = make()
        out.append(layer.forward(x))
        out.append(layer.backward(dy))
        out.extend(g.copy() for g in layer.grads.values())
    return out


def test_one_and_two_threads_are_bit_identical(dtype, rng):
    # 70 x 600 = 42000 elements: above kParallelMin, and three 256-column blocks for PReLU's dalpha.
    x = (3 * rng.standard_normal((70, 600))).astype(dtype)
    dy = rng.standard_normal((70, 600)).astype(dtype)
    gs.set_num_threads(1)
    one = _run_all(x, dy, dtype)
    gs.set_num_threads(2)
    two = _run_all(x, dy, dtype)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fn, args", [
    ("sigmoid_forward", ()), ("tanh_forward", ()), ("relu_forward", ()),
    ("leaky_relu_forward", (0.1,)), ("elu_forward", (0.8,)), ("vexp", ()), ("vexpm1", ()),
])
def test_elementwise_kernels_run_in_place(fn, args, dtype, rng):
    x = (3 * rng.standard_normal(40_003)).astype(dtype)  # odd size: vector body and scalar tail
    want = getattr(_core, fn)(x, *args)
    buf = x.copy()
    got = getattr(_core, fn)(buf, *args, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("fn, saved", [
    ("sigmoid_backward", ("y",)), ("tanh_backward", ("y",)), ("relu_backward", ("y",)),
    ("leaky_relu_backward", ("x", 0.1)), ("elu_backward", ("x", "y", 0.8)),
])
def test_elementwise_backward_kernels_run_in_place(fn, saved, dtype, rng):
    x = (3 * rng.standard_normal(40_003)).astype(dtype)
    y = _core.elu_forward(x, 0.8) if fn == "elu_backward" else _core.sigmoid_forward(x)
    args = [{"x": x, "y": y}.get(s, s) for s in saved]
    dy = rng.standard_normal(x.size).astype(dtype)
    want = getattr(_core, fn)(dy, *args)
    got = getattr(_core, fn)(dy, *args, out=dy)
    assert got is dy
    np.testing.assert_array_equal(dy, want)


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_other_layouts_and_dtypes_give_same_result(name, rng):
    layer = ALL_LAYERS[name]()
    base = rng.standard_normal((5, 6))
    strided = base[:, ::2]
    ref32 = layer.forward(np.ascontiguousarray(strided, dtype=np.float32))
    assert ref32.dtype == np.float32
    np.testing.assert_array_equal(layer.forward(strided.astype(np.float32)), ref32)
    fortran = np.asfortranarray(strided.astype(np.float32))
    np.testing.assert_array_equal(layer.forward(fortran), ref32)
    xi = rng.integers(-3, 4, size=(5, 3))
    np.testing.assert_array_equal(layer.forward(xi), layer.forward(xi.astype(np.float32)))
    np.testing.assert_array_equal(layer.forward(xi.astype(np.float16)),
                                  layer.forward(xi.astype(np.float16).astype(np.float32)))
    assert layer.forward(xi.tolist()).dtype == np.float32
    out64 = layer.forward(strided)  # float64 input: float64 compute (PReLU: its own dtype)
    assert out64.dtype == (np.float32 if name.startswith("PReLU") else np.float64)
    dy = rng.standard_normal((5, 6))[:, ::2]
    layer.forward(strided)
    np.testing.assert_array_equal(layer.backward(dy), layer.backward(np.ascontiguousarray(dy)))


def test_identity_returns_a_new_array(rng):
    x = rng.standard_normal((3, 4))
    layer = gs.Identity()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    dy = rng.standard_normal((3, 4))
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy)
    assert not np.shares_memory(dx, dy)


# ---- PReLU parameters ----------------------------------------------------------------------------

def test_prelu_params_and_grads_are_live_views(rng):
    layer = gs.PReLU(3, init=0.1, dtype="float64")
    np.testing.assert_array_equal(layer.params["alpha"], [0.1, 0.1, 0.1])
    assert layer.params["alpha"].shape == (3,) and layer.grads["alpha"].shape == (3,)
    layer.params["alpha"][...] = [1.0, 2.0, 3.0]
    y = layer.forward(-np.ones((2, 3)))
    np.testing.assert_array_equal(y, [[-1.0, -2.0, -3.0]] * 2)
    layer.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(layer.grads["alpha"], [-2.0, -2.0, -2.0])
    (p,) = layer.parameters()
    assert p.name == "alpha"
    assert np.shares_memory(p.value, layer.params["alpha"])
    assert np.shares_memory(p.grad, layer.grads["alpha"])
    p.value[0] = 5.0
    assert layer.forward(-np.ones((1, 3)))[0, 0] == -5.0


def test_prelu_backward_overwrites_gradients(rng):
    layer = gs.PReLU(4, dtype="float64")
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    layer.grads["alpha"][...] = 123.0
    layer.forward(x)
    layer.backward(dy)
    first = layer.grads["alpha"].copy()
    want = ref.prelu_backward(dy, x, layer.params["alpha"])[1]
    np.testing.assert_allclose(first, want, rtol=1e-12)
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads["alpha"], first)


def test_layers_without_parameters_have_none(rng):
    for name, make in ALL_LAYERS.items():
        layer = make()
        if name.startswith("PReLU"):
            continue
        assert layer.params == {} and layer.grads == {} and layer.parameters() == []


# ---- description ---------------------------------------------------------------------------------

def test_repr_config_and_registry():
    cases = [
        (gs.Sigmoid(), "Sigmoid()"), (gs.Tanh(), "Tanh()"), (gs.ReLU(), "ReLU()"),
        (gs.Identity(), "Identity()"), (gs.Softmax(), "Softmax()"),
        (gs.LeakyReLU(0.2), "LeakyReLU(alpha=0.2)"), (gs.ELU(), "ELU(alpha=1.0)"),
        (gs.PReLU(4, init=0.5, dtype="float64"),
         "PReLU(num_parameters=4, init=0.5, dtype='float64')"),
    ]
    for layer, text in cases:
        assert repr(layer) == text
        cls = LAYER_REGISTRY[type(layer).__name__]
        clone = cls(**layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert gs.PReLU(4).input_features() == 4 and gs.PReLU().input_features() is None
    assert gs.Softmax().input_features() is None and gs.Softmax().output_features(7) == 7
    assert gs.PReLU(4).output_features(4) == 4
    assert set(gs.layers.activation.__all__) == {"Sigmoid", "Tanh", "ReLU", "Identity", "LeakyReLU",
                                                 "ELU", "PReLU", "Softmax"}


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL_LAYERS))
@pytest.mark.parametrize("bad", ["hello", np.array([["a", "b", "c"]]),
                                 np.array([[None] * 3], dtype=object)])
def test_non_numeric_input_raises_type_error(name, bad):
    with pytest.raises(TypeError, match=r"forward: x must be a numeric array"):
        ALL_LAYERS[name]().forward(bad)


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_bad_input_shapes_raise_value_error(name):
    layer = ALL_LAYERS[name]()
    with pytest.raises(ValueError, match=r"x must .*, got a 0-D array"):
        layer.forward(np.float64(1.0))
    with pytest.raises(ValueError, match=r"x must have at least one row"):
        layer.forward(np.zeros((0, 3)))
    if name.startswith(("PReLU", "Softmax")):
        for bad in (np.zeros(3), np.zeros((2, 3, 3))):
            with pytest.raises(ValueError, match=r"x must be a 2-D array") as info:
                layer.forward(bad)
            assert f"{bad.ndim}-D" in str(info.value)


def test_prelu_feature_count_mismatch():
    with pytest.raises(ValueError,
                       match=r"PReLU.forward: x must have 3 features .* got shape \(2, 4\)"):
        gs.PReLU(3).forward(np.zeros((2, 4)))
    gs.PReLU(1).forward(np.zeros((2, 4)))  # one shared slope takes any feature count


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_backward_errors(name):
    layer = ALL_LAYERS[name]()
    with pytest.raises(ValueError, match="forward before backward"):
        layer.backward(np.zeros((2, 3)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(2, 3\).* got \(3, 2\)"):
        layer.backward(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="grad_y must be a numeric array"):
        layer.backward(np.array([["a"] * 3] * 2))


@pytest.mark.parametrize("make, exc, words", [
    (lambda: gs.LeakyReLU("0.1"), TypeError, "LeakyReLU: alpha must be a number"),
    (lambda: gs.LeakyReLU(True), TypeError, "LeakyReLU: alpha must be a number"),
    (lambda: gs.LeakyReLU(float("nan")), ValueError, "LeakyReLU: alpha must be finite"),
    (lambda: gs.LeakyReLU(float("inf")), ValueError, "LeakyReLU: alpha must be finite"),
    (lambda: gs.ELU(-0.1), ValueError, "ELU: alpha must be >= 0"),
    (lambda: gs.ELU(float("-inf")), ValueError, "ELU: alpha must be finite"),
    (lambda: gs.ELU(None), TypeError, "ELU: alpha must be a number"),
    (lambda: gs.PReLU(0), ValueError, "PReLU: num_parameters must be >= 1"),
    (lambda: gs.PReLU(2.0), TypeError, "PReLU: num_parameters must be an int"),
    (lambda: gs.PReLU(init=float("nan")), ValueError, "PReLU: init must be finite"),
    (lambda: gs.PReLU(init="0.25"), TypeError, "PReLU: init must be a number"),
    (lambda: gs.PReLU(dtype="int32"), ValueError, "PReLU: dtype must be 'float32' or 'float64'"),
    (lambda: gs.PReLU(dtype="nonsense"), TypeError, "PReLU: dtype must be 'float32' or 'float64'"),
])
def test_bad_hyperparameters(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


def test_hyperparameter_edge_values_are_accepted():
    assert gs.ELU(0).alpha == 0.0 and gs.LeakyReLU(-2).alpha == -2.0
    assert gs.PReLU(init=-1).params["alpha"][0] == -1.0
    assert isinstance(gs.ELU(np.float32(0.5)).alpha, float)


def test_core_rejects_bad_arrays_directly():
    f32 = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="sigmoid_forward: x must be float32 or float64"):
        _core.sigmoid_forward(np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="tanh_backward: y must have dtype float32"):
        _core.tanh_backward(f32, f32.astype(np.float64))
    with pytest.raises(ValueError,
                       match=r"relu_backward: y must have shape \(2, 3\), got \(3, 2\)"):
        _core.relu_backward(f32, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="elu_forward: x must be C-contiguous"):
        _core.elu_forward(np.zeros((3, 4), np.float32)[:, ::2], 1.0)
    with pytest.raises(ValueError, match=r"sigmoid_forward: out must have shape \(2, 3\)"):
        _core.sigmoid_forward(f32, out=np.zeros(6, np.float32))
    with pytest.raises(TypeError, match="leaky_relu_forward: out must have dtype float32"):
        _core.leaky_relu_forward(f32, 0.1, out=np.zeros((2, 3)))
    ro = np.zeros((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="vexp: out must be writable"):
        _core.vexp(f32, out=ro)
    with pytest.raises(ValueError, match=r"prelu_forward: alpha must have shape \(1,\) or \(3,\)"):
        _core.prelu_forward(f32, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"prelu_forward: x must have shape \(\*, \*\)"):
        _core.prelu_forward(np.zeros(3, np.float32), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="prelu_backward: dalpha must be writable"):
        _core.prelu_backward(f32, f32, np.zeros(1, np.float32), ro[0, :1])
    with pytest.raises(ValueError, match=r"prelu_backward: dalpha must have shape \(3,\)"):
        _core.prelu_backward(f32, f32, np.zeros(3, np.float32), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"softmax_backward: dy must have shape \(2, 3\)"):
        _core.softmax_backward(np.zeros((2, 4), np.float32), f32)
    with pytest.raises(TypeError, match="softmax_forward_ref: x must be float32 or float64"):
        _core.softmax_forward_ref(np.zeros((2, 3), np.float16))
