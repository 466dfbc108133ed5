"""gs.sklearn.MLPClassifier/MLPRegressor against scikit-learn's, same data, same parameters, same
random_state: score on a held-out split, iterations, final loss, largest loss-curve difference and
fit time (median of --repeats, the two estimators interleaved so machine load hits both alike).

    python bench/sklearn_mlp.py [--repeats 3] [--dtype float32]

Prints a Markdown table. The data sets: digits (1797 x 64, 10 classes), breast_cancer (569 x 30,
binary), make_moons (2000 x 2 with noise 0.25, binary), make_regression (5000 x 20, 2 targets)
and diabetes (442 x 10), all standardized, the regression targets too.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import sklearn.neural_network as skn
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_moons, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import gradstep.sklearn as gsk


def datasets():
    X, y = load_digits(return_X_y=True)
    yield "digits", "MLPClassifier", X, y
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer", "MLPClassifier", X, y
    X, y = make_moons(2000, noise=0.25, random_state=0)
    yield "moons", "MLPClassifier", X, y
    X, y = make_regression(5000, 20, n_informative=10, n_targets=2, noise=10.0, random_state=0)
    yield "make_regression", "MLPRegressor", X, y
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", "MLPRegressor", X, y


def fit_timed(cls, params, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        est = cls(**params).fit(X, y)
        return est, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default=None, help="gradstep's dtype extra (default: the data's, float64)")
    args = ap.parse_args()
    solvers = {"adam": dict(max_iter=200), "sgd": dict(max_iter=200, learning_rate_init=0.01),
               "lbfgs": dict(max_iter=200)}
    print("| data | solver | estimator | score | n_iter_ | loss_ | max rel. diff. of loss_curve_ | fit s (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, X, y in datasets():
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
        sx = StandardScaler().fit(X_tr)
        X_tr, X_te = sx.transform(X_tr), sx.transform(X_te)
        if kind == "MLPRegressor":
            sy = StandardScaler().fit(y_tr.reshape(len(y_tr), -1))
            y_tr = sy.transform(y_tr.reshape(len(y_tr), -1)).squeeze()
            y_te = sy.transform(y_te.reshape(len(y_te), -1)).squeeze()
        for solver, extra in solvers.items():
            params = dict(hidden_layer_sizes=(100,), solver=solver, random_state=0, **extra)
            times = {"sklearn": [], "gradstep": []}
            for _ in range(args.repeats):
                ref, t_ref = fit_timed(getattr(skn, kind), params, X_tr, y_tr)
                ours, t_ours = fit_timed(getattr(gsk, kind), {**params, "dtype": args.dtype}, X_tr, y_tr)
                times["sklearn"].append(t_ref)
                times["gradstep"].append(t_ours)
            curve = "-"
            if hasattr(ref, "loss_curve_"):
                n = min(len(ref.loss_curve_), len(ours.loss_curve_))
                a, b = np.array(ours.loss_curve_[:n]), np.array(ref.loss_curve_[:n])
                curve = f"{np.max(np.abs(a - b) / np.abs(b)):.1e}"
            for label, est in (("sklearn", ref), ("gradstep", ours)):
                t = statistics.median(times[label])
                speed = "" if label == "sklearn" else f" ({statistics.median(times['sklearn']) / t:.1f}x)"
                print(f"| {name} | {solver} | {label} | {est.score(X_te, y_te):.4f} | {est.n_iter_} | "
                      f"{est.loss_:.6g} | {curve if label == 'gradstep' else ''} | {t:.3f}{speed} |", flush=True)


if __name__ == "__main__":
    main()
