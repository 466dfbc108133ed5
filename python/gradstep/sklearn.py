"""scikit-learn estimators backed by gradstep: `MLPClassifier` and `MLPRegressor`.

    from gradstep.sklearn import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), epochs=20))
    clf.fit(X_train, y_train).score(X_test, y_test)

They follow scikit-learn's estimator API (they pass `sklearn.utils.estimator_checks.check_estimator`):
constructor arguments are stored unchanged and checked in `fit`; `get_params`/`set_params`,
`clone`, `Pipeline`, `cross_val_score`, `GridSearchCV`/`RandomizedSearchCV` work. After fitting:
`model_` (the trained `gs.Sequential`), `history_` (its `History`), `loss_curve_`, `loss_`,
`n_iter_` (epochs trained), `n_features_in_` (and `feature_names_in_` for DataFrames); the
classifier also has `classes_`, the regressor `n_outputs_`.

The network: for each size in `hidden_layer_sizes`, Dense (He init for ReLU-like activations,
Xavier otherwise, with `l2`) -> BatchNorm (when `batch_norm`) -> activation -> Dropout (when
`dropout` > 0); then a Dense output layer. The classifier has one output per class and trains
with softmax cross-entropy on the logits; `predict_proba` is their softmax (gradstep's Softmax
layer), `predict` its argmax. The regressor has one output per target and trains with MSE.
`dtype` is the dtype the network trains in; predictions are computed in float64 from the trained
weights whatever it is (so that a row's prediction does not depend on the other rows passed with
it, which float32 matrix products do not promise), and returned as float64.

`random_state` (None, an int or a numpy RandomState, as in scikit-learn) fixes the weights and the
shuffling: the same int gives the same model. Fitted estimators pickle (the network travels as a
gradstep model file in memory, not as a pickle of its internals).
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .search import _library_seeded

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU",
               "elu": "ELU", "identity": "Identity"}
_HE_ACTIVATIONS = ("relu", "leaky_relu", "elu")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


class _MLPBase(BaseEstimator):
    """Shared by MLPClassifier and MLPRegressor: hyperparameters and network construction
    (the fitted network pickles itself, as its model file)."""

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", optimizer: str = "adam",
                 lr: float = 1e-3, batch_size: int = 32, epochs: int = 20, l2: float = 0.0,
                 dropout: float = 0.0, batch_norm: bool = False, shuffle: bool = True,
                 random_state: Any = None, verbose: int = 0, dtype: str = "float32") -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype

    # ---- hyperparameters ----------------------------------------------------------------------
    def _check_params(self) -> dict[str, Any]:
        """The hyperparameters, checked (TypeError/ValueError naming the estimator and argument)."""
        from . import _checks

        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"{name}: hidden_layer_sizes must be a tuple of positive ints like (100,), "
                            f"got {self.hidden_layer_sizes!r}")
        sizes = tuple(_checks.check_int(s, f"{name}: hidden_layer_sizes entries", 1) for s in sizes)
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"{name}: activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"{name}: optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        for flag in ("batch_norm", "shuffle"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{name}: {flag} must be a bool, got {getattr(self, flag)!r}")
        return {
            "sizes": sizes,
            "lr": _checks.check_float(self.lr, f"{name}: lr", 0.0, min_inclusive=False),
            "batch_size": _checks.check_int(self.batch_size, f"{name}: batch_size", 1),
            "epochs": _checks.check_int(self.epochs, f"{name}: epochs", 1),
            "l2": _checks.check_float(self.l2, f"{name}: l2", 0.0),
            "dropout": _checks.check_float(self.dropout, f"{name}: dropout", 0.0, 1.0, max_inclusive=False),
            "verbose": _checks.check_int(self.verbose, f"{name}: verbose", 0),
            "dtype": _checks.as_dtype(self.dtype, f"{name}: dtype"),
        }

    def _build(self, n_features: int, n_outputs: int, hp: dict[str, Any], loss: Any, metrics: list[str]) -> Any:
        import gradstep as gs

        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        act = getattr(gs, ACTIVATIONS[self.activation])
        init = "he" if self.activation in _HE_ACTIVATIONS else "xavier"
        layers: list = []
        width = n_features
        for size in hp["sizes"]:
            layers.append(gs.Dense(width, size, init=init, l2=hp["l2"], dtype=hp["dtype"],
                                   seed=int(rng.integers(2**62))))
            if self.batch_norm:
                layers.append(gs.BatchNorm(size, dtype=hp["dtype"]))
            layers.append(act())
            if hp["dropout"] > 0.0:
                layers.append(gs.Dropout(hp["dropout"]))
            width = size
        layers.append(gs.Dense(width, n_outputs, init="xavier", l2=hp["l2"], dtype=hp["dtype"],
                               seed=int(rng.integers(2**62))))
        # The model's seed is also fit's default seed: shuffling and dropout follow random_state.
        model = gs.Sequential(layers, dtype=hp["dtype"], seed=seed)
        model.compile(loss=loss, optimizer=gs.optim.get(self.optimizer.lower(), lr=hp["lr"]), metrics=metrics)
        return model

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int, hp: dict[str, Any]) -> None:
        history = self.model_.fit(X, y, epochs=epochs,
                                  batch_size=self._batch_size(len(X), hp["batch_size"]),
                                  shuffle=self.shuffle, verbose=hp["verbose"])
        if getattr(self, "history_", None) is None:
            self.history_ = history
        else:  # partial_fit: one History across calls
            for i, epoch in enumerate(history.epoch):
                self.history_.append(epoch, {k: v[i] for k, v in history.history.items()})
        self.loss_curve_ = list(self.history_.history["loss"])
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = len(self.loss_curve_)

    def _batch_size(self, n: int, batch_size: int) -> int:
        """BatchNorm cannot train on a last mini-batch of one row: grow the batch size by the
        fewest rows that avoid one (n = 33 with batch_size 16 trains with 17), so that any fold
        of a cross-validation fits."""
        if self.batch_norm and n > 1:
            while batch_size < n and n % batch_size == 1:
                batch_size += 1
        return batch_size

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs on X, computed in float64 (see `_float64_network`)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype="float64")
        return self._float64_network().predict(X)

    def _float64_network(self) -> Any:
        """`model_` itself when it is float64, else a float64 copy of it (same layers, the trained
        weights and buffers cast exactly). A float32 matrix product can round a row's outputs
        differently depending on the row's position in the batch (the BLAS kernels treat edge
        tiles differently), so float32 predictions of one row could change in the last bit with
        the other rows passed along; in float64 that difference is ~1e-16 and predictions are
        invariant to the order and the subset of rows, as scikit-learn expects. Built per call
        (about a millisecond), so that predicting never changes the estimator's state."""
        import gradstep as gs

        from .layers import LAYER_REGISTRY

        model = self.model_
        if model.dtype == np.float64:
            return model
        with _library_seeded(0):  # the layers' initial draws are overwritten: leave gs.seed's stream alone
            layers = [LAYER_REGISTRY[spec["class"]](**spec["config"]) for spec in model.get_config()["layers"]]
        net = gs.Sequential(layers, dtype="float64")
        net.load_state_dict(model.state_dict())
        return net


