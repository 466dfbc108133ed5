"""Dense (fully connected) layer: y = x @ W + b, W of shape (in_features, out_features)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _core, _random
from .. import init as _init
from .base import Layer, register

__all__ = ["Dense"]


@register
class Dense(Layer):
    """y = x @ W + b.

    `l2` adds (l2/2)·‖W‖² to the loss (see `penalty()`) and l2·W to the weight gradient.
    """

    has_params = True

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: Any = "he", l2: float = 0.0, dtype: Any = "float32",
                 seed: int | None = None) -> None:
        super().__init__()
        self.in_features = _checks.check_int(in_features, "Dense: in_features", 1)
        self.out_features = _checks.check_int(out_features, "Dense: out_features", 1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"Dense: bias must be a bool, got {type(bias).__name__}")
        self.bias = bool(bias)
        _init.get(init, "Dense: init")
        self.init = init
        self.l2 = _checks.check_float(l2, "Dense: l2", 0.0)
        self.seed = seed
        self._allocate(dtype, _random.generator(seed))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.in_features, self.out_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        values = {"weight": _init.draw(self.init, (self.in_features, self.out_features), rng,
                                       "Dense: init")}
        if self.bias:
            values["bias"] = np.zeros(self.out_features)
        return values

    def forward(self, x: Any, training: bool = True) -> np.ndarray:
        x = self._input(x, 2, self.in_features)
        y = _core.dense_forward(x, self._p["weight"], self._p.get("bias"))
        self._saved = x
        self._remember_output(y)
        return y

    def backward(self, grad_y: Any) -> np.ndarray:
        dy = self._grad_output(grad_y)
        return _core.dense_backward(dy, self._saved, self._p["weight"], self._g["weight"],
                                    self._g.get("bias"), True, self.l2)

    def penalty(self) -> float:
        if self.l2 == 0.0:
            return 0.0
        return 0.5 * self.l2 * _core.sum_squares(self._p["weight"])

    def input_features(self) -> int:
        return self.in_features

    def output_features(self, in_features: int) -> int:
        return self.out_features

    def get_config(self) -> dict[str, Any]:
        cfg = {"in_features": self.in_features, "out_features": self.out_features,
               "bias": self.bias, "l2": self.l2, "dtype": self.dtype.name}
        if isinstance(self.init, str):
            cfg["init"] = self.init
        return cfg
