"""The callback base class, on its own so that `gradstep.callbacks` and the diagnostics' monitor
can both build on it without importing each other."""
from __future__ import annotations

from typing import Any


class Callback:
    """Base class: every hook is a no-op; subclasses override the ones they need."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        """Remember the model being trained (as `self.model`)."""
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Before epoch `epoch` (0-based)."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """After mini-batch `batch` (0-based within the epoch); logs has "loss" and "size"."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """After epoch `epoch`; logs has "loss", "val_loss", metrics, "val_" metrics and "lr"."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """After the last epoch (also after an early stop)."""

    def _require_model(self, what: str) -> Any:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}: {what} needs a model; "
                               f"call set_model(model) first (fit does)")
        return self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
