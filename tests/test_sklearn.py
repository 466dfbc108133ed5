"""gs.sklearn: MLPClassifier / MLPRegressor under scikit-learn's estimator checks and tools."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.model_selection import RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.exceptions import SkipTestWarning
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

import gradstep as gs
from gradstep.sklearn import MLPClassifier, MLPRegressor

# Small, quick-learning settings for scikit-learn's checks (their data sets are tiny and easy).
FAST = dict(hidden_layer_sizes=(16,), epochs=10, lr=0.01, batch_size=16)


@pytest.fixture(scope="module")
def digits():
    X, y = gs.datasets.load_digits()
    return X[:400].astype(np.float64), y[:400]


def fast(cls, **kw):
    return cls(**{**FAST, **kw})


def softmax64(z):
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# Every scikit-learn check passes: no expected failures to declare.
@parametrize_with_checks([fast(MLPClassifier), fast(MLPRegressor),
                          fast(MLPClassifier, batch_norm=True, dropout=0.2, dtype="float64", activation="tanh"),
                          fast(MLPRegressor, hidden_layer_sizes=(8, 8), optimizer="rmsprop")])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_check_estimator_with_default_params(cls):
    # the defaults (100 hidden units, 20 epochs) pass too; check_estimator warns about the checks it
    # skips (no pandas, no array API), which this file's warnings-as-errors would turn into failures
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(cls(), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == [] and len(results) > 40


def test_multiclass_and_predict_proba(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), epochs=15, lr=3e-3, random_state=0).fit(X / 16.0, y)
    assert clf.score(X / 16.0, y) > 0.95
    assert list(clf.classes_) == list(range(10)) and clf.n_features_in_ == 64
    proba = clf.predict_proba(X / 16.0)
    assert proba.shape == (400, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    # computed in float64 from the float32 network's weights: its float32 outputs agree to float32 rounding
    np.testing.assert_allclose(proba, softmax64(clf.model_.predict(X / 16.0)), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.predict(X / 16.0), clf.classes_[np.argmax(proba, axis=1)])
    np.testing.assert_array_equal(clf.predict_log_proba(X[:5] / 16.0), np.log(clf.predict_proba(X[:5] / 16.0)))
    assert isinstance(clf.model_, gs.Sequential) and len(clf.history_.history["loss"]) == 15
    assert clf.loss_curve_ == clf.history_.history["loss"] and clf.n_iter_ == 15
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_predictions_do_not_depend_on_the_other_rows(digits, cls):
    # float32 GEMMs round a row differently with its position in the batch; predictions are
    # made in float64, so reordering or subsetting the rows changes them by ~1e-16 at most
    X, y = digits
    est = fast(cls, hidden_layer_sizes=(16, 8), random_state=0).fit(X / 16.0, y)
    method = est.predict_proba if cls is MLPClassifier else est.predict
    full = method(X / 16.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.permutation(len(X))[:37]
        np.testing.assert_allclose(method(X[idx] / 16.0), full[idx], rtol=1e-12, atol=1e-15)


def test_binary_and_string_labels(digits):
    X, y = digits
    keep = (y == 3) | (y == 8)
    Xb, yb = X[keep] / 16.0, np.where(y[keep] == 3, "three", "eight")
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=20, lr=1e-2, random_state=1).fit(Xb, yb)
    assert list(clf.classes_) == ["eight", "three"]
    pred = clf.predict(Xb)
    assert pred.dtype.kind == "U" and set(pred) <= {"eight", "three"}
    assert clf.score(Xb, yb) > 0.95
    assert clf.predict_proba(Xb).shape == (len(yb), 2)
    assert clf.model_.out_features == 2


def test_regression_1d_and_2d_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y1 = X @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.05 * rng.normal(size=300)
    reg = MLPRegressor(hidden_layer_sizes=(32,), epochs=30, lr=1e-2, random_state=0).fit(X, y1)
    p = reg.predict(X)
    assert p.shape == (300,) and p.dtype == np.float64 and reg.n_outputs_ == 1
    assert reg.score(X, y1) > 0.9
    y2 = np.column_stack([y1, -2 * y1 + 1])
    reg2 = MLPRegressor(hidden_layer_sizes=(32,), epochs=30, lr=1e-2, random_state=0).fit(X, y2)
    assert reg2.predict(X).shape == (300, 2) and reg2.n_outputs_ == 2
    assert reg2.score(X, y2) > 0.9
    col = MLPRegressor(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y1[:, None])
    assert col.predict(X).shape == (300, 1)  # 2-D y in, 2-D predictions out


def test_pipeline_cross_val_score_and_randomized_search(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), epochs=8, lr=3e-3,
                                                         random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75
    search = RandomizedSearchCV(pipe, {"mlpclassifier__lr": loguniform(1e-4, 1e-1),
                                       "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]},
                                n_iter=3, cv=2, random_state=0)
    search.fit(X, y)
    assert 1e-4 <= search.best_params_["mlpclassifier__lr"] <= 1e-1
    assert search.best_score_ > 0.5 and search.score(X, y) > 0.8
    assert len(search.cv_results_["params"]) == 3


def test_random_state_reproducible(digits):
    X, y = digits
    a = fast(MLPClassifier, random_state=7).fit(X, y).predict_proba(X)
    b = fast(MLPClassifier, random_state=7).fit(X, y).predict_proba(X)
    c = fast(MLPClassifier, random_state=8).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rs = np.random.RandomState(3)
    d = fast(MLPClassifier, random_state=rs).fit(X, y).predict_proba(X)
    assert d.shape == a.shape  # a RandomState instance is accepted, as in scikit-learn


def test_partial_fit_classifier(digits):
    X, y = digits
    clf = fast(MLPClassifier, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    first = y < 5  # the first batch need not hold every class
    clf.partial_fit(X[first], y[first], classes=np.arange(10))
    assert list(clf.classes_) == list(range(10)) and clf.n_iter_ == 1
    for _ in range(4):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 5 and len(clf.history_.history["loss"]) == 5
    assert clf.model_.epochs_done == 5
    assert clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:3], np.array([1, 2, 42]))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :10], y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fast(MLPClassifier).partial_fit(X, y, classes=[1])
    # fit starts over
    clf.fit(X, y)
    assert clf.n_iter_ == FAST["epochs"]


def test_partial_fit_regressor():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = X.sum(axis=1)
    reg = fast(MLPRegressor, random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 3 and reg.predict(X).shape == (100,)
    with pytest.raises(ValueError, match="target column"):
        reg.partial_fit(X, np.column_stack([y, y]))


def test_pickle_round_trip_and_training_resumes_identically(digits):
    X, y = digits
    a = fast(MLPClassifier, random_state=0).fit(X, y)
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert b.get_params() == a.get_params() and list(b.classes_) == list(a.classes_)
    a.partial_fit(X, y)
    b.partial_fit(X, y)  # weights, optimizer state and shuffling seed all travelled
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert b.history_.history["loss"] == a.history_.history["loss"]
    assert "model_" not in fast(MLPClassifier).__getstate__()


@pytest.mark.parametrize("cls, dtype", [(MLPClassifier, "float32"), (MLPRegressor, "float64")])
def test_unpickled_input_arrays(digits, cls, dtype):
    # unpickled arrays carry non-canonical dtype objects that the C++ checks reject: copied once
    X, y = digits
    y = y.astype(np.float64) if cls is MLPRegressor else y
    Xp, yp = pickle.loads(pickle.dumps((X, y)))
    a = fast(cls, dtype=dtype, random_state=0).fit(X, y).predict(X)
    b = fast(cls, dtype=dtype, random_state=0).fit(Xp, yp).predict(Xp)
    np.testing.assert_array_equal(a, b)


def test_params_stored_unchanged_and_clone(digits):
    sizes = [64, 32]
    clf = MLPClassifier(hidden_layer_sizes=sizes, lr=0.5, dropout=0.3)
    assert clf.get_params()["hidden_layer_sizes"] is sizes
    assert clf.set_params(lr=0.1).lr == 0.1
    assert clone(clf).get_params() == clf.get_params()
    defaults = MLPRegressor().get_params()
    assert defaults == dict(hidden_layer_sizes=(100,), activation="relu", optimizer="adam", lr=1e-3,
                            batch_size=32, epochs=20, l2=0.0, dropout=0.0, batch_norm=False, shuffle=True,
                            random_state=None, verbose=0, dtype="float32")
    assert repr(clf) == "MLPClassifier(dropout=0.3, hidden_layer_sizes=[64, 32], lr=0.1)"


def test_network_layout_follows_the_params(digits):
    X, y = digits
    clf = fast(MLPClassifier, hidden_layer_sizes=(12, 6), batch_norm=True, dropout=0.1, activation="tanh",
               dtype="float64", l2=1e-3, optimizer="sgd", random_state=0).fit(X[:64], y[:64])
    names = [type(layer).__name__ for layer in clf.model_.layers]
    assert names == ["Dense", "BatchNorm", "Tanh", "Dropout", "Dense", "BatchNorm", "Tanh", "Dropout", "Dense"]
    assert clf.model_.dtype == np.float64 and clf.predict_proba(X[:3]).dtype == np.float64
    assert clf.model_.layers[0].l2 == 1e-3 and type(clf.model_.optimizer).__name__ == "SGD"
    assert clf.model_.optimizer.lr == FAST["lr"]
    linear = fast(MLPClassifier, hidden_layer_sizes=()).fit(X, y)
    assert [type(layer).__name__ for layer in linear.model_.layers] == ["Dense"]


def test_batch_norm_avoids_a_last_batch_of_one_row(digits):
    X, y = digits
    clf = fast(MLPClassifier, batch_norm=True, batch_size=16, random_state=0).fit(X[:33], y[:33])
    assert clf.history_.params["batch_size"] == 17
    plain = fast(MLPClassifier, batch_size=16, random_state=0).fit(X[:33], y[:33])
    assert plain.history_.params["batch_size"] == 16


@pytest.mark.parametrize("params, exc, word", [
    (dict(hidden_layer_sizes="100"), TypeError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=(10, 0)), ValueError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=(10.5,)), TypeError, "hidden_layer_sizes"),
    (dict(activation="swish"), ValueError, "activation"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(batch_norm="yes"), TypeError, "batch_norm"),
    (dict(shuffle=None), TypeError, "shuffle"),
    (dict(verbose=-1), ValueError, "verbose"),
    (dict(dtype="float16"), ValueError, "dtype"),
])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_bad_params_raise_in_fit_naming_them(digits, cls, params, exc, word):
    X, y = digits
    est = cls(**params)  # the constructor stores them unchecked, as scikit-learn requires
    with pytest.raises(exc, match=f"{cls.__name__}: {word}"):
        est.fit(X[:20], y[:20])


def test_single_class_rejected(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="only one class"):
        fast(MLPClassifier).fit(X[:10], np.zeros(10, dtype=int))
