"""Diagnostics: the course's "babysitting the learning process" checks, built in.

    report = gs.diagnostics.gradcheck(model, X[:8], y[:8])       # backprop against finite differences
    print(gs.diagnostics.check_initial_loss(model, X, y))        # ~ ln C for C classes?
    print(gs.diagnostics.overfit_small(model, X, y))             # can it drive 20 samples to loss ~0?
    result = gs.diagnostics.lr_find(model, X, y)                 # loss against an exponential lr sweep
    monitor = gs.diagnostics.GradientMonitor()
    history = model.fit(X, y, epochs=10, validation_split=0.2, callbacks=[monitor])
    for finding in gs.diagnostics.diagnose(history, monitor):
        print(finding)

Every check works on a copy of the model (rebuilt from its layers' `get_config()`, with the values
copied): the model given is never modified, and the library's random generator is not advanced.
A `Finding` carries a stable `kind` (see `KINDS`), a `message` a person can act on, with numbers,
and the `evidence` it rests on.
"""
from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks, _core
from . import losses as _losses
from .callbacks import Callback
from .layers import LAYER_REGISTRY
from .layers import activation as _act
from .layers.base import Layer
from .layers.batchnorm import BatchNorm
from .layers.dropout import Dropout
from .model import History, Sequential

__all__ = ["KINDS", "Finding", "GradcheckReport", "LRFindResult", "GradientMonitor", "gradcheck",
           "check_initial_loss", "overfit_small", "lr_find", "diagnose"]

# The stable identifiers a Finding's `kind` takes ("ok" and "skipped" are the checks' verdicts).
OVERFIT_RISE = 0.10  # validation-loss rise over its minimum that counts as overfitting
KINDS = ("ok", "skipped", "lr_too_high", "lr_too_low", "overfitting", "nan", "vanishing_gradients",
         "exploding_gradients", "dead_relu", "saturation", "bad_initial_loss", "cannot_overfit",
         "gradcheck_failed")

# ---- thresholds (calibrated on deliberately broken and healthy runs on digits; see
# tests/test_diagnostics.py) ---------------------------------------------------------------------
GRADCHECK_TOL = 1e-6          # max relative error for GradcheckReport.ok
VANISHING_RATIO = 1e-3        # first-layer / last-layer weight-gradient norm below this: vanishing
VANISHING_ABS = 1e-7          # every weight-gradient norm below this: vanishing
EXPLODING_NORM = 1e2          # a weight-gradient norm above this (or inf/NaN): exploding (He-init nets start at 1-10)
EXPLODING_GROWTH = 1e2        # the total gradient norm growing by this factor over the run: exploding
DEAD_FRACTION = 0.4           # fraction of a hidden ReLU layer's units that are 0 for a whole batch
SATURATED_FRACTION = 0.25     # fraction of a hidden sigmoid/tanh layer's outputs in the flat tails
FLAT_DECREASE = 0.05          # relative decrease of the training loss below this over a run: flat
SLOW_DECREASE = 0.25          # ... or below this with tiny updates and accuracy under 50%: creeping
TINY_UPDATE_RATIO = 1e-4      # update/weight ratio per step below this is tiny (about 1e-3 is healthy)
# An initial loss above expected + max(INITIAL_ABS, INITIAL_REL * expected) is bad (classification):
# the library's default initializations (He or Xavier hidden layers, Xavier output) give 2.2 to 3.9 on
# standardized digits (ln 10 = 2.30; ELU nets the highest), and one batch of 32 adds about +-0.3.
INITIAL_ABS, INITIAL_REL = 2.5, 1.0
# MSE: an initial loss above MSE_HIGH x the target variance is bad; above MSE_UNCENTRED x when the
# targets' mean squared exceeds MSE_OFFSET x their variance (the offset then dominates the loss).
MSE_HIGH, MSE_UNCENTRED, MSE_OFFSET = 10.0, 3.0, 2.0


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _lr_text(lr: float) -> str:
    """A learning rate as a person writes it (3e-3, 0.01, 0.1)."""
    if lr <= 0 or not math.isfinite(lr):
        return _fmt(lr)
    text = f"{lr:.1g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


@dataclass
class Finding:
    """One diagnosis: `kind` (a stable identifier from `KINDS`), `message` (what it means and what to
    do, with numbers) and `evidence` (the numbers it rests on)."""

    kind: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "skipped")

    def __str__(self) -> str:
        text = f"[{self.kind}] {self.message}"
        if self.evidence:
            text += " (" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items()) + ")"
        return text


# ---- copies of models and layers ---------------------------------------------------------------
def _clone_layer(layer: Layer, dtype: Any = None, dropout_as_identity: bool = False,
                 drop_l2: bool = False) -> Layer:
    """A new layer of the same class and configuration, with the same parameter and buffer values.

    A layer whose constructor takes `seed` gets seed 0 when it has none, so that building the copy
    draws nothing from the library's generator (the user's later results stay reproducible)."""
    if dropout_as_identity and isinstance(layer, Dropout):
        return _act.Identity()
    cls = type(layer)
    if LAYER_REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"diagnostics: layer {layer!r} is not a registered gs layer, so it cannot be "
                        f"copied (decorate its class with gs.layers.base.register)")
    cfg = dict(layer.get_config())
    if dtype is not None and "dtype" in cfg:
        cfg["dtype"] = np.dtype(dtype).name
    if drop_l2 and cfg.get("l2"):
        cfg["l2"] = 0.0
    if "seed" in inspect.signature(cls).parameters and cfg.get("seed") is None:
        cfg["seed"] = 0
    try:
        new = cls(**cfg)
    except (TypeError, ValueError) as e:
        raise TypeError(f"diagnostics: cannot rebuild {layer!r} from its get_config() ({e})") from None
    for name, value in layer.params.items():
        new._p[name][...] = value
    for name, value in layer.buffers.items():
        new.buffers[name][...] = value
    return new


def _clone_model(model: Sequential, dtype: Any = None, dropout_as_identity: bool = False,
                 drop_l2: bool = False, optimizer_state: bool = False) -> Sequential:
    """A copy of `model` (weights, buffers, loss, optimizer configuration and, when asked, its
    state) that shares nothing with it."""
    layers = [_clone_layer(l, dtype, dropout_as_identity, drop_l2) for l in model.layers]
    new = Sequential(layers, dtype=model.dtype if dtype is None else dtype, seed=None)
    new.load_state_dict(model.state_dict())
    new.use_engine = model.use_engine
    if model.loss is not None and model.optimizer is not None:
        opt = model.optimizer
        new.compile(loss=copy.deepcopy(model.loss), optimizer=type(opt)(**opt.get_config()),
                    metrics=list(model.metrics))
        if optimizer_state:
            new.optimizer.load_state_dict(opt.state_dict(), new.parameters())
    return new


def _require_model(model: Any, fn: str, compiled: bool = True) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"{fn}: model must be a gs.Sequential, got {type(model).__name__}")
    if compiled:
        model._require_compiled(fn)
    return model


