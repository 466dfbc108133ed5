"""Data for training: bundled and on-disk data sets, splitting, mini-batches, scaling.

- `load_digits(images=False)`: the 8x8 digits that ship with scikit-learn (nothing is downloaded);
- `load_mnist(directory, kind, images=False)`: the standard MNIST IDX files, gzipped or not,
  parsed strictly;
- `load_fashion_mnist(directory=None, kind, images=True)`: Fashion-MNIST from Debian's
  `dataset-fashion-mnist` package (or any directory holding its four IDX files);
- `load_file(path, target=None)`: a `.npz` (arrays `X`, `y`) or `.csv` (header row, read by pandas) file;
- `train_val_split(X, y, val, seed)`: a seeded, stratified-when-possible split (scikit-learn);
- `batches(X, y, batch_size, shuffle, seed)`: seeded mini-batches covering every row once;
- `standardize(X_train, *others)`: zero mean, unit variance from the training rows (StandardScaler).

Loaders return `(X, y)`: `X` float32 `(N, F)`, or `(N, 1, rows, cols)` images with `images=True`
(the layout Conv2D takes), and `y` int64 class labels (regression targets stay float).
"""
from __future__ import annotations

import csv
import gzip
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks, _random

__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_file", "train_val_split", "batches", "standardize"]

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
_MNIST_PREFIX = {"train": "train", "test": "t10k"}
# Where Debian's dataset-fashion-mnist package puts the four IDX .gz files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _check_images(images: Any, fn: str) -> bool:
    if not isinstance(images, (bool, np.bool_)):
        raise TypeError(f"{fn}: images must be a bool, got {type(images).__name__}")
    return bool(images)


