"""gradstep vs PyTorch (and scikit-learn) on the networks our users train: one process, interleaved.

    python bench/compare.py [--threads 2] [--repeats 15] [--runs 3] [--out bench/results.md]

For each row, both libraries get the same network (same initial weights), the same batches and the
same optimizer (Adam, lr 1e-3; PyTorch with fused=True, its fastest CPU option). A round times
`steps` training steps of gradstep, then the same of PyTorch (the order alternates between rounds);
the table reports the median time per step over the rounds and the ratio PyTorch / gradstep.
A training step is forward, softmax cross-entropy, backward and the Adam update. With --runs N the
whole table is measured N times, one run after the other, and each cell shows the median of the
runs and their range (min–max).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

ROWS = [
    # (name, layer sizes, activation, batch, target ratio: issue 13's)
    ("784-256-128-10 ReLU", [784, 256, 128, 10], "relu", 32, 3.5),
    ("784-256-128-10 ReLU", [784, 256, 128, 10], "relu", 128, 2.0),
    ("784-256-128-10 ReLU", [784, 256, 128, 10], "relu", 512, 1.5),
    ("64-128-64-10 ReLU", [64, 128, 64, 10], "relu", 32, 15.0),
    ("20×128 tanh", [128] * 21 + [10], "tanh", 64, 4.0),
]


def flops_per_step(sizes: list[int], batch: int) -> float:
    """2·N·I·O per GEMM; forward, dx (not for the first layer) and dW."""
    total = 0.0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * batch * a * b * (3 if i > 0 else 2)
    return total


def build_gradstep(sizes, act, seed=0):
    import gradstep as gs
    Act = {"relu": gs.ReLU, "tanh": gs.Tanh}[act]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gs.Dense(a, b, init="he" if act == "relu" else "xavier"))
        if i < len(sizes) - 2:
            layers.append(Act())
    model = gs.Sequential(layers, seed=seed)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
    return model


def torch_dense_layers(gmodel, act):
    """PyTorch copies of gmodel's Dense layers (same weights), activation between them."""
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
    return mods


def build_torch(gmodel, sizes, act):
    import torch
    model = torch.nn.Sequential(*torch_dense_layers(gmodel, act))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss
    return step


def time_rounds(fns: dict, steps: int, repeats: int) -> dict[str, list[float]]:
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            t0 = time.perf_counter()
            fns[k](steps)
            times[k].append((time.perf_counter() - t0) / steps)
    return times


