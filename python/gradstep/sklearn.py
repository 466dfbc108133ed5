"""Drop-in replacements for scikit-learn's `MLPClassifier` and `MLPRegressor`, trained by gradstep.

    from gradstep.sklearn import MLPClassifier        # instead of sklearn.neural_network
    clf = MLPClassifier(hidden_layer_sizes=(64,), solver="adam", random_state=0).fit(X, y)

They are subclasses of scikit-learn's estimators: the constructor parameters and their defaults,
the input checks, the label handling (any label type, binary, multi-class and multi-label
indicator targets), the initialization (Glorot uniform from `random_state`), the shuffling, the
validation split of `early_stopping`, the stopping rules, `warm_start`, `partial_fit`,
`sample_weight`, `ConvergenceWarning`, `verbose` output and every fitted attribute (`coefs_`,
`intercepts_`, `loss_`, `loss_curve_`, `best_loss_`, `validation_scores_`,
`best_validation_score_`, `n_iter_`, `t_`, `n_layers_`, `n_outputs_`, `out_activation_`,
`classes_`, `n_features_in_`, `feature_names_in_`) are scikit-learn's own. What changes is the
training, which runs on a `gs.Sequential` (kept as `model_`) over one flat parameter buffer:

- `solver="sgd"` / `"adam"`: each mini-batch is one C++ call (forward, loss, backward and the
  update). scikit-learn's objective and update rules are reproduced exactly by scaling: gradstep's
  losses are means over every output element (MSE without the 1/2), so with `c` the ratio of
  gradstep's gradient to scikit-learn's (1 for softmax and binary outputs, 1/k for k logistic
  outputs, 2/k for k regression targets) the layers get `l2 = c·alpha/batch_rows`, SGD gets
  `lr/c` and Adam `epsilon·c`. SGD's momentum is PyTorch's form, equal to scikit-learn's at a
  constant rate; when the rate changes (`invscaling`, `adaptive`) the momentum buffer is rescaled
  by old/new rate so that the two stay equal. scikit-learn adds Adam's `epsilon` to sqrt(v)
  before the bias correction, PyTorch/gradstep after it: gradstep's eps is set before each step
  to `c·epsilon/sqrt(1 - beta_2^t)`, which is scikit-learn's update exactly.
- `solver="lbfgs"`: scipy's L-BFGS-B (the same options as scikit-learn) on the model's flat
  parameter vector, the loss and its gradient computed by the network's C++ layer kernels.
- `sample_weight` and `loss="poisson"` train layer by layer (still the C++ kernels) with
  scikit-learn's weighted loss gradient.

Predictions are scikit-learn's forward pass over `coefs_`/`intercepts_` (float64 for float64
input, so a row's prediction does not depend on the other rows). gradstep's extras, off by
default: `dropout` (a rate after each hidden activation; stochastic solvers only), `batch_norm`
(BatchNorm before each hidden activation; predictions then run through `model_`) and `dtype`
("float32" or "float64" for the training arithmetic; None, the default, trains in the input's
dtype as scikit-learn does; "float32" is faster on float64 data, the fitted `coefs_` keep the
input's dtype).
"""
from __future__ import annotations

import warnings
from itertools import pairwise
from numbers import Real
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import neural_network as _sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network._base import ACTIVATIONS, LOSS_FUNCTIONS
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils import _safe_indexing, gen_batches, shuffle
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import validate_data

__all__ = ["MLPClassifier", "MLPRegressor", "ConvergenceWarning"]

# scikit-learn's activation names -> gradstep's layers (by class name in gs)
_HIDDEN = {"identity": "Identity", "logistic": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}

_EXTRA_CONSTRAINTS = {
    "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
    "batch_norm": ["boolean"],
    "dtype": [None, StrOptions({"float32", "float64"})],
}


