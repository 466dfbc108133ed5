"""`gradstep search`: random or coarse-to-fine hyperparameter search from the command line.

    gradstep search --data digits --trials 20 --epochs 5 --lr-range 1e-4,1e-1
    gradstep search --stages 20x2,10x10 --lr-range 1e-4,1e-1 --layers-choices 64 128,64 --cv 3 --n-jobs 2

It takes the same data and model flags as `train` (the model flags that are not searched stay
fixed), holds out `--test` of the data for a final test of the best model, scores every trial
on a `--val` split of the rest (or by `--cv K` folds), prints the trials sorted by score, and
retrains the best parameters on all the training data (saved with `--out`, with the input
standardization, class values and column names, as `gradstep train` saves). Trials are numbered
from 1 in the order they are drawn, in the progress lines and the table alike; regression scores
are shown as the metric itself (val_loss, val_mae: lower is better). Ctrl-C prints the table of
the trials that finished and exits with status 130.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from . import common, data
from .common import UsageError

_BASE_KEYS = ("activation", "layers", "l2", "dtype", "seed", "optimizer", "lr", "dropout", "batch_norm")


def _range(log: bool):
    """A 'LOW,HIGH' pair of numbers (both > 0 for a log-uniform range)."""
    def parse(text: str) -> tuple[float, float]:
        parts = [p.strip() for p in text.split(",")]
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH like 1e-4,1e-1, got {text!r}") from None
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH, got {text!r}")
        if log and low <= 0:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 < LOW < HIGH (searched in log space), "
                                             f"got {text!r}")
        if not log and low < 0:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 <= LOW < HIGH, got {text!r}")
        return low, high
    return parse


def _stages(text: str) -> list[tuple[int, int]]:
    """'20x2,10x10': (trials, epochs) per stage."""
    stages = []
    for part in text.split(","):
        try:
            trials, epochs = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected TRIALSxEPOCHS per stage, like 20x2,10x10, got {text!r}") from None
        if trials < 1 or epochs < 1:
            raise argparse.ArgumentTypeError(f"expected positive TRIALSxEPOCHS per stage, got {text!r}")
        stages.append((trials, epochs))
    return stages


_n_jobs = common.int_at_least(1, also=-1, what="a positive integer or -1 (all cores)")
_cv = common.int_at_least(2)


def _layers_choice(text: str) -> str:
    """One architecture option like '128,64', kept as that text (how the table shows it)."""
    return ",".join(str(s) for s in common.layer_sizes(text))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `search` subcommand (the data and model flags of `train` plus the search flags)."""
    p = subparsers.add_parser("search", help="search hyperparameters (random or coarse-to-fine)",
                              description="Random or coarse-to-fine hyperparameter search; prints the "
                                          "trials sorted by score.")
    common.add_data_and_model_flags(p)
    s = p.add_argument_group("search")
    s.add_argument("--trials", type=common.positive_int, default=20, help="trials of a random search")
    s.add_argument("--stages", type=_stages, default=None,
                   help="coarse-to-fine stages as TRIALSxEPOCHS, e.g. 20x2,10x10 (replaces --trials/--epochs; "
                        "default: a random search)")
    s.add_argument("--top", type=common.positive_int, default=None,
                   help="best trials of a stage the next stage narrows around (default max(2, trials/5))")
    s.add_argument("--cv", type=_cv, default=None,
                   help="score by K-fold cross-validation (default: on the --val split)")
    s.add_argument("--n-jobs", type=_n_jobs, default=1, help="trials run in parallel processes (-1: all cores)")
    s.add_argument("--metric", choices=["accuracy", "loss", "mse", "mae"], default=None,
                   help="what to score (default: accuracy for classification, loss for regression)")
    s.add_argument("--lr-range", type=_range(log=True), default=None,
                   help="learning rates LOW,HIGH, log-uniform (default 1e-4,1e-1 when nothing else is searched)")
    s.add_argument("--l2-range", type=_range(log=True), default=None, help="L2 strengths LOW,HIGH, log-uniform (default: --l2 only)")
    s.add_argument("--layers-choices", type=_layers_choice, nargs="+", default=None,
                   help="hidden layer options, e.g. 64 128,64 256,128 (default: --layers only)")
    s.add_argument("--activation-choices", nargs="+", choices=sorted(common.ACTIVATIONS), default=None,
                   help="activations to try (default: --activation only)")
    s.add_argument("--optimizer-choices", nargs="+", choices=common.OPTIMIZERS, default=None,
                   help="optimizers to try (default: --optimizer only)")
    s.add_argument("--show", type=common.positive_int, default=None, help="print only the best N trials (default: all)")
    s.add_argument("--out", default=None,
                   help="save the best model (retrained on all training data) here (default: not saved)")
    s.add_argument("--quiet", action="store_true", help="no line per trial")
    return p


class _Builder:
    """build(params) for the search: the `train` model with the searched flags replaced.
    A module-level class holding plain values, so that it pickles for parallel trials."""

    def __init__(self, base: dict[str, Any], n_features: int, n_outputs: int, classification: bool) -> None:
        self.base = base
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.classification = classification

    def __call__(self, params: dict[str, Any]) -> Any:
        values = {**self.base, **params}
        if isinstance(values["layers"], str):
            values["layers"] = common.layer_sizes(values["layers"])
        return common.build_model(self.n_features, self.n_outputs, argparse.Namespace(**values), self.classification)


