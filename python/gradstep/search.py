"""Hyperparameter search: random search and coarse-to-fine search, scored on held-out data.

    space = {"lr": gs.search.LogUniform(1e-4, 1e-1), "units": gs.search.Choice([32, 64, 128])}

    def build(params):
        model = gs.Sequential([gs.Dense(64, params["units"]), gs.ReLU(), gs.Dense(params["units"], 10)])
        return model.compile(loss="softmax_crossentropy", optimizer=gs.Adam(lr=params["lr"]),
                             metrics=["accuracy"])

    result = gs.search.random_search(build, space, X, y, trials=20, epochs=5, seed=0)
    print(result.table())
    result = gs.search.coarse_to_fine(build, space, X, y, stages=[(20, 2), (10, 10)], seed=0)

How a trial is scored
- on `validation_data` when it is given; with `cv=k`, by k-fold cross-validation (the mean of the
  folds' scores); otherwise on a seeded hold-out split of X, y (`validation_split`, stratified for
  integer class labels);
- the score is the validation accuracy of the last epoch when the model was compiled with the
  "accuracy" metric, else minus the last validation loss (higher is always better). `metric=`
  overrides this: "accuracy" (maximized), "loss", "mse" or "mae" (minimized, score = minus the
  value), or a callable `metric(model, X_val, y_val) -> float` (maximized);
- a trial whose training loss (or score) becomes NaN or inf scores -inf and is kept in the
  result with status "nan": it is reported, not raised.
- what people read (the progress lines with `verbose=1`, `SearchResult.table`, `score_text`)
  numbers trials (and stages) from 1 in the order they were drawn (`Trial.index + 1`) and shows a
  minimized metric as itself ("val_loss 0.1234", lower is better), not as the negated score.

Ctrl-C during a search raises `SearchInterrupted` (a KeyboardInterrupt) whose `result` holds the
trials that finished, so a caller can still print their table.

Reproducibility: every trial draws its parameters, its weights (the library generator is seeded
while `build` runs) and its shuffling (`fit(seed=)`) from seeds derived from (seed, stage, trial
index) with numpy's SeedSequence, so the same seed gives the same trials and the same scores
whatever `n_jobs` is. `seed=None` draws the base seed from the library generator (`gs.seed`).

Parallel trials: `n_jobs > 1` (or -1 for all cores) runs trials in joblib's loky worker processes,
each with one kernel thread (`gs.set_num_threads(1)`) so that workers do not oversubscribe the
cores. `build` (and a callable `metric`) are sent to the workers with cloudpickle: a module-level
function, a lambda or a closure over picklable values works; one that captures an open file, a
lock or a gs model does not.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import _checks, _random

__all__ = ["Distribution", "LogUniform", "Uniform", "Choice", "IntUniform", "Trial", "SearchResult",
           "SearchInterrupted", "random_search", "coarse_to_fine"]

METRICS = ("accuracy", "loss", "mse", "mae")

# Narrowing: the new range spans the best trials' values, widened on each side by this fraction
# of their spread, and by at least this fraction of the old range (so that a stage whose best
# trials agree still leaves room to search).
_WIDEN = 0.25
_MIN_WIDEN = 0.1


# ---- distributions ------------------------------------------------------------------------------
class Distribution:
    """What one hyperparameter is drawn from. `sample(rng)` returns a Python value; `narrow(values)`
    returns a distribution concentrated around `values` (what coarse_to_fine does between stages)."""

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def narrow(self, values: Sequence[Any]) -> "Distribution":
        raise NotImplementedError

    def _key(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self._key())))


def _bound(value: Any, owner: str, name: str) -> float:
    return _checks.check_float(value, f"{owner}: {name}")


def _check_values(values: Any, owner: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{owner}.narrow: values must be a non-empty list of sampled values, got {values!r}")
    return list(values)


def _widened(lo: float, hi: float, low: float, high: float) -> tuple[float, float]:
    """[lo, hi] widened a little, clipped to [low, high]."""
    pad = max(_WIDEN * (hi - lo), _MIN_WIDEN * (high - low))
    return max(low, lo - pad), min(high, hi + pad)


class LogUniform(Distribution):
    """Uniform in log space between `low` and `high` (0 < low < high): each decade is equally
    likely, the usual prior for learning rates and weight decays."""

    def __init__(self, low: float, high: float) -> None:
        self.low = _bound(low, "LogUniform", "low")
        self.high = _bound(high, "LogUniform", "high")
        if self.low <= 0.0:
            raise ValueError(f"LogUniform: low must be > 0 (the range is taken in log space), got {self.low}")
        if not self.low < self.high:
            raise ValueError(f"LogUniform: low must be < high, got low={self.low}, high={self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return min(max(v, self.low), self.high)  # exp(log(x)) may round just outside

    def narrow(self, values: Sequence[Any]) -> "LogUniform":
        logs = [math.log(_bound(v, "LogUniform.narrow", "values")) for v in _check_values(values, "LogUniform")]
        lo, hi = _widened(min(logs), max(logs), math.log(self.low), math.log(self.high))
        return LogUniform(max(self.low, math.exp(lo)), min(self.high, math.exp(hi)))

    def _key(self) -> tuple:
        return (self.low, self.high)

    def __repr__(self) -> str:
        return f"LogUniform({self.low:.6g}, {self.high:.6g})"


class Uniform(Distribution):
    """Uniform between `low` and `high` (low < high)."""

    def __init__(self, low: float, high: float) -> None:
        self.low = _bound(low, "Uniform", "low")
        self.high = _bound(high, "Uniform", "high")
        if not self.low < self.high:
            raise ValueError(f"Uniform: low must be < high, got low={self.low}, high={self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        return min(float(rng.uniform(self.low, self.high)), self.high)

    def narrow(self, values: Sequence[Any]) -> "Uniform":
        vals = [_bound(v, "Uniform.narrow", "values") for v in _check_values(values, "Uniform")]
        lo, hi = _widened(min(vals), max(vals), self.low, self.high)
        return Uniform(lo, hi)

    def _key(self) -> tuple:
        return (self.low, self.high)

    def __repr__(self) -> str:
        return f"Uniform({self.low:.6g}, {self.high:.6g})"


class IntUniform(Distribution):
    """An integer drawn uniformly from `low` to `high`, both included (low < high)."""

    def __init__(self, low: int, high: int) -> None:
        self.low = _checks.check_int(low, "IntUniform: low")
        self.high = _checks.check_int(high, "IntUniform: high")
        if not self.low < self.high:
            raise ValueError(f"IntUniform: low must be < high, got low={self.low}, high={self.high}")

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high, endpoint=True))

    def narrow(self, values: Sequence[Any]) -> "IntUniform":
        """The widened range rounded outwards to integers (so it always keeps at least two)."""
        vals = [_checks.check_int(v, "IntUniform.narrow: values") for v in _check_values(values, "IntUniform")]
        lo, hi = _widened(min(vals), max(vals), self.low, self.high)
        return IntUniform(max(self.low, math.floor(lo)), min(self.high, math.ceil(hi)))

    def _key(self) -> tuple:
        return (self.low, self.high)

    def __repr__(self) -> str:
        return f"IntUniform({self.low}, {self.high})"


class Choice(Distribution):
    """One of `values` (any objects: numbers, strings, tuples of layer sizes), each equally likely."""

    def __init__(self, values: Sequence[Any]) -> None:
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"Choice: values must be a list of options, got {type(values).__name__} {values!r}")
        if len(values) == 0:
            raise ValueError("Choice: values must hold at least one option, got an empty list")
        self.values = [v.item() if isinstance(v, np.generic) else v for v in values]

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def narrow(self, values: Sequence[Any]) -> "Choice":
        """The options that appear among `values`, in their original order."""
        seen = _check_values(values, "Choice")
        kept = [v for v in self.values if any(_same(v, s) for s in seen)]
        if not kept:
            raise ValueError(f"Choice.narrow: none of {seen!r} is one of the options {self.values!r}")
        return Choice(kept)

    def _key(self) -> tuple:
        return tuple(repr(v) for v in self.values)

    def __repr__(self) -> str:
        return f"Choice({self.values!r})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # arrays and other objects without a single truth value
        return a is b


# ---- trials and results -------------------------------------------------------------------------
class Trial:
    """One set of hyperparameters, trained and scored.

    `index` (0-based, in the order trials were drawn, across stages), `stage` (0 for
    random_search), `params`, `score` (higher is better; -inf when training diverged),
    `fold_scores` (one per cross-validation fold, or a single score), `histories` (the `History`
    of each fold's fit; `history` is the first), `status` ("ok" or "nan"), `message` (why a trial
    failed), `epochs`, `seed` (the fit seed: `fit(seed=)` reproduces the shuffling), `seconds`.
    """

    def __init__(self, index: int, stage: int, params: dict[str, Any], epochs: int, seed: int,
                 init_seed: int, score: float = -math.inf, fold_scores: list[float] | None = None,
                 histories: list[Any] | None = None, status: str = "ok", message: str = "",
                 seconds: float = 0.0) -> None:
        self.index = index
        self.stage = stage
        self.params = params
        self.epochs = epochs
        self.seed = seed
        self.init_seed = init_seed
        self.score = score
        self.fold_scores = fold_scores or []
        self.histories = histories or []
        self.status = status
        self.message = message
        self.seconds = seconds

    @property
    def history(self) -> Any:
        return self.histories[0] if self.histories else None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "stage": self.stage, "params": dict(self.params), "score": self.score,
                "fold_scores": list(self.fold_scores), "status": self.status, "message": self.message,
                "epochs": self.epochs, "seed": self.seed, "seconds": self.seconds}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return (f"Trial(index={self.index}, stage={self.stage}, score={self.score:.6g}, "
                f"status={self.status!r}, params={{{params}}})")


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: `result` is a SearchResult of the trials that finished (None if
    none did; no best model is retrained). A KeyboardInterrupt, so that it stops a program as
    Ctrl-C does unless caught."""

    def __init__(self, result: "SearchResult | None") -> None:
        super().__init__("search interrupted")
        self.result = result


