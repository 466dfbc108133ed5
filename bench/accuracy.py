"""The default `gradstep train` recipe against PyTorch trained with the same recipe, same run.

    python bench/accuracy.py [--seeds 3] [--recipe dense|digits-cnn|mnist1d-cnn]

Recipe (the CLI's defaults): digits standardized with scikit-learn's scaler fit on the training
part, a stratified 20% test split, 20% of the rest held out for validation, 64-128-64-10 ReLU
(He init; Xavier for the output layer), Adam lr 1e-3, batch 32, 20 epochs, shuffled each epoch.
PyTorch gets the same split, the same initial weights and the same batch order. Reports the test
accuracy of each and the wall time of training.

The CNN recipes (issue 8) train with the same split, initial weights and batch order on both sides:
- digits-cnn: the 8x8 digits as (N, 1, 8, 8) images scaled to [0, 1], the same stratified 20% test
  split and 20% validation hold-out as the dense recipe; conv3x3 1->16 pad 1, ReLU, max-pool 2,
  conv3x3 16->32 pad 1, ReLU, max-pool 2, Dense 128->10; Adam lr 3e-3, batch 32, 40 epochs.
- mnist1d-cnn: `mnist1d.data.make_dataset(get_dataset_args())` (built locally: 4000 train /
  1000 test signals of length 40; `get_dataset` would download and is never called); the authors'
  CNN: Conv1D 1->25 k5, two Conv1D 25->25 k3, all stride 2 padding 1, ReLU, Dense 125->10;
  Adam lr 1e-2, batch 100, 150 epochs (6000 steps).
The gradstep side runs `Sequential.train_step` (falling back to a layer-by-layer loop where
Sequential does not take image input); both give the same bits.
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


def _cnn_data(recipe: str, seed: int):
    """(X_fit, y_fit, X_test, y_test, layers builder, lr, batch, epochs) for a CNN recipe."""
    import gradstep as gs
    if recipe == "digits-cnn":
        from sklearn.model_selection import train_test_split
        X, y = gs.datasets.load_digits(images=True)
        X = X / np.float32(16.0)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
        n_val = int(len(X_tr) * 0.2)
        return X_tr[:-n_val], y_tr[:-n_val], X_te, y_te, "digits_cnn", 3e-3, 32, 40
    from mnist1d.data import get_dataset_args, make_dataset
    d = make_dataset(get_dataset_args())
    X = np.ascontiguousarray(d["x"], np.float32)[:, None, :]
    Xt = np.ascontiguousarray(d["x_test"], np.float32)[:, None, :]
    return X, np.asarray(d["y"], np.int64), Xt, np.asarray(d["y_test"], np.int64), "mnist1d_cnn", 1e-2, 100, 150


def run_cnn(recipe: str, seed: int) -> dict[str, float]:
    import torch

    import gradstep as gs
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
    import compare_conv

    X_fit, y_fit, X_te, y_te, builder, lr, batch, epochs = _cnn_data(recipe, seed)
    gs.seed(seed)
    layers = getattr(compare_conv, builder)(gs)
    layers[-1] = gs.Dense(layers[-1].in_features, 10, init="xavier", seed=seed)
    tmodel = compare_conv.torch_twin(layers)
    shape = X_fit.shape[1:]
    try:  # the fused step where Sequential takes image input, else a layer-by-layer loop
        model = gs.Sequential(layers, input_shape=shape)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=lr))
        model.forward(X_fit[:2])
        step, path = model.train_step, "Sequential.train_step"
    except (TypeError, ValueError):
        params = [p for l in layers for p in l.parameters()]
        opt, loss = gs.Adam(lr=lr), gs.SoftmaxCrossEntropy()

        def step(xb, yb):
            h = xb
            for l in layers:
                h = l.forward(h)
            loss.forward(h, yb)
            g = loss.backward()
            for l in reversed(layers):
                g = l.backward(g)
            opt.step(params)
        path = "layer-by-layer loop"
    print(f"seed {seed}: gradstep trains with {path}", file=sys.stderr)
    topt = torch.optim.Adam(tmodel.parameters(), lr=lr, fused=True)
    orders = [np.random.default_rng([seed, e]).permutation(len(X_fit)) for e in range(epochs)]

    t0 = time.perf_counter()
    for order in orders:
        for i in range(0, len(X_fit), batch):
            idx = order[i:i + batch]
            step(X_fit[idx], y_fit[idx])
    t_gs = time.perf_counter() - t0

    tX, ty = torch.from_numpy(X_fit), torch.from_numpy(y_fit)
    t0 = time.perf_counter()
    for order in orders:
        o = torch.from_numpy(order)
        for i in range(0, len(X_fit), batch):
            idx = o[i:i + batch]
            topt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(tmodel(tX[idx]), ty[idx]).backward()
            topt.step()
    t_torch = time.perf_counter() - t0

    h = X_te
    for l in layers:
        h = l.forward(h, training=False)
    acc_gs = float((h.argmax(1) == y_te).mean())
    with torch.no_grad():
        acc_torch = float((tmodel(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean())
    return {"gs_acc": acc_gs, "torch_acc": acc_torch, "gs_s": t_gs, "torch_s": t_torch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recipe", default="dense", choices=["dense", "digits-cnn", "mnist1d-cnn"])
    args = p.parse_args(argv)
    import torch

    import gradstep as gs
    gs.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows = [run(s) if args.recipe == "dense" else run_cnn(args.recipe, s) for s in range(args.seeds)]
    print(f"recipe: {args.recipe}")
    print("| seed | gradstep test acc | PyTorch test acc | gradstep s | PyTorch s |")
    print("|---|---|---|---|---|")
    for s, r in enumerate(rows):
        print(f"| {s} | {r['gs_acc']:.4f} | {r['torch_acc']:.4f} | {r['gs_s']:.2f} | {r['torch_s']:.2f} |")
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    print(f"| mean | {mean['gs_acc']:.4f} | {mean['torch_acc']:.4f} | {mean['gs_s']:.2f} | {mean['torch_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
