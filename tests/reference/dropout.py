"""numpy reference for the dropout family: the same counter-based SplitMix64 mask as the C++ core.

Element i (flat, C order) keeps its value when u_i >= p, u_i = top 53 bits of the i-th output of a
SplitMix64 stream seeded with `seed`, divided by 2**53. uint64 array arithmetic wraps modulo 2**64
like the C++ (numpy warns on overflow only for scalars, so everything here stays an array).
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed: int, n: int) -> np.ndarray:
    """The first n outputs of SplitMix64 seeded with `seed` (uint64)."""
    z = np.full(n, seed, dtype=np.uint64) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, n: int) -> np.ndarray:
    return (splitmix64(seed, n) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def dropout_mask(shape, p: float, seed: int, dtype) -> np.ndarray:
    """0 or 1/(1-p) (rounded once to `dtype`) per element; p as the kernel sees it (in dtype)."""
    dtype = np.dtype(dtype)
    pd = float(dtype.type(p))
    scale = dtype.type(1.0 / (1.0 - pd))
    keep = uniforms(seed, int(np.prod(shape, dtype=np.int64))) >= pd
    return np.where(keep, scale, dtype.type(0)).astype(dtype).reshape(shape)


def dropout_forward(x, mask):
    return x * mask