def _subset(n: int, k: int, seed: int) -> np.ndarray:
    """`k` of `n` row indices, drawn with a generator of their own (sorted, all rows when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _is_classification(model: Sequential) -> bool:
    """Single-label classification, where "accuracy" means something (not multi-label BCE)."""
    return model._labels_loss() or (isinstance(model.loss, _losses.BinaryCrossEntropy)
                                    and model.out_features == 1)


def _accuracy(model: Sequential, out: np.ndarray, y: np.ndarray) -> float:
    from . import metrics as _metrics
    s, c = _metrics.batch_sums("accuracy", out, y, model.loss)
    return s / max(c, 1)


# ---- gradient check ----------------------------------------------------------------------------
@dataclass
class GradcheckReport:
    """Backprop against central finite differences (float64), per parameter and for the input.

    `errors` maps "input" and each parameter ("0.weight" for a model, "weight" for a layer) to its
    max relative error max|a - n| / max(max|a|, max|n|, 1e-8) over the coordinates checked;
    `checked` maps the same names to (coordinates checked, coordinates in all); `ok` is True when
    every error is below `tolerance`."""

    errors: dict[str, float]
    checked: dict[str, tuple[int, int]]
    tolerance: float = GRADCHECK_TOL
    objective: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e < self.tolerance for e in self.errors.values())

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __str__(self) -> str:
        rows = [("gradient", "checked", "max rel. error", "")]
        for name, err in self.errors.items():
            done, total = self.checked[name]
            rows.append((name, f"{done}/{total}", f"{err:.2e}", "ok" if err < self.tolerance else "FAIL"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [f"Gradient check ({self.objective}; central differences in float64):"]
        for j, r in enumerate(rows):
            lines.append("  " + "  ".join(r[c].ljust(widths[c]) if c == 0 else r[c].rjust(widths[c])
                                          for c in range(4)).rstrip())
            if j == 0:
                lines.append("  " + "-" * (sum(widths) + 6))
        verdict = "PASSED" if self.ok else "FAILED"
        lines.append(f"  {verdict}: max relative error {self.max_error:.2e} "
                     f"(tolerance {self.tolerance:.0e})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def finding(self) -> Finding:
        """The verdict as a Finding: "ok", or "gradcheck_failed" naming the worst gradient."""
        evidence = {"max_error": self.max_error, "tolerance": self.tolerance}
        if self.ok:
            return Finding("ok", f"backprop agrees with finite differences (max relative error "
                                 f"{self.max_error:.2g})", evidence)
        worst = max(self.errors, key=self.errors.get)
        return Finding("gradcheck_failed",
                       f"backprop disagrees with finite differences for {worst} (relative error "
                       f"{self.errors[worst]:.2g}, want < {self.tolerance:.0e}): the backward pass of that "
                       f"layer (or of the loss, for 'input' and every parameter) is wrong", evidence)

    def __repr__(self) -> str:
        return f"GradcheckReport(ok={self.ok}, max_error={self.max_error:.3g}, errors={self.errors})"


def _rel_error(a: np.ndarray, n: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)), 1e-8)
    return float(np.max(np.abs(a - n), initial=0.0) / scale)


def _targets(model: Sequential, loss: Any, y: Any, n: int, fn: str) -> np.ndarray:
    labels = isinstance(loss, (_losses.SoftmaxCrossEntropy, _losses.NLL))
    a = _checks.numeric_array(y, f"{fn}: y")
    if a.shape[:1] != (n,):
        raise ValueError(f"{fn}: x and y must have the same number of samples, got {n} and "
                         f"{a.shape[0] if a.ndim else 'a scalar'}")
    if labels and a.ndim == 1:
        return _checks.class_labels(a, f"{fn}: y", model.out_features if model else None)
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim == 1 and model is not None and model.out_features == 1:
        a = a.reshape(-1, 1)
    return a


def gradcheck(model_or_layer: Any, x: Any, y: Any = None, loss: Any = None, eps: float = 1e-6,
              max_coords: int = 200, seed: int = 0) -> GradcheckReport:
    """Compare backprop's gradients with central differences, in float64, on a copy.

    For a model the objective is loss(model(x), y) + the L2 terms, with the model's compiled loss
    unless `loss` is given; for a layer (or a model given no `y`) it is sum(R * output) + the L2
    terms, with R a fixed random array. Dropout is evaluated as the identity (its mask is random);
    BatchNorm runs in training mode (batch statistics, deterministic). Parameters (and inputs)
    larger than `max_coords` are checked on `max_coords` coordinates drawn with `seed`.
    """
    fn = "gradcheck"
    eps = _checks.check_float(eps, f"{fn}: eps", 0.0, min_inclusive=False)
    max_coords = _checks.check_int(max_coords, f"{fn}: max_coords", 1)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    if loss is not None:
        loss = _losses.get(loss)
    notes: list[str] = []
    if isinstance(model_or_layer, Sequential):
        model = model_or_layer
        if any(isinstance(l, Dropout) for l in model.layers):
            notes.append("Dropout layers were evaluated as the identity (their masks are random)")
        net: Any = _clone_model(model, "float64", dropout_as_identity=True)
        layers = net.layers
        prefix = [f"{i}." for i in range(len(layers))]
        if y is None and loss is not None:
            raise ValueError(f"{fn}: loss was given without y; pass the targets too")
        if y is not None and loss is None:
            if model.loss is None:
                raise ValueError(f"{fn}: y was given but the model has no loss; compile it or pass loss=")
            loss = copy.deepcopy(model.loss)
        x64 = _checks.float_array(x, f"{fn}: x", np.dtype(np.float64))
        want = model.input_shape
        if want is None or len(want) == 1:
            if x64.ndim != 2:
                raise ValueError(f"{fn}: x must be a 2-D array (N, features), got shape {x64.shape}")
            if model.in_features is not None and x64.shape[1] != model.in_features:
                raise ValueError(f"{fn}: x must have {model.in_features} features (the model's "
                                 f"in_features), got shape {x64.shape}")
        elif x64.shape[1:] != want:
            raise ValueError(f"{fn}: x must have shape (N, {', '.join(map(str, want))}) (the model's "
                             f"input_shape), got {x64.shape}")
        owner = model
    elif isinstance(model_or_layer, Layer):
        layer = model_or_layer
        if isinstance(layer, Dropout):
            notes.append("a Dropout layer is checked as the identity (its mask is random)")
        layers = [_clone_layer(layer, "float64", dropout_as_identity=True)]
        net = layers[0]
        prefix = [""]
        if (y is None) != (loss is None):
            raise ValueError(f"{fn}: for a layer pass both y and loss (objective loss(layer(x), y)) "
                             f"or neither (objective sum(R * layer(x)))")
        x64 = _checks.float_array(x, f"{fn}: x", np.dtype(np.float64))
        owner = None
    else:
        raise TypeError(f"{fn}: model_or_layer must be a gs.Sequential or a gs layer, "
                        f"got {type(model_or_layer).__name__}")
    if x64.ndim < 1 or x64.shape[0] < 1:
        raise ValueError(f"{fn}: x must have at least one row, got shape {x64.shape}")
    if not np.all(np.isfinite(x64)):
        raise ValueError(f"{fn}: x holds NaN or inf")
    if any(isinstance(l, BatchNorm) for l in layers):
        if x64.shape[0] < 2:
            raise ValueError(f"{fn}: BatchNorm runs in training mode here and needs x with at "
                             f"least 2 rows, got {x64.shape[0]}")
        notes.append("BatchNorm ran in training mode (batch statistics)")

    def penalty() -> float:
        return float(sum(l.penalty() for l in layers))

    out = net.forward(x64, training=True)
    if y is not None:
        target = _targets(owner, loss, y, x64.shape[0], fn)
        lossc = copy.deepcopy(loss)
        objective = f"{type(lossc).__name__} + L2 terms"

        def f() -> float:
            return lossc.forward(net.forward(x64, training=True), target) + penalty()

        f0 = f()
        grad_out = lossc.backward()
    else:
        R = np.random.default_rng(seed).standard_normal(out.shape)
        objective = "sum(R * output) + L2 terms, R fixed random"

        def f() -> float:
            return float(np.vdot(R, net.forward(x64, training=True))) + penalty()

        f0 = f()
        grad_out = R
    grad_x = net.backward(grad_out)
    analytic: dict[str, np.ndarray] = {"input": np.array(grad_x, dtype=np.float64)}
    values: dict[str, np.ndarray] = {"input": x64}
    for p, l in zip(prefix, layers):
        for name, g in l.grads.items():
            analytic[p + name] = g.copy()
            values[p + name] = l.params[name]

    # Below this size a central difference is rounding noise: a gradient that is zero (a Dense bias
    # right before BatchNorm, whose mean the normalization removes) measures as noise of about
    # eps_machine * |f| / eps, and its relative error would be meaningless.
    noise = 100 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / eps
    zero: list[str] = []
    rng = np.random.default_rng(seed + 1)
    errors: dict[str, float] = {}
    checked: dict[str, tuple[int, int]] = {}
    for name, v in values.items():
        flat = v.reshape(-1)  # a view: parameters and x64 are contiguous
        idx = _subset(flat.size, max_coords, int(rng.integers(0, 2**31)))
        numeric = np.empty(idx.size)
        for j, k in enumerate(idx):
            old = flat[k]
            flat[k] = old + eps
            fp = f()
            flat[k] = old - eps
            fm = f()
            flat[k] = old
            numeric[j] = (fp - fm) / (2 * eps)
        a = analytic[name].reshape(-1)[idx]
        if float(np.max(np.abs(a), initial=0.0)) <= noise and float(np.max(np.abs(numeric), initial=0.0)) <= noise:
            errors[name] = 0.0
            zero.append(name)
        else:
            errors[name] = _rel_error(a, numeric)
        checked[name] = (int(idx.size), int(flat.size))
    if zero:
        notes.append(f"zero gradient (both sides below the finite-difference noise {noise:.1e}), error set "
                     f"to 0: {', '.join(zero)}")
    if any(done < total for done, total in checked.values()):
        notes.append(f"gradients with more than {max_coords} coordinates were checked on {max_coords} "
                     f"of them, drawn with seed {seed}")
    return GradcheckReport(errors, checked, GRADCHECK_TOL, objective, notes)


# ---- initial loss ------------------------------------------------------------------------------
def _expected_initial_loss(model: Sequential, y: np.ndarray | None = None) -> tuple[float | None, str]:
    """The loss of an untrained model that knows nothing (uniform predictions), and why."""
    loss = model.loss
    c = model.out_features
    if isinstance(loss, (_losses.SoftmaxCrossEntropy, _losses.NLL)) and c and c > 1:
        return math.log(c), f"ln {c} = {math.log(c):.4g} ({c} classes, uniform predictions)"
    if isinstance(loss, _losses.BinaryCrossEntropy):
        return math.log(2.0), "ln 2 = 0.6931 (predicting 0.5)"
    if isinstance(loss, _losses.MSE) and y is not None:
        var = float(np.mean(np.var(np.asarray(y, np.float64).reshape(len(y), -1), axis=0)))
        return var, f"{var:.4g}, the target variance (predicting the mean)"
    return None, ""


def _pairing_problem(model: Sequential) -> str | None:
    """A final activation that does not fit the loss, described, or None."""
    last = model.layers[-1]
    loss = model.loss
    if isinstance(loss, _losses.SoftmaxCrossEntropy) and isinstance(last, _act.Softmax):
        return ("the model ends in Softmax but SoftmaxCrossEntropy applies softmax itself: remove the "
                "final Softmax layer (or use NLL)")
    if isinstance(loss, _losses.NLL) and not isinstance(last, _act.Softmax):
        return "NLL expects probabilities: end the model with a Softmax layer or use SoftmaxCrossEntropy"
    if isinstance(loss, _losses.BinaryCrossEntropy):
        if loss.from_logits and isinstance(last, _act.Sigmoid):
            return ("BinaryCrossEntropy(from_logits=True) applies the sigmoid itself: remove the final "
                    "Sigmoid layer")
        if not loss.from_logits and not isinstance(last, _act.Sigmoid):
            return ("BinaryCrossEntropy expects probabilities: end the model with a Sigmoid layer or use "
                    "from_logits=True")
    return None


def check_initial_loss(model: Sequential, X: Any, y: Any, max_samples: int = 1000,
                       seed: int = 0) -> Finding:
    """Compare an untrained model's loss with what knowing nothing gives (ln C for C classes with
    softmax cross-entropy or NLL, ln 2 for binary cross-entropy, the target variance for MSE),
    measured in evaluation mode on up to `max_samples` samples, without the L2 terms."""
    fn = "check_initial_loss"
    _require_model(model, fn)
    max_samples = _checks.check_int(max_samples, f"{fn}: max_samples", 1)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    X, y = model._check_data(X, y, fn)
    idx = _subset(X.shape[0], max_samples, seed)
    X, y = X[idx], y[idx]
    expected, why = _expected_initial_loss(model, y)
    if expected is None:
        return Finding("skipped", f"no expected initial loss is known for {type(model.loss).__name__}")
    out = model.predict(X)
    out_std = float(np.std(out.astype(np.float64)))
    try:
        measured = copy.deepcopy(model.loss).forward(out, y)
    except ValueError as e:
        pairing = _pairing_problem(model)
        if pairing is None:
            raise
        return Finding("bad_initial_loss", f"the loss cannot be computed on the untrained model's outputs "
                                           f"({e}): {pairing}",
                       {"expected": expected, "measured": math.nan, "output_std": out_std})
    evidence: dict[str, Any] = {"expected": expected, "measured": measured, "output_std": out_std,
                                "samples": int(X.shape[0])}
    classification = not isinstance(model.loss, _losses.MSE)
    if classification:
        high = expected + max(INITIAL_ABS, INITIAL_REL * expected)
        low = 0.5 * expected
    else:
        # Untrained regression nets with the default initializations start at 1 to 8x the target
        # variance (the outputs' own spread); far more, or a loss dominated by targets that are not
        # centred (the net must first learn a large output bias), is what deserves a look.
        y_mean = float(np.max(np.abs(np.mean(y.astype(np.float64), axis=0))))
        evidence["target_max_abs_mean"] = y_mean
        uncentred = y_mean ** 2 > MSE_OFFSET * expected
        high = (MSE_UNCENTRED if uncentred else MSE_HIGH) * expected + 1e-12
        low = -math.inf
    if math.isfinite(measured) and low <= measured <= high:
        if classification:
            return Finding("ok", f"the initial loss {measured:.4g} is close to the expected {why}", evidence)
        return Finding("ok", f"the initial loss {measured:.4g} is {measured / expected:.2g}x the target variance "
                             f"{expected:.4g} (the loss of predicting the mean), as an untrained model's "
                             f"spread of outputs gives", evidence)

    causes = []
    pairing = _pairing_problem(model)
    if pairing:
        causes.append(pairing)
    xd = X.astype(np.float64)
    x_mean = float(np.max(np.abs(np.mean(xd, axis=0))))
    x_std = float(np.max(np.std(xd, axis=0)))
    evidence.update(input_max_abs_mean=x_mean, input_max_std=x_std)
    if x_mean > 5 or x_std > 5:
        causes.append(f"the inputs are not standardized (feature means up to {x_mean:.3g} in size, "
                      f"standard deviations up to {x_std:.3g}): scale them to mean 0 and std 1 "
                      f"(gs.datasets.standardize)")
    if not classification:
        if uncentred:
            causes.append(f"the targets are not centred (mean {y_mean:.3g} against a standard deviation of "
                          f"{math.sqrt(expected):.3g}): standardize the targets or start the output bias at "
                          f"their mean")
    if not classification and out_std > 2 * math.sqrt(expected):
        causes.append(f"the outputs vary more than the targets (std {out_std:.3g} against "
                      f"{math.sqrt(expected):.3g}): standardize the targets or use a smaller initialization "
                      f"for the output layer (init='xavier')")
    if not math.isfinite(measured) or measured > high:
        if classification and out_std > 3.0:
            causes.append(f"the initial weights are too large (the outputs have standard deviation "
                          f"{out_std:.3g}, want about 1 or less): use init='he' for ReLU layers and "
                          f"'xavier' for tanh/sigmoid and the output layer")
        if not causes:
            causes.append("check the weight initialization (He for ReLU, Xavier otherwise), the final "
                          "activation / loss pairing and the input scaling")
        msg = (f"the initial loss {measured:.4g} is far above the expected {why}; the usual causes: "
               + "; ".join(causes))
    else:
        if not causes:
            causes.append("is the model already trained, or do the labels leak into the inputs?")
        msg = (f"the initial loss {measured:.4g} is far below the expected {why}; "
               + "; ".join(causes))
    return Finding("bad_initial_loss", msg, evidence)


# ---- overfit a tiny subset ---------------------------------------------------------------------
def overfit_small(model: Sequential, X: Any, y: Any, n: int = 20, max_steps: int = 1000,
                  tol: float = 1e-2, seed: int = 0) -> Finding:
    """Train a copy of the model (regularization off: no L2, dropout as identity, a fresh optimizer
    with the same settings) on `n` samples, full batch, for at most `max_steps` steps. It passes
    ("ok") when the loss falls below `tol`, or, for a classifier, when every sample is classified
    right and the loss is below 0.1; otherwise "cannot_overfit"."""
    fn = "overfit_small"
    _require_model(model, fn)
    n = _checks.check_int(n, f"{fn}: n", 1)
    max_steps = _checks.check_int(max_steps, f"{fn}: max_steps", 1)
    tol = _checks.check_float(tol, f"{fn}: tol", 0.0, min_inclusive=False)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    X, y = model._check_data(X, y, fn)
    if n > X.shape[0]:
        raise ValueError(f"{fn}: n must be at most the number of samples {X.shape[0]}, got {n}")
    if n < 2 and any(isinstance(l, BatchNorm) for l in model.layers):
        raise ValueError(f"{fn}: n must be at least 2 for a model with BatchNorm, got {n}")
    idx = _subset(X.shape[0], n, seed)
    Xs, ys = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
    net = _clone_model(model, dropout_as_identity=True, drop_l2=True)
    classification = _is_classification(net)
    lr = float(net.optimizer.lr)
    first = last = best = math.nan
    acc = math.nan
    steps = 0
    passed = False
    for steps in range(1, max_steps + 1):
        last = net.train_step(Xs, ys)
        if steps == 1:
            first = best = last
        if not math.isfinite(last):
            break
        best = min(best, last)
        if last < tol:
            passed = True
            break
        if classification and (steps % 10 == 0 or steps == max_steps) and last < 0.1:
            acc = _accuracy(net, net.predict(Xs), ys)
            if acc == 1.0:
                passed = True
                break
    if classification and math.isfinite(last) and math.isnan(acc):
        acc = _accuracy(net, net.predict(Xs), ys)
    evidence: dict[str, Any] = {"samples": n, "steps": steps, "initial_loss": first, "final_loss": last,
                                "best_loss": best, "lr": lr}
    if classification:
        evidence["accuracy"] = acc
    if passed:
        what = f"loss {last:.3g}" + (f", accuracy {acc:.0%}" if classification and not math.isnan(acc) else "")
        return Finding("ok", f"a copy of the model fits {n} samples in {steps} steps ({what}): the model "
                             f"and the gradients can learn", evidence)
    opt = type(net.optimizer).__name__
    if not math.isfinite(last) or last > first:
        msg = (f"on {n} samples the loss goes from {first:.4g} to {last:.4g} in {steps} steps: the "
               f"learning rate {_lr_text(lr)} is too high for {opt}; try {_lr_text(lr / 10)}")
    elif last > 0.9 * first:
        msg = (f"on {n} samples the loss barely moves ({first:.4g} -> {last:.4g} in {steps} steps): the "
               f"learning rate {_lr_text(lr)} is too low (try {_lr_text(lr * 10)}), or the gradients do "
               f"not reach the weights (run gradcheck)")
    else:
        msg = (f"on {n} samples the loss falls from {first:.4g} only to {last:.4g} in {steps} steps "
               f"(want < {tol:g}): the model may be too small (add units or layers), the learning rate "
               f"{_lr_text(lr)} too low (try {_lr_text(lr * 3)}), or there is a bug (run gradcheck)")
    return Finding("cannot_overfit", msg, evidence)


# ---- learning-rate finder ----------------------------------------------------------------------
@dataclass
class LRFindResult:
    """The learning-rate sweep: `lrs` and `losses` (smoothed, bias-corrected exponential moving
    average) and `raw_losses` per step; `suggestion` is the lr at the smoothed minimum divided by
    10 (`rule`), `steepest` the lr where the smoothed loss falls fastest, `min_loss_lr` the lr at
    the minimum; `stopped_early` when the loss exceeded 4x its best (or became NaN)."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float
    steepest: float
    min_loss_lr: float
    stopped_early: bool
    rule: str = "lr at the minimum of the smoothed loss / 10"

    def __str__(self) -> str:
        end = "stopped when the loss diverged" if self.stopped_early else "ran every step"
        return (f"lr finder: {len(self.lrs)} steps from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g} ({end}); "
                f"minimum of the smoothed loss {min(self.losses):.4g} at lr {self.min_loss_lr:.3g}, "
                f"steepest descent at lr {self.steepest:.3g}; suggestion {self.suggestion:.3g} "
                f"({self.rule})")

    def __repr__(self) -> str:
        return (f"LRFindResult(steps={len(self.lrs)}, suggestion={self.suggestion:.3g}, "
                f"steepest={self.steepest:.3g}, stopped_early={self.stopped_early})")