def shown_score(metric: str, score: float) -> tuple[str, float]:
    """(name, value) as a person reads a score: "-val_loss" -0.12 is shown as val_loss 0.12."""
    if metric.startswith("-"):
        return metric[1:], -score
    return metric, score


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class SearchResult:
    """What random_search and coarse_to_fine return.

    `trials` is sorted by score, best first (ties keep the order the trials were drawn in);
    `best_trial`, `best_params`, `best_score`; `metric` says what the score is (e.g.
    "val_accuracy" or "-val_loss": scores are maximized, so a loss is negated; `table` and
    `score_text` show it as the loss itself); `spaces` holds the search space of each stage.

    `best_model` is the best trial's parameters *retrained on all of X, y* (the validation rows of
    a hold-out split included) for the best trial's epochs, with that trial's weight and
    shuffling seeds; its `History` is `best_history`. It is None with `refit=False` or when every
    trial diverged.
    """

    def __init__(self, trials: list[Trial], metric: str, spaces: list[dict[str, Any]], seed: int,
                 best_model: Any = None, best_history: Any = None) -> None:
        self.trials = sorted(trials, key=lambda t: (-t.score, t.index))
        self.metric = metric
        self.spaces = spaces
        self.seed = seed
        self.best_model = best_model
        self.best_history = best_history

    @property
    def best_trial(self) -> Trial:
        return self.trials[0]

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.trials[0].params)

    @property
    def best_score(self) -> float:
        return self.trials[0].score

    def score_text(self, trial: Trial) -> str:
        """The trial's score as a person reads it, e.g. "val_accuracy 0.9500" or "val_loss 0.1234"."""
        name, value = shown_score(self.metric, trial.score)
        return f"{name} {value:.4f}"

    def table(self, max_rows: int | None = None) -> str:
        """A text table of the trials, best first: rank, trial (numbered from 1 as drawn, as in the
        progress lines), stage (from 1, when several), parameters, the score as its metric (a loss
        shown as itself: lower is better; with the fold spread under cross-validation), epochs,
        status."""
        keys: list[str] = []
        for t in self.trials:
            keys += [k for k in t.params if k not in keys]
        stages = len({t.stage for t in self.trials}) > 1
        folds = any(len(t.fold_scores) > 1 for t in self.trials)
        name, sign = shown_score(self.metric, 1.0)
        head = ["rank", "trial"] + (["stage"] if stages else []) + keys + [name]
        head += (["± std"] if folds else []) + ["epochs", "status"]
        rows = [head]
        shown = self.trials if max_rows is None else self.trials[:max_rows]
        for rank, t in enumerate(shown, 1):
            row = [str(rank), str(t.index + 1)] + ([str(t.stage + 1)] if stages else [])
            row += [_fmt(t.params[k]) if k in t.params else "-" for k in keys]
            row.append(f"{sign * t.score:.4f}" if math.isfinite(t.score) else "diverged")
            if folds:
                finite = [s for s in t.fold_scores if math.isfinite(s)]
                row.append(f"{np.std(finite):.4f}" if len(finite) == len(t.fold_scores) else "-")
            row += [str(t.epochs), t.status]
            rows.append(row)
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if max_rows is not None and len(self.trials) > max_rows:
            lines.append(f"... {len(self.trials) - max_rows} more trials")
        return "\n".join(lines)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())
        return (f"SearchResult(trials={len(self.trials)}, metric={self.metric!r}, "
                f"best_score={self.best_score:.6g}, best_params={{{params}}})")


