"""`gradstep train`: train an MLP on `--data` and save it, with its preprocessing, class values
and column names, to one model file.

    gradstep train --data my.csv --target label --layers 64 --epochs 30 --out m.safetensors

Ctrl-C stops after the batch in progress, saves what was trained so far to `--out` and exits
with status 130; `--resume FILE` continues a run saved by `--out` or `--checkpoint` (the same
data, split, seed and batch size, which the file remembers) and gives the weights an
uninterrupted run would have given when it resumes from the end of an epoch.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from . import common, data
from .common import UsageError

# What a resumed run takes from the model file rather than the flags (they fix the split, the
# shuffling and the data's meaning); the architecture and optimizer come from the file as well.
RESUMED_SETTINGS = ("seed", "val", "test", "batch_size", "task", "target")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train an MLP and save it",
                              description="Train an MLP on --data; print the test score; save the model "
                                          "with its input standardization, class values and column names.")
    common.add_data_and_model_flags(p)
    g = p.add_argument_group("output and control")
    g.add_argument("--out", default="model.safetensors", help="where to save the trained model ('' to skip)")
    g.add_argument("--plot", default="curves.png", help="PNG of the loss/accuracy curves ('' to skip)")
    g.add_argument("--early-stopping", type=common.positive_int, default=None, metavar="PATIENCE",
                   help="stop when the validation loss has not improved for PATIENCE epochs and keep the "
                        "best weights (default: off)")
    g.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="save the model to PATH after every epoch (default: off)")
    g.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run saved in PATH up to --epochs epochs in all (default: a new run)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("pre-training")
    g.add_argument("--pretrain", type=common.nonneg_int, default=0, metavar="EPOCHS",
                   help="first pre-train each hidden layer greedily as an autoencoder for EPOCHS epochs "
                        "(gs.pretrain.autoencoders; default: off)")
    g.add_argument("--pretrain-noise", type=common.float_in(0.0, 1.0, hi_open=True), default=0.0, metavar="P",
                   help="denoising pre-training: zero each autoencoder input with probability P")
    return p


def _load_resumed(path: str) -> Any:
    import gradstep as gs
    try:
        model = gs.load(path)
    except FileNotFoundError:
        raise UsageError(f"--resume: no such file {path!r}") from None
    except ValueError as e:
        raise UsageError(f"--resume: {e}") from None
    settings = model.metadata.get("cli")
    if not isinstance(settings, dict) or not set(RESUMED_SETTINGS) <= set(settings) or model.loss is None:
        raise UsageError(f"--resume: {path!r} was not written by `gradstep train` (no training settings in it)")
    return model


def run(args: Any) -> int:
    import gradstep as gs

    common.set_threads(args)
    for flag in ("out", "checkpoint"):
        common.check_output_path(f"--{flag}", getattr(args, flag))
    common.check_png_path("--plot", args.plot)
    if args.pretrain_noise > 0 and not args.pretrain:
        raise UsageError("--pretrain-noise: give the pre-training epochs too (--pretrain EPOCHS)")
    if args.pretrain and args.resume:
        raise UsageError("--pretrain: a resumed run continues from its saved weights; pre-train a new run instead")

    model = None
    if args.resume:
        model = _load_resumed(args.resume)
        settings = model.metadata["cli"]
        for key in RESUMED_SETTINGS:
            setattr(args, key, settings[key])
        print(f"resuming {args.resume}: {model.epochs_done} epoch(s) done of --epochs {args.epochs}; the split, "
              f"seed ({args.seed}), batch size ({args.batch_size}) and model come from the file")
    prep = data.prepare(args)
    task = prep.task
    print(f"task: {task.name} ({task.why})")
    if model is None:
        model = common.build_model(prep.X_train.shape[1], task.n_outputs, args, task.classification)
        model.build(prep.X_train.shape[1:])  # shapes known now: summary() shows them
        model.preprocessing = prep.standardize
        model.classes_ = task.classes
        model.feature_names_in_ = prep.table.feature_names
        model.metadata = {"cli": {"seed": args.seed, "val": args.val, "test": args.test, "batch_size": args.batch_size,
                                  "task": task.name, "target": prep.table.target_name}}
        if args.pretrain:
            # on the rows fit will train on (validation_split holds out the last ones)
            n_fit = prep.X_train.shape[0] - int(prep.X_train.shape[0] * args.val)
            result = gs.pretrain.autoencoders(model, prep.X_train[:n_fit], epochs=args.pretrain,
                                              batch_size=args.batch_size,
                                              noise=args.pretrain_noise, seed=args.seed, verbose=0)
            print(f"pre-trained the hidden layers as autoencoders ({args.pretrain} epochs each):\n{result.table()}")
    else:
        _check_resumed_data(model, prep)
    print(prep.describe())
    print(model.summary())

    callbacks: list = []
    if args.early_stopping:
        callbacks.append(gs.callbacks.EarlyStopping(patience=args.early_stopping, restore_best=True))
    if args.checkpoint:
        callbacks.append(gs.callbacks.ModelCheckpoint(args.checkpoint, save_best_only=False))
    epochs = args.epochs - model.epochs_done
    history = None
    if epochs < 1:
        print(f"the model has trained {model.epochs_done} epoch(s) already: nothing to do for --epochs {args.epochs}")
    else:
        try:
            history = model.fit(prep.X_train, prep.y_train, epochs=epochs, batch_size=args.batch_size,
                                validation_split=args.val, callbacks=callbacks,
                                verbose=0 if args.quiet else 1, seed=args.seed)
        except KeyboardInterrupt:
            return _interrupted(model, args)
        last = {k: v[-1] for k, v in history.history.items()}
        print("final epoch: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
        stopped = next((cb for cb in callbacks if isinstance(cb, gs.callbacks.EarlyStopping)), None)
        if stopped is not None and getattr(stopped, "stopped_epoch", None):
            print(f"early stopping after epoch {stopped.stopped_epoch + 1}: kept the weights of the best epoch")
    result = model.evaluate(prep.X_test, prep.y_test)
    n_test = prep.X_test.shape[0]
    if task.classification:
        print(f"test accuracy: {result['accuracy']:.4f} ({n_test} samples), test loss: {result['loss']:.4f}")
    else:
        print(f"test mse loss: {result['loss']:.4g}, test mae: {result['mae']:.4g} ({n_test} samples)")
    if args.out:
        model.save(args.out)
        print(f"model saved to {args.out}")
    if args.plot and history is not None:
        import matplotlib.pyplot as plt
        plt.close(gs.plot.history(history, args.plot))
        print(f"curves plotted to {args.plot}")
    return 0


def _check_resumed_data(model: Any, prep: data.Prepared) -> None:
    names = prep.table.feature_names
    if model.feature_names_in_ is not None and names is not None and list(model.feature_names_in_) != names:
        raise UsageError(f"--resume: the model was trained on the columns {model.feature_names_in_}, --data has {names}")
    if prep.X_train.shape[1] != model.in_features:
        raise UsageError(f"--resume: the model takes {model.in_features} features, --data has {prep.X_train.shape[1]}")
    classes = prep.task.classes
    if (classes is None) != (model.classes_ is None) or (
            classes is not None and not np.array_equal(classes, model.classes_)):
        raise UsageError("--resume: --data does not hold the classes the model was trained on")


def _interrupted(model: Any, args: Any) -> int:
    where = ""
    if model.interrupted_at is not None:
        epoch, done, total = model.interrupted_at
        where = f" in epoch {epoch + 1} after batch {done} of {total}"
    if args.out:
        model.save(args.out)
        print(f"\ngradstep: interrupted{where}: saved the model as trained so far to {args.out} "
              f"({model.epochs_done} complete epoch(s); `--resume {args.out}` continues)", file=sys.stderr)
    else:
        print(f"\ngradstep: interrupted{where}: nothing saved (--out '')", file=sys.stderr)
    return 130
