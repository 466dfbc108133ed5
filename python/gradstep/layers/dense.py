"""Dense (fully connected) layer: y = x @ W + b, W of shape (in_features, out_features).

A handle on the C++ "Dense" op. `Dense(out_features)` leaves `in_features` to the input: a
`Sequential` settles it when it infers shapes (or the first `forward` does), and the weights are
drawn then."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _random
from .. import init as _init
from .base import Layer, register

__all__ = ["Dense"]


@register
class Dense(Layer):
    """y = x @ W + b.

    `l2` adds (l2/2)·‖W‖² to the loss (see `penalty()`) and l2·W to the weight gradient.
    """

    has_params = True
    op_kind = "Dense"

    def __init__(self, in_features: int | None = None, out_features: int | None = None, *,
                 bias: bool = True, init: Any = "he", l2: float = 0.0, dtype: Any = "float32",
                 seed: int | None = None) -> None:
        super().__init__()
        if out_features is None:  # Dense(out_features): in_features from the input
            in_features, out_features = None, in_features
        if out_features is None:
            raise TypeError("Dense: out_features is required (Dense(out_features) or Dense(in_features, out_features))")
        if in_features is not None:
            in_features = _checks.check_int(in_features, "Dense: in_features", 1)
        self.in_features: int | None = in_features
        self.out_features = _checks.check_int(out_features, "Dense: out_features", 1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"Dense: bias must be a bool, got {type(bias).__name__}")
        self.bias = bool(bias)
        _init.get(init, "Dense: init")
        self.init = init
        self.l2 = _checks.check_float(l2, "Dense: l2", 0.0)
        self.seed = seed
        self.dtype = _checks.as_dtype(dtype, "Dense: dtype")
        if self.in_features is not None:
            self._allocate(self.dtype, _random.generator(seed))

    def _build_for(self, in_shape: tuple[int, ...]) -> None:
        if self.in_features is None and len(in_shape) == 1:
            self.in_features = int(in_shape[0])
            self._allocate(self.dtype, _random.generator(self.seed))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.in_features is None:
            return {}
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

    def _check_input(self, x: Any) -> np.ndarray:
        if self.in_features is None:
            return self._input(x, 2)
        return self._input(x, 2, self.in_features)

    def _op_attrs(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "l2": self.l2}

    def input_features(self) -> int | None:
        return self.in_features

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if self.in_features is None and len(in_shape) != 1:
            raise ValueError(f"Dense: input must be (features,) per sample, got shape {tuple(in_shape)} "
                             f"(put a Flatten before the Dense)")
        return super().output_shape(in_shape)

    def get_config(self) -> dict[str, Any]:
        cfg = {"in_features": self.in_features, "out_features": self.out_features,
               "bias": self.bias, "l2": self.l2, "dtype": self.dtype.name}
        if self.in_features is None:
            del cfg["in_features"]
        if isinstance(self.init, str):
            cfg["init"] = self.init
        return cfg