class _GradstepMLP:
    """Overrides the training of scikit-learn's BaseMultilayerPerceptron (its `_fit_stochastic`
    and `_fit_lbfgs`, called by its `_fit`) with gradstep's network; everything else is inherited."""

    # ---- the network ----------------------------------------------------------------------------
    def _gradient_scale(self) -> float:
        """c: gradstep's loss gradient over scikit-learn's for the same outputs (see module doc)."""
        k = self.n_outputs_
        return {"softmax": 1.0, "logistic": 1.0 / k, "identity": 2.0 / k}.get(self.out_activation_, 1.0)

    def _loss_scale(self) -> float:
        """gradstep's loss value over scikit-learn's (without the L2 terms)."""
        return {"softmax": 1.0, "logistic": 1.0 / self.n_outputs_, "identity": 2.0}.get(self.out_activation_, 1.0)

    def _fused_loss(self) -> Any:
        """gradstep's loss for the fused step, or None when it has none (Poisson)."""
        import gradstep as gs

        return {"softmax": gs.SoftmaxCrossEntropy(), "logistic": gs.BinaryCrossEntropy(from_logits=True),
                "identity": gs.MSE()}.get(self.out_activation_)

    def _dtype(self, X: Any) -> np.dtype:
        return np.dtype(self.dtype) if self.dtype is not None else np.dtype(X.dtype)

    def _new_network(self, layer_units: list[int], dtype: np.dtype) -> Any:
        """Dense layers of `layer_units` with the hidden activation between them (and the
        extras), the loss of the output activation, no optimizer yet."""
        import gradstep as gs

        layers: list = []
        last = len(layer_units) - 2
        seed = int(self._random_state.randint(0, 2**31 - 1)) if self.dropout > 0 else 0
        for i, (fan_in, fan_out) in enumerate(pairwise(layer_units)):
            layers.append(gs.Dense(fan_in, fan_out, init="zeros", dtype=dtype))
            if i < last:
                if self.batch_norm:
                    layers.append(gs.BatchNorm(fan_out, dtype=dtype))
                layers.append(getattr(gs, _HIDDEN[self.activation])())
                if self.dropout > 0:
                    layers.append(gs.Dropout(self.dropout))
        model = gs.Sequential(layers, dtype=dtype, seed=seed)
        model.loss = self._fused_loss() or gs.MSE()
        model.metrics = []
        return model

    def _denses(self) -> list:
        from .layers.dense import Dense

        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]

    def _load_coefs(self) -> None:
        """coefs_/intercepts_ (the estimator's state) -> the network's weights."""
        for dense, coef, intercept in zip(self._denses(), self.coefs_, self.intercepts_):
            dense.params["weight"][...] = coef
            dense.params["bias"][...] = intercept

    def _store_coefs(self) -> None:
        """The network's weights -> coefs_/intercepts_ (in place, keeping their dtype)."""
        for dense, coef, intercept in zip(self._denses(), self.coefs_, self.intercepts_):
            coef[...] = dense.params["weight"]
            intercept[...] = dense.params["bias"]

    def _set_l2(self, value: float) -> None:
        """Dense.l2 for this batch. The fused step fixes l2 when it is built, so one engine is kept
        per value (the full batches' and the last partial batch's) and swapped in."""
        model = self.model_
        cache = self._engines
        if value == self._l2_now:
            return
        cache[self._l2_now] = model._engine
        for dense in self._denses():
            dense.l2 = value
        model._engine = cache.get(value)
        self._l2_now = value

    def _prepare(self, X: Any, layer_units: list[int], new_optimizer: bool, keep: bool) -> None:
        """The network for this call: the last one when `keep` (partial_fit, warm_start: BatchNorm's
        state and dropout's random stream continue) and its layout still fits, else a new one;
        weights from coefs_ (which the caller may have changed); a new optimizer when scikit-learn
        makes one."""
        dtype = self._dtype(X)
        model = getattr(self, "model_", None)
        if (not keep or model is None or model.dtype != dtype or self._layer_units != list(layer_units)
                or getattr(self, "_loss_kind", None) != self.out_activation_):
            self.model_ = self._new_network(layer_units, dtype)
            self._layer_units = list(layer_units)
            self._loss_kind = self.out_activation_
            new_optimizer = True
        self._engines: dict[float, Any] = {}
        self._l2_now = -1.0
        self._load_coefs()
        if new_optimizer or self.model_.optimizer is None:
            self._new_optimizer()

    def _new_optimizer(self) -> None:
        import gradstep as gs

        c = self._gradient_scale()
        if self.solver == "sgd":
            opt = gs.SGD(lr=self.learning_rate_init / c, momentum=self.momentum,
                         nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        else:  # adam (lbfgs uses no optimizer; this one is never stepped)
            opt = gs.Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon * c)
        self.model_.optimizer = opt
        self.model_._engine = None
        self._engines = {}
        self._l2_now = -1.0

    def _before_step(self) -> None:
        """Adam: the eps that puts epsilon where scikit-learn does (see the module doc)."""
        opt = self.model_.optimizer
        if self.solver == "adam":
            t = opt.iterations + 1
            opt._hyper["eps"] = self._gradient_scale() * self.epsilon / np.sqrt(1.0 - self.beta_2 ** t)

    def _set_learning_rate(self, new: float, old: float) -> None:
        """A schedule changed scikit-learn's rate: gradstep's SGD follows, its momentum buffer
        rescaled so that lr·buffer (scikit-learn's velocity) is unchanged."""
        opt = self.model_.optimizer
        if new == old or self.solver != "sgd":
            return
        opt.lr = new / self._gradient_scale()
        if self.momentum > 0 and opt.iterations > 0:
            buffer = opt.fused_state(self.model_.parameters())[0][0]
            buffer *= old / new

    # ---- the loss and its gradient, layer by layer (lbfgs, sample_weight, Poisson) --------------
    def _loss_grad(self, X: np.ndarray, Y: np.ndarray, sample_weight: Any, c: float) -> float:
        """scikit-learn's loss (with the L2 term) on X, Y at the network's weights; leaves c times
        its gradient in the network's gradient buffer."""
        model = self.model_
        sw_sum = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        self._set_l2(c * self.alpha / sw_sum)
        out = np.array(model.forward(X, training=True), dtype=np.float64)
        ACTIVATIONS[self.out_activation_](out)
        name = self.loss
        if name == "log_loss" and self.out_activation_ == "logistic":
            name = "binary_log_loss"
        loss = LOSS_FUNCTIONS[name](Y, out, sample_weight) + model.penalty() / c
        delta = out - Y  # d loss / d logits for every canonical output activation/loss pair
        if sample_weight is not None:
            delta *= np.reshape(sample_weight, (-1, 1))
        delta *= c / sw_sum
        model.backward(delta.astype(model.dtype))
        return float(loss)

    # ---- solvers --------------------------------------------------------------------------------
    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads, layer_units):
        if self.dropout > 0:
            raise ValueError(f"{type(self).__name__}: dropout needs a stochastic solver ('sgd' or 'adam'), "
                             "not 'lbfgs' (its objective must be deterministic)")
        self._prepare(X, layer_units, new_optimizer=False, keep=self.warm_start)
        model = self.model_
        X = _dense(X, model.dtype)
        Y = np.asarray(y, dtype=np.float64)
        params, grads = model.arena.params, model.arena.grads

        def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
            params[...] = flat
            return self._loss_grad(X, Y, sample_weight, 1.0), grads.astype(np.float64)

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        opt_res = scipy.optimize.minimize(
            loss_grad, params.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        params[...] = opt_res.x
        self._store_coefs()

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                        layer_units, incremental):
        # scikit-learn's loop, line for line, with its per-batch backprop and update replaced
        new_optimizer = not incremental or not hasattr(self, "_optimizer")
        if new_optimizer:
            if self.solver == "sgd":
                self._optimizer = SGDOptimizer([], self.learning_rate_init, self.learning_rate,
                                               self.momentum, self.nesterovs_momentum, self.power_t)
            else:
                self._optimizer = AdamOptimizer([], self.learning_rate_init, self.beta_1, self.beta_2,
                                                self.epsilon)
        self._prepare(X, layer_units, new_optimizer, keep=incremental or self.warm_start)
        model = self.model_

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        sample_weight_train = sample_weight_val = None
        if early_stopping:
            should_stratify = self._is_classifier() and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify)
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if self._is_classifier():
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if self.batch_norm and n_samples % batch_size == 1 and n_samples > 1:
            raise ValueError(f"{type(self).__name__}: with batch_norm=True the last mini-batch would hold one "
                             f"sample ({n_samples} samples, batch_size={batch_size}); change batch_size")

        # Targets as the fused step takes them; the Poisson loss and sample weights go layer by layer.
        X_train = X_train if scipy.sparse.issparse(X_train) else np.ascontiguousarray(X_train, model.dtype)
        fused = sample_weight is None and self._fused_loss() is not None
        if self.out_activation_ == "softmax" and fused:
            targets = np.argmax(y_train, axis=1).astype(np.int64)
        else:
            targets = np.ascontiguousarray(y_train, dtype=model.dtype if fused else np.float64)
        c = self._gradient_scale()
        c_loss = self._loss_scale()
        xbuf = np.empty((batch_size, X_train.shape[1]), model.dtype)
        ybuf = np.empty((batch_size,) + targets.shape[1:], targets.dtype)

        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                accumulated_loss = 0.0
                for batch_slice in gen_batches(n_samples, batch_size):
                    rows = batch_slice.stop - batch_slice.start
                    batch_idx = sample_idx[batch_slice] if self.shuffle else np.arange(batch_slice.start,
                                                                                       batch_slice.stop)
                    if scipy.sparse.issparse(X_train):
                        xb = _dense(_safe_indexing(X_train, batch_idx), model.dtype)
                    else:
                        xb = xbuf[:rows]
                        np.take(X_train, batch_idx, axis=0, out=xb)
                    yb = ybuf[:rows]
                    np.take(targets, batch_idx, axis=0, out=yb)
                    if fused:
                        self._set_l2(c * self.alpha / rows)
                        penalty = model.penalty() if c_loss != c and self.alpha > 0 else 0.0
                        self._before_step()
                        value = model.train_step(xb, yb)
                        batch_loss = (value - penalty) / c_loss + penalty / c
                    else:
                        swb = None if sample_weight_train is None else sample_weight_train[batch_idx]
                        batch_loss = self._loss_grad(xb, yb, swb, c)
                        self._before_step()
                        model.optimizer.step(model.parameters())
                    accumulated_loss += batch_loss * rows

                self.n_iter_ += 1
                self.loss_ = accumulated_loss / X_train.shape[0]
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                if early_stopping:
                    self._store_coefs()  # the validation score is computed from coefs_
                self._update_no_improvement_count(early_stopping, X_val, y_val, sample_weight_val)

                old_rate = self._optimizer.learning_rate
                self._optimizer.iteration_ends(self.t_)
                self._set_learning_rate(self._optimizer.learning_rate, old_rate)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    old_rate = self._optimizer.learning_rate
                    is_stopping = self._optimizer.trigger_stopping(msg, self.verbose)
                    self._set_learning_rate(self._optimizer.learning_rate, old_rate)
                    if is_stopping:
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break

                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._store_coefs()

        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _is_classifier(self) -> bool:
        return isinstance(self, _sk.MLPClassifier)

    # ---- prediction -----------------------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input=True):
        if not self.batch_norm:
            return super()._forward_pass_fast(X, check_input=check_input)
        # BatchNorm's statistics live in the network: predict through it (eval mode, float64)
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        out = np.array(self._float64_network().forward(_dense(X, np.float64), training=False), dtype=np.float64)
        ACTIVATIONS[self.out_activation_](out)
        return out

    def _float64_network(self) -> Any:
        import gradstep as gs

        from .search import _library_seeded
        from .layers import LAYER_REGISTRY

        model = self.model_
        if model.dtype == np.float64:
            return model
        with _library_seeded(0):  # the layers' initial draws are overwritten: leave gs.seed's stream alone
            layers = [LAYER_REGISTRY[spec["class"]](**spec["config"]) for spec in model.get_config()["layers"]]
        net = gs.Sequential(layers, dtype="float64")
        net.load_state_dict(model.state_dict())
        return net

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_engines", None)  # rebuilt on the next training call
        return state


