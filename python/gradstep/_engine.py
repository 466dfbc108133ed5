"""The whole-step engine: a Sequential's training step as one C++ call (`_core.Network`).

Forward through every layer, the fused loss, backward and the optimizer update over the model's
flat parameter buffer run in C++ with the GIL released, using the same kernels in the same order
as the layer-by-layer path (so the two give the same bits). Activations and scratch live in a
workspace that the C++ side allocates for the largest batch seen and then reuses.

`build(model)` returns an engine, or None when the model uses something the engine does not
cover (Maxout, PReLU, Softmax layers; loss or optimizer subclasses of the user's own): the model
then trains layer by layer, with identical results.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core
from . import losses as _losses
from .layers import activation as _act
from .layers.batchnorm import BatchNorm
from .layers.dense import Dense
from .layers.dropout import Dropout

# Layer ops and loss/optimizer codes: keep in step with src/core/network.hpp.
_OPS = {Dense: 0, _act.Sigmoid: 1, _act.Tanh: 2, _act.ReLU: 3, _act.LeakyReLU: 4, _act.ELU: 5,
        _act.Identity: 6, Dropout: 7, BatchNorm: 8}
_OPT = {"sgd": 0, "rmsprop": 1, "adam": 2}
_LOSS_SOFTMAX, _LOSS_SOFTMAX_SOFT, _LOSS_MSE, _LOSS_BCE, _LOSS_BCE_LOGITS, _LOSS_NLL = range(6)


def _loss_codes(loss: Any) -> tuple[int, int] | None:
    """(code for label targets, code for array targets), or None if the engine cannot run it."""
    t = type(loss)
    if t is _losses.SoftmaxCrossEntropy:
        return _LOSS_SOFTMAX, _LOSS_SOFTMAX_SOFT
    if t is _losses.MSE:
        return -1, _LOSS_MSE
    if t is _losses.BinaryCrossEntropy:
        return -1, _LOSS_BCE_LOGITS if loss.from_logits else _LOSS_BCE
    if t is _losses.NLL:
        return _LOSS_NLL, -1
    return None


class Engine:
    """One `_core.Network` per target kind (labels / arrays), built on first use."""

    def __init__(self, model: Any, specs: list[tuple], codes: tuple[int, int]) -> None:
        self.model = model
        self.optimizer = model.optimizer
        self.specs = specs
        self.codes = codes
        self.params = model.parameters()
        self.dropouts = [l for l in model.layers if isinstance(l, Dropout)]
        self.batchnorms = [l for l in model.layers if isinstance(l, BatchNorm)]
        self.nets: dict[int, Any] = {}
        self.in_features = model.in_features
        self.dtype = model.dtype
        self.last_code: int | None = None
        self._attach_state()

    def _attach_state(self) -> None:
        opt = self.optimizer
        (self.state0, self.state1), _ = opt.fused_state(self.params)
        self.block = opt._arena_block(self.model.arena)
        self.keys = [(off, tuple(shape)) for off, shape in self.model.arena.slots.values()]
        for name, (off, shape) in self.model.arena.slots.items():
            self.block.names[(off, tuple(shape))] = name
        self.nets.clear()

    def _net(self, code: int) -> Any:
        net = self.nets.get(code)
        if net is None:
            arena = self.model.arena
            net = _core.Network(self.specs, code, _OPT[self.optimizer.kernel], arena.params, arena.grads,
                                [b.buffers["running_mean"] for b in self.batchnorms],
                                [b.buffers["running_var"] for b in self.batchnorms],
                                self.state0, self.state1)
            self.nets[code] = net
        return net

    def usable(self) -> bool:
        """Still valid for the model's current optimizer and state (else the model rebuilds it)."""
        return self.model.optimizer is self.optimizer and self.optimizer._flat_ok()

    def _batch(self, xb: Any, yb: Any) -> tuple[np.ndarray, Any, Any, int]:
        """(x, labels or None, target or None, loss code), checked and converted."""
        x = xb
        if not (isinstance(x, np.ndarray) and x.dtype == self.dtype and x.ndim == 2
                and x.flags.c_contiguous and x.shape[1] == self.in_features):
            x = _checks.float_array(xb, "train_step: xb", self.dtype, ndim=2)
            if x.shape[1] != self.in_features:
                raise ValueError(f"train_step: xb must have {self.in_features} features, got {x.shape[1]}")
        n = x.shape[0]
        if n < 1:
            raise ValueError("train_step: xb must have at least one row")
        if self.batchnorms and n < 2:
            raise ValueError("train_step: BatchNorm needs more than 1 sample per batch in training "
                             "(Expected more than 1 value per channel), got a batch of 1")
        labels = target = None
        y = yb
        label_code, array_code = self.codes
        if isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1 and y.flags.c_contiguous:
            labels = y
        elif label_code >= 0 and (not isinstance(y, np.ndarray) or y.ndim == 1):
            labels = _checks.class_labels(y, "train_step: yb", self.model.out_features, n)
        else:
            k = self.model.out_features
            target = _checks.float_array(y, "train_step: yb", self.dtype)
            if target.ndim == 1 and k == 1:
                target = target.reshape(-1, 1)
        if labels is not None:
            if label_code < 0:
                raise ValueError(f"train_step: {type(self.model.loss).__name__} needs targets of shape "
                                 f"(N, {self.model.out_features}), got class labels")
            if labels.shape[0] != n:
                raise ValueError(f"train_step: xb and yb must have the same number of samples, got {n} and {labels.shape[0]}")
            return x, labels, None, label_code
        if array_code < 0:
            raise ValueError(f"train_step: {type(self.model.loss).__name__} needs integer class labels (N,)")
        if target.shape != (n, self.model.out_features):
            raise ValueError(f"train_step: yb must have shape ({n}, {self.model.out_features}), got {target.shape}")
        return x, None, target, array_code

    def _prepare(self) -> None:
        if self.optimizer._pending:  # a loaded optimizer state waits to be attached: let the optimizer do it
            self._attach_state()

    def _stepped(self, step: int) -> None:
        steps = self.block.steps
        for k in self.keys:
            steps[k] = step
        self.optimizer._iterations += 1

    def step(self, xb: Any, yb: Any) -> float:
        self._prepare()
        x, labels, target, code = self._batch(xb, yb)
        seeds = [d._next_seed() for d in self.dropouts]
        step = self.block.steps.get(self.keys[0], 0) + 1
        value = self._net(code).train_step(x, labels, target, seeds, self.optimizer.kernel_hyper(), step)
        self._stepped(step)
        self.last_code = code
        return value

    def forward_backward(self, xb: Any, yb: Any) -> float:
        """Forward, loss and backward: the loss (with the L2 terms); gradients in arena.grads."""
        self._prepare()
        x, labels, target, code = self._batch(xb, yb)
        seeds = [d._next_seed() for d in self.dropouts]
        value = self._net(code).forward_backward(x, labels, target, seeds)
        self.last_code = code
        return value

    def update(self) -> None:
        """The optimizer's update over the flat buffers, from arena.grads as it is now."""
        self._prepare()
        step = self.block.steps.get(self.keys[0], 0) + 1
        net = self._net(self.last_code if self.last_code is not None else max(self.codes))
        net.update(self.optimizer.kernel_hyper(), step)
        self._stepped(step)

    def output(self) -> np.ndarray:
        return self.nets[self.last_code].output()


