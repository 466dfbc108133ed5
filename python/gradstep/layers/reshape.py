"""Flatten: (N, C, ...) -> (N, C·...) in C order (a handle on the C++ "Flatten" op)."""
from __future__ import annotations

from .base import Layer, register

__all__ = ["Flatten"]


@register
class Flatten(Layer):
    """y = x.reshape(N, -1): the per-sample axes become one feature axis (C order, as PyTorch's
    `nn.Flatten`), e.g. to put Dense layers after convolutions. The gradient is reshaped back."""

    op_kind = "Flatten"
