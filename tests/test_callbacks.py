from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import gradstep as gs
from gradstep.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,
                                ModelCheckpoint, TerminateOnNaN)
from gradstep.schedules import CosineDecay, ExponentialDecay, StepDecay


class Holder:
    """Only for the pure-logic tests: the attribute a callback sets to stop training."""

    def __init__(self) -> None:
        self.stop_training = False


# ---- argument validation -----------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,arg", [
    (lambda: EarlyStopping(monitor=3), TypeError, "monitor"),
    (lambda: EarlyStopping(monitor=""), ValueError, "monitor"),
    (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: EarlyStopping(patience=2.0), TypeError, "patience"),
    (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
    (lambda: EarlyStopping(min_delta=float("nan")), ValueError, "min_delta"),
    (lambda: EarlyStopping(min_delta="0"), TypeError, "min_delta"),
    (lambda: EarlyStopping(restore_best=1), TypeError, "restore_best"),
    (lambda: EarlyStopping(mode="maximum"), ValueError, "mode"),
    (lambda: EarlyStopping(mode=None), TypeError, "mode"),
    (lambda: ModelCheckpoint(5), TypeError, "path"),
    (lambda: ModelCheckpoint(""), ValueError, "path"),
    (lambda: ModelCheckpoint("m-{epoch.safetensors"), ValueError, "path"),
    (lambda: ModelCheckpoint("m-{0}.safetensors"), ValueError, "path"),
    (lambda: ModelCheckpoint("m.safetensors", monitor=None), TypeError, "monitor"),
    (lambda: ModelCheckpoint("m.safetensors", save_best_only="yes"), TypeError, "save_best_only"),
    (lambda: ModelCheckpoint("m.safetensors", mode="up"), ValueError, "mode"),
    (lambda: CSVLogger(None), TypeError, "path"),
    (lambda: CSVLogger("log.csv", append="no"), TypeError, "append"),
    (lambda: LearningRateScheduler(0.1), TypeError, "schedule"),
    (lambda: LearningRateScheduler(lambda e, lr, x: lr), TypeError, "schedule"),
    (lambda: LearningRateScheduler(lambda: 0.1), TypeError, "schedule"),
    (lambda: LearningRateScheduler(lambda e, *, k: 0.1), TypeError, "schedule"),
])
def test_argument_validation(make, exc, arg):
    with pytest.raises(exc, match=arg):
        make()


def test_mode_inference():
    assert EarlyStopping().direction == "min"
    assert EarlyStopping(monitor="val_accuracy").direction == "max"
    assert EarlyStopping(monitor="acc").direction == "max"
    assert EarlyStopping(monitor="val_mae").direction == "min"
    assert EarlyStopping(monitor="val_accuracy", mode="min").direction == "min"
    assert ModelCheckpoint("m.safetensors", monitor="accuracy").direction == "max"
    assert ModelCheckpoint("m.safetensors", monitor="loss", mode="max").direction == "max"
    assert EarlyStopping(monitor="val_accuracy").best == -math.inf
    assert EarlyStopping().best == math.inf


def test_reprs():
    assert repr(EarlyStopping(patience=3)) == ("EarlyStopping(monitor='val_loss', patience=3, "
                                               "min_delta=0.0, restore_best=True, mode='auto')")
    assert repr(ModelCheckpoint("m.safetensors", save_best_only=False)) == (
        "ModelCheckpoint(path='m.safetensors', monitor='val_loss', save_best_only=False, "
        "mode='auto')")
    assert repr(TerminateOnNaN()) == "TerminateOnNaN()"
    assert repr(CSVLogger("log.csv")) == "CSVLogger(path='log.csv', append=False)"
    assert repr(LearningRateScheduler(StepDecay(0.1))).startswith(
        "LearningRateScheduler(schedule=StepDecay(initial_lr=0.1")
    assert repr(Callback()) == "Callback()"


def test_base_callback_hooks_are_no_ops():
    cb = Callback()
    holder = Holder()
    cb.set_model(holder)
    assert cb.model is holder
    cb.on_train_begin({})
    cb.on_epoch_begin(0, {})
    cb.on_batch_end(0, {"loss": 1.0, "size": 4})
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_train_end({})
    cb.on_train_begin()
    assert holder.stop_training is False