# ---- scikit-learn's digits ---------------------------------------------------------------------
def load_digits(images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digit images bundled with scikit-learn.

    Returns `X` float32 `(1797, 64)` holding the raw pixel values 0..16 (`(1797, 1, 8, 8)` with
    `images=True`, one channel, for Conv2D) and `y` int64 `(1797,)` labels 0..9. Nothing is
    downloaded.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    images = _check_images(images, "load_digits")
    X, y = _sk_load_digits(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return X, np.ascontiguousarray(y, dtype=np.int64)


# ---- MNIST IDX files ---------------------------------------------------------------------------
def load_mnist(directory: str | os.PathLike, kind: str = "train",
               images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST (or any data set in its format, e.g. Fashion-MNIST) from its IDX files.

    `directory` holds `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (kind="train") or
    `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (kind="test"), each plain or gzipped
    (`.gz`). Returns `X` float32 `(n, rows*cols)` scaled to [0, 1] (`(n, 1, rows, cols)` with
    `images=True`) and `y` int64 `(n,)`.

    A missing directory or file raises FileNotFoundError naming the path; a corrupt, truncated or
    foreign file raises ValueError naming the file and what is wrong with it.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"load_mnist: directory must be a path (str or os.PathLike), "
                        f"got {type(directory).__name__}")
    if not isinstance(kind, str):
        raise TypeError(f"load_mnist: kind must be 'train' or 'test', got {type(kind).__name__}")
    if kind not in _MNIST_PREFIX:
        raise ValueError(f"load_mnist: kind must be 'train' or 'test', got {kind!r}")
    images = _check_images(images, "load_mnist")
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"load_mnist: directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"load_mnist: directory {str(root)!r} is not a directory")
    prefix = _MNIST_PREFIX[kind]
    images_path = _find_idx(root, f"{prefix}-images", "idx3-ubyte")
    labels_path = _find_idx(root, f"{prefix}-labels", "idx1-ubyte")

    n_img, rows, cols, pixels = _parse_idx(images_path, _IDX_IMAGES_MAGIC, ("images", "rows", "cols"))
    n_lab, labels = _parse_idx(labels_path, _IDX_LABELS_MAGIC, ("labels",))
    if n_img != n_lab:
        raise ValueError(f"load_mnist: {images_path} holds {n_img} images but {labels_path} holds "
                         f"{n_lab} labels; they must agree")
    X = np.divide(pixels.reshape(n_img, rows * cols), np.float32(255.0), dtype=np.float32)
    if images:
        X = X.reshape(n_img, 1, rows, cols)
    return X, labels.astype(np.int64)


def load_fashion_mnist(directory: str | os.PathLike | None = None, kind: str = "train",
                       images: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (28x28 grey images of clothes, 10 classes) from its four IDX files.

    `directory=None` reads them where Debian's package puts them (`FASHION_MNIST_DIR`,
    /usr/share/datasets/fashion-mnist: `apt-get install dataset-fashion-mnist`); any other
    directory holding `train-images-idx3-ubyte.gz` etc. works too. Returns `X` float32 in [0, 1],
    `(n, 1, 28, 28)` (or `(n, 784)` with `images=False`), and `y` int64 `(n,)`: 60000 rows for
    kind="train", 10000 for kind="test". Nothing is downloaded; when the files are missing the
    FileNotFoundError says how to install them.
    """
    root = FASHION_MNIST_DIR if directory is None else directory
    try:
        return load_mnist(root, kind, images=images)
    except FileNotFoundError as e:
        where = ("Debian's dataset-fashion-mnist package is not installed"
                 if directory is None else f"no Fashion-MNIST IDX files in {str(directory)!r}")
        raise FileNotFoundError(
            f"load_fashion_mnist: {where} ({e}). Install the files with "
            f"`apt-get install dataset-fashion-mnist` (they go to {FASHION_MNIST_DIR}), or pass "
            f"directory= a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz") from None


def _find_idx(root: Path, stem: str, suffix: str) -> Path:
    """The file `stem-suffix` (the standard name) or `stem.suffix` (a common variant), plain or .gz."""
    names = [f"{stem}-{suffix}", f"{stem}.{suffix}"]
    candidates = [root / (n + ext) for n in names for ext in ("", ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(c.name for c in candidates)
    raise FileNotFoundError(f"load_mnist: no file {str(root / names[0])!r} (tried {tried} "
                            f"in {str(root)!r})")


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise ValueError(f"load_mnist: {path} is named .gz but is not gzip-compressed")
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"load_mnist: {path} is a corrupt or truncated gzip file ({e})") from None


def _parse_idx(path: Path, magic: int, dims: tuple[str, ...]) -> tuple:
    """(dimension sizes..., uint8 payload) of an IDX file of unsigned bytes, checked strictly."""
    data = _read_maybe_gzip(path)
    header = 4 + 4 * len(dims)
    what = "image" if magic == _IDX_IMAGES_MAGIC else "label"
    if len(data) >= 4:  # a foreign file is reported as such, not as a short one
        (found,) = struct.unpack(">I", data[:4])
        if found != magic:
            other = {_IDX_IMAGES_MAGIC: "an IDX image file", _IDX_LABELS_MAGIC: "an IDX label file"}
            seems = other.get(found, "not an IDX file of unsigned bytes")
            raise ValueError(f"load_mnist: {path} has magic number 0x{found:08x}, expected "
                             f"0x{magic:08x} for an IDX {what} file ({seems})")
    if len(data) < header:
        raise ValueError(f"load_mnist: {path} is truncated: an IDX {what} file needs a "
                         f"{header}-byte header, the file has {len(data)} bytes")
    sizes = struct.unpack(">" + "I" * len(dims), data[4:header])
    for name, size in zip(dims, sizes):
        if size < 1:
            raise ValueError(f"load_mnist: {path} declares {size} {name}; expected at least 1")
    expected = math.prod(sizes)
    payload = len(data) - header
    if payload < expected:
        raise ValueError(f"load_mnist: {path} is truncated: its header declares "
                         f"{' x '.join(map(str, sizes))} = {expected} bytes of data, "
                         f"found {payload}")
    if payload > expected:
        raise ValueError(f"load_mnist: {path} has {payload - expected} bytes of trailing data "
                         f"after the {expected} its header declares")
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    return (*sizes, values)


# ---- .npz / .csv files -------------------------------------------------------------------------
def load_file(path: str | os.PathLike, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load `(X, y)` from a `.npz` or `.csv` file.

    - `.npz`: arrays `X` (2-D, numeric) and `y` (or the array named `target`);
    - `.csv`: a header row naming the columns, then one numeric row per sample; the label is the
      last column, or the column named `target`.

    `X` is float32 (a float64 `.npz` array stays float64); `y` is int64 when its values are integers,
    else float64 (a regression target).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_file: path must be a path (str or os.PathLike), "
                        f"got {type(path).__name__}")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"load_file: target must be a column name (str) or None, "
                        f"got {type(target).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise ValueError(f"load_file: path must end in .npz or .csv, got {str(p)!r}")
    if not p.exists():
        raise FileNotFoundError(f"load_file: file {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"load_file: path {str(p)!r} is not a file")
    if suffix == ".npz":
        return _load_npz(p, "y" if target is None else target)
    return _load_csv(p, target)


def _labels_or_targets(y: np.ndarray) -> np.ndarray:
    """int64 when every value is a whole number (class labels), else float64."""
    if y.dtype.kind in "biu":
        return np.ascontiguousarray(y, dtype=np.int64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(np.abs(y) < 2**53):
        return y.astype(np.int64)
    return y


def _load_npz(p: Path, target: str) -> tuple[np.ndarray, np.ndarray]:
    if not zipfile.is_zipfile(p):  # np.load would try other formats (.npy, pickle) instead
        raise ValueError(f"load_file: {p} is not a readable .npz archive (not a zip file)")
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            missing = [k for k in ("X", target) if k not in keys]
            if missing:
                raise ValueError(f"load_file: {p} has no array {missing[0]!r}; it holds "
                                 f"{keys} (expected arrays 'X' and {target!r})")
            X, y = archive["X"], archive[target]
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"load_file: {p} is not a readable .npz archive ({e})") from None
    except ValueError as e:
        if str(e).startswith("load_file:"):
            raise
        # object arrays (refused without pickle) and malformed members
        raise ValueError(f"load_file: {p} holds an array that cannot be read ({e})") from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"load_file: array 'X' in {p} must be numeric, got dtype {X.dtype}")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"load_file: array {target!r} in {p} must be numeric, got dtype {y.dtype}")
    if X.ndim != 2:
        raise ValueError(f"load_file: array 'X' in {p} must be 2-D (samples, features), "
                         f"got shape {X.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"load_file: array {target!r} in {p} must have one row per row of X "
                         f"({X.shape[0]}), got shape {y.shape}")
    X = np.ascontiguousarray(X, dtype=_checks.float_dtype_of(X))
    return X, _labels_or_targets(y)


def _load_csv(p: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    frame = read_csv_frame(p)
    header = list(frame.columns)
    if len(header) < 2:
        raise ValueError(f"load_file: {p} has {len(header)} column(s) {header}; expected at least "
                         f"one feature column and a label column")
    if target is None:
        target = header[-1]
    elif target not in header:
        raise ValueError(f"load_file: {p} has no column named {target!r} (the target); "
                         f"its columns are {header}")
    features = [c for c in header if c != target]
    X = csv_numbers(frame, p, features)
    y = csv_numbers(frame, p, [target], label=True)[:, 0]
    return np.ascontiguousarray(X, dtype=np.float32), _labels_or_targets(y)


def read_csv_frame(p: str | os.PathLike) -> Any:
    """A CSV file with a header row as a pandas DataFrame of its cells, read by pandas' C parser.

    Column names are stripped of spaces (and a UTF-8 byte-order mark); only empty cells are
    missing values (a label "NA" stays the text "NA"); blank lines carry nothing. Raises
    ValueError naming the file for an empty, non-UTF-8 or ragged file and duplicate column names.
    """
    import pandas as pd

    p = Path(p)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            first = next((r for r in csv.reader(f) if any(cell.strip() for cell in r)), None)
    except UnicodeDecodeError as e:
        raise ValueError(f"load_file: {p} is not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise ValueError(f"load_file: {p} is not a valid CSV file ({e})") from None
    if first is None:
        raise ValueError(f"load_file: {p} is empty; expected a header row and data rows")
    header = [name.strip() for name in first]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise ValueError(f"load_file: {p} has duplicate column names {dup}")
    try:
        frame = pd.read_csv(p, encoding="utf-8-sig", skipinitialspace=True, keep_default_na=False,
                            na_values=[""], skip_blank_lines=True)
    except UnicodeDecodeError as e:
        raise ValueError(f"load_file: {p} is not a UTF-8 text file ({e})") from None
    except (pd.errors.ParserError, csv.Error):
        _raise_ragged_row(p, len(header))
        raise ValueError(f"load_file: {p} is not a valid CSV file") from None
    frame.columns = header
    if len(frame) == 0:
        raise ValueError(f"load_file: {p} has a header row but no data rows")
    return frame


def csv_numbers(frame: Any, p: str | os.PathLike, columns: list[str], label: bool = False) -> np.ndarray:
    """The named columns of `frame` (from read_csv_frame) as a float64 (rows, columns) array.

    Every cell must be a finite number; the first that is not raises ValueError naming the file,
    the column, the cell's text and its line in the file."""
    import pandas as pd

    p = Path(p)
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        col = frame[name]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            col = pd.to_numeric(col.astype(str).str.strip(), errors="coerce")
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            line, cell = _csv_cell(p, int(bad[0]), list(frame.columns).index(name), len(frame.columns))
            _csv_number(cell, p, line, name, label)  # raises with the cell's own text
            raise ValueError(f"load_file: {p} column {name!r} has an unreadable value on line {line}")
        out[:, j] = values
    return out


def _data_rows(p: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of the data rows (blank lines skipped), for error messages only."""
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        seen_header = False
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if not seen_header:
                seen_header = True
                continue
            yield reader.line_num, row


def _csv_cell(p: Path, row: int, col: int, n_cols: int) -> tuple[int, str]:
    for i, (line, cells) in enumerate(_data_rows(p)):
        if i == row:
            if len(cells) != n_cols:
                raise ValueError(f"load_file: {p} line {line} has {len(cells)} values, the header has "
                                 f"{n_cols} columns")
            return line, cells[col]
    return row + 2, ""


def _raise_ragged_row(p: Path, n_cols: int) -> None:
    for line, cells in _data_rows(p):
        if len(cells) != n_cols:
            raise ValueError(f"load_file: {p} line {line} has {len(cells)} values, the header has "
                             f"{n_cols} columns")


def _csv_number(cell: str, p: Path, line: int, column: str, is_label: bool) -> float:
    kind = "label column" if is_label else "feature column"
    text = cell.strip()
    if not text:
        raise ValueError(f"load_file: {p} {kind} {column!r} has an empty value on line {line}")
    try:
        v = float(text)
    except ValueError:
        hint = "; encode class names as integers 0..C-1" if is_label else ""
        raise ValueError(f"load_file: {p} {kind} {column!r} is not numeric: {text!r} on line "
                         f"{line}{hint}") from None
    if not math.isfinite(v):
        raise ValueError(f"load_file: {p} {kind} {column!r} holds {text!r} on line {line}; "
                         f"values must be finite")
    return v


# ---- splitting, batching, scaling --------------------------------------------------------------
def _check_seed(seed: Any, name: str) -> int | None:
    if seed is None:
        return None
    return _checks.check_int(seed, name, 0)


def train_val_split(X: Any, y: Any, val: float = 0.2, seed: int | None = None,
                    stratify: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into `(X_train, X_val, y_train, y_val)` with `val` the validation fraction in (0, 1).

    `stratify=None` stratifies by `y` when `y` holds integer class labels and every class has at
    least two rows (each class then keeps its proportion in both parts); `True` insists on it,
    `False` never stratifies, and an array stratifies by its values. Same `seed`, same split.
    """
    X = _checks.numeric_array(X, "train_val_split: X")
    y = _checks.numeric_array(y, "train_val_split: y")
    if X.ndim < 1 or y.ndim < 1:
        raise ValueError(f"train_val_split: X and y must be arrays with one row per sample, got "
                         f"shapes {X.shape} and {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"train_val_split: X and y must have the same number of rows, got "
                         f"{X.shape[0]} and {y.shape[0]}")
    n = X.shape[0]
    val = _checks.check_float(val, "train_val_split: val", 0.0, 1.0, min_inclusive=False,
                              max_inclusive=False)
    seed = _check_seed(seed, "train_val_split: seed")
    n_val = math.ceil(val * n)  # scikit-learn's rounding
    if n < 2 or n_val >= n:
        raise ValueError(f"train_val_split: val={val} of {n} rows leaves no training rows; "
                         f"need at least 2 rows and val < (n-1)/n")

    strata: np.ndarray | None
    if stratify is None:
        strata = y if _stratifiable(y, n_val, n - n_val) else None
    elif isinstance(stratify, (bool, np.bool_)):
        strata = y if stratify else None
        if strata is not None and not _stratifiable(y, n_val, n - n_val):
            raise ValueError(_why_not_stratifiable(y, n_val, n - n_val))
    else:
        strata = _checks.numeric_array(stratify, "train_val_split: stratify")
        if strata.shape[:1] != (n,):
            raise ValueError(f"train_val_split: stratify must have one value per row ({n}), got "
                             f"shape {strata.shape}")
        if not _stratifiable(strata, n_val, n - n_val, integer_only=False):
            raise ValueError(_why_not_stratifiable(strata, n_val, n - n_val))

    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=n_val, random_state=seed,
                                              shuffle=True, stratify=strata)
    return (np.ascontiguousarray(X_tr), np.ascontiguousarray(X_va),
            np.ascontiguousarray(y_tr), np.ascontiguousarray(y_va))


def _stratifiable(y: np.ndarray, n_val: int, n_train: int, integer_only: bool = True) -> bool:
    if y.ndim != 1 or (integer_only and y.dtype.kind not in "biu"):
        return False
    _, counts = np.unique(y, return_counts=True)
    return bool(counts.min() >= 2 and len(counts) <= min(n_val, n_train))


def _why_not_stratifiable(y: np.ndarray, n_val: int, n_train: int) -> str:
    base = "train_val_split: stratify: cannot stratify by "
    if y.ndim != 1:
        return base + f"an array of shape {y.shape}; class labels must be 1-D"
    if y.dtype.kind not in "biu":
        return base + f"y of dtype {y.dtype}; stratification needs integer class labels"
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        return base + (f"y: class {classes[counts.argmin()]} has only {counts.min()} row; every "
                       f"class needs at least 2")
    return base + (f"y: {len(classes)} classes do not fit in {min(n_val, n_train)} rows "
                   f"(validation {n_val}, training {n_train})")


def batches(X: Any, y: Any, batch_size: int, shuffle: bool = True,
            seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Mini-batches `(xb, yb)` covering every row exactly once; the last, partial batch is kept.

    With `shuffle`, rows come in the order `np.random.default_rng(seed).permutation(N)` (the
    library's generator when `seed` is None, see `gs.seed`); without it, in order (as views).
    `y` may be None, giving `yb = None`. Arguments are checked when `batches` is called.
    """
    X = _checks.numeric_array(X, "batches: X")
    if X.ndim < 1:
        raise ValueError("batches: X must have one row per sample, got a 0-D array")
    if y is not None:
        y = _checks.numeric_array(y, "batches: y")
        if y.ndim < 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"batches: y must have one row per row of X ({X.shape[0]}), got "
                             f"shape {y.shape}")
    batch_size = _checks.check_int(batch_size, "batches: batch_size", 1)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"batches: shuffle must be a bool, got {type(shuffle).__name__}")
    seed = _check_seed(seed, "batches: seed")
    n = X.shape[0]
    order = _random.generator(seed).permutation(n) if shuffle else None
    return _batches(X, y, batch_size, order)


def _batches(X: np.ndarray, y: np.ndarray | None, batch_size: int,
             order: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for start in range(0, X.shape[0], batch_size):
        if order is None:
            rows: Any = slice(start, start + batch_size)
        else:
            rows = order[start:start + batch_size]
        yield X[rows], (None if y is None else y[rows])


def standardize(X_train: Any, *others: Any, return_scaler: bool = False) -> Any:
    """Scale features to zero mean and unit variance, with statistics from `X_train` only.

    Returns the scaled `X_train` alone, or the tuple `(X_train, *others)` scaled alike when
    `others` are given; `return_scaler=True` appends the fitted `sklearn.preprocessing.
    StandardScaler` (to scale later data the same way). Constant features are left centred, not
    divided by zero. Arrays keep a float32/float64 dtype (others become float32).
    """
    from sklearn.preprocessing import StandardScaler

    if not isinstance(return_scaler, (bool, np.bool_)):
        raise TypeError(f"standardize: return_scaler must be a bool, got "
                        f"{type(return_scaler).__name__}")
    arrays = [_checks.float_array(X_train, "standardize: X_train", ndim=2)]
    for i, other in enumerate(others):
        a = _checks.float_array(other, f"standardize: others[{i}]", ndim=2)
        if a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"standardize: others[{i}] must have {arrays[0].shape[1]} features "
                             f"like X_train, got shape {a.shape}")
        arrays.append(a)
    if arrays[0].shape[0] < 1:
        raise ValueError("standardize: X_train must have at least one row, got 0")
    scaler = StandardScaler().fit(arrays[0])
    out = [np.ascontiguousarray(scaler.transform(a), dtype=a.dtype) for a in arrays]
    if return_scaler:
        return (*out, scaler)
    return out[0] if not others else tuple(out)
