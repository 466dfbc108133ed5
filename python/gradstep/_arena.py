"""Flat parameter storage: one contiguous, C++-owned buffer for values and one for gradients.

Every layer's `params` and `grads` are numpy views into an `Arena`, so writing through a view
changes what the kernels use, and an optimizer can update a whole model in one pass over the
flat buffer. A free layer owns a small arena of its own; `Sequential` lays all its layers out in
one arena and rebinds them to it.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from . import _core

_ALIGN_BYTES = 64  # each slot starts on a cache line, as the C++ side's SIMD loops like


class Parameter:
    """A named trainable tensor: `.value` and `.grad` are live views of the arena."""

    __slots__ = ("name", "value", "grad", "_arena", "_offset")

    def __init__(self, name: str, value: np.ndarray, grad: np.ndarray,
                 arena: "Arena | None" = None, offset: int = 0) -> None:
        self.name = name
        self.value = value
        self.grad = grad
        self._arena = arena
        self._offset = offset

    @property
    def shape(self) -> tuple:
        return self.value.shape

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


class Arena:
    """Slots (name -> shape) laid out in two flat buffers, `params` and `grads`."""

    def __init__(self, specs: Iterable[tuple[str, tuple[int, ...]]], dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        align = _ALIGN_BYTES // self.dtype.itemsize
        self.slots: dict[str, tuple[int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape in specs:
            if name in self.slots:
                raise ValueError(f"duplicate parameter name {name!r}")
            shape = tuple(int(s) for s in shape)
            self.slots[name] = (offset, shape)
            size = int(np.prod(shape, dtype=np.int64))
            offset += -(-size // align) * align
        self.size = offset
        # Padding between slots stays zero in both buffers, so an optimizer pass over the whole
        # buffer leaves it zero (zero gradient, zero weight: every supported update keeps 0).
        self.params = _core.alloc_zeros(self.size, self.dtype)
        self.grads = _core.alloc_zeros(self.size, self.dtype)

    def view(self, name: str, which: str = "params") -> np.ndarray:
        offset, shape = self.slots[name]
        buf = self.params if which == "params" else self.grads
        size = int(np.prod(shape, dtype=np.int64))
        return buf[offset:offset + size].reshape(shape)

    def parameter(self, name: str, public_name: str | None = None) -> Parameter:
        return Parameter(public_name or name, self.view(name, "params"), self.view(name, "grads"),
                         self, self.slots[name][0])

    def __repr__(self) -> str:
        return f"Arena({len(self.slots)} slots, size={self.size}, dtype={self.dtype.name})"
