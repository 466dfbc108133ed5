"""The whole-step C++ engine against the layer-by-layer path: same bits, no allocations."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gradstep as gs

OPTIMIZERS = {
    "sgd": lambda: gs.SGD(lr=0.05),
    "sgd_nesterov_wd": lambda: gs.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop_momentum": lambda: gs.RMSprop(lr=1e-3, momentum=0.5, weight_decay=1e-4),
    "adam": lambda: gs.Adam(lr=1e-2),
    "adamw": lambda: gs.AdamW(lr=1e-2, weight_decay=0.1),
}


def make(dtype, out, body, seed=3):
    return gs.Sequential([gs.Dense(12, 16, l2=1e-3), *body, gs.Dense(16, out, l2=1e-3)], dtype=dtype, seed=seed)


BODIES = {
    "relu": lambda: [gs.ReLU()],
    "bn_tanh_dropout": lambda: [gs.BatchNorm(16), gs.Tanh(), gs.Dropout(0.3)],
    "sigmoid_leaky_elu_identity": lambda: [gs.Sigmoid(), gs.Dense(16, 16), gs.LeakyReLU(0.1),
                                           gs.Dense(16, 16), gs.ELU(0.7), gs.Identity()],
}


def targets(kind, rng, n, k):
    if kind == "labels":
        return gs.SoftmaxCrossEntropy(), k, rng.integers(0, k, n)
    if kind == "soft":
        p = rng.random((n, k))
        return gs.SoftmaxCrossEntropy(), k, p / p.sum(1, keepdims=True)
    if kind == "mse":
        return gs.MSE(), 2, rng.standard_normal((n, 2))
    if kind == "bce_logits":
        return gs.BinaryCrossEntropy(from_logits=True), 1, rng.integers(0, 2, n).astype(float)
    raise AssertionError(kind)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("kind", ["labels", "soft", "mse", "bce_logits"])
def test_engine_gives_the_bits_of_the_layer_path(dtype, opt, body, kind, rng):
    X = rng.standard_normal((96, 12))
    loss, k, y = targets(kind, rng, 96, 5)
    fused, plain = make(dtype, k, BODIES[body]()), make(dtype, k, BODIES[body]())
    for m in (fused, plain):
        m.compile(type(loss)(**loss.get_config()), OPTIMIZERS[opt]())
    plain.use_engine = False
    for s in range(4):
        xb, yb = X[s * 24:(s + 1) * 24], y[s * 24:(s + 1) * 24]
        assert fused.train_step(xb, yb) == plain.train_step(xb, yb)
    assert fused._engine, "the engine should cover this model"
    for key, v in fused.state_dict().items():
        np.testing.assert_array_equal(v, plain.state_dict()[key], err_msg=key)
    a, b = fused.optimizer.state_dict(), plain.optimizer.state_dict()
    assert a["step"] == b["step"] == 4
    for name in a["state"]:
        for buf, v in a["state"][name].items():
            np.testing.assert_array_equal(v, b["state"][name][buf])


def test_fit_with_engine_equals_fit_without(rng):
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    runs = []
    for engine in (True, False):
        m = make("float32", 4, [gs.BatchNorm(16), gs.ReLU(), gs.Dropout(0.2)])
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2), metrics=["accuracy"])
        m.use_engine = engine
        runs.append((m.fit(X, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0).history, m.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_engine_steps_allocate_nothing_after_the_first(rng):
    model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 64), gs.ReLU(), gs.Dense(64, 10)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam())
    X = rng.standard_normal((32, 64)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model.train_step(X, y)
    ws = model._engine.nets["softmax_xent"].workspace_bytes
    assert ws > 0
    tracemalloc.start()
    try:
        model.train_step(X, y)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            model.train_step(X, y)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model._engine.nets["softmax_xent"].workspace_bytes == ws  # C++ workspace reused, not regrown
    assert after - before < 2048, f"{after - before} bytes retained over 200 steps"
    assert peak - before < 4096, f"a step allocated {peak - before} bytes of Python/numpy memory"
    # A smaller batch reuses the same workspace; only a larger one grows it.
    model.train_step(X[:8], y[:8])
    assert model._engine.nets["softmax_xent"].workspace_bytes == ws


def test_engine_follows_lr_changes(rng):
    X = rng.standard_normal((16, 12))
    y = rng.integers(0, 5, 16)
    a, b = make("float64", 5, [gs.ReLU()]), make("float64", 5, [gs.ReLU()])
    for m in (a, b):
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1, momentum=0.9))
    b.use_engine = False
    for lr in (0.1, 0.01, 0.5):
        a.optimizer.lr = b.optimizer.lr = lr
        assert a.train_step(X, y) == b.train_step(X, y)


class Doubler(gs.Layer):
    """A user's own layer, defined in Python: y = 2x."""

    def forward(self, x, training=True):
        self._saved = True
        return 2.0 * np.asarray(x)

    def backward(self, grad_y):
        return 2.0 * np.asarray(grad_y)


