"""The `gradstep` command line (also `python -m gradstep`).

    gradstep train [--data digits|FILE.npz|FILE.csv] [--layers 128,64] [--activation relu] ...
    gradstep predict --model FILE --data FILE

A user's mistake (a missing file, a bad flag value) prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

import numpy as np

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU",
               "elu": "ELU", "prelu": "PReLU", "identity": "Identity"}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


class UsageError(Exception):
    """A mistake on the command line or in the user's files: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


def int_at_least(minimum: int, also: int | None = None, what: str | None = None):
    """An argparse type: an integer >= minimum (or exactly `also`, e.g. -1 for "all cores")."""
    what = what or ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < minimum and v != also:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v
    return parse


_positive_int = int_at_least(1)
_nonneg_int = int_at_least(0)


def _float_in(lo: float, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{')' if hi_open or hi is None else ']'}"
            raise argparse.ArgumentTypeError(f"expected a number in {rng}, got {text!r}")
        return v
    return parse


def _layer_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 128,64, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 128,64, got {text!r}")
    return sizes


def add_data_and_model_flags(p: argparse.ArgumentParser) -> None:
    """The data and model flags shared by train, check and search."""
    p.add_argument("--data", default="digits", help="'digits' (bundled, the default), FILE.npz (arrays X, y) or FILE.csv")
    p.add_argument("--target", default=None, help="CSV column holding the label (default: the last column)")
    p.add_argument("--layers", type=_layer_sizes, default=[128, 64], help="hidden layer sizes, e.g. 128,64")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    p.add_argument("--epochs", type=_positive_int, default=20)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=_float_in(0.0, None, lo_open=True), default=1e-3)
    p.add_argument("--l2", type=_float_in(0.0, None), default=0.0)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--val", type=_float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.2,
                   help="fraction of the training data held out for validation")
    p.add_argument("--test", type=_float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.2,
                   help="fraction of the data held out for the final test")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=_positive_int, default=None, help="threads for the kernels (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradstep", description="Train and babysit neural networks with gradstep.")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,check,search}", parser_class=_Parser)
    sub.required = True
    t = sub.add_parser("train", help="train an MLP and save it")
    add_data_and_model_flags(t)
    t.add_argument("--out", default="model.safetensors", help="where to save the trained model")
    t.add_argument("--plot", default="curves.png", help="PNG of the loss/accuracy curves ('' to skip)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    p = sub.add_parser("predict", help="predict with a saved model")
    p.add_argument("--model", required=True, help="a model file written by `gradstep train`")
    p.add_argument("--data", required=True, help="FILE.npz (array X) or FILE.csv")
    p.add_argument("--target", default=None, help="CSV column holding the label, to report accuracy")
    p.add_argument("--out", default=None, help="write predictions to this .csv or .npy (default: print)")
    from . import cli_check, cli_search  # imported here: they import this module
    cli_check.add_parser(sub)
    cli_search.add_parser(sub)
    return parser


def load_data(spec: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    from . import datasets
    if spec == "digits":
        return datasets.load_digits()
    if not os.path.exists(spec):
        raise UsageError(f"--data: no such file {spec!r} (use 'digits' or a .npz/.csv file)")
    if not spec.endswith((".npz", ".csv")):
        raise UsageError(f"--data: expected 'digits', a .npz or a .csv file, got {spec!r}")
    return datasets.load_file(spec, target=target)


def is_classification(y: np.ndarray) -> bool:
    return y.ndim == 1 and (y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(y == np.round(y))
                                                      and len(np.unique(y)) <= max(2, min(100, y.size // 5))))


def build_model(n_features: int, n_outputs: int, args: Any, classification: bool):
    import gradstep as gs
    act = getattr(gs, ACTIVATIONS[args.activation])
    init = "he" if args.activation in ("relu", "leaky_relu", "prelu", "elu") else "xavier"
    layers: list = []
    width = n_features
    for size in args.layers:
        layers += [gs.Dense(width, size, init=init, l2=args.l2), act()]
        width = size
    layers.append(gs.Dense(width, n_outputs, init="xavier", l2=args.l2))
    model = gs.Sequential(layers, dtype=args.dtype, seed=args.seed)
    loss = gs.SoftmaxCrossEntropy() if classification else gs.MSE()
    model.compile(loss=loss, optimizer=gs.optim.get(args.optimizer, lr=args.lr),
                  metrics=["accuracy"] if classification else ["mae"])
    return model


def prepare(args: Any):
    """Load, split (test, then validation), standardize with scikit-learn's scaler fit on training data."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_data(args.data, args.target)
    classification = is_classification(y)
    if classification:
        classes, y = np.unique(y, return_inverse=True)
        y = y.astype(np.int64)
    else:
        classes = None
        y = y.astype(np.float64)
    strat = y if classification and np.min(np.bincount(y)) >= 2 else None
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=args.test, random_state=args.seed, stratify=strat)
    scaler = StandardScaler().fit(X_tr)
    return (scaler.transform(X_tr), y_tr, scaler.transform(X_te), y_te, scaler, classification, classes)


def cmd_train(args: Any) -> int:
    import gradstep as gs
    if args.threads:
        gs.set_num_threads(args.threads)
    if not gs.distributed.is_main():  # under mpiexec, fit trains data-parallel; rank 0 reports and saves
        args.out = args.plot = None
        sys.stdout = open(os.devnull, "w")
    X_tr, y_tr, X_te, y_te, scaler, classification, classes = prepare(args)
    n_out = len(classes) if classification else 1
    model = build_model(X_tr.shape[1], n_out, args, classification)
    model.preprocessing = {"mean": scaler.mean_.astype(np.float64), "scale": scaler.scale_.astype(np.float64)}
    print(f"data: {args.data}: {X_tr.shape[0] + X_te.shape[0]} samples, {X_tr.shape[1]} features, "
          + (f"{n_out} classes" if classification else "regression"))
    print(model.summary())
    history = model.fit(X_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, validation_split=args.val,
                        verbose=0 if args.quiet else 1, seed=args.seed)
    result = model.evaluate(X_te, y_te)
    last = {k: v[-1] for k, v in history.history.items()}
    print("final epoch: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
    if classification:
        print(f"test accuracy: {result['accuracy']:.4f} ({X_te.shape[0]} samples), test loss: {result['loss']:.4f}")
    else:
        print(f"test mse loss: {result['loss']:.4g}, test mae: {result['mae']:.4g}")
    if args.out:
        model.save(args.out)
        print(f"model saved to {args.out}")
    if args.plot:
        gs.plot.history(history, args.plot)
        print(f"curves plotted to {args.plot}")
    return 0


def cmd_predict(args: Any) -> int:
    import gradstep as gs
    from . import datasets
    if not os.path.exists(args.model):
        raise UsageError(f"--model: no such file {args.model!r}")
    model = gs.load(args.model)
    if not os.path.exists(args.data):
        raise UsageError(f"--data: no such file {args.data!r}")
    if args.data.endswith(".npz"):
        with np.load(args.data) as z:
            if "X" not in z:
                raise UsageError(f"--data: {args.data!r} has no array 'X' (found {sorted(z.files)})")
            X = z["X"]
            y = z["y"] if "y" in z else None
    elif args.data.endswith(".csv"):
        X, y = datasets.load_file(args.data, target=args.target)
    else:
        raise UsageError(f"--data: expected a .npz or .csv file, got {args.data!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != model.in_features:
        raise UsageError(f"--data: X must have {model.in_features} features for this model, got shape {X.shape}")
    if model.preprocessing is not None:
        X = (X - model.preprocessing["mean"]) / model.preprocessing["scale"]
    labels = model._labels_loss() if model.loss is not None else model.out_features > 1
    pred = model.predict_classes(X) if labels else model.predict(X).reshape(len(X), -1)
    if args.out:
        if args.out.endswith(".npy"):
            np.save(args.out, pred)
        else:
            np.savetxt(args.out, pred, delimiter=",", fmt="%d" if labels else "%.8g")
        print(f"{len(pred)} predictions written to {args.out}")
    else:
        for row in pred:
            print(row if labels else ",".join(f"{v:.6g}" for v in np.atleast_1d(row)))
    if y is not None and labels:
        print(f"accuracy: {np.mean(pred == np.asarray(y).astype(np.int64)):.4f}", file=sys.stderr)
    return 0


def cmd_check(args: Any) -> int:
    from . import cli_check
    return cli_check.run(args)


def cmd_search(args: Any) -> int:
    from . import cli_search
    return cli_search.run(args)


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "check": cmd_check, "search": cmd_search}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError, ConnectionError) as e:
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        # Bad data or hyperparameters surface from the library as ValueError/TypeError with messages
        # that name the argument: show that line, not a traceback.
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradstep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
