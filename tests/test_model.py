from __future__ import annotations

import time

import numpy as np
import pytest

import gradstep as gs
from gradstep.callbacks import Callback


@pytest.fixture(scope="module")
def digits():
    from sklearn.preprocessing import StandardScaler
    X, y = gs.datasets.load_digits()
    from sklearn.model_selection import train_test_split
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=400, random_state=0, stratify=y)
    return X_tr, y_tr, X_te, y_te


def mlp(dtype="float32", seed=0, hidden=32, l2=0.0, extra=()):
    return gs.Sequential([gs.Dense(64, hidden, l2=l2), gs.ReLU(), *extra, gs.Dense(hidden, 10, l2=l2)],
                         dtype=dtype, seed=seed)


def test_size_mismatch_names_both_layers():
    with pytest.raises(ValueError) as info:
        gs.Sequential([gs.Dense(64, 100), gs.ReLU(), gs.Dense(128, 10)])
    msg = str(info.value)
    assert "layer 2" in msg and "layer 0" in msg and "128" in msg and "100" in msg


def test_constructor_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        gs.Sequential([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a gs layer"):
        gs.Sequential([gs.Dense(2, 2), "relu"])
    d = gs.Dense(2, 2)
    with pytest.raises(ValueError, match="twice"):
        gs.Sequential([d, d])
    with pytest.raises(ValueError, match="dtype"):
        gs.Sequential([gs.Dense(2, 2)], dtype="int8")


def test_parameters_share_one_flat_buffer():
    model = mlp()
    params = model.parameters()
    assert [p.name for p in params] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for p in params:
        assert np.shares_memory(p.value, model.arena.params)
        assert np.shares_memory(p.grad, model.arena.grads)
    # Writing through a layer's view changes the model's output.
    x = np.ones((2, 64), np.float32)
    before = model.predict(x)
    model.layers[2].params["bias"][...] += 1.0
    np.testing.assert_allclose(model.predict(x), before + 1.0, rtol=1e-6)


def test_sequential_casts_layers_to_its_dtype():
    model = gs.Sequential([gs.Dense(3, 4, dtype="float32"), gs.Tanh(), gs.Dense(4, 2)], dtype="float64")
    assert all(p.value.dtype == np.float64 for p in model.parameters())
    assert model.predict(np.ones((1, 3))).dtype == np.float64


def test_same_seed_same_model_and_training(digits):
    X, y, _, _ = digits
    runs = []
    for _ in range(2):
        m = mlp(seed=5)
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
        m.fit(X, y, epochs=2, batch_size=64, verbose=0)
        runs.append(m.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    other = mlp(seed=6).state_dict()
    assert not np.array_equal(other["0.weight"], mlp(seed=5).state_dict()["0.weight"])


def test_fit_learns_digits_quickly(digits):
    X, y, Xt, yt = digits
    model = mlp(hidden=64)
    model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=gs.Adam(lr=1e-3), metrics=["accuracy"])
    t0 = time.perf_counter()
    history = model.fit(X, y, epochs=15, batch_size=32, validation_split=0.2, verbose=0)
    elapsed = time.perf_counter() - t0
    h = history.history
    assert set(h) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert len(h["loss"]) == 15
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert model.evaluate(Xt, yt)["accuracy"] > 0.9
    assert elapsed < 30, f"15 epochs of digits took {elapsed:.1f} s"


def test_train_step_matches_the_layer_by_layer_path(digits, dtype):
    X, y, _, _ = digits
    a, b = mlp(dtype=dtype, seed=3, l2=1e-3), mlp(dtype=dtype, seed=3, l2=1e-3)
    for m in (a, b):
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    loss_fn, opt = gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2)
    for step in range(5):
        xb, yb = X[step * 32:(step + 1) * 32], y[step * 32:(step + 1) * 32]
        value_a = a.train_step(xb, yb)
        out = b.forward(xb, training=True)
        value_b = loss_fn.forward(out, yb) + b.penalty()
        b.backward(loss_fn.backward())
        opt.step(b.parameters())
        assert value_a == pytest.approx(value_b, rel=1e-6 if dtype == "float32" else 1e-12)
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(v, b.state_dict()[k], rtol=1e-5 if dtype == "float32" else 1e-12,
                                   atol=1e-6 if dtype == "float32" else 1e-13)


def test_l2_is_in_the_reported_loss(digits):
    X, y, _, _ = digits
    plain, reg = mlp(seed=1), mlp(seed=1, l2=0.5)
    for m in (plain, reg):
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.0))
    w0, w2 = plain.layers[0].params["weight"], plain.layers[2].params["weight"]
    expected = 0.25 * (np.sum(w0.astype(np.float64) ** 2) + np.sum(w2.astype(np.float64) ** 2))
    diff = reg.evaluate(X, y)["loss"] - plain.evaluate(X, y)["loss"]
    assert diff == pytest.approx(expected, rel=1e-5)


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch, logs["size"]))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_batches_keep_the_last_partial_one_and_callbacks_run_in_order(digits):
    X, y, _, _ = digits
    X, y = X[:100], y[:100]
    model = mlp()
    model.compile(gs.SoftmaxCrossEntropy(), "sgd", metrics=["accuracy"])
    rec = Recorder()
    model.fit(X, y, epochs=2, batch_size=32, callbacks=[rec], verbose=0)
    assert rec.events[0] == "train_begin" and rec.events[-1] == "train_end"
    sizes = [e[2] for e in rec.events if isinstance(e, tuple) and e[0] == "batch"]
    assert sizes == [32, 32, 32, 4] * 2
    ends = [e for e in rec.events if isinstance(e, tuple) and e[0] == "epoch_end"]
    assert [e[1] for e in ends] == [0, 1] and ends[0][2] == ["accuracy", "loss", "lr"]


