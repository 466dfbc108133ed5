"""Pooling layers for convolutional networks: MaxPool1D/2D, AvgPool1D/2D on (N, C, L) /
(N, C, H, W), and GlobalAvgPool (N, C, ...) -> (N, C). (Flatten is in reshape.py.)

Max pooling pads with -inf and sends the gradient to the first maximum of each window (PyTorch's
rule); average pooling pads with zeros that count in the mean (count_include_pad=True). As in
PyTorch, a pad may be at most half the window. They compute in the float dtype of their input.
The layers are handles on the C++ ops of the same names (src/core/pool.cpp), which hold the shape
rule and run the kernels; this module validates the arguments and inputs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from .base import Layer, register

__all__ = ["MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool"]


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

    def _op_attrs(self) -> dict[str, Any]:
        return {"kernel": self.kernel_size, "stride": self.stride,
                "padding": self.padding + self.padding}

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        cls, nd = type(self).__name__, self._nd
        if len(shape) != nd + 1:
            axes = "(C, L)" if nd == 1 else "(C, H, W)"
            raise ValueError(f"{cls}: input must have {nd + 1} axes {axes} per sample "
                             f"(a {nd + 2}-D batch), got per-sample shape {shape}")
        for i in range(nd):
            if shape[1 + i] < 1 or shape[1 + i] + 2 * self.padding[i] < self.kernel_size[i]:
                raise ValueError(f"{cls}: input of spatial size {shape[1:]} (padded by "
                                 f"{self.padding}) is smaller than kernel_size {self.kernel_size}")

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
        return {"kernel_size": one(self.kernel_size),
                "stride": one(self.stride) if self._stride_given else None,
                "padding": one(self.padding)}


@register
class MaxPool1D(_PoolND):
    """Max over windows of (N, C, L); `stride=None` means `kernel_size`."""

    _nd = 1
    op_kind = "MaxPool1D"


@register
class MaxPool2D(_PoolND):
    """Max over windows of (N, C, H, W); `stride=None` means `kernel_size`."""

    _nd = 2
    op_kind = "MaxPool2D"


@register
class AvgPool1D(_PoolND):
    """Mean over windows of (N, C, L), zero padding counted; `stride=None` means `kernel_size`."""

    _nd = 1
    op_kind = "AvgPool1D"


@register
class AvgPool2D(_PoolND):
    """Mean over windows of (N, C, H, W), zero padding counted; `stride=None` means
    `kernel_size`."""

    _nd = 2
    op_kind = "AvgPool2D"


@register
class GlobalAvgPool(Layer):
    """Mean over all spatial axes: (N, C, L) or (N, C, H, W) -> (N, C)."""

    op_kind = "GlobalAvgPool"

    def _check_input(self, x: Any) -> np.ndarray:
        a = _checks.numeric_array(x, "GlobalAvgPool.forward: x")
        if a.ndim not in (3, 4):
            raise ValueError(f"GlobalAvgPool.forward: x must be (N, C, L) or (N, C, H, W): a "
                             f"channel axis and one or two spatial axes, got shape {a.shape}")
        return self._input(a, None)