# ---- one trial ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _library_seeded(seed: int) -> Iterator[None]:
    """Seed the library generator while `build` runs (layers without a seed draw their weights
    from it), then put the caller's generator back untouched."""
    saved = _random._generator
    _random.seed(seed)
    try:
        yield
    finally:
        _random._generator = saved


def _build(build: Callable[[dict], Any], params: dict[str, Any], init_seed: int) -> Any:
    from .model import Sequential

    with _library_seeded(init_seed):
        model = build(dict(params))
    if not isinstance(model, Sequential):
        raise TypeError(f"search: build(params) must return a compiled gs.Sequential, got {type(model).__name__}")
    if model.loss is None or model.optimizer is None:
        raise ValueError("search: build(params) must return a compiled model (call model.compile(...) in build)")
    return model


def _metric_name(metric: Any, model: Any) -> str:
    name = metric if metric is not None else ("accuracy" if "accuracy" in model.metrics else "loss")
    if name != "loss" and name not in model.metrics:
        raise ValueError(f"search: metric={name!r} needs a model compiled with metrics=[{name!r}], "
                         f"got metrics={model.metrics}")
    return name


def _describe_metric(metric: Any) -> str:
    if callable(metric):
        return getattr(metric, "__name__", "metric")
    return "val_accuracy" if metric == "accuracy" else f"-val_{metric}"