def lr_find(model: Sequential, X: Any, y: Any, min_lr: float = 1e-7, max_lr: float = 10.0,
            steps: int = 100, batch_size: int = 32, beta: float = 0.9, seed: int = 0) -> LRFindResult:
    """Train a copy of the model (same weights, optimizer and optimizer state) for `steps`
    mini-batches while the learning rate grows exponentially from `min_lr` to `max_lr`, and record
    the loss. Stops early when the smoothed loss exceeds 4x its best. The model given is untouched."""
    fn = "lr_find"
    _require_model(model, fn)
    min_lr = _checks.check_float(min_lr, f"{fn}: min_lr", 0.0, min_inclusive=False)
    max_lr = _checks.check_float(max_lr, f"{fn}: max_lr", 0.0, min_inclusive=False)
    if max_lr <= min_lr:
        raise ValueError(f"{fn}: max_lr must be larger than min_lr, got min_lr={min_lr}, max_lr={max_lr}")
    steps = _checks.check_int(steps, f"{fn}: steps", 2)
    batch_size = _checks.check_int(batch_size, f"{fn}: batch_size", 1)
    beta = _checks.check_float(beta, f"{fn}: beta", 0.0, 1.0, max_inclusive=False)
    seed = _checks.check_int(seed, f"{fn}: seed", 0)
    X, y = model._check_data(X, y, fn)
    n = X.shape[0]
    bn = any(isinstance(l, BatchNorm) for l in model.layers)
    if bn and min(batch_size, n) < 2:
        raise ValueError(f"{fn}: BatchNorm needs batches of at least 2 samples, got batch_size={batch_size}")
    net = _clone_model(model, optimizer_state=True)
    rng = np.random.default_rng(seed)
    factor = (max_lr / min_lr) ** (1.0 / (steps - 1))
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    avg, best = 0.0, math.inf
    order = rng.permutation(n)
    pos = 0
    stopped = False
    for i in range(steps):
        if pos + batch_size > n and pos > 0:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        if bn and idx.size < 2:
            order, pos = rng.permutation(n), 0
            idx = order[:batch_size]
        pos += batch_size
        lr = min_lr * factor ** i
        net.optimizer.lr = lr
        value = net.train_step(X[idx], y[idx])
        lrs.append(lr)
        raw.append(value)
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta ** (i + 1))
        smooth.append(s)
        if not math.isfinite(s) or s > 4 * best:
            stopped = True
            break
        best = min(best, s)
    finite = [j for j, s in enumerate(smooth) if math.isfinite(s)]
    if not finite:
        k = 0
    else:
        k = min(finite, key=lambda j: smooth[j])
    min_loss_lr = lrs[k]
    # The steepest descent: the most negative slope of the smoothed loss against log(lr), up to the minimum.
    # The first tenth is left out: the moving average is still settling there.
    start = max(1, len(lrs) // 10)
    steepest = lrs[k]
    if k - start >= 2:
        ls = np.log(np.asarray(lrs[start:k + 1]))
        slope = np.gradient(np.asarray(smooth[start:k + 1]), ls)
        steepest = lrs[start + int(np.argmin(slope))]
    return LRFindResult(lrs, smooth, raw, min_loss_lr / 10, steepest, min_loss_lr, stopped)


# ---- the training monitor ----------------------------------------------------------------------
_SATURATING = {_act.Sigmoid: "saturated_sigmoid", _act.Tanh: "saturated_tanh"}
# Layers whose weight gradients tell vanishing/exploding gradients (those with a matrix or filters).
_WEIGHT_LAYERS = ("Dense", "Maxout", "Conv1D", "Conv2D")
_ACTIVATIONS = (_act.Sigmoid, _act.Tanh, _act.ReLU, _act.LeakyReLU, _act.ELU, _act.PReLU, _act.Softmax)


def _layer_names(model: Sequential) -> list[str]:
    return [f"{i}.{type(l).__name__}" for i, l in enumerate(model.layers)]


def _last_input(model: Sequential) -> tuple[int, np.ndarray | None]:
    """(i, x): the input x of layer i in the last training step, for the layer-by-layer path's
    statistics: the model's last batch when it keeps one (`_last_batch`), else what the first Dense
    or Maxout layer's last forward took (the layers before it have no parameters)."""
    x = getattr(model, "_last_batch", None)
    if isinstance(x, np.ndarray):
        return 0, x
    for i, layer in enumerate(model.layers):
        if layer.has_params:
            return i, layer._last_x if layer._saved is not None else None
    return 0, None


def _saved_output(layer: Layer) -> np.ndarray | None:
    """The output of the layer's last training forward (what its op kept for backward)."""
    if type(layer) in _ACTIVATIONS and layer._saved is not None:
        return layer._last_y
    return None


class GradientMonitor(Callback):
    """Watch gradients, updates and activations during `fit`, cheaply.

        monitor = GradientMonitor(every=1, batches=1)
        model.fit(X, y, epochs=10, callbacks=[monitor])
        monitor.series("0.Dense", "grad_norm")          # one value per recorded epoch

    Every `every` epochs it measures the last `batches` mini-batches of the epoch (their average is
    the epoch's record): for each Dense/Maxout layer the weight-gradient norm, the weight norm and
    the update-to-weight ratio ||dw||/||w|| of one step (the weights are copied one batch before;
    about 1e-3 is healthy), likewise for BatchNorm's gamma and PReLU's alpha; for each activation
    layer its output's mean and std, for ReLU the fraction of dead units (0 for the whole batch),
    for sigmoid/tanh the fraction of saturated outputs (|tanh| > 0.99, sigmoid < 0.01 or > 0.99).
    The activation statistics are those of the measured step's training forward, computed in C++
    (`_core`): with the whole-step engine from its workspace, layer by layer from the outputs the
    layers kept (for LeakyReLU and PReLU, which keep their input, from an evaluation-mode forward of
    the last batch). The first step of a fresh model is measured too (`initial_record`,
    `initial_loss`).

    `records` lists per-epoch dicts: {"epoch", "loss", "val_loss" (when validated), "lr",
    "grad_norm" and "update_ratio" (whole model), "layers": {name: {"grad_norm", "weight_norm",
    "update_ratio", "mean", "std", "dead", "saturated", "index", "type", "hidden"} (the keys that
    apply)}, "flags": [kinds]}, with layer names like "0.Dense". `expected_initial_loss` is what an
    untrained model should give (ln C; None for MSE). `flags` lists the vanishing/exploding-gradient
    Findings raised so far; `seconds` is the time spent in the monitor's hooks (its overhead).
    """

    def __init__(self, every: int = 1, batches: int = 1) -> None:
        self.every = _checks.check_int(every, "GradientMonitor: every", 1)
        self.batches = _checks.check_int(batches, "GradientMonitor: batches", 1)
        self.model = None
        # Records are built when read (`records`, `flags`, `initial_record`): during fit the monitor
        # only keeps the raw measurements, so the per-epoch cost stays a few tens of microseconds.
        self._records: list[dict[str, Any]] = []
        self._flags: list[Finding] = []
        self._initial: dict[str, Any] | None = None
        self._pending: list[tuple] = []
        self.initial_loss: float | None = None
        self.expected_initial_loss: float | None = None
        self.layer_names: list[str] = []
        self.seconds = 0.0
        self._reset_fit()

    def _reset_fit(self) -> None:
        self._sample: set[int] = set()
        self._snapshot: np.ndarray | None = None
        self._snapshot_valid = False
        self._diff: np.ndarray | None = None
        self._want_initial = False
        self._n_batches: int | None = None
        self._fit_first_epoch: int | None = None
        self._epoch = 0
        self._acc, self._totals = self._new_acc()

    def __repr__(self) -> str:
        return f"GradientMonitor(every={self.every}, batches={self.batches}, records={len(self.records)})"

    # ---- hooks --------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        model = self._require_model("on_train_begin")
        self._reset_fit()
        self.layer_names = _layer_names(model)
        params = getattr(getattr(model, "history", None), "params", {}) or {}
        if params.get("samples") and params.get("batch_size"):
            self._n_batches = -(-int(params["samples"]) // int(params["batch_size"]))
        if model.epochs_done == 0 and self.initial_loss is None:
            self._want_initial = True
            self.expected_initial_loss, _ = _expected_initial_loss(model)
        arena = model.arena
        # Per parameter layer: the (offset, size) slots of its weights ("weight", BatchNorm's
        # "gamma", PReLU's "alpha"; all its parameters when it has none of those).
        self._slots: list[tuple[int, list[tuple[int, int]]]] = []
        for i, layer in enumerate(model.layers):
            weights, others = [], []
            for name in layer._param_shapes():
                off, shape = arena.slots[f"{i}.{name}"]
                span = (off, int(np.prod(shape, dtype=np.int64)))
                (weights if name in ("weight", "gamma", "alpha") else others).append(span)
            if weights or others:
                self._slots.append((i, weights or others))
        last_param = max((i for i, _ in self._slots), default=-1)
        self._hidden = [i < last_param for i in range(len(model.layers))]
        # Activation layers (no parameters, not Dropout/Identity): the ones whose outputs are watched.
        self._watch = [isinstance(l, _ACTIVATIONS) for l in model.layers]
        self.seconds += time.perf_counter() - t0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        if self._fit_first_epoch is None:
            self._fit_first_epoch = epoch
        self._epoch = epoch
        self._acc, self._totals = self._new_acc()
        self._sample = set()
        if (epoch - self._fit_first_epoch) % self.every == 0:
            nb = self._n_batches
            self._sample = set(range(max(0, nb - self.batches), nb)) if nb else set(range(self.batches))
        if 0 in self._sample or self._want_initial:
            self._take_snapshot()
        self.seconds += time.perf_counter() - t0

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Most batches are neither measured nor the one before: two set look-ups and out.
        if batch in self._sample or batch + 1 in self._sample or self._want_initial:
            t0 = time.perf_counter()
            if self._want_initial:
                self._want_initial = False
                self.initial_loss = float((logs or {}).get("loss", math.nan))
                acc, totals = self._new_acc()
                self._measure(acc, totals)
                self._pending.append((True, self._epoch, acc, totals, {"loss": self.initial_loss,
                                                                       "batch": batch},
                                      float(self.model.optimizer.lr), self._hidden))
            if batch in self._sample:
                self._measure(self._acc, self._totals)
            if batch + 1 in self._sample:
                self._take_snapshot()
            self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        if self._totals["grad_norm"]:
            logs = logs or {}
            kept = {k: float(logs[k]) for k in ("loss", "val_loss", "lr") if k in logs}
            self._pending.append((False, epoch, self._acc, self._totals, kept,
                                  float(self.model.optimizer.lr), self._hidden))
        self._sample = set()
        self.seconds += time.perf_counter() - t0

    # ---- measurements -------------------------------------------------------------------------
    @staticmethod
    def _new_acc() -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
        return {}, {"grad_norm": [], "update_ratio": []}

    def _materialize(self) -> None:
        """Turn the raw measurements kept during fit into records and flags."""
        pending, self._pending = self._pending, []
        for initial, epoch, acc, totals, logs, lr, hidden in pending:
            first = self._initial or (self._records[0] if self._records else None)
            rec = self._record(epoch, acc, totals, {"lr": lr, **logs}, None if initial else first, hidden)
            if initial:
                self._initial = rec
            else:
                self._records.append(rec)

    @property
    def records(self) -> list[dict[str, Any]]:
        """One dict per measured epoch (see the class docstring)."""
        if self._pending:
            self._materialize()
        return self._records

    @property
    def flags(self) -> list[Finding]:
        """The vanishing/exploding-gradient Findings raised so far, the first of each kind."""
        if self._pending:
            self._materialize()
        return self._flags

    @property
    def initial_record(self) -> dict[str, Any] | None:
        """The record of the first step of a fresh model ("batch": 0), or None."""
        if self._pending:
            self._materialize()
        return self._initial

    def _record(self, epoch: int, acc: dict, totals: dict, logs: dict, first: dict | None,
                hidden: list[bool]) -> dict[str, Any]:
        """One record: the averages of the measured batches, and the flags they raise."""
        rec: dict[str, Any] = {"epoch": int(epoch), **logs}
        for k, vals in totals.items():
            rec[k] = sum(vals) / len(vals) if vals else math.nan
        layers = {}
        for name, stats in acc.items():
            d = {k: sum(v) / len(v) for k, v in stats.items()}
            index, kind = name.split(".", 1)
            d["index"], d["type"] = int(index), kind
            d["hidden"] = hidden[int(index)]
            layers[name] = d
        rec["layers"] = layers
        rec["flags"] = []
        for finding in _gradient_findings(rec, first):
            rec["flags"].append(finding.kind)
            if finding.kind not in {f.kind for f in self._flags}:
                self._flags.append(finding)
        return rec

    def _take_snapshot(self) -> None:
        params = self.model.arena.params
        if self._snapshot is None or self._snapshot.shape != params.shape:
            self._snapshot = params.copy()
            self._diff = np.empty_like(params)
        else:
            np.copyto(self._snapshot, params)
        self._snapshot_valid = True

    def _measure(self, acc: dict, totals: dict) -> None:
        model = self.model
        arena = model.arena
        have_update = self._snapshot_valid
        if have_update:
            np.subtract(arena.params, self._snapshot, out=self._diff)
            self._snapshot_valid = False
        # Whole-model totals over the flat buffers (their padding is zero), then each layer's weights.
        params, grads, diff = arena.params, arena.grads, self._diff
        sq = _core.sum_squares  # Σa² in double, 8 fixed-order lanes (~5 us for 17k values)
        totals["grad_norm"].append(math.sqrt(sq(grads)))
        if have_update:
            w_all = sq(params)
            totals["update_ratio"].append(math.sqrt(sq(diff) / w_all) if w_all > 0 else math.nan)
        for i, weights in self._slots:
            g = w = u = 0.0
            for o, s in weights:
                g += sq(grads[o:o + s])
                w += sq(params[o:o + s])
                if have_update:
                    u += sq(diff[o:o + s])
            d = acc.setdefault(self.layer_names[i], {})
            d.setdefault("grad_norm", []).append(math.sqrt(g))
            d.setdefault("weight_norm", []).append(math.sqrt(w))
            if have_update:
                d.setdefault("update_ratio", []).append(math.sqrt(u / w) if w > 0 else math.nan)
        for i, s in enumerate(self._activation_stats()):
            if s is None:
                continue
            d = acc.setdefault(self.layer_names[i], {})
            d.setdefault("mean", []).append(s["mean"])
            d.setdefault("std", []).append(s["std"])
            layer = model.layers[i]
            if type(layer) is _act.ReLU:
                d.setdefault("dead", []).append(s["dead_units"])
            key = _SATURATING.get(type(layer))
            if key is not None:
                d.setdefault("saturated", []).append(s[key])

    def _activation_stats(self) -> list[dict | None]:
        """Output statistics of the activation layers (None for the others)."""
        model = self.model
        engine = model._engine
        watch = self._watch
        if engine and model.use_engine and getattr(engine, "last_code", None) is not None:
            net = engine.nets[engine.last_code]
            return [net.layer_stats(i) if w else None for i, w in enumerate(watch)]
        # Layer by layer: the outputs the activation layers kept for their backward are those of the
        # last training step (as the engine's workspace holds them); for layers that keep their input
        # instead, an evaluation-mode forward of the last batch from the first Dense/Maxout layer on.
        out: list[dict | None] = [None] * len(watch)
        missing = False
        for i, layer in enumerate(model.layers):
            if watch[i]:
                y = _saved_output(layer)
                if y is None:
                    missing = True
                elif y.ndim == 2:
                    out[i] = _core.activation_stats(y)
        if missing:
            start, x = _last_input(model)
            if x is not None:
                for i in range(start, len(watch)):
                    x = model.layers[i].forward(x, training=False)
                    if watch[i] and out[i] is None and x.ndim == 2:
                        out[i] = _core.activation_stats(x)
        return out

    # ---- queries ------------------------------------------------------------------------------
    def series(self, layer: str | int, key: str) -> list[float]:
        """One value per record of `key` ("grad_norm", "weight_norm", "update_ratio", "mean", "std",
        "dead", "saturated") for `layer`, a name like "0.Dense" or an index; NaN where it was not
        measured. Whole-model quantities are in `totals(key)`."""
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            if not 0 <= layer < len(self.layer_names):
                raise ValueError(f"GradientMonitor.series: layer index must lie in [0, "
                                 f"{len(self.layer_names)}), got {layer}")
            layer = self.layer_names[layer]
        if not isinstance(layer, str):
            raise TypeError(f"GradientMonitor.series: layer must be a name or an index, got "
                            f"{type(layer).__name__}")
        if self.layer_names and layer not in self.layer_names:
            raise ValueError(f"GradientMonitor.series: unknown layer {layer!r}; layers are {self.layer_names}")
        return [float(r["layers"].get(layer, {}).get(key, math.nan)) for r in self.records]

    def totals(self, key: str = "grad_norm") -> list[float]:
        """One value per record of a whole-model quantity ("grad_norm", "update_ratio", "loss")."""
        return [float(r.get(key, math.nan)) for r in self.records]

    @property
    def epochs(self) -> list[int]:
        return [r["epoch"] for r in self.records]


def _param_layers(rec: dict) -> list[tuple[str, dict]]:
    return sorted(((n, s) for n, s in rec["layers"].items() if "grad_norm" in s), key=lambda t: t[1]["index"])


def _gradient_findings(rec: dict, first: dict | None) -> list[Finding]:
    """Vanishing or exploding gradients in one epoch's record (against the first record)."""
    found: list[Finding] = []
    when = "at the first step" if "batch" in rec else f"at epoch {rec['epoch'] + 1}"
    layers = [(n, s) for n, s in _param_layers(rec) if s["type"] in _WEIGHT_LAYERS]
    if not layers:
        return found
    norms = [s["grad_norm"] for _, s in layers]
    bad = [(n, g) for (n, _), g in zip(layers, norms) if not math.isfinite(g)]
    biggest = max((g for g in norms if math.isfinite(g)), default=math.nan)
    growth = math.nan
    if first is not None and math.isfinite(rec.get("grad_norm", math.nan)) and first.get("grad_norm", 0) > 0:
        growth = rec["grad_norm"] / first["grad_norm"]
    if bad or biggest > EXPLODING_NORM or growth > EXPLODING_GROWTH:
        where = (f"the gradient of {bad[0][0]} is {bad[0][1]}" if bad else
                 f"the largest weight-gradient norm is {biggest:.3g}" if biggest > EXPLODING_NORM else
                 f"the gradient norm grew {growth:.3g}x since the first measurement")
        found.append(Finding("exploding_gradients",
                             f"exploding gradients {when}: {where}; lower the learning "
                             f"rate (e.g. to {_lr_text(rec.get('lr', 1e-3) / 10)}), use a smaller "
                             f"initialization (He/Xavier) or add BatchNorm",
                             {"epoch": rec["epoch"] + 1, "max_grad_norm": biggest, "growth": growth}))
        return found
    # Exactly zero gradients mean blocked units (dead ReLUs), not vanishing ones: dead_relu names them.
    if len(layers) >= 2 and norms[0] > 0 and norms[-1] > 0:
        g_first, g_last = norms[0], norms[-1]
        ratio = g_first / g_last
        if ratio < VANISHING_RATIO or biggest < VANISHING_ABS:
            found.append(Finding("vanishing_gradients",
                                 f"vanishing gradients {when}: the first layer's weight "
                                 f"gradient ({layers[0][0]}, norm {g_first:.3g}) is {ratio:.2g} times the last "
                                 f"layer's ({layers[-1][0]}, {g_last:.3g}); use ReLU with init='he' (or Xavier for "
                                 f"tanh), fewer sigmoid layers, or BatchNorm",
                                 {"epoch": rec["epoch"] + 1, "first_grad_norm": g_first,
                                  "last_grad_norm": g_last, "ratio": ratio}))
    elif len(layers) == 1 and 0 < biggest < VANISHING_ABS:
        found.append(Finding("vanishing_gradients",
                             f"vanishing gradients {when}: the weight-gradient norm is "
                             f"{biggest:.3g}", {"epoch": rec["epoch"] + 1, "max_grad_norm": biggest}))
    return found


# ---- diagnose ----------------------------------------------------------------------------------
def diagnose(history: Any, monitor: GradientMonitor | None = None) -> list[Finding]:
    """Name what went wrong in a training run, from its History (and a GradientMonitor's records):
    "nan", "lr_too_high", "lr_too_low", "overfitting", "vanishing_gradients", "exploding_gradients",
    "dead_relu", "saturation", "bad_initial_loss". An empty list means nothing looks wrong."""
    hist = history.history if isinstance(history, History) else history
    if not isinstance(hist, dict) or "loss" not in hist:
        raise TypeError("diagnose: history must be a History (what fit returns) or its .history dict "
                        "with a 'loss' entry")
    if monitor is not None and not isinstance(monitor, GradientMonitor):
        raise TypeError(f"diagnose: monitor must be a GradientMonitor or None, got {type(monitor).__name__}")
    return _Diagnosis(hist, monitor).run()


class _Diagnosis:
    def __init__(self, hist: dict, monitor: GradientMonitor | None) -> None:
        self.loss = [float(v) for v in hist["loss"]]
        self.val = [float(v) for v in hist.get("val_loss", [])]
        self.lr = float(hist["lr"][-1]) if hist.get("lr") else None
        self.acc = [float(v) for v in hist.get("accuracy", [])]
        self.monitor = monitor
        self.records = list(monitor.records) if monitor is not None else []
        self.first = None
        if monitor is not None:
            self.first = monitor.initial_record or (self.records[0] if self.records else None)
        self.initial = monitor.initial_loss if monitor is not None else None
        if self.initial is not None and not math.isfinite(self.initial):
            self.initial = None
        self.expected = monitor.expected_initial_loss if monitor is not None else None

    def lr_hint(self, factor: float) -> str:
        if self.lr is None:
            return "lower it about 10x" if factor < 1 else "raise it about 10x"
        return f"e.g. from {_lr_text(self.lr)} to {_lr_text(self.lr * factor)}"

    def run(self) -> list[Finding]:
        out: list[Finding] = []
        nan = self.nan()
        if nan:
            out.append(nan)
        out += self.gradients()
        initial = self.initial_loss()
        if initial:
            out.append(initial)
        units = self.units()
        high = self.lr_too_high()
        if high:
            out.append(high)
        elif not ({f.kind for f in out + units} & {"nan", "vanishing_gradients", "exploding_gradients",
                                                    "dead_relu"}):
            low = self.lr_too_low()  # a flat loss that those findings do not already explain
            if low:
                out.append(low)
        # A diverging run's validation curve says nothing about overfitting: name the cause only.
        diverging = {f.kind for f in out + units} & {"nan", "lr_too_high", "exploding_gradients"}
        over = None if diverging else self.overfitting()
        if over:
            out.append(over)
        return out + units

    # -- individual checks
    def nan(self) -> Finding | None:
        for key, series in (("loss", self.loss), ("val_loss", self.val)):
            for e, v in enumerate(series):
                if not math.isfinite(v):
                    return Finding("nan", f"the {key.replace('_', ' ')} became {v} at epoch {e + 1}: lower the "
                                          f"learning rate ({self.lr_hint(0.1)}), check the inputs for huge "
                                          f"values, and use the fused losses (SoftmaxCrossEntropy, "
                                          f"BinaryCrossEntropy(from_logits=True)) rather than the log of a "
                                          f"probability", {"epoch": e + 1, "value": v})
        for rec in ([self.first] if self.first else []) + self.records:
            for name, st in rec["layers"].items():
                g = st.get("grad_norm")
                if g is not None and not math.isfinite(g):
                    return Finding("nan", f"the gradient of {name} became {g} at epoch {rec['epoch'] + 1}: "
                                          f"lower the learning rate ({self.lr_hint(0.1)})",
                                   {"epoch": rec["epoch"] + 1, "value": g})
        return None

    def gradients(self) -> list[Finding]:
        if not self.records and self.first is None:
            return []
        seen: dict[str, Finding] = {}
        recs = ([self.first] if self.first is not None and self.first not in self.records else []) + self.records
        for rec in recs:
            for f in _gradient_findings(rec, self.first if rec is not self.first else None):
                seen.setdefault(f.kind, f)
        # Vanishing gradients that recover (e.g. while BatchNorm warms up) are fine: the last record decides.
        if "vanishing_gradients" in seen and self.records:
            last = _gradient_findings(self.records[-1], self.first)
            if not any(f.kind == "vanishing_gradients" for f in last):
                del seen["vanishing_gradients"]
        return list(seen.values())

    def initial_loss(self) -> Finding | None:
        if self.initial is None or self.expected is None:
            return None
        exp, got = self.expected, self.initial
        high = exp + max(INITIAL_ABS, INITIAL_REL * exp)
        if 0.5 * exp <= got <= high:
            return None
        side = "above" if got > high else "below"
        return Finding("bad_initial_loss",
                       f"the first mini-batch's loss {got:.4g} is far {side} the {exp:.4g} an untrained model "
                       f"gives (uniform predictions): check the initial weights' scale (init='he' for ReLU, "
                       f"'xavier' for tanh/sigmoid and the output layer), the final activation / loss pairing "
                       f"and the input scaling; gs.diagnostics.check_initial_loss names the cause",
                       {"expected": exp, "measured": got})

    def lr_too_high(self) -> Finding | None:
        loss = self.loss
        if not loss:
            return None
        bad = next((e for e, v in enumerate(loss) if not math.isfinite(v)), None)
        if bad is not None:
            # fit rejects NaN/inf data and the fused losses are stable: a loss that turns NaN diverged.
            return Finding("lr_too_high",
                           f"the training loss diverges to {loss[bad]} in epoch {bad + 1}: lower the learning "
                           f"rate, {self.lr_hint(0.1)}", {"epoch": bad + 1, "lr": self.lr})
        # Blown up within the first epoch: its average is far above the first batch's loss.
        if self.initial is not None and loss[0] > 1.5 * self.initial and loss[0] > self.initial + 0.5:
            return Finding("lr_too_high",
                           f"the training loss blows up in the first epoch (first batch {_fmt(self.initial)}, "
                           f"epoch 1 average {_fmt(loss[0])}): lower the learning rate, {self.lr_hint(0.1)}",
                           {"initial_loss": self.initial, "epoch1_loss": loss[0], "lr": self.lr})
        # Diverging: the loss grows well above its best, or ends above where the run began.
        best = int(np.argmin(loss))
        if best < len(loss) - 1 and (loss[-1] > 1.1 * loss[0] or loss[-1] > 1.5 * loss[best] + 0.05):
            return Finding("lr_too_high",
                           f"the training loss diverges: it grows from epoch {best + 1} ({_fmt(loss[best])}) "
                           f"to {_fmt(loss[-1])} at epoch {len(loss)}: lower the learning rate, "
                           f"{self.lr_hint(0.1)}",
                           {"best_epoch": best + 1, "best_loss": loss[best], "final_loss": loss[-1],
                            "lr": self.lr})
        # Oscillating: the loss jumps up (by more than 5%) in at least 40% of the epochs and makes
        # little net progress; a converged run's plateau wobbles by far less.
        if len(loss) >= 4:
            diffs = np.diff(loss)
            ups = int(np.sum(diffs > 0.05 * np.abs(np.asarray(loss[:-1]))))
            net = (loss[0] - loss[-1]) / max(abs(loss[0]), 1e-12)
            if ups >= max(2, 0.4 * len(diffs)) and net < 0.2:
                return Finding("lr_too_high",
                               f"the training loss oscillates (it rose in {ups} of {len(diffs)} epochs and fell "
                               f"only {net:.0%} overall): lower the learning rate, {self.lr_hint(0.3)}",
                               {"rises": ups, "epochs": len(loss), "net_decrease": net, "lr": self.lr})
        return None

    def lr_too_low(self) -> Finding | None:
        loss = self.loss
        if len(loss) < 2 or not all(math.isfinite(v) for v in loss):
            return None
        drop = (loss[0] - loss[-1]) / max(abs(loss[0]), 1e-12)
        r = self.records[-1].get("update_ratio") if self.records else None
        tiny_steps = r is not None and math.isfinite(r) and r < TINY_UPDATE_RATIO
        # Flat, or creeping down with tiny updates while the model is still far from learning.
        creeping = tiny_steps and drop < SLOW_DECREASE and bool(self.acc) and self.acc[-1] < 0.5
        if drop >= FLAT_DECREASE and not creeping:
            return None
        # A run that has converged is flat too: only a loss that stays flat well above zero counts.
        if self.acc and self.acc[-1] > 0.95:
            return None
        if self.initial is not None and loss[-1] < 0.2 * self.initial:
            return None
        ratio = ""
        evidence = {"epoch1_loss": loss[0], "final_loss": loss[-1], "decrease": drop, "lr": self.lr}
        if tiny_steps:
            ratio = f"; each step changes the weights by {r:.2g} of their size (about 1e-3 is healthy)"
            evidence["update_ratio"] = r
        return Finding("lr_too_low",
                       f"the training loss is flat ({_fmt(loss[0])} at epoch 1, {_fmt(loss[-1])} at epoch "
                       f"{len(loss)}, {drop:.1%} lower){ratio}: raise the learning rate, {self.lr_hint(10.0)}",
                       evidence)

    def overfitting(self) -> Finding | None:
        val, loss = self.val, self.loss
        if len(val) < 3 or len(val) != len(loss) or not all(math.isfinite(v) for v in val + loss):
            return None
        best = int(np.argmin(val))
        if best >= len(val) - 1:
            return None  # the validation loss is still at its lowest
        rise = val[-1] / max(val[best], 1e-12) - 1.0
        gap_best, gap_last = val[best] - loss[best], val[-1] - loss[-1]
        # The validation loss rises clearly (by more than OVERFIT_RISE over its best) while the
        # training loss keeps falling and the gap widens. A rise of a few percent after the best
        # epoch is the ordinary end of a healthy run (seen on digits with Adam, BatchNorm or SGD
        # momentum: 2-7%), and stays quiet.
        if loss[-1] < loss[best] and gap_last > gap_best and rise > OVERFIT_RISE:
            return Finding("overfitting",
                           f"overfitting: the validation loss is lowest at epoch {best + 1} ({val[best]:.4g}) and "
                           f"rises to {val[-1]:.4g} while the training loss falls to {loss[-1]:.3g} (gap "
                           f"{gap_best:.3g} -> {gap_last:.3g}): stop at epoch {best + 1} (EarlyStopping), add L2 "
                           f"(e.g. l2=1e-3) or Dropout(0.5), use more data or a smaller model",
                           {"best_epoch": best + 1, "best_val_loss": val[best], "final_val_loss": val[-1],
                            "final_loss": loss[-1], "gap": gap_last})
        return None

    def units(self) -> list[Finding]:
        if not self.records:
            return []
        rec = self.records[-1]
        out: list[Finding] = []

        def worst(key: str) -> tuple[str, float] | None:
            vals = [(n, st[key]) for n, st in rec["layers"].items()
                    if key in st and st.get("hidden", True) and math.isfinite(st.get("mean", math.nan))]
            return max(vals, key=lambda t: t[1], default=None)

        dead = worst("dead")
        if dead and dead[1] >= DEAD_FRACTION:
            name, frac = dead
            out.append(Finding("dead_relu",
                               f"{frac:.0%} of the units of {name} output 0 for a whole batch (dead ReLUs) at epoch "
                               f"{rec['epoch'] + 1}: start the biases at 0 with init='he', lower the learning "
                               f"rate ({self.lr_hint(0.1)}), or use LeakyReLU(0.01)",
                               {"epoch": rec["epoch"] + 1, "dead_fraction": frac}))
        sat = worst("saturated")
        if sat and sat[1] >= SATURATED_FRACTION:
            name, frac = sat
            out.append(Finding("saturation",
                               f"{frac:.0%} of the outputs of {name} are saturated (in the flat tails, where the "
                               f"gradient is ~0) at epoch {rec['epoch'] + 1}: start from smaller weights "
                               f"(init='xavier'), standardize the inputs, add BatchNorm before the activation, "
                               f"or use ReLU",
                               {"epoch": rec["epoch"] + 1, "saturated_fraction": frac}))
        return out
