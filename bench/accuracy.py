"""The default `gradstep train` recipe against PyTorch trained with the same recipe, same run.

    python bench/accuracy.py [--seeds 3]

Recipe (the CLI's defaults): digits standardized with scikit-learn's scaler fit on the training
part, a stratified 20% test split, 20% of the rest held out for validation, 64-128-64-10 ReLU
(He init; Xavier for the output layer), Adam lr 1e-3, batch 32, 20 epochs, shuffled each epoch.
PyTorch gets the same split, the same initial weights and the same batch order. Reports the test
accuracy of each and the wall time of training.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def run(seed: int) -> dict[str, float]:
    import torch
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    import gradstep as gs
    X, y = gs.datasets.load_digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr).astype(np.float32), scaler.transform(X_te).astype(np.float32)
    n_val = int(len(X_tr) * 0.2)
    X_fit, y_fit = X_tr[:-n_val], y_tr[:-n_val]

    model = gs.Sequential([gs.Dense(64, 128, init="he"), gs.ReLU(), gs.Dense(128, 64, init="he"), gs.ReLU(),
                           gs.Dense(64, 10, init="xavier")], seed=seed)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3), metrics=["accuracy"])
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                 torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        for lin, d in zip([tmodel[0], tmodel[2], tmodel[4]], [model.layers[0], model.layers[2], model.layers[4]]):
            lin.weight.copy_(torch.from_numpy(d.params["weight"].T.copy()))
            lin.bias.copy_(torch.from_numpy(d.params["bias"].copy()))
    opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3, fused=True)

    t0 = time.perf_counter()
    model.fit(X_tr, y_tr, epochs=20, batch_size=32, validation_split=0.2, verbose=0, seed=seed)
    t_gs = time.perf_counter() - t0

    tX, ty = torch.from_numpy(X_fit), torch.from_numpy(y_fit)
    Xv = torch.from_numpy(X_tr[-n_val:])
    t0 = time.perf_counter()
    for epoch in range(20):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(X_fit)))
        for i in range(0, len(X_fit), 32):
            idx = order[i:i + 32]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(tmodel(tX[idx]), ty[idx]).backward()
            opt.step()
        with torch.no_grad():  # the same per-epoch validation pass fit does
            tmodel(Xv)
    t_torch = time.perf_counter() - t0
    with torch.no_grad():
        acc_torch = float((tmodel(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean())
    acc_gs = model.evaluate(X_te, y_te)["accuracy"]
    return {"gs_acc": acc_gs, "torch_acc": acc_torch, "gs_s": t_gs, "torch_s": t_torch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    import gradstep as gs
    gs.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows = [run(s) for s in range(args.seeds)]
    print("| seed | gradstep test acc | PyTorch test acc | gradstep s | PyTorch s |")
    print("|---|---|---|---|---|")
    for s, r in enumerate(rows):
        print(f"| {s} | {r['gs_acc']:.4f} | {r['torch_acc']:.4f} | {r['gs_s']:.2f} | {r['torch_s']:.2f} |")
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    print(f"| mean | {mean['gs_acc']:.4f} | {mean['torch_acc']:.4f} | {mean['gs_s']:.2f} | {mean['torch_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
