from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import gradstep as gs
from gradstep import datasets as ds


# ---- load_digits -------------------------------------------------------------------------------
def test_load_digits_matches_sklearn():
    from sklearn.datasets import load_digits

    X, y = ds.load_digits()
    ref = load_digits()
    assert X.dtype == np.float32 and X.shape == (1797, 64) and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (1797,)
    np.testing.assert_array_equal(X, ref.data)
    np.testing.assert_array_equal(y, ref.target)
    assert X.min() == 0.0 and X.max() == 16.0
    assert set(np.unique(y)) == set(range(10))


# ---- load_mnist --------------------------------------------------------------------------------
def idx_images(images: np.ndarray) -> bytes:
    n, r, c = images.shape
    return struct.pack(">IIII", 0x803, n, r, c) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def write(path, data: bytes, gz: bool):
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def mnist_arrays(rng):
    images = rng.integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255  # both ends of the range
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind,prefix", [("train", "train"), ("test", "t10k")])
def test_load_mnist_round_trip(tmp_path, mnist_arrays, gz, kind, prefix):
    images, labels = mnist_arrays
    write(tmp_path / f"{prefix}-images-idx3-ubyte", idx_images(images), gz)
    write(tmp_path / f"{prefix}-labels-idx1-ubyte", idx_labels(labels), gz)
    X, y = ds.load_mnist(tmp_path, kind=kind)
    assert X.dtype == np.float32 and X.shape == (7, 12) and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (7,)
    np.testing.assert_array_equal(X, (images.reshape(7, 12) / np.float32(255)).astype(np.float32))
    assert X[0, 0] == 0.0 and X[1, 0] == 1.0
    np.testing.assert_array_equal(y, labels)
    X2, _ = ds.load_mnist(str(tmp_path), kind)  # str paths too
    np.testing.assert_array_equal(X, X2)


