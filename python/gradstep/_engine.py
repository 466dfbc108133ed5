"""The whole-step engine: a Sequential's training step in C++ (`_core.Network`).

A network is the model's layers' C++ ops (each layer names its op and gives its attributes and
parameter slots), the fused loss and the optimizer over the model's flat buffers. Forward through
every op, the loss, backward and the update run in C++ with the GIL released, with the same op
code a lone layer's `forward`/`backward` runs (so the layer-by-layer path gives the same bits).
Activations and scratch live in a workspace that the C++ side allocates for the largest batch seen
and then reuses.

`Engine.train_batches` runs many steps of one epoch in one call (fit's fast path, see
gradstep/_epoch.py): the C++ side gathers each batch's rows in the epoch's order and runs exactly the
steps `step` would, keeping the running loss sum and the accuracy counts.

The step also runs in two halves, `forward_backward` (gradients left in the model's flat
`arena.grads`) and `update`, so that data parallelism can all-reduce the gradient buffer between.

`build(model)` returns an engine, or None when the model holds something that only Python defines
(a user's own layer, loss or optimizer subclass): the model then trains layer by layer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core, _random
from . import losses as _losses


def parse_targets(y: Any, label_kind: str | None, k: int, n: int, dtype: Any) -> tuple[Any, Any]:
    """(labels, None) or (None, target) for a step's yb: int64 (N,) labels pass as they are,
    other 1-D input (or any non-array) is read as class labels when the loss takes labels, the
    rest as a float target, a 1-D one reshaped to (N, 1) when there is one output."""
    if isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1 and y.flags.c_contiguous:
        return y, None
    if label_kind is not None and (not isinstance(y, np.ndarray) or y.ndim == 1):
        return _checks.class_labels(y, "train_step: yb", k, n), None
    target = _checks.float_array(y, "train_step: yb", dtype)
    if target.ndim == 1 and k == 1:
        target = target.reshape(-1, 1)
    return None, target


# The rules by which train_batches counts "accuracy" (core/network.hpp AccuracyRule).
ACC_NONE, ACC_ARGMAX_LABELS, ACC_ARGMAX_ARGMAX, ACC_THRESHOLD_LABELS, ACC_THRESHOLD_HALF = range(5)


def accuracy_rule(loss: Any, labels: bool, out_shape: tuple[int, ...]) -> tuple[int, float] | None:
    """(rule, threshold) by which C++ counts "accuracy" as `loss.predicted_classes(outputs) ==
    loss.target_classes(target)` counts it (see metrics.batch_sums), for class labels (`labels`)
    or float targets of the model's output shape; None when no rule matches (the metric is then
    computed in Python from the outputs). Read off which methods the loss's class runs."""
    if len(out_shape) != 1:
        return None
    k = out_shape[0]
    cls = type(loss)
    pred, tgt = cls.predicted_classes, cls.target_classes
    threshold = float(loss._threshold)
    argmax = (pred is _losses._ClassLoss.predicted_classes
              or (pred is _losses.Loss.predicted_classes and k > 1))
    first_over = pred is _losses.Loss.predicted_classes and k == 1  # (N,) from output column 0
    each_over = pred is _losses.BinaryCrossEntropy.predicted_classes  # every output its own decision
    if labels:
        if tgt is not _losses.Loss.target_classes:
            return None
        if argmax:
            return ACC_ARGMAX_LABELS, threshold
        if first_over:
            return ACC_THRESHOLD_LABELS, threshold
        return None
    if tgt is _losses.Loss.target_classes:  # float targets: argmax of rows (K > 1), else >= 0.5
        if argmax and k > 1:
            return ACC_ARGMAX_ARGMAX, threshold
        if first_over:
            return ACC_THRESHOLD_HALF, threshold
        return None
    if tgt is _losses.BinaryCrossEntropy.target_classes and each_over:
        return ACC_THRESHOLD_HALF, threshold
    return None


