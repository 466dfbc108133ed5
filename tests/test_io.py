from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import gradstep as gs


@pytest.fixture(scope="module")
def data():
    from sklearn.preprocessing import StandardScaler
    X, y = gs.datasets.load_digits()
    return StandardScaler().fit_transform(X).astype(np.float32)[:600], y[:600]


def build(seed=0, opt=None):
    model = gs.Sequential([gs.Dense(64, 32), gs.Tanh(), gs.Dense(32, 10)], seed=seed)
    model.compile(gs.SoftmaxCrossEntropy(), opt or gs.Adam(lr=3e-3), metrics=["accuracy"])
    return model


def test_save_load_gives_identical_predictions(tmp_path, data):
    X, y = data
    model = build()
    model.fit(X, y, epochs=2, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = gs.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert repr(loaded) == repr(model)
    assert loaded.metrics == ["accuracy"] and isinstance(loaded.optimizer, gs.Adam)
    assert loaded.optimizer.lr == model.optimizer.lr


@pytest.mark.parametrize("opt", [lambda: gs.Adam(lr=3e-3), lambda: gs.SGD(lr=0.05, momentum=0.9),
                                 lambda: gs.RMSprop(lr=1e-3, momentum=0.5), lambda: gs.AdamW(lr=1e-3)])
def test_resumed_training_equals_the_uninterrupted_run(tmp_path, data, opt):
    X, y = data
    full = build(seed=4, opt=opt())
    full.fit(X, y, epochs=4, batch_size=50, verbose=0, seed=9)
    first = build(seed=4, opt=opt())
    first.fit(X, y, epochs=2, batch_size=50, verbose=0, seed=9)
    first.save(tmp_path / "half.safetensors")
    resumed = gs.load(tmp_path / "half.safetensors")
    resumed.fit(X, y, epochs=2, batch_size=50, verbose=0, seed=9)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_dropout_and_batchnorm_models_round_trip(tmp_path, data):
    X, y = data
    model = gs.Sequential([gs.Dense(64, 32), gs.BatchNorm(32), gs.ReLU(), gs.Dropout(0.2),
                           gs.Dense(32, 10)], dtype="float64", seed=1)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1, momentum=0.9))
    model.fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "bn.safetensors")
    loaded = gs.load(tmp_path / "bn.safetensors")
    np.testing.assert_array_equal(loaded.layers[1].buffers["running_var"], model.layers[1].buffers["running_var"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_uncompiled_model_round_trips(tmp_path):
    model = gs.Sequential([gs.Dense(3, 2)], seed=0)
    model.save(tmp_path / "u.safetensors")
    loaded = gs.load(tmp_path / "u.safetensors")
    assert loaded.loss is None
    np.testing.assert_array_equal(loaded.layers[0].params["weight"], model.layers[0].params["weight"])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        gs.load(tmp_path / "nope.safetensors")


def _saved(tmp_path):
    model = build()
    rng = np.random.default_rng(0)
    model.train_step(rng.standard_normal((8, 64)), rng.integers(0, 10, 8))  # optimizer state too
    path = tmp_path / "m.safetensors"
    model.save(path)
    return path, path.read_bytes()


def _rewrite(path, raw, edit):
    """Decode the safetensors header, let `edit` change it (and the data), write it back."""
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    header, data = edit(header, data)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def test_truncated_file(tmp_path):
    path, raw = _saved(tmp_path)
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        gs.load(path)


def test_foreign_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3 + b"not a model at all" * 10)
    with pytest.raises(ValueError, match="safetensors"):
        gs.load(junk)
    from safetensors.numpy import save_file
    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(ValueError, match="not a gradstep model file"):
        gs.load(other)


def test_tampered_metadata(tmp_path):
    path, raw = _saved(tmp_path)

    def bad_json(h, d):
        h["__metadata__"]["gradstep"] = "{not json"
        return h, d
    _rewrite(path, raw, bad_json)
    with pytest.raises(ValueError, match="corrupt gradstep metadata"):
        gs.load(path)

    def unknown_layer(h, d):
        meta = json.loads(h["__metadata__"]["gradstep"])
        meta["model"]["layers"][1]["class"] = "Evil"
        h["__metadata__"]["gradstep"] = json.dumps(meta)
        return h, d
    _rewrite(path, raw, unknown_layer)
    with pytest.raises(ValueError, match="unknown class 'Evil'"):
        gs.load(path)

    def wider_layer(h, d):
        meta = json.loads(h["__metadata__"]["gradstep"])
        meta["model"]["layers"][0]["config"]["out_features"] = 33
        meta["model"]["layers"][2]["config"]["in_features"] = 33
        h["__metadata__"]["gradstep"] = json.dumps(meta)
        return h, d
    _rewrite(path, raw, wider_layer)
    with pytest.raises(ValueError, match="0.weight.*shape"):
        gs.load(path)


def _resave(path, edit):
    """Rewrite a model file through safetensors itself, letting `edit` change its tensors."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(edit(tensors), str(path), metadata=meta)


def test_missing_and_extra_tensors(tmp_path):
    path, raw = _saved(tmp_path)
    _resave(path, lambda t: {k: v for k, v in t.items() if k != "model.2.bias"})
    with pytest.raises(ValueError, match=r"missing tensors \['2.bias'\]"):
        gs.load(path)
    path.write_bytes(raw)
    _resave(path, lambda t: {**t, "model.7.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected tensors \['7.bias'\]"):
        gs.load(path)
    path.write_bytes(raw)
    _resave(path, lambda t: {**t, "model.0.weight": np.zeros((64, 31), np.float32)})
    with pytest.raises(ValueError, match=r"0.weight.*shape \(64, 31\)"):
        gs.load(path)
    path.write_bytes(raw)
    _resave(path, lambda t: {**t, "model.0.bias": np.full(32, np.nan, np.float32)})
    with pytest.raises(ValueError, match="NaN"):
        gs.load(path)
    path.write_bytes(raw)
    _resave(path, lambda t: {**t, "optim.state.0.weight.exp_avg": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="optimizer state.*shape"):
        gs.load(path)
    path.write_bytes(raw)
    _resave(path, lambda t: {**t, "optim.state.9.weight.exp_avg": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="unreferenced optimizer tensors"):
        gs.load(path)
    path.write_bytes(raw)
    gs.load(path)  # the untouched file still loads


def test_wrong_dtype_tensor(tmp_path):
    path, raw = _saved(tmp_path)

    def as_int(h, d):
        h["model.2.bias"]["dtype"] = "I32"
        return h, d
    _rewrite(path, raw, as_int)
    with pytest.raises(ValueError, match="2.bias.*dtype"):
        gs.load(path)


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    path, raw = _saved(tmp_path)
    import safetensors.numpy

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        build(seed=9).save(path)
    assert path.read_bytes() == raw
    assert list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    gs.load(path)


def test_pickle_round_trip_continues_training_exactly(data):
    import pickle
    X, y = data
    model = build(seed=2)
    model.fit(X, y, epochs=1, verbose=0, seed=3)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict(X), model.predict(X))
    model.fit(X, y, epochs=1, verbose=0, seed=3)
    copy.fit(X, y, epochs=1, verbose=0, seed=3)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(copy.state_dict()[k], v)
