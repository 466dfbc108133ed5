"""The library's random generator: `gs.seed(n)` reseeds it; constructors take `seed=` too."""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def seed(n: int) -> None:
    """Seed the library's generator: same seed, same thread count, same data -> same results."""
    global _generator
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"seed: n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"seed: n must be >= 0, got {n}")
    _generator = np.random.default_rng(int(n))


def generator(seed: int | None = None) -> np.random.Generator:
    """A generator for one constructor: its own when `seed` is given, else the library's."""
    if seed is None:
        return _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def draw_seed(rng: np.random.Generator) -> int:
    """A 63-bit seed for a C++ kernel (dropout masks), drawn from `rng`."""
    return int(rng.integers(0, 2**63 - 1))
