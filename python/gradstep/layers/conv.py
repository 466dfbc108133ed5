"""Convolutional layers: Conv1D on (N, C, L) and Conv2D on (N, C, H, W), PyTorch's layout.

Cross-correlation as `torch.nn.functional.conv1d/conv2d`, with stride, zero padding (an int, one
per axis, or "same"), dilation, an optional bias, and L2 as Dense's. Each class is a handle on its
C++ op ("Conv1D", "Conv2D" in src/core/conv.cpp): a lone layer's forward/backward and a
Sequential's fused step run the same op. The classes validate the arguments; `output_shape`
checks an input shape with messages in the layer's terms, then asks the op.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, _core, _random
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

    # ---- geometry -------------------------------------------------------------------------------
    def kernel_args(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(stride, padding, dilation) as the kernels take them: padding holds the leading pads
        then the trailing ones ((left, right) or (top, left, bottom, right))."""
        # _core's 2-D padding order is (top, left, bottom, right) = leading then trailing: as _pads.
        return self.stride, self._pads, self.dilation

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(out_channels, *spatial out) for an input of shape (in_channels, *spatial), without
        the batch axis; raises ValueError on a wrong rank, channel count or a too small input."""
        cls, nd = type(self).__name__, self._nd
        shape = tuple(int(s) for s in input_shape)
        axes = "(C, L)" if nd == 1 else "(C, H, W)"
        if len(shape) != nd + 1:
            raise ValueError(f"{cls}: input must have {nd + 1} axes {axes} per sample "
                             f"((N, ...) with the batch), got {shape}")
        if shape[0] != self.in_channels:
            raise ValueError(f"{cls}: input must have {self.in_channels} channels (in_channels), "
                             f"got {shape[0]} channels in shape {shape}")
        out = []
        for i in range(nd):
            size = shape[1 + i]
            padded = size + self._pads[i] + self._pads[nd + i]
            extent = self.dilation[i] * (self.kernel_size[i] - 1) + 1
            if size < 1 or padded < extent:
                raise ValueError(f"{cls}: input of spatial size {shape[1:]} (padded by "
                                 f"{self._pads}) is smaller than the kernel {self.kernel_size} "
                                 f"dilated by {self.dilation}")
            out.append((padded - extent) // self.stride[i] + 1)
        return super().output_shape(shape)

    # ---- the op -----------------------------------------------------------------------------------
    def _check_input(self, x: Any) -> np.ndarray:
        x = self._input(x, self._nd + 2)
        self.output_shape(x.shape[1:])
        return x

    def penalty(self) -> float:
        if self._runner_key is None and self.l2 != 0.0:
            # No input seen yet, so no op built: the op's term (l2/2)·Σw², the same arithmetic.
            return 0.5 * self.l2 * _core.sum_squares(self._p["weight"])
        return super().penalty()

    def _op_attrs(self) -> dict[str, Any]:
        stride, pads, dilation = self.kernel_args()
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel_size, "stride": stride, "padding": pads,
                "dilation": dilation, "bias": self.bias, "l2": self.l2}

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
