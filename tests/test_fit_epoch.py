"""fit's whole-epoch fast path (gradstep/_epoch.py, `_core.Network.train_batches`): the same bits
as fit's per-batch loop, which `model._per_batch_fit = True` forces; the fallbacks; Ctrl-C between
chunks; and the C++ entry's checks of everything it is given."""
from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import gradstep as gs
from gradstep import _epoch
from gradstep.callbacks import Callback


def _blobs(rng, n=203, f=12, k=4):
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = (np.argmax(X[:, :k], axis=1) + (X[:, k] > 1.2)) % k
    return X, y.astype(np.int64)


def _mlp(f=12, k=4, dtype="float32", extra=(), last=()):
    return gs.Sequential([gs.Dense(f, 24), gs.ReLU(), *extra, gs.Dense(24, k), *last], dtype=dtype, seed=0)


def _same_array(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _same_state(x, y):
    """Optimizer state dicts (nested dicts of numbers and arrays) equal bit for bit."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same_state(x[k], y[k]) for k in x)
    if isinstance(x, np.ndarray):
        return _same_array(x, y)
    return x == y or (x != x and y != y)


def _assert_same_training(fast, slow, h_fast, h_slow):
    assert fast._fit_path == "epoch", fast._fit_path
    assert slow._fit_path.startswith("per-batch"), slow._fit_path
    for key, value in slow.state_dict().items():  # parameters and buffers (BatchNorm statistics)
        assert _same_array(fast.state_dict()[key], value), key
    assert _same_state(fast.optimizer.state_dict(), slow.optimizer.state_dict())
    assert fast.optimizer.iterations == slow.optimizer.iterations
    assert h_fast.epoch == h_slow.epoch and h_fast.history.keys() == h_slow.history.keys()
    for key in h_slow.history:
        assert _same_array(h_fast.history[key], h_slow.history[key]), key
    assert fast.epochs_done == slow.epochs_done


def _twins(build, X, y, **fit):
    """The same model trained by the fast path and by the per-batch loop."""
    fast, slow = build(), build()
    slow._per_batch_fit = True
    h_fast = fast.fit(X, y, verbose=0, **fit)
    h_slow = slow.fit(X, y, verbose=0, **fit)
    _assert_same_training(fast, slow, h_fast, h_slow)
    return fast, slow


# ---- same bits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", ["default", "one", "three"])
def test_labels_dropout_clipping_and_every_metric_give_the_per_batch_bits(rng, monkeypatch, chunk):
    # chunks of one batch, of three, and the default sizing (one, then ~0.1 s) give the same bits
    if chunk == "one":
        monkeypatch.setattr(_epoch, "CHUNK_SECONDS", 0.0)
    elif chunk == "three":
        monkeypatch.setattr(_epoch, "FIRST_CHUNK", 3)
        monkeypatch.setattr(_epoch, "CHUNK_SECONDS", 1e-12)
    X, y = _blobs(rng)

    def build():
        m = _mlp(extra=(gs.Dropout(0.3),))
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=3e-3, clipnorm=0.5),
                  metrics=["accuracy", "precision", "recall", "f1", "top_k_accuracy", "auc"])
        return m
    _twins(build, X, y, epochs=3, batch_size=16, validation_split=0.2)


def test_batchnorm_sgd_momentum_sample_weights_and_class_weights(rng):
    X, y = _blobs(rng, n=150)
    w = rng.uniform(0.0, 2.0, len(X))

    def build():
        m = _mlp(extra=(gs.BatchNorm(24),))
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.05, momentum=0.9, nesterov=True),
                  metrics=["accuracy"])
        return m
    _twins(build, X, y, epochs=2, batch_size=32, sample_weight=w, class_weight={0: 2.0, 3: 0.5})


def test_regression_float64_without_shuffling(rng):
    X, _ = _blobs(rng, n=97)
    X = X.astype(np.float64)
    t = np.stack([X[:, 0] * 2 - X[:, 1], np.sin(X[:, 2])], axis=1)

    def build():
        m = _mlp(k=2, dtype="float64")
        m.compile(gs.MSE(), gs.RMSprop(lr=1e-3, momentum=0.5, clipvalue=0.1), metrics=["mse", "mae"])
        return m
    _twins(build, X, t, epochs=2, batch_size=10, shuffle=False, validation_data=(X[:20], t[:20]))


@pytest.mark.parametrize("from_logits", [True, False])
def test_multi_output_binary_cross_entropy_accuracy(rng, from_logits):
    X, _ = _blobs(rng)
    t = (X[:, :3] > 0).astype(np.float32)

    def build():
        m = _mlp(k=3, last=() if from_logits else (gs.Sigmoid(),))
        m.compile(gs.BinaryCrossEntropy(from_logits=from_logits), gs.AdamW(lr=1e-2),
                  metrics=["accuracy", "f1"])
        return m
    _twins(build, X, t, epochs=2, batch_size=25)


def test_soft_targets_single_output_mse_accuracy_and_nll(rng):
    X, y = _blobs(rng, n=120)
    soft = np.full((len(X), 4), 0.1, np.float32)
    soft[np.arange(len(X)), y] = 0.7

    def soft_model():
        m = _mlp()
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=["accuracy"])
        return m
    _twins(soft_model, X, soft, epochs=2, batch_size=16)

    def one_output():  # accuracy: output > 0.5 against target >= 0.5
        m = _mlp(k=1)
        m.compile(gs.MSE(), gs.SGD(lr=0.01), metrics=["accuracy", "mae"])
        return m
    _twins(one_output, X, (y % 2).astype(np.float32), epochs=2, batch_size=16)

    def nll():  # a final ReLU makes many outputs tie (argmax takes the first)
        m = _mlp(last=(gs.ReLU(),))
        m.compile(gs.NLL(), gs.Adam(), metrics=["accuracy"])
        return m
    _twins(nll, X, y, epochs=2, batch_size=16)


def test_a_loss_that_becomes_nan_gives_the_same_numbers(rng):
    X, y = _blobs(rng, n=64)

    def build():
        m = _mlp()
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=1e8), metrics=["accuracy", "f1"])
        return m
    fast, _ = _twins(build, X, y, epochs=2, batch_size=8)
    assert np.isnan(fast.history.history["loss"][-1])


def test_terminate_on_nan_stops_after_the_same_batch(rng, monkeypatch):
    monkeypatch.setattr(_epoch, "FIRST_CHUNK", 40)  # the loss becomes NaN inside the first chunk
    X, y = _blobs(rng, n=400)

    def build():
        m = _mlp(extra=(gs.Dropout(0.2),))
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=3e3), metrics=["accuracy"])
        return m
    models, stops = [], []
    for per_batch in (False, True):
        m, stop = build(), gs.callbacks.TerminateOnNaN()
        m._per_batch_fit = per_batch
        h = m.fit(X, y, epochs=3, batch_size=8, verbose=0, callbacks=[stop])
        models.append((m, h))
        stops.append(stop)
    (fast, hf), (slow, hs) = models
    _assert_same_training(fast, slow, hf, hs)
    assert stops[0].stopped_epoch == 0 and 0 < stops[0].stopped_batch < 39
    assert (stops[0].stopped_epoch, stops[0].stopped_batch, stops[0].message) == \
        (stops[1].stopped_epoch, stops[1].stopped_batch, stops[1].message)
    # the dropout generator gave back the seeds of the batches the chunk did not run
    assert fast.layers[2]._rng.bit_generator.state == slow.layers[2]._rng.bit_generator.state


def test_epoch_callbacks_resume_and_stop_training_in_on_epoch_begin(rng):
    X, y = _blobs(rng)

    class StopAtEpochBegin(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True  # the per-batch loop trains one batch, then stops

    def build():
        m = _mlp()
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=["accuracy"])
        return m
    runs = []
    for per_batch in (False, True):
        m = build()
        m._per_batch_fit = per_batch
        m.fit(X, y, epochs=1, batch_size=16, verbose=0, seed=5)
        h = m.fit(X, y, epochs=4, initial_epoch=1, batch_size=16, verbose=0, seed=5, validation_split=0.1,
                  callbacks=[gs.callbacks.LearningRateScheduler(lambda e: 1e-3 * 0.5 ** e),
                             gs.callbacks.EarlyStopping(patience=5), StopAtEpochBegin()])
        runs.append((m, h))
    _assert_same_training(runs[0][0], runs[1][0], runs[0][1], runs[1][1])
    # 13 batches of 203 rows, then 12 of the 183 left by validation_split, then one
    assert runs[0][0].epochs_done == 3 and runs[0][0].optimizer.iterations == 13 + 12 + 1


def test_progress_bar_path_gives_the_same_bits(rng, capsys):
    X, y = _blobs(rng)
    ms = []
    for per_batch in (False, True):
        m = _mlp()
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=["accuracy"])
        m._per_batch_fit = per_batch
        ms.append((m, m.fit(X, y, epochs=2, batch_size=16, verbose=1)))
    _assert_same_training(ms[0][0], ms[1][0], ms[0][1], ms[1][1])
    err = capsys.readouterr().err
    assert "Epoch 2/2" in err and "13/13" in err and "accuracy=" in err


# ---- what keeps the per-batch loop --------------------------------------------------------------

def test_fallbacks_say_why_and_train_as_before(rng):
    X, y = _blobs(rng, n=64)

    class Batches(Callback):
        def __init__(self):
            self.seen = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append(batch)

    def model(**kw):
        m = _mlp()
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(), metrics=kw.get("metrics"))
        return m

    m, cb = model(), Batches()
    m.fit(X, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb])
    assert cb.seen == [0, 1, 2, 3] and "Batches has an on_batch_end hook" in m._fit_path

    m = model()
    m.fit(X, y, epochs=1, batch_size=16, verbose=0, callbacks=[gs.diagnostics.GradientMonitor()])
    assert "GradientMonitor" in m._fit_path

    def hits(y_true, y_pred):
        return float(np.mean(np.argmax(y_pred, 1) == y_true))
    m = model(metrics=[hits])
    h = m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert "callable metric" in m._fit_path and "hits" in h.history

    m = model()
    m.use_engine = False
    m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert "layer by layer" in m._fit_path

    m = model()
    m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert m._fit_path == "epoch"


def test_ctrl_c_stops_between_chunks(rng, monkeypatch):
    """SIGINT while a chunk runs in C++: the chunk finishes, fit raises KeyboardInterrupt, and the
    model holds exactly the steps that were run (checked against the per-batch loop)."""
    monkeypatch.setattr(_epoch, "CHUNK_SECONDS", 0.002)
    X, y = _blobs(rng, n=2000, f=32)

    def build():
        m = _mlp(f=32)
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam())
        return m
    model = build()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="fit: interrupted in epoch"):
            model.fit(X, y, epochs=100000, batch_size=16, verbose=0, seed=2)
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    epoch, done, n_batches = model.interrupted_at
    assert model._fit_path == "epoch" and n_batches == 125 and 1 <= done <= n_batches
    assert model.epochs_done == epoch and model.optimizer.iterations == epoch * n_batches + done
    ref = build()
    ref._per_batch_fit = True
    if epoch:
        ref.fit(X, y, epochs=epoch, batch_size=16, verbose=0, seed=2)
    order = np.random.default_rng([2, epoch]).permutation(len(X))
    for b in range(done):
        idx = order[b * 16:(b + 1) * 16]
        ref.train_step(X[idx], y[idx])
    for k, v in ref.state_dict().items():
        assert _same_array(model.state_dict()[k], v), k


# ---- the C++ entry checks what it is given --------------------------------------------------------

def _net(rng, dropout=False, batchnorm=False, loss=None):
    m = _mlp(extra=((gs.Dropout(0.5),) if dropout else ()) + ((gs.BatchNorm(24),) if batchnorm else ()))
    m.compile(loss or gs.SoftmaxCrossEntropy(), gs.Adam())
    X, y = _blobs(rng, n=50)
    m.train_step(X[:4], y[:4] if m._labels_loss() else np.eye(4, dtype=np.float32)[y[:4]])
    engine = m._engine
    kind = engine.kinds[0] if engine.kinds[0] else engine.kinds[1]
    return m, engine._net(kind), X, y


def _call(net, X, y, **kw):
    args = dict(x=X, labels=y, target=None, sample_weight=None, order=None, batch_size=8, b0=0, b1=2,
                dropout_seeds=np.zeros((2, 0), np.uint64), hyper=[1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0], step=2)
    args.update(kw)
    return net.train_batches(**args)


@pytest.mark.parametrize("bad, error, match", [
    (dict(x="X64"), TypeError, "x must have dtype float32"),
    (dict(x="Xcols"), ValueError, r"x must have shape \(\*, 12\)"),
    (dict(x="Xstrided"), ValueError, "x must be C-contiguous"),
    (dict(x="Xempty"), ValueError, "at least one row"),
    (dict(labels="yfloat"), TypeError, "labels must have dtype int64"),
    (dict(labels="yshort"), ValueError, r"labels must have shape \(50,\)"),
    (dict(labels=None), ValueError, "labels are required"),
    (dict(target="t"), ValueError, "target must be None"),
    (dict(labels="ybad"), ValueError, r"labels must lie in \[0, 4\), got 4 at row 3"),
    (dict(labels="yneg", order="perm"), ValueError, r"labels must lie in \[0, 4\), got -1"),
    (dict(order="oneg"), ValueError, r"order must hold row indices in \[0, 50\), got -1"),
    (dict(order="obig"), ValueError, r"order must hold row indices in \[0, 50\), got 50"),
    (dict(order="o32"), TypeError, "order must have dtype int64"),
    (dict(order="oshort"), ValueError, r"order must have shape \(50,\)"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(b0=-1), ValueError, r"batch range \[b0, b1\)"),
    (dict(b0=2, b1=2), ValueError, r"batch range \[b0, b1\)"),
    (dict(b1=8, dropout_seeds="s8"), ValueError, r"0 <= b0 < b1 <= 7"),
    (dict(batch_size=2**62, b1=1, dropout_seeds="s1"), None, None),
    (dict(dropout_seeds="s_wrong"), ValueError, r"dropout_seeds must have shape \(2, 0\)"),
    (dict(dropout_seeds="s_i64"), TypeError, "dropout_seeds must have dtype uint64"),
    (dict(hyper=[1e-3]), ValueError, "expected 6 hyperparameters"),
    (dict(step=0), ValueError, "step must be >= 1"),
    (dict(sample_weight="wneg"), ValueError, "sample_weight must be finite and >= 0"),
    (dict(sample_weight="wnan"), ValueError, "sample_weight must be finite and >= 0"),
    (dict(sample_weight="w32"), TypeError, "sample_weight must have dtype float64"),
    (dict(accuracy=5), ValueError, r"accuracy must be a rule number in \[0, 4\]"),
    (dict(accuracy=2), ValueError, "needs a target"),
    (dict(accuracy=1, threshold=float("nan")), ValueError, "threshold must be finite"),
    (dict(outputs="out_short"), ValueError, r"outputs must have shape \(16, 4\)"),
    (dict(outputs="out_ro"), ValueError, "outputs must be writable"),
])
def test_train_batches_refuses_bad_input_before_any_step(rng, bad, error, match):
    m, net, X, y = _net(rng)
    values = dict(X64=X.astype(np.float64), Xcols=X[:, :5].copy(), Xstrided=np.repeat(X, 2, 1)[:, ::2],
                  Xempty=X[:0], yfloat=y.astype(np.float32), yshort=y[:10], t=np.zeros((50, 4), np.float32),
                  ybad=np.where(np.arange(50) == 3, 4, y), yneg=np.where(np.arange(50) == 49, -1, y),
                  perm=np.arange(50)[::-1].copy(), oneg=np.where(np.arange(50) == 7, -1, np.arange(50)),
                  obig=np.where(np.arange(50) == 0, 50, np.arange(50)), o32=np.arange(50, dtype=np.int32),
                  oshort=np.arange(10), s8=np.zeros((8, 0), np.uint64), s1=np.zeros((1, 0), np.uint64),
                  s_wrong=np.zeros((3, 0), np.uint64), s_i64=np.zeros((2, 0), np.int64),
                  wneg=-np.ones(50), wnan=np.full(50, np.nan), w32=np.ones(50, np.float32),
                  out_short=np.zeros((15, 4), np.float32), out_ro=np.zeros((16, 4), np.float32))
    values["out_ro"].flags.writeable = False
    kw = {k: (values[v] if isinstance(v, str) else v) for k, v in bad.items()}
    x = kw.pop("x", X)
    labels = kw.pop("labels", y)
    before = m.state_dict()
    if error is None:  # one batch of all 50 rows: fine
        assert _call(net, x, labels, **kw)[0] == 1
        return
    with pytest.raises(error, match=match):
        _call(net, x, labels, **kw)
    for k, v in before.items():
        assert _same_array(m.state_dict()[k], v), k


def test_train_batches_checks_the_seeds_batch_sizes_and_targets_of_its_network(rng):
    m, net, X, y = _net(rng, dropout=True, batchnorm=True)
    with pytest.raises(ValueError, match=r"dropout_seeds must have shape \(2, 1\)"):
        _call(net, X, y)
    with pytest.raises(ValueError, match="batch 6 has 1"):  # 49 rows of batch 8: the last has 1
        _call(net, X[:49], y[:49], b1=7, dropout_seeds=np.zeros((7, 1), np.uint64))
    assert _call(net, X, y, dropout_seeds=np.zeros((2, 1), np.uint64))[0] == 2
    _, net, X, y = _net(rng, loss=gs.MSE())
    t = np.zeros((50, 4), np.float32)
    with pytest.raises(ValueError, match="labels must be None"):
        _call(net, X, y, target=t)
    with pytest.raises(ValueError, match=r"target must have shape \(\*, 4\)"):
        _call(net, X, None, target=t[:, :3].copy())
    with pytest.raises(ValueError, match="target must have 50 rows"):
        _call(net, X, None, target=t[:20])
    with pytest.raises(ValueError, match="needs labels"):
        _call(net, X, None, target=t, accuracy=1)
    done, loss_sum, last, correct, decisions = _call(net, X, None, target=t, accuracy=4, threshold=0.5)
    assert done == 2 and decisions == 2 * 8 * 4 and 0 <= correct <= decisions
    assert np.isfinite(loss_sum) and np.isfinite(last)


def test_train_batches_counts_and_sums_as_train_step_does(rng):
    """Against train_step on hand-gathered batches: the running loss sum, the accuracy count, the
    outputs and the parameters."""
    m, net, X, y = _net(rng)
    ref = _mlp()
    ref.compile(gs.SoftmaxCrossEntropy(), gs.Adam())
    ref.load_state_dict(m.state_dict())
    ref.optimizer.load_state_dict(m.optimizer.state_dict())
    order = rng.permutation(50)
    outputs = np.zeros((50, 4), np.float32)
    done, loss_sum, last, correct, decisions = m._engine.train_batches(
        X, y, None, m._engine.kinds[0], None, order, 16, 0, 4, 0.5, (1, 0.5), outputs)
    total, hits = 0.5, 0
    for b in range(4):
        idx = order[b * 16:(b + 1) * 16]
        value = ref.train_step(X[idx], y[idx])
        total += value * len(idx)
        out = ref._train_output()
        hits += int(np.count_nonzero(np.argmax(out, 1) == y[idx]))
        assert _same_array(outputs[b * 16:b * 16 + len(idx)], out)
    assert (done, decisions, correct) == (4, 50, hits) and loss_sum == total and last == value
    for k, v in ref.state_dict().items():
        assert _same_array(m.state_dict()[k], v), k
    assert m.optimizer.iterations == ref.optimizer.iterations


# ---- evaluation through the engine's network --------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_evaluate_and_validation_through_the_engine_give_the_layer_path_bits(rng, dtype):
    X = rng.standard_normal((70, 1, 8, 8)).astype(dtype)
    y = (X[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + 2 * (X[:, 0, 4:].sum(axis=(1, 2)) > 0)

    def build():
        m = gs.Sequential([gs.Conv2D(1, 4, 3, padding=1), gs.BatchNorm(4), gs.LeakyReLU(), gs.MaxPool2D(2),
                           gs.Flatten(), gs.Dropout(0.3), gs.Maxout(64, 12, pieces=2), gs.PReLU(),
                           gs.Dense(12, 4), gs.Softmax()], dtype=dtype, seed=0)
        m.compile(gs.NLL(), gs.Adam(1e-2), metrics=["accuracy", "f1", "auc"])
        return m
    fast, slow = _twins(build, X, y, epochs=2, batch_size=16, validation_data=(X[:30], y[:30]))
    assert "val_f1" in fast.history.history
    engine = fast.evaluate(X, y, batch_size=32)
    fast.use_engine = False
    layers = fast.evaluate(X, y, batch_size=32)
    assert engine == layers and engine.keys() == {"loss", "accuracy", "f1", "auc"}
    # the evaluation network has a workspace of its own: the last training batch's outputs stay
    fast.use_engine = True
    assert fast._engine.nets["infer"] is not fast._engine.nets[fast._engine.last_code]


def test_network_infer_checks_its_input(rng):
    m, _, X, y = _net(rng)
    net = m._engine._net("infer")
    assert _same_array(net.infer(X[:5]), m.predict(X[:5]))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        net.infer(X[:5].astype(np.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 12\)"):
        net.infer(X[:5, :3].copy())
    with pytest.raises(ValueError, match="at least one row"):
        net.infer(X[:0])
