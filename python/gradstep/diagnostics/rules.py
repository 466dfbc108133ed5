"""diagnose: name what went wrong in a training run from its History and a GradientMonitor."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..model import History
from .findings import Finding, _fmt, _lr_text
from .gradients import _gradient_findings
from .initial_loss import INITIAL_BATCH_HIGH, INITIAL_LOW
from .monitor import GradientMonitor

OVERFIT_RISE = 0.10  # validation-loss rise over its minimum that counts as overfitting
OVERFIT_GAP = 0.25   # ... and the final validation loss at least this fraction above the training loss
DEAD_FRACTION = 0.4           # fraction of a hidden ReLU layer's units that are 0 for a whole batch
SATURATED_FRACTION = 0.25     # fraction of a hidden sigmoid/tanh layer's outputs in the flat tails
FLAT_DECREASE = 0.05          # relative decrease of the training loss below this over a run: flat
SLOW_DECREASE = 0.25          # ... or below this with tiny updates and accuracy under 50%: creeping
TINY_UPDATE_RATIO = 1e-4      # update/weight ratio per step below this is tiny (about 1e-3 is healthy)


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
        self.scale = monitor.gradient_scale if monitor is not None else 1.0

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
            for f in _gradient_findings(rec, self.first if rec is not self.first else None, self.scale):
                seen.setdefault(f.kind, f)
        # Vanishing gradients that recover (e.g. while BatchNorm warms up) are fine: the last record decides.
        if "vanishing_gradients" in seen and self.records:
            last = _gradient_findings(self.records[-1], self.first, self.scale)
            if not any(f.kind == "vanishing_gradients" for f in last):
                del seen["vanishing_gradients"]
        return list(seen.values())

    def initial_loss(self) -> Finding | None:
        if self.initial is None or self.expected is None:
            return None
        exp, got = self.expected, self.initial
        high = INITIAL_BATCH_HIGH * exp
        if INITIAL_LOW * exp <= got <= high:
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
        # training loss keeps falling and the gap widens to more than OVERFIT_GAP of the training loss. A rise of a few percent after the best
        # epoch is the ordinary end of a healthy run (seen on digits with Adam, BatchNorm or SGD
        # momentum: 2-7%), and stays quiet.
        # And the two curves must have parted: a validation loss level with the training loss
        # (0.040 against 0.039) is no overfitting, whatever its own wobble.
        parted = gap_last > OVERFIT_GAP * max(loss[-1], 1e-12)
        if loss[-1] < loss[best] and gap_last > gap_best and rise > OVERFIT_RISE and parted:
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
