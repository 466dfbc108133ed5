"""Callbacks: objects that `Sequential.fit` calls at fixed points of training.

`fit` calls, in order: `set_model(model)`, `on_train_begin({})`, then for every epoch
`on_epoch_begin(epoch, {})`, `on_batch_end(batch, {"loss": float, "size": n})` after each
mini-batch and `on_epoch_end(epoch, logs)` with `logs` holding "loss", "val_loss" (with
validation data), every metric and its "val_" twin, and "lr"; finally `on_train_end({})` (`{"interrupted": True}` when an exception such as KeyboardInterrupt ended fit).
Epoch and batch indices are 0-based. Setting `model.stop_training = True` in `on_epoch_end` stops
`fit` after that epoch, in `on_batch_end` right after that batch.
"""
from __future__ import annotations

import copy
import csv
import inspect
import math
import numbers
import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import _checks
from ._callback import Callback
from .diagnostics.monitor import GradientMonitor

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN", "CSVLogger",
           "LearningRateScheduler", "ReduceLROnPlateau", "TensorBoard", "GradientMonitor"]

_MODES = ("auto", "min", "max")


# ---- shared argument checks --------------------------------------------------------------------
def _check_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return value


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _check_mode(mode: Any, monitor: str, owner: str) -> str:
    """The comparison direction: "auto" is "max" for accuracy-like names, else "min"."""
    if not isinstance(mode, str):
        raise TypeError(f"{owner}: mode must be one of {list(_MODES)}, got {type(mode).__name__}")
    if mode not in _MODES:
        raise ValueError(f"{owner}: mode must be one of {list(_MODES)}, got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _check_path(path: Any, name: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        raise TypeError(f"{name} must be a str path, got bytes")
    if not text:
        raise ValueError(f"{name} must be a non-empty path, got ''")
    return text


def _monitored(logs: dict | None, monitor: str, owner: str) -> float:
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{owner}: monitor {monitor!r} is not in the logs; available keys: "
                         f"{sorted(logs)} (pass validation data for 'val_' keys)")
    value = logs[monitor]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: logs[{monitor!r}] must be a number, got "
                        f"{type(value).__name__}")
    return float(value)