def build(model: Any) -> Engine | None:
    opt, loss = model.optimizer, model.loss
    if not model.arena.slots or getattr(opt, "kernel", "") not in _OPT or not opt._flat_ok():
        return None
    if type(opt) not in _builtin_optimizers():
        return None  # a user's subclass may have its own update rule
    codes = _loss_codes(loss)
    if codes is None:
        return None
    specs = []
    features = model.in_features
    slots = model.arena.slots
    for i, layer in enumerate(model.layers):
        op = _OPS.get(type(layer))
        if op is None or features is None:
            return None
        out = layer.output_features(features)
        w = b = -1
        alpha = eps = l2 = 0.0
        if isinstance(layer, Dense):
            w = slots[f"{i}.weight"][0]
            b = slots[f"{i}.bias"][0] if layer.bias else -1
            l2 = layer.l2
        elif isinstance(layer, BatchNorm):
            w, b = slots[f"{i}.gamma"][0], slots[f"{i}.beta"][0]
            alpha, eps = layer.momentum, layer.eps
        elif isinstance(layer, (_act.LeakyReLU, _act.ELU)):
            alpha = layer.alpha
        elif isinstance(layer, Dropout):
            alpha = layer.p
        specs.append((op, features, out, w, b, float(alpha), float(eps), float(l2)))
        features = out
    return Engine(model, specs, codes)


def _builtin_optimizers() -> tuple:
    from . import optim
    return (optim.SGD, optim.RMSprop, optim.Adam, optim.AdamW)
