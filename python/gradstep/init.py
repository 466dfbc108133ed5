"""Weight initializers: `(shape, rng) -> ndarray`, float64, cast by the layer to its dtype.

Fans follow the (in, out) weight layout: fan_in = shape[-2], fan_out = shape[-1] (a Maxout
weight (pieces, in, out) has the fans of one piece). Layers whose weights are laid out otherwise
pass `fans=(fan_in, fan_out)` to `draw` (a conv weight (out, in, *k) has fan_in = in·prod(k) and
fan_out = out·prod(k), as PyTorch computes them); a user's callable still gets (shape, rng).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Initializer = Callable[[tuple, np.random.Generator], np.ndarray]


def _fans(shape: tuple, fans: tuple[int, int] | None = None) -> tuple[int, int]:
    if fans is not None:
        return int(fans[0]), int(fans[1])
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    return int(shape[-2]), int(shape[-1])


def zeros(shape: tuple, rng: np.random.Generator | None = None) -> np.ndarray:
    return np.zeros(shape)


def normal(shape: tuple, rng: np.random.Generator, std: float = 0.01) -> np.ndarray:
    """The classic small random start: N(0, 0.01²)."""
    return rng.normal(0.0, std, size=shape)


def xavier(shape: tuple, rng: np.random.Generator,
           fans: tuple[int, int] | None = None) -> np.ndarray:
    """Glorot normal: var = 2 / (fan_in + fan_out)."""
    fi, fo = _fans(shape, fans)
    return rng.normal(0.0, np.sqrt(2.0 / (fi + fo)), size=shape)


def xavier_uniform(shape: tuple, rng: np.random.Generator,
                   fans: tuple[int, int] | None = None) -> np.ndarray:
    """Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fi, fo = _fans(shape, fans)
    a = np.sqrt(6.0 / (fi + fo))
    return rng.uniform(-a, a, size=shape)


def he(shape: tuple, rng: np.random.Generator,
       fans: tuple[int, int] | None = None) -> np.ndarray:
    """Kaiming normal for ReLU: var = 2 / fan_in."""
    fi, _ = _fans(shape, fans)
    return rng.normal(0.0, np.sqrt(2.0 / fi), size=shape)


def he_uniform(shape: tuple, rng: np.random.Generator,
               fans: tuple[int, int] | None = None) -> np.ndarray:
    """Kaiming uniform: U(-a, a), a = sqrt(6 / fan_in)."""
    fi, _ = _fans(shape, fans)
    a = np.sqrt(6.0 / fi)
    return rng.uniform(-a, a, size=shape)


def lecun(shape: tuple, rng: np.random.Generator,
          fans: tuple[int, int] | None = None) -> np.ndarray:
    """LeCun normal: var = 1 / fan_in."""
    fi, _ = _fans(shape, fans)
    return rng.normal(0.0, np.sqrt(1.0 / fi), size=shape)


INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros, "normal": normal, "xavier": xavier, "xavier_uniform": xavier_uniform,
    "he": he, "he_uniform": he_uniform, "lecun": lecun,
}


def get(init: str | Initializer, name: str = "init") -> Initializer:
    """Look an initializer up by name, or accept a callable."""
    if callable(init):
        return init
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise ValueError(f"{name} must be one of {sorted(INITIALIZERS)} or a callable, got {init!r}")
        return INITIALIZERS[init]
    raise TypeError(f"{name} must be a string or a callable (shape, rng) -> array, got {type(init).__name__}")


def draw(init: str | Initializer, shape: tuple, rng: np.random.Generator, name: str = "init",
         fans: tuple[int, int] | None = None) -> np.ndarray:
    """Draw initial values and check that a callable initializer returned the right shape.

    `fans` overrides the (fan_in, fan_out) the named initializers read off the shape."""
    fn = get(init, name)
    if fans is not None and isinstance(init, str) and init not in ("zeros", "normal"):
        values = np.asarray(fn(tuple(shape), rng, fans=fans))
    else:
        values = np.asarray(fn(tuple(shape), rng))
    if values.shape != tuple(shape):
        raise ValueError(f"{name} returned an array of shape {values.shape}, expected {tuple(shape)}")
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} returned a non-numeric array of dtype {values.dtype}")
    return values
