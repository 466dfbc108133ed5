"""Interim handles on the conv/pool C++ ops, until the convk branch's layer classes (conv.py,
pool.py, with their full argument validation and PyTorch fan rules) are merged and made handles
over the same ops. TODO(issue 8): remove at that merge."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, _random
from .. import init as _init
from .base import Layer, register

__all__ = ["Conv1D", "Conv2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool"]


def _tuple(v: Any, n: int, what: str, low: int) -> tuple[int, ...]:
    t = (v,) * n if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) != n:
        raise ValueError(f"{what} must be an int or {n} ints, got {v!r}")
    return tuple(_checks.check_int(x, what, low) for x in t)


class _ConvND(Layer):
    has_params = True
    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, *, bias: bool = True, init: Any = "he",
                 l2: float = 0.0, dtype: Any = "float32", seed: int | None = None) -> None:
        super().__init__()
        cls, nd = type(self).__name__, self._nd
        self.in_channels = _checks.check_int(in_channels, f"{cls}: in_channels", 1)
        self.out_channels = _checks.check_int(out_channels, f"{cls}: out_channels", 1)
        self.kernel_size = _tuple(kernel_size, nd, f"{cls}: kernel_size", 1)
        self.stride = _tuple(stride, nd, f"{cls}: stride", 1)
        self.dilation = _tuple(dilation, nd, f"{cls}: dilation", 1)
        if padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            self.padding: Any = "same"
            self._pads = tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
        else:
            self.padding = _tuple(padding, nd, f"{cls}: padding", 0)
            self._pads = self.padding + self.padding
        self.bias = bool(bias)
        self.init = init
        self.l2 = _checks.check_float(l2, f"{cls}: l2", 0.0)
        self.seed = seed
        self._allocate(dtype, _random.generator(seed))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_channels, self.in_channels, *self.kernel_size)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        fan_in = self.in_channels * math.prod(self.kernel_size)
        w = _init.draw(self.init, (fan_in, self.out_channels), rng, "init")
        values = {"weight": w.T.reshape(self._param_shapes()["weight"])}
        if self.bias:
            values["bias"] = np.zeros(self.out_channels)
        return values

    op_kind: str | None = None

    def _check_input(self, x: Any) -> np.ndarray:
        return self._input(x, self._nd + 2)

    def _op_attrs(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel_size, "stride": self.stride, "dilation": self.dilation,
                "padding": self._pads, "bias": self.bias, "l2": self.l2}

    def get_config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if self.padding == "same" else list(self.padding),
                "dilation": list(self.dilation), "bias": self.bias, "l2": self.l2,
                "dtype": self.dtype.name}


@register
class Conv1D(_ConvND):
    _nd = 1
    op_kind = "Conv1D"


@register
class Conv2D(_ConvND):
    _nd = 2
    op_kind = "Conv2D"


class _PoolND(Layer):
    _nd = 2

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        cls, nd = type(self).__name__, self._nd
        self.kernel_size = _tuple(kernel_size, nd, f"{cls}: kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _tuple(stride, nd, f"{cls}: stride", 1)
        self.padding = _tuple(padding, nd, f"{cls}: padding", 0)

    def _check_input(self, x: Any) -> np.ndarray:
        return self._input(x, self._nd + 2)

    def _op_attrs(self) -> dict[str, Any]:
        return {"kernel": self.kernel_size, "stride": self.stride, "padding": self.padding + self.padding}

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}


@register
class MaxPool1D(_PoolND):
    _nd = 1
    op_kind = "MaxPool1D"


@register
class MaxPool2D(_PoolND):
    op_kind = "MaxPool2D"


@register
class AvgPool1D(_PoolND):
    _nd = 1
    op_kind = "AvgPool1D"


@register
class AvgPool2D(_PoolND):
    op_kind = "AvgPool2D"


@register
class GlobalAvgPool(Layer):
    op_kind = "GlobalAvgPool"