def test_load_mnist_mixed_gzip_and_dot_names(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write(tmp_path / "train-images.idx3-ubyte", idx_images(images), gz=True)
    write(tmp_path / "train-labels-idx1-ubyte", idx_labels(labels), gz=False)
    X, y = ds.load_mnist(tmp_path)
    assert X.shape == (7, 12)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_missing_directory_and_files(tmp_path, mnist_arrays):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ds.load_mnist(missing)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        ds.load_mnist(tmp_path)
    images, labels = mnist_arrays
    write(tmp_path / "train-images-idx3-ubyte", idx_images(images), gz=False)
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        ds.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        ds.load_mnist(tmp_path, kind="test")
    a_file = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(NotADirectoryError, match="directory"):
        ds.load_mnist(a_file)


def test_load_mnist_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        ds.load_mnist(tmp_path, kind="validation")
    with pytest.raises(TypeError, match="kind"):
        ds.load_mnist(tmp_path, kind=1)
    with pytest.raises(TypeError, match="directory"):
        ds.load_mnist(3)


def _corruptions(images: np.ndarray, labels: np.ndarray):
    """(which file, bytes, what the message must say) for every corruption the parser detects."""
    good_img, good_lab = idx_images(images), idx_labels(labels)
    n, r, c = images.shape
    return [
        ("images", good_img[:10], "truncated.*16-byte header"),
        ("images", good_img[:-1], "truncated.*84 bytes of data, found 83"),
        ("images", good_img + b"\x00\x00", "2 bytes of trailing data"),
        ("images", good_lab, "magic number 0x00000801.*expected 0x00000803.*IDX label file"),
        ("images", b"\x89PNG\r\n\x1a\n" + bytes(100), "magic number 0x89504e47.*not an IDX"),
        ("images", struct.pack(">IIII", 0x803, n, 0, c), "declares 0 rows"),
        ("images", struct.pack(">IIII", 0x803, 0, r, c), "declares 0 images"),
        ("labels", good_lab[:5], "truncated.*8-byte header"),
        ("labels", good_lab[:-2], "truncated.*7 bytes of data, found 5"),
        ("labels", good_lab + b"\x01", "1 bytes of trailing data"),
        ("labels", good_img, "magic number 0x00000803.*expected 0x00000801.*IDX image file"),
        ("labels", idx_labels(labels[:5]), "7 images but .* 5 labels"),
        ("images", b"", "truncated"),
    ]


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_corrupt_files(tmp_path, mnist_arrays, gz):
    images, labels = mnist_arrays
    for i, (which, data, message) in enumerate(_corruptions(images, labels)):
        d = tmp_path / f"case{i}"
        d.mkdir()
        img = data if which == "images" else idx_images(images)
        lab = data if which == "labels" else idx_labels(labels)
        write(d / "train-images-idx3-ubyte", img, gz)
        write(d / "train-labels-idx1-ubyte", lab, gz)
        bad = "train-images" if which == "images" else "train-labels"
        with pytest.raises(ValueError, match=message) as info:
            ds.load_mnist(d)
        assert bad in str(info.value), (i, str(info.value))


def test_load_mnist_corrupt_gzip(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write(tmp_path / "train-labels-idx1-ubyte", idx_labels(labels), gz=True)
    whole = gzip.compress(idx_images(images))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*corrupt or truncated gzip"):
        ds.load_mnist(tmp_path)
    # a gzip header followed by garbage
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(whole[:10] + b"garbage" * 10)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*gzip"):
        ds.load_mnist(tmp_path)
    # named .gz but plain
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_images(images))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*not gzip-compressed"):
        ds.load_mnist(tmp_path)


# ---- load_file ---------------------------------------------------------------------------------
def test_load_file_npz(tmp_path, rng):
    X = rng.standard_normal((6, 3))
    y = np.array([0, 1, 2, 1, 0, 2])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xl, yl = ds.load_file(tmp_path / "d.npz")
    assert Xl.dtype == np.float64 and yl.dtype == np.int64  # float64 stays float64
    np.testing.assert_array_equal(Xl, X)
    np.testing.assert_array_equal(yl, y)
    # integer features become float32; float labels that are whole numbers become int64;
    # a named target array
    np.savez(tmp_path / "e.npz", X=np.arange(12).reshape(4, 3), labels=np.array([1.0, 0, 1, 0]),
             y=np.zeros(4))
    Xl, yl = ds.load_file(str(tmp_path / "e.npz"), target="labels")
    assert Xl.dtype == np.float32 and yl.dtype == np.int64
    np.testing.assert_array_equal(yl, [1, 0, 1, 0])
    # regression targets stay float
    np.savez(tmp_path / "r.npz", X=X, y=np.linspace(0, 1, 6))
    _, yl = ds.load_file(tmp_path / "r.npz")
    assert yl.dtype == np.float64
    np.testing.assert_array_equal(yl, np.linspace(0, 1, 6))


def test_load_file_npz_errors(tmp_path, rng):
    X = rng.standard_normal((4, 2))
    np.savez(tmp_path / "noy.npz", X=X, labels=np.zeros(4))
    with pytest.raises(ValueError, match=r"no array 'y'.*\['X', 'labels'\]"):
        ds.load_file(tmp_path / "noy.npz")
    with pytest.raises(ValueError, match="no array 'target_col'"):
        ds.load_file(tmp_path / "noy.npz", target="target_col")
    np.savez(tmp_path / "shape.npz", X=X, y=np.zeros(3))
    with pytest.raises(ValueError, match=r"one row per row of X \(4\)"):
        ds.load_file(tmp_path / "shape.npz")
    np.savez(tmp_path / "x1d.npz", X=np.zeros(4), y=np.zeros(4))
    with pytest.raises(ValueError, match="'X'.*2-D"):
        ds.load_file(tmp_path / "x1d.npz")
    np.savez(tmp_path / "str.npz", X=np.array([["a", "b"]] * 4), y=np.zeros(4))
    with pytest.raises(ValueError, match="'X'.*numeric"):
        ds.load_file(tmp_path / "str.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([None] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(ValueError, match="obj.npz.*cannot be read"):
        ds.load_file(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="junk.npz.*not a readable .npz"):
        ds.load_file(tmp_path / "junk.npz")


def test_load_file_csv_last_column_and_target(tmp_path):
    text = "a,b,label,c\n1,2.5,0,3\n4,5,1,6\n7,8.25,2,9\n"
    (tmp_path / "d.csv").write_text(text)
    X, y = ds.load_file(tmp_path / "d.csv")
    assert X.dtype == np.float32 and X.shape == (3, 3) and y.dtype == np.int64
    np.testing.assert_array_equal(X, [[1, 2.5, 0], [4, 5, 1], [7, 8.25, 2]])
    np.testing.assert_array_equal(y, [3, 6, 9])
    X, y = ds.load_file(tmp_path / "d.csv", target="label")
    np.testing.assert_array_equal(X, [[1, 2.5, 3], [4, 5, 6], [7, 8.25, 9]])
    np.testing.assert_array_equal(y, [0, 1, 2])


def test_load_file_csv_details(tmp_path):
    # BOM, spaces around values, blank lines, a float regression target
    (tmp_path / "r.csv").write_text("\ufeff x , y \n 1 , 0.5\n\n2,1.5\n", encoding="utf-8")
    X, y = ds.load_file(tmp_path / "r.csv", target="y")
    np.testing.assert_array_equal(X, [[1], [2]])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5])


