"""Data for the commands: reading `--data` (digits, .npz, .csv by pandas), deciding the task,
class values, the test split and the input standardization.

The model file remembers what the data looked like (`model.classes_`, `model.feature_names_in_`,
`model.metadata["cli"]["target"]`), so that `gradstep predict` can check and select columns by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .common import UsageError

MAX_AUTO_CLASSES = 20  # auto: more distinct whole numbers than this are a regression target


@dataclass
class Table:
    """Raw data as read: X float64 (N, F); y as in the file (1-D values of any kind, 2-D rows,
    or None); the column names when the file has them."""
    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] | None = None
    target_name: str | None = None
    source: str = ""


def _user_error(e: Exception) -> UsageError:
    return UsageError(str(e).replace("load_file: ", "--data: ", 1))


def check_data_path(spec: str, flag: str = "--data") -> None:
    if not os.path.exists(spec):
        raise UsageError(f"{flag}: no such file {spec!r} (use 'digits' or a .npz/.csv file)")
    if not spec.lower().endswith((".npz", ".csv")) or not os.path.isfile(spec):
        raise UsageError(f"{flag}: expected 'digits', a .npz or a .csv file, got {spec!r}")


def read_csv(path: str) -> Any:
    from .. import datasets
    try:
        return datasets.read_csv_frame(path)
    except ValueError as e:
        raise _user_error(e) from None


def csv_features(frame: Any, path: str, columns: list[str]) -> np.ndarray:
    from .. import datasets
    try:
        return datasets.csv_numbers(frame, path, columns)
    except ValueError as e:
        raise _user_error(e) from None


def csv_target(frame: Any, path: str, name: str) -> np.ndarray:
    """A label or target column: numbers stay numbers, anything else is text (stripped)."""
    import pandas as pd

    col = frame[name]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise UsageError(f"--data: {path} target column {name!r} has an empty value in data row {row + 1}")
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise UsageError(f"--data: {path} target column {name!r} holds {values[row]} in data row {row + 1}; "
                             "values must be finite")
        return col.to_numpy()
    return col.astype(str).str.strip().to_numpy(dtype=str)


def read_training_data(spec: str, target: str | None, images: bool = False) -> Table:
    """`--data` of train/check/search: features and a target (digits as (N, 1, 8, 8) images when
    `images`)."""
    if spec == "digits":
        if target is not None:
            raise UsageError("--target names a CSV column; --data digits has none")
        from .. import datasets
        X, y = datasets.load_digits(images=images)
        return Table(X.astype(np.float64), y, source="digits")
    check_data_path(spec)
    if spec.lower().endswith(".npz"):
        if target is not None:
            raise UsageError("--target names a CSV column; a .npz file holds arrays X and y")
        return read_npz(spec, need_y=True)
    frame = read_csv(spec)
    header = list(frame.columns)
    if len(header) < 2:
        raise UsageError(f"--data: {spec} has {len(header)} column(s) {header}; expected at least one "
                         "feature column and a target column")
    if target is None:
        target = header[-1]
    elif target not in header:
        raise UsageError(f"--target: {spec} has no column named {target!r}; its columns are {header}")
    features = [c for c in header if c != target]
    return Table(csv_features(frame, spec, features), csv_target(frame, spec, target), features, target, spec)


def read_npz(path: str, need_y: bool) -> Table:
    import zipfile
    if not zipfile.is_zipfile(path):
        raise UsageError(f"--data: {path} is not a readable .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files:
                raise UsageError(f"--data: {path!r} has no array 'X' (found {sorted(z.files)})")
            if need_y and "y" not in z.files:
                raise UsageError(f"--data: {path!r} has no array 'y' (found {sorted(z.files)})")
            X = z["X"]
            y = z["y"] if "y" in z.files else None
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"--data: {path} holds an array that cannot be read ({e})") from None
    if X.dtype.kind not in "biuf" or X.ndim < 2:
        raise UsageError(f"--data: array 'X' in {path} must be a numeric array (samples, features) or "
                         f"(samples, C, H, W), got dtype {X.dtype} and shape {X.shape}")
    if y is not None and (y.ndim not in (1, 2) or y.shape[0] != X.shape[0]):
        raise UsageError(f"--data: array 'y' in {path} must have one row per row of X ({X.shape[0]}), "
                         f"got shape {y.shape}")
    if y is not None and y.dtype.kind not in "biufU":
        raise UsageError(f"--data: array 'y' in {path} must hold numbers or strings, got dtype {y.dtype}")
    return Table(np.asarray(X, dtype=np.float64), y, source=path)


# ---- the task ------------------------------------------------------------------------------------
@dataclass
class Task:
    """What the target is: `classification` with `classes` (the class values, sorted), or a
    regression with `n_outputs` columns. `y` is the target ready for the model: class values
    (1-D) or float64 targets (N, n_outputs). `why` is the line printed about the choice."""
    classification: bool
    y: np.ndarray
    classes: np.ndarray | None
    n_outputs: int
    why: str
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "classification" if self.classification else "regression"


def _preview(values: np.ndarray, k: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:k].tolist())
    return shown + (", ..." if len(values) > k else "")


def _one_hot_rows(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def decide_task(y: np.ndarray, requested: str, target: str | None) -> Task:
    """classification or regression, by `--task` or (auto) by the target's values."""
    what = f"the target {target!r}" if target else "y"
    override = {"classification": "--task regression", "regression": "--task classification"}
    notes: list[str] = []
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        numeric = y.dtype.kind in "biuf"
        if numeric and _one_hot_rows(y) and requested != "regression":
            classes = np.arange(y.shape[1])
            return Task(True, np.argmax(y, axis=1).astype(np.int64), classes, len(classes),
                        f"{'--task' if requested != 'auto' else 'auto'}: {what} holds one-hot rows of "
                        f"{y.shape[1]} columns, read as class labels 0..{y.shape[1] - 1}")
        if not numeric:
            raise UsageError(f"--data: {what} is a 2-D array of {y.dtype}; expected one label per row, "
                             "one-hot rows or numbers")
        if requested == "classification" or (requested == "auto" and np.all((y == 0) | (y == 1))):
            counts = y.sum(axis=1) if np.all((y == 0) | (y == 1)) else None
            bad = (f" (row {int(np.flatnonzero(counts != 1)[0])} holds {int(counts[counts != 1][0])} ones: "
                   "multi-label targets are not supported by the command line)") if counts is not None else ""
            raise UsageError(f"--data: {what} has {y.shape[1]} columns that are not one-hot rows{bad}; "
                             "give one class label per row or one-hot rows, or --task regression to fit "
                             "the columns as numbers")
        return Task(False, np.asarray(y, dtype=np.float64), None, y.shape[1],
                    f"{'--task' if requested != 'auto' else 'auto'}: {what} has {y.shape[1]} numeric columns")
    if y.dtype.kind in "biuf":
        values = np.asarray(y, dtype=np.float64)
        whole = bool(np.all(values == np.round(values)))
        distinct = np.unique(values)
        if requested == "regression" or (requested == "auto" and not whole):
            why = ("--task regression" if requested == "regression" else
                   f"auto: {what} holds numbers that are not whole (e.g. "
                   f"{values[values != np.round(values)][0]:g}); {override['regression']} to override")
            return Task(False, values.reshape(-1, 1), None, 1, why)
        if requested == "classification" and not whole:
            bad = values[values != np.round(values)][0]
            raise UsageError(f"--task classification: {what} holds numbers that are not whole (e.g. {bad:g}); "
                             "class labels are whole numbers or text")
        many = len(distinct) > MAX_AUTO_CLASSES or len(distinct) > max(2, len(values) // 2)
        if requested == "auto" and many:
            return Task(False, values.reshape(-1, 1), None, 1,
                        f"auto: {what} holds {len(distinct)} distinct whole numbers, too many for a set of "
                        f"classes (at most {MAX_AUTO_CLASSES}, and at most one per two samples); "
                        f"{override['regression']} to override")
        classes = distinct.astype(np.int64) if y.dtype.kind == "f" else np.unique(y)
        labels = np.asarray(y).astype(classes.dtype)
        why = ("--task classification" if requested == "classification" else
               f"auto: {what} holds {len(classes)} distinct whole numbers ({_preview(classes)}); "
               f"{override['classification']} to override")
    else:
        if requested == "regression":
            raise UsageError(f"--task regression: {what} holds text ({_preview(np.unique(y))}), not numbers")
        labels = np.asarray(y)
        classes = np.unique(labels)
        why = (f"{'--task classification' if requested == 'classification' else 'auto'}: {what} holds "
               f"{len(classes)} text labels ({_preview(classes)})")
    if len(classes) < 2:
        raise UsageError(f"--data: {what} holds a single class ({classes[0]}); a classifier needs at least two")
    return Task(True, labels, classes, len(classes), why, notes)


# ---- train/check/search: split and standardize -------------------------------------------------
@dataclass
class Prepared:
    """The data of a training command: raw train/test parts, the task, and the standardization fit
    on the training part. `y_*` hold class values (classification) or float targets (N, k)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: Task
    standardize: Any
    table: Table

    def indices(self, y: np.ndarray) -> np.ndarray:
        """Class values -> 0..C-1 (for the library functions that take label indices)."""
        return np.searchsorted(self.task.classes, y).astype(np.int64)

    def describe(self) -> str:
        t = self.task
        n = len(self.X_train) + len(self.X_test)
        what = f"{t.n_outputs} classes" if t.classification else "regression"
        shape = self.X_train.shape[1:]
        inputs = f"{shape[0]} features" if len(shape) == 1 else f"images {shape}"
        return f"data: {self.table.source}: {n} samples, {inputs}, {what}"


def prepare(args: Any, task: Task | None = None) -> Prepared:
    """Read `--data`, decide the task, hold out `--test` (stratified when every class allows it),
    and fit the standardization on the training part."""
    from sklearn.model_selection import train_test_split

    from ..preprocessing import Standardize

    conv = bool(getattr(args, "conv", None))
    table = read_training_data(args.data, args.target, images=conv)
    if conv and table.X.ndim != 4:
        raise UsageError(f"--conv: needs image data X of shape (N, C, H, W), got shape {table.X.shape}")
    task = task or decide_task(np.asarray(table.y), args.task, table.target_name)
    y = task.y
    strat = None
    if task.classification:
        _, counts = np.unique(y, return_counts=True)
        n_test = int(np.ceil(args.test * len(y)))
        if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
            strat = y
    if len(y) < 4:
        raise UsageError(f"--data: {table.source} has {len(y)} samples; too few to hold out test and validation data")
    X_tr, X_te, y_tr, y_te = train_test_split(table.X, y, test_size=args.test, random_state=args.seed, stratify=strat)
    return Prepared(X_tr, y_tr, X_te, y_te, task, Standardize.fit(X_tr), table)
