"""gs.search: distributions, random_search, coarse_to_fine (scoring, seeding, parallel trials)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import gradstep as gs
from gradstep import search
from gradstep.search import Choice, IntUniform, LogUniform, Uniform


@pytest.fixture(scope="module")
def digits():
    X, y = gs.datasets.load_digits()
    return X[:360] / 16.0, y[:360]


def build_classifier(params):
    units = params.get("units", 16)
    model = gs.Sequential([gs.Dense(64, units), gs.ReLU(), gs.Dense(units, 10)])
    opt = gs.SGD(lr=params["lr"]) if params.get("opt") == "sgd" else gs.Adam(lr=params["lr"])
    return model.compile(loss="softmax_crossentropy", optimizer=opt, metrics=["accuracy"])


def build_regressor(params):
    model = gs.Sequential([gs.Dense(3, 8), gs.Tanh(), gs.Dense(8, 1)])
    return model.compile(loss="mse", optimizer=gs.Adam(lr=params["lr"]), metrics=["mae"])


def regression_data(n=120):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def summary(result):
    return [(t.index, t.stage, t.params, t.score, t.fold_scores, t.status, t.seed,
             [h.history for h in t.histories]) for t in result.trials]


# ---- distributions ------------------------------------------------------------------------------
def test_loguniform_is_uniform_in_log_space():
    d = LogUniform(1e-4, 1.0)
    rng = np.random.default_rng(0)
    v = np.array([d.sample(rng) for _ in range(4000)])
    assert v.min() >= 1e-4 and v.max() <= 1.0
    decades = np.histogram(np.log10(v), bins=[-4, -3, -2, -1, 0])[0] / v.size
    np.testing.assert_allclose(decades, 0.25, atol=0.03)  # uniform would put 97 % below 1e-1 instead
    assert isinstance(d.sample(rng), float)


def test_uniform_intuniform_choice_sample_their_ranges():
    rng = np.random.default_rng(1)
    u = np.array([Uniform(-1.0, 3.0).sample(rng) for _ in range(2000)])
    assert u.min() >= -1.0 and u.max() <= 3.0 and abs(u.mean() - 1.0) < 0.1
    ints = [IntUniform(2, 5).sample(rng) for _ in range(400)]
    assert set(ints) == {2, 3, 4, 5}  # both ends included
    assert all(type(i) is int for i in ints)
    picks = [Choice(["relu", "tanh", (64, 32)]).sample(rng) for _ in range(300)]
    assert set(map(str, picks)) == {"relu", "tanh", "(64, 32)"}


def test_distribution_reprs_and_equality():
    assert repr(LogUniform(1e-4, 0.1)) == "LogUniform(0.0001, 0.1)"
    assert repr(Uniform(0, 1)) == "Uniform(0, 1)"
    assert repr(IntUniform(1, 4)) == "IntUniform(1, 4)"
    assert repr(Choice([16, "a"])) == "Choice([16, 'a'])"
    assert LogUniform(1e-3, 1) == LogUniform(0.001, 1.0) and LogUniform(1e-3, 1) != Uniform(1e-3, 1)


@pytest.mark.parametrize("make, exc, word", [
    (lambda: LogUniform(0.0, 1.0), ValueError, "low"),
    (lambda: LogUniform(-1.0, 1.0), ValueError, "low"),
    (lambda: LogUniform(1.0, 1.0), ValueError, "high"),
    (lambda: LogUniform(1e-3, float("inf")), ValueError, "high"),
    (lambda: LogUniform("a", 1.0), TypeError, "low"),
    (lambda: Uniform(2.0, 1.0), ValueError, "low"),
    (lambda: Uniform(float("nan"), 1.0), ValueError, "low"),
    (lambda: IntUniform(3, 3), ValueError, "low"),
    (lambda: IntUniform(1.5, 3), TypeError, "low"),
    (lambda: Choice([]), ValueError, "values"),
    (lambda: Choice("abc"), TypeError, "values"),
    (lambda: Choice(5), TypeError, "values"),
])
def test_distribution_validation(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_loguniform_narrow_is_in_log_space_widened_and_clipped():
    d = LogUniform(1e-5, 1.0)  # 5 decades
    n = d.narrow([1e-3, 1e-2, 3e-3])
    # span 1 decade, widened by max(0.25 * 1, 0.1 * 5) = 0.5 decade on each side
    assert n.low == pytest.approx(10 ** -3.5) and n.high == pytest.approx(10 ** -1.5)
    edge = d.narrow([0.5, 1.0])  # clipped to the old range
    assert edge.high == 1.0 and edge.low == pytest.approx(0.5 * 10 ** -0.5)
    one = d.narrow([1e-2])  # agreeing trials still leave a range to search
    assert one.low == pytest.approx(10 ** -2.5) and one.high == pytest.approx(10 ** -1.5)


def test_uniform_intuniform_choice_narrow():
    n = Uniform(0.0, 10.0).narrow([2.0, 4.0])
    assert (n.low, n.high) == pytest.approx((1.0, 5.0))  # pad = max(0.25 * 2, 0.1 * 10)
    i = IntUniform(1, 100).narrow([40, 50])
    assert isinstance(i, IntUniform) and (i.low, i.high) == (30, 60)  # pad 9.9, rounded outwards
    assert IntUniform(1, 4).narrow([4, 4]) == IntUniform(3, 4)
    assert IntUniform(0, 1).narrow([1]) == IntUniform(0, 1)
    assert IntUniform(0, 2).narrow([2]) == IntUniform(1, 2)  # [1.8, 2] rounded outwards
    c = Choice(["relu", "tanh", "elu"]).narrow(["elu", "relu", "elu"])
    assert c == Choice(["relu", "elu"])  # the options seen, in their original order
    with pytest.raises(ValueError, match="values"):
        Uniform(0, 1).narrow([])
    with pytest.raises(ValueError, match="options"):
        Choice([1, 2]).narrow([3])


# ---- random_search ------------------------------------------------------------------------------
def test_random_search_same_seed_same_trials_and_scores(digits):
    X, y = digits
    space = {"lr": LogUniform(1e-3, 1e-1), "units": Choice([8, 16])}
    a = search.random_search(build_classifier, space, X, y, trials=4, epochs=2, seed=3)
    b = search.random_search(build_classifier, space, X, y, trials=4, epochs=2, seed=3)
    c = search.random_search(build_classifier, space, X, y, trials=4, epochs=2, seed=4)
    assert summary(a) == summary(b)
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    assert len(a.trials) == 4 and {t.index for t in a.trials} == {0, 1, 2, 3}
    scores = [t.score for t in a.trials]
    assert scores == sorted(scores, reverse=True)
    assert a.best_score == scores[0] and a.best_params == a.trials[0].params
    assert a.metric == "val_accuracy"
    for t in a.trials:
        assert 1e-3 <= t.params["lr"] <= 1e-1 and t.params["units"] in (8, 16)
        assert t.status == "ok" and t.epochs == 2 and len(t.history.history["val_accuracy"]) == 2
        assert t.score == t.history.history["val_accuracy"][-1]  # the last epoch's val accuracy


def test_trials_do_not_depend_on_their_order_or_count(digits):
    # a trial's params and seeds come from (seed, stage, index) alone: 2 trials = the first 2 of 4
    X, y = digits
    space = {"lr": LogUniform(1e-3, 1e-1)}
    few = search.random_search(build_classifier, space, X, y, trials=2, epochs=1, seed=9, refit=False)
    many = search.random_search(build_classifier, space, X, y, trials=4, epochs=1, seed=9, refit=False)
    first = {t.index: (t.params, t.score) for t in many.trials if t.index < 2}
    assert {t.index: (t.params, t.score) for t in few.trials} == first


def test_parallel_trials_match_serial(digits):
    X, y = digits
    space = {"lr": LogUniform(1e-3, 1e-1), "units": Choice([8, 16])}
    one = search.random_search(build_classifier, space, X, y, trials=4, epochs=1, seed=5, cv=2)
    two = search.random_search(build_classifier, space, X, y, trials=4, epochs=1, seed=5, cv=2, n_jobs=2)
    assert summary(one) == summary(two)
    np.testing.assert_array_equal(one.best_model.predict(X), two.best_model.predict(X))


def test_unpickled_arrays_are_accepted(digits):
    # unpickled arrays (joblib workers, memmaps) carry non-canonical dtype objects, which the C++
    # checks reject: the search copies them once
    X, y = digits
    Xp, yp = pickle.loads(pickle.dumps((X, y)))
    assert Xp.dtype is not X.dtype and yp.dtype is not y.dtype
    space = {"lr": LogUniform(1e-3, 1e-1)}
    a = search.random_search(build_classifier, space, X, y, trials=2, epochs=1, seed=0, cv=2)
    b = search.random_search(build_classifier, space, Xp, yp, trials=2, epochs=1, seed=0, cv=2)
    assert summary(a) == summary(b)


def test_seed_none_follows_the_library_seed_and_library_generator_is_restored(digits):
    X, y = digits
    space = {"lr": LogUniform(1e-3, 1e-1)}
    gs.seed(11)
    a = search.random_search(build_classifier, space, X, y, trials=2, epochs=1, refit=False)
    after_a = gs._random.generator().integers(1 << 30)
    gs.seed(11)
    b = search.random_search(build_classifier, space, X, y, trials=2, epochs=1, refit=False)
    assert summary(a) == summary(b)
    gs.seed(11)
    gs._random.draw_seed(gs._random.generator())  # the one draw seed=None makes
    assert gs._random.generator().integers(1 << 30) == after_a  # build() ran on its own seeding


def test_validation_data_scores_on_it(digits):
    X, y = digits
    Xv, yv = gs.datasets.load_digits()
    Xv, yv = Xv[1500:] / 16.0, yv[1500:]
    res = search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=2, epochs=2,
                               validation_data=(Xv, yv), seed=0)
    for t in res.trials:
        assert t.history.params["samples"] == len(X)  # trained on all of X
        assert len(t.fold_scores) == 1
    # the best model is the best trial retrained the same way: same data, same seeds, same score
    assert res.best_model.evaluate(Xv, yv)["accuracy"] == res.best_score
    assert res.best_history.history == res.best_trial.history.history


def test_validation_split_is_held_out_and_refit_uses_all_rows(digits):
    X, y = digits
    res = search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=2, epochs=1,
                               validation_split=0.25, seed=0)
    assert res.trials[0].history.params["samples"] == len(X) - 90
    assert res.best_history.params["samples"] == len(X) and res.best_model.epochs_done == 1
    assert "val_loss" not in res.best_history.history
    assert search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=1, epochs=1,
                                seed=0, refit=False).best_model is None


def test_cv_stratified_folds_for_labels_and_kfold_for_targets(digits):
    X, y = digits
    seen = []

    def record(model, X_val, y_val):
        seen.append(np.bincount(y_val, minlength=10))
        return float(model.evaluate(X_val, y_val)["accuracy"])

    res = search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=1, epochs=1,
                               cv=3, seed=0, metric=record)
    t = res.trials[0]
    assert len(t.fold_scores) == 3 and len(t.histories) == 3
    assert t.score == pytest.approx(np.mean(t.fold_scores))
    assert sum(len(h.history["loss"]) for h in t.histories) == 3
    counts = np.array(seen)
    full = np.bincount(y, minlength=10)
    assert np.all(counts.sum(axis=0) == full)  # the folds partition the rows
    assert np.all(np.abs(counts - full / 3) <= 1)  # stratified: each class split evenly
    assert res.metric == "record"

    Xr, yr = regression_data()
    sizes = []

    def record_reg(model, X_val, y_val):
        sizes.append(len(y_val))
        return 0.0

    search.random_search(build_regressor, {"lr": LogUniform(1e-3, 1e-1)}, Xr, yr, trials=1, epochs=1, cv=4,
                         seed=0, metric=record_reg, refit=False)
    assert sizes == [30, 30, 30, 30]


def test_regression_scores_minus_val_loss_and_metric_override():
    X, y = regression_data()
    res = search.random_search(build_regressor, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=3, epochs=3, seed=0)
    assert res.metric == "-val_loss"
    for t in res.trials:
        assert t.score == -t.history.history["val_loss"][-1] and t.score < 0
    mae = search.random_search(build_regressor, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=3, epochs=3, seed=0,
                               metric="mae")
    assert mae.metric == "-val_mae"
    for t in mae.trials:
        assert t.score == -t.history.history["val_mae"][-1]


def test_diverging_trials_score_minus_inf_and_are_reported(digits):
    X, y = digits
    space = {"lr": Choice([0.05, 1e12]), "opt": "sgd"}  # a fixed value rides along
    res = search.random_search(build_classifier, space, X, y, trials=6, epochs=2, seed=1)
    bad = [t for t in res.trials if t.params["lr"] == 1e12]
    good = [t for t in res.trials if t.params["lr"] == 0.05]
    assert bad and good
    for t in bad:
        assert t.score == -math.inf and t.status == "nan" and "loss became" in t.message
    assert res.trials[:len(good)] == sorted(good, key=lambda t: (-t.score, t.index))  # diverged ones last
    assert all(t.params["opt"] == "sgd" for t in res.trials)
    assert "nan" in res.table() and "diverged" in res.table()  # status, and the score column
    allbad = search.random_search(build_classifier, {"lr": Choice([1e12]), "opt": "sgd"}, X, y, trials=2,
                                  epochs=1, seed=1)
    assert allbad.best_score == -math.inf and allbad.best_model is None


def test_table_and_reprs(digits):
    X, y = digits
    res = search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1), "units": Choice([8, 16])}, X, y,
                               trials=3, epochs=1, seed=0, refit=False)
    lines = res.table().splitlines()
    assert lines[0].split() == ["rank", "trial", "lr", "units", "val_accuracy", "epochs", "status"]
    rows = [line.split() for line in lines[2:]]
    assert [r[1] for r in rows] == [str(t.index + 1) for t in res.trials]  # numbered from 1, as the progress
    assert [float(r[4]) for r in rows] == pytest.approx([t.score for t in res.trials], abs=5e-5)
    short = res.table(max_rows=1).splitlines()
    assert len(short) == 4 and short[-1] == "... 2 more trials"
    assert repr(res).startswith("SearchResult(trials=3, metric='val_accuracy', best_score=")
    assert repr(res.trials[0]).startswith(f"Trial(index={res.trials[0].index}, stage=0, score=")
    assert res.trials[0].as_dict()["params"] == res.trials[0].params


def test_verbose_prints_a_line_per_trial(digits, capsys):
    X, y = digits
    search.random_search(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=2, epochs=1, seed=0,
                         verbose=1, refit=False)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("trial 1/2: lr=") and "-> val_accuracy " in out[0]


def test_minimized_metric_is_shown_as_itself(capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = X @ np.array([1.0, 2.0, -1.0])

    def build(p):
        m = gs.Sequential([gs.Dense(3, 8), gs.ReLU(), gs.Dense(8, 1)], seed=0)
        return m.compile(gs.MSE(), gs.Adam(lr=p["lr"]))

    res = search.random_search(build, {"lr": LogUniform(1e-3, 1e-1)}, X, y, trials=3, epochs=2, seed=0,
                               verbose=1, refit=False)
    assert res.metric == "-val_loss" and all(t.score < 0 for t in res.trials)  # maximized internally
    lines = res.table().splitlines()
    assert lines[0].split()[3] == "val_loss"
    shown = [float(line.split()[3]) for line in lines[2:]]
    assert shown == pytest.approx([-t.score for t in res.trials], abs=5e-5) and shown == sorted(shown)
    assert res.score_text(res.best_trial) == f"val_loss {-res.best_score:.4f}"
    progress = capsys.readouterr().out
    assert "-> val_loss " in progress and "score" not in progress


# ---- coarse_to_fine -----------------------------------------------------------------------------
def test_coarse_to_fine_narrows_and_keeps_every_stage(digits):
    X, y = digits
    space = {"lr": LogUniform(1e-4, 1.0), "units": Choice([4, 8, 16]), "opt": "adam"}
    res = search.coarse_to_fine(build_classifier, space, X, y, stages=[(6, 1), (3, 2)], top=2, seed=2)
    assert len(res.trials) == 9
    first = [t for t in res.trials if t.stage == 0]
    second = [t for t in res.trials if t.stage == 1]
    assert len(first) == 6 and len(second) == 3
    assert {t.epochs for t in first} == {1} and {t.epochs for t in second} == {2}
    assert sorted(t.index for t in second) == [6, 7, 8]
    assert res.spaces[0] == space
    top = sorted(first, key=lambda t: (-t.score, t.index))[:2]
    narrowed = res.spaces[1]
    assert narrowed["lr"] == space["lr"].narrow([t.params["lr"] for t in top])
    assert narrowed["units"] == space["units"].narrow([t.params["units"] for t in top])
    assert narrowed["opt"] == "adam"
    assert narrowed["lr"].high / narrowed["lr"].low < 1e4  # narrower than the 4 decades it started with
    for t in second:
        assert narrowed["lr"].low <= t.params["lr"] <= narrowed["lr"].high
        assert t.params["units"] in narrowed["units"].values
    again = search.coarse_to_fine(build_classifier, space, X, y, stages=[(6, 1), (3, 2)], top=2, seed=2)
    assert summary(again) == summary(res)
    assert "stage" in res.table().splitlines()[0]


def test_coarse_to_fine_keeps_the_space_when_a_stage_all_diverges(digits):
    X, y = digits
    space = {"lr": Choice([1e12]), "opt": "sgd"}
    res = search.coarse_to_fine(build_classifier, space, X, y, stages=[(2, 1), (1, 1)], seed=0)
    assert res.spaces[1] == res.spaces[0] and all(t.status == "nan" for t in res.trials)


# ---- errors -------------------------------------------------------------------------------------
def _not_compiled(params):
    return gs.Sequential([gs.Dense(64, 10)])


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(build=5), TypeError, "build"),
    (dict(build=lambda p: "model"), TypeError, "build"),
    (dict(build=_not_compiled), ValueError, "compile"),
    (dict(space=[1]), TypeError, "space"),
    (dict(space={}), ValueError, "space"),
    (dict(space={1: LogUniform(1e-3, 1)}), TypeError, "space"),
    (dict(trials=0), ValueError, "trials"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(cv=1), ValueError, "cv"),
    (dict(cv=1000), ValueError, "cv"),
    (dict(cv=2, validation_data=(0, 0)), ValueError, "cv or validation_data"),
    (dict(validation_data=5), TypeError, "validation_data"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(n_jobs=0), ValueError, "n_jobs"),
    (dict(n_jobs=1.5), ValueError, "n_jobs"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(metric="f1"), ValueError, "metric"),
    (dict(metric="mae"), ValueError, "metric"),  # the model was not compiled with it
    (dict(X=np.zeros(10)), ValueError, "X"),
    (dict(y=np.zeros(5)), ValueError, "y"),
    (dict(X=np.array([["a"] * 64] * 20)), TypeError, "X"),
])
def test_random_search_errors(digits, kwargs, exc, word):
    X, y = digits
    args = dict(build=build_classifier, space={"lr": LogUniform(1e-3, 1e-1)}, X=X, y=y, trials=1, epochs=1)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        search.random_search(**args)


@pytest.mark.parametrize("stages, word", [([], "stages"), ([(2, 1, 3)], "stages"), ([(0, 1)], "trials"),
                                          ([(2, 0)], "epochs"), ("20x2", "stages")])
def test_coarse_to_fine_stage_errors(digits, stages, word):
    X, y = digits
    with pytest.raises((ValueError, TypeError), match=word):
        search.coarse_to_fine(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, stages=stages)
    with pytest.raises(ValueError, match="top"):
        search.coarse_to_fine(build_classifier, {"lr": LogUniform(1e-3, 1e-1)}, X, y, top=0)
