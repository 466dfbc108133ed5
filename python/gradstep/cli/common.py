"""What the commands share: the parser (one-line errors, defaults in every --help), the flag
types, the data and model flags, output-path checks and the model builder.

Nothing here imports a command module: the commands import this one (and `data`), and
`gradstep.cli` imports the commands, so the imports form a tree.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU",
               "elu": "ELU", "prelu": "PReLU", "identity": "Identity"}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
TASKS = ("auto", "classification", "regression")


class UsageError(Exception):
    """A mistake on the command line or in the user's files: one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option whose help does not state its default already
    (flags that default to off, None or nothing say what that means in their own help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == ""
                or default is argparse.SUPPRESS or not action.option_strings):
            return text
        shown = ",".join(str(v) for v in default) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def float_in(lo: float, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    """An argparse type: a finite number in the interval given."""
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


def layer_sizes(text: str) -> list[int]:
    """'128,64' -> [128, 64]."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 128,64, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 128,64, got {text!r}")
    return sizes


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """Where the data comes from, what its target is, and how it is split."""
    g = p.add_argument_group("data")
    g.add_argument("--data", default="digits",
                   help="'digits' (scikit-learn's bundled digits), FILE.npz (arrays X and y; y class labels, "
                        "one-hot rows or numbers) or FILE.csv (a header row; features numeric, labels "
                        "numbers or text)")
    g.add_argument("--target", default=None, help="the CSV column to predict (default: the last column)")
    g.add_argument("--task", choices=TASKS, default="auto",
                   help="auto: text labels or at most 20 distinct whole numbers are classes, other "
                        "numbers a regression target (the choice is printed)")
    g.add_argument("--val", type=float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.2,
                   help="fraction of the training data held out for validation")
    g.add_argument("--test", type=float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.2,
                   help="fraction of the data held out for the final test")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of the split, the weights and the shuffling")
    g.add_argument("--threads", type=positive_int, default=None, help="threads for the kernels (default: all cores)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The network and how it is trained."""
    g = p.add_argument_group("model")
    g.add_argument("--layers", type=layer_sizes, default="128,64", help="hidden layer sizes")
    g.add_argument("--conv", type=layer_sizes, default=None,
                   help="conv3x3+ReLU+2x2 max-pool blocks with these channel counts before the dense "
                        "layers, e.g. 16,32 (image data: digits as (N, 1, 8, 8), or an .npz X of (N, C, H, W)); default: none (an MLP)")
    g.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="hidden activation")
    g.add_argument("--dropout", type=float_in(0.0, 1.0, hi_open=True), default=0.0,
                   help="dropout rate after each hidden activation (0: none)")
    g.add_argument("--batch-norm", action="store_true", help="batch normalization after each hidden Dense layer")
    g.add_argument("--epochs", type=positive_int, default=20, help="training epochs")
    g.add_argument("--batch-size", type=positive_int, default=32, help="mini-batch size")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    g.add_argument("--lr", type=float_in(0.0, None, lo_open=True), default=1e-3, help="learning rate")
    g.add_argument("--l2", type=float_in(0.0, None), default=0.0, help="L2 penalty on the weights")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="float type of the model")


def add_data_and_model_flags(p: argparse.ArgumentParser) -> None:
    add_data_flags(p)
    add_model_flags(p)


def check_output_path(flag: str, path: str | None) -> None:
    """Refuse, before any training, an output path that cannot be written."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag}: {path!r} is a directory; give a file path")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag}: the directory {os.path.dirname(path) or '.'!r} of {path!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write into the directory {os.path.dirname(path) or '.'!r}")


def check_png_path(flag: str, path: str | None) -> None:
    if path and not path.lower().endswith(".png"):
        raise UsageError(f"{flag}: expected a .png path, got {path!r}")
    check_output_path(flag, path)


def build_model(n_features: int, n_outputs: int, args: Any, classification: bool):
    """The MLP the model flags describe, compiled: Dense -> [BatchNorm] -> activation -> [Dropout]
    per hidden layer, then a Dense output (logits for SoftmaxCrossEntropy, or MSE values)."""
    import gradstep as gs

    act = getattr(gs, ACTIVATIONS[args.activation])
    init = "he" if args.activation in ("relu", "leaky_relu", "prelu", "elu") else "xavier"
    dropout = getattr(args, "dropout", 0.0)
    layers: list = []
    width: int | None = n_features
    channels = n_features  # image data (N, C, H, W): n_features is C
    for c in getattr(args, "conv", None) or []:
        layers += [gs.Conv2D(channels, c, 3, padding=1, l2=args.l2), gs.ReLU(), gs.MaxPool2D(2)]
        channels = c
    if getattr(args, "conv", None):
        layers.append(gs.Flatten())
        width = None  # the first Dense takes its input size from the data (shape inference)
    for size in args.layers:
        layers.append(gs.Dense(width, size, init=init, l2=args.l2))
        if getattr(args, "batch_norm", False):
            layers.append(gs.BatchNorm(size))
        layers.append(act())
        if dropout > 0:
            layers.append(gs.Dropout(dropout))
        width = size
    # A small output layer starts at uniform predictions (initial loss ~ ln C), as `gradstep check`
    # expects of a healthy model; a Xavier output layer starts some 30% above it.
    layers.append(gs.Dense(width, n_outputs, init="normal", l2=args.l2))
    model = gs.Sequential(layers, dtype=args.dtype, seed=args.seed)
    loss = gs.SoftmaxCrossEntropy() if classification else gs.MSE()
    model.compile(loss=loss, optimizer=gs.optim.get(args.optimizer, lr=args.lr),
                  metrics=["accuracy"] if classification else ["mae"])
    return model


def set_threads(args: Any) -> None:
    if getattr(args, "threads", None):
        import gradstep as gs
        gs.set_num_threads(args.threads)
