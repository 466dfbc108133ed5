"""gradstep on a GPU vs PyTorch CUDA (eager, and with CUDA graphs): one process, interleaved.

    python bench/compare_cuda.py [--repeats 7] [--out bench/results_cuda.md]

The MLP rows of bench/README.md, batch 32 to 8192. Both libraries get the same network (same
initial weights), the same batches already in device memory and the same optimizer (Adam, lr 1e-3;
PyTorch with fused=True, capturable=True for its graph). A training step is forward, softmax
cross-entropy, backward and the Adam update. gradstep's `train_step` returns the loss, so it waits
for each step; PyTorch's steps are timed as a user runs them, asynchronously, with one
synchronize at the end of a block. A round times each contender once (the order rotates); the
table reports the median ms per step over the rounds and the ratio PyTorch eager / gradstep.
"gradstep (numpy)" feeds host batches instead (a copy to the device per step).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

NETS = [
    ("784-256-128-10 ReLU", [784, 256, 128, 10], "relu"),
    ("64-128-64-10 ReLU", [64, 128, 64, 10], "relu"),
    ("20×128 tanh", [128] * 21 + [10], "tanh"),
]
BATCHES = [32, 128, 512, 1024, 2048, 8192]


def build_gradstep(sizes, act):
    import gradstep as gs
    Act = {"relu": gs.ReLU, "tanh": gs.Tanh}[act]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gs.Dense(a, b, init="he" if act == "relu" else "xavier"))
        if i < len(sizes) - 2:
            layers.append(Act())
    model = gs.Sequential(layers, seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
    return model


def build_torch(gmodel, act, graph: bool, x0, y0):
    import torch
    mods = []
    dense = [l for l in gmodel.layers if type(l).__name__ == "Dense"]
    for i, d in enumerate(dense):
        lin = torch.nn.Linear(d.in_features, d.out_features)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(d.params["weight"].T.copy()))
            lin.bias.copy_(torch.from_numpy(d.params["bias"].copy()))
        mods.append(lin)
        if i < len(dense) - 1:
            mods.append(torch.nn.ReLU() if act == "relu" else torch.nn.Tanh())
    model = torch.nn.Sequential(*mods).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=graph)
    loss_fn = torch.nn.CrossEntropyLoss()

    def eager(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    if not graph:
        return eager
    static_x, static_y = x0.clone(), y0.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            eager(static_x, static_y)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        static_loss = loss_fn(model(static_x), static_y)
        static_loss.backward()
        opt.step()

    def replay(xb, yb):
        static_x.copy_(xb)
        static_y.copy_(yb)
        g.replay()
        return static_loss
    return replay


def bench_row(sizes, act, batch, repeats):
    import torch

    import gradstep as gs
    rng = np.random.default_rng(0)
    n_batches = 8
    X = rng.standard_normal((n_batches * batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=n_batches * batch)
    xs = [X[i * batch:(i + 1) * batch] for i in range(n_batches)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(n_batches)]
    gmodel = build_gradstep(sizes, act)
    hmodel = build_gradstep(sizes, act)
    txs = [torch.from_numpy(x).cuda() for x in xs]
    tys = [torch.from_numpy(v).cuda() for v in ys]
    teager = build_torch(gmodel, act, False, txs[0], tys[0])
    tgraph = build_torch(gmodel, act, True, txs[0], tys[0])
    gmodel.to("cuda")
    hmodel.to("cuda")
    gxs = [gs.cuda.to_device(x) for x in xs]
    gys = [gs.cuda.to_device(v) for v in ys]

    def run_gs(steps):
        for s in range(steps):
            gmodel.train_step(gxs[s % n_batches], gys[s % n_batches])

    def run_gs_host(steps):
        for s in range(steps):
            hmodel.train_step(xs[s % n_batches], ys[s % n_batches])

    def torch_runner(step):
        def run(steps):
            for s in range(steps):
                step(txs[s % n_batches], tys[s % n_batches])
            torch.cuda.synchronize()
        return run

    fns = {"gradstep": run_gs, "gradstep (numpy)": run_gs_host, "torch eager": torch_runner(teager),
           "torch graph": torch_runner(tgraph)}
    for f in fns.values():  # warm up: graph capture, cuBLAS heuristics, allocator
        f(5)
    t0 = time.perf_counter()
    fns["torch eager"](5)
    per = (time.perf_counter() - t0) / 5
    steps = max(5, min(400, int(0.03 / max(per, 1e-6))))
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            t0 = time.perf_counter()
            fns[k](steps)
            times[k].append((time.perf_counter() - t0) / steps)
    # Same start, same batches: the first losses agree (a sanity check that both train the same net).
    check = build_gradstep(sizes, act).to("cuda").train_step(xs[0], ys[0])
    ref = build_torch(build_gradstep(sizes, act), act, False, txs[0], tys[0])(txs[0], tys[0]).item()
    return {k: statistics.median(v) for k, v in times.items()}, steps, check, ref


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None)
    p.add_argument("--nets", default=None, help="comma-separated net indices (default: all)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes")
    args = p.parse_args(argv)

    import torch

    import gradstep as gs
    if not gs.cuda.is_available():
        print(f"no GPU: {gs.cuda.unavailable_reason()}")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 GEMMs on both sides (cuBLAS's default)
    nets = NETS if args.nets is None else [NETS[int(i)] for i in args.nets.split(",")]
    batches = BATCHES if args.batches is None else [int(b) for b in args.batches.split(",")]
    lines = [f"GPU: {gs.cuda.get_device_name(0)}, gradstep {gs.__version__}, PyTorch {torch.__version__}",
             "",
             "| network | batch | gradstep ms | gradstep (numpy) ms | torch eager ms | torch graph ms | "
             "eager / gradstep | graph / gradstep | first loss gs / torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, sizes, act in nets:
        for batch in batches:
            med, steps, l_gs, l_t = bench_row(sizes, act, batch, args.repeats)
            line = (f"| {name} | {batch} | {med['gradstep'] * 1e3:.3f} | {med['gradstep (numpy)'] * 1e3:.3f} | "
                    f"{med['torch eager'] * 1e3:.3f} | {med['torch graph'] * 1e3:.3f} | "
                    f"{med['torch eager'] / med['gradstep']:.2f}× | {med['torch graph'] / med['gradstep']:.2f}× | "
                    f"{l_gs:.5f} / {l_t:.5f} |")
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
