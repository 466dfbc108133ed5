"""TiedDense: a decoder layer that uses another Dense layer's weight, transposed.

    y = x @ encoder.weight.T + b      (encoder.weight: (in, out), so y has encoder.in features)

The weight is shared, not copied: the layer reads the encoder's live weight at every forward, and
its part of the weight gradient, (dy.T @ x) of shape (in, out), is added to the encoder's weight
gradient. The bias is the layer's own parameter.

Order of the gradient writes: every layer's `backward` overwrites its own parameter gradients, and
in a model's backward pass the decoder runs before its encoder, whose backward would then
overwrite the decoder's part. So `backward` keeps its part, and `_after_backward` (called by
`Sequential.backward` once every layer has written its own gradients) adds it to the encoder's.
Used on its own, call `_after_backward()` after the encoder's backward.

It runs on the dense kernels with a transposed copy of the weight (layer-by-layer path: the fused
whole-step engine does not cover it, so a model holding one trains layer by layer). The encoder
must belong to the same model, or its weight gets the gradient but no update. Not registered for
model files: its config would have to name another layer of the model.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .base import Layer
from .dense import Dense

__all__ = ["TiedDense"]


class TiedDense(Layer):
    """y = x @ encoder.weight.T + b, sharing (and training) the encoder's weight."""

    has_params = True

    def __init__(self, encoder: Dense, *, bias: bool = True) -> None:
        super().__init__()
        if not isinstance(encoder, Dense):
            raise TypeError(f"TiedDense: encoder must be a gs.Dense layer, got {type(encoder).__name__}")
        if encoder.in_features is None:
            raise ValueError("TiedDense: the encoder Dense does not know its in_features yet; build it as "
                             "Dense(in_features, out_features) or run it once")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"TiedDense: bias must be a bool, got {type(bias).__name__}")
        self.encoder = encoder
        self.bias = bool(bias)
        self.in_features = encoder.out_features
        self.out_features = encoder.in_features
        self._weight_grad_part: np.ndarray | None = None
        self._allocate(encoder.dtype, np.random.default_rng(0))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"bias": (self.out_features,)} if self.bias else {}

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"bias": np.zeros(self.out_features)} if self.bias else {}

    def _weight_t(self) -> np.ndarray:
        """The encoder's current weight, transposed to (out, in) and contiguous for the kernels."""
        return np.ascontiguousarray(self.encoder.params["weight"].T, dtype=self.dtype)

    def forward(self, x: Any, training: bool = True) -> np.ndarray:
        x = self._input(x, 2, self.in_features)
        wt = self._weight_t()
        y = _core.dense_forward(x, wt, self._p.get("bias"))
        self._saved = (x, wt)
        self._weight_grad_part = None
        self._remember_output(y)
        return y

    def backward(self, grad_y: Any) -> np.ndarray:
        dy = self._grad_output(grad_y)
        x, wt = self._saved
        dwt = np.empty_like(wt)
        dx = _core.dense_backward(dy, x, wt, dwt, self._g.get("bias"), True, 0.0)
        self._weight_grad_part = dwt.T  # d loss / d encoder.weight through this layer, (in, out)
        return dx

    def _after_backward(self) -> None:
        if self._weight_grad_part is not None:
            self.encoder.grads["weight"][...] += self._weight_grad_part
            self._weight_grad_part = None

    def input_features(self) -> int:
        return self.in_features

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"TiedDense: input must be ({self.in_features},) per sample (its encoder's "
                             f"outputs), got shape {tuple(in_shape)}")
        return (self.out_features,)

    def get_config(self) -> dict[str, Any]:
        return {"bias": self.bias}

    def __repr__(self) -> str:
        return f"TiedDense({self.in_features} -> {self.out_features}, tied to a Dense({self.out_features}, {self.in_features}))"
