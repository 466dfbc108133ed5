"""Data-parallel training speed: steps per second of the 784-256-128-10 MLP (Adam, float32).

    python bench/distributed.py                 # 5 interleaved rounds, medians (a few minutes)
    python bench/distributed.py --rounds 3 --steps 100

Configurations, each in fresh processes, run in turn within every round (interleaved, so that a
machine shared with other work slows all of them alike), at global batch 128 and 512:
  gradstep 1 process x 2 threads, 1 x 1, 2 MPI ranks x 1 thread (mpiexec, model.fit as users call
  it: the global batch split over the ranks, one in-place all-reduce of the flat gradient buffer
  per step), and PyTorch DistributedDataParallel (gloo) 2 x 1 for reference.
A step is one global batch of `fit` (gradstep) or of the usual DDP loop (gather the rank's rows,
forward, loss, backward with DDP's all-reduce, Adam step). The table shows medians over the rounds.

Then a model of K machines: step(K) = compute(B/K rows on one core, measured here) + ring
all-reduce of the 940 KB gradient, 2(K-1)·latency + 2(K-1)/K·bytes/bandwidth, for the networks
named in NETWORKS (assumed, not measured) and for this machine's shared memory (measured).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 256, 128, 10)
BATCHES = (128, 512)
# Assumed networks for the K-machine model: (name, one-way latency in s, bandwidth in bytes/s).
NETWORKS = [("10 GbE (25 us, 1.15 GB/s)", 25e-6, 1.15e9),
            ("100 Gb/s InfiniBand (2 us, 11 GB/s)", 2e-6, 11e9)]


# ---- workers (run in their own processes) ----------------------------------------------------------
def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], n).astype(np.int64)


def _gs_model():
    import gradstep as gs
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [gs.Dense(a, b), gs.ReLU()]
    model = gs.Sequential(layers[:-1], seed=0)
    return model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))


def worker_gradstep(args) -> dict:
    """1 process (threads from --threads) or an MPI rank: seconds per step of fit."""
    import gradstep as gs
    if args.threads:
        gs.set_num_threads(args.threads)
    out = {}
    for batch in BATCHES:
        steps = args.steps if batch == 128 else max(20, args.steps // 3)
        X, y = _data(batch * steps)
        model = _gs_model()
        model.fit(X[:batch * 10], y[:batch * 10], epochs=1, batch_size=batch, verbose=0)  # warm up
        comm = gs.distributed._world
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
        if comm is not None:
            comm.Barrier()
        out[batch] = (time.perf_counter() - t) / steps
    out["threads"] = gs.get_num_threads()
    out["ranks"] = gs.distributed.world_size()
    if args.profile:  # compute per local batch and all-reduce costs, for the K-machine model
        out["compute"] = _compute_profile()
    if gs.distributed.world_size() > 1:
        out["allreduce"] = _allreduce_profile(gs.distributed._world)
    return out


def _compute_profile() -> dict:
    """Seconds of forward+backward (+ the update) at local batches 1..512, one thread."""
    model = _gs_model()
    prof = {}
    for b in (4, 8, 16, 32, 64, 128, 256, 512):
        X, y = _data(b)
        for _ in range(5):
            model.forward_backward(X, y)
        reps = max(10, 4096 // b)
        t = time.perf_counter()
        for _ in range(reps):
            model.forward_backward(X, y)
        prof[b] = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(50):
        model.update()
    prof["update"] = (time.perf_counter() - t) / 50
    return prof


def _allreduce_profile(comm) -> dict:
    from mpi4py import MPI
    res = {}
    for name, n in (("latency", 1), ("gradient", model_size())):
        buf = np.zeros(n, np.float32)
        for _ in range(20):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        comm.Barrier()
        reps = 2000 if n == 1 else 200
        t = time.perf_counter()
        for _ in range(reps):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        res[name] = (time.perf_counter() - t) / reps
    return res


def model_size() -> int:
    return sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))


def worker_torch_ddp(args) -> dict:
    import torch
    import torch.distributed as dist
    from torch import nn
    torch.set_num_threads(1)
    rank, world = int(os.environ.get("PMI_RANK", "0")), int(os.environ.get("PMI_SIZE", "1"))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
    out = {}
    for batch in BATCHES:
        steps = args.steps if batch == 128 else max(20, args.steps // 3)
        torch.manual_seed(0)
        layers = []
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.parallel.DistributedDataParallel(nn.Sequential(*layers[:-1]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        Xn, yn = _data(batch * steps)
        X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
        lo, hi = rank * batch // world, (rank + 1) * batch // world

        def run(n_steps):
            order = torch.randperm(X.shape[0])
            for s in range(n_steps):
                idx = order[s * batch + lo:s * batch + hi]
                loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        run(10)
        dist.barrier()
        t = time.perf_counter()
        run(steps)
        dist.barrier()
        out[batch] = (time.perf_counter() - t) / steps
    out["ranks"] = world
    dist.destroy_process_group()
    return out


# ---- driver -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def launch(config: str, args, profile: bool = False) -> dict:
    me = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps)]
    env = {**os.environ}
    for v in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMP_NUM_THREADS"):
        env.pop(v, None)
    if config == "gradstep 1x2":
        cmd = me + ["--worker", "gradstep", "--threads", "2"]
    elif config == "gradstep 1x1":
        cmd = me + ["--worker", "gradstep", "--threads", "1"] + (["--profile"] if profile else [])
    elif config == "gradstep 2 ranks x1":
        cmd = [_mpiexec(), "-n", "2"] + me + ["--worker", "gradstep"]
    elif config == "torch DDP gloo 2x1":
        env["OMP_NUM_THREADS"] = "1"
        cmd = [_mpiexec(), "-n", "2"] + me + ["--worker", "torch", "--port", str(_free_port())]
    else:
        raise ValueError(config)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("{"))
    return json.loads(line)


CONFIGS = ["gradstep 1x1", "gradstep 1x2", "gradstep 2 ranks x1", "torch DDP gloo 2x1"]


def k_machine_model(compute: dict, allreduce: dict) -> str:
    grad_bytes = model_size() * 4
    shm_bw = grad_bytes / max(allreduce["gradient"] - allreduce["latency"], 1e-9)
    nets = NETWORKS + [(f"this machine, shared memory (measured: {allreduce['latency'] * 1e6:.1f} us, "
                        f"{shm_bw / 1e9:.1f} GB/s effective)", allreduce["latency"] / 2, shm_bw)]
    lines = [f"K machines, one rank x 1 core each (compute measured here at B/K rows), gradient "
             f"{grad_bytes / 1e3:.0f} KB, ring all-reduce 2(K-1)a + 2(K-1)/K n/b:"]
    ks = (1, 2, 4, 8, 16)
    for batch in BATCHES:
        for name, lat, bw in nets:
            cells = []
            for k in ks:
                local = batch // k
                comp = compute[str(local)] + compute["update"]
                comm = 0.0 if k == 1 else 2 * (k - 1) * lat + 2 * (k - 1) / k * grad_bytes / bw
                cells.append(1.0 / (comp + comm))
            base = cells[0]
            lines.append(f"  B={batch:<4} {name:<62} " + "  ".join(
                f"K={k}: {s:6.0f}/s ({s / base:.2f}x)" for k, s in zip(ks, cells)))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=200, help="timed steps at batch 128 (a third at 512)")
    p.add_argument("--worker", choices=["gradstep", "torch"], default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if args.worker:
        res = worker_gradstep(args) if args.worker == "gradstep" else worker_torch_ddp(args)
        if int(os.environ.get("PMI_RANK", "0")) == 0:
            print(json.dumps(res), flush=True)
        return
    samples: dict[str, dict[int, list[float]]] = {c: {b: [] for b in BATCHES} for c in CONFIGS}
    extra = {}
    for r in range(args.rounds):
        for c in CONFIGS:
            res = launch(c, args, profile=(r == 0))
            for b in BATCHES:
                samples[c][b].append(res[str(b)])
            extra.setdefault(c, res)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    med = {c: {b: statistics.median(samples[c][b]) for b in BATCHES} for c in CONFIGS}
    print(f"784-256-128-10 MLP, Adam, float32; steps/s, median of {args.rounds} interleaved rounds "
          f"({args.steps} steps at batch 128, {max(20, args.steps // 3)} at 512); {os.cpu_count()} cores, "
          f"machine shared with other work")
    head = f"{'configuration':<22}" + "".join(f"{'B=' + str(b):>12}{'vs 1x1':>9}" for b in BATCHES)
    print(head)
    for c in CONFIGS:
        row = f"{c:<22}"
        for b in BATCHES:
            sps = 1.0 / med[c][b]
            row += f"{sps:12.0f}{med['gradstep 1x1'][b] / med[c][b]:8.2f}x"
        print(row)
    for b in BATCHES:
        print(f"B={b}: gradstep 2 ranks x1 is {med['torch DDP gloo 2x1'][b] / med['gradstep 2 ranks x1'][b]:.2f}x "
              f"PyTorch DDP (gloo) 2x1; spread over rounds (min-max steps/s): " + ", ".join(
                  f"{c}: {1 / max(samples[c][b]):.0f}-{1 / min(samples[c][b]):.0f}" for c in CONFIGS))
    print()
    print(k_machine_model(extra["gradstep 1x1"]["compute"], extra["gradstep 2 ranks x1"]["allreduce"]))


if __name__ == "__main__":
    main()
