"""Losses: mean reductions with PyTorch's numerics, each a thin wrapper over one C++ kernel pair.

    loss = gs.SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)   # a Python float
    grad = loss.backward()                 # d value / d logits, logits' float dtype and shape

A loss computes in the float dtype of its prediction (float32 or float64; anything else becomes
float32); the target is converted to that dtype, and integer class labels stay integers (int64).
Sample weights: `forward(pred, target, sample_weight=w)` with w (N,) finite and >= 0 (one per
sample, pred's first axis) gives Keras's weighted mean, Σ_i w_i·loss_i / N (its
"sum_over_batch_size": divided by the batch size, not by Σ w, so a batch's weight changes its
share of the epoch loss and a weight of 2 counts as the sample seen twice), where loss_i is the
sample's own loss (the mean over its outputs for MSE and BCE). `backward()` scales each sample's
gradient by its weight. The weights enter the C++ kernels (core/loss.hpp); without them the
results are the unweighted ones, bit for bit.

`get(name_or_loss)` turns a registry name ("mse", "binary_crossentropy", "softmax_crossentropy",
"nll") into a loss. `predicted_classes` / `target_classes` / `accuracy` give the classes a
prediction and a target stand for, for the "accuracy" metric.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core

__all__ = ["Loss", "MSE", "BinaryCrossEntropy", "SoftmaxCrossEntropy", "NLL", "LOSSES", "get"]


class Loss:
    """Base class of the losses: `forward(pred, target) -> float`, `backward() -> grad_pred`.

    Subclasses set `name` (the registry key) and implement `_forward(pred, target)`, returning the
    value and what `_backward` needs, and `_backward(*saved)`. Validation lives in the small
    methods `check_pred` and `check_target`, which a training loop can also call on its own.
    """

    name: str = ""
    takes_sample_weight = False  # the built-in losses take per-sample weights in C++

    def __init__(self) -> None:
        self._saved: tuple | None = None

    # ---- the protocol -----------------------------------------------------------------------
    def forward(self, pred: Any, target: Any, sample_weight: Any = None) -> float:
        """The mean loss of `pred` against `target` (a Python float); keeps what backward needs.
        `sample_weight` (N,): per-sample weights, Σ w_i·loss_i / N (module docstring)."""
        self._saved = None  # a forward that raises leaves nothing stale for backward
        p = self.check_pred(pred)
        t = self.check_target(target, p.shape, p.dtype)
        if sample_weight is None:
            value, saved = self._forward(p, t)
        else:
            if not self.takes_sample_weight:
                raise TypeError(f"{self._where()}: {type(self).__name__} does not take "
                                f"sample_weight (the built-in losses do)")
            w = check_sample_weight(sample_weight, p.shape[0] if p.ndim else 1,
                                    f"{self._where()}: sample_weight")
            value, saved = self._forward(p, t, w)
        self._saved = saved
        return float(value)

    def backward(self) -> np.ndarray:
        """d value / d pred for the last forward, in pred's float dtype and shape."""
        if self._saved is None:
            raise ValueError(f"{type(self).__name__}.backward: call forward before backward")
        return self._backward(*self._saved)

    def __call__(self, pred: Any, target: Any, sample_weight: Any = None) -> float:
        return self.forward(pred, target, sample_weight)

    def _forward(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, tuple]:
        raise NotImplementedError

    def _backward(self, *saved: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ---- validation (reusable) --------------------------------------------------------------
    def _where(self) -> str:
        return f"{type(self).__name__}.forward"

    def check_pred(self, pred: Any) -> np.ndarray:
        """`pred` validated and converted once to a C-contiguous array of its float dtype."""
        name = f"{self._where()}: pred"
        a = _checks.numeric_array(pred, name)
        if a.size < 1:
            raise ValueError(f"{name} must have at least one element, got shape {a.shape}")
        # np.asarray(order="C") rather than ascontiguousarray, which turns a 0-d array into 1-d
        return np.asarray(a, dtype=_checks.float_dtype_of(a), order="C")

    def check_target(self, target: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """`target` validated against a prediction of `shape` and converted to `dtype`."""
        name = f"{self._where()}: target"
        t = _checks.numeric_array(target, name)
        if t.shape != tuple(shape):
            raise ValueError(f"{name} must have the shape of pred {tuple(shape)}, got {t.shape}")
        return np.asarray(t, dtype=dtype, order="C")

    # ---- classes, for the "accuracy" metric ---------------------------------------------------
    _threshold = 0.5  # the decision boundary of a single output (probabilities)

    def predicted_classes(self, pred: Any) -> np.ndarray:
        """The classes `pred` stands for: argmax over the last axis for (N, K) with K > 1, else
        `pred > threshold` (0.5 on probabilities, 0 on logits), as int64 of shape (N,)."""
        p = np.asarray(pred)
        if p.ndim == 2 and p.shape[1] > 1:
            return np.argmax(p, axis=1).astype(np.int64)
        return (p.reshape(p.shape[0] if p.ndim else 1, -1)[:, 0] > self._threshold).astype(np.int64)

    def target_classes(self, target: Any) -> np.ndarray:
        """The classes `target` stands for: integer labels as they are, one-hot or probability
        rows (N, K>1) by argmax, a single 0/1 column by `target >= 0.5`."""
        t = np.asarray(target)
        if t.ndim == 2 and t.shape[1] > 1:
            return np.argmax(t, axis=1).astype(np.int64)
        t = t.reshape(t.shape[0] if t.ndim else 1, -1)[:, 0]
        if t.dtype.kind in "biu":
            return t.astype(np.int64)
        return (t >= 0.5).astype(np.int64)

    def as_targets(self, pred: Any) -> np.ndarray:
        """The outputs in the units of the targets, float64: what the "mse"/"mae" metrics compare
        with them (the outputs themselves; probabilities for losses on logits)."""
        return np.asarray(pred).astype(np.float64)

    def probabilities(self, pred: Any) -> np.ndarray:
        """Class probabilities (N, C) the outputs stand for (`Sequential.predict_proba`); only the
        classification losses define them."""
        raise ValueError(f"{type(self).__name__} is not a classification loss: its outputs are not "
                         "class probabilities (compile with SoftmaxCrossEntropy, NLL or BinaryCrossEntropy)")

    def accuracy(self, pred: Any, target: Any) -> float:
        """Fraction of samples whose predicted class equals the target's class."""
        p, t = self.predicted_classes(pred), self.target_classes(target)
        if p.shape != t.shape:
            raise ValueError(f"{type(self).__name__}.accuracy: pred stands for {p.shape} classes "
                             f"and target for {t.shape}")
        return float(np.mean(p == t))

    # ---- description ------------------------------------------------------------------------
    def fused_kinds(self) -> tuple[str | None, str | None]:
        """The C++ network's loss kinds for (class-label targets, array targets), None where the
        fused step cannot take that kind of target; (None, None) for a loss defined only by its
        Python forward/backward."""
        return None, None

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def check_sample_weight(w: Any, n: int, name: str = "sample_weight") -> np.ndarray:
    """Per-sample weights as a float64 C-contiguous (n,) array: finite, >= 0; else ValueError
    (TypeError for non-numbers) naming `name`."""
    a = _checks.numeric_array(w, name)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one weight per sample), got {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    bad = ~np.isfinite(a) | (a < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must hold finite weights >= 0, got {a[i]} at index {i}")
    return a


def _in_unit_interval(a: np.ndarray, allow_nan: bool) -> bool:
    """All of `a` in [0, 1]; NaN passes only when allow_nan (a prediction may become NaN in
    training, which is the training loop's to report; a NaN target is a data error)."""
    if allow_nan:
        return not (np.any(a < 0) or np.any(a > 1))
    return bool(np.all((a >= 0) & (a <= 1)))


def _range_str(a: np.ndarray) -> str:
    finite = a[~np.isnan(a)] if a.dtype.kind == "f" else a
    if finite.size < a.size:
        return "NaN" if finite.size == 0 else f"values in [{finite.min()}, {finite.max()}] and NaN"
    return f"values in [{a.min()}, {a.max()}]"


class MSE(Loss):
    """Mean squared error: mean over all elements of (pred - target)² (torch's F.mse_loss).

    `target` has the shape of `pred`; the gradient is 2 (pred - target) / n.
    """

    name = "mse"

    def fused_kinds(self) -> tuple[str | None, str | None]:
        return None, "mse"

    takes_sample_weight = True

    def _forward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> tuple[float, tuple]:
        return _core.mse_forward(pred, target, w), (pred, target, w)

    def _backward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> np.ndarray:
        return _core.mse_backward(pred, target, w)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy, the mean over all elements (every output is its own yes/no).

    - `from_logits=False`: `pred` holds probabilities in [0, 1] (a Sigmoid's output); equal to
      torch's F.binary_cross_entropy, including its clamp of each log at -100 (p of exactly 0 or
      1 gives a finite loss) and its backward (p - t) / max(p (1-p), 1e-12) / n.
    - `from_logits=True`: `pred` holds logits; the fused, stable sigmoid + BCE of torch's
      F.binary_cross_entropy_with_logits, exact for logits of any size.

    `target` has the shape of `pred`, with values in [0, 1] (soft targets allowed).
    """

    name = "binary_crossentropy"

    def fused_kinds(self) -> tuple[str | None, str | None]:
        return None, "bce_logits" if self.from_logits else "bce"

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__()
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"BinaryCrossEntropy: from_logits must be a bool, got "
                            f"{type(from_logits).__name__} {from_logits!r}")
        self.from_logits = bool(from_logits)
        self._threshold = 0.0 if self.from_logits else 0.5

    def check_pred(self, pred: Any) -> np.ndarray:
        p = super().check_pred(pred)
        if not self.from_logits and not _in_unit_interval(p, allow_nan=True):
            raise ValueError(f"{self._where()}: pred must hold probabilities in [0, 1] (pass "
                             f"from_logits=True for logits), got {_range_str(p)}")
        return p

    def check_target(self, target: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        t = super().check_target(target, shape, dtype)
        if not _in_unit_interval(t, allow_nan=False):
            raise ValueError(f"{self._where()}: target must hold values in [0, 1], "
                             f"got {_range_str(t)}")
        return t

    def predicted_classes(self, pred: Any) -> np.ndarray:
        """`pred > 0.5` (probabilities) or `pred > 0` (logits), elementwise, as int64: every
        output is its own binary decision. A single column (N, 1) gives shape (N,)."""
        p = np.asarray(pred)
        c = (p > self._threshold).astype(np.int64)
        return c[:, 0] if c.ndim == 2 and c.shape[1] == 1 else c

    def as_targets(self, pred: Any) -> np.ndarray:
        """Per output P(1) (the sigmoid of logits), of the outputs' shape."""
        p = np.asarray(pred, dtype=np.float64)
        return 0.5 * (1.0 + np.tanh(0.5 * p)) if self.from_logits else p

    def probabilities(self, pred: Any) -> np.ndarray:
        """Per output P(1) (the sigmoid of logits); a single output gives the two columns
        [P(0), P(1)], as scikit-learn's binary classifiers do."""
        p = self.as_targets(pred)  # the sigmoid as 0.5·(1 + tanh(x/2)): no overflow for large |x|
        return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if p.ndim == 2 and p.shape[1] == 1 else p

    def target_classes(self, target: Any) -> np.ndarray:
        t = np.asarray(target)
        c = (t >= 0.5).astype(np.int64)
        return c[:, 0] if c.ndim == 2 and c.shape[1] == 1 else c

    takes_sample_weight = True

    def _forward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> tuple[float, tuple]:
        fwd = _core.bce_logits_forward if self.from_logits else _core.bce_forward
        return fwd(pred, target, w), (pred, target, w)

    def _backward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> np.ndarray:
        bwd = _core.bce_logits_backward if self.from_logits else _core.bce_backward
        return bwd(pred, target, w)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}


class _ClassLoss(Loss):
    """Shared validation of the row-wise losses: pred (N, K), integer labels (N,) in [0, K)."""

    _pred_kind = "values"

    def check_pred(self, pred: Any) -> np.ndarray:
        name = f"{self._where()}: pred"
        a = _checks.numeric_array(pred, name)
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of {self._pred_kind} (N, K), got a "
                             f"{a.ndim}-D array of shape {a.shape}")
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"{name} must have at least one row and one class, "
                             f"got shape {a.shape}")
        return np.ascontiguousarray(a, dtype=_checks.float_dtype_of(a))

    def check_labels(self, target: Any, shape: tuple[int, ...]) -> np.ndarray:
        """Integer class labels (N,) in [0, K) as int64 (floats holding whole numbers accepted)."""
        N, K = shape
        return _checks.class_labels(target, f"{self._where()}: target", n_classes=K, n=N)

    def check_target(self, target: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.check_labels(target, shape)

    def predicted_classes(self, pred: Any) -> np.ndarray:
        """argmax over the classes, as int64 (N,)."""
        return np.argmax(np.asarray(pred), axis=1).astype(np.int64)


class SoftmaxCrossEntropy(_ClassLoss):
    """Softmax + cross-entropy fused on logits (N, K), mean over the batch (F.cross_entropy).

    `target` is either integer class labels (N,) in [0, K) (ints, or floats holding whole
    numbers), or class probabilities (N, K) with values in [0, 1] (soft labels, e.g. one-hot or
    label-smoothed rows; torch's formula -Σ_k t_k log softmax(x)_k is used as is, so rows are not
    required to sum to 1). The log-sum-exp subtracts each row's max, so logits of any finite size
    give a finite loss. The gradient is (softmax(x) - onehot(y)) / N.
    """

    name = "softmax_crossentropy"
    _pred_kind = "logits"

    def fused_kinds(self) -> tuple[str | None, str | None]:
        return "softmax_xent", "softmax_xent_soft"

    def check_target(self, target: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        name = f"{self._where()}: target"
        t = _checks.numeric_array(target, name)
        if t.ndim == 1:
            return self.check_labels(t, shape)
        if t.ndim != 2 or t.shape != tuple(shape):
            raise ValueError(f"{name} must be integer labels ({shape[0]},) or class probabilities "
                             f"{tuple(shape)}, got shape {t.shape}")
        t = np.ascontiguousarray(t, dtype=dtype)
        if not _in_unit_interval(t, allow_nan=False):
            raise ValueError(f"{name} must hold class probabilities in [0, 1], got {_range_str(t)}")
        return t

    def as_targets(self, pred: Any) -> np.ndarray:
        """The class probabilities (soft-label targets are probabilities too)."""
        return self.probabilities(pred)

    def probabilities(self, pred: Any) -> np.ndarray:
        """The softmax of the logits, row by row (each row's max subtracted first)."""
        z = np.asarray(pred, dtype=np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    takes_sample_weight = True

    def _forward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> tuple[float, tuple]:
        if target.ndim == 1:
            value, probs = _core.softmax_xent_forward(pred, target, w)
        else:
            value, probs = _core.softmax_xent_soft_forward(pred, target, w)
        return value, (probs, target, w)

    def _backward(self, probs: np.ndarray, target: np.ndarray, w: Any = None) -> np.ndarray:
        if target.ndim == 1:
            return _core.softmax_xent_backward(probs, target, sample_weight=w)
        return _core.softmax_xent_soft_backward(probs, target, sample_weight=w)


class NLL(_ClassLoss):
    """Negative log-likelihood on probabilities (N, K) (a Softmax layer's output) with integer
    labels (N,): -mean(log p[n, y_n]).

    Each log is clamped at -100, as torch's binary_cross_entropy does, so a probability of 0
    gives a large finite loss (100 per sample) instead of inf. Value and gradient equal torch's
    `F.nll_loss(torch.log(p).clamp(min=-100), y)`: the gradient is -1/(N p) at the label (0
    elsewhere) and 0 where the clamp is active, including p = 0, where torch's autograd gives
    0·inf = NaN. Probabilities must lie in [0, 1].
    """

    name = "nll"
    _pred_kind = "probabilities"

    def fused_kinds(self) -> tuple[str | None, str | None]:
        return "nll", None

    def check_pred(self, pred: Any) -> np.ndarray:
        p = super().check_pred(pred)
        if not _in_unit_interval(p, allow_nan=True):
            raise ValueError(f"{self._where()}: pred must hold probabilities in [0, 1] (a "
                             f"Softmax's output; use SoftmaxCrossEntropy on logits), "
                             f"got {_range_str(p)}")
        return p

    def probabilities(self, pred: Any) -> np.ndarray:
        """The outputs themselves (a Softmax layer's probabilities)."""
        return np.asarray(pred, dtype=np.float64)

    takes_sample_weight = True

    def _forward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> tuple[float, tuple]:
        return _core.nll_forward(pred, target, w), (pred, target, w)

    def _backward(self, pred: np.ndarray, target: np.ndarray, w: Any = None) -> np.ndarray:
        return _core.nll_backward(pred, target, w)


LOSSES: dict[str, type[Loss]] = {
    "mse": MSE,
    "binary_crossentropy": BinaryCrossEntropy,
    "softmax_crossentropy": SoftmaxCrossEntropy,
    "nll": NLL,
}


def get(name_or_loss: Any) -> Loss:
    """A loss from a registry name (a new instance with default arguments) or a `Loss` instance
    (returned as is). A `Loss` subclass is instantiated with its defaults."""
    valid = ", ".join(repr(k) for k in LOSSES)
    if isinstance(name_or_loss, Loss):
        return name_or_loss
    is_class = isinstance(name_or_loss, type) and issubclass(name_or_loss, Loss)
    if is_class and name_or_loss is not Loss:
        return name_or_loss()
    if isinstance(name_or_loss, str):
        if name_or_loss in LOSSES:
            return LOSSES[name_or_loss]()
        raise ValueError(f"loss must be one of {valid} or a Loss instance, got {name_or_loss!r}")
    raise TypeError(f"loss must be one of {valid} or a Loss instance, got "
                    f"{type(name_or_loss).__name__} {name_or_loss!r}")
