"""Convolutional layers: Conv1D on (N, C, L) and Conv2D on (N, C, H, W), PyTorch's layout.

Cross-correlation as `torch.nn.functional.conv1d/conv2d`, with stride, zero padding (an int, one
per axis, or "same"), dilation, an optional bias, and L2 as Dense's. The layers are handles on the
C++ ops "Conv1D"/"Conv2D" (src/core/conv.cpp): the op holds the shape rule and runs the kernels,
here and in a Sequential's fused step alike. This class validates the arguments and the input
(rank, channel count, a kernel larger than the padded input) with messages that name them, and
computes PyTorch's "same" padding and initial weights.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, _random
from .. import init as _init
from .base import Layer, register

__all__ = ["Conv1D", "Conv2D"]


class _ConvND(Layer):
    """Shared body of Conv1D and Conv2D; `_nd` is the number of spatial axes."""

    has_params = True
    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, *, bias: bool = True, init: Any = "he",
                 l2: float = 0.0, dtype: Any = "float32", seed: int | None = None) -> None:
        super().__init__()
        cls, nd = type(self).__name__, self._nd
        self.in_channels = _checks.check_int(in_channels, f"{cls}: in_channels", 1)
        self.out_channels = _checks.check_int(out_channels, f"{cls}: out_channels", 1)
        self.kernel_size = _checks.check_int_tuple(kernel_size, nd, f"{cls}: kernel_size", 1)
        self.stride = _checks.check_int_tuple(stride, nd, f"{cls}: stride", 1)
        self.dilation = _checks.check_int_tuple(dilation, nd, f"{cls}: dilation", 1)
        if isinstance(padding, str):
            if padding != "same":
                raise ValueError(f"{cls}: padding must be an int, a tuple of {nd} ints or 'same', "
                                 f"got {padding!r}")
            if any(s != 1 for s in self.stride):
                raise ValueError(f"{cls}: padding='same' needs stride 1 (as PyTorch), got stride "
                                 f"{self.stride}")
            self.padding: tuple[int, ...] | str = "same"
            # PyTorch's rule: the dilated kernel's extent minus one, the odd zero at the end.
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            self._pads = tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
        else:
            self.padding = _checks.check_int_tuple(padding, nd, f"{cls}: padding", 0)
            self._pads = self.padding + self.padding
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{cls}: bias must be a bool, got {type(bias).__name__}")
        self.bias = bool(bias)
        _init.get(init, f"{cls}: init")
        self.init = init
        self.l2 = _checks.check_float(l2, f"{cls}: l2", 0.0)
        self.seed = seed
        self._allocate(dtype, _random.generator(seed))

    # ---- parameters -----------------------------------------------------------------------------
    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": self._weight_shape()}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k = math.prod(self.kernel_size)
        fans = (self.in_channels * k, self.out_channels * k)
        values = {"weight": _init.draw(self.init, self._weight_shape(), rng,
                                       f"{type(self).__name__}: init", fans=fans)}
        if self.bias:
            values["bias"] = np.zeros(self.out_channels)
        return values

    # ---- geometry and the op ----------------------------------------------------------------
    def kernel_args(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(stride, padding, dilation) as the kernels take them: padding holds the leading pads
        then the trailing ones ((left, right) or (top, left, bottom, right))."""
        return self.stride, self._pads, self.dilation

    def _op_attrs(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel_size, "stride": self.stride, "dilation": self.dilation,
                "padding": self._pads, "bias": self.bias, "l2": self.l2}

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """ValueError naming the problem when the per-sample shape (C, *spatial) does not fit."""
        cls, nd = type(self).__name__, self._nd
        axes = "(C, L)" if nd == 1 else "(C, H, W)"
        if len(shape) != nd + 1:
            raise ValueError(f"{cls}: input must have {nd + 1} axes {axes} per sample "
                             f"(a {nd + 2}-D batch), got per-sample shape {shape}")
        if shape[0] != self.in_channels:
            raise ValueError(f"{cls}: input must have {self.in_channels} channels (in_channels), "
                             f"got {shape[0]} channels in per-sample shape {shape}")
        for i in range(nd):
            padded = shape[1 + i] + self._pads[i] + self._pads[nd + i]
            if shape[1 + i] < 1 or padded < self.dilation[i] * (self.kernel_size[i] - 1) + 1:
                raise ValueError(f"{cls}: input of spatial size {shape[1:]} (padded by "
                                 f"{self._pads}) is smaller than the kernel {self.kernel_size} "
                                 f"dilated by {self.dilation}")

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        self._check_shape(tuple(int(s) for s in in_shape))
        return super().output_shape(in_shape)

    def _check_input(self, x: Any) -> np.ndarray:
        cls, nd = type(self).__name__, self._nd
        a = _checks.numeric_array(x, f"{cls}.forward: x")
        if a.ndim != nd + 2:
            want = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
            raise ValueError(f"{cls}.forward: x must be a {nd + 2}-D array {want}, got a "
                             f"{a.ndim}-D array of shape {a.shape}")
        try:
            self._check_shape(tuple(a.shape[1:]))
        except ValueError as e:
            raise ValueError(f"{cls}.forward: x of shape {a.shape}: {e}") from None
        return self._input(a, nd + 2)

    def get_config(self) -> dict[str, Any]:
        one = (lambda t: t[0]) if self._nd == 1 else (lambda t: list(t))
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": one(self.kernel_size), "stride": one(self.stride),
               "padding": self.padding if self.padding == "same" else one(self.padding),
               "dilation": one(self.dilation), "bias": self.bias, "l2": self.l2,
               "dtype": self.dtype.name}
        if isinstance(self.init, str):
            cfg["init"] = self.init
        return cfg


@register
class Conv1D(_ConvND):
    """1-D convolution of (N, in_channels, L) into (N, out_channels, L_out); weight (out, in, k)."""

    _nd = 1
    op_kind = "Conv1D"


@register
class Conv2D(_ConvND):
    """2-D convolution of (N, in_channels, H, W) into (N, out_channels, H_out, W_out);
    weight (out, in, kh, kw)."""

    _nd = 2
    op_kind = "Conv2D"
