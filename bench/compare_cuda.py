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
The conv rows (digits CNN on 1×8×8, LeNet-5 on 1×28×28; SGD momentum 0.9, lr 0.01) compare
gradstep with PyTorch eager at batch 32/128/512 (--conv-only runs just them, --no-conv skips them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import torch_dense_layers  # noqa: E402

NETS = [
    ("784-256-128-10 ReLU", [784, 256, 128, 10], "relu"),
    ("64-128-64-10 ReLU", [64, 128, 64, 10], "relu"),
    ("20×128 tanh", [128] * 21 + [10], "tanh"),
]
BATCHES = [32, 128, 512, 1024, 2048, 8192]
CONV_BATCHES = [32, 128, 512]


def conv_nets():
    """(name, per-sample input shape, gradstep layers) of the conv rows."""
    import gradstep as gs
    return [
        ("digits CNN", (1, 8, 8), lambda: [gs.Conv2D(1, 8, 3, padding=1), gs.ReLU(), gs.MaxPool2D(2),
                                            gs.Flatten(), gs.Dense(128, 10)]),
        ("LeNet-5", (1, 28, 28), lambda: [
            gs.Conv2D(1, 6, 5, padding=2), gs.ReLU(), gs.MaxPool2D(2), gs.Conv2D(6, 16, 5), gs.ReLU(),
            gs.MaxPool2D(2), gs.Flatten(), gs.Dense(400, 120), gs.ReLU(), gs.Dense(120, 84), gs.ReLU(),
            gs.Dense(84, 10)]),
    ]


def torch_mirror(gmodel):
    """The same network in PyTorch, with gradstep's initial weights (Dense stores (in, out))."""
    import torch
    mods = []
    for layer in gmodel.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            stride, pads, dilation = layer.kernel_args()
            m = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=stride,
                                padding=pads[:2], dilation=dilation)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.params["weight"].copy()))
                m.bias.copy_(torch.from_numpy(layer.params["bias"].copy()))
        elif kind == "Dense":
            m = torch.nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.params["weight"].T.copy()))
                m.bias.copy_(torch.from_numpy(layer.params["bias"].copy()))
        elif kind == "MaxPool2D":
            m = torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        else:
            m = {"ReLU": torch.nn.ReLU, "Flatten": torch.nn.Flatten}[kind]()
        mods.append(m)
    return torch.nn.Sequential(*mods).cuda()


def bench_conv_row(shape, make_layers, batch, repeats):
    import torch

    import gradstep as gs
    rng = np.random.default_rng(0)
    n_batches = 8
    xs = [rng.standard_normal((batch, *shape)).astype(np.float32) for _ in range(n_batches)]
    ys = [rng.integers(0, 10, size=batch) for _ in range(n_batches)]

    def make():
        model = gs.Sequential(make_layers(), seed=0, input_shape=shape)
        model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.01, momentum=0.9))
        return model
    gmodel = make()
    tmodel = torch_mirror(gmodel)
    gmodel.to("cuda")
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    gxs = [gs.cuda.to_device(x) for x in xs]
    gys = [gs.cuda.to_device(v) for v in ys]
    txs = [torch.from_numpy(x).cuda() for x in xs]
    tys = [torch.from_numpy(v).cuda() for v in ys]

    def torch_step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(tmodel(xb), yb)
        loss.backward()
        opt.step()
        return loss

    def run_gs(steps):
        for s in range(steps):
            gmodel.train_step(gxs[s % n_batches], gys[s % n_batches])

    def run_torch(steps):
        for s in range(steps):
            torch_step(txs[s % n_batches], tys[s % n_batches])
        torch.cuda.synchronize()

    # Same start, same batch: the first losses agree (both train the same net).
    check = make().to("cuda").train_step(xs[0], ys[0])
    ref = torch_mirror(make())
    ref_loss = loss_fn(ref(txs[0]), tys[0]).item()
    fns = {"gradstep": run_gs, "torch eager": run_torch}
    for f in fns.values():
        f(5)
    t0 = time.perf_counter()
    run_torch(5)
    steps = max(5, min(400, int(0.03 / max((time.perf_counter() - t0) / 5, 1e-6))))
    times = {k: [] for k in fns}
    for r in range(repeats):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[k](steps)
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}, check, ref_loss


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
    model = torch.nn.Sequential(*torch_dense_layers(gmodel, act)).cuda()
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
    p.add_argument("--conv-only", action="store_true", help="only the conv rows")
    p.add_argument("--no-conv", action="store_true", help="skip the conv rows")
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
    for name, sizes, act in ([] if args.conv_only else nets):
        for batch in batches:
            med, steps, l_gs, l_t = bench_row(sizes, act, batch, args.repeats)
            line = (f"| {name} | {batch} | {med['gradstep'] * 1e3:.3f} | {med['gradstep (numpy)'] * 1e3:.3f} | "
                    f"{med['torch eager'] * 1e3:.3f} | {med['torch graph'] * 1e3:.3f} | "
                    f"{med['torch eager'] / med['gradstep']:.2f}× | {med['torch graph'] / med['gradstep']:.2f}× | "
                    f"{l_gs:.5f} / {l_t:.5f} |")
            lines.append(line)
            print(line, flush=True)
    if not args.no_conv:
        head = ["", ("| conv network | batch | gradstep ms | torch eager ms | eager / gradstep | "
                     "first loss gs / torch |"), "|---|---|---|---|---|---|"]
        lines += head
        print("\n".join(head), flush=True)
        for name, shape, make_layers in conv_nets():
            for batch in CONV_BATCHES:
                med, l_gs, l_t = bench_conv_row(shape, make_layers, batch, args.repeats)
                line = (f"| {name} | {batch} | {med['gradstep'] * 1e3:.3f} | {med['torch eager'] * 1e3:.3f} | "
                        f"{med['torch eager'] / med['gradstep']:.2f}× | {l_gs:.5f} / {l_t:.5f} |")
                lines.append(line)
                print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