# ---- pure logic: EarlyStopping's counting, TerminateOnNaN, monitor errors ----------------------
def run_epochs(cb: Callback, values: list[float], monitor: str = "val_loss") -> Holder:
    """Feed `values` as the monitored value epoch by epoch until the callback stops."""
    holder = Holder()
    cb.set_model(holder)
    cb.on_train_begin({})
    for epoch, v in enumerate(values):
        cb.on_epoch_begin(epoch, {})
        cb.on_epoch_end(epoch, {"loss": 1.0, monitor: v, "lr": 0.1})
        if holder.stop_training:
            break
    cb.on_train_end({})
    return holder


@pytest.mark.parametrize("values,patience,min_delta,stopped,best_epoch", [
    ([5, 4, 3, 3.5, 3.2, 3.1, 2], 2, 0.0, 4, 2),
    ([5, 4, 3, 3.5, 3.2, 3.1, 2], 3, 0.0, 5, 2),
    ([5, 4, 3, 3.5, 3.2, 2, 2.5], 3, 0.0, None, 5),
    ([5, 4, 3, 3.5, 3.2, 3.1, 2], 0, 0.0, 3, 2),
    ([1.0, 0.9, 0.86, 0.84, 0.80, 0.81], 2, 0.05, 5, 3),  # 0.86, 0.80: not better by > 0.05
    ([1.0, 1.0, 1.0], 1, 0.0, 1, 0),  # equal is not an improvement
    ([float("nan"), 2.0, 1.0], 5, 0.0, None, 2),  # NaN never improves
])
def test_early_stopping_counts_epochs_without_improvement(values, patience, min_delta, stopped,
                                                          best_epoch):
    es = EarlyStopping(patience=patience, min_delta=min_delta, restore_best=False)
    holder = run_epochs(es, values)
    assert es.stopped_epoch == stopped and holder.stop_training is (stopped is not None)
    assert es.best_epoch == best_epoch and es.best == values[best_epoch]


def test_early_stopping_max_mode_and_reset():
    es = EarlyStopping(monitor="val_accuracy", patience=1, restore_best=False)
    run_epochs(es, [0.5, 0.7, 0.6, 0.9], monitor="val_accuracy")
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.7, 1, 2)
    run_epochs(es, [0.1, 0.2], monitor="val_accuracy")  # a new fit starts afresh
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.2, 1, None)


