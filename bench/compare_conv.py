"""gradstep vs PyTorch on small convolutional networks: one training step, one process, interleaved.

    python bench/compare_conv.py [--threads 2] [--repeats 15] [--rows 0,3] [--path auto|sequential|layers]

Networks (issue 8): (a) LeNet-5 on 1x28x28 at batch 32, 128, 512; (b) the digits CNN on 1x8x8 at
batch 32; (c) the mnist1d CNN on length-40 signals at batch 100. Both libraries get the same
network, the same initial weights (copied from gradstep's), the same batches and Adam (lr 1e-3;
PyTorch with fused=True, its fastest CPU option). The method is bench/compare.py's: a round times
`steps` training steps of gradstep, then the same of PyTorch (the order alternates between
rounds); the table has the median time per step and the ratio PyTorch / gradstep.

The gradstep side runs `model.train_step` when this branch's Sequential takes image input
(`--path sequential`), else a manual loop over the layers (`--path layers`: forward through each
layer, softmax cross-entropy, backward through each layer, one `gs.Adam.step` over all
parameters). `auto` picks the first that works and the output says which ran.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import machine_line  # noqa: E402


def time_rounds(fns: dict, steps: int, repeats: int, clock) -> dict[str, list[float]]:
    """bench/compare.py's interleaved rounds, with a choice of clock."""
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            t0 = clock()
            fns[k](steps)
            times[k].append((clock() - t0) / steps)
    return times


def lenet(gs):
    return [gs.Conv2D(1, 6, 5, padding=2), gs.ReLU(), gs.MaxPool2D(2),
            gs.Conv2D(6, 16, 5), gs.ReLU(), gs.MaxPool2D(2), gs.Flatten(),
            gs.Dense(400, 120), gs.ReLU(), gs.Dense(120, 84), gs.ReLU(), gs.Dense(84, 10)]


def digits_cnn(gs):
    return [gs.Conv2D(1, 16, 3, padding=1), gs.ReLU(), gs.MaxPool2D(2),
            gs.Conv2D(16, 32, 3, padding=1), gs.ReLU(), gs.MaxPool2D(2), gs.Flatten(),
            gs.Dense(128, 10)]


def mnist1d_cnn(gs):
    return [gs.Conv1D(1, 25, 5, stride=2, padding=1), gs.ReLU(),
            gs.Conv1D(25, 25, 3, stride=2, padding=1), gs.ReLU(),
            gs.Conv1D(25, 25, 3, stride=2, padding=1), gs.ReLU(), gs.Flatten(),
            gs.Dense(125, 10)]


ROWS = [
    # (name, builder, input shape without the batch, batch, target ratio)
    ("LeNet-5 1x28x28", lenet, (1, 28, 28), 32, 1.2),
    ("LeNet-5 1x28x28", lenet, (1, 28, 28), 128, 1.0),
    ("LeNet-5 1x28x28", lenet, (1, 28, 28), 512, 1.0),
    ("digits CNN 1x8x8", digits_cnn, (1, 8, 8), 32, 1.5),
    ("mnist1d CNN 1x40", mnist1d_cnn, (1, 40), 100, 1.5),
]