def test_stop_training_from_a_callback(digits):
    X, y, _, _ = digits

    class StopAfterFirst(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = mlp()
    model.compile(gs.SoftmaxCrossEntropy(), "adam")
    h = model.fit(X, y, epochs=5, callbacks=[StopAfterFirst()], verbose=0)
    assert len(h.history["loss"]) == 1


def test_verbose_zero_is_silent_and_verbose_one_shows_progress(digits, capsys):
    X, y, _, _ = digits
    model = mlp()
    model.compile(gs.SoftmaxCrossEntropy(), "adam")
    model.fit(X[:64], y[:64], epochs=1, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    model.fit(X[:64], y[:64], epochs=1, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch" in err and "loss=" in err


def test_predict_evaluate_and_summary(digits):
    X, y, Xt, yt = digits
    model = mlp()
    model.compile(gs.SoftmaxCrossEntropy(), "adam", metrics=["accuracy"])
    out = model.predict(Xt, batch_size=50)
    assert out.shape == (Xt.shape[0], 10) and out.dtype == np.float32
    np.testing.assert_array_equal(model.predict_classes(Xt), np.argmax(out, axis=1))
    res = model.evaluate(Xt, yt)
    assert set(res) == {"loss", "accuracy"} and 0 <= res["accuracy"] <= 1
    s = model.summary()
    assert "Total parameters: 2,410" in s and "Dense" in s


def test_regression_with_mse(rng):
    X = rng.standard_normal((256, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    model = gs.Sequential([gs.Dense(3, 1, init="zeros")], dtype="float64")
    model.compile(gs.MSE(), gs.SGD(lr=0.1), metrics=["mae", "mse"])
    h = model.fit(X, y, epochs=30, batch_size=32, verbose=0)
    assert h.history["loss"][-1] < 1e-3
    assert h.history["mse"][-1] == pytest.approx(h.history["loss"][-1], rel=0.5)
    np.testing.assert_allclose(model.layers[0].params["weight"].ravel(), [1.0, -2.0, 0.5], atol=0.05)


@pytest.mark.parametrize("X, y, kwargs, exc, words", [
    (np.full((4, 64), np.nan), np.zeros(4, int), {}, ValueError, "NaN or inf"),
    (np.zeros((4, 64)), np.array([0, 1, 2, 10]), {}, ValueError, r"\[0, 10\)"),
    (np.zeros((4, 64)), np.array([0, 1, 2, -1]), {}, ValueError, r"\[0, 10\)"),
    (np.zeros((4, 64)), np.array([0.5, 1, 2, 3]), {}, ValueError, "integer"),
    (np.zeros((4, 64)), np.zeros(3, int), {}, ValueError, "same number of samples"),
    (np.zeros((0, 64)), np.zeros(0, int), {}, ValueError, "empty"),
    (np.zeros((4, 63)), np.zeros(4, int), {}, ValueError, "64 features"),
    (np.zeros(64), np.zeros(1, int), {}, ValueError, "2-D"),
    (np.zeros((4, 64)), np.zeros(4, int), {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    (np.zeros((4, 64)), np.zeros(4, int), {"epochs": 0}, ValueError, "epochs must be >= 1"),
    (np.zeros((4, 64)), np.zeros(4, int), {"validation_split": 1.0}, ValueError, "validation_split"),
    (np.array([["a"] * 64] * 4), np.zeros(4, int), {}, TypeError, "numeric"),
])
def test_fit_rejects_bad_data_before_training(X, y, kwargs, exc, words):
    model = mlp()
    model.compile(gs.SoftmaxCrossEntropy(), "adam")
    before = model.state_dict()
    with pytest.raises(exc, match=words):
        model.fit(X, y, verbose=0, **kwargs)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_fit_needs_compile():
    with pytest.raises(ValueError, match="compile"):
        mlp().fit(np.zeros((2, 64)), np.zeros(2, int))


def test_compile_rejects_unknown_names():
    with pytest.raises(ValueError, match="metric"):
        # "f2", not "f1": "f1" became a metric (issue 9)
        mlp().compile(gs.SoftmaxCrossEntropy(), "adam", metrics=["f2"])


def test_state_dict_roundtrip_and_strictness():
    a, b = mlp(seed=1), mlp(seed=2)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    sd = a.state_dict()
    sd.pop("0.bias")
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict(sd)
    b.load_state_dict(sd, strict=False)
    sd = a.state_dict()
    sd["9.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="unexpected keys"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["0.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(sd)


def test_accuracy_of_a_multi_label_bce_model_counts_each_output(rng):
    # Every output of a multi-output BCE is its own yes/no decision: accuracy is the fraction of
    # correct decisions, not an argmax over the outputs.
    model = gs.Sequential([gs.Dense(4, 3, init="zeros")], dtype="float64")
    model.compile(gs.BinaryCrossEntropy(from_logits=True), gs.SGD(lr=0.0), metrics=["accuracy"])
    model.layers[0].params["bias"][...] = [1.0, -1.0, 1.0]  # logits say (1, 0, 1) for every row
    X = rng.standard_normal((4, 4))
    Y = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]], float)
    assert model.evaluate(X, Y)["accuracy"] == pytest.approx(np.mean(Y == [1, 0, 1]))
    np.testing.assert_array_equal(model.predict_classes(X), np.tile([1, 0, 1], (4, 1)))


def test_initial_epoch_resumes_like_one_run(digits):
    # Keras's initial_epoch: fit(epochs=6, initial_epoch=3) runs epochs 3, 4, 5; with the model's
    # state carried over it continues exactly as one uninterrupted 6-epoch run
    X, y = digits[0][:300], digits[1][:300]
    whole = mlp(seed=1).compile(gs.SoftmaxCrossEntropy(), gs.SGD(0.05, momentum=0.9))
    h_whole = whole.fit(X, y, epochs=6, verbose=0, seed=5)
    part = mlp(seed=1).compile(gs.SoftmaxCrossEntropy(), gs.SGD(0.05, momentum=0.9))
    part.fit(X, y, epochs=3, verbose=0, seed=5)
    part.epochs_done = 0  # e.g. a model loaded from a file that did not record its epoch count
    h_rest = part.fit(X, y, epochs=6, initial_epoch=3, verbose=0, seed=5)
    assert h_rest.epoch == [3, 4, 5] and part.epochs_done == 6
    assert h_rest.history["loss"] == h_whole.history["loss"][3:]
    np.testing.assert_array_equal(part.predict(X), whole.predict(X))
    with pytest.raises(ValueError, match="initial_epoch"):
        part.fit(X, y, epochs=3, initial_epoch=3, verbose=0)
    with pytest.raises(ValueError, match="initial_epoch"):
        part.fit(X, y, epochs=3, initial_epoch=-1, verbose=0)


def test_calling_the_model_predicts(digits):
    X = digits[0][:50]
    model = mlp()
    np.testing.assert_array_equal(model(X), model.predict(X))
    np.testing.assert_array_equal(model(X, batch_size=7), model.predict(X, batch_size=7))