def test_missing_monitor_names_it_and_lists_keys():
    for cb in (EarlyStopping(restore_best=False), ModelCheckpoint("unused.safetensors")):
        cb.set_model(Holder())
        cb.on_train_begin({})
        with pytest.raises(ValueError, match=r"'val_loss'.*\['accuracy', 'loss', 'lr'\]"):
            cb.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5, "lr": 0.1})
    tn = TerminateOnNaN()
    tn.set_model(Holder())
    with pytest.raises(ValueError, match=r"'loss'.*\['size'\]"):
        tn.on_batch_end(0, {"size": 3})
    es = EarlyStopping(restore_best=False)
    es.set_model(Holder())
    with pytest.raises(TypeError, match="val_loss"):
        es.on_epoch_end(0, {"val_loss": "low"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_terminate_on_nan_logic(bad):
    tn = TerminateOnNaN()
    holder = Holder()
    tn.set_model(holder)
    tn.on_train_begin({})
    tn.on_epoch_begin(0, {})
    for b in range(3):
        tn.on_batch_end(b, {"loss": 1.0, "size": 8})
    tn.on_epoch_begin(1, {})
    tn.on_batch_end(0, {"loss": 1.0, "size": 8})
    assert not holder.stop_training and tn.stopped_batch is None and tn.message is None
    tn.on_batch_end(1, {"loss": bad, "size": 8})
    assert holder.stop_training
    assert (tn.stopped_epoch, tn.stopped_batch) == (1, 1)
    assert str(bad) in tn.message and "epoch 1, batch 1" in tn.message
    tn.on_train_begin({})
    assert tn.stopped_batch is None and tn.message is None


# ---- CSVLogger through its hooks ---------------------------------------------------------------
def read_csv(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_rows_flushed_each_epoch(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    logger.set_model(Holder())
    logger.on_train_begin({})
    epochs = [{"loss": 1.5, "accuracy": 0.25, "val_loss": 1.75, "lr": 0.1},
              {"loss": 0.1 + 0.2, "accuracy": np.float32(0.1), "val_loss": np.float64(1.25),
               "lr": 0.05}]
    logger.on_epoch_end(0, epochs[0])
    rows = read_csv(path)  # readable before training ends
    assert rows == [["epoch", "loss", "accuracy", "val_loss", "lr"], ["0", "1.5", "0.25", "1.75", "0.1"]]
    # later epochs keep the first epoch's column order, whatever order their logs come in
    logger.on_epoch_end(1, dict(reversed(list(epochs[1].items()))))
    logger.on_train_end({})
    rows = read_csv(path)
    assert rows[2] == ["1", repr(0.1 + 0.2), repr(float(np.float32(0.1))), "1.25", "0.05"]
    assert float(rows[2][1]) == 0.1 + 0.2  # full precision
    assert float(rows[2][2]) == np.float32(0.1)  # a float32 value is written exactly
    # a new fit without append starts the file again
    logger.on_train_begin({})
    logger.on_epoch_end(0, epochs[0])
    logger.on_train_end({})
    assert len(read_csv(path)) == 2


def test_csv_logger_append_and_mismatch(tmp_path):
    path = tmp_path / "log.csv"
    first = CSVLogger(path)
    first.on_train_begin({})
    first.on_epoch_end(0, {"loss": 1.0, "lr": 0.1})
    first.on_train_end({})
    more = CSVLogger(path, append=True)
    more.on_train_begin({})
    more.on_epoch_end(1, {"lr": 0.2, "loss": 0.5})
    more.on_train_end({})
    assert read_csv(path) == [["epoch", "loss", "lr"], ["0", "1.0", "0.1"], ["1", "0.5", "0.2"]]
    more.on_train_begin({})
    with pytest.raises(ValueError, match=r"new keys \['val_loss'\], missing keys \[\]"):
        more.on_epoch_end(2, {"loss": 0.5, "lr": 0.2, "val_loss": 0.7})
    more.close()
    fresh = CSVLogger(tmp_path / "new.csv", append=True)  # append to a missing file: a header first
    fresh.on_train_begin({})
    fresh.on_epoch_end(0, {"loss": 1.0})
    fresh.close()
    fresh.close()
    assert read_csv(tmp_path / "new.csv") == [["epoch", "loss"], ["0", "1.0"]]
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="cannot append.*'epoch'"):
        CSVLogger(tmp_path / "other.csv", append=True).on_train_begin({})
    with pytest.raises(RuntimeError, match="before on_train_begin"):
        CSVLogger(tmp_path / "x.csv").on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(FileNotFoundError):
        CSVLogger(tmp_path / "no" / "dir" / "x.csv").on_train_begin({})


# ---- LearningRateScheduler signature detection -------------------------------------------------
def test_scheduler_detects_the_two_forms():
    assert not LearningRateScheduler(lambda epoch: 0.1).takes_lr
    assert LearningRateScheduler(lambda epoch, lr: lr).takes_lr
    assert not LearningRateScheduler(lambda epoch, lr=0.1: lr).takes_lr
    assert not LearningRateScheduler(StepDecay(0.1)).takes_lr
    assert not LearningRateScheduler(lambda *args: 0.1).takes_lr
    assert not LearningRateScheduler(math.exp).takes_lr

    class WithLr:
        def __call__(self, epoch, lr):
            return lr

    assert LearningRateScheduler(WithLr()).takes_lr


def test_scheduler_needs_a_model():
    with pytest.raises(RuntimeError, match="set_model"):
        LearningRateScheduler(lambda e: 0.1).on_epoch_begin(0, {})
    lrs = LearningRateScheduler(lambda e: 0.1)
    lrs.set_model(Holder())
    with pytest.raises(RuntimeError, match="no optimizer"):
        lrs.on_epoch_begin(0, {})


# ---- against a real model trained on digits ----------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = gs.datasets.load_digits()
    X_train, X_val, y_train, y_val = gs.datasets.train_val_split(X, y, val=0.25, seed=0)
    X_train, X_val = gs.datasets.standardize(X_train, X_val)
    return X_train, y_train, X_val, y_val


def mlp(lr: float = 1e-2, optimizer: str = "adam", seed: int = 0) -> gs.Sequential:
    model = gs.Sequential([gs.Dense(64, 32), gs.ReLU(), gs.Dense(32, 10)], seed=seed)
    opt = gs.Adam(lr=lr) if optimizer == "adam" else gs.SGD(lr=lr)
    model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=opt, metrics=["accuracy"])
    return model


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def overfit(model: gs.Sequential, digits, callbacks, epochs: int = 40):
    """150 training rows and a large step: the validation loss turns up after a few epochs."""
    X, y, Xv, yv = digits
    return model.fit(X[:150], y[:150], epochs=epochs, batch_size=16, validation_data=(Xv, yv),
                     callbacks=callbacks, verbose=0, seed=0)


def test_early_stopping_stops_and_restores_the_best_weights(digits):
    _, _, Xv, yv = digits
    model = mlp(lr=0.05)
    es = EarlyStopping(patience=2)
    h = overfit(model, digits, [es])
    val = h["val_loss"]
    assert es.stopped_epoch is not None and len(val) == es.stopped_epoch + 1 < 40
    assert es.stopped_epoch - es.best_epoch == 2  # patience epochs without improvement
    assert es.best == min(val) == val[es.best_epoch] and val[-1] > es.best
    assert_same_state(model.state_dict(), es.best_state)
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(es.best, rel=1e-6)
    # the same run without restoring ends on the last epoch's weights
    model = mlp(lr=0.05)
    es = EarlyStopping(patience=2, restore_best=False)
    h = overfit(model, digits, [es])
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)
    assert es.best_state is None


def test_early_stopping_on_accuracy_and_missing_monitor(digits):
    model = mlp(lr=0.05)
    es = EarlyStopping(monitor="val_accuracy", patience=3, restore_best=False)
    h = overfit(model, digits, [es])
    acc = h["val_accuracy"]
    assert es.best == max(acc) and es.best_epoch == int(np.argmax(acc))  # first of equal maxima
    X, y, _, _ = digits
    with pytest.raises(ValueError, match=r"'val_loss'.*\['accuracy', 'loss', 'lr'\]"):
        mlp().fit(X[:64], y[:64], epochs=2, callbacks=[EarlyStopping()], verbose=0)


def test_early_stopping_restores_after_a_stop_inside_an_epoch(digits):
    """TerminateOnNaN stops after a batch whose weights blew up: the best weights come back."""

    class Explode(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                self.model.optimizer.lr = 1e30

    model = mlp(lr=1e-2)
    es, tn = EarlyStopping(patience=10), TerminateOnNaN()
    h = overfit(model, digits, [Explode(), tn, es])
    assert tn.stopped_epoch == 3 and len(h["loss"]) == 4
    assert es.best_epoch <= 3
    assert_same_state(model.state_dict(), es.best_state)
    assert all(np.all(np.isfinite(v)) for v in model.state_dict().values())


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_early_stopping_does_not_roll_back_an_interrupted_fit(digits, exc):
    """Ctrl-C (or any exception) in the middle of fit: the weights stay those trained so far, as
    in Keras (restoring belongs to a normal end of training); best_state still holds the best."""

    class Interrupt(Callback):
        def on_batch_end(self, batch, logs=None):
            if self.model.epochs_done == 6 and batch == 3:
                self.trained = self.model.state_dict()
                raise exc("stop")

    model = mlp(lr=0.05)
    es, stop = EarlyStopping(patience=50), Interrupt()
    with pytest.raises(exc):
        overfit(model, digits, [es, stop])
    assert es.interrupted and es.best_state is not None and es.best_epoch < 6
    assert_same_state(model.state_dict(), stop.trained)  # not rolled back to the best epoch
    assert not all(np.array_equal(model.state_dict()[k], v) for k, v in es.best_state.items())
    # a normal end still restores, and clears the flag
    model = mlp(lr=0.05)
    es = EarlyStopping(patience=50)
    overfit(model, digits, [es], epochs=8)
    assert not es.interrupted
    assert_same_state(model.state_dict(), es.best_state)


def test_reduce_lr_on_plateau_follows_keras_rules():
    from gradstep.callbacks import ReduceLROnPlateau

    class Opt:
        lr = 1.0

    class Model:
        optimizer = Opt()

    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    cb.set_model(Model())
    cb.on_train_begin({})
    values = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    lrs = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"val_loss": v})
        lrs.append(Model.optimizer.lr)
    # Keras's counting: no improvement from epoch 2, reduce at 3 (patience 2); the cooldown epoch 4
    # resets the count and then counts, so the next reductions come at 5 and 7 (floored at min_lr);
    # at min_lr nothing more happens
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]
    assert cb.reductions == [(3, 0.5), (5, 0.25), (7, 0.2)]
    # min_delta: an improvement smaller than it does not count
    cb = ReduceLROnPlateau(patience=1, min_delta=0.1)
    Model.optimizer.lr = 1.0
    cb.set_model(Model())
    cb.on_train_begin({})
    for epoch, v in enumerate([1.0, 0.95, 0.8]):
        cb.on_epoch_end(epoch, {"val_loss": v})
    assert cb.reductions == [(1, 0.1)]


