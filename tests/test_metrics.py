"""Metrics in fit/evaluate: each checked against scikit-learn on the same predictions, over a whole
epoch (not an average of batches)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

import gradstep as gs


@pytest.fixture(scope="module")
def digits():
    X, y = gs.datasets.load_digits()
    return gs.datasets.standardize(X[:600]), y[:600]


def trained(X, y, n_out, loss, metrics, epochs=3):
    model = gs.Sequential([gs.Dense(X.shape[1], 32), gs.ReLU(), gs.Dense(32, n_out)], seed=0)
    model.compile(loss, gs.Adam(3e-3), metrics=metrics)
    model.fit(X, y, epochs=epochs, batch_size=32, verbose=0, seed=0)
    return model


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_multiclass_metrics_match_scikit_learn(digits):
    X, y = digits
    names = ["accuracy", "precision", "recall", "f1", "top_k_accuracy", "auc"]
    model = trained(X, y, 10, gs.SoftmaxCrossEntropy(), names, epochs=1)  # a model still making mistakes
    got = model.evaluate(X, y, batch_size=64)  # 10 batches: per-batch averages would differ
    out = model.predict(X)
    pred = out.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, out, k=5))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, softmax(out.astype(np.float64)), multi_class="ovr"))
    assert got["f1"] < 1.0 and got["top_k_accuracy"] > got["accuracy"]
    # the epoch's training logs hold them too
    h = model.fit(X, y, epochs=1, verbose=0, validation_data=(X, y))
    assert {f"val_{n}" for n in names} <= set(h.history) and set(names) <= set(h.history)


def test_binary_metrics_score_the_positive_class(digits):
    X, y = digits
    yb = (y >= 5).astype(np.float64)
    model = trained(X, yb, 1, gs.BinaryCrossEntropy(from_logits=True), ["precision", "recall", "f1", "auc"],
                    epochs=1)
    got = model.evaluate(X, yb, batch_size=50)
    score = model.predict(X)[:, 0]
    pred = (score > 0).astype(int)
    assert got["precision"] == pytest.approx(skm.precision_score(yb, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(yb, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(yb, pred))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(yb, score))


def test_callable_metric_is_a_size_weighted_mean_over_batches(digits):
    X, y = digits

    def share_of_sevens(y_true, y_pred):
        return float(np.mean(np.asarray(y_true) == 7))

    model = trained(X, y, 10, gs.SoftmaxCrossEntropy(), ["accuracy", share_of_sevens], epochs=1)
    assert model.metrics[1] == "share_of_sevens"
    got = model.evaluate(X, y, batch_size=64)  # unequal last batch: weighted by size
    assert got["share_of_sevens"] == pytest.approx(np.mean(y == 7))
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=["f2"])
    with pytest.raises(TypeError, match="callables"):
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=[3])


def test_top_k_needs_one_output_per_class(digits):
    X, y = digits
    model = trained(X, (y > 4).astype(float), 1, gs.BinaryCrossEntropy(from_logits=True), [], epochs=1)
    model.compile(gs.BinaryCrossEntropy(from_logits=True), gs.Adam(), metrics=["top_k_accuracy"])
    with pytest.raises(ValueError, match="one output per class"):
        model.evaluate(X, (y > 4).astype(float))


def test_a_model_with_a_callable_metric_saves_and_loads(tmp_path):
    # the callable is code, not data: the file keeps the built-in metrics, and loading works
    def mine(y_true, y_pred):
        return 0.0

    model = gs.Sequential([gs.Dense(3, 2)], seed=0).compile(gs.SoftmaxCrossEntropy(), gs.Adam(),
                                                             metrics=["f1", mine])
    model.save(tmp_path / "m.safetensors")
    assert gs.load(tmp_path / "m.safetensors").metrics == ["f1"]


@pytest.mark.parametrize("loss", ["softmax", "nll"])
def test_mse_and_mae_with_class_labels_compare_probabilities_with_one_hot(digits, loss):
    """Integer labels (N,) against one output per class: "mse"/"mae" over the class probabilities
    minus the one-hot labels (the multi-class Brier score / K); the fast fit path and the
    per-batch loop give the same bits; evaluate equals numpy on predict's probabilities."""
    X, y = digits
    X = X.astype(np.float32)

    def make():
        body = [gs.Dense(64, 32), gs.ReLU(), gs.Dense(32, 10)]
        if loss == "nll":
            body.append(gs.Softmax())
        m = gs.Sequential(body, seed=0)
        return m.compile(gs.SoftmaxCrossEntropy() if loss == "softmax" else gs.NLL(), gs.Adam(3e-3),
                         metrics=["mse", "mae", "accuracy"])
    fast, slow = make(), make()
    slow._per_batch_fit = True
    hf = fast.fit(X, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, seed=1).history
    hs = slow.fit(X, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, seed=1).history
    assert hf == hs
    assert all(0 < v < 0.2 for v in hf["mse"] + hf["val_mse"])
    # An independent reference: numpy on predict_proba (one evaluate batch, so one summation).
    onehot = np.eye(10)[y]
    err = fast.predict_proba(X, batch_size=len(y)).astype(np.float64) - onehot
    got = fast.evaluate(X, y, batch_size=len(y))
    np.testing.assert_allclose(got["mse"], np.mean(err ** 2), rtol=1e-12)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(err)), rtol=1e-12)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(onehot, fast.predict_proba(X)), rel=1e-6)


def test_mse_with_class_labels_and_a_loss_without_probabilities_names_the_metric():
    from gradstep.metrics import batch_sums
    with pytest.raises(ValueError, match=r'"mse"/"mae" with class labels .*MSE gives no class probabilities'):
        batch_sums("mse", np.zeros((4, 3)), np.zeros(4, np.int64), gs.MSE())


def test_mse_is_the_same_for_class_labels_and_their_one_hot_rows(digits):
    """The same model scored with integer labels and with one-hot float targets: the same "mse"
    and "mae" bit for bit (both over the softmax probabilities, not the logits)."""
    X, y = digits
    model = trained(X, y, 10, gs.SoftmaxCrossEntropy(), ["mse", "mae"], epochs=1)
    onehot = np.eye(10, dtype=np.float32)[y]
    by_labels, by_rows = model.evaluate(X, y), model.evaluate(X, onehot)
    assert by_labels["mse"] == by_rows["mse"] and by_labels["mae"] == by_rows["mae"]
    err = model.predict_proba(X, batch_size=len(y)) - onehot
    np.testing.assert_allclose(model.evaluate(X, onehot, batch_size=len(y))["mse"], np.mean(err ** 2), rtol=1e-12)


def test_mse_of_a_bce_on_logits_is_over_its_probabilities(rng):
    X = rng.standard_normal((200, 6))
    y = (X[:, 0] + 0.3 * rng.standard_normal(200) > 0).astype(float)
    model = gs.Sequential([gs.Dense(6, 1)], dtype="float64", seed=0)
    model.compile(gs.BinaryCrossEntropy(from_logits=True), gs.SGD(0.1), metrics=["mse", "mae"])
    model.fit(X, y, epochs=2, batch_size=50, verbose=0)
    p = 1.0 / (1.0 + np.exp(-model.predict(X, batch_size=200)[:, 0]))  # an independent sigmoid
    got = model.evaluate(X, y, batch_size=200)
    np.testing.assert_allclose(got["mse"], np.mean((p - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(p - y)), rtol=1e-12)
