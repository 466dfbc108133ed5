"""fit's fast path: an epoch's mini-batches run in C++ (`Engine.train_batches`), a chunk of
batches per call with the GIL released, with the same bits as fit's per-batch loop.

The per-batch loop gathers each batch's rows with np.take, calls the C++ train step, adds
`loss · rows` to the running loss and feeds the metrics tracker, then runs the callbacks' batch
hooks, the progress bar and the Ctrl-C check. Here the C++ side does the gathering, the steps, the
running loss and the "accuracy" counts for a chunk of batches; Python wakes up between chunks
(each sized to take about `CHUNK_SECONDS`) for the progress bar, Ctrl-C and `stop_training`, and
feeds the tracker the other metrics from the outputs the chunk kept.

`plan` takes this path only when it gives what the per-batch loop gives. It keeps the per-batch
loop (and says why in `model._fit_path`) for:
- a model that is not on the CPU (the CUDA engine gathers batches on the device);
- data-parallel training (gradients are all-reduced between the halves of every step);
- a model without the whole-step engine (a user's layer, loss or optimizer, `use_engine = False`):
  it trains layer by layer;
- a callback with an `on_batch_end` hook (it must see every batch: GradientMonitor, a user's
  callback), except TerminateOnNaN, whose hook acts only on a non-finite loss: the chunk stops
  right after such a batch and the hook then runs for it;
- a callable metric (arbitrary Python, called per batch, which could look at the model);
- targets that a batch would convert or refuse (the per-batch path converts or raises);
- `model._per_batch_fit = True` (for tests and comparisons).
Dropout, BatchNorm, sample and class weights, clipping, every built-in optimizer and loss, float64
models and regression targets run here: the C++ loop calls the same step with the same inputs
(dropout seeds drawn in Python in the same order, optimizer step numbers continued).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from . import _engine
from . import distributed as _distributed
from ._callback import Callback
from .metrics import CustomMetric

CHUNK_SECONDS = 0.1  # Python wakes up about this often (progress bar, Ctrl-C)
FIRST_CHUNK = 1      # batches in the first chunk, before the step time is known (a big step may take seconds)


def _batch_hook(cb: Any) -> Any:
    """The callback's on_batch_end, or None when it has none or the base class's no-op."""
    fn = getattr(cb, "on_batch_end", None)
    if fn is None or getattr(fn, "__func__", None) is Callback.on_batch_end:
        return None
    return fn


def plan(model: Any, run: Any, callbacks: list, y: np.ndarray, weights: Any,
         on_device: bool) -> FastEpoch | None:
    """The fast path for this epoch, or None (model._fit_path then says why)."""
    from .callbacks import TerminateOnNaN

    def no(why: str) -> None:
        model._fit_path = "per-batch: " + why

    if model._per_batch_fit:
        return no("model._per_batch_fit is set")
    if on_device or model.device != "cpu":
        return no(f"the model is on {model.device}")
    if run is not _distributed._SINGLE:
        return no("data-parallel training all-reduces every step's gradients")
    engine = model._get_engine()
    if not engine:
        return no("the model trains layer by layer (no whole-step engine)")
    nonfinite_hooks = []
    for cb in callbacks:
        fn = _batch_hook(cb.cb)
        if fn is None:
            continue
        if getattr(fn, "__func__", None) is TerminateOnNaN.on_batch_end:
            nonfinite_hooks.append(fn)
        else:
            return no(f"the callback {type(cb.cb).__name__} has an on_batch_end hook")
    if any(isinstance(m, CustomMetric) for m in model.metrics):
        return no("a callable metric runs Python on every batch")
    targets = engine.epoch_targets(y)
    if targets is None:
        return no("the targets need converting per batch")
    model._fit_path = "epoch"
    return FastEpoch(model, engine, targets, weights, nonfinite_hooks)


class FastEpoch:
    """One epoch's batches through `Engine.train_batches`, chunk by chunk."""

    def __init__(self, model: Any, engine: Any, targets: tuple, weights: Any, nonfinite_hooks: list) -> None:
        self.model, self.engine = model, engine
        self.labels, self.target, self.kind = targets
        self.y = self.labels if self.labels is not None else self.target
        self.weights = weights
        self.nonfinite_hooks = nonfinite_hooks
        metrics = list(model.metrics)
        self.accuracy = (_engine.accuracy_rule(model.loss, self.labels is not None, tuple(model.out_shape))
                         if "accuracy" in metrics else None)
        # The metrics the tracker computes from the chunk's outputs (all but a C++-counted accuracy).
        self.from_outputs = [m for m in metrics if not (m == "accuracy" and self.accuracy is not None)]

    def _chunk(self, b: int, n_batches: int, batch_size: int) -> int:
        if self.model.stop_training:
            return 1  # set before the epoch (on_epoch_begin): the per-batch loop stops after a batch
        per_batch = self.engine.batch_seconds.get(batch_size)
        if per_batch is None:
            return min(n_batches - b, FIRST_CHUNK)
        return min(n_batches - b, max(1, int(CHUNK_SECONDS / max(per_batch, 1e-9))))

    def run(self, X: np.ndarray, order: Any, batch_size: int, sums: dict, tracker: Any, bar: Any,
            interrupt: Any, epoch: int) -> tuple[int, bool]:
        """Train every batch of the epoch (fewer when training stops); returns (index of the last
        batch run, whether training stopped inside the epoch), as fit's per-batch loop ends."""
        model, engine = self.model, self.engine
        n = X.shape[0]
        n_batches = -(-n // batch_size)
        if order is not None and order.dtype != np.int64:
            order = order.astype(np.int64)
        model._last_output = None
        outputs = None
        b = 0
        while b < n_batches:
            count = self._chunk(b, n_batches, batch_size)
            lo, hi = b * batch_size, min(n, (b + count) * batch_size)
            if self.from_outputs:
                if outputs is None or outputs.shape[0] < hi - lo:
                    outputs = np.empty((hi - lo,) + tuple(model.out_shape), model.dtype)
                out = outputs[:hi - lo]
            else:
                out = None
            t0 = time.perf_counter()
            done, sums["loss"], last, correct, decisions = engine.train_batches(
                X, self.labels, self.target, self.kind, self.weights, order, batch_size, b, b + count,
                sums["loss"], self.accuracy, out, bool(self.nonfinite_hooks))
            if done == count:
                engine.batch_seconds[batch_size] = (time.perf_counter() - t0) / done
            if self.accuracy is not None:
                tracker.sums["accuracy"] += float(correct)
                tracker.counts["accuracy"] += decisions
            if out is not None:
                for j in range(b, b + done):
                    s, e = j * batch_size, min(n, (j + 1) * batch_size)
                    yb = self.y[order[s:e]] if order is not None else self.y[s:e]
                    tracker.update(out[s - lo:e - lo], yb, self.from_outputs)
            b += done
            if bar is not None:
                bar.update(done)
                bar.set_postfix_str(f"loss={sums['loss'] / min(n, b * batch_size):.4f}", refresh=False)
            if self.nonfinite_hooks and not math.isfinite(last):
                size = min(n, b * batch_size) - (b - 1) * batch_size
                for fn in self.nonfinite_hooks:  # TerminateOnNaN, after the non-finite batch
                    fn(b - 1, {"loss": last, "size": size})
            if interrupt.requested:  # Ctrl-C: the chunk is done; the epoch is not
                if bar is not None:
                    bar.close()
                model.interrupted_at = (epoch, b, n_batches)
                raise KeyboardInterrupt(f"fit: interrupted in epoch {epoch + 1} after batch {b} "
                                        f"of {n_batches}")
            if model.stop_training:
                return b - 1, True
        return b - 1, False