class Engine:
    """One `_core.Network` per target kind (labels / arrays), built on first use."""

    def __init__(self, model: Any, ops: list[tuple], kinds: tuple[str | None, str | None],
                 seeded: list, min_batch: int) -> None:
        self.model = model
        self.optimizer = model.optimizer
        self.ops = ops
        self.kinds = kinds
        self.params = model.parameters()
        self.seeded = seeded  # the layers whose ops draw random numbers, in order (Dropout)
        self.min_batch = min_batch
        self.nets: dict[str, Any] = {}
        self.in_shape = model.input_shape
        self.dtype = model.dtype
        self.last_code: str | None = None
        self.batch_seconds: dict[int, float] = {}  # batch size -> seconds per step (fit's chunking)
        self._no_seeds = np.empty((0, 0), np.uint64)
        self._attach_state()

    def _attach_state(self) -> None:
        opt = self.optimizer
        (self.state0, self.state1), _ = opt.fused_state(self.params)
        self.block = opt._arena_block(self.model.arena)
        self.keys = [(off, tuple(shape)) for off, shape in self.model.arena.slots.values()]
        for name, (off, shape) in self.model.arena.slots.items():
            self.block.names[(off, tuple(shape))] = name
        self.nets.clear()

    def _net(self, kind: str) -> Any:
        """The network for loss kind `kind`; "infer": the one evaluation runs (a workspace of its
        own, so that it leaves the last training step's outputs alone)."""
        net = self.nets.get(kind)
        if net is None:
            arena = self.model.arena
            loss = kind if kind != "infer" else (self.kinds[0] or self.kinds[1])
            net = _core.Network(self.ops, self.in_shape, loss, self.optimizer.kernel, arena.params,
                                arena.grads, self.state0, self.state1)
            self.nets[kind] = net
        return net

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The outputs for x (the model's dtype and input shape) in evaluation mode, in one C++
        call: the bits of the layers' forward(training=False)."""
        self._prepare()
        return self._net("infer").infer(x)

    def usable(self) -> bool:
        """Still valid for the model's current optimizer and state (else the model rebuilds it)."""
        return self.model.optimizer is self.optimizer and self.optimizer._flat_ok()

    def _batch(self, xb: Any, yb: Any) -> tuple[np.ndarray, Any, Any, str]:
        """(x, labels or None, target or None, loss kind), checked and converted."""
        x = xb
        want = (self.in_shape if isinstance(self.in_shape, tuple) else ())
        if not (isinstance(x, np.ndarray) and x.dtype == self.dtype and x.flags.c_contiguous
                and x.shape[1:] == want):
            x = _checks.float_array(xb, "train_step: xb", self.dtype)
            if x.shape[1:] != want:
                if len(want) == 1 and x.ndim == 2:
                    raise ValueError(f"train_step: xb must have {want[0]} features, got {x.shape[1]}")
                raise ValueError(f"train_step: xb must have shape (N, {', '.join(map(str, want))}), "
                                 f"got {x.shape}")
        n = x.shape[0]
        if n < 1:
            raise ValueError("train_step: xb must have at least one row")
        if n < self.min_batch:
            raise ValueError(f"train_step: BatchNorm needs more than 1 sample per batch in training "
                             f"(Expected more than 1 value per channel), got a batch of {n}")
        label_kind, array_kind = self.kinds
        k = self.model.out_features
        labels, target = parse_targets(yb, label_kind, k, n, self.dtype)
        if labels is not None:
            if label_kind is None:
                loss_name = type(self.model.loss).__name__
                raise ValueError(f"train_step: {loss_name} needs targets of shape (N, {k}), got class labels")
            if labels.shape[0] != n:
                raise ValueError(f"train_step: xb and yb must have the same number of samples, got {n} "
                                 f"and {labels.shape[0]}")
            return x, labels, None, label_kind
        if array_kind is None:
            loss_name = type(self.model.loss).__name__
            raise ValueError(f"train_step: {loss_name} needs integer class labels (N,)")
        if target.shape != (n, k):
            raise ValueError(f"train_step: yb must have shape ({n}, {k}), got {target.shape}")
        return x, None, target, array_kind

    def _prepare(self) -> None:
        if self.optimizer._pending:  # a loaded optimizer state waits to be attached
            self._attach_state()

    def _weights(self, sample_weight: Any, n: int, fn: str) -> np.ndarray | None:
        if sample_weight is None:
            return None
        return _losses.check_sample_weight(sample_weight, n, f"{fn}: sample_weight")

    def forward_backward(self, xb: Any, yb: Any, sample_weight: Any = None) -> float:
        """Forward, loss and backward: the loss (with the L2 terms); gradients in arena.grads."""
        self._prepare()
        x, labels, target, kind = self._batch(xb, yb)
        w = self._weights(sample_weight, x.shape[0], "forward_backward")
        seeds = [layer._next_seed() for layer in self.seeded]
        value = self._net(kind).forward_backward(x, labels, target, seeds, w)
        self.last_code = kind
        return value

    def update(self) -> None:
        """The optimizer's update over the flat buffers, from arena.grads as it is now."""
        self._prepare()
        step = self.block.steps.get(self.keys[0], 0) + 1
        net = self.nets.get(self.last_code) or self._net(self.kinds[0] or self.kinds[1])
        hyper, clip = self.optimizer._kernel_args()
        net.update(hyper, step, clip)
        self._stepped(step)

    def _stepped(self, step: int, count: int = 1) -> None:
        """`count` steps done, the last one step number `step`."""
        steps = self.block.steps
        for k in self.keys:
            steps[k] = step
        self.optimizer._iterations += count

    def step(self, xb: Any, yb: Any, sample_weight: Any = None, check_finite: bool = False) -> float:
        """One training step. `check_finite`: refuse a batch holding NaN or inf with
        _checks.check_finite's ValueError, before anything changes (train_step's check; fit
        checked its whole data once). The network scans the batch in its call when xb and yb
        reach it as they came (not converted, so that "row r, column c" counts the same entries;
        integer labels hold no NaN); anything converted on the way, and a model whose dropout
        draws seeds before the call (a refused batch must leave those streams alone), is checked
        here, in Python, on the arrays as given."""
        self._prepare()
        try:
            x, labels, target, kind = self._batch(xb, yb)
        except ValueError:
            if check_finite:  # a NaN is reported before a shape error, as train_step always did
                self._check_finite(xb, yb)
            raise
        if check_finite and (self.seeded or x is not xb or not (
                labels is yb or target is yb or (isinstance(yb, np.ndarray) and yb.dtype.kind in "biu"))):
            self._check_finite(xb, yb)
            check_finite = False
        w = None if sample_weight is None else self._weights(sample_weight, x.shape[0], "train_step")
        seeds = [layer._next_seed() for layer in self.seeded] if self.seeded else ()
        step = self.block.steps.get(self.keys[0], 0) + 1
        hyper, clip = self.optimizer._kernel_args()
        value = self._net(kind).train_step(x, labels, target, seeds, hyper, step, clip, w,
                                           check_finite)
        self._stepped(step)
        self.last_code = kind
        return value

    @staticmethod
    def _check_finite(xb: Any, yb: Any) -> None:
        _checks.check_finite(xb, "train_step: xb")
        _checks.check_finite(yb, "train_step: yb")

    def epoch_targets(self, y: np.ndarray) -> tuple[Any, Any, str] | None:
        """(labels or None, target or None, loss kind) for fit's whole, checked y, as every batch of
        it would reach the network through `_batch`; None when a batch would be converted or
        refused there (fit then takes the per-batch path, which converts or raises)."""
        label_kind, array_kind = self.kinds
        if y.ndim == 1:
            if y.dtype == np.int64 and y.flags.c_contiguous and label_kind is not None:
                return y, None, label_kind
            return None
        out_shape = self.model.out_shape
        if (array_kind is not None and y.dtype == self.dtype and y.flags.c_contiguous
                and out_shape is not None and y.shape[1:] == tuple(out_shape)):
            return None, y, array_kind
        return None

    def _draw_seeds(self, count: int) -> np.ndarray:
        """The dropout seeds of the next `count` steps, drawn in the order `step` draws them."""
        if not self.seeded:
            if self._no_seeds.shape[0] < count:
                self._no_seeds = np.empty((count, 0), np.uint64)
            return self._no_seeds[:count]
        return np.array([[layer._next_seed() for layer in self.seeded] for _ in range(count)],
                        dtype=np.uint64)

    def _seed_generators(self) -> list[np.random.Generator]:
        """Every generator `_draw_seeds` may advance (each seeded layer's, the library's)."""
        gens = [getattr(layer, "_rng", None) for layer in self.seeded] + [_random.generator()]
        return list({id(g): g for g in gens if g is not None}.values())

    def train_batches(self, X: np.ndarray, labels: Any, target: Any, kind: str, weights: Any,
                      order: Any, batch_size: int, b0: int, b1: int, loss_sum: float,
                      accuracy: tuple[int, float] | None, outputs: Any = None,
                      stop_nonfinite: bool = False) -> tuple[int, float, float, int, int]:
        """Batches [b0, b1) of an epoch in one C++ call, each exactly what `step` does on the
        batch's rows (fit's per-batch path): the same dropout seeds, optimizer step numbers and
        iteration count. Returns (batches run, loss_sum continued, last loss, correct, decisions);
        fewer batches than asked only with `stop_nonfinite`, after a non-finite loss, and then
        the seeds of the batches not run are given back to their generators."""
        self._prepare()
        count = b1 - b0
        saved = [(g, g.bit_generator.state) for g in self._seed_generators()] if self.seeded else []
        seeds = self._draw_seeds(count)
        step = self.block.steps.get(self.keys[0], 0) + 1
        rule, threshold = accuracy if accuracy is not None else (ACC_NONE, 0.5)
        hyper, clip = self.optimizer._kernel_args()
        result = None
        try:
            result = self._net(kind).train_batches(
                X, labels, target, weights, order, batch_size, b0, b1, seeds, hyper, step, clip,
                loss_sum, rule,
                threshold, outputs, stop_nonfinite)
        finally:  # also when a KeyboardInterrupt lands right after the call: the steps count
            done = 0 if result is None else result[0]
            if saved and done < count:  # rewind, then draw again only the seeds that were used
                for g, state in saved:
                    g.bit_generator.state = state
                self._draw_seeds(done)
            if done:
                self._stepped(step + done - 1, done)
                self.last_code = kind
        return result

    def output(self) -> np.ndarray:
        return self.nets[self.last_code].output()


def build(model: Any) -> Engine | None:
    """The engine for `model`, or None when something in it is defined only in Python."""
    opt, loss = model.optimizer, model.loss
    if (model.input_shape is None or not model.arena.slots
            or getattr(opt, "kernel", "") not in ("sgd", "rmsprop", "adam") or not opt._flat_ok()):
        return None
    if type(opt) not in _builtin_optimizers():
        return None  # a user's subclass may have its own update rule
    if type(loss).__module__ != _losses.__name__:
        return None  # a user's loss (or a subclass of one of ours) is defined by its Python code
    kinds = loss.fused_kinds()
    if kinds == (None, None):
        return None
    ops, seeded, min_batch = [], [], 1
    for layer, in_shape in zip(model.layers, model._in_shapes):
        if not layer.runs_as_op():
            return None
        attrs = layer._op_attrs()
        info = _core.op_info(layer.op_kind, attrs, in_shape)
        if info["needs_seed"]:
            seeded.append(layer)
        min_batch = max(min_batch, info["min_training_batch"])
        ops.append((layer.op_kind, attrs, layer._op_slots(), layer._op_buffers()))
    return Engine(model, ops, kinds, seeded, min_batch)


def _builtin_optimizers() -> tuple:
    from . import optim
    return (optim.SGD, optim.RMSprop, optim.Adam, optim.AdamW)
