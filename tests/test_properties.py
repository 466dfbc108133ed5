"""Property-based fuzzing (hypothesis) of every public layer, loss and optimizer, and of gs.load.

The classes come from the registries (`gs.layers.LAYER_REGISTRY`, `gs.losses.LOSSES`,
`gs.optim.OPTIMIZERS`), so a new one is covered without editing this file; constructor arguments
are drawn by parameter name. Two kinds of property:
  - any input: the call returns or raises TypeError/ValueError (never another exception, never
    a crash: the binding fuzz in test_fuzz.py isolates crashes, this file finds wrong types);
  - valid, finite input: the result has the documented shape and is finite.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import gradstep as gs  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LAYERS = sorted(gs.layers.LAYER_REGISTRY)
LOSSES = sorted(gs.losses.LOSSES)
OPTIMIZERS = sorted(gs.optim.OPTIMIZERS)

# Constructor arguments by name: (valid values, any values).
SIZE = st.integers(1, 6)
ARGS = {
    "in_features": SIZE, "out_features": SIZE, "num_features": SIZE, "num_parameters": SIZE,
    "pieces": st.integers(1, 3), "p": st.floats(0.0, 0.9), "alpha": st.floats(0.0, 2.0),
    "momentum": st.floats(0.0, 0.99), "eps": st.floats(1e-6, 1e-2), "l2": st.floats(0.0, 1.0),
    "seed": st.integers(0, 2**31), "dtype": st.sampled_from(["float32", "float64"]),
    "bias": st.booleans(), "lr": st.floats(0.0, 1.0), "weight_decay": st.floats(0.0, 0.1),
    "dampening": st.just(0.0), "betas": st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999)),
    "from_logits": st.booleans(), "in_channels": SIZE, "out_channels": SIZE,
    "kernel_size": st.integers(1, 3), "stride": st.integers(1, 2), "padding": st.integers(0, 1),
    "dilation": st.integers(1, 2),
}
WILD = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                 st.text(max_size=3), st.lists(st.integers(), max_size=2))


def kwargs_for(cls, wild: bool = False):
    """A strategy of keyword arguments for `cls(...)`: valid ones by name, else wild values."""
    params = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if wild:
            params[name] = st.one_of(WILD, ARGS.get(name, WILD))
        elif name in ARGS:
            params[name] = ARGS[name]
        elif p.default is p.empty:
            params[name] = st.integers(1, 4)
    return st.fixed_dictionaries(params)


def finite(shape, dtype, bound=1e3):
    return hnp.arrays(dtype, shape, elements=st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8))


ANY_ARRAY = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.float16]),
                       hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))


def build(cls, kwargs):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        assume(False)


# ---- layers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
@SETTINGS
@given(data=st.data())
def test_layer_forward_backward_on_valid_input(name, data):
    cls = gs.layers.LAYER_REGISTRY[name]
    layer = build(cls, data.draw(kwargs_for(cls)))
    dtype = layer.dtype or data.draw(st.sampled_from([np.float32, np.float64]))
    n = data.draw(st.integers(2, 6))
    # The first per-sample shape the layer takes: (F,), (C, L) or (C, H, W) (C: its channels).
    width = layer.input_features() or getattr(layer, "in_channels", None) or getattr(
        layer, "num_features", None) or data.draw(SIZE)
    side = data.draw(st.integers(7, 9))  # a 3-wide kernel dilated by 2 spans 5
    for shape in ((width,), (width, side), (width, side, side)):
        x = data.draw(finite((n,) + shape, dtype))
        training = data.draw(st.booleans())
        try:
            y = layer.forward(x, training=training)
        except ValueError:
            continue
        break
    else:
        raise AssertionError(f"{layer!r} took none of the input shapes tried")
    assert y.shape[0] == n and np.all(np.isfinite(y)), (layer, x, y)
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    for g in layer.grads.values():
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name", LAYERS)
@SETTINGS
@given(data=st.data())
def test_layer_on_any_input_returns_or_raises_a_clear_error(name, data):
    cls = gs.layers.LAYER_REGISTRY[name]
    try:
        layer = cls(**data.draw(kwargs_for(cls, wild=data.draw(st.booleans()))))
    except (TypeError, ValueError):
        return
    x = data.draw(ANY_ARRAY)
    try:
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, as numpy casts
            y = layer.forward(x, training=data.draw(st.booleans()))
    except (TypeError, ValueError):
        return
    assert isinstance(y, np.ndarray)
    try:
        layer.backward(data.draw(st.one_of(st.just(np.ones_like(y)), ANY_ARRAY)))
    except (TypeError, ValueError):
        pass


# ---- losses -----------------------------------------------------------------------------------------

def loss_inputs(loss, data, n, k, dtype):
    pred = data.draw(finite((n, k), dtype, 30.0))
    if isinstance(loss, (gs.SoftmaxCrossEntropy, gs.NLL)):
        if isinstance(loss, gs.NLL):  # probabilities (a Softmax's output)
            e = np.exp(pred.astype(np.float64) - pred.max(1, keepdims=True))
            pred = (e / e.sum(1, keepdims=True)).astype(dtype)
        target = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    else:
        if isinstance(loss, gs.BinaryCrossEntropy) and not loss.from_logits:
            pred = data.draw(hnp.arrays(dtype, (n, k), elements=st.floats(0, 1, width=np.dtype(dtype).itemsize * 8)))
        bound = 1.0 if isinstance(loss, gs.BinaryCrossEntropy) else 1e3
        target = data.draw(hnp.arrays(dtype, (n, k), elements=st.floats(0.0, bound, width=np.dtype(dtype).itemsize * 8)))
    return pred, target


@pytest.mark.parametrize("name", LOSSES)
@SETTINGS
@given(data=st.data())
def test_loss_on_valid_input_is_finite_with_a_gradient_of_pred_shape(name, data):
    cls = gs.losses.LOSSES[name]
    loss = build(cls, data.draw(kwargs_for(cls)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    n, k = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    pred, target = loss_inputs(loss, data, n, k, dtype)
    value = loss.forward(pred, target)
    assert np.isfinite(value) and value >= -1e-6, (loss, pred, target, value)
    g = loss.backward()
    assert g.shape == pred.shape and np.all(np.isfinite(g))


@pytest.mark.parametrize("name", LOSSES)
@SETTINGS
@given(pred=ANY_ARRAY, target=ANY_ARRAY, data=st.data())
def test_loss_on_any_input_returns_or_raises_a_clear_error(name, pred, target, data):
    cls = gs.losses.LOSSES[name]
    loss = build(cls, data.draw(kwargs_for(cls)))
    try:
        value = loss.forward(pred, target)
    except (TypeError, ValueError):
        return
    assert isinstance(value, float)


# ---- optimizers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPTIMIZERS)
@SETTINGS
@given(data=st.data())
def test_optimizer_step_keeps_finite_weights_finite(name, data):
    cls = gs.optim.OPTIMIZERS[name]
    opt = build(cls, data.draw(kwargs_for(cls)))
    model = gs.Sequential([gs.Dense(3, 4), gs.ReLU(), gs.Dense(4, 2)], seed=0,
                          dtype=data.draw(st.sampled_from(["float32", "float64"])))
    for _ in range(data.draw(st.integers(1, 3))):
        for p in model.parameters():
            p.grad[...] = data.draw(finite(p.grad.shape, p.grad.dtype, 1e3))
        opt.step(model.parameters())
    for p in model.parameters():
        assert np.all(np.isfinite(p.value)), (opt, p.name)


@pytest.mark.parametrize("name", OPTIMIZERS)
@SETTINGS
@given(data=st.data())
def test_optimizer_with_any_hyperparameters_is_valid_or_refused(name, data):
    cls = gs.optim.OPTIMIZERS[name]
    try:
        opt = cls(**data.draw(kwargs_for(cls, wild=True)))
    except (TypeError, ValueError):
        return
    for key, value in opt.get_config().items():  # what was accepted is a sane number
        for v in np.atleast_1d(np.asarray(value, dtype=float)):
            assert np.isfinite(v) and v >= 0 or key == "dampening", (key, value)


# ---- gs.load ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_file():
    X = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    model = gs.Sequential([gs.Dense(4, 5), gs.BatchNorm(5), gs.Tanh(), gs.Dense(5, 2)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    model.fit(X, (X[:, 0] > 0).astype(np.int64), epochs=1, batch_size=8, verbose=0)
    return gs.io.to_bytes(model), X


@settings(max_examples=150, deadline=None, derandomize=True)
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_load_of_damaged_bytes_refuses_or_gives_a_working_model(model_file, edits, cut):
    raw, X = model_file
    data = bytearray(raw)
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    try:
        model = gs.io.from_bytes(bytes(data))
    except ValueError:
        return
    assert np.all(np.isfinite(model.predict(X)))
    if model.loss is not None:
        history = model.fit(X, (X[:, 0] > 0).astype(np.int64), epochs=1, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
