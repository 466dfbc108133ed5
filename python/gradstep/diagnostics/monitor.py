"""GradientMonitor: per layer and epoch, gradient norms, update ratios and unit statistics, measured
in C++ during fit."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .. import _checks, _core
from .. import losses as _losses
from .._callback import Callback
from ..layers import activation as _act
from ..layers.base import Layer
from ..model import Sequential
from .findings import Finding
from .gradients import _gradient_findings
from .initial_loss import _expected_initial_loss

_SATURATING = {_act.Sigmoid: "saturated_sigmoid", _act.Tanh: "saturated_tanh"}
_ACTIVATIONS = (_act.Sigmoid, _act.Tanh, _act.ReLU, _act.LeakyReLU, _act.ELU, _act.PReLU, _act.Softmax)


def _layer_names(model: Sequential) -> list[str]:
    return [f"{i}.{type(l).__name__}" for i, l in enumerate(model.layers)]


def _last_input(model: Sequential) -> tuple[int, np.ndarray | None]:
    """(i, x): the input x of layer i in the last training step, for the layer-by-layer path's
    statistics: the model's last batch when it keeps one (`_last_batch`), else what the first Dense
    or Maxout layer's last forward took (the layers before it have no parameters)."""
    x = getattr(model, "_last_batch", None)
    if isinstance(x, np.ndarray):
        return 0, x
    for i, layer in enumerate(model.layers):
        if layer.has_params:
            return i, layer._last_x if layer._saved is not None else None
    return 0, None


def _saved_output(layer: Layer) -> np.ndarray | None:
    """The output of the layer's last training forward (what its op kept for backward)."""
    if type(layer) in _ACTIVATIONS and layer._saved is not None:
        return layer._last_y
    return None