def _improved(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """Strictly better than `best` by more than `min_delta`; NaN never improves."""
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


# ---- EarlyStopping -----------------------------------------------------------------------------
class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    With `restore_best`, a deep copy of `model.state_dict()` is kept from the best epoch and loaded
    back when training ends (also when it ran all its epochs or another callback stopped it), but
    not when fit is interrupted by an exception such as KeyboardInterrupt (then `interrupted` is
    True and `best_state` still holds the best weights).
    After training: `best` (the best value), `best_epoch` (0-based; None if no epoch produced a
    comparable value) and `stopped_epoch` (the epoch that stopped training, None if none did).
    `mode="auto"` maximizes names containing "acc" and minimizes everything else.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True, mode: str = "auto") -> None:
        self.monitor = _check_str(monitor, "EarlyStopping: monitor")
        self.patience = _checks.check_int(patience, "EarlyStopping: patience", 0)
        self.min_delta = _checks.check_float(min_delta, "EarlyStopping: min_delta", 0.0)
        self.restore_best = _check_bool(restore_best, "EarlyStopping: restore_best")
        _check_mode(mode, self.monitor, "EarlyStopping")
        self.mode = mode
        self._reset()

    @property
    def direction(self) -> str:
        """"min" or "max": the mode with "auto" resolved."""
        return _check_mode(self.mode, self.monitor, "EarlyStopping")

    def _reset(self) -> None:
        self.best: float = math.inf if self.direction == "min" else -math.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self.best_state: dict[str, np.ndarray] | None = None
        self.interrupted = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if _improved(value, self.best, self.direction, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                state = self._require_model("restore_best").state_dict()
                self.best_state = {k: np.array(v, copy=True) for k, v in state.items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self._require_model("stopping").stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        # Always restore when training ends normally, even when the last finished epoch was the
        # best: a stop inside an epoch (TerminateOnNaN after a batch) leaves weights changed since
        # that epoch ended. Not when fit was interrupted (Ctrl-C, an exception): as in Keras, the
        # weights stay those trained so far (`best_state` keeps the best ones for the user).
        self.interrupted = bool((logs or {}).get("interrupted"))
        if self.interrupted:
            return
        if self.restore_best and self.best_state is not None:
            self._require_model("restore_best").load_state_dict(copy.deepcopy(self.best_state))

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best={self.restore_best}, "
                f"mode={self.mode!r})")


# ---- ModelCheckpoint ---------------------------------------------------------------------------
class ModelCheckpoint(Callback):
    """Save the model with `model.save(path)` after epochs that improve `monitor` (or every epoch).

    `path` may hold format fields: `{epoch}` (1-based epoch number, e.g. "ckpt-{epoch:03d}.safetensors")
    and any key of the epoch's logs (e.g. "{val_loss:.4f}"). Missing parent directories are
    created. `model.save` writes atomically, so an interrupted run leaves the last checkpoint
    loadable with `gs.load`. After training: `best`, `best_epoch`, `saved` (the paths written).
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = True, mode: str = "auto") -> None:
        self.path = _check_path(path, "ModelCheckpoint: path")
        try:
            self._fields = [f for _, f, _, _ in string.Formatter().parse(self.path) if f is not None]
        except ValueError as e:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} is not a valid format string "
                             f"({e}); write literal braces as '{{{{' and '}}}}'") from None
        for f in self._fields:
            if not f.isidentifier():
                raise ValueError(f"ModelCheckpoint: path {self.path!r} has the field {{{f}}}; "
                                 f"fields must be 'epoch' or a logs key such as 'val_loss'")
        self.monitor = _check_str(monitor, "ModelCheckpoint: monitor")
        self.save_best_only = _check_bool(save_best_only, "ModelCheckpoint: save_best_only")
        _check_mode(mode, self.monitor, "ModelCheckpoint")
        self.mode = mode
        self._reset()

    @property
    def direction(self) -> str:
        """"min" or "max": the mode with "auto" resolved."""
        return _check_mode(self.mode, self.monitor, "ModelCheckpoint")

    def _reset(self) -> None:
        self.best: float = math.inf if self.direction == "min" else -math.inf
        self.best_epoch: int | None = None
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def filepath(self, epoch: int, logs: dict | None = None) -> str:
        """The file written for `epoch` (0-based) with these logs."""
        logs = dict(logs or {})
        values = {**logs, "epoch": epoch + 1}
        missing = [f for f in self._fields if f not in values]
        if missing:
            raise ValueError(f"ModelCheckpoint: path field {{{missing[0]}}} is neither 'epoch' "
                             f"nor a logs key; available keys: {sorted(logs)}")
        return self.path.format(**values)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not _improved(value, self.best, self.direction):
                return
            self.best, self.best_epoch = value, epoch
        target = self.filepath(epoch, logs)
        model = self._require_model("saving")
        parent = Path(target).parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True)
        model.save(target)
        self.saved.append(target)

    def __repr__(self) -> str:
        return (f"ModelCheckpoint(path={self.path!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only}, mode={self.mode!r})")


# ---- TerminateOnNaN ----------------------------------------------------------------------------
class TerminateOnNaN(Callback):
    """Stop training right after a mini-batch whose loss is NaN or infinite.

    Prints and warns nothing: after training, `stopped_epoch`, `stopped_batch` (0-based, None if
    training was not stopped), `loss` (the offending value) and `message` (a sentence for a person)
    tell what happened.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None
        self.loss: float | None = None
        self.message: str | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = _monitored(logs, "loss", "TerminateOnNaN")
        if math.isfinite(loss) or self.stopped_batch is not None:
            return
        self.stopped_epoch, self.stopped_batch, self.loss = self._epoch, batch, loss
        self.message = (f"TerminateOnNaN: the loss became {loss} at epoch {self._epoch}, batch "
                        f"{batch} (0-based); training stopped. A learning rate that is too high "
                        f"is the usual cause.")
        self._require_model("stopping").stop_training = True


# ---- CSVLogger ---------------------------------------------------------------------------------
class CSVLogger(Callback):
    """Write one CSV row per epoch: a header line, then `epoch` (0-based) and the epoch's logs.

    Columns are "epoch" followed by the log keys in the order of the first epoch's logs; every row
    is flushed when written, so the file is complete up to the last finished epoch even if training
    crashes later. With `append=True` rows are added to an existing file under its own header
    (whose columns must match the logs).
    """

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = _check_path(path, "CSVLogger: path")
        self.append = _check_bool(append, "CSVLogger: append")
        self.columns: list[str] | None = None
        self._file: TextIO | None = None
        self._writer: Any = None
        self._header_written = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.close()
        self.columns, self._header_written = None, False
        if self.append and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if not header or header[0] != "epoch":
                raise ValueError(f"CSVLogger: cannot append to {self.path!r}: its first line "
                                 f"{header} is not a header starting with 'epoch'")
            self.columns, self._header_written = header, True
        self._file = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._file is None:
            raise RuntimeError(f"CSVLogger: on_epoch_end before on_train_begin (file "
                               f"{self.path!r} is not open)")
        logs = dict(logs or {})
        logs.pop("epoch", None)
        if self.columns is None:
            self.columns = ["epoch", *logs]
        expected = set(self.columns) - {"epoch"}
        if set(logs) != expected:
            extra, missing = sorted(set(logs) - expected), sorted(expected - set(logs))
            raise ValueError(f"CSVLogger: the logs of epoch {epoch} do not match the columns "
                             f"{self.columns} of {self.path!r} (new keys {extra}, missing keys "
                             f"{missing})")
        if not self._header_written:
            self._writer.writerow(self.columns)
            self._header_written = True
        self._writer.writerow([epoch] + [_cell(logs[k]) for k in self.columns[1:]])
        self._file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (done by on_train_end; safe to call twice)."""
        if self._file is not None:
            self._file.close()
        self._file, self._writer = None, None

    def __repr__(self) -> str:
        return f"CSVLogger(path={self.path!r}, append={self.append})"


def _cell(value: Any) -> Any:
    # repr of a Python float round-trips exactly; numpy scalars print through it too
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---- LearningRateScheduler ---------------------------------------------------------------------
class LearningRateScheduler(Callback):
    """Set `model.optimizer.lr` at the start of every epoch from `schedule`.

    `schedule` is `epoch -> lr` or `(epoch, lr) -> lr` (the current rate; told apart by the number
    of required positional parameters), with `epoch` 0-based. The gs.schedules classes fit the
    first form. A returned rate that is not a positive, finite number raises. `lrs` lists the rates
    set, one per epoch.
    """

    def __init__(self, schedule: Callable[..., float]) -> None:
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable (epoch -> lr or "
                            f"(epoch, lr) -> lr), got {type(schedule).__name__}")
        self.schedule = schedule
        self.takes_lr = _takes_lr(schedule)
        self.lrs: list[float] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.lrs = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = _optimizer_of(self._require_model("setting the learning rate"), self)
        lr = self.schedule(epoch, optimizer.lr) if self.takes_lr else self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"LearningRateScheduler: schedule must return a number, got "
                            f"{type(lr).__name__} {lr!r} for epoch {epoch}")
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0.0):
            raise ValueError(f"LearningRateScheduler: schedule returned lr={lr} for epoch {epoch}; "
                             f"the learning rate must be positive and finite")
        optimizer.lr = lr
        self.lrs.append(lr)

    def __repr__(self) -> str:
        return f"LearningRateScheduler(schedule={self.schedule!r})"


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs (Keras's callback, its defaults): then wait `cooldown` epochs
    before counting again; never go below `min_lr`. `mode="auto"` maximizes names containing
    "acc". `reductions` lists (epoch, new lr) for each reduction; `verbose=1` prints them."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, mode: str = "auto",
                 verbose: int = 0) -> None:
        self.monitor = _check_str(monitor, "ReduceLROnPlateau: monitor")
        self.factor = _checks.check_float(factor, "ReduceLROnPlateau: factor", 0.0, 1.0,
                                          min_inclusive=False, max_inclusive=False)
        self.patience = _checks.check_int(patience, "ReduceLROnPlateau: patience", 0)
        self.min_delta = _checks.check_float(min_delta, "ReduceLROnPlateau: min_delta", 0.0)
        self.cooldown = _checks.check_int(cooldown, "ReduceLROnPlateau: cooldown", 0)
        self.min_lr = _checks.check_float(min_lr, "ReduceLROnPlateau: min_lr", 0.0)
        _check_mode(mode, self.monitor, "ReduceLROnPlateau")
        self.mode = mode
        self.verbose = _checks.check_int(verbose, "ReduceLROnPlateau: verbose", 0)
        self._reset()

    def _reset(self) -> None:
        direction = _check_mode(self.mode, self.monitor, "ReduceLROnPlateau")
        self.best = math.inf if direction == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self.reductions: list[tuple[int, float]] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        direction = _check_mode(self.mode, self.monitor, "ReduceLROnPlateau")
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if _improved(value, self.best, direction, self.min_delta):
            self.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            optimizer = _optimizer_of(self._require_model("reducing the learning rate"), self)
            old = float(optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if new < old:
                optimizer.lr = new
                self.reductions.append((epoch, new))
                if self.verbose:
                    print(f"ReduceLROnPlateau: epoch {epoch + 1}: {self.monitor} did not improve for "
                          f"{self.wait} epochs; learning rate {old:.3g} -> {new:.3g}")
                self.cooldown_left = self.cooldown
                self.wait = 0

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, patience={self.patience}, "
                f"min_delta={self.min_delta}, cooldown={self.cooldown}, min_lr={self.min_lr}, "
                f"mode={self.mode!r})")


def _takes_lr(schedule: Callable[..., Any]) -> bool:
    """True for `(epoch, lr) -> lr`, False for `epoch -> lr`."""
    try:
        sig = inspect.signature(schedule)
    except (TypeError, ValueError):  # some builtins have no signature: call them with the epoch
        return False
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    required_kw = [p for p in sig.parameters.values()
                   if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if required_kw or len(required) > 2 or (not positional and not varargs):
        raise TypeError(f"LearningRateScheduler: schedule must take (epoch) or (epoch, lr), "
                        f"got a callable with signature {sig}")
    return len(required) == 2


def _optimizer_of(model: Any, owner: Callback) -> Any:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise RuntimeError(f"{type(owner).__name__}: the model has no optimizer; compile it first")
    return optimizer


class TensorBoard(Callback):
    """Writes every epoch's logs as TensorBoard scalars under `logdir`, as Keras lays them out: the
    training values in `logdir/train`, the validation values (the "val_" logs) in
    `logdir/validation`, under the same tag ("loss", "accuracy", ...), so that TensorBoard draws
    training and validation on one chart; "lr" goes with the training run.

    Needs tensorboardX (`pip install tensorboardX`); without it the constructor raises ImportError
    saying so. View with `tensorboard --logdir <logdir>`.
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        super().__init__()
        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"TensorBoard: logdir must be a path, got {type(logdir).__name__}")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoard: the callback needs tensorboardX; install it with "
                              "`pip install tensorboardX`") from None
        self.logdir = os.fspath(logdir)
        self._writer_class = SummaryWriter
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            self._writers[run] = self._writer_class(os.path.join(self.logdir, run))
        return self._writers[run]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            if isinstance(value, numbers.Real):
                run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                self._writer(run).add_scalar(tag, float(value), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def __repr__(self) -> str:
        return f"TensorBoard(logdir={self.logdir!r})"