def _score_fold(model: Any, history: Any, metric: Any, X_va: np.ndarray, y_va: np.ndarray) -> tuple[float, str]:
    """(score, "" or why it is -inf) of one trained fold."""
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        bad = next((v for v in losses if not math.isfinite(v)), float("nan"))
        return -math.inf, f"the training loss became {bad}"
    if callable(metric):
        value = float(metric(model, X_va, y_va))
        score = value
    else:
        name = _metric_name(metric, model)
        value = history.history[f"val_{name}"][-1]
        score = value if name == "accuracy" else -value
    if not math.isfinite(score):
        return -math.inf, f"the validation score became {value}"
    return float(score), ""


def _run_trial(build: Callable[[dict], Any], params: dict[str, Any], X: np.ndarray, y: np.ndarray,
               folds: list[tuple[np.ndarray, np.ndarray]] | None, validation_data: Any, epochs: int,
               batch_size: int, metric: Any, init_seed: int, fit_seed: int, one_thread: bool) -> dict[str, Any]:
    """Train and score one set of parameters (module level: joblib workers import it by name)."""
    from .callbacks import TerminateOnNaN

    if one_thread:  # in a joblib worker
        from ._threads import set_num_threads
        set_num_threads(1)
    start = time.perf_counter()
    if folds is None:
        parts = [(X, y, validation_data[0], validation_data[1])]
    else:
        parts = [(X[tr], y[tr], X[va], y[va]) for tr, va in folds]
    scores, histories, messages, label = [], [], [], ""
    for X_tr, y_tr, X_va, y_va in parts:
        model = _build(build, params, init_seed)
        if metric is not None and not callable(metric):
            _metric_name(metric, model)  # a wrong metric name is the user's mistake: raise before training
        stop = TerminateOnNaN()
        history = model.fit(X_tr, y_tr, epochs=epochs, batch_size=batch_size, validation_data=(X_va, y_va),
                            verbose=0, seed=fit_seed, callbacks=[stop])
        score, why = _score_fold(model, history, metric, X_va, y_va)
        label = _describe_metric(metric if metric is not None else _metric_name(None, model))
        scores.append(score)
        histories.append(history)
        if why:
            messages.append(why if len(parts) == 1 else f"fold {len(scores) - 1}: {why}")
    finite = all(math.isfinite(s) for s in scores)
    return {"score": float(np.mean(scores)) if finite else -math.inf, "fold_scores": scores,
            "histories": histories, "status": "ok" if finite else "nan", "message": "; ".join(messages),
            "seconds": time.perf_counter() - start, "metric": label}


