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
              {"loss": 0.1 + 0.2, "accuracy": np.float32(0.5), "val_loss": np.float64(1.25),
               "lr": 0.05}]
    logger.on_epoch_end(0, epochs[0])
    rows = read_csv(path)  # readable before training ends
    assert rows == [["epoch", "loss", "accuracy", "val_loss", "lr"], ["0", "1.5", "0.25", "1.75", "0.1"]]
    # later epochs keep the first epoch's column order, whatever order their logs come in
    logger.on_epoch_end(1, dict(reversed(list(epochs[1].items()))))
    logger.on_train_end({})
    rows = read_csv(path)
    assert rows[2] == ["1", repr(0.1 + 0.2), "0.5", "1.25", "0.05"]
    assert float(rows[2][1]) == 0.1 + 0.2  # full precision
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
