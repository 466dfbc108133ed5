"""Per-sample loss weights (sample_weight, class_weight): the C++ loss kernels against a float64
numpy reference and torch, fused step == layer path, fit/evaluate semantics and the checks."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL_BACKWARD
from test_loss import KINDS, _cast_target, make_case

import gradstep as gs
from reference import loss as ref

TOL_VALUE = dict(rtol=1e-12, atol=1e-12)
TOL_GRAD = {"float64": TOL_BACKWARD["float64"], "float32": dict(rtol=1e-6, atol=1e-8)}


@pytest.mark.parametrize("kind", KINDS)
def test_weighted_losses_match_the_float64_reference(kind, dtype, rng):
    loss, pred, target, fn = make_case(kind, rng, N=37, K=5)
    p, t = pred.astype(dtype), _cast_target(target, dtype)
    w = rng.uniform(0, 3, 37)
    w[[3, 10]] = 0.0  # zero weights are allowed
    value = loss.forward(p, t, sample_weight=w)
    grad = loss.backward()
    rv, rg = ref.weighted(fn, p, t, w)
    np.testing.assert_allclose(value, rv, **TOL_VALUE)
    np.testing.assert_allclose(grad, rg, **TOL_GRAD[dtype])
    assert grad.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(grad[3], 0)


@pytest.mark.parametrize("kind", KINDS)
def test_unit_weights_give_the_unweighted_bits(kind, dtype, rng):
    loss, pred, target, _ = make_case(kind, rng, N=50, K=7)
    p, t = pred.astype(dtype), _cast_target(target, dtype)
    v0, g0 = loss.forward(p, t), loss.backward()
    v1, g1 = loss.forward(p, t, sample_weight=np.ones(50)), loss.backward()
    assert v0 == v1
    np.testing.assert_array_equal(g0, g1)


def test_weighted_cross_entropy_and_mse_match_torch(rng):
    torch = pytest.importorskip("torch", reason="torch is a reference for the weighted losses")
    F = torch.nn.functional
    x = 2 * rng.standard_normal((40, 6))
    y = rng.integers(0, 6, 40)
    w = rng.uniform(0, 2, 40)
    tx = torch.tensor(x, requires_grad=True)
    tv = (F.cross_entropy(tx, torch.tensor(y), reduction="none") * torch.tensor(w)).mean()
    tv.backward()
    loss = gs.SoftmaxCrossEntropy()
    assert loss.forward(x, y, sample_weight=w) == pytest.approx(tv.item(), rel=1e-13)
    np.testing.assert_allclose(loss.backward(), tx.grad.numpy(), rtol=1e-12, atol=1e-15)

    p, t = rng.standard_normal((40, 3)), rng.standard_normal((40, 3))
    tp = torch.tensor(p, requires_grad=True)
    tv = (F.mse_loss(tp, torch.tensor(t), reduction="none").mean(1) * torch.tensor(w)).mean()
    tv.backward()
    mse = gs.MSE()
    assert mse.forward(p, t, sample_weight=w) == pytest.approx(tv.item(), rel=1e-13)
    np.testing.assert_allclose(mse.backward(), tp.grad.numpy(), rtol=1e-12, atol=1e-15)

    z, b = 3 * rng.standard_normal((40, 1)), rng.integers(0, 2, (40, 1)).astype(float)
    tz = torch.tensor(z, requires_grad=True)
    tv = (F.binary_cross_entropy_with_logits(tz, torch.tensor(b), reduction="none")[:, 0]
          * torch.tensor(w)).mean()
    tv.backward()
    bce = gs.BinaryCrossEntropy(from_logits=True)
    assert bce.forward(z, b, sample_weight=w) == pytest.approx(tv.item(), rel=1e-13)
    np.testing.assert_allclose(bce.backward(), tz.grad.numpy(), rtol=1e-12, atol=1e-15)


CASES = {
    "labels": (lambda: gs.SoftmaxCrossEntropy(), 4, lambda rng, n: rng.integers(0, 4, n)),
    "soft": (lambda: gs.SoftmaxCrossEntropy(), 4,
             lambda rng, n: np.eye(4)[rng.integers(0, 4, n)] * 0.9 + 0.025),
    "mse": (lambda: gs.MSE(), 2, lambda rng, n: rng.standard_normal((n, 2))),
    "bce_logits": (lambda: gs.BinaryCrossEntropy(from_logits=True), 1,
                   lambda rng, n: rng.integers(0, 2, n).astype(float)),
    "bce": (lambda: gs.BinaryCrossEntropy(), 1, lambda rng, n: rng.integers(0, 2, n).astype(float)),
    "nll": (lambda: gs.NLL(), 4, lambda rng, n: rng.integers(0, 4, n)),
}


def _model(case, dtype):
    loss, k, _ = CASES[case]
    tail = {"bce": [gs.Sigmoid()], "nll": [gs.Softmax()]}.get(case, [])
    m = gs.Sequential([gs.Dense(10, 16), gs.Tanh(), gs.Dropout(0.1), gs.Dense(16, k), *tail],
                      dtype=dtype, seed=7)
    m.compile(loss(), gs.Adam(lr=1e-2))
    return m


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_weighted_step_gives_the_bits_of_the_layer_path(case, dtype, rng):
    X = rng.standard_normal((60, 10))
    y = CASES[case][2](rng, 60)
    w = rng.uniform(0, 2, 60)
    fused, plain = _model(case, dtype), _model(case, dtype)
    plain.use_engine = False
    for s in range(3):
        sl = slice(s * 20, (s + 1) * 20)
        assert fused.train_step(X[sl], y[sl], sample_weight=w[sl]) == \
            plain.train_step(X[sl], y[sl], sample_weight=w[sl])
    assert fused._engine
    for key, v in fused.state_dict().items():
        np.testing.assert_array_equal(v, plain.state_dict()[key], err_msg=key)


def test_fit_class_weight_equals_the_matching_sample_weight(rng):
    X = rng.standard_normal((90, 10))
    y = rng.integers(0, 4, 90)
    cw = {0: 0.5, 1: 2.0, 3: 3.0}  # class 2 left out: weight 1
    sw = np.array([cw.get(c, 1.0) for c in y])
    runs = []
    for kw in (dict(class_weight=cw), dict(sample_weight=sw), {}):
        m = _model("labels", "float64")
        h = m.fit(X, y, epochs=2, batch_size=16, verbose=0, seed=3, **kw)
        runs.append((h.history["loss"], m.state_dict()["0.weight"]))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]  # the weights did change the training


def test_class_weight_keys_are_the_class_values(rng):
    X = rng.standard_normal((40, 10))
    y = np.array(["no", "yes"])[rng.integers(0, 2, 40)]
    runs = []
    for kw in (dict(class_weight={"yes": 4.0}), dict(sample_weight=np.where(y == "yes", 4.0, 1.0))):
        m = gs.Sequential([gs.Dense(10, 2)], dtype="float64", seed=1)
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
        runs.append(m.fit(X, y, epochs=1, batch_size=8, verbose=0, seed=0, **kw).history["loss"])
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="class_weight"):
        m.fit(X, y, verbose=0, class_weight={"maybe": 2.0})


def test_evaluate_sample_weight_is_the_weighted_mean(rng):
    X = rng.standard_normal((70, 10))
    y = rng.integers(0, 4, 70)
    w = rng.uniform(0, 2, 70)
    m = _model("labels", "float64")
    got = m.evaluate(X, y, batch_size=16, sample_weight=w)["loss"]
    logits = m.predict(X)
    value, _ = ref.weighted(ref.softmax_xent, logits, y, w)
    assert got == pytest.approx(value, rel=1e-12)
    assert m.evaluate(X, y, sample_weight=np.ones(70))["loss"] == pytest.approx(
        m.evaluate(X, y)["loss"], rel=1e-14)


def test_validation_split_splits_the_weights(rng):
    X = rng.standard_normal((50, 10))
    y = rng.integers(0, 4, 50)
    w = rng.uniform(0.1, 2, 50)
    m = _model("labels", "float64")
    h = m.fit(X, y, epochs=1, batch_size=10, validation_split=0.2, sample_weight=w, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(
        m.evaluate(X[-10:], y[-10:], sample_weight=w[-10:])["loss"], rel=1e-14)
    h = m.fit(X[:40], y[:40], epochs=1, validation_data=(X[40:], y[40:], w[40:]), verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(
        m.evaluate(X[40:], y[40:], sample_weight=w[40:])["loss"], rel=1e-14)


def test_bad_weights_are_refused(rng):
    X = rng.standard_normal((20, 10))
    y = rng.integers(0, 4, 20)
    m = _model("labels", "float64")
    bad = {"length": np.ones(19), "NaN": np.r_[np.ones(19), np.nan], "inf": np.r_[np.ones(19), np.inf],
           "negative": np.r_[np.ones(19), -1.0], "2-D": np.ones((20, 1))}
    for why, w in bad.items():
        with pytest.raises(ValueError, match="sample_weight"):
            m.fit(X, y, verbose=0, sample_weight=w)
        with pytest.raises(ValueError, match="sample_weight"):
            m.evaluate(X, y, sample_weight=w)
        with pytest.raises(ValueError, match="sample_weight"):
            m.train_step(X, y, sample_weight=w)
        with pytest.raises(ValueError, match="sample_weight"):
            gs.SoftmaxCrossEntropy().forward(X[:, :4], y, sample_weight=w)
    with pytest.raises(TypeError, match="sample_weight"):
        m.fit(X, y, verbose=0, sample_weight=["a"] * 20)
    with pytest.raises(TypeError, match="class_weight"):
        m.fit(X, y, verbose=0, class_weight=[1.0, 2.0])
    for cw in ({7: 1.0}, {-1: 1.0}, {1.5: 1.0}, {"a": 1.0}):
        with pytest.raises(ValueError, match="class_weight"):
            m.fit(X, y, verbose=0, class_weight=cw)
    for cw in ({0: -1.0}, {0: float("nan")}):
        with pytest.raises(ValueError, match="class_weight"):
            m.fit(X, y, verbose=0, class_weight=cw)
    reg = _model("mse", "float64")
    with pytest.raises(ValueError, match="class_weight"):
        reg.fit(X, rng.standard_normal((20, 2)), verbose=0, class_weight={0: 2.0})
    # the C++ guard, for callers that skip the Python checks
    from gradstep import _core
    with pytest.raises(ValueError, match="sample_weight"):
        _core.mse_forward(np.ones((3, 2)), np.ones((3, 2)), np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="sample_weight"):
        _core.nll_backward(np.full((3, 2), 0.5), np.zeros(3, np.int64), np.ones(4))


def test_binary_class_weight_and_python_losses(rng):
    X = rng.standard_normal((40, 10))
    y = rng.integers(0, 2, 40).astype(float)
    runs = []
    for kw in (dict(class_weight={1: 3.0}), dict(sample_weight=np.where(y == 1, 3.0, 1.0))):
        m = _model("bce_logits", "float64")
        runs.append(m.fit(X, y, epochs=1, batch_size=8, verbose=0, seed=0, **kw).history["loss"])
    assert runs[0] == runs[1]

    class MyMSE(gs.losses.Loss):  # a user's loss: no per-sample weights
        def _forward(self, pred, target):
            return float(np.mean((pred - target) ** 2)), (pred, target)

        def _backward(self, pred, target):
            return 2 * (pred - target) / pred.size

    m = gs.Sequential([gs.Dense(10, 1)], dtype="float64", seed=1)
    m.compile(MyMSE(), gs.SGD())
    with pytest.raises(TypeError, match="sample_weight"):
        m.fit(X, y, verbose=0, sample_weight=np.ones(40))
    m.fit(X, y, verbose=0)  # without weights it trains as before


def test_weighted_steps_bit_identical_for_1_and_2_threads_and_split(rng):
    # a batch of 4096 x 10 outputs: the weighted loss sums and gradients run on threads
    X = rng.standard_normal((4096, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4096)
    w = rng.uniform(0, 2, 4096)
    runs = []
    for threads in (1, 2, 1):
        gs.set_num_threads(threads)
        m = gs.Sequential([gs.Dense(32, 64), gs.ReLU(), gs.Dense(64, 10)], seed=2)
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1, clipnorm=0.5))
        if len(runs) < 2:
            losses = [m.train_step(X, y, sample_weight=w) for _ in range(2)]
        else:  # the two halves (data parallelism's split) give the same bits
            losses = []
            for _ in range(2):
                losses.append(m.forward_backward(X, y, sample_weight=w))
                m.update()
        runs.append((losses, m.state_dict()))
    for other in runs[1:]:
        assert runs[0][0] == other[0]
        for k in runs[0][1]:
            np.testing.assert_array_equal(runs[0][1][k], other[1][k])