@pytest.mark.parametrize("text,target,message", [
    ("a,b\n1,x\n", None, "label column 'b' is not numeric: 'x' on line 2"),
    ("a,b\nfoo,1\n", None, "feature column 'a' is not numeric: 'foo' on line 2"),
    ("a,b,c\n1,2,3\n1,bar,3\n", "a", "feature column 'b' is not numeric: 'bar' on line 3"),
    ("a,b\n1,2\n", "target", r"no column named 'target'.*\['a', 'b'\]"),
    ("a,b\n1,2\n3\n", None, "line 3 has 1 values.*2 columns"),
    ("a,b\n1,\n", None, "label column 'b' has an empty value on line 2"),
    ("a,b\nnan,1\n", None, "feature column 'a' holds 'nan'.*finite"),
    ("a,b\n", None, "no data rows"),
    ("", None, "is empty"),
    ("a\n1\n", None, "at least one feature column"),
    ("a,a\n1,2\n", None, r"duplicate column names \['a'\]"),
])
def test_load_file_csv_errors(tmp_path, text, target, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        ds.load_file(tmp_path / "bad.csv", target=target)
    assert "bad.csv" in str(info.value)


def test_load_file_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ds.load_file(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"path must end in .npz or .csv.*data.txt"):
        ds.load_file(tmp_path / "data.txt")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match="not a file"):
        ds.load_file(tmp_path / "dir.csv")
    with pytest.raises(TypeError, match="path"):
        ds.load_file(42)
    with pytest.raises(TypeError, match="target"):
        ds.load_file(tmp_path / "x.csv", target=3)
    (tmp_path / "latin.csv").write_bytes(b"a,b\n\xe9,1\n")
    with pytest.raises(ValueError, match="latin.csv.*UTF-8"):
        ds.load_file(tmp_path / "latin.csv")


# ---- train_val_split ---------------------------------------------------------------------------
def test_split_stratified_and_seeded():
    X, y = ds.load_digits()
    Xt, Xv, yt, yv = ds.train_val_split(X, y, val=0.25, seed=3)
    assert Xt.shape == (1347, 64) and Xv.shape == (450, 64) and yt.shape == (1347,)
    # each row appears once: the union of both parts is the data set
    both = np.concatenate([Xt, Xv])
    assert len(np.unique(both, axis=0)) == len(np.unique(X, axis=0))
    # stratified: class proportions agree within one sample per class
    full = np.bincount(y, minlength=10) / len(y)
    np.testing.assert_allclose(np.bincount(yv, minlength=10), full * len(yv), atol=1.0)
    # labels still belong to their rows
    lookup = {X[i].tobytes(): y[i] for i in range(len(y))}
    assert all(lookup[Xv[i].tobytes()] == yv[i] for i in range(len(yv)))
    again = ds.train_val_split(X, y, val=0.25, seed=3)
    for a, b in zip((Xt, Xv, yt, yv), again):
        np.testing.assert_array_equal(a, b)
    other = ds.train_val_split(X, y, val=0.25, seed=4)
    assert not np.array_equal(yv, other[3])


