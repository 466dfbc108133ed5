"""Heap allocations per training step, counted at malloc itself (C++, numpy and Python alike).

    python bench/allocations.py      # builds bench/malloc_count.c and re-runs itself under LD_PRELOAD

tracemalloc (used in tests/test_engine.py) sees only Python and numpy memory; this counts every
malloc call made while 1000 steps run, after 10 warm-up steps.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure() -> None:
    import numpy as np

    import gradstep as gs
    lib = ctypes.CDLL(None)
    count = ctypes.c_long.in_dll(lib, "gs_malloc_count")
    on = ctypes.c_int.in_dll(lib, "gs_malloc_on")

    def per_call(f, n=1000):
        for _ in range(10):
            f()
        count.value, on.value = 0, 1
        for _ in range(n):
            f()
        on.value = 0
        return count.value / n

    print("| what | threads | malloc calls per call |")
    print("|---|---|---|")
    for threads in (1, 2):
        gs.set_num_threads(threads)
        model = gs.Sequential([gs.Dense(64, 128), gs.BatchNorm(128), gs.ReLU(), gs.Dropout(0.1), gs.Dense(128, 10)],
                              seed=0)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam())
        X = np.random.default_rng(0).random((32, 64)).astype(np.float32)
        y = np.random.default_rng(1).integers(0, 10, 32)
        print(f"| model.train_step (Dense-BatchNorm-ReLU-Dropout-Dense, Adam) | {threads} | "
              f"{per_call(lambda: model.train_step(X, y)):.2f} |")
        print(f"| an empty pybind11 call (_core.get_num_threads) | {threads} | "
              f"{per_call(gs._core.get_num_threads):.2f} |")
        net = model._engine.nets["softmax_xent"]
        hyper = model.optimizer.kernel_hyper()
        print(f"| the whole-step binding alone (_core.Network.train_step, 7 arguments) | {threads} | "
              f"{per_call(lambda: net.train_step(X, y, None, [1], hyper, 5)):.2f} |")
        print(f"| the two halves (Network.forward_backward + Network.update) | {threads} | "
              f"{per_call(lambda: (net.forward_backward(X, y, None, [1]), net.update(hyper, 5))):.2f} |")


def main() -> int:
    if os.environ.get("GS_MALLOC_CHILD"):
        measure()
        return 0
    so = HERE.parent / "build" / "libmalloc_count.so"
    so.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", str(HERE / "malloc_count.c"), "-o", str(so), "-ldl"], check=True)
    env = {**os.environ, "LD_PRELOAD": str(so), "GS_MALLOC_CHILD": "1"}
    return subprocess.run([sys.executable, __file__], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