def test_models_with_a_python_layer_train_layer_by_layer(rng):
    X = rng.standard_normal((64, 12))
    y = rng.integers(0, 3, 64)
    model = gs.Sequential([gs.Dense(12, 8), gs.PReLU(8), Doubler(), gs.Maxout(8, 6, pieces=3), gs.Dense(6, 3)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    h = model.fit(X, y, epochs=30, batch_size=16, verbose=0)
    assert model._engine is False
    assert h.history["loss"][-1] < h.history["loss"][0]


class MyDense(gs.Dense):
    """A subclass that redefines forward in Python: the engine must not run the plain op."""

    def forward(self, x, training=True):
        return super().forward(x, training) * 0.5

    def backward(self, grad_y):
        return super().backward(np.asarray(grad_y) * 0.5)


def test_a_subclass_redefining_forward_is_not_run_as_its_op(rng):
    model = gs.Sequential([MyDense(4, 3)], dtype="float64", seed=0)
    model.compile(gs.MSE(), gs.SGD(lr=0.1))
    model.train_step(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)))
    assert model._engine is False


def test_engine_rejects_bad_batches(rng):
    model = make("float32", 5, [gs.BatchNorm(16), gs.ReLU()])
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam())
    with pytest.raises(ValueError, match="more than 1"):
        model.train_step(rng.standard_normal((1, 12)), np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model.train_step(rng.standard_normal((4, 12)), np.array([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="12 features"):
        model.train_step(rng.standard_normal((4, 11)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="same number of samples"):
        model.train_step(rng.standard_normal((4, 12)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(rng.standard_normal((33, 12)), rng.integers(0, 5, 33), batch_size=32, verbose=0)


def test_engine_bit_identical_for_1_and_2_threads(rng):
    X = rng.standard_normal((512, 784)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    states = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        m = gs.Sequential([gs.Dense(784, 256), gs.ReLU(), gs.Dense(256, 128), gs.Tanh(), gs.Dense(128, 10)], seed=1)
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        losses = [m.train_step(X[i * 128:(i + 1) * 128], y[i * 128:(i + 1) * 128]) for i in range(4)]
        states.append((losses, m.state_dict()))
    assert states[0][0] == states[1][0]
    for k in states[0][1]:
        np.testing.assert_array_equal(states[0][1][k], states[1][1][k])


def test_activation_stats_match_numpy(rng):
    y = rng.standard_normal((50, 7))
    y[:, 2] = -np.abs(y[:, 2])  # a dead unit
    s = gs._core.activation_stats(y)
    assert s["mean"] == pytest.approx(y.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(y.std(), rel=1e-9)
    assert (s["min"], s["max"]) == (y.min(), y.max())
    assert s["dead_units"] == pytest.approx(np.mean(np.all(y <= 0, axis=0)))
    assert s["zero"] == pytest.approx(np.mean(y <= 0))
    assert s["saturated_tanh"] == pytest.approx(np.mean(np.abs(y) > 0.99))
    assert s["saturated_sigmoid"] == pytest.approx(np.mean((y < 0.01) | (y > 0.99)))


def test_engine_layer_stats_are_those_of_the_layer_outputs(rng):
    model = gs.Sequential([gs.Dense(12, 16), gs.ReLU(), gs.Dense(16, 3)], dtype="float64", seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.0))
    X = rng.standard_normal((20, 12))
    model.train_step(X, rng.integers(0, 3, 20))
    hidden = model.layers[1].forward(model.layers[0].forward(X))
    got = model._engine.nets["softmax_xent"].layer_stats(1)
    want = gs._core.activation_stats(hidden)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-15), k
    with pytest.raises(IndexError):
        model._engine.nets["softmax_xent"].layer_stats(3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [7, 32, 256])
def test_predict_through_the_engine_gives_the_bits_of_the_layers(dtype, batch_size, rng):
    """predict/predict_proba run the engine's Network.infer batch by batch: the same bits as the
    layers' forward(training=False) on the same batches (Dropout off, BatchNorm's running stats)."""
    X = rng.standard_normal((90, 12))
    y = rng.integers(0, 5, 90)
    m = make(dtype, 5, [gs.BatchNorm(16), gs.ReLU(), gs.Dropout(0.4)])
    m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert m._engine
    fused = m.predict(X, batch_size=batch_size)
    proba = m.predict_proba(X, batch_size=batch_size)
    calls = []
    real_infer = m._engine.infer
    m._engine.infer = lambda xb: calls.append(len(xb)) or real_infer(xb)
    again = m.predict(X, batch_size=batch_size)
    assert calls == [len(X[s:s + batch_size]) for s in range(0, 90, batch_size)]
    del m._engine.infer
    m.use_engine = False
    layers = m.predict(X, batch_size=batch_size)
    by_hand = np.concatenate([m.forward(X[s:s + batch_size].astype(dtype), training=False)
                              for s in range(0, 90, batch_size)])
    assert fused.dtype == layers.dtype == np.dtype(dtype)
    assert np.array_equal(fused, layers) and np.array_equal(fused, by_hand) and np.array_equal(again, fused)
    assert np.array_equal(proba, m.predict_proba(X, batch_size=batch_size))
    m.use_engine = True
    # A wrong feature count keeps the layers' message.
    with pytest.raises(ValueError, match="12 features"):
        m.predict(X[:, :5])