def test_split_stratify_choices(rng):
    from sklearn.model_selection import train_test_split

    X = rng.standard_normal((40, 2))
    y = np.array([0] * 36 + [1] * 4)
    _, _, _, yv = ds.train_val_split(X, y, val=0.5, seed=0)
    assert np.sum(yv == 1) == 2  # stratified by default
    _, _, _, yv = ds.train_val_split(X, y, val=0.5, seed=0, stratify=False)
    expected = train_test_split(X, y, test_size=20, random_state=0)[3]
    np.testing.assert_array_equal(yv, expected)
    groups = np.repeat([0, 1], 20)
    _, Xv, _, _ = ds.train_val_split(X, y, val=0.5, seed=0, stratify=groups)
    in_first = np.isin(Xv[:, 0], X[:20, 0])
    assert in_first.sum() == 10
    # regression targets (floats) are not stratified, a class with one row is not either
    yr = rng.standard_normal(40)
    _, _, _, yv = ds.train_val_split(X, yr, val=0.5, seed=0)
    np.testing.assert_array_equal(yv, train_test_split(X, yr, test_size=20, random_state=0)[3])
    y1 = np.array([0] * 39 + [1])
    assert len(ds.train_val_split(X, y1, val=0.5, seed=0)[3]) == 20
    with pytest.raises(ValueError, match="stratify.*class 1 has only 1 row"):
        ds.train_val_split(X, y1, val=0.5, seed=0, stratify=True)
    with pytest.raises(ValueError, match="stratify.*integer class labels"):
        ds.train_val_split(X, yr, val=0.5, stratify=True)
    with pytest.raises(ValueError, match="stratify.*one value per row"):
        ds.train_val_split(X, y, stratify=np.zeros(3))


def test_split_errors(rng):
    X, y = rng.standard_normal((10, 2)), np.arange(10) % 2
    for val in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="val"):
            ds.train_val_split(X, y, val=val)
    with pytest.raises(TypeError, match="val"):
        ds.train_val_split(X, y, val="0.2")
    with pytest.raises(ValueError, match="same number of rows, got 10 and 9"):
        ds.train_val_split(X, y[:9])
    with pytest.raises(ValueError, match="no training rows"):
        ds.train_val_split(X, y, val=0.95)
    with pytest.raises(ValueError, match="no training rows"):
        ds.train_val_split(X[:1], y[:1], val=0.5)
    with pytest.raises(TypeError, match="seed"):
        ds.train_val_split(X, y, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        ds.train_val_split(X, y, seed=-1)
    with pytest.raises(TypeError, match="X"):
        ds.train_val_split(np.array(["a"] * 10), y)


# ---- batches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,batch_size", [(10, 3), (9, 3), (5, 8), (1, 1)])
def test_batches_cover_every_row_once(n, batch_size, rng):
    X = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    got = list(ds.batches(X, y, batch_size, seed=0))
    sizes = [len(xb) for xb, _ in got]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    rows = np.concatenate([yb for _, yb in got])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))  # each row exactly once
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # rows stay paired with labels
    np.testing.assert_array_equal(rows, np.random.default_rng(0).permutation(n))


def test_batches_seeded_order_and_no_shuffle(rng):
    X, y = rng.standard_normal((50, 3)), np.arange(50)
    a = [yb for _, yb in ds.batches(X, y, 7, seed=5)]
    b = [yb for _, yb in ds.batches(X, y, 7, seed=5)]
    c = [yb for _, yb in ds.batches(X, y, 7, seed=6)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    plain = list(ds.batches(X, y, 7, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in plain]), np.arange(50))
    assert np.shares_memory(plain[0][0], X)  # in order: views, no copies
    # seed=None draws from the library generator, which gs.seed makes reproducible
    gs.seed(11)
    d = np.concatenate([yb for _, yb in ds.batches(X, y, 7)])
    gs.seed(11)
    e = np.concatenate([yb for _, yb in ds.batches(X, y, 7)])
    np.testing.assert_array_equal(d, e)


def test_batches_without_y():
    X = np.arange(10.0).reshape(5, 2)
    got = list(ds.batches(X, None, 2, shuffle=False))
    assert [yb for _, yb in got] == [None, None, None]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), X)


