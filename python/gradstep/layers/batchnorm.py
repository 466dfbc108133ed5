"""Batch normalization over the features of (N, F) input, as PyTorch's BatchNorm1d computes it,
and over the channels of (N, C, L) / (N, C, H, W) input (BatchNorm1d / BatchNorm2d)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, _core, _random
from .base import Layer, building_shapes_only, register

__all__ = ["BatchNorm"]


@register
class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per feature.

    Training (`forward(x, training=True)`) normalizes with the batch's mean and biased variance
    and updates the running statistics as PyTorch's BatchNorm1d does:
    running = (1 - momentum) * running + momentum * batch, with the *unbiased* batch variance for
    `running_var`. Evaluation (`training=False`) normalizes with the running statistics.
    `backward` differentiates through the batch statistics after a training forward, and through
    the plain per-feature affine map after an evaluation forward.

    Parameters `gamma` (ones) and `beta` (zeros), shape (num_features,). Buffers (`buffers`, live
    views, not trained): `running_mean` (zeros) and `running_var` (ones). Training needs more than
    one row per batch; a constant feature gives finite outputs and gradients (its variance is 0,
    so it is scaled by 1/sqrt(eps)).
    """

    has_params = True
    op_kind = "BatchNorm"

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype: Any = "float32") -> None:
        super().__init__()
        self.num_features = _checks.check_int(num_features, "BatchNorm: num_features", 1)
        self.momentum = _checks.check_float(momentum, "BatchNorm: momentum", 0.0, 1.0)
        self.eps = _checks.check_float(eps, "BatchNorm: eps", 0.0, min_inclusive=False)
        self._allocate(dtype, _random.generator())  # draws nothing: gamma = 1, beta = 0
        self._running_mean = self._running_var = None
        if not building_shapes_only():  # else made by _cast_buffers when a Sequential lays it out
            self._cast_buffers(self.dtype)

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"gamma": np.ones(self.num_features), "beta": np.zeros(self.num_features)}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {"running_mean": self._running_mean, "running_var": self._running_var}

    def _buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def _cast_buffers(self, dtype: np.dtype) -> None:
        if self._running_mean is not None and self._running_mean.dtype == dtype:
            return  # keep the arrays, so views handed out earlier stay live
        for name, start in (("_running_mean", 0.0), ("_running_var", 1.0)):
            old = getattr(self, name)
            new = _core.alloc_zeros(self.num_features, dtype)
            new[...] = start if old is None else old
            setattr(self, name, new)

    def _check_input(self, x: Any) -> np.ndarray:
        a = _checks.numeric_array(x, "BatchNorm.forward: x")
        if a.ndim not in (2, 3, 4):
            raise ValueError(f"BatchNorm.forward: x must be (N, {self.num_features}), "
                             f"(N, {self.num_features}, L) or (N, {self.num_features}, H, W), got a "
                             f"{a.ndim}-D array of shape {a.shape}")
        if a.ndim == 2:
            return self._input(a, 2, self.num_features)
        if a.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm.forward: x must have {self.num_features} channels "
                             f"(axis 1), got shape {a.shape}")
        return self._input(a, a.ndim)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape it is given: (F,), (C, L) or (C, H, W) without the batch axis."""
        shape = tuple(int(s) for s in input_shape)
        if len(shape) not in (1, 2, 3) or shape[0] != self.num_features:
            raise ValueError(f"BatchNorm: input must have {self.num_features} features or "
                             f"channels per sample, got shape {shape}")
        return super().output_shape(shape)

    def _op_forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if training and x.shape[0] * math.prod(x.shape[2:]) < 2:
            extra = " (use training=False for a single row)" if x.ndim == 2 else " (use training=False)"
            raise ValueError("BatchNorm.forward: Expected more than 1 value per channel when "
                             f"training, got x of shape {x.shape}{extra}")
        return super()._op_forward(x, training)

    def _op_attrs(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def input_features(self) -> int:
        return self.num_features

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps,
                "dtype": self.dtype.name}
