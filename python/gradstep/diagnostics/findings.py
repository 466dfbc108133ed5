"""Finding: one diagnosis (a stable `kind`, a message a person can act on, the evidence), and the
number formatting the checks share."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The stable identifiers a Finding's `kind` takes ("ok" and "skipped" are the checks' verdicts).
KINDS = ("ok", "skipped", "lr_too_high", "lr_too_low", "overfitting", "nan", "vanishing_gradients",
         "exploding_gradients", "dead_relu", "saturation", "bad_initial_loss", "cannot_overfit",
         "gradcheck_failed")


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _lr_text(lr: float) -> str:
    """A learning rate as a person writes it (3e-3, 0.01, 0.1)."""
    if lr <= 0 or not math.isfinite(lr):
        return _fmt(lr)
    text = f"{lr:.1g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


@dataclass
class Finding:
    """One diagnosis: `kind` (a stable identifier from `KINDS`), `message` (what it means and what to
    do, with numbers) and `evidence` (the numbers it rests on)."""

    kind: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "skipped")

    def __str__(self) -> str:
        text = f"[{self.kind}] {self.message}"
        if self.evidence:
            text += " (" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items()) + ")"
        return text
