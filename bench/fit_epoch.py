"""One `fit` epoch: the whole-epoch C++ path vs fit's per-batch loop (and scikit-learn), interleaved.

    python bench/fit_epoch.py [--threads 2] [--repeats 7] [--rows 200000] [--quick]

Rows: digits (all 1,797 rows, 64-128-64-10 ReLU, Adam, batch 32) timed as `fit(epochs=1)`
through the fast path (the default), through the per-batch loop (`model._per_batch_fit = True`,
what fit did before), and scikit-learn's `MLPClassifier.partial_fit` (one epoch, same net and batch
size); the same 45 steps as bare `train_step` calls on pre-gathered batches (the floor the step
kernels set); then a synthetic `--rows`-row 50-128-64-10 epoch at batch 32, fast path vs per-batch
loop, at 1 thread and at `--threads`. A round times each variant once, the order alternating
between rounds; the table gives the median and the min–max over the rounds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build_gradstep, time_rounds  # noqa: E402  (shared with compare.py)
from compare import cell as compare_cell  # noqa: E402


def rounds(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each fn(), interleaved as compare.py's time_rounds does."""
    return time_rounds({k: (lambda _steps, f=f: f()) for k, f in fns.items()}, 1, repeats)


def cell(t: list[float], scale: float = 1e3) -> str:
    return compare_cell([x * scale for x in t], ".2f")


def digits_rows(repeats: int) -> list[str]:
    import gradstep as gs
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    X, y = gs.datasets.load_digits()
    X = StandardScaler().fit_transform(X).astype(np.float32)
    fast, slow = build_gradstep([64, 128, 64, 10], "relu"), build_gradstep([64, 128, 64, 10], "relu")
    slow._per_batch_fit = True
    steps = build_gradstep([64, 128, 64, 10], "relu")
    order = np.random.default_rng(0).permutation(len(X))
    batches = [(X[order[i:i + 32]], y[order[i:i + 32]].astype(np.int64)) for i in range(0, len(X), 32)]
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam", batch_size=32,
                        learning_rate_init=1e-3, max_iter=1, shuffle=True, random_state=0, tol=0.0)

    def sk():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, y, classes=np.arange(10))

    def bare():
        for xb, yb in batches:
            steps.train_step(xb, yb)

    fns = {"fast": lambda: fast.fit(X, y, epochs=1, batch_size=32, verbose=0),
           "per-batch": lambda: slow.fit(X, y, epochs=1, batch_size=32, verbose=0),
           "steps": bare, "sklearn": sk}
    for f in fns.values():
        f()
    assert fast._fit_path == "epoch" and slow._fit_path.startswith("per-batch")
    t = rounds(fns, repeats)
    med = {k: statistics.median(v) for k, v in t.items()}
    return [f"| digits, 64-128-64-10, batch 32 ({len(batches)} steps) | {cell(t['fast'])} | "
            f"{cell(t['per-batch'])} | {cell(t['steps'])} | {cell(t['sklearn'])} | "
            f"{med['sklearn'] / med['fast']:.1f}× | {med['sklearn'] / med['per-batch']:.1f}× |"]


def synthetic_rows(rows: int, threads: int, repeats: int) -> list[str]:
    import gradstep as gs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 50)).astype(np.float32)
    y = rng.integers(0, 10, size=rows)
    out = []
    for n in sorted({1, threads}):
        gs.set_num_threads(n)
        fast, slow = build_gradstep([50, 128, 64, 10], "relu"), build_gradstep([50, 128, 64, 10], "relu")
        slow._per_batch_fit = True
        for m in (fast, slow):
            m.fit(X[:1024], y[:1024], epochs=1, batch_size=32, verbose=0)  # warm-up, workspace
        t = rounds({"fast": lambda: fast.fit(X, y, epochs=1, batch_size=32, verbose=0),
                    "per-batch": lambda: slow.fit(X, y, epochs=1, batch_size=32, verbose=0)}, repeats)
        med = {k: statistics.median(v) for k, v in t.items()}
        out.append(f"| {rows:,} rows, 50-128-64-10, batch 32, {n} thread{'s' * (n > 1)} | "
                   f"{cell(t['fast'], 1)} s | {cell(t['per-batch'], 1)} s | "
                   f"{med['per-batch'] / med['fast']:.2f}× |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--quick", action="store_true", help="digits only")
    args = p.parse_args(argv)
    import gradstep as gs
    gs.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}, gradstep "
          f"{gs.__version__}, {args.threads} threads, {args.repeats} rounds; median (min–max)")
    lines = ["| epoch | fast path ms | per-batch loop ms | bare train_step calls ms | "
             "MLPClassifier ms | sklearn / fast | sklearn / per-batch |", "|---|---|---|---|---|---|---|"]
    lines += digits_rows(args.repeats)
    print("\n".join(lines), flush=True)
    if not args.quick:
        more = ["", "| epoch | fast path | per-batch loop | per-batch / fast |", "|---|---|---|---|"]
        more += synthetic_rows(args.rows, args.threads, max(3, args.repeats // 2))
        print("\n".join(more))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
