"""Activation layers: Sigmoid, Tanh, ReLU, Identity, LeakyReLU, ELU, PReLU and Softmax.

Each is a handle on its C++ op (one `_core` call per pass). The elementwise layers take inputs of
any shape with at least one dimension (and one row); PReLU and Softmax take 2-D `(N, F)` batches. Layers without parameters
compute in the float dtype of their input (float32 or float64; anything else becomes float32);
PReLU computes in its own dtype. Values and gradients at the kinks (x == 0) are PyTorch's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _random
from .base import Elementwise, Layer, register

__all__ = ["Sigmoid", "Tanh", "ReLU", "Identity", "LeakyReLU", "ELU", "PReLU", "Softmax"]


_Elementwise = Elementwise


def _input_2d(layer: Layer, x: Any, features: int | None = None) -> np.ndarray:
    """A 2-D (N, F) forward input, F == `features` unless None, converted like `Layer._input`."""
    cls = type(layer).__name__
    a = _checks.numeric_array(x, f"{cls}.forward: x")
    if a.ndim != 2:
        want = f"(N, {features})" if features is not None else "(N, F)"
        raise ValueError(f"{cls}.forward: x must be a 2-D array {want}, got a {a.ndim}-D array "
                         f"of shape {a.shape}")
    return layer._input(a, 2, features)


@register
class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)), elementwise; stable for any x (exactly 0 and 1 in the limits)."""

    op_kind = "Sigmoid"


@register
class Tanh(_Elementwise):
    """y = tanh(x), elementwise."""

    op_kind = "Tanh"


@register
class ReLU(_Elementwise):
    """y = max(x, 0), elementwise; the gradient at x == 0 is 0 (as in PyTorch)."""

    op_kind = "ReLU"


@register
class Identity(_Elementwise):
    """y = x (a copy, converted to a float dtype); the gradient passes through unchanged."""

    op_kind = "Identity"


@register
class LeakyReLU(_Elementwise):
    """y = x if x > 0 else alpha * x, elementwise; the gradient at x == 0 is alpha (as in PyTorch).

    `alpha` is any finite number (the negative-side slope)."""

    op_kind = "LeakyReLU"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = _checks.check_float(alpha, "LeakyReLU: alpha")

    def _op_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register
class ELU(_Elementwise):
    """y = x if x > 0 else alpha * (exp(x) - 1), elementwise (alpha >= 0).

    The gradient at x == 0 is alpha (as in PyTorch)."""

    op_kind = "ELU"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _checks.check_float(alpha, "ELU: alpha", 0.0)

    def _op_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register
class PReLU(Layer):
    """y = x if x > 0 else alpha * x with a learned slope `alpha` of shape (num_parameters,).

    `num_parameters=1` shares one slope over every feature; `num_parameters=F` learns one per
    feature and needs inputs of shape (N, F). Inputs are 2-D (N, F). `grads["alpha"]` is the
    gradient summed over the batch (in float64, in a fixed order).
    """

    has_params = True
    op_kind = "PReLU"

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype: Any = "float32") -> None:
        super().__init__()
        self.num_parameters = _checks.check_int(num_parameters, "PReLU: num_parameters", 1)
        self.init = _checks.check_float(init, "PReLU: init")
        self._allocate(_checks.as_dtype(dtype, "PReLU: dtype"), _random.generator(None))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": (self.num_parameters,)}

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"alpha": np.full(self.num_parameters, self.init)}

    def _check_input(self, x: Any) -> np.ndarray:
        return _input_2d(self, x, self.input_features())

    def _op_attrs(self) -> dict[str, Any]:
        return {"num_parameters": self.num_parameters}

    def input_features(self) -> int | None:
        return self.num_parameters if self.num_parameters > 1 else None

    def get_config(self) -> dict[str, Any]:
        return {"num_parameters": self.num_parameters, "init": self.init,
                "dtype": self.dtype.name}


@register
class Softmax(Layer):
    """y = exp(x - max x) / sum(exp(x - max x)) over the last axis of a 2-D (N, F) input."""

    op_kind = "Softmax"

    def _check_input(self, x: Any) -> np.ndarray:
        return _input_2d(self, x)
