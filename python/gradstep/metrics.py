"""Metrics reported by `fit`/`evaluate`: "accuracy", "mse", "mae", "precision", "recall", "f1",
"top_k_accuracy", "auc", and any callable `metric(y_true, y_pred) -> float`.

`fit` and `evaluate` feed a `Tracker` batch by batch and read each metric once at the end, so
every metric is over the whole epoch (or evaluated set), not an average of per-batch values:

- accuracy, mse, mae, top_k_accuracy: sums over the batches divided by the count (accuracy counts
  each output of a multi-output BCE as its own decision); mse/mae average over all elements of
  the outputs in the targets' units (`loss.as_targets`: the class probabilities for softmax
  cross-entropy and a BCE on logits, the outputs themselves otherwise) minus the targets; integer
  class labels (N,) against one output per class (softmax cross-entropy, NLL) count as their
  one-hot rows, so that "mse" is the multi-class Brier score divided by the number of classes,
  whichever way the labels are given;
- precision, recall, f1: from the confusion matrix summed over the batches; binary problems (one
  output, or two classes) score the positive class 1, multi-class problems the unweighted mean
  over the classes (scikit-learn's average="binary" / "macro");
- top_k_accuracy: the target class among the `TOP_K` (5) highest outputs (Keras's
  TopKCategoricalAccuracy); for class-label models (softmax cross-entropy, NLL);
- auc: area under the ROC curve (scikit-learn's roc_auc_score) of the outputs collected over the
  epoch; multi-class: one-vs-rest, macro average, on the softmax of the logits;
- a callable: called per batch as `metric(y_true, y_pred)` with the targets as given to fit and
  the model's outputs (logits for the fused losses), averaged over the batches weighted by their
  size (as Keras does for a plain function); reported under the function's `__name__`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

METRICS = ("accuracy", "mse", "mae", "precision", "recall", "f1", "top_k_accuracy", "auc")
TOP_K = 5
_ALIASES = {"acc": "accuracy"}


class CustomMetric(str):
    """A callable metric in `model.metrics`: the string is its name (what the logs and a saved
    model show), `.fn` the function."""

    fn: Callable[[Any, Any], float]

    def __new__(cls, fn: Callable[[Any, Any], float]) -> "CustomMetric":
        name = getattr(fn, "__name__", None) or type(fn).__name__
        if name == "<lambda>":
            name = "metric"
        self = super().__new__(cls, name)
        self.fn = fn
        return self


def check_metrics(metrics: Any) -> list[str]:
    """The metric names (callables wrapped as CustomMetric), checked."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    out: list[str] = []
    for m in metrics:
        if isinstance(m, CustomMetric):
            out.append(m)
            continue
        if callable(m) and not isinstance(m, str):
            out.append(CustomMetric(m))
            continue
        if not isinstance(m, str):
            raise TypeError(f"compile: metrics must be names from {list(METRICS)} or callables "
                            f"metric(y_true, y_pred), got {m!r}")
        name = _ALIASES.get(m, m)
        if name not in METRICS:
            raise ValueError(f"compile: unknown metric {m!r}; valid metrics are {list(METRICS)} or a "
                             f"callable metric(y_true, y_pred)")
        out.append(name)
    names = [str(m) for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"compile: metric names must be distinct, got {names}")
    return out


def batch_sums(name: str, outputs: np.ndarray, target: np.ndarray, loss: Any) -> tuple[float, int]:
    """(sum over the batch, count) for the additive metrics "accuracy", "mse", "mae". The classes
    behind "accuracy" are the loss's (`loss.predicted_classes` / `target_classes`): it knows
    whether outputs are logits or probabilities, and that every output of a multi-output BCE is its
    own binary decision."""
    if name == "accuracy":
        correct = loss.predicted_classes(outputs) == loss.target_classes(target)
        return float(np.count_nonzero(correct)), correct.size
    if target.ndim == 1 and outputs.ndim == 2 and outputs.shape[1] > 1:
        diff = _probability_errors(outputs, target, loss)
    else:
        diff = loss.as_targets(outputs) - target.reshape(outputs.shape)
    if name == "mse":
        return float(np.sum(diff * diff)), diff.size
    return float(np.sum(np.abs(diff))), diff.size