def test_reduce_lr_on_plateau_in_fit(digits):
    from gradstep.callbacks import ReduceLROnPlateau

    model = mlp(lr=0.05)
    cb = ReduceLROnPlateau(patience=1, factor=0.5)
    h = overfit(model, digits, [cb], epochs=12)  # the validation loss turns up: the rate halves
    assert cb.reductions and h.history["lr"][0] == 0.05
    first = cb.reductions[0][0]
    assert h.history["lr"][first + 1] == pytest.approx(0.025)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)


def test_model_checkpoint_saves_improving_epochs(tmp_path, digits):
    _, _, Xv, yv = digits
    model = mlp(lr=0.05)
    mc = ModelCheckpoint(tmp_path / "ckpt" / "m-{epoch:02d}.safetensors")
    es = EarlyStopping(patience=2)
    h = overfit(model, digits, [mc, es])
    val = h["val_loss"]
    improving = [e for e in range(len(val)) if val[e] < min(val[:e], default=math.inf)]
    assert mc.saved == [str(tmp_path / "ckpt" / f"m-{e + 1:02d}.safetensors") for e in improving]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        f"m-{e + 1:02d}.safetensors" for e in improving]
    assert mc.best == es.best and mc.best_epoch == es.best_epoch
    loaded = gs.load(mc.saved[-1])  # the best epoch's weights, as EarlyStopping restored them
    assert_same_state(loaded.state_dict(), model.state_dict())
    np.testing.assert_array_equal(loaded.predict(Xv[:20]), model.predict(Xv[:20]))


