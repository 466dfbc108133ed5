"""Copies of models and layers for the checks (the model given is never modified), and the small
helpers they share."""
from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from .. import losses as _losses
from ..layers import LAYER_REGISTRY
from ..layers import activation as _act
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..model import Sequential


def _clone_layer(layer: Layer, dtype: Any = None, dropout_as_identity: bool = False,
                 drop_l2: bool = False) -> Layer:
    """A new layer of the same class and configuration, with the same parameter and buffer values.

    A layer whose constructor takes `seed` gets seed 0 when it has none, so that building the copy
    draws nothing from the library's generator (the user's later results stay reproducible)."""
    if dropout_as_identity and isinstance(layer, Dropout):
        return _act.Identity()
    cls = type(layer)
    if LAYER_REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"diagnostics: layer {layer!r} is not a registered gs layer, so it cannot be "
                        f"copied (decorate its class with gs.layers.base.register)")
    cfg = dict(layer.get_config())
    if dtype is not None and "dtype" in cfg:
        cfg["dtype"] = np.dtype(dtype).name
    if drop_l2 and cfg.get("l2"):
        cfg["l2"] = 0.0
    if "seed" in inspect.signature(cls).parameters and cfg.get("seed") is None:
        cfg["seed"] = 0
    try:
        new = cls(**cfg)
    except (TypeError, ValueError) as e:
        raise TypeError(f"diagnostics: cannot rebuild {layer!r} from its get_config() ({e})") from None
    for name, value in layer.params.items():
        new._p[name][...] = value
    for name, value in layer.buffers.items():
        new.buffers[name][...] = value
    return new


def _clone_model(model: Sequential, dtype: Any = None, dropout_as_identity: bool = False,
                 drop_l2: bool = False, optimizer_state: bool = False) -> Sequential:
    """A copy of `model` (weights, buffers, loss, optimizer configuration and, when asked, its
    state) that shares nothing with it."""
    layers = [_clone_layer(l, dtype, dropout_as_identity, drop_l2) for l in model.layers]
    new = Sequential(layers, dtype=model.dtype if dtype is None else dtype, seed=None)
    new.load_state_dict(model.state_dict())
    new.use_engine = model.use_engine
    if model.loss is not None and model.optimizer is not None:
        opt = model.optimizer
        new.compile(loss=copy.deepcopy(model.loss), optimizer=type(opt)(**opt.get_config()),
                    metrics=list(model.metrics))
        if optimizer_state:
            new.optimizer.load_state_dict(opt.state_dict(), new.parameters())
    return new


def _require_model(model: Any, fn: str, compiled: bool = True) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"{fn}: model must be a gs.Sequential, got {type(model).__name__}")
    if compiled:
        model._require_compiled(fn)
    return model


def _subset(n: int, k: int, seed: int) -> np.ndarray:
    """`k` of `n` row indices, drawn with a generator of their own (sorted, all rows when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _is_classification(model: Sequential) -> bool:
    """Single-label classification, where "accuracy" means something (not multi-label BCE)."""
    return model._labels_loss() or (isinstance(model.loss, _losses.BinaryCrossEntropy)
                                    and model.out_features == 1)


def _accuracy(model: Sequential, out: np.ndarray, y: np.ndarray) -> float:
    from .. import metrics as _metrics
    s, c = _metrics.batch_sums("accuracy", out, y, model.loss)
    return s / max(c, 1)
