"""What a model does with raw data and class values (gradstep/preprocessing.py and Sequential):
`classes_` maps labels in and out, `predict_proba`, and a `Standardize` step that fit, evaluate and
predict all apply; both saved in the model file."""
from __future__ import annotations

import os

import gradstep as gs
import numpy as np
import pytest


def _classifier(n_in=3, n_out=3, seed=0, dtype="float64"):
    m = gs.Sequential([gs.Dense(n_in, 8), gs.Tanh(), gs.Dense(8, n_out)], dtype=dtype, seed=seed)
    return m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2), metrics=["accuracy"])


def _blobs(rng, n=120):
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 3)) + 3.0 * np.eye(3)[y]
    return X, y


def test_string_labels_set_classes_and_come_back(rng, tmp_path):
    X, y = _blobs(rng)
    names = np.array(["cat", "dog", "emu"])[y]
    model = _classifier()
    model.fit(X, names, epochs=30, batch_size=16, verbose=0)
    assert model.classes_.tolist() == ["cat", "dog", "emu"]
    pred = model.predict_classes(X)
    assert pred.dtype.kind == "U" and np.mean(pred == names) > 0.9
    assert model.evaluate(X, names)["accuracy"] == pytest.approx(np.mean(pred == names))
    model.save(tmp_path / "m.safetensors")
    same = gs.load(tmp_path / "m.safetensors")
    assert same.classes_.tolist() == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(same.predict_classes(X), pred)
    with pytest.raises(ValueError, match=r"not among the model's classes_.*'fox'"):
        same.evaluate(X[:2], ["cat", "fox"])


def test_numeric_class_values_round_trip(rng, tmp_path):
    """Labels 1..3: the model answers 1..3, not the output indices 0..2 (issue 9, item 2)."""
    X, y = _blobs(rng)
    model = _classifier()
    model.classes_ = np.array([1, 2, 3])
    model.fit(X, y + 1, epochs=30, batch_size=16, verbose=0)
    pred = model.predict_classes(X)
    assert set(pred.tolist()) <= {1, 2, 3} and np.mean(pred == y + 1) > 0.9
    assert model.evaluate(X, y + 1)["accuracy"] > 0.9
    model.save(tmp_path / "m.safetensors")
    same = gs.load(tmp_path / "m.safetensors")
    assert same.classes_.dtype.kind == "i" and same.classes_.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(same.predict_classes(X), pred)
    plain = _classifier()  # without classes_, labels are output indices as before
    with pytest.raises(ValueError):
        plain.fit(X, y + 1, epochs=1, verbose=0)


