"""train_step's NaN/inf refusal, done by the network's own scan on the engine path, and the
optimizer's cached kernel arguments: same errors and same bits as the Python checks and the
layer-by-layer path."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import _checks


def python_message(a, name):
    """What _checks.check_finite (the Python check train_step used to run) says about `a`."""
    with pytest.raises(ValueError) as info:
        _checks.check_finite(a, name)
    return str(info.value)


def dense_model(dtype, loss=None, out=10, seed=0):
    m = gs.Sequential([gs.Dense(64, 32), gs.ReLU(), gs.Dense(32, out)], dtype=dtype, seed=seed)
    m.compile(loss or gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    return m


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}, model.optimizer.iterations


def assert_unchanged(model, before):
    state, iterations = before
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert model.optimizer.iterations == iterations


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [[(0, 0)], [(3, 1)], [(31, 63)], [(20, 5), (20, 2), (25, 0)],
                                   [(9, 63), (10, 0)]])
def test_engine_refuses_nonfinite_xb_as_check_finite(dtype, bad, where, rng):
    model = dense_model(dtype)
    X = rng.standard_normal((64, 64)).astype(dtype)
    y = rng.integers(0, 10, 64)
    model.train_step(X[:32], y[:32])  # built, on the engine
    assert model._engine
    before = snapshot(model)
    xb = X[32:].copy()
    for r, c in where:
        xb[r, c] = bad
    want = python_message(xb, "train_step: xb")
    first = min(where)
    assert want == f"train_step: xb holds NaN or inf (first at row {first[0]}, column {first[1]})"
    with pytest.raises(ValueError) as info:
        model.train_step(xb, y[32:])
    assert str(info.value) == want
    assert_unchanged(model, before)
    # The model trains on as if the bad batch had never come.
    ref = dense_model(dtype)
    ref.train_step(X[:32], y[:32])
    assert model.train_step(X[32:], y[32:]) == ref.train_step(X[32:], y[32:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_engine_refuses_nonfinite_target_as_check_finite(dtype, rng):
    model = dense_model(dtype, gs.MSE(), out=3)
    X = rng.standard_normal((16, 64)).astype(dtype)
    Y = rng.standard_normal((16, 3)).astype(dtype)
    model.train_step(X, Y)
    before = snapshot(model)
    Yb = Y.copy()
    Yb[7, 2] = np.nan
    Yb[9, 0] = np.inf
    with pytest.raises(ValueError) as info:
        model.train_step(X, Yb)
    assert str(info.value) == python_message(Yb, "train_step: yb") == \
        "train_step: yb holds NaN or inf (first at row 7, column 2)"
    # xb is reported first when both hold one, as the Python checks did.
    Xb = X.copy()
    Xb[11, 4] = -np.inf
    with pytest.raises(ValueError, match=r"train_step: xb holds NaN or inf \(first at row 11, column 4\)"):
        model.train_step(Xb, Yb)
    assert_unchanged(model, before)


def test_nan_is_reported_before_a_shape_error(rng):
    model = dense_model("float32")
    model.train_step(rng.standard_normal((8, 64)).astype(np.float32), rng.integers(0, 10, 8))
    xb = np.zeros((8, 64), np.float32)
    xb[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"xb holds NaN or inf \(first at row 2, column 3\)"):
        model.train_step(xb, np.zeros(7, np.int64))  # 7 labels for 8 rows
    with pytest.raises(ValueError, match="same number of samples"):
        model.train_step(np.zeros((8, 64), np.float32), np.zeros(7, np.int64))


def test_engine_refuses_nonfinite_conv_input_counting_columns_per_flattened_row(rng):
    model = gs.Sequential([gs.Conv2D(2, 3, 3), gs.ReLU(), gs.Flatten(), gs.Dense(3 * 4 * 4, 4)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    X = rng.standard_normal((6, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    model.train_step(X, y)
    assert model._engine
    X[4, 1, 2, 5] = np.nan
    want = python_message(X, "train_step: xb")
    assert want.endswith(f"(first at row 4, column {36 + 2 * 6 + 5})")
    with pytest.raises(ValueError) as info:
        model.train_step(X, y)
    assert str(info.value) == want


@pytest.mark.parametrize("xdtype", [np.float64, np.int64])
def test_converted_batches_are_checked_before_conversion(xdtype, rng):
    """A batch the engine converts (another dtype, a list) is checked in Python as it came."""
    model = dense_model("float32")
    model.train_step(rng.standard_normal((8, 64)).astype(np.float32), rng.integers(0, 10, 8))
    xb = rng.standard_normal((8, 64)).astype(xdtype)
    model.train_step(xb, rng.integers(0, 10, 8))
    if xdtype is np.float64:
        xb[5, 6] = np.inf
        with pytest.raises(ValueError, match=r"xb holds NaN or inf \(first at row 5, column 6\)"):
            model.train_step(xb, rng.integers(0, 10, 8))
    reg = dense_model("float32", gs.MSE(), out=1)
    yb = np.ones(8)  # 1-D float64: reshaped to (8, 1) on the way
    yb[4] = np.nan
    with pytest.raises(ValueError, match=r"yb holds NaN or inf \(first at row 4, column 0\)"):
        reg.train_step(np.ones((8, 64), np.float32), yb)


def test_dropout_models_leave_their_seed_streams_alone_on_a_refused_batch(rng):
    def make():
        m = gs.Sequential([gs.Dense(64, 32), gs.Dropout(0.5, seed=1), gs.Dense(32, 10)], seed=0)
        return m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    a, b = make(), make()
    X = rng.standard_normal((16, 64)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    bad = X.copy()
    bad[1, 1] = np.nan
    a.train_step(X, y)
    b.train_step(X, y)
    with pytest.raises(ValueError, match="holds NaN"):
        a.train_step(bad, y)
    assert a.train_step(X, y) == b.train_step(X, y)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


# ---- the optimizer's cached kernel arguments ------------------------------------------------------
def test_kernel_args_follow_every_hyperparameter_write():
    opt = gs.Adam(lr=1e-3)
    first = opt._kernel_args()
    assert opt._kernel_args() is first  # kept while nothing changes
    opt.lr = 0.5
    assert opt._kernel_args()[0] == opt.kernel_hyper() and opt._kernel_args()[0][0] == 0.5
    opt._hyper["eps"] = 1e-3  # as the scikit-learn wrapper does every step
    assert opt._kernel_args()[0][3] == 1e-3
    opt._hyper.update(weight_decay=0.25)
    assert opt._kernel_args()[0][4] == 0.25
    state = gs.Adam(lr=0.125, betas=(0.5, 0.75), clipnorm=2.0).state_dict()
    opt.load_state_dict(state)
    assert opt._kernel_args() == ([0.125, 0.5, 0.75, 1e-8, 0.0, 0.0], (2.0, 0.0))


@pytest.mark.parametrize("change", ["lr", "eps", "load_state_dict"])
def test_engine_steps_use_the_hyperparameters_of_the_moment(change, rng):
    X = rng.standard_normal((16, 64))
    y = rng.integers(0, 10, 16)
    fused, plain = dense_model("float64"), dense_model("float64")
    plain.use_engine = False
    for step in range(4):
        if step == 2:  # after two steps with the cache warm
            for m in (fused, plain):
                if change == "lr":
                    m.optimizer.lr = 0.25
                elif change == "eps":
                    m.optimizer._hyper["eps"] = 0.5
                else:
                    st = m.optimizer.state_dict()
                    st["hyper"]["betas"] = (0.5, 0.5)
                    m.optimizer.load_state_dict(st)
        assert fused.train_step(X, y) == plain.train_step(X, y)
    assert fused._engine
    for k, v in fused.state_dict().items():
        np.testing.assert_array_equal(v, plain.state_dict()[k], err_msg=k)
    # ... and the change mattered: a model without it ends elsewhere.
    same = dense_model("float64")
    for _ in range(4):
        same.train_step(X, y)
    assert not np.array_equal(same.state_dict()["0.weight"], fused.state_dict()["0.weight"])
