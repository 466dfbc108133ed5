"""`gradstep predict`: predictions of a saved model on raw data (the model standardizes it).

    gradstep predict --model m.safetensors --data new.csv [--out predictions.csv] [--proba]

A CSV's columns are selected by the names the model was trained on, in any order; a file with
only the feature columns is fine; a file that lacks a feature column, or has columns the model
does not know, is refused in one line. When the file also holds the target column, the score is
printed (to stderr, so that the predictions on stdout stay clean).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from . import data
from .common import UsageError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="predict with a saved model",
                              description="Predict with a model saved by `gradstep train` on raw data.")
    p.add_argument("--model", required=True, help="a model file written by `gradstep train`")
    p.add_argument("--data", required=True,
                   help="FILE.csv (columns by name, the target column optional) or FILE.npz (array X, "
                        "optionally y)")
    p.add_argument("--target", default=None,
                   help="the CSV column holding the true values, to report the score (default: the "
                        "model's target column, when the file has it)")
    p.add_argument("--proba", action="store_true", help="print class probabilities instead of classes")
    p.add_argument("--out", default=None, help="write the predictions to this .csv or .npy (default: print them)")
    return p


def _load_model(path: str) -> Any:
    import gradstep as gs
    if not os.path.exists(path):
        raise UsageError(f"--model: no such file {path!r}")
    try:
        return gs.load(path)
    except ValueError as e:
        raise UsageError(f"--model: {e}") from None


def _n_inputs(model: Any) -> int:
    """Input values per sample: features of an MLP, pixels of an image model."""
    return int(np.prod(model.input_shape)) if model.input_shape is not None else int(model.in_features)


def read_for_model(model: Any, path: str, target: str | None) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(X in the model's column order, the true values or None, their column name)."""
    data.check_data_path(path)
    if path.lower().endswith(".npz"):
        table = data.read_npz(path, need_y=False)
        return table.X, table.y, None
    frame = data.read_csv(path)
    columns = list(frame.columns)
    if target is not None and target not in columns:
        raise UsageError(f"--target: {path} has no column named {target!r}; its columns are {columns}")
    names = model.feature_names_in_
    trained_target = model.metadata.get("cli", {}).get("target")
    target = target or trained_target
    if names is None:  # trained on arrays (digits, .npz): the columns are taken in order
        if target in columns:
            features = [c for c in columns if c != target]
        elif len(columns) == _n_inputs(model) + 1 and target is None:
            target, features = columns[-1], columns[:-1]
        else:
            features = columns
        if len(features) != _n_inputs(model):
            raise UsageError(f"--data: {path} has {len(features)} feature columns; the model takes {_n_inputs(model)}")
    else:
        missing = [c for c in names if c not in columns]
        extra = [c for c in columns if c not in names and c != target]
        if missing or extra:
            parts = ([f"lacks the feature column(s) {missing}"] if missing else []) + (
                [f"has column(s) the model was not trained on {extra}"] if extra else [])
            expected = f"expected {names}" + (f" and optionally {target!r}" if target else "")
            raise UsageError(f"--data: {path} {' and '.join(parts)} ({expected})")
        features = list(names)
    X = data.csv_features(frame, path, features)
    y = data.csv_target(frame, path, target) if target in columns else None
    return X, y, (target if y is not None else None)


def run(args: Any) -> int:
    model = _load_model(args.model)
    X, y, target = read_for_model(model, args.data, args.target)
    shape = tuple(model.input_shape) if model.input_shape is not None else (model.in_features,)
    if X.ndim == 2 and len(shape) > 1 and X.shape[1] == _n_inputs(model):
        X = X.reshape(len(X), *shape)  # flat rows of an image model's pixels
    if X.shape[1:] != shape:
        want = f"{shape[0]} features" if len(shape) == 1 else f"per-sample shape {shape}"
        raise UsageError(f"--data: X must have {want} for this model, got shape {X.shape}")
    classifier = model.loss is not None and model._labels_loss() or (model.loss is None and model.classes_ is not None)
    if args.proba:
        if not classifier:
            raise UsageError("--proba: this model is a regression model; it has no class probabilities")
        pred = model.predict_proba(X)
    elif classifier:
        pred = model.predict_classes(X)
    else:
        pred = model.predict(X).reshape(len(X), -1).astype(np.float64)
    if args.out:
        _write(args.out, pred, model, args.proba, classifier)
        print(f"{len(pred)} predictions written to {args.out}")
    else:
        for row in pred:
            print(_row_text(row, classifier and not args.proba))
    if y is not None and len(y) != len(X):
        raise UsageError(f"--data: y has {len(y)} rows, X has {len(X)}")
    if y is not None and not classifier and np.asarray(y).size != pred.size:
        raise UsageError(f"--data: y has shape {np.shape(y)}; this model predicts {pred.shape[1]} value(s) per row")
    if y is not None:
        _report_score(model, y, pred if not args.proba else model.predict_classes(X), classifier, target)
    return 0


def _row_text(row: Any, labels: bool) -> str:
    if labels:
        return str(row)
    return ",".join(f"{v:.6g}" for v in np.atleast_1d(row))


def _write(path: str, pred: np.ndarray, model: Any, proba: bool, classifier: bool) -> None:
    if path.lower().endswith(".npy"):
        np.save(path, pred)
        return
    if proba:
        classes = model.classes_ if model.classes_ is not None else range(pred.shape[1])
        header = ",".join(str(c) for c in classes)
        np.savetxt(path, pred, delimiter=",", fmt="%.8g", header=header, comments="")
    elif classifier:
        with open(path, "w") as f:
            f.writelines(f"{v}\n" for v in pred.tolist())
    else:
        np.savetxt(path, pred, delimiter=",", fmt="%.8g")


def _report_score(model: Any, y: np.ndarray, pred: np.ndarray, classifier: bool, target: str | None) -> None:
    against = f" against the column {target!r}" if target else " against y"
    if classifier:
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows (an .npz)
            y = np.argmax(y, axis=1)
        if model.classes_ is not None and model.classes_.dtype.kind == "U":
            y = np.asarray(y).astype(str)
        elif model.classes_ is not None and np.asarray(y).dtype.kind == "f" and np.all(y == np.round(y)):
            y = np.asarray(y).astype(np.int64)
        print(f"accuracy: {np.mean(pred == y):.4f} ({len(y)} samples{against})", file=sys.stderr)
    else:
        y = np.asarray(y, dtype=np.float64).reshape(len(pred), -1)
        err = pred - y
        print(f"mse: {np.mean(err ** 2):.4g}, mae: {np.mean(np.abs(err)):.4g} ({len(y)} samples{against})",
              file=sys.stderr)
