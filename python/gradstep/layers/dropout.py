"""Inverted dropout: zero each element with probability p and scale the kept ones by 1/(1-p)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _random
from .base import Elementwise, register

__all__ = ["Dropout"]


@register
class Dropout(Elementwise):
    """Inverted dropout: y = x * mask, mask = 1/(1-p) with probability 1-p, else 0.

    With `training=False` it is the identity (the input, converted to its float dtype, comes
    back; `backward` then passes the gradient through unchanged).

    Masks are reproducible. Every training forward draws one 64-bit seed from the layer's
    generator (see `_next_seed`) and the C++ kernel derives the mask from (that seed, element
    index) alone (a counter-based SplitMix64 stream), so the mask does not depend on the thread
    count, and two layers built with the same `seed` produce the same sequence of masks. With
    `seed=None` the seeds come from the library's generator (`gs.seed(n)`), looked up at each
    call, so seeding the library after building the layer still makes its masks reproducible.
    """

    op_kind = "Dropout"

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        self.p = _checks.check_float(p, "Dropout: p", 0.0, 1.0, max_inclusive=False)
        if seed is not None:
            seed = _checks.check_int(seed, "Dropout: seed", 0)
        self.seed = seed
        self._rng: np.random.Generator | None = None if seed is None else _random.generator(seed)

    def _next_seed(self) -> int:
        """Draw the seed of the next training mask, advancing the layer's generator.

        A training forward calls this exactly once; a whole-network training step calls it once per
        step and hands the seed to the same op, so the layer's mask sequence is the same whichever
        path runs it.
        """
        rng = self._rng if self._rng is not None else _random.generator()
        return _random.draw_seed(rng)

    def _reseed(self, seed: int) -> None:
        """Restart the mask sequence from `seed` (e.g. for one `fit(seed=...)` run)."""
        self._rng = _random.generator(_checks.check_int(seed, "Dropout: seed", 0))

    def _op_attrs(self) -> dict[str, Any]:
        return {"p": self.p}

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p, "seed": self.seed}