def search_space(args: Any) -> dict[str, Any]:
    """The distributions the flags ask for; the learning rate alone (1e-4..1e-1) when none do."""
    from .. import search

    space: dict[str, Any] = {}
    if args.lr_range is not None:
        space["lr"] = search.LogUniform(*args.lr_range)
    if args.l2_range is not None:
        space["l2"] = search.LogUniform(*args.l2_range)
    if args.layers_choices:
        space["layers"] = search.Choice(list(dict.fromkeys(args.layers_choices)))
    if args.activation_choices:
        space["activation"] = search.Choice(list(dict.fromkeys(args.activation_choices)))
    if args.optimizer_choices:
        space["optimizer"] = search.Choice(list(dict.fromkeys(args.optimizer_choices)))
    if not space:
        space["lr"] = search.LogUniform(1e-4, 1e-1)
    return space


def run(args: Any) -> int:
    """Run the search the flags describe; print the trials sorted by score and the best model's test result."""
    from .. import search

    common.set_threads(args)
    common.check_output_path("--out", args.out)
    prep = data.prepare(args)
    task = prep.task
    classification, n_out = task.classification, task.n_outputs
    # The trials train on the network's own inputs (standardized, class indices); the best model
    # gets the standardization and class values before it is tested and saved.
    X_tr = prep.standardize.transform(prep.X_train)
    y_tr = prep.indices(prep.y_train) if classification else prep.y_train
    if args.cv is not None and args.cv > X_tr.shape[0]:
        raise UsageError(f"--cv: {args.cv} folds need at least {args.cv} training rows, got {X_tr.shape[0]}")
    space = search_space(args)
    builder = _Builder({k: getattr(args, k) for k in _BASE_KEYS}, X_tr.shape[1], n_out, classification)
    if args.metric == "accuracy" and not classification:
        raise UsageError("--metric accuracy needs class labels; this data is a regression (use loss, mse or mae)")
    if args.metric in ("mse", "mae") and classification:
        raise UsageError(f"--metric {args.metric} is for regression; this data has class labels "
                         "(use accuracy or loss)")
    metric = args.metric
    if metric == "mse":
        metric = "loss"  # the regression models train with MSE: their loss is the mse (plus any L2 term)
    common_args = dict(cv=args.cv, validation_split=args.val, seed=args.seed, n_jobs=args.n_jobs,
                       batch_size=args.batch_size, metric=metric, verbose=0 if args.quiet else 1)
    scoring = f"{args.cv}-fold cross-validation" if args.cv else f"a {args.val:g} validation split"
    print(f"task: {task.name} ({task.why})")
    print(prep.describe())
    print("space: " + ", ".join(f"{k}={v!r}" for k, v in space.items()) + f"; scored on {scoring}")
    try:
        if args.stages:
            print("coarse-to-fine: " + ", ".join(f"{t} trials x {e} epochs" for t, e in args.stages))
            result = search.coarse_to_fine(builder, space, X_tr, y_tr, stages=args.stages, top=args.top,
                                           **common_args)
        else:
            print(f"random search: {args.trials} trials x {args.epochs} epochs")
            result = search.random_search(builder, space, X_tr, y_tr, trials=args.trials, epochs=args.epochs,
                                          **common_args)
    except search.SearchInterrupted as stop:
        finished = stop.result
        print()
        if finished is None:
            print("interrupted before any trial finished", file=sys.stderr)
        else:
            print(finished.table(max_rows=args.show))
            print(f"\ngradstep: interrupted: {len(finished.trials)} trial(s) finished (shown above); "
                  "no model saved", file=sys.stderr)
        return 130
    print()
    print(result.table(max_rows=args.show))
    print()
    best = result.best_trial
    params = ", ".join(f"{k}={search._fmt(v)}" for k, v in best.params.items())
    print(f"best: trial {best.index + 1}: {params} ({result.score_text(best)})")
    failed = sum(t.status != "ok" for t in result.trials)
    if failed:
        print(f"{failed} trial(s) diverged (loss NaN or inf) and were ranked last: lower the learning rate range")
    model = result.best_model
    if model is None:
        print("no trial trained without diverging: no best model")
        return 1
    model.preprocessing = prep.standardize
    model.classes_ = task.classes
    model.feature_names_in_ = prep.table.feature_names
    model.metadata = {"cli": {"seed": args.seed, "val": args.val, "test": args.test, "batch_size": args.batch_size,
                              "task": task.name, "target": prep.table.target_name}}
    test = model.evaluate(prep.X_test, prep.y_test)
    n_te = prep.X_test.shape[0]
    if classification:
        print(f"best model retrained on all {X_tr.shape[0]} training samples: test accuracy "
              f"{test['accuracy']:.4f} ({n_te} samples), test loss {test['loss']:.4f}")
    else:
        print(f"best model retrained on all {X_tr.shape[0]} training samples: test mse loss {test['loss']:.4g}")
    if args.out:
        model.save(args.out)
        print(f"best model saved to {args.out}")
    return 0
