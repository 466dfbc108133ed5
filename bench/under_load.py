"""1 thread vs N threads, on a quiet machine and next to busy processes (one per core).

    python bench/under_load.py [--threads 2] [--repeats 7] [--rows 50000]

Users train on laptops and shared servers, where other processes compete for the cores. This
times one `fit` epoch (batch 32, Adam) of each network below, alternating 1 thread and N threads
round by round in one process, first on the machine as it is ("quiet"), then with one busy
process per core started next to it ("loaded"; each spins in a Python loop). It reports the median
seconds per epoch and the ratio N threads / 1 thread: above 1 means the threads made it slower.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build_gradstep  # noqa: E402  (one builder for every benchmark's nets)

NETS = [
    # (name, layer sizes)
    ("50-128-64-10 ReLU", [50, 128, 64, 10]),
    ("784-256-128-10 ReLU", [784, 256, 128, 10]),
]


def time_epochs(sizes, rows, threads, repeats):
    import gradstep as gs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=rows)
    model = build_gradstep(sizes, "relu")
    model.fit(X[:1024], y[:1024], epochs=1, batch_size=32, verbose=0)  # warm-up, workspace
    times = {1: [], threads: []}
    for r in range(repeats):
        for n in ((1, threads) if r % 2 == 0 else (threads, 1)):
            gs.set_num_threads(n)
            t0 = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=32, verbose=0)
            times[n].append(time.perf_counter() - t0)
    return times


def start_load(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rows", type=int, default=50_000, help="rows per epoch (batch 32)")
    p.add_argument("--busy", type=int, default=os.cpu_count(), help="busy processes when loaded")
    args = p.parse_args(argv)
    import gradstep as gs
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}, gradstep "
          f"{gs.__version__}, {args.rows} rows per epoch, batch 32, {args.repeats} rounds")
    lines = ["| network | machine | 1 thread s/epoch (min–max) | "
             f"{args.threads} threads s/epoch (min–max) | ratio {args.threads}/1 |", "|---|---|---|---|---|"]
    for name, sizes in NETS:
        for cond in ("quiet", "loaded"):
            procs = start_load(args.busy) if cond == "loaded" else []
            try:
                if procs:
                    time.sleep(0.5)  # let the busy processes get going
                t = time_epochs(sizes, args.rows, args.threads, args.repeats)
            finally:
                for q in procs:
                    q.kill()
                    q.wait()
            one, many = statistics.median(t[1]), statistics.median(t[args.threads])
            line = (f"| {name} | {cond}{f' (+{args.busy} busy)' if procs else ''} | {one:.3f} "
                    f"({min(t[1]):.3f}–{max(t[1]):.3f}) | {many:.3f} ({min(t[args.threads]):.3f}–"
                    f"{max(t[args.threads]):.3f}) | {many / one:.2f} |")
            lines.append(line)
            print(line, flush=True)
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
