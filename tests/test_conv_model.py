"""Conv nets through the whole library: model files, gradcheck, the gradient monitor, predict."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import diagnostics as D


def cnn(seed=0, dtype="float32"):
    return gs.Sequential([gs.Conv2D(1, 4, 3, padding=1), gs.BatchNorm(4), gs.ReLU(), gs.MaxPool2D(2),
                          gs.Conv2D(4, 6, 3, padding=1, l2=1e-3), gs.ReLU(), gs.AvgPool2D(2), gs.Flatten(),
                          gs.Dropout(0.1), gs.Dense(3)], input_shape=(1, 8, 8), dtype=dtype, seed=seed)


@pytest.fixture
def images(rng):
    X = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (X[:, 0, 4:].mean(axis=(1, 2)) > 0)
    return X, y


def test_conv_model_file_round_trip(tmp_path, images):
    X, y = images
    model = cnn()
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2), metrics=["accuracy"])
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "cnn.safetensors")
    back = gs.load(tmp_path / "cnn.safetensors")
    assert back.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert back.evaluate(X, y) == model.evaluate(X, y)
    assert back.optimizer.state_dict()["step"] == model.optimizer.state_dict()["step"] == 8


def test_gradcheck_on_a_conv_model(images):
    X, y = images
    model = cnn(dtype="float64")
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    report = D.gradcheck(model, X[:4].astype(np.float64), y[:4])
    assert report.ok, report
    assert {"0.weight", "4.weight", "9.weight", "input"} <= set(report.errors)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        D.gradcheck(model, np.zeros((4, 1, 8, 9)), y[:4])


def test_gradient_monitor_watches_conv_layers(images):
    X, y = images
    for engine in (True, False):
        model = cnn()
        model.use_engine = engine
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
        monitor = D.GradientMonitor()
        model.fit(X, y, epochs=2, batch_size=20, verbose=0, callbacks=[monitor])
        rec = monitor.records[-1]["layers"]
        assert rec["0.Conv2D"]["grad_norm"] > 0 and rec["4.Conv2D"]["grad_norm"] > 0
        assert 0 <= rec["2.ReLU"]["dead"] <= 1


def test_cli_train_conv_then_predict(tmp_path):
    import subprocess
    import sys

    from conftest import subprocess_env

    def run(*args):
        return subprocess.run([sys.executable, "-m", "gradstep", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300, env=subprocess_env())

    r = run("train", "--conv", "8,16", "--layers", "32", "--epochs", "6", "--lr", "0.003", "--quiet",
            "--plot", "", "--out", "cnn.safetensors")
    assert r.returncode == 0, r.stderr
    assert "images (1, 8, 8)" in r.stdout and "(N, 16, 2, 2)" in r.stdout
    assert float(r.stdout.split("test accuracy: ")[1].split()[0]) > 0.9
    model = gs.load(tmp_path / "cnn.safetensors")
    assert model.input_shape == (1, 8, 8) and type(model.layers[0]).__name__ == "Conv2D"
    assert model.preprocessing.mean.shape == (1, 8, 8)
    X, y = gs.datasets.load_digits(images=True)
    np.savez(tmp_path / "flat.npz", X=X[:300].reshape(300, -1), y=y[:300])
    r = run("predict", "--model", "cnn.safetensors", "--data", "flat.npz", "--out", "p.npy")
    assert r.returncode == 0, r.stderr
    pred = np.load(tmp_path / "p.npy")
    assert pred.shape == (300,) and np.mean(pred == y[:300]) > 0.9
    np.savez(tmp_path / "bad.npz", X=X[:4, :, :7])
    r = run("predict", "--model", "cnn.safetensors", "--data", "bad.npz")
    assert r.returncode == 2 and "per-sample shape (1, 8, 8)" in r.stderr and "Traceback" not in r.stderr


def test_conv_penalty_before_and_after_a_forward(rng):
    layer = gs.Conv2D(2, 3, 3, l2=0.5, dtype="float64", seed=0)
    before = layer.penalty()
    w = layer.params["weight"]
    assert before == pytest.approx(0.25 * float(np.sum(w * w)), rel=1e-12)
    layer.forward(rng.standard_normal((2, 2, 5, 5)))
    assert layer.penalty() == before  # the op's own term: the same bits
