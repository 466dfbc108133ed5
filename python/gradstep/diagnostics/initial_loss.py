"""check_initial_loss: an untrained model's loss against what knowing nothing gives."""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from .. import _checks
from .. import losses as _losses
from ..layers import activation as _act
from ..model import Sequential
from ._copies import _require_model, _subset
from .findings import Finding

# Classification: an initial loss (on up to 1000 samples) outside [INITIAL_LOW, INITIAL_HIGH] x the
# loss of uniform predictions (ln C) is bad. Logits of standard deviation s add about s^2/2 to ln C:
# 1.25 x ln 10 allows s up to ~1.1. He-initialized ReLU/ELU nets with a Xavier output layer start at
# 2.7 to 3.2 on standardized digits (flagged above 2.88, with the remedy: a smaller output layer
# init), tanh/Xavier nets at 2.4. The first mini-batch alone (what diagnose sees) is noisier: there
# the band is [INITIAL_LOW, INITIAL_BATCH_HIGH] x ln C.
INITIAL_LOW, INITIAL_HIGH, INITIAL_BATCH_HIGH = 0.5, 1.25, 2.0
# MSE: an initial loss above MSE_HIGH x the target variance is bad; above MSE_UNCENTRED x when the
# targets' mean squared exceeds MSE_OFFSET x their variance (the offset then dominates the loss).
MSE_HIGH, MSE_UNCENTRED, MSE_OFFSET = 10.0, 3.0, 2.0


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
        high = INITIAL_HIGH * expected
        low = INITIAL_LOW * expected
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
            return Finding("ok", f"the initial loss {measured:.4g} is within {measured / expected - 1:+.0%} of the "
                                 f"expected {why}", evidence)
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
        elif classification and not causes:
            causes.append(f"the untrained model's logits spread too much (standard deviation {out_std:.2g}; "
                          f"random logits of spread s add about s²/2 = {out_std ** 2 / 2:.2g} to ln C): start "
                          f"the output layer smaller, e.g. init='normal' (std 0.01) on the last Dense, so "
                          f"that training begins from uniform predictions")
        if not causes:
            causes.append("check the weight initialization (He for ReLU, Xavier otherwise), the final "
                          "activation / loss pairing and the input scaling")
        msg = (f"the initial loss {measured:.4g} is {measured / expected - 1:+.0%} above the expected {why} "
               f"(more than {INITIAL_HIGH - 1:.0%} above is a sign to look at); the usual causes: "
               + "; ".join(causes)) if classification else (
              f"the initial loss {measured:.4g} is far above the expected {why}; the usual causes: "
              + "; ".join(causes))
    else:
        if not causes:
            causes.append("is the model already trained, or do the labels leak into the inputs?")
        msg = (f"the initial loss {measured:.4g} is far below the expected {why}; "
               + "; ".join(causes))
    return Finding("bad_initial_loss", msg, evidence)
