"""Maxout layer: y = max_k (x @ W_k + b_k) over `pieces` affine maps (Goodfellow et al., 2013)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _random
from .. import init as _init
from .base import Layer, register

__all__ = ["Maxout"]


@register
class Maxout(Layer):
    """y = max_k (x @ W_k + b_k), k = 0 .. pieces-1.

    Parameters: `weight` of shape (pieces, in_features, out_features) (each piece in Dense's
    (in, out) layout) and `bias` of shape (pieces, out_features), initialized to zeros. `init`
    draws the weight with the fans of one piece (fan_in = in_features, fan_out = out_features).

    The gradient of each output goes to the piece that won it; on a tie the lowest piece index
    wins (the same rule as numpy's and PyTorch's argmax), so exactly one piece receives it.
    """

    has_params = True
    op_kind = "Maxout"

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, *,
                 init: Any = "xavier", dtype: Any = "float32", seed: int | None = None) -> None:
        super().__init__()
        self.in_features = _checks.check_int(in_features, "Maxout: in_features", 1)
        self.out_features = _checks.check_int(out_features, "Maxout: out_features", 1)
        self.pieces = _checks.check_int(pieces, "Maxout: pieces", 1)
        _init.get(init, "Maxout: init")
        self.init = init
        self.seed = seed
        self._allocate(dtype, _random.generator(seed))

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.pieces, self.in_features, self.out_features),
                "bias": (self.pieces, self.out_features)}

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        shapes = self._param_shapes()
        return {"weight": _init.draw(self.init, shapes["weight"], rng, "Maxout: init"),
                "bias": np.zeros(shapes["bias"])}

    def _check_input(self, x: Any) -> np.ndarray:
        return self._input(x, 2, self.in_features)

    @property
    def argmax(self) -> np.ndarray:
        """The winning piece of each output in the last forward, (N, out_features) int32."""
        if self._saved is None or self._out_shape is None:
            raise ValueError("Maxout.argmax: call forward first")
        return self._saved.int_workspace().reshape(self._out_shape)

    def _op_attrs(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "pieces": self.pieces}

    def input_features(self) -> int:
        return self.in_features

    def get_config(self) -> dict[str, Any]:
        cfg = {"in_features": self.in_features, "out_features": self.out_features,
               "pieces": self.pieces, "dtype": self.dtype.name}
        if isinstance(self.init, str):
            cfg["init"] = self.init
        return cfg
