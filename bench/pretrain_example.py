"""The README's pre-training example: a deep sigmoid net on the digits, from random small weights
and from greedy layer-wise autoencoder pre-training, fine-tuned with the same budget.

    PYTHONPATH=python python bench/pretrain_example.py            # ~1 minute on one core
    PYTHONPATH=python python bench/pretrain_example.py --optimizer adam --lr 1e-3 --plot ''

Net: 64-100-100-100-100-10, sigmoid hidden units, every weight drawn from N(0, 0.01²)
(init="normal"), softmax cross-entropy. Data: the 8x8 digits scaled to [0, 1], a stratified 75/25
train/test split (seed 0). Arms, each over the seeds:
- random:     fine-tune from the random weights;
- pretrained: `gs.pretrain.autoencoders` first (its defaults: binary cross-entropy autoencoders,
              Adam 1e-2, batch 32; --pretrain-epochs per layer);
- denoising:  the same with masking noise (each input zeroed with probability --noise);
- xavier:     for context, no pre-training but Glorot-scaled random weights (init="xavier"), the
              remedy the notes list beside pre-training (--no-xavier leaves it out).
Fine-tuning: the same optimizer, epochs and batch size for every arm. A GradientMonitor records
per-layer weight-gradient norms. Prints markdown tables; writes the plot (--plot) and, with
--json, every number.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import gradstep as gs

SIZES = (64, 100, 100, 100, 100, 10)


def build(seed: int, init: str = "normal") -> gs.Sequential:
    layers = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        layers += [gs.Dense(a, b, init=init), gs.Sigmoid()]
    layers.append(gs.Dense(SIZES[-2], SIZES[-1], init=init))
    return gs.Sequential(layers, seed=seed)


def optimizer(args: argparse.Namespace):
    if args.optimizer == "sgd":
        return gs.SGD(lr=args.lr, momentum=0.9)
    return gs.Adam(lr=args.lr)


def run(arm: str, seed: int, data, args) -> dict:
    Xtr, Xte, ytr, yte = data
    model = build(seed, "xavier" if arm == "xavier" else "normal")
    t0 = time.perf_counter()
    pre = None
    if arm in ("pretrained", "denoising"):
        pre = gs.pretrain.autoencoders(model, Xtr, epochs=args.pretrain_epochs, batch_size=32,
                                       noise=args.noise if arm == "denoising" else 0.0,
                                       seed=seed, verbose=0)
    t_pre = time.perf_counter() - t0
    model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=optimizer(args), metrics=["accuracy"])
    monitor = gs.callbacks.GradientMonitor()
    t0 = time.perf_counter()
    history = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=32, callbacks=[monitor], verbose=0, seed=seed)
    t_fit = time.perf_counter() - t0
    first, last = "0.Dense", f"{len(model.layers) - 1}.Dense"
    init = monitor.initial_record["layers"]
    return {
        "arm": arm, "seed": seed,
        "test_accuracy": model.evaluate(Xte, yte)["accuracy"],
        "loss": history["loss"],
        "grad_first_initial": init[first]["grad_norm"], "grad_last_initial": init[last]["grad_norm"],
        "grad_first": monitor.series(first, "grad_norm"), "grad_last": monitor.series(last, "grad_norm"),
        "saturated_first_initial": init["1.Sigmoid"].get("saturated"),
        "flags": [f.kind for f in monitor.flags],
        "pretrain_losses": None if pre is None else pre.losses,
        "seconds_pretrain": t_pre, "seconds_fit": t_fit,
    }


def plot(results: list[dict], arms: list[str], args, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"random": "tab:red", "pretrained": "tab:blue", "denoising": "tab:green", "xavier": "tab:gray"}
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(12, 4.2))
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        epochs = np.arange(1, len(runs[0]["loss"]) + 1)
        for j, r in enumerate(runs):
            label = f"{arm} (test acc. {np.mean([q['test_accuracy'] for q in runs]):.3f})" if j == 0 else None
            ax_l.plot(epochs, r["loss"], color=colors[arm], alpha=0.8, lw=1.2, label=label)
            # epoch 0: the first step of the fine-tuning (the monitor's initial record)
            ax_g.plot(np.concatenate([[0], epochs]), [r["grad_first_initial"]] + r["grad_first"], color=colors[arm],
                      alpha=0.8, lw=1.2, label=arm if j == 0 else None)
    ax_l.set_xlabel("fine-tuning epoch")
    ax_l.set_ylabel("training loss (softmax cross-entropy)")
    ax_l.set_title(f"64-100-100-100-100-10 sigmoid, N(0, 0.01²) weights (xavier: Glorot)\n{args.optimizer} "
                   f"lr={args.lr:g}, {len(args.seeds)} seeds, {args.pretrain_epochs} pre-training epochs per layer",
                   fontsize=10)
    ax_l.grid(alpha=0.3)
    ax_l.legend()
    ax_g.set_yscale("log")
    ax_g.set_xlabel("fine-tuning epoch (0: first step)")
    ax_g.set_ylabel("weight-gradient norm, first layer")
    ax_g.set_title("GradientMonitor: first Dense layer (64 -> 100)")
    ax_g.grid(alpha=0.3)
    ax_g.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=50, help="fine-tuning epochs (every arm)")
    p.add_argument("--pretrain-epochs", type=int, default=10, help="autoencoder epochs per hidden layer")
    p.add_argument("--noise", type=float, default=0.2, help="masking probability of the denoising arm")
    p.add_argument("--no-xavier", action="store_true", help="leave out the xavier-init arm")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="fine-tuning (sgd: momentum 0.9)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--plot", default="docs/pretrain_example.png", help="'' for none")
    p.add_argument("--json", default="", help="write every number here")
    args = p.parse_args()

    X, y = gs.datasets.load_digits()
    data = gs.datasets.train_val_split(X / 16.0, y, val=0.25, seed=0)
    arms = (["random", "pretrained"] + (["denoising"] if args.noise > 0 else [])
            + ([] if args.no_xavier else ["xavier"]))
    results = [run(arm, seed, data, args) for seed in args.seeds for arm in arms]

    print(f"fine-tuning: {args.optimizer} lr={args.lr:g}{' momentum 0.9' if args.optimizer == 'sgd' else ''}, "
          f"{args.epochs} epochs, batch 32; pre-training: {args.pretrain_epochs} epochs per layer, Adam 1e-2"
          f"; train {len(data[0])}, test {len(data[1])} digits\n")
    print("| arm | test accuracy per seed " + str(args.seeds) + " | mean | final training loss (mean) |")
    print("|---|---|---|---|")
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        accs = [r["test_accuracy"] for r in runs]
        print(f"| {arm} | {', '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} | "
              f"{np.mean([r['loss'][-1] for r in runs]):.3f} |")
    print("\nGradientMonitor, weight-gradient norms (median over seeds): first layer (64->100) and output "
          "layer (100->10), at the first step and in the first and last epochs; flags raised\n")
    print("| arm | first layer, step 1 | output layer, step 1 | ratio | first layer, epoch 1 | "
          "first layer, last epoch | flags |")
    print("|---|---|---|---|---|---|---|")
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        med = lambda key: float(np.median([r[key] for r in runs]))  # noqa: E731
        f0, l0 = med("grad_first_initial"), med("grad_last_initial")
        e1 = float(np.median([r["grad_first"][0] for r in runs]))
        en = float(np.median([r["grad_first"][-1] for r in runs]))
        flags = sorted({k for r in runs for k in r["flags"]})
        print(f"| {arm} | {f0:.2e} | {l0:.2e} | {f0 / l0:.1e} | {e1:.2e} | {en:.2e} | {', '.join(flags) or '-'} |")
    secs = {arm: (np.mean([r["seconds_pretrain"] for r in results if r["arm"] == arm]),
                  np.mean([r["seconds_fit"] for r in results if r["arm"] == arm])) for arm in arms}
    print("\nseconds per run (pre-training + fine-tuning, shared machine): " +
          ", ".join(f"{arm} {a:.1f} + {b:.1f}" for arm, (a, b) in secs.items()))
    if args.plot:
        plot(results, arms, args, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
