"""The Python cost of `Sequential.train_step`: µs per call of model.train_step next to the bare
`_core.Network.train_step` call with prebuilt arguments (what Engine.step passes it), interleaved,
median of several rounds, 1 thread.

    OMP_NUM_THREADS=1 PYTHONPATH=python python bench/step_overhead.py [--rounds 7]
    python bench/step_overhead.py --compare OLD_PYTHONPATH NEW_PYTHONPATH   # before/after, alternating processes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build_gradstep  # noqa: E402  (one builder for every benchmark's nets)

NETS = {"digits 64-128-64-10": [64, 128, 64, 10], "784-256-128-10": [784, 256, 128, 10]}


def measure(rounds: int, batch: int = 32) -> dict:
    import gradstep as gs
    gs.set_num_threads(1)
    out = {}
    for name, sizes in NETS.items():
        model = build_gradstep(sizes, "relu")
        rng = np.random.default_rng(0)
        nb = 16
        X = rng.standard_normal((nb * batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], size=nb * batch)
        xs = [X[i * batch:(i + 1) * batch] for i in range(nb)]
        ys = [y[i * batch:(i + 1) * batch] for i in range(nb)]
        model.train_step(xs[0], ys[0])
        eng = model._get_engine()
        net = eng._net(eng.kinds[0])
        hyper, clip = model.optimizer.kernel_hyper(), model.optimizer.clip_args()

        def run_model(steps):
            for s in range(steps):
                model.train_step(xs[s % nb], ys[s % nb])

        def run_bare(steps):
            for s in range(steps):
                net.train_step(xs[s % nb], ys[s % nb], None, [], hyper, 1000 + s, clip, None)

        steps = 400 if sizes[0] < 100 else 100
        run_model(20)
        run_bare(20)
        t = {"model": [], "bare": []}
        for _ in range(rounds):
            for k, fn in (("model", run_model), ("bare", run_bare)):
                t0 = time.perf_counter()
                fn(steps)
                t[k].append((time.perf_counter() - t0) / steps * 1e6)
        out[name] = {k: statistics.median(v) for k, v in t.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not a.compare:
        r = measure(a.rounds)
        if a.json:
            print(json.dumps(r))
            return
        for name, v in r.items():
            print(f"{name:22s} model.train_step {v['model']:7.2f} µs   bare Network.train_step "
                  f"{v['bare']:7.2f} µs   Python {v['model'] - v['bare']:6.2f} µs")
        return
    print("load:", os.getloadavg())
    res: dict = {"old": [], "new": []}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for _ in range(a.rounds):
        for tag, path in (("old", a.compare[0]), ("new", a.compare[1])):
            cmd = [sys.executable, __file__, "--rounds", "5", "--json"]
            o = subprocess.run(cmd, env=dict(env, PYTHONPATH=path), capture_output=True, text=True, check=True)
            res[tag].append(json.loads(o.stdout))
    print("load:", os.getloadavg())
    for name in NETS:
        for tag in ("old", "new"):
            m = [r[name]["model"] for r in res[tag]]
            b = [r[name]["bare"] for r in res[tag]]
            print(f"{tag} {name:22s} model.train_step median {statistics.median(m):7.2f} µs "
                  f"(range {min(m):.2f}-{max(m):.2f})   bare {statistics.median(b):7.2f} µs   "
                  f"Python {statistics.median(m) - statistics.median(b):6.2f} µs")


if __name__ == "__main__":
    main()
