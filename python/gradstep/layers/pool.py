"""Pooling and reshaping layers for convolutional networks: MaxPool1D/2D, AvgPool1D/2D on
(N, C, L) / (N, C, H, W), GlobalAvgPool (N, C, ...) -> (N, C), Flatten (N, ...) -> (N, prod).

Max pooling pads with -inf and sends the gradient to the first maximum of each window (PyTorch's
rule); average pooling pads with zeros that count in the mean (count_include_pad=True). As in
PyTorch, a pad may be at most half the window. They compute in the float dtype of their input.
Each class is a handle on its C++ op (src/core/pool.cpp, Flatten in src/core/reshape.cpp); the
classes validate their arguments and check input shapes in their own terms, then ask the op.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from .base import Layer, register

__all__ = ["MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool", "Flatten"]


class _PoolND(Layer):
    """Shared body of the windowed pools; `_nd` spatial axes."""

    _nd = 2

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        cls, nd = type(self).__name__, self._nd
        self.kernel_size = _checks.check_int_tuple(kernel_size, nd, f"{cls}: kernel_size", 1)
        self.stride = (self.kernel_size if stride is None
                       else _checks.check_int_tuple(stride, nd, f"{cls}: stride", 1))
        self.padding = _checks.check_int_tuple(padding, nd, f"{cls}: padding", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{cls}: padding {self.padding} must be at most half of kernel_size "
                             f"{self.kernel_size}")
        self._stride_given = stride is not None

    def kernel_args(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(kernel_size, stride, padding) as the kernels take them (padding leading, trailing)."""
        return self.kernel_size, self.stride, self.padding + self.padding

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, *spatial out) for an input of shape (C, *spatial), without the batch axis."""
        cls, nd = type(self).__name__, self._nd
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != nd + 1:
            axes = "(C, L)" if nd == 1 else "(C, H, W)"
            raise ValueError(f"{cls}: input must have {nd + 1} axes {axes} per sample "
                             f"((N, ...) with the batch), got {shape}")
        out = []
        for i in range(nd):
            padded = shape[1 + i] + 2 * self.padding[i]
            if shape[1 + i] < 1 or padded < self.kernel_size[i]:
                raise ValueError(f"{cls}: input of spatial size {shape[1:]} (padded by "
                                 f"{self.padding}) is smaller than kernel_size {self.kernel_size}")
            out.append((padded - self.kernel_size[i]) // self.stride[i] + 1)
        return super().output_shape(shape)

    def _check_input(self, x: Any) -> np.ndarray:
        x = self._input(x, self._nd + 2)
        self.output_shape(x.shape[1:])
        return x

    def _op_attrs(self) -> dict[str, Any]:
        kernel, stride, pads = self.kernel_args()
        return {"kernel": kernel, "stride": stride, "padding": pads}

    def get_config(self) -> dict[str, Any]:
        one = (lambda t: t[0]) if self._nd == 1 else (lambda t: list(t))
        return {"kernel_size": one(self.kernel_size),
                "stride": one(self.stride) if self._stride_given else None,
                "padding": one(self.padding)}


class _MaxPoolND(_PoolND):
    pass


class _AvgPoolND(_PoolND):
    pass


@register
class MaxPool1D(_MaxPoolND):
    """Max over windows of (N, C, L); `stride=None` means `kernel_size`."""

    _nd = 1
    op_kind = "MaxPool1D"


@register
class MaxPool2D(_MaxPoolND):
    """Max over windows of (N, C, H, W); `stride=None` means `kernel_size`."""

    _nd = 2
    op_kind = "MaxPool2D"


@register
class AvgPool1D(_AvgPoolND):
    """Mean over windows of (N, C, L), zero padding counted; `stride=None` means `kernel_size`."""

    _nd = 1
    op_kind = "AvgPool1D"


@register
class AvgPool2D(_AvgPoolND):
    """Mean over windows of (N, C, H, W), zero padding counted; `stride=None` means
    `kernel_size`."""

    _nd = 2
    op_kind = "AvgPool2D"


@register
class GlobalAvgPool(Layer):
    """Mean over all spatial axes: (N, C, ...) -> (N, C)."""

    op_kind = "GlobalAvgPool"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 2:
            raise ValueError(f"GlobalAvgPool: input must have a channel axis and at least one "
                             f"spatial axis per sample ((N, C, ...) with the batch), got {shape}")
        return super().output_shape(shape)

    def _check_input(self, x: Any) -> np.ndarray:
        x = self._input(x, None)
        self.output_shape(x.shape[1:])
        return x


@register
class Flatten(Layer):
    """(N, ...) -> (N, prod(...)) in C order."""

    op_kind = "Flatten"

    def _check_input(self, x: Any) -> np.ndarray:
        x = self._input(x, None)
        if x.ndim < 2:
            raise ValueError(f"Flatten.forward: x must have a batch axis and at least one more, "
                             f"got shape {x.shape}")
        return x