def _dense(X: Any, dtype: Any) -> np.ndarray:
    if scipy.sparse.issparse(X):
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=dtype)


_DOC_EXTRAS = """
    gradstep's additional parameters (keyword only, defaults keep scikit-learn's behaviour):
    dropout : float in [0, 1), default 0.0 -- dropout rate after each hidden activation (sgd/adam).
    batch_norm : bool, default False -- BatchNorm before each hidden activation.
    dtype : None, "float32" or "float64" -- the training arithmetic (None: the input's dtype).
    After fitting, `model_` is the trained `gs.Sequential`.
"""


class MLPClassifier(_GradstepMLP, _sk.MLPClassifier):
    __doc__ = ("scikit-learn's MLPClassifier, trained by gradstep (see `gradstep.sklearn`).\n"
               + _DOC_EXTRAS + "\n" + (_sk.MLPClassifier.__doc__ or ""))
    _parameter_constraints: dict = {**_sk.MLPClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, dtype=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype


class MLPRegressor(_GradstepMLP, _sk.MLPRegressor):
    __doc__ = ("scikit-learn's MLPRegressor, trained by gradstep (see `gradstep.sklearn`).\n"
               + _DOC_EXTRAS + "\n" + (_sk.MLPRegressor.__doc__ or ""))
    _parameter_constraints: dict = {**_sk.MLPRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, dropout=0.0, batch_norm=False, dtype=None):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype
