"""Peak memory of a `fit`: gradstep vs PyTorch on the same run, each in a fresh subprocess.

    python bench/memory.py [--samples 20000] [--epochs 2] [--batch 128]

Each child imports its library, makes the data, then resets the kernel's peak-RSS mark
(`echo 5 > /proc/self/clear_refs`, Linux) and trains 784-256-128-10 ReLU with Adam; it reports
the peak resident memory during training minus the resident memory just before it (so the cost
of importing PyTorch itself, ~hundreds of MB, is not counted against it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
lib, n, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if lib == "torch":
    import torch
    torch.set_num_threads(2)
else:
    import gradstep as gs
    gs.set_num_threads(2)
rng = np.random.default_rng(0)
X = rng.standard_normal((n, 784)).astype(np.float32)
y = rng.integers(0, 10, n)

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM, the peak-RSS mark
before = rss("VmRSS:")
t0 = time.perf_counter()
if lib == "torch":
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(tX[idx]), ty[idx])
            loss.backward()
            opt.step()
else:
    model = gs.Sequential([gs.Dense(784, 256), gs.ReLU(), gs.Dense(256, 128), gs.ReLU(), gs.Dense(128, 10)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
    model.fit(X, y, epochs=epochs, batch_size=batch, verbose=0, seed=0)
elapsed = time.perf_counter() - t0
print(json.dumps({"lib": lib, "peak_extra_mb": (rss("VmHWM:") - before) / 2**20, "seconds": elapsed}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    rows = []
    for lib in ("gradstep", "torch"):
        out = subprocess.run([sys.executable, "-c", CHILD, lib, str(args.samples), str(args.epochs), str(args.batch)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| fit of 784-256-128-10, {args.samples} samples, {args.epochs} epochs, batch {args.batch} | peak extra MB | seconds |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['lib']} | {r['peak_extra_mb']:.1f} | {r['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
