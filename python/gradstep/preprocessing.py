"""What a model does to raw data before its first layer, and what it does to its class labels.

`Standardize` is the input step of a `Sequential` (as Keras's `Normalization` layer is part of a
Keras model): set `model.preprocessing = gs.Standardize.fit(X_train)` and the model's data-level
methods (`fit`, `evaluate`, `predict`, `predict_classes`, `predict_proba`) take raw inputs and
standardize them first; its mean and scale are saved in the model file ("prep.mean",
"prep.scale"). The layer-level methods (`forward`, `backward`, `train_step`) and the diagnostics
built on them see the network's own inputs: pass them `model.preprocessing.transform(X)`.

It is not a layer on purpose: it has no gradient, no optimizer state and nothing to compute in
the C++ training step, which therefore never sees it.

`encode_labels` / `decode_labels` map class values (numbers or strings, `model.classes_`, as
scikit-learn's `classes_`) to the indices 0..C-1 the losses work with, and back.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks

__all__ = ["Standardize"]


class Standardize:
    """x -> (x - mean) / scale per input value, computed in float64.

    `Standardize.fit(X)` takes the mean and the (biased) standard deviation of each column of X,
    with scale 1 for constant columns, as scikit-learn's `StandardScaler` does. For image data
    (N, C, H, W) (or any per-sample shape) each input value (pixel) gets its own mean and scale,
    and `mean`/`scale` have the per-sample shape."""

    def __init__(self, mean: Any, scale: Any) -> None:
        mean = np.array(_checks.numeric_array(mean, "Standardize: mean"), dtype=np.float64)
        scale = np.array(_checks.numeric_array(scale, "Standardize: scale"), dtype=np.float64)
        if mean.ndim < 1 or scale.shape != mean.shape:
            raise ValueError(f"Standardize: mean and scale must be arrays of one shape (one value per "
                             f"input value of a sample), got shapes {mean.shape} and {scale.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("Standardize: mean must be finite and scale finite and > 0")
        self.mean = mean
        self.scale = scale

    @classmethod
    def fit(cls, X: Any) -> Standardize:
        X = _checks.numeric_array(X, "Standardize.fit: X")
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"Standardize.fit: X must be a non-empty array (samples, features) or "
                             f"(samples, *sample_shape), got shape {X.shape}")
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0.0] = 1.0
        return cls(mean, scale)

    @property
    def n_features(self) -> int:
        return int(self.mean.size)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def transform(self, X: Any) -> np.ndarray:
        """(X - mean) / scale as float64 (the caller casts to the model's dtype)."""
        X = _checks.numeric_array(X, "Standardize.transform: X")
        if X.shape[1:] != self.mean.shape:
            want = ", ".join(str(d) for d in self.mean.shape)
            raise ValueError(f"Standardize.transform: X must have shape (samples, {want}), got {X.shape}")
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def inverse_transform(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * self.scale + self.mean

    def state(self) -> dict[str, np.ndarray]:
        """The tensors a model file holds for this step (names without the "prep." prefix)."""
        return {"mean": self.mean, "scale": self.scale}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Standardize) and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.scale, other.scale))

    def __repr__(self) -> str:
        if self.mean.ndim == 1:
            return f"Standardize(n_features={self.n_features})"
        return f"Standardize(sample_shape={self.sample_shape})"


# ---- columns by name ---------------------------------------------------------------------------
def select_columns(X: Any, names: list[str] | None, where: str) -> Any:
    """A table with named columns (a pandas DataFrame) given to a model that knows its
    `feature_names_in_` is read by those names, in the model's order (extra columns, e.g. the
    target, are left out); a missing column raises ValueError naming it. Anything else passes."""
    columns = getattr(X, "columns", None)
    if names is None or columns is None or not hasattr(X, "loc"):
        return X
    columns = [str(c) for c in columns]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValueError(f"{where} lacks the feature column(s) {missing} the model was trained on "
                         f"(it has {columns})")
    return X.loc[:, list(names)].to_numpy()


# ---- class labels ------------------------------------------------------------------------------
def check_classes(classes: Any, where: str) -> np.ndarray:
    """`classes` as a 1-D array of distinct values (numbers, bools or strings)."""
    c = np.asarray(classes)
    if c.dtype.kind == "O":  # e.g. a pandas object column of strings
        if not all(isinstance(v, str) for v in c.ravel()):
            raise TypeError(f"{where} must hold numbers or strings, got objects of type "
                            f"{sorted({type(v).__name__ for v in c.ravel()})}")
        c = c.astype(str)
    if c.ndim != 1 or c.size < 1:
        raise ValueError(f"{where} must be a non-empty 1-D list of class values, got shape {c.shape}")
    if c.dtype.kind not in "biufU":
        raise TypeError(f"{where} must hold numbers or strings, got dtype {c.dtype}")
    if len(np.unique(c)) != c.size:
        raise ValueError(f"{where} must hold distinct values, got {c.tolist()}")
    return c


def encode_labels(y: Any, classes: np.ndarray, where: str) -> np.ndarray:
    """Class values -> int64 indices into `classes`; unknown values raise ValueError naming them."""
    y = np.asarray(y)
    if y.dtype.kind == "O":
        y = y.astype(str) if classes.dtype.kind == "U" else y.astype(classes.dtype)
    if (y.dtype.kind == "U") != (classes.dtype.kind == "U"):
        raise TypeError(f"{where} holds {'strings' if y.dtype.kind == 'U' else 'numbers'} but the model's "
                        f"classes_ are {'strings' if classes.dtype.kind == 'U' else 'numbers'} "
                        f"{classes.tolist()[:10]}")
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    pos = np.clip(np.searchsorted(ordered, y), 0, len(ordered) - 1)
    found = ordered[pos] == y
    if not np.all(found):
        unknown = np.unique(y[~found])
        raise ValueError(f"{where} holds values that are not among the model's classes_ "
                         f"{classes.tolist()[:20]}: {unknown.tolist()[:10]}")
    return order[pos].astype(np.int64)


def decode_labels(indices: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """int64 indices -> class values (unchanged when the model has no classes_)."""
    if classes is None or indices.ndim != 1:
        return indices
    return classes[indices]