# ---- search drivers -----------------------------------------------------------------------------
def _seed_from(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))  # 63 bits: a valid gs seed


def _trial_seeds(base: int, stage: int, index: int) -> tuple[np.random.Generator, int, int]:
    """(generator for the parameters, weight seed, fit seed) of one trial: a function of
    (base seed, stage, trial index) only, so trials do not depend on the order they run in."""
    sample_ss, init_ss, fit_ss = np.random.SeedSequence([base, stage, index]).spawn(3)
    return np.random.default_rng(sample_ss), _seed_from(init_ss), _seed_from(fit_ss)


def _check_space(space: Any, where: str) -> dict[str, Any]:
    if not isinstance(space, dict):
        raise TypeError(f"{where}: space must be a dict of name -> distribution, got {type(space).__name__}")
    if not space:
        raise ValueError(f"{where}: space must name at least one hyperparameter, got an empty dict")
    for k in space:
        if not isinstance(k, str):
            raise TypeError(f"{where}: space keys must be parameter names (str), got {k!r}")
    return dict(space)


def _sample(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One draw; entries that are not distributions are fixed values."""
    return {k: (d.sample(rng) if isinstance(d, Distribution) else d) for k, d in space.items()}


def _is_class_labels(y: np.ndarray) -> bool:
    return y.ndim == 1 and y.dtype.kind in "iu"


def _split_seed(base: int) -> int:
    return int(np.random.SeedSequence([base, 2**31]).generate_state(1, np.uint32)[0])


class _Setup:
    """The data, the folds and the checked arguments shared by every trial of a search."""

    def __init__(self, where: str, build: Any, X: Any, y: Any, cv: Any, validation_data: Any,
                 validation_split: float, seed: Any, n_jobs: Any, batch_size: Any, metric: Any,
                 verbose: Any) -> None:
        if not callable(build):
            raise TypeError(f"{where}: build must be a function params -> compiled gs.Sequential, "
                            f"got {type(build).__name__}")
        self.build = build
        X = _checks.numeric_array(X, f"{where}: X")
        y = _checks.numeric_array(y, f"{where}: y")
        if X.ndim != 2:
            raise ValueError(f"{where}: X must be a 2-D array (samples, features), got shape {X.shape}")
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(f"{where}: y must have one row per row of X ({X.shape[0]}), got shape {y.shape}")
        self.X, self.y = X, y
        n = X.shape[0]
        self.batch_size = _checks.check_int(batch_size, f"{where}: batch_size", 1)
        self.verbose = _checks.check_int(verbose, f"{where}: verbose", 0)
        if metric is not None and not callable(metric):
            if not isinstance(metric, str) or metric not in METRICS:
                raise ValueError(f"{where}: metric must be one of {list(METRICS)} or a callable "
                                 f"(model, X_val, y_val) -> float, got {metric!r}")
        self.metric = metric
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0 or n_jobs < -1:
            raise ValueError(f"{where}: n_jobs must be an int >= 1 or -1 (all cores), got {n_jobs!r}")
        self.n_jobs = int(n_jobs)
        self.seed = (_random.draw_seed(_random.generator()) if seed is None
                     else _checks.check_int(seed, f"{where}: seed", 0))
        self.validation_data = None
        self.folds: list[tuple[np.ndarray, np.ndarray]] | None
        if cv is not None and validation_data is not None:
            raise ValueError(f"{where}: give cv or validation_data, not both")
        if cv is not None:
            k = _checks.check_int(cv, f"{where}: cv", 2)
            if k > n:
                raise ValueError(f"{where}: cv={k} folds need at least {k} rows, X has {n}")
            self.folds = self._kfold(k, n)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"{where}: validation_data must be a pair (X_val, y_val)")
            self.validation_data = tuple(np.asarray(a) for a in validation_data)
            self.folds = None
        else:
            validation_split = _checks.check_float(validation_split, f"{where}: validation_split", 0.0, 1.0,
                                                   min_inclusive=False, max_inclusive=False)
            self.folds = [self._holdout(validation_split, n, where)]
        self.scoring = _describe_metric(metric) if metric is not None else None
        self._label = ""  # what the score is, from the first trial's model when metric is None
        self.finished: list[Trial] = []  # every trial that finished, for a Ctrl-C's partial result
        self.stages = 1

    def interrupted(self, spaces: list[dict[str, Any]]) -> SearchInterrupted:
        done = list(self.finished)
        return SearchInterrupted(SearchResult(done, self.metric_label(), spaces, self.seed) if done else None)

    def _kfold(self, k: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import KFold, StratifiedKFold

        y = self.y
        if _is_class_labels(y) and np.min(np.unique(y, return_counts=True)[1]) >= k:
            splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=_split_seed(self.seed))
        else:
            splitter = KFold(n_splits=k, shuffle=True, random_state=_split_seed(self.seed))
        return [(tr, va) for tr, va in splitter.split(np.zeros((n, 1)), y if y.ndim == 1 else None)]

    def _holdout(self, val: float, n: int, where: str) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        n_val = math.ceil(val * n)
        if n_val >= n:
            raise ValueError(f"{where}: validation_split={val} of {n} rows leaves no training rows")
        strata = None
        if _is_class_labels(self.y):
            classes, counts = np.unique(self.y, return_counts=True)
            if counts.min() >= 2 and n_val >= len(classes) and n - n_val >= len(classes):
                strata = self.y
        tr, va = train_test_split(np.arange(n), test_size=n_val, random_state=_split_seed(self.seed),
                                  shuffle=True, stratify=strata)
        return np.sort(tr), np.sort(va)

    def run(self, jobs: list[tuple[int, int, dict[str, Any], int]], total: int) -> list[Trial]:
        """Run (index, stage, params, epochs) jobs, in parallel when n_jobs != 1."""
        trials = []
        specs = []
        for index, stage, params, epochs in jobs:
            _, init_seed, fit_seed = _trial_seeds(self.seed, stage, index)
            specs.append(Trial(index, stage, params, epochs, fit_seed, init_seed))

        def args(t: Trial, one_thread: bool) -> tuple:
            return (self.build, t.params, self.X, self.y, self.folds, self.validation_data, t.epochs,
                    self.batch_size, self.metric, t.init_seed, t.seed, one_thread)

        if self.n_jobs == 1:
            outputs: Any = (_run_trial(*args(t, False)) for t in specs)
        else:
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=self.n_jobs, backend="loky", return_as="generator")
            outputs = parallel(delayed(_run_trial)(*args(t, True)) for t in specs)
        for t, out in zip(specs, outputs):
            t.score, t.fold_scores, t.histories = out["score"], out["fold_scores"], out["histories"]
            t.status, t.message, t.seconds = out["status"], out["message"], out["seconds"]
            self._label = self._label or out["metric"]
            trials.append(t)
            self.finished.append(t)
            if self.verbose:
                params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
                note = f" ({t.message})" if t.message else ""
                name, value = shown_score(self.metric_label(), t.score)
                stage = f" (stage {t.stage + 1})" if self.stages > 1 else ""
                print(f"trial {t.index + 1}/{total}{stage}: {params} -> {name} {value:.4f}"
                      f"{note} [{t.seconds:.1f} s]", flush=True)
        return trials

    def metric_label(self) -> str:
        return self.scoring or self._label or "score"

    def refit(self, best: Trial) -> tuple[Any, Any]:
        if not math.isfinite(best.score):
            return None, None
        model = _build(self.build, best.params, best.init_seed)
        history = model.fit(self.X, self.y, epochs=best.epochs, batch_size=self.batch_size,
                            validation_data=self.validation_data, verbose=0, seed=best.seed)
        return model, history


def _check_epochs_trials(trials: Any, epochs: Any, where: str) -> tuple[int, int]:
    return (_checks.check_int(trials, f"{where}: trials", 1), _checks.check_int(epochs, f"{where}: epochs", 1))


def random_search(build: Callable[[dict], Any], space: dict[str, Any], X: Any, y: Any, trials: int = 20,
                  epochs: int = 5, cv: int | None = None, validation_data: Any = None, seed: int | None = None,
                  n_jobs: int = 1, batch_size: int = 32, metric: Any = None, verbose: int = 0,
                  validation_split: float = 0.2, refit: bool = True) -> SearchResult:
    """Draw `trials` parameter sets from `space`, train `build(params)` on X, y for `epochs` epochs
    each and score it (see the module's docstring for how). Returns a SearchResult, best first.

    `space` maps names to distributions (LogUniform, Uniform, IntUniform, Choice) or fixed values.
    `refit=True` retrains the best parameters on all of X, y (`result.best_model`)."""
    where = "random_search"
    space = _check_space(space, where)
    trials, epochs = _check_epochs_trials(trials, epochs, where)
    setup = _Setup(where, build, X, y, cv, validation_data, validation_split, seed, n_jobs, batch_size,
                   metric, verbose)
    jobs = [(i, 0, _sample(space, _trial_seeds(setup.seed, 0, i)[0]), epochs) for i in range(trials)]
    try:
        done = setup.run(jobs, trials)
    except KeyboardInterrupt:
        raise setup.interrupted([space]) from None
    result = SearchResult(done, setup.metric_label(), [space], setup.seed)
    if refit:
        result.best_model, result.best_history = setup.refit(result.best_trial)
    return result


def coarse_to_fine(build: Callable[[dict], Any], space: dict[str, Any], X: Any, y: Any,
                   stages: Sequence[tuple[int, int]] = ((20, 2), (10, 10)), top: int | None = None,
                   cv: int | None = None, validation_data: Any = None, seed: int | None = None,
                   n_jobs: int = 1, batch_size: int = 32, metric: Any = None, verbose: int = 0,
                   validation_split: float = 0.2, refit: bool = True) -> SearchResult:
    """Random search in stages, `stages` a list of (trials, epochs): many short trials first, then
    fewer, longer ones in a narrowed space.

    After each stage, every distribution narrows around the stage's `top` best finite-scoring
    trials (default: max(2, trials // 5)): LogUniform and Uniform to the range of their values
    (LogUniform in log space), widened on each side by a quarter of that spread and at least a
    tenth of the old range, clipped to the old range; IntUniform likewise, rounded outwards to
    integers; Choice keeps the options seen among those trials. Fixed values stay. If no trial of a
    stage scored a finite value, the space is kept as it was.

    The result holds every stage's trials (`trial.stage`), sorted together by score, and
    `result.spaces` the space each stage drew from. Other arguments as in random_search.
    """
    where = "coarse_to_fine"
    space = _check_space(space, where)
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or len(stages) == 0:
        raise ValueError(f"{where}: stages must be a non-empty list of (trials, epochs) pairs, got {stages!r}")
    plan = []
    for s, stage in enumerate(stages):
        if not isinstance(stage, (tuple, list)) or len(stage) != 2:
            raise ValueError(f"{where}: stages[{s}] must be a (trials, epochs) pair, got {stage!r}")
        plan.append(_check_epochs_trials(stage[0], stage[1], f"{where}: stages[{s}]"))
    if top is not None:
        top = _checks.check_int(top, f"{where}: top", 1)
    setup = _Setup(where, build, X, y, cv, validation_data, validation_split, seed, n_jobs, batch_size,
                   metric, verbose)
    total = sum(t for t, _ in plan)
    setup.stages = len(plan)
    spaces, done, index = [], [], 0
    for s, (n_trials, epochs) in enumerate(plan):
        spaces.append(space)
        jobs = []
        for _ in range(n_trials):
            jobs.append((index, s, _sample(space, _trial_seeds(setup.seed, s, index)[0]), epochs))
            index += 1
        try:
            stage_trials = setup.run(jobs, total)
        except KeyboardInterrupt:
            raise setup.interrupted(spaces) from None
        done += stage_trials
        if s + 1 < len(plan):
            space = _narrowed(space, stage_trials, top)
    result = SearchResult(done, setup.metric_label(), spaces, setup.seed)
    if refit:
        result.best_model, result.best_history = setup.refit(result.best_trial)
    return result


def _narrowed(space: dict[str, Any], trials: list[Trial], top: int | None) -> dict[str, Any]:
    ranked = sorted((t for t in trials if math.isfinite(t.score)), key=lambda t: (-t.score, t.index))
    if not ranked:
        return space
    k = top if top is not None else max(2, len(trials) // 5)
    best = ranked[:k]
    return {name: (d.narrow([t.params[name] for t in best]) if isinstance(d, Distribution) else d)
            for name, d in space.items()}
