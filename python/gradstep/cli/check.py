"""`gradstep check`: the babysitting checklist on the model and data that the flags describe.

    gradstep check [--data digits|FILE.npz|FILE.csv] [--layers 128,64] [--activation relu] ...

Runs, in order, on the training split (standardized as `gradstep train` does): the initial loss
against what an untrained model should give, a gradient check on a small batch (float64 copy),
overfitting a small subset, the learning-rate finder, and a short training run with a
GradientMonitor whose findings `diagnose` reports. As a linter does, it exits with status 1 when
it found something, 0 when every check passed, and 2 for a user's mistake (a bad flag or file).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from . import common, data
from .common import UsageError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `check` subcommand (the data and model flags of `train`, and its own)."""
    p = subparsers.add_parser("check", help="babysit a model: initial loss, gradient check, overfit a "
                                            "small subset, lr finder, a short monitored run")
    common.add_data_and_model_flags(p)
    p.set_defaults(epochs=5)  # the monitored run is a short one
    g = p.add_argument_group("checks")
    g.add_argument("--overfit-samples", type=common.positive_int, default=20,
                   help="samples the model must be able to overfit")
    g.add_argument("--overfit-steps", type=common.positive_int, default=1000,
                   help="full-batch steps allowed for overfitting them")
    g.add_argument("--gradcheck-samples", type=common.positive_int, default=8,
                   help="batch size of the gradient check")
    g.add_argument("--lr-steps", type=common.positive_int, default=100,
                   help="mini-batches of the learning-rate sweep")
    g.add_argument("--lr-plot", default="", help="PNG of the learning-rate finder's curve (default: none)")
    g.add_argument("--gradients-plot", default="", help="PNG of the monitored run's gradient norms (default: none)")
    return p


def _save(fig: Any) -> None:
    """Close a figure the plot function already saved (a command keeps none open)."""
    import matplotlib.pyplot as plt
    plt.close(fig)


def _section(number: int, title: str) -> None:
    print(f"\n{number}. {title}")


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line for line in str(text).splitlines())


def run(args: Any) -> int:
    """Run the checklist and print the report; returns the exit status (1 with findings, else 0)."""
    import gradstep as gs

    from .. import diagnostics as diag

    common.set_threads(args)
    if args.lr_steps < 2:
        raise UsageError(f"--lr-steps: expected at least 2, got {args.lr_steps}")
    common.check_png_path("--lr-plot", args.lr_plot)
    common.check_png_path("--gradients-plot", args.gradients_plot)
    prep = data.prepare(args)
    task = prep.task
    # The checks work on the network's own inputs: standardized features and class indices.
    X_tr = prep.standardize.transform(prep.X_train)
    y_tr = prep.indices(prep.y_train) if task.classification else prep.y_train
    classification, n_out = task.classification, task.n_outputs
    n = X_tr.shape[0]
    if args.overfit_samples > n:
        raise UsageError(f"--overfit-samples: the training split has only {n} samples, got {args.overfit_samples}")
    model = common.build_model(X_tr.shape[1], n_out, args, classification)
    has_bn = any(isinstance(l, gs.BatchNorm) for l in model.layers)
    gc_n = min(args.gradcheck_samples, n)
    if has_bn and gc_n < 2:
        raise UsageError("--gradcheck-samples: BatchNorm needs at least 2")

    t_start = time.perf_counter()
    what = f"{n_out} classes" if classification else "regression"
    print(f"task: {task.name} ({task.why})")
    print(f"gradstep check: {args.data}: {n} training samples, {X_tr.shape[1]} features, {what} "
          f"(standardized inputs)")
    print(f"optimizer {type(model.optimizer).__name__}(lr={args.lr:g}), loss {type(model.loss).__name__}, "
          f"batch size {args.batch_size}, seed {args.seed}")
    print(model.summary())
    findings: list[tuple[str, Any]] = []

    _section(1, "initial loss (untrained model)")
    f = diag.check_initial_loss(model, X_tr, y_tr, seed=args.seed)
    print(_indent(f))
    findings.append(("initial loss", f))

    _section(2, f"gradient check (backprop against finite differences on {gc_n} samples)")
    rows = np.random.default_rng(args.seed).choice(n, size=gc_n, replace=False)
    report = diag.gradcheck(model, X_tr[rows], y_tr[rows], seed=args.seed)
    print(_indent(report))
    findings.append(("gradient check", report.finding()))

    _section(3, f"overfit {args.overfit_samples} samples (regularization off)")
    f = diag.overfit_small(model, X_tr, y_tr, n=args.overfit_samples, max_steps=args.overfit_steps,
                           seed=args.seed)
    print(_indent(f))
    findings.append(("overfit", f))

    _section(4, "learning-rate finder")
    result = diag.lr_find(model, X_tr, y_tr, steps=args.lr_steps, batch_size=args.batch_size, seed=args.seed)
    print(_indent(result))
    ratio = args.lr / result.suggestion
    if ratio > 10 or ratio < 0.1:
        print(_indent(f"note: --lr {args.lr:g} is {'above' if ratio > 1 else 'below'} the suggestion by "
                      f"{max(ratio, 1 / ratio):.0f}x; consider --lr {result.suggestion:.2g}"))
    if args.lr_plot:
        _save(gs.plot.lr_find(result, args.lr_plot))
        print(_indent(f"plotted to {args.lr_plot}"))

    _section(5, f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} with a GradientMonitor, then diagnose")
    monitor = diag.GradientMonitor()
    history = model.fit(X_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, validation_split=args.val,
                        callbacks=[monitor], verbose=0, seed=args.seed)
    h = history.history
    for e in range(len(h["loss"])):
        parts = [f"{k}={h[k][e]:.4g}" for k in h if k != "lr"]
        print(_indent(f"epoch {e + 1}: " + " ".join(parts)))
    if monitor.records:
        last = monitor.records[-1]
        for name, st in last["layers"].items():
            bits = [f"{k}={st[k]:.3g}" for k in ("grad_norm", "update_ratio", "mean", "std", "dead", "saturated")
                    if k in st]
            print(_indent(f"{name:<14} " + " ".join(bits)))
    diagnosed = diag.diagnose(history, monitor)
    if diagnosed:
        for f in diagnosed:
            print(_indent(f))
    else:
        print(_indent("[ok] diagnose found nothing wrong in this run"))
    findings += [("training run", f) for f in diagnosed]
    if args.gradients_plot:
        _save(gs.plot.gradients(monitor, args.gradients_plot))
        print(_indent(f"plotted to {args.gradients_plot}"))

    problems = [(where, f) for where, f in findings if not getattr(f, "ok", False)]
    print(f"\nsummary ({time.perf_counter() - t_start:.1f} s): "
          + (f"{len(problems)} finding{'s' if len(problems) != 1 else ''}" if problems else "no problems found"))
    for where, f in problems:
        print(f"  - {where}: [{f.kind}] {f.message}")
    return 1 if problems else 0