class MLPClassifier(ClassifierMixin, _MLPBase):
    """A multi-layer perceptron classifier trained with gradstep (softmax cross-entropy).

    Parameters: `hidden_layer_sizes` (tuple of widths, default (100,)), `activation` ("relu",
    "tanh", "sigmoid", "leaky_relu", "elu", "identity"), `optimizer` ("adam", "adamw", "sgd",
    "rmsprop"), `lr`, `batch_size`, `epochs` (full passes over the data per `fit`), `l2` (weight
    penalty (l2/2)·‖W‖² on every Dense layer), `dropout` (rate after each hidden activation),
    `batch_norm` (the batch size then grows by a row or two when the last mini-batch would hold a
    single row, which BatchNorm cannot train on), `shuffle`, `random_state`, `verbose` (1: a
    progress bar per epoch), `dtype` ("float32" or "float64").

    Labels may be any values scikit-learn accepts (ints, strings, ...); `classes_` holds them
    sorted. `partial_fit(X, y, classes=)` trains one epoch; the first call needs `classes`.
    """

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        """Train a new network for `epochs` epochs on X, y. Returns self."""
        hp = self._check_params()
        X, y = validate_data(self, X, y, dtype=hp["dtype"].name)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__}: y holds only one class ({classes[0]!r}); "
                             "a classifier needs at least 2 classes")
        self.classes_ = classes
        self.model_ = self._new_model(X.shape[1], hp)
        self.history_ = None
        self._train(X, y_enc.astype(np.int64), hp["epochs"], hp)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "MLPClassifier":
        """Train one epoch on X, y, starting from the current network (a new one on the first
        call, which must list every class in `classes`). Returns self."""
        hp = self._check_params()
        name = type(self).__name__
        first = not hasattr(self, "model_")
        if first:
            if classes is None:
                raise ValueError(f"{name}: classes must be passed on the first call to partial_fit "
                                 "(every label the model will see)")
            all_classes = np.unique(np.asarray(classes))
            check_classification_targets(all_classes)
            if len(all_classes) < 2:
                raise ValueError(f"{name}: classes must hold at least 2 classes, got {all_classes!r}")
        X, y = validate_data(self, X, y, reset=first, dtype=hp["dtype"].name)
        check_classification_targets(y)
        if first:
            self.classes_ = all_classes
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"{name}: classes={np.unique(np.asarray(classes))!r} differs from the classes "
                             f"of the first partial_fit call {self.classes_!r}")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"{name}: y holds labels {unknown!r} that are not in classes {self.classes_!r}")
        y_enc = np.searchsorted(self.classes_, y).astype(np.int64)
        if first:
            self.model_ = self._new_model(X.shape[1], hp)
            self.history_ = None
        self._train(X, y_enc, 1, hp)
        return self

    def _new_model(self, n_features: int, hp: dict[str, Any]) -> Any:
        import gradstep as gs

        return self._build(n_features, len(self.classes_), hp, gs.SoftmaxCrossEntropy(), ["accuracy"])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of `classes_`: the
        softmax of the network's logits."""
        import gradstep as gs

        return gs.Softmax().forward(self._outputs(X), training=False)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (labels from `classes_`)."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _MLPBase):
    """A multi-layer perceptron regressor trained with gradstep (mean squared error).

    Parameters as MLPClassifier's. `y` may be 1-D (predictions are then 1-D) or 2-D (one column
    per target; predictions 2-D). Targets are used as they are: standardize large ones (e.g.
    with `TransformedTargetRegressor`) for the network to train well.
    `partial_fit(X, y)` trains one epoch.
    """

    def fit(self, X: Any, y: Any) -> "MLPRegressor":
        """Train a new network for `epochs` epochs on X, y. Returns self."""
        hp = self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=hp["dtype"].name)
        self._set_outputs(y)
        self.model_ = self._new_model(X.shape[1], hp)
        self.history_ = None
        self._train(X, self._targets(y, hp), hp["epochs"], hp)
        return self

    def partial_fit(self, X: Any, y: Any) -> "MLPRegressor":
        """Train one epoch on X, y from the current network (a new one on the first call)."""
        hp = self._check_params()
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=first, multi_output=True, y_numeric=True,
                             dtype=hp["dtype"].name)
        if first:
            self._set_outputs(y)
            self.model_ = self._new_model(X.shape[1], hp)
            self.history_ = None
        else:
            n_out = 1 if y.ndim == 1 else y.shape[1]
            if n_out != self.n_outputs_:
                raise ValueError(f"{type(self).__name__}: y must have {self.n_outputs_} target column(s), "
                                 f"as in the first partial_fit call, got {n_out}")
        self._train(X, self._targets(y, hp), 1, hp)
        return self

    def _set_outputs(self, y: np.ndarray) -> None:
        self._y_1d = y.ndim == 1
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]

    def _targets(self, y: np.ndarray, hp: dict[str, Any]) -> np.ndarray:
        return np.ascontiguousarray(y.reshape(len(y), -1), dtype=hp["dtype"])

    def _new_model(self, n_features: int, hp: dict[str, Any]) -> Any:
        import gradstep as gs

        return self._build(n_features, self.n_outputs_, hp, gs.MSE(), [])

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: (n_samples,) when fit on 1-D y, else (n_samples, n_targets)."""
        out = self._outputs(X)
        return out.reshape(-1) if self._y_1d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