def test_batches_errors_are_raised_at_call_time():
    X, y = np.zeros((4, 2)), np.zeros(4)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(X, y, 0)
    with pytest.raises(TypeError, match="batch_size"):
        ds.batches(X, y, 2.0)
    with pytest.raises(ValueError, match=r"y must have one row per row of X \(4\)"):
        ds.batches(X, np.zeros(3), 2)
    with pytest.raises(TypeError, match="shuffle"):
        ds.batches(X, y, 2, shuffle="yes")
    with pytest.raises(ValueError, match="seed"):
        ds.batches(X, y, 2, seed=-3)
    with pytest.raises(ValueError, match="X"):
        ds.batches(np.float64(1.0), None, 2)
    with pytest.raises(TypeError, match="X"):
        ds.batches(np.array(["a", "b"]), None, 2)


# ---- standardize -------------------------------------------------------------------------------
def test_standardize(rng):
    from sklearn.preprocessing import StandardScaler

    Xt = rng.standard_normal((30, 4)) * [1, 10, 100, 0] + [0, 5, -3, 2]
    Xv = rng.standard_normal((8, 4))
    St, Sv, scaler = ds.standardize(Xt, Xv, return_scaler=True)
    ref = StandardScaler().fit(Xt)
    np.testing.assert_allclose(St, ref.transform(Xt), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Sv, ref.transform(Xv), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(St.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(St.std(axis=0), [1, 1, 1, 0], atol=1e-12)  # constant column: 0
    assert isinstance(scaler, StandardScaler)
    one = ds.standardize(Xt.astype(np.float32))
    assert isinstance(one, np.ndarray) and one.dtype == np.float32
    assert ds.standardize(np.arange(6).reshape(3, 2)).dtype == np.float32
    with pytest.raises(ValueError, match=r"others\[0\] must have 4 features"):
        ds.standardize(Xt, Xv[:, :3])
    with pytest.raises(ValueError, match="X_train"):
        ds.standardize(np.zeros(3))
    with pytest.raises(TypeError, match="return_scaler"):
        ds.standardize(Xt, return_scaler=1)


# ---- image layouts and Fashion-MNIST ------------------------------------------------------------
def test_load_digits_images():
    X, y = ds.load_digits(images=True)
    flat, _ = ds.load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    np.testing.assert_array_equal(X.reshape(1797, 64), flat)
    with pytest.raises(TypeError, match="images"):
        ds.load_digits(images="yes")


def test_load_mnist_images(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write(tmp_path / "train-images-idx3-ubyte", idx_images(images), True)
    write(tmp_path / "train-labels-idx1-ubyte", idx_labels(labels), True)
    X, y = ds.load_mnist(tmp_path, images=True)
    assert X.shape == (7, 1, 4, 3) and X.dtype == np.float32
    np.testing.assert_array_equal(X[:, 0], images / np.float32(255.0))
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(y, labels)


def _fashion_files(root, images, labels):
    for prefix in ("train", "t10k"):
        write(root / f"{prefix}-images-idx3-ubyte", idx_images(images), True)
        write(root / f"{prefix}-labels-idx1-ubyte", idx_labels(labels), True)


def test_load_fashion_mnist_from_a_directory(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    _fashion_files(tmp_path, images, labels)
    X, y = ds.load_fashion_mnist(tmp_path, kind="test")
    assert X.shape == (7, 1, 4, 3)
    np.testing.assert_array_equal(X[:, 0], images / np.float32(255.0))
    np.testing.assert_array_equal(y, labels)
    X, _ = ds.load_fashion_mnist(tmp_path, images=False)
    assert X.shape == (7, 12)


def test_load_fashion_mnist_default_directory(tmp_path, mnist_arrays, monkeypatch):
    images, labels = mnist_arrays
    _fashion_files(tmp_path, images, labels)
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", str(tmp_path))
    X, y = ds.load_fashion_mnist()
    assert X.shape == (7, 1, 4, 3) and y.shape == (7,)


def test_load_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        ds.load_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="directory="):
        ds.load_fashion_mnist(tmp_path)  # exists but holds no files
