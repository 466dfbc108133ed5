"""Median time of one fused training step for the networks of bench/compare.py (gradstep only),
for comparing two builds of gradstep: run it alternately with PYTHONPATH pointing at each.

    PYTHONPATH=python python tools/step_timing.py [--threads 1] [--steps 200]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gradstep as gs

ROWS = [("784-256-128-10 relu", [784, 256, 128, 10], 32), ("784-256-128-10 relu", [784, 256, 128, 10], 512),
        ("64-128-64-10 relu", [64, 128, 64, 10], 32), ("20x128 tanh", [128] * 21 + [10], 64)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    gs.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    for name, sizes, n in ROWS:
        act = gs.Tanh if "tanh" in name else gs.ReLU
        layers = []
        for i, (p, q) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(gs.Dense(p, q))
            if i < len(sizes) - 2:
                layers.append(act())
        m = gs.Sequential(layers, seed=0)
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        X = rng.standard_normal((n, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], n)
        for _ in range(10):
            m.train_step(X, y)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(a.steps):
                m.train_step(X, y)
            times.append((time.perf_counter() - t) / a.steps * 1e6)
        print(f"{name} batch {n}: {statistics.median(times):.1f} us/step")


if __name__ == "__main__":
    main()