class GradientMonitor(Callback):
    """Watch gradients, updates and activations during `fit`, cheaply.

        monitor = GradientMonitor(every=1, batches=1)
        model.fit(X, y, epochs=10, callbacks=[monitor])
        monitor.series("0.Dense", "grad_norm")          # one value per recorded epoch

    Every `every` epochs it measures the last `batches` mini-batches of the epoch (their average is
    the epoch's record): for each Dense/Maxout layer the weight-gradient norm, the weight norm and
    the update-to-weight ratio ||dw||/||w|| of one step (the weights are copied one batch before;
    about 1e-3 is healthy), likewise for BatchNorm's gamma and PReLU's alpha; for each activation
    layer its output's mean and std, for ReLU the fraction of dead units (0 for the whole batch),
    for sigmoid/tanh the fraction of saturated outputs (|tanh| > 0.99, sigmoid < 0.01 or > 0.99).
    The activation statistics are those of the measured step's training forward, computed in C++
    (`_core`): with the whole-step engine from its workspace, layer by layer from the outputs the
    layers kept (for LeakyReLU and PReLU, which keep their input, from an evaluation-mode forward of
    the last batch). The first step of a fresh model is measured too (`initial_record`,
    `initial_loss`).

    `records` lists per-epoch dicts: {"epoch", "loss", "val_loss" (when validated), "lr",
    "grad_norm" and "update_ratio" (whole model), "layers": {name: {"grad_norm", "weight_norm",
    "update_ratio", "mean", "std", "dead", "saturated", "index", "type", "hidden"} (the keys that
    apply)}, "flags": [kinds]}, with layer names like "0.Dense". `expected_initial_loss` is what an
    untrained model should give (ln C; None for MSE). `flags` lists the vanishing/exploding-gradient
    Findings raised so far; `seconds` is the time spent in the monitor's hooks (its overhead).
    """

    def __init__(self, every: int = 1, batches: int = 1) -> None:
        self.every = _checks.check_int(every, "GradientMonitor: every", 1)
        self.batches = _checks.check_int(batches, "GradientMonitor: batches", 1)
        self.model = None
        # Records are built when read (`records`, `flags`, `initial_record`): during fit the monitor
        # only keeps the raw measurements, so the per-epoch cost stays a few tens of microseconds.
        self._records: list[dict[str, Any]] = []
        self._flags: list[Finding] = []
        self._initial: dict[str, Any] | None = None
        self._pending: list[tuple] = []
        self.initial_loss: float | None = None
        self.expected_initial_loss: float | None = None
        self.layer_names: list[str] = []
        self.seconds = 0.0
        self._reset_fit()

    def _reset_fit(self) -> None:
        self._sample: set[int] = set()
        self._snapshot: np.ndarray | None = None
        self._snapshot_valid = False
        self._diff: np.ndarray | None = None
        self._want_initial = False
        self._n_batches: int | None = None
        self._fit_first_epoch: int | None = None
        self._epoch = 0
        self._acc, self._totals = self._new_acc()

    def __repr__(self) -> str:
        return f"GradientMonitor(every={self.every}, batches={self.batches}, records={len(self.records)})"

    # ---- hooks --------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        model = self._require_model("on_train_begin")
        self._reset_fit()
        self.layer_names = _layer_names(model)
        params = getattr(getattr(model, "history", None), "params", {}) or {}
        if params.get("samples") and params.get("batch_size"):
            self._n_batches = -(-int(params["samples"]) // int(params["batch_size"]))
        if model.epochs_done == 0 and self.initial_loss is None:
            self._want_initial = True
            self.expected_initial_loss, _ = _expected_initial_loss(model)
        self._regression = isinstance(model.loss, _losses.MSE)
        arena = model.arena
        # Per parameter layer: the (offset, size) slots of its weights ("weight", BatchNorm's
        # "gamma", PReLU's "alpha"; all its parameters when it has none of those).
        self._slots: list[tuple[int, list[tuple[int, int]]]] = []
        for i, layer in enumerate(model.layers):
            weights, others = [], []
            for name in layer._param_shapes():
                off, shape = arena.slots[f"{i}.{name}"]
                span = (off, int(np.prod(shape, dtype=np.int64)))
                (weights if name in ("weight", "gamma", "alpha") else others).append(span)
            if weights or others:
                self._slots.append((i, weights or others))
        last_param = max((i for i, _ in self._slots), default=-1)
        self._hidden = [i < last_param for i in range(len(model.layers))]
        # Activation layers (no parameters, not Dropout/Identity): the ones whose outputs are watched.
        self._watch = [isinstance(l, _ACTIVATIONS) for l in model.layers]
        self.seconds += time.perf_counter() - t0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        if self._fit_first_epoch is None:
            self._fit_first_epoch = epoch
        self._epoch = epoch
        self._acc, self._totals = self._new_acc()
        self._sample = set()
        if (epoch - self._fit_first_epoch) % self.every == 0:
            nb = self._n_batches
            self._sample = set(range(max(0, nb - self.batches), nb)) if nb else set(range(self.batches))
        if 0 in self._sample or self._want_initial:
            self._take_snapshot()
        self.seconds += time.perf_counter() - t0

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Most batches are neither measured nor the one before: two set look-ups and out.
        if batch in self._sample or batch + 1 in self._sample or self._want_initial:
            t0 = time.perf_counter()
            if self._want_initial:
                self._want_initial = False
                self.initial_loss = float((logs or {}).get("loss", math.nan))
                acc, totals = self._new_acc()
                self._measure(acc, totals)
                self._pending.append((True, self._epoch, acc, totals, {"loss": self.initial_loss,
                                                                       "batch": batch},
                                      float(self.model.optimizer.lr), self._hidden))
            if batch in self._sample:
                self._measure(self._acc, self._totals)
            if batch + 1 in self._sample:
                self._take_snapshot()
            self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        if self._totals["grad_norm"]:
            logs = logs or {}
            kept = {k: float(logs[k]) for k in ("loss", "val_loss", "lr") if k in logs}
            self._pending.append((False, epoch, self._acc, self._totals, kept,
                                  float(self.model.optimizer.lr), self._hidden))
        self._sample = set()
        self.seconds += time.perf_counter() - t0

    # ---- measurements -------------------------------------------------------------------------
    @staticmethod
    def _new_acc() -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
        return {}, {"grad_norm": [], "update_ratio": []}

    def _materialize(self) -> None:
        """Turn the raw measurements kept during fit into records and flags."""
        pending, self._pending = self._pending, []
        for initial, epoch, acc, totals, logs, lr, hidden in pending:
            first = self._initial or (self._records[0] if self._records else None)
            rec = self._record(epoch, acc, totals, {"lr": lr, **logs}, None if initial else first, hidden)
            if initial:
                self._initial = rec
            else:
                self._records.append(rec)

    @property
    def records(self) -> list[dict[str, Any]]:
        """One dict per measured epoch (see the class docstring)."""
        if self._pending:
            self._materialize()
        return self._records

    @property
    def flags(self) -> list[Finding]:
        """The vanishing/exploding-gradient Findings raised so far, the first of each kind."""
        if self._pending:
            self._materialize()
        return self._flags

    @property
    def initial_record(self) -> dict[str, Any] | None:
        """The record of the first step of a fresh model ("batch": 0), or None."""
        if self._pending:
            self._materialize()
        return self._initial

    def _record(self, epoch: int, acc: dict, totals: dict, logs: dict, first: dict | None,
                hidden: list[bool]) -> dict[str, Any]:
        """One record: the averages of the measured batches, and the flags they raise."""
        rec: dict[str, Any] = {"epoch": int(epoch), **logs}
        for k, vals in totals.items():
            rec[k] = sum(vals) / len(vals) if vals else math.nan
        layers = {}
        for name, stats in acc.items():
            d = {k: sum(v) / len(v) for k, v in stats.items()}
            index, kind = name.split(".", 1)
            d["index"], d["type"] = int(index), kind
            d["hidden"] = hidden[int(index)]
            layers[name] = d
        rec["layers"] = layers
        rec["flags"] = []
        for finding in _gradient_findings(rec, first, self.gradient_scale):
            rec["flags"].append(finding.kind)
            if finding.kind not in {f.kind for f in self._flags}:
                self._flags.append(finding)
        return rec

    @property
    def gradient_scale(self) -> float:
        """What the gradient thresholds are multiplied by: 1 for classification losses (whose output
        gradients are probabilities minus targets, at most 1 per sample); for MSE the root of the
        first mini-batch's loss when above 1, since the output gradient grows with the error, and
        so with the targets' scale (targets in the hundreds give gradients in the hundreds)."""
        if getattr(self, "_regression", False) and self.initial_loss is not None and self.initial_loss > 1:
            return math.sqrt(self.initial_loss) if math.isfinite(self.initial_loss) else 1.0
        return 1.0

    def _take_snapshot(self) -> None:
        params = self.model.arena.params
        if self._snapshot is None or self._snapshot.shape != params.shape:
            self._snapshot = params.copy()
            self._diff = np.empty_like(params)
        else:
            np.copyto(self._snapshot, params)
        self._snapshot_valid = True

    def _measure(self, acc: dict, totals: dict) -> None:
        model = self.model
        arena = model.arena
        have_update = self._snapshot_valid
        if have_update:
            np.subtract(arena.params, self._snapshot, out=self._diff)
            self._snapshot_valid = False
        # Whole-model totals over the flat buffers (their padding is zero), then each layer's weights.
        params, grads, diff = arena.params, arena.grads, self._diff
        sq = _core.sum_squares  # Σa² in double, 8 fixed-order lanes (~5 us for 17k values)
        totals["grad_norm"].append(math.sqrt(sq(grads)))
        if have_update:
            w_all = sq(params)
            totals["update_ratio"].append(math.sqrt(sq(diff) / w_all) if w_all > 0 else math.nan)
        for i, weights in self._slots:
            g = w = u = 0.0
            for o, s in weights:
                g += sq(grads[o:o + s])
                w += sq(params[o:o + s])
                if have_update:
                    u += sq(diff[o:o + s])
            d = acc.setdefault(self.layer_names[i], {})
            d.setdefault("grad_norm", []).append(math.sqrt(g))
            d.setdefault("weight_norm", []).append(math.sqrt(w))
            if have_update:
                d.setdefault("update_ratio", []).append(math.sqrt(u / w) if w > 0 else math.nan)
        for i, s in enumerate(self._activation_stats()):
            if s is None:
                continue
            d = acc.setdefault(self.layer_names[i], {})
            d.setdefault("mean", []).append(s["mean"])
            d.setdefault("std", []).append(s["std"])
            layer = model.layers[i]
            if type(layer) is _act.ReLU:
                d.setdefault("dead", []).append(s["dead_units"])
            key = _SATURATING.get(type(layer))
            if key is not None:
                d.setdefault("saturated", []).append(s[key])

    def _activation_stats(self) -> list[dict | None]:
        """Output statistics of the activation layers (None for the others)."""
        model = self.model
        engine = model._engine
        watch = self._watch
        if engine and model.use_engine and getattr(engine, "last_code", None) is not None:
            net = engine.nets[engine.last_code]
            return [net.layer_stats(i) if w else None for i, w in enumerate(watch)]
        # Layer by layer: the outputs the activation layers kept for their backward are those of the
        # last training step (as the engine's workspace holds them); for layers that keep their input
        # instead, an evaluation-mode forward of the last batch from the first Dense/Maxout layer on.
        out: list[dict | None] = [None] * len(watch)
        missing = False
        for i, layer in enumerate(model.layers):
            if watch[i]:
                y = _saved_output(layer)
                if y is None:
                    missing = True
                elif y.ndim == 2:
                    out[i] = _core.activation_stats(y)
        if missing:
            start, x = _last_input(model)
            if x is not None:
                for i in range(start, len(watch)):
                    x = model.layers[i].forward(x, training=False)
                    if watch[i] and out[i] is None and x.ndim == 2:
                        out[i] = _core.activation_stats(x)
        return out

    # ---- queries ------------------------------------------------------------------------------
    def series(self, layer: str | int, key: str) -> list[float]:
        """One value per record of `key` ("grad_norm", "weight_norm", "update_ratio", "mean", "std",
        "dead", "saturated") for `layer`, a name like "0.Dense" or an index; NaN where it was not
        measured. Whole-model quantities are in `totals(key)`."""
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            if not 0 <= layer < len(self.layer_names):
                raise ValueError(f"GradientMonitor.series: layer index must lie in [0, "
                                 f"{len(self.layer_names)}), got {layer}")
            layer = self.layer_names[layer]
        if not isinstance(layer, str):
            raise TypeError(f"GradientMonitor.series: layer must be a name or an index, got "
                            f"{type(layer).__name__}")
        if self.layer_names and layer not in self.layer_names:
            raise ValueError(f"GradientMonitor.series: unknown layer {layer!r}; layers are {self.layer_names}")
        return [float(r["layers"].get(layer, {}).get(key, math.nan)) for r in self.records]

    def totals(self, key: str = "grad_norm") -> list[float]:
        """One value per record of a whole-model quantity ("grad_norm", "update_ratio", "loss")."""
        return [float(r.get(key, math.nan)) for r in self.records]

    @property
    def epochs(self) -> list[int]:
        return [r["epoch"] for r in self.records]