def test_model_checkpoint_every_epoch_and_logs_fields(tmp_path, digits):
    X, y, Xv, yv = digits
    model = mlp()
    mc = ModelCheckpoint(tmp_path / "e{epoch}-{val_loss:.3f}.safetensors", save_best_only=False)
    h = model.fit(X[:200], y[:200], epochs=3, validation_data=(Xv, yv), callbacks=[mc], verbose=0)
    assert mc.saved == [str(tmp_path / f"e{e + 1}-{v:.3f}.safetensors")
                        for e, v in enumerate(h["val_loss"])]
    assert_same_state(gs.load(mc.saved[-1]).state_dict(), model.state_dict())
    bad = ModelCheckpoint(tmp_path / "{nonsense}.safetensors", save_best_only=False)
    with pytest.raises(ValueError, match=r"\{nonsense\}.*\['accuracy', 'loss', 'lr'\]"):
        mlp().fit(X[:64], y[:64], epochs=1, callbacks=[bad], verbose=0)


def test_model_checkpoint_survives_a_crash(tmp_path, digits):
    X, y, Xv, yv = digits
    states = []

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            states.append(self.model.state_dict())

    class Crash(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("simulated crash")

    path = tmp_path / "last.safetensors"
    model = mlp()
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(X[:200], y[:200], epochs=6, validation_data=(Xv, yv), verbose=0,
                  callbacks=[ModelCheckpoint(path, save_best_only=False), Snapshot(), Crash()])
    assert len(states) == 3
    assert_same_state(gs.load(path).state_dict(), states[-1])


def test_terminate_on_nan_stops_a_diverging_run(digits):
    X, y, _, _ = digits
    model = mlp(lr=1e30, optimizer="sgd")
    tn = TerminateOnNaN()
    h = model.fit(X, y, epochs=5, batch_size=32, callbacks=[tn], verbose=0)
    assert tn.stopped_epoch == 0 and tn.stopped_batch is not None
    assert not math.isfinite(tn.loss) and "batch" in tn.message
    assert len(h["loss"]) == 1 and model.stop_training
    # without the callback the same run goes on for every epoch
    h = mlp(lr=1e30, optimizer="sgd").fit(X, y, epochs=5, batch_size=32, verbose=0)
    assert len(h["loss"]) == 5


def test_csv_logger_rows_match_history(tmp_path, digits):
    X, y, Xv, yv = digits
    path = tmp_path / "log.csv"
    h = mlp().fit(X[:300], y[:300], epochs=3, validation_data=(Xv, yv), verbose=0,
                  callbacks=[CSVLogger(path)])
    rows = read_csv(path)
    keys = list(h.history)
    assert rows[0] == ["epoch", *keys]
    assert len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e
        assert [float(v) for v in row[1:]] == [h[k][e] for k in keys]


def test_csv_logger_is_complete_when_training_crashes(tmp_path, digits):
    X, y, _, _ = digits

    class Crash(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("simulated crash")

    path = tmp_path / "log.csv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        mlp().fit(X[:100], y[:100], epochs=5, verbose=0, callbacks=[CSVLogger(path), Crash()])
    assert [r[0] for r in read_csv(path)] == ["epoch", "0", "1"]


def test_learning_rate_scheduler_sets_lr_each_epoch(digits):
    X, y, _, _ = digits
    seen = []

    class Watch(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 0:
                seen.append(self.model.optimizer.lr)

    model = mlp(lr=1.0)
    sched = LearningRateScheduler(StepDecay(0.1, drop=0.5, every=1))
    h = model.fit(X[:100], y[:100], epochs=3, callbacks=[sched, Watch()], verbose=0)
    assert seen == h["lr"] == sched.lrs == [0.1, 0.05, 0.025]
    assert model.optimizer.lr == 0.025
    model = mlp(lr=0.08)
    h = model.fit(X[:100], y[:100], epochs=3, verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch, lr: lr / 2)])
    assert h["lr"] == [0.04, 0.02, 0.01]


def test_learning_rate_scheduler_rejects_bad_rates(digits):
    X, y, _, _ = digits
    for bad, exc in ((0.0, ValueError), (-1e-3, ValueError), (float("nan"), ValueError),
                     (float("inf"), ValueError), ("0.1", TypeError)):
        model = mlp(lr=0.01)
        with pytest.raises(exc, match="epoch 1"):
            model.fit(X[:64], y[:64], epochs=3, verbose=0,
                      callbacks=[LearningRateScheduler(lambda e, b=bad: 0.01 if e == 0 else b)])
        assert model.optimizer.lr == 0.01


@pytest.mark.parametrize("schedule", [StepDecay(0.02, every=2), ExponentialDecay(0.02, rate=0.5),
                                      CosineDecay(0.02, epochs=3, min_lr=0.001)])
def test_schedules_are_callbacks_in_fit(schedule, digits):
    X, y, _, _ = digits
    model = mlp(lr=1.0)
    h = model.fit(X[:100], y[:100], epochs=4, callbacks=[schedule], verbose=0)
    assert h["lr"] == [schedule(e) for e in range(4)]


def _read_scalars(path):
    """Scalars in a TensorBoard event file (TFRecord framing: u64 length, u32 crc, data, u32 crc)."""
    import struct
    from tensorboardX.proto import event_pb2
    data = path.read_bytes()
    pos, scalars = 0, {}
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        for v in event.summary.value:
            scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars


def test_tensorboard_puts_train_and_validation_on_one_chart(tmp_path):
    # Keras's layout: logdir/train and logdir/validation hold the same tags, which TensorBoard draws
    # as two curves on one chart (before: "loss" and "val_loss" were two separate charts)
    pytest.importorskip("tensorboardX")
    import gradstep as gs
    X, y = gs.datasets.load_digits()
    model = gs.Sequential([gs.Dense(64, 16), gs.ReLU(), gs.Dense(16, 10)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2), metrics=["accuracy"])
    h = model.fit(X[:200] / 16, y[:200], epochs=2, verbose=0, validation_split=0.25,
                  callbacks=[gs.callbacks.TensorBoard(tmp_path / "tb")])
    runs = {}
    for run in ("train", "validation"):
        (event,) = (tmp_path / "tb" / run).glob("events.out.tfevents.*")
        runs[run] = _read_scalars(event)
    assert set(runs["train"]) == {"loss", "accuracy", "lr"}
    assert set(runs["validation"]) == {"loss", "accuracy"}
    assert [step for step, _ in runs["train"]["loss"]] == [0, 1]
    assert [v for _, v in runs["train"]["loss"]] == pytest.approx(h.history["loss"], rel=1e-6)
    assert [v for _, v in runs["validation"]["loss"]] == pytest.approx(h.history["val_loss"], rel=1e-6)
    assert [v for _, v in runs["validation"]["accuracy"]] == pytest.approx(h.history["val_accuracy"], rel=1e-6)


def test_tensorboard_needs_a_path():
    pytest.importorskip("tensorboardX")
    import gradstep as gs
    with pytest.raises(TypeError, match="logdir"):
        gs.callbacks.TensorBoard(3)
