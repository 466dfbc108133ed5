"""Validation of user input, done in Python before any kernel runs.

Wrong types raise TypeError, wrong values or shapes raise ValueError; every message names the
argument, what was expected and what came.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Normalize a float dtype argument ("float32", np.float64, ...)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dt.name!r}")
    return dt


def float_dtype_of(a: np.ndarray) -> np.dtype:
    """The float dtype a layer without parameters computes in for input `a`."""
    return a.dtype if a.dtype in FLOAT_DTYPES else np.dtype(np.float32)


def numeric_array(x: Any, name: str) -> np.ndarray:
    """`x` as an ndarray of real numbers (bool, int or float), else TypeError."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__} ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got an array of dtype {a.dtype}")
    return a


def float_array(x: Any, name: str, dtype: np.dtype | None = None, ndim: int | None = None,
                shape: tuple | None = None) -> np.ndarray:
    """`x` converted once to a C-contiguous float array.

    dtype None keeps float32/float64 input as it is and turns anything else into float32.
    `shape` may hold None for "any size" along an axis.
    """
    a = numeric_array(x, name)
    if ndim is not None and a.ndim != ndim:
        want = f"a {ndim}-D array" + (f" of shape {fmt_shape(shape)}" if shape else "")
        raise ValueError(f"{name} must be {want}, got a {a.ndim}-D array of shape {a.shape}")
    if shape is not None:
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            raise ValueError(f"{name} must have shape {fmt_shape(shape)}, got {a.shape}")
    dt = float_dtype_of(a) if dtype is None else dtype
    return np.ascontiguousarray(a, dtype=dt)


def first_nonfinite(a: np.ndarray) -> tuple | None:
    """Index of the first NaN/inf in a float array, or None; checks in chunks so that validating a
    large data set does not allocate a boolean copy of it."""
    if a.dtype.kind != "f" or a.size == 0:
        return None
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    rows = max(1, (1 << 16) // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], rows):
        block = flat[start:start + rows]
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            return (start + int(bad[0]),) + tuple(int(i) for i in bad[1:])
    return None


def check_finite(a: Any, name: str) -> None:
    """ValueError naming the first NaN/inf of a numeric array: "(first at row r, column c)".

    A training step calls this on every batch, so the common case costs one summation and no
    allocation: a finite sum means every entry is finite (NaN and inf propagate); only a sum that
    is not finite (a bad entry, or an overflow of large finite values) pays for the search."""
    if not isinstance(a, np.ndarray):
        a = numeric_array(a, name)
    if a.dtype.kind not in "fc" or a.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return
    bad = first_nonfinite(a)
    if bad is not None:
        where = (f"index {bad[0]}" if len(bad) == 1 else
                 f"row {bad[0]}, column {bad[1] if len(bad) == 2 else bad[1:]}")
        raise ValueError(f"{name} holds NaN or inf (first at {where})")


def fmt_shape(shape: tuple) -> str:
    parts = ["N" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_int_tuple(value: Any, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int (repeated n times) or a sequence of n ints, each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
        return tuple(check_int(v, name, minimum) for v in value)
    return (check_int(value, name, minimum),) * n


def check_float(value: Any, name: str, minimum: float | None = None, maximum: float | None = None,
                min_inclusive: bool = True, max_inclusive: bool = True) -> float:
    """A real, finite number in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    lo_ok = minimum is None or (v >= minimum if min_inclusive else v > minimum)
    hi_ok = maximum is None or (v <= maximum if max_inclusive else v < maximum)
    if not (lo_ok and hi_ok):
        lo = "" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum}"
        hi = "" if maximum is None else f"{maximum}" + ("]" if max_inclusive else ")")
        if minimum is not None and maximum is not None:
            rng = f"in {lo}, {hi}"
        elif minimum is not None:
            rng = f">= {minimum}" if min_inclusive else f"> {minimum}"
        else:
            rng = f"<= {maximum}" if max_inclusive else f"< {maximum}"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def class_labels(y: Any, name: str, n_classes: int | None = None, n: int | None = None) -> np.ndarray:
    """Integer class labels (N,) as int64; floats that are whole numbers are accepted."""
    a = numeric_array(y, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} labels (one per row), got {a.shape[0]}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    elif a.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer class labels, got bool")
    lab = a.astype(np.int64, copy=False)
    if n_classes is not None and lab.size:
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must lie in [0, {n_classes}), got label {bad}")
    return np.ascontiguousarray(lab)