def test_predict_proba(rng):
    X, y = _blobs(rng)
    model = _classifier()
    model.fit(X, y, epochs=5, verbose=0)
    p = model.predict_proba(X)
    logits = model.predict(X)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    np.testing.assert_array_equal(np.argmax(p, 1), model.predict_classes(X))
    binary = gs.Sequential([gs.Dense(3, 1)], dtype="float64", seed=0).compile(gs.BinaryCrossEntropy(from_logits=True))
    z = binary.predict(X)[:, 0]
    pb = binary.predict_proba(X)
    np.testing.assert_allclose(pb[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(pb.sum(1), 1.0)
    reg = gs.Sequential([gs.Dense(3, 1)], seed=0).compile(gs.MSE())
    with pytest.raises(ValueError, match="not a classification loss"):
        reg.predict_proba(X)


def test_standardize_matches_sklearn(rng):
    from sklearn.preprocessing import StandardScaler
    X = rng.normal(3.0, 5.0, size=(50, 4))
    X[:, 2] = 7.0  # a constant column gets scale 1
    s = gs.Standardize.fit(X)
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(s.mean, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(s.scale, ref.scale_, rtol=1e-12)
    np.testing.assert_allclose(s.transform(X), ref.transform(X), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="scale"):
        gs.Standardize([0.0], [0.0])


def test_preprocessing_applies_in_fit_evaluate_and_predict_alike(rng, tmp_path):
    """A model with a Standardize step on raw data == the same network on standardized data, bit for bit."""
    X, y = _blobs(rng)
    X = X * 100.0 + 50.0
    step = gs.Standardize.fit(X)
    with_step = _classifier(dtype="float32")
    with_step.preprocessing = step
    plain = _classifier(dtype="float32")
    Xs = step.transform(X)
    h1 = with_step.fit(X, y, epochs=3, batch_size=16, validation_data=(X[:20], y[:20]), verbose=0, seed=1)
    h2 = plain.fit(Xs, y, epochs=3, batch_size=16, validation_data=(Xs[:20], y[:20]), verbose=0, seed=1)
    assert h1.history == h2.history
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(with_step.state_dict()[k], v)
    np.testing.assert_array_equal(with_step.predict(X), plain.predict(Xs))
    assert with_step.evaluate(X, y) == plain.evaluate(Xs, y)
    np.testing.assert_array_equal(with_step.predict_proba(X), plain.predict_proba(Xs))
    # the layer-level forward sees the network's inputs, not raw data
    np.testing.assert_array_equal(with_step.forward(Xs.astype(np.float32)), plain.forward(Xs.astype(np.float32)))
    with_step.save(tmp_path / "m.safetensors")
    loaded = gs.load(tmp_path / "m.safetensors")
    assert loaded.preprocessing == step
    np.testing.assert_array_equal(loaded.predict(X), with_step.predict(X))


def test_feature_names_and_metadata_round_trip(tmp_path):
    model = _classifier()
    model.feature_names_in_ = ["a", "b", "c"]
    model.metadata = {"source": "test", "n": 3}
    model.save(tmp_path / "m.safetensors")
    same = gs.load(tmp_path / "m.safetensors")
    assert same.feature_names_in_ == ["a", "b", "c"] and same.metadata == {"source": "test", "n": 3}
    model.feature_names_in_ = ["a"]
    with pytest.raises(ValueError, match="feature_names_in_"):
        model.save(tmp_path / "bad.safetensors")


def test_model_files_get_ordinary_permissions(tmp_path):
    """Not mkstemp's 0600: what open(path, "w") gives (0666 minus the umask), and an existing file keeps its mode."""
    model = _classifier()
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "a.safetensors")
        assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        model.save(tmp_path / "b.safetensors")
        assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "a.safetensors", 0o664)
        model.save(tmp_path / "a.safetensors")
        assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_ctrl_c_in_fit_stops_after_the_batch(rng):
    """SIGINT during fit: the batch in progress finishes, fit raises KeyboardInterrupt, the epoch is
    not counted, and Python's own Ctrl-C handler is back afterwards."""
    import signal

    X, y = _blobs(rng)

    class CtrlCAfterTwoBatches:
        def on_batch_end(self, batch, logs):
            if batch == 1:
                signal.raise_signal(signal.SIGINT)

    model = _classifier()
    model.fit(X, y, epochs=1, batch_size=16, verbose=0, seed=3)
    with pytest.raises(KeyboardInterrupt, match="epoch 2 after batch 2 of 8"):
        model.fit(X, y, epochs=5, batch_size=16, verbose=0, seed=3, callbacks=[CtrlCAfterTwoBatches()])
    assert model.interrupted_at == (1, 2, 8) and model.epochs_done == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # exactly two batches of the second epoch were trained: the same two steps by hand agree
    ref = _classifier()
    ref.fit(X, y, epochs=1, batch_size=16, verbose=0, seed=3)
    order = np.random.default_rng([3, 1]).permutation(len(X))
    for b in range(2):
        idx = order[b * 16:(b + 1) * 16]
        ref.train_step(X[idx], y[idx])
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


def test_dataframes_are_read_by_column_name(rng):
    import pandas as pd

    X, y = _blobs(rng)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = _classifier()
    model.feature_names_in_ = ["a", "b", "c"]
    model.fit(frame, y, epochs=2, verbose=0)
    expected = model.predict(X)
    shuffled = frame[["c", "a", "b"]].assign(label=y)  # reordered, with an extra column
    np.testing.assert_array_equal(model.predict(shuffled), expected)
    assert model.evaluate(shuffled, y) == model.evaluate(X, y)
    with pytest.raises(ValueError, match=r"lacks the feature column\(s\) \['b'\]"):
        model.predict(frame[["a", "c"]])