def bench_row(sizes, act, batch, repeats, threads):
    import torch
    rng = np.random.default_rng(0)
    n_batches = 16
    X = rng.standard_normal((n_batches * batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=n_batches * batch)
    gmodel = build_gradstep(sizes, act)
    tstep = build_torch(gmodel, sizes, act)
    xs = [X[i * batch:(i + 1) * batch] for i in range(n_batches)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(n_batches)]
    txs = [torch.from_numpy(x) for x in xs]
    tys = [torch.from_numpy(v) for v in ys]

    def run_gs(steps):
        for s in range(steps):
            gmodel.train_step(xs[s % n_batches], ys[s % n_batches])

    def run_torch(steps):
        for s in range(steps):
            tstep(txs[s % n_batches], tys[s % n_batches])

    # Aim for ~40 ms per timed block so that timer noise is small.
    run_gs(3)
    run_torch(3)
    t0 = time.perf_counter()
    run_torch(5)
    per = (time.perf_counter() - t0) / 5
    steps = max(5, int(0.04 / max(per, 1e-6)))
    t = time_rounds({"gradstep": run_gs, "torch": run_torch}, steps, repeats)
    return {k: statistics.median(v) for k, v in t.items()}, steps


def gemm_shapes(sizes: list[int], batch: int) -> list[tuple[str, int, int, int]]:
    """The GEMMs of one training step as (transposes, M, N, K): y = x·W, dx = dy·Wᵀ, dW = xᵀ·dy."""
    shapes = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append(("nn", batch, b, a))
        if i > 0:
            shapes.append(("nt", batch, a, b))
        shapes.append(("tn", a, b, batch))
    return shapes


def blas_gflops(sizes: list[int], batch: int, threads: int, repeats: int) -> float:
    """GFLOP/s of OpenBLAS's own sgemm (numpy's build, its own threading, `threads` threads) on the
    step's GEMM shapes: the yardstick for the whole step at batch 512."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    ops = []
    for kind, M, N, K in gemm_shapes(sizes, batch):
        A = rng.standard_normal((K, M) if kind == "tn" else (M, K)).astype(np.float32)
        B = rng.standard_normal((N, K) if kind == "nt" else (K, N)).astype(np.float32)
        ops.append((A.T if kind == "tn" else A, B.T if kind == "nt" else B, np.empty((M, N), np.float32)))
    with threadpool_limits(limits=threads, user_api="blas"):
        def run(steps):
            for _ in range(steps):
                for a, b, c in ops:
                    np.matmul(a, b, out=c)
        run(3)
        t = time_rounds({"blas": run}, 5, repeats)["blas"]
    return flops_per_step(sizes, batch) / statistics.median(t) / 1e9


def bench_sklearn_epoch(repeats: int) -> dict[str, float]:
    """Per-epoch time on digits, 64-128-64-10 ReLU, Adam, batch 32: gradstep fit vs MLPClassifier."""
    import warnings

    import gradstep as gs
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    X, y = gs.datasets.load_digits()
    X = StandardScaler().fit_transform(X).astype(np.float32)
    gmodel = build_gradstep([64, 128, 64, 10], "relu")
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam", batch_size=32,
                        learning_rate_init=1e-3, max_iter=1, shuffle=True, random_state=0, tol=0.0)

    def run_gs(_):
        gmodel.fit(X, y, epochs=1, batch_size=32, verbose=0)

    def run_sk(_):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, y, classes=np.arange(10))

    run_gs(1)
    run_sk(1)
    t = time_rounds({"gradstep": run_gs, "sklearn": run_sk}, 1, repeats)
    return {k: statistics.median(v) for k, v in t.items()}


def machine_line(threads: int) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, {threads} threads, Python {platform.python_version()}, "
            f"load average at start {load:.2f}, {datetime.date.today().isoformat()}")


def measure(args, rows) -> dict:
    """One run of every measurement: {key: value}, keys as in table()."""
    import torch

    import gradstep as gs
    out = {}
    gs.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    for i, (name, sizes, act, batch, _) in enumerate(rows):
        med, _ = bench_row(sizes, act, batch, args.repeats, args.threads)
        out[("row", i)] = (med["gradstep"], med["torch"])
        print(f"  {name}, batch {batch}: {med['gradstep'] * 1e3:.3f} / {med['torch'] * 1e3:.3f} ms "
              f"= {med['torch'] / med['gradstep']:.2f}×", flush=True)
    sizes512 = ROWS[2][1]
    try:
        import threadpoolctl  # noqa: F401  (sets numpy's BLAS thread count for the yardstick)
        out["blas"] = blas_gflops(sizes512, 512, args.threads, args.repeats)
    except ImportError:  # a machine without threadpoolctl: the rest of the table still runs
        out["blas"] = float("nan")
        print("threadpoolctl is not installed: no OpenBLAS yardstick row", file=sys.stderr)
    gs.set_num_threads(1)
    torch.set_num_threads(1)
    one, _ = bench_row(sizes512, "relu", 512, max(5, args.repeats // 2), 1)
    gs.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    two, _ = bench_row(sizes512, "relu", 512, max(5, args.repeats // 2), args.threads)
    out["scaling"] = (one["gradstep"], two["gradstep"], one["torch"], two["torch"])
    # How often gradstep's threads stepped aside for other processes (see README: threads).
    from gradstep import _core
    gov = _core._thread_governor()
    print(f"  thread governor so far: {gov['stalls']} back-offs in {gov['regions']} parallel regions",
          flush=True)
    if not args.no_sklearn:
        try:
            import sklearn  # noqa: F401
            sk = bench_sklearn_epoch(max(3, args.repeats // 3))
            out["sklearn"] = (sk["gradstep"], sk["sklearn"])
        except ImportError:
            print("scikit-learn is not installed: no per-epoch MLPClassifier row", file=sys.stderr)
    return out


def cell(values, fmt: str) -> str:
    """The median of the runs, and their range when there is more than one."""
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def table(runs: list[dict], rows, threads: int) -> list[str]:
    lines = ["| network | batch | gradstep ms/step | PyTorch ms/step | ratio | target | gradstep GFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for i, (name, sizes, act, batch, target) in enumerate(rows):
        g = [r[("row", i)][0] for r in runs]
        t = [r[("row", i)][1] for r in runs]
        ratio = [r[("row", i)][1] / r[("row", i)][0] for r in runs]
        gf = [flops_per_step(sizes, batch) / x / 1e9 for x in g]
        lines.append(f"| {name} | {batch} | {cell([x * 1e3 for x in g], '.3f')} | "
                     f"{cell([x * 1e3 for x in t], '.3f')} | {cell(ratio, '.2f')}× | {target}× | "
                     f"{cell(gf, '.1f')} |")
    sizes512 = ROWS[2][1]
    blas = [r["blas"] for r in runs]
    two = [r["scaling"][1] for r in runs]
    step_gflops = [flops_per_step(sizes512, 512) / x / 1e9 for x in two]
    eff = [100 * s / b for s, b in zip(step_gflops, blas)]
    lines += ["", "| batch 512, 784-256-128-10 | value | target |", "|---|---|---|",
              f"| OpenBLAS sgemm alone on the step's 8 GEMM shapes ({threads} threads, numpy's build) | "
              + (f"{cell(blas, '.1f')} GFLOP/s | |" if not any(math.isnan(b) for b in blas)
                 else "n/a (threadpoolctl not installed) | |"),
              f"| gradstep whole step | {cell(step_gflops, '.1f')} GFLOP/s"
              + (f" = {cell(eff, '.0f')}% of the BLAS" if not any(math.isnan(b) for b in blas) else "")
              + " | |",
              f"| gradstep step, 1 thread → {threads} threads | "
              f"{cell([r['scaling'][0] * 1e3 for r in runs], '.2f')} → {cell([x * 1e3 for x in two], '.2f')} ms = "
              f"{cell([r['scaling'][0] / r['scaling'][1] for r in runs], '.2f')}× | ≥ 1.8× |",
              f"| PyTorch step, 1 thread → {threads} threads | "
              f"{cell([r['scaling'][2] * 1e3 for r in runs], '.2f')} → {cell([r['scaling'][3] * 1e3 for r in runs], '.2f')} ms = "
              f"{cell([r['scaling'][2] / r['scaling'][3] for r in runs], '.2f')}× | |"]
    if all("sklearn" in r for r in runs):
        g = [r["sklearn"][0] for r in runs]
        s = [r["sklearn"][1] for r in runs]
        lines += ["", "| per epoch, digits, 64-128-64-10 ReLU, Adam, batch 32 | gradstep s | scikit-learn s | ratio | target |",
                  "|---|---|---|---|---|",
                  f"| fit 1 epoch vs MLPClassifier.partial_fit | {cell(g, '.4f')} | {cell(s, '.4f')} | "
                  f"{cell([b / a for a, b in zip(g, s)], '.1f')}× | 15× |"]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--runs", type=int, default=1, help="measure the whole table this many times")
    p.add_argument("--out", default=None, help="also write the Markdown table to this file")
    p.add_argument("--rows", default=None, help="comma-separated row indices to run (default: all)")
    p.add_argument("--no-sklearn", action="store_true")
    args = p.parse_args(argv)
    if args.runs < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--runs, --repeats and --threads must be >= 1")

    import torch

    import gradstep as gs
    header = machine_line(args.threads)
    rows = ROWS if args.rows is None else [ROWS[int(i)] for i in args.rows.split(",")]
    runs = []
    for k in range(args.runs):
        print(f"run {k + 1} of {args.runs} (load average {os.getloadavg()[0]:.2f})", flush=True)
        runs.append(measure(args, rows))
    lines = [f"Machine: {header}", f"gradstep {gs.__version__}, PyTorch {torch.__version__} "
             f"(eager, Adam fused=True), {args.runs} run(s)"
             + (": median (min–max) of the runs" if args.runs > 1 else ""), ""]
    lines += table(runs, rows, args.threads)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