def _probability_errors(outputs: np.ndarray, labels: np.ndarray, loss: Any) -> np.ndarray:
    """probabilities − one-hot(labels), (N, K) float64: what "mse"/"mae" compare for class labels
    against one output per class (the outputs are logits or probabilities, the labels indices, so
    neither can be subtracted from the other). A loss without class probabilities gets a
    ValueError naming the metric and the targets."""
    try:
        probs = np.array(loss.probabilities(outputs), dtype=np.float64)
    except ValueError:
        raise ValueError(f'metrics "mse"/"mae" with class labels (N,) compare class probabilities '
                         f"with the one-hot labels, and {type(loss).__name__} gives no class "
                         f"probabilities for outputs of shape {outputs.shape}; give targets of "
                         f"the outputs' shape") from None
    rows = np.arange(probs.shape[0])
    probs[rows, np.asarray(labels).astype(np.int64)] -= 1.0  # whole-number floats: validated labels
    return probs


class Tracker:
    """Accumulates the metrics of one epoch (or one evaluation) batch by batch."""

    def __init__(self, metrics: list[str], loss: Any) -> None:
        self.metrics = list(metrics)
        self.loss = loss
        self.sums = {m: 0.0 for m in self.metrics}
        self.counts = {m: 0 for m in self.metrics}
        self.confusion: np.ndarray | None = None
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def update(self, outputs: np.ndarray, target: np.ndarray, metrics: list[str] | None = None) -> None:
        """Add one batch; `metrics`: only these (fit's fast path counts "accuracy" itself)."""
        n = outputs.shape[0]
        metrics = self.metrics if metrics is None else metrics
        for m in metrics:
            if isinstance(m, CustomMetric):
                self.sums[m] += float(m.fn(target, outputs)) * n
                self.counts[m] += n
            elif m in ("accuracy", "mse", "mae"):
                s, c = batch_sums(m, outputs, target, self.loss)
                self.sums[m] += s
                self.counts[m] += c
            elif m == "top_k_accuracy":
                s, c = self._top_k(outputs, target)
                self.sums[m] += s
                self.counts[m] += c
        if {"precision", "recall", "f1"} & set(metrics):
            self._add_confusion(outputs, target)
        if "auc" in metrics:
            self.scores.append(np.array(outputs, dtype=np.float64))
            self.targets.append(np.array(target))

    def results(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.metrics:
            if m in ("precision", "recall", "f1"):
                out[str(m)] = self._from_confusion(m)
            elif m == "auc":
                out[m] = self._auc()
            else:
                out[str(m)] = self.sums[m] / max(self.counts[m], 1)
        return out

    # ---- the non-additive metrics -------------------------------------------------------------
    def _classes(self, outputs: np.ndarray) -> int:
        return max(2, outputs.shape[1]) if outputs.ndim == 2 else 2

    def _top_k(self, outputs: np.ndarray, target: np.ndarray) -> tuple[float, int]:
        if outputs.ndim != 2 or outputs.shape[1] < 2:
            raise ValueError("top_k_accuracy: needs a model with one output per class (softmax "
                             f"cross-entropy or NLL), got outputs of shape {outputs.shape}")
        labels = self.loss.target_classes(target)
        k = min(TOP_K, outputs.shape[1])
        top = np.argpartition(-outputs, k - 1, axis=1)[:, :k]
        return float(np.count_nonzero(top == labels[:, None])), outputs.shape[0]

    def _add_confusion(self, outputs: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(self.loss.predicted_classes(outputs)).reshape(-1)
        true = np.asarray(self.loss.target_classes(target)).reshape(-1)
        c = self._classes(outputs) if pred.size == outputs.shape[0] else 2  # multi-label: each output 0/1
        counts = np.bincount(true * c + pred, minlength=c * c)[:c * c].reshape(c, c)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def _from_confusion(self, name: str) -> float:
        cm = self.confusion
        if cm is None:
            return float("nan")
        tp = np.diag(cm).astype(np.float64)
        predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / predicted, 0.0)
            recall = np.where(actual > 0, tp / actual, 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        value = {"precision": precision, "recall": recall, "f1": f1}[name]
        return float(value[1]) if cm.shape[0] == 2 else float(np.mean(value))

    def _auc(self) -> float:
        from sklearn.metrics import roc_auc_score

        if not self.scores:
            return float("nan")
        scores = np.concatenate(self.scores)
        target = np.concatenate(self.targets)
        labels = np.asarray(self.loss.target_classes(target))
        if scores.ndim == 2 and scores.shape[1] > 1 and labels.ndim == 1:  # multi-class, one-vs-rest
            if type(self.loss).__name__ == "SoftmaxCrossEntropy":
                z = scores - scores.max(axis=1, keepdims=True)
                scores = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            if len(np.unique(labels)) < scores.shape[1]:
                return float("nan")  # a class absent from the targets: ROC AUC is undefined
            return float(roc_auc_score(labels, scores, multi_class="ovr", average="macro"))
        scores = scores.reshape(labels.shape) if scores.size == labels.size else scores
        if len(np.unique(labels)) < 2:
            return float("nan")
        return float(roc_auc_score(labels, scores))