def torch_twin(layers):
    """The same network in torch.nn, with gradstep's initial weights."""
    import torch
    import gradstep as gs
    mods = []
    for l in layers:
        if isinstance(l, (gs.Conv1D, gs.Conv2D)):
            Conv = torch.nn.Conv1d if isinstance(l, gs.Conv1D) else torch.nn.Conv2d
            stride, pads, dilation = l.kernel_args()
            m = Conv(l.in_channels, l.out_channels, l.kernel_size, stride=stride,
                     padding=pads[:len(pads) // 2], dilation=dilation, bias=l.bias)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(l.params["weight"].copy()))
                if l.bias:
                    m.bias.copy_(torch.from_numpy(l.params["bias"].copy()))
        elif isinstance(l, gs.Dense):
            m = torch.nn.Linear(l.in_features, l.out_features)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(l.params["weight"].T.copy()))
                m.bias.copy_(torch.from_numpy(l.params["bias"].copy()))
        elif isinstance(l, gs.MaxPool2D):
            m = torch.nn.MaxPool2d(l.kernel_size, l.stride)
        elif isinstance(l, gs.ReLU):
            m = torch.nn.ReLU()
        elif isinstance(l, gs.Flatten):
            m = torch.nn.Flatten()
        else:
            raise TypeError(f"no PyTorch twin for {l!r}")
        mods.append(m)
    return torch.nn.Sequential(*mods)


def gradstep_step(layers, input_shape, path):
    """(step function, path that runs it)."""
    import gradstep as gs
    if path in ("auto", "sequential"):
        try:
            model = gs.Sequential(layers, input_shape=input_shape)
            model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
            probe = np.zeros((2, *input_shape), np.float32)
            model.forward(probe)  # raises on a Sequential without image support
            return model.train_step, "sequential (model.train_step)"
        except (TypeError, ValueError):
            if path == "sequential":
                raise
    loss = gs.SoftmaxCrossEntropy()
    opt = gs.Adam(lr=1e-3)
    params = [p for l in layers for p in l.parameters()]

    def step(xb, yb):
        h = xb
        for l in layers:
            h = l.forward(h)
        value = loss.forward(h, yb)
        g = loss.backward()
        for l in reversed(layers):
            g = l.backward(g)
        opt.step(params)
        return value
    return step, "layers (manual layer-by-layer loop, Python)"


def bench_row(builder, input_shape, batch, repeats, path, clock):
    import torch
    import gradstep as gs
    rng = np.random.default_rng(0)
    n_batches = 8
    X = rng.standard_normal((n_batches * batch, *input_shape)).astype(np.float32)
    y = rng.integers(0, 10, size=n_batches * batch)
    gs.seed(0)
    layers = builder(gs)
    tmodel = torch_twin(layers)
    gstep, used = gradstep_step(layers, input_shape, path)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def tstep(xb, yb):
        topt.zero_grad(set_to_none=True)
        loss = loss_fn(tmodel(xb), yb)
        loss.backward()
        topt.step()

    xs = [X[i * batch:(i + 1) * batch] for i in range(n_batches)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(n_batches)]
    txs = [torch.from_numpy(x) for x in xs]
    tys = [torch.from_numpy(v) for v in ys]

    def run_gs(steps):
        for s in range(steps):
            gstep(xs[s % n_batches], ys[s % n_batches])

    def run_torch(steps):
        for s in range(steps):
            tstep(txs[s % n_batches], tys[s % n_batches])

    run_gs(3)
    run_torch(3)
    t0 = clock()
    run_torch(5)
    per = (clock() - t0) / 5
    steps = max(3, int(0.04 / max(per, 1e-6)))  # ~40 ms per timed block
    t = time_rounds({"gradstep": run_gs, "torch": run_torch}, steps, repeats, clock)
    return {k: statistics.median(v) for k, v in t.items()}, used


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rows", default=None, help="comma-separated row indices (default: all)")
    p.add_argument("--path", default="auto", choices=["auto", "sequential", "layers"])
    p.add_argument("--out", default=None, help="also write the Markdown table to this file")
    p.add_argument("--clock", default="wall", choices=["wall", "thread"],
                   help="wall: time.perf_counter; thread: CPU time of this thread "
                        "(time.thread_time), immune to a loaded machine's preemption but only "
                        "meaningful with --threads 1, where both libraries compute in this thread")
    args = p.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        p.error("--clock thread needs --threads 1")
    import time
    clock = time.perf_counter if args.clock == "wall" else time.thread_time

    import torch
    import gradstep as gs
    gs.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    lines = [f"Machine: {machine_line(args.threads)}",
             f"gradstep {gs.__version__}, PyTorch {torch.__version__} (eager, Adam fused=True), "
             f"clock: {args.clock}", "",
             "| network | batch | gradstep ms/step | PyTorch ms/step | ratio | target | gradstep path |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    rows = ROWS if args.rows is None else [ROWS[int(i)] for i in args.rows.split(",")]
    for name, builder, shape, batch, target in rows:
        med, used = bench_row(builder, shape, batch, args.repeats, args.path, clock)
        ratio = med["torch"] / med["gradstep"]
        line = (f"| {name} | {batch} | {med['gradstep'] * 1e3:.3f} | {med['torch'] * 1e3:.3f} | "
                f"{ratio:.2f}× | {target}× | {used} |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
