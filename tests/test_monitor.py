"""GradientMonitor: what it records (checked against the model's own state), that it never changes
training, the engine and layer-by-layer paths, and its flags."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradstep as gs
from gradstep import diagnostics as D


@pytest.fixture(scope="module")
def data():
    X, y = gs.datasets.load_digits()
    X = gs.datasets.standardize(X[:400])
    return np.ascontiguousarray(X, np.float32), y[:400]


def build(seed=0, act=gs.ReLU, use_engine=True, lr=1e-3, init="he"):
    model = gs.Sequential([gs.Dense(64, 32, init=init), act(), gs.Dense(32, 16, init=init), act(),
                           gs.Dense(16, 10, init="xavier")], seed=seed)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr), metrics=["accuracy"])
    model.use_engine = use_engine
    return model


class Spy(gs.callbacks.Callback):
    """Keeps the first batch loss and copies of the weights after each of the last two steps."""

    def __init__(self):
        self.first_loss = None
        self.weights = []

    def on_batch_end(self, batch, logs=None):
        if self.first_loss is None:
            self.first_loss = logs["loss"]
        self.weights = (self.weights + [self.model.arena.params.copy()])[-2:]


def test_monitor_does_not_change_training(data):
    X, y = data
    for use_engine in (True, False):
        a, b = build(use_engine=use_engine), build(use_engine=use_engine)
        ha = a.fit(X, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0)
        hb = b.fit(X, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0,
                   callbacks=[D.GradientMonitor(batches=3)])
        assert ha.history == hb.history
        np.testing.assert_array_equal(a.arena.params, b.arena.params)


@pytest.mark.parametrize("use_engine", [True, False])
def test_records_match_the_models_state(data, use_engine):
    X, y = data
    model = build(use_engine=use_engine)
    monitor, spy = D.GradientMonitor(), Spy()
    history = model.fit(X, y, epochs=3, batch_size=32, verbose=0, callbacks=[monitor, spy])
    assert monitor.epochs == [0, 1, 2] and len(monitor.records) == 3
    rec = monitor.records[-1]
    assert rec["loss"] == history.history["loss"][-1] and rec["lr"] == 1e-3
    assert sorted(rec["layers"]) == ["0.Dense", "1.ReLU", "2.Dense", "3.ReLU", "4.Dense"]
    # The last batch was measured: its gradients are still in the arena.
    for i in (0, 2, 4):
        layer = model.layers[i]
        st = rec["layers"][f"{i}.Dense"]
        assert st["grad_norm"] == pytest.approx(np.linalg.norm(layer.grads["weight"].astype(np.float64)), rel=1e-6)
        assert st["weight_norm"] == pytest.approx(np.linalg.norm(layer.params["weight"].astype(np.float64)), rel=1e-6)
        off, shape = model.arena.slots[f"{i}.weight"]
        n = int(np.prod(shape))
        before, after = spy.weights[0][off:off + n], spy.weights[1][off:off + n]
        want = np.linalg.norm((after - before).astype(np.float64)) / np.linalg.norm(after.astype(np.float64))
        assert st["update_ratio"] == pytest.approx(want, rel=1e-5)
    assert rec["grad_norm"] == pytest.approx(np.linalg.norm(model.arena.grads.astype(np.float64)), rel=1e-6)
    # Activation statistics of the last step's forward: the last batch (fit's shuffling of epoch 2)
    # through the weights as they were before that step.
    order = np.random.default_rng([0, 2]).permutation(len(X))
    last = X[order[-(len(X) % 32 or 32):]]
    ref = build()
    ref.arena.params[...] = spy.weights[0]
    want = gs._core.activation_stats(ref.layers[1].forward(ref.layers[0].forward(last)))
    st = rec["layers"]["1.ReLU"]
    assert st["mean"] == pytest.approx(want["mean"], rel=1e-12) and st["std"] == pytest.approx(want["std"], rel=1e-9)
    assert st["dead"] == want["dead_units"]
    assert "saturated" not in st and "grad_norm" not in st
    assert monitor.initial_loss == spy.first_loss
    assert monitor.expected_initial_loss == pytest.approx(math.log(10))
    assert monitor.initial_record["batch"] == 0 and "0.Dense" in monitor.initial_record["layers"]
    assert monitor.seconds > 0


def test_engine_and_layer_paths_record_the_same(data):
    X, y = data
    recs = []
    for use_engine in (True, False):
        model = build(act=gs.Tanh, use_engine=use_engine, init="xavier")
        monitor = D.GradientMonitor(batches=2)
        model.fit(X, y, epochs=2, batch_size=50, verbose=0, callbacks=[monitor])
        recs.append(monitor.records)
    for ra, rb in zip(*recs):
        assert ra["layers"].keys() == rb["layers"].keys()
        for name in ra["layers"]:
            for k, v in ra["layers"][name].items():
                if isinstance(v, float):
                    assert rb["layers"][name][k] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, k)
                else:
                    assert rb["layers"][name][k] == v
        assert "saturated" in ra["layers"]["1.Tanh"]


def test_every_batches_and_series(data):
    X, y = data
    model = build()
    monitor = D.GradientMonitor(every=2, batches=4)
    model.fit(X, y, epochs=5, batch_size=100, verbose=0, callbacks=[monitor])
    assert monitor.epochs == [0, 2, 4]
    g = monitor.series("0.Dense", "grad_norm")
    assert len(g) == 3 and all(v > 0 for v in g)
    assert monitor.series(0, "grad_norm") == g
    assert all(math.isnan(v) for v in monitor.series("1.ReLU", "grad_norm"))
    assert monitor.totals("grad_norm") == [r["grad_norm"] for r in monitor.records]
    assert len(monitor.totals("loss")) == 3
    # a second fit continues the records (epochs are cumulative) and keeps the initial loss
    first = monitor.initial_loss
    model.fit(X, y, epochs=2, batch_size=100, verbose=0, callbacks=[monitor])
    assert monitor.epochs == [0, 2, 4, 5] and monitor.initial_loss == first
    assert "records=4" in repr(monitor)


def test_one_batch_epochs_and_tiny_data(data):
    X, y = data
    model = build()
    monitor = D.GradientMonitor(batches=3)
    model.fit(X[:20], y[:20], epochs=2, batch_size=32, verbose=0, callbacks=[monitor])
    assert len(monitor.records) == 2
    assert "update_ratio" in monitor.records[1]["layers"]["0.Dense"]


@pytest.mark.parametrize("use_engine", [True, False])
def test_maxout_prelu_models_on_both_paths(data, use_engine):
    # Maxout and PReLU once needed the layer-by-layer path; now the fused step runs them too, and
    # both paths record the same statistics.
    X, y = data
    records = []
    for engine in (use_engine, False):
        model = gs.Sequential([gs.BatchNorm(64), gs.Dense(64, 24), gs.PReLU(24), gs.Dense(24, 24), gs.Sigmoid(),
                               gs.Maxout(24, 10, pieces=2)], seed=0)
        model.use_engine = engine
        model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(0.05, momentum=0.9))
        monitor = D.GradientMonitor()
        model.fit(X, y, epochs=2, batch_size=40, verbose=0, callbacks=[monitor])
        assert bool(model._engine) or not engine
        records.append(monitor.records[-1]["layers"])
    rec = records[0]
    assert {"0.BatchNorm", "1.Dense", "2.PReLU", "3.Dense", "5.Maxout"} <= set(rec)
    assert "grad_norm" in rec["0.BatchNorm"] and "grad_norm" in rec["2.PReLU"]
    assert "mean" in rec["2.PReLU"] and "saturated" in rec["4.Sigmoid"]
    assert records[0] == records[1]


def test_flags_vanishing_and_exploding(data):
    X, y = data
    deep = [gs.Dense(64, 32, init="normal")]
    for _ in range(5):
        deep += [gs.Sigmoid(), gs.Dense(32, 32, init="normal")]
    model = gs.Sequential(deep + [gs.Sigmoid(), gs.Dense(32, 10)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(0.1))
    monitor = D.GradientMonitor()
    model.fit(X, y, epochs=2, verbose=0, callbacks=[monitor])
    assert [f.kind for f in monitor.flags] == ["vanishing_gradients"]
    assert "vanishing_gradients" in monitor.records[-1]["flags"]
    assert monitor.flags[0].evidence["ratio"] < 1e-3

    big = lambda shape, rng: rng.standard_normal(shape)  # noqa: E731  N(0, 1) whatever the fan-in
    model = gs.Sequential([gs.Dense(64, 128, init=big), gs.ReLU(), gs.Dense(128, 128, init=big), gs.ReLU(),
                           gs.Dense(128, 128, init=big), gs.ReLU(), gs.Dense(128, 10, init=big)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(0.01))
    monitor = D.GradientMonitor()
    model.fit(X, y, epochs=1, verbose=0, callbacks=[monitor])
    assert "exploding_gradients" in [f.kind for f in monitor.flags]
    assert "exploding_gradients" in monitor.initial_record["flags"]

    model = build()
    monitor = D.GradientMonitor()
    model.fit(X, y, epochs=2, verbose=0, callbacks=[monitor])
    assert monitor.flags == [] and all(r["flags"] == [] for r in monitor.records)


def test_monitor_errors(data):
    with pytest.raises(ValueError, match="every"):
        D.GradientMonitor(every=0)
    with pytest.raises(TypeError, match="batches"):
        D.GradientMonitor(batches=True)
    with pytest.raises(RuntimeError, match="set_model"):
        D.GradientMonitor().on_train_begin({})
    X, y = data
    monitor = D.GradientMonitor()
    build().fit(X[:64], y[:64], epochs=1, verbose=0, callbacks=[monitor])
    with pytest.raises(ValueError, match="unknown layer"):
        monitor.series("7.Dense", "grad_norm")
    with pytest.raises(ValueError, match="index"):
        monitor.series(9, "grad_norm")
    with pytest.raises(TypeError, match="layer"):
        monitor.series(1.5, "grad_norm")


def _synthetic(norms_per_epoch, ratio=1e-3):
    """A monitor holding hand-made records: per epoch, the weight-gradient norms of two Dense layers."""
    monitor = D.GradientMonitor()
    for e, (g0, g2) in enumerate(norms_per_epoch):
        layers = {"0.Dense": {"grad_norm": g0, "update_ratio": ratio, "index": 0, "type": "Dense", "hidden": True},
                  "2.Dense": {"grad_norm": g2, "update_ratio": ratio, "index": 2, "type": "Dense", "hidden": False}}
        monitor._records.append({"epoch": e, "loss": 1.0 / (e + 1), "lr": 0.1, "grad_norm": math.hypot(g0, g2),
                                 "update_ratio": ratio, "layers": layers, "flags": []})
    return monitor


def test_gradient_rules_on_synthetic_records():
    hist = {"loss": [1.0, 0.5, 0.33], "lr": [0.1] * 3}
    kinds = lambda m: [f.kind for f in D.diagnose(hist, m)]  # noqa: E731
    assert kinds(_synthetic([(0.5, 1.0), (0.4, 0.8), (0.3, 0.6)])) == []
    grows = _synthetic([(0.05, 0.1), (0.5, 1.0), (50.0, 90.0)])  # below EXPLODING_NORM, 900x growth
    (f,) = D.diagnose(hist, grows)
    assert f.kind == "exploding_gradients" and "grew" in f.message and f.evidence["growth"] > 100
    assert "e.g. to 0.01" in f.message
    assert kinds(_synthetic([(0.5, 1.0), (2e3, 1.0), (1.0, 1.0)])) == ["exploding_gradients"]
    assert kinds(_synthetic([(0.5, 1.0), (float("inf"), 1.0), (float("nan"), 1.0)])) == ["nan", "exploding_gradients"]
    tiny = _synthetic([(1e-9, 1e-8), (1e-9, 2e-8), (1e-9, 1e-8)])
    (f,) = D.diagnose(hist, tiny)
    assert f.kind == "vanishing_gradients"
    (f,) = D.diagnose(hist, _synthetic([(1e-6, 1.0)] * 3))
    assert f.kind == "vanishing_gradients" and "1e-06" in f.message
    # vanishing early that recovers by the last epoch is no finding; exactly zero is blocked, not vanishing
    assert kinds(_synthetic([(1e-6, 1.0), (1e-2, 1.0), (0.1, 1.0)])) == []
    assert kinds(_synthetic([(0.0, 1.0)] * 3)) == []
