"""One thread count for both pools: OpenMP's (the elementwise kernels) and OpenBLAS's (the GEMMs)."""
from __future__ import annotations

import numpy as np

from . import _core


def set_num_threads(n: int) -> None:
    """Use `n` threads in every kernel and every matrix product (default: all cores)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    limit = _core.max_threads()  # a few per CPU: more only slows the kernels down
    if n > limit:
        raise ValueError(f"set_num_threads: n must be <= {limit} (a few threads per CPU of this "
                         f"machine), got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The thread count the kernels use."""
    return int(_core.get_num_threads())
