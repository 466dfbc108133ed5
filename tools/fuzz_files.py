"""Tampered model files against `gs.load`, in a separate process (a crash is a finding).

    python tools/fuzz_files.py --files 10000 [--seed 0] [--json report.json]
    python tools/fuzz_files.py --replay SEED INDEX     # rebuild one tampered file and load it here

A worker saves a few small models (every layer kind, the four optimizers, compiled or not, with
and without stored preprocessing, float32 and float64), then makes tampered copies, each one
from (seed, index) alone: bit flips and byte overwrites anywhere, truncation, bytes inserted or
deleted (digits in the header included), a wrong header length, structured edits of the header
and of the gradstep metadata (a value replaced by a huge, negative, fractional, NaN, string, null,
nested or missing one), tensor values set to NaN/inf/huge/negative, tensors renamed or swapped.

The verdict for each file:
  - refused with ValueError: fine;
  - any other exception type, a crash, a hang, more than --max-seconds, or a peak memory more
    than --max-mb above the worker's baseline: a finding;
  - loaded: the model must predict finite numbers on finite input and, when it was saved
    compiled, train one epoch to a finite loss and finite predictions (else a finding).
Exit status 0 when nothing was found.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_bindings import read_status  # noqa: E402

MEMORY_LIMIT = 3 << 30


def base_models(gs: Any) -> list[tuple[str, bytes, np.ndarray, np.ndarray]]:
    """(name, file bytes, X, y) for a few small trained models."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    out = []

    def add(name, model, y, fit=True, prep=False):
        if fit:
            model.fit(X.astype(model.dtype), y, epochs=2, batch_size=16, verbose=0, seed=1)
        if prep:
            model.preprocessing = gs.preprocessing.Standardize(X.mean(0), X.std(0))
        out.append((name, gs.io.to_bytes(model), X, y))

    m = gs.Sequential([gs.Dense(6, 16), gs.ReLU(), gs.Dense(16, 3)], seed=0)
    m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2), metrics=["accuracy"])
    add("mlp-adam", m, labels, prep=True)
    m = gs.Sequential([gs.Dense(6, 8), gs.BatchNorm(8), gs.Tanh(), gs.Dropout(0.2), gs.Dense(8, 1)], seed=1)
    m.compile(gs.MSE(), gs.SGD(lr=1e-2, momentum=0.9))
    add("bn-sgd", m, X[:, :1] * 2.0)
    m = gs.Sequential([gs.Dense(6, 8), gs.PReLU(), gs.Dense(8, 1), gs.Sigmoid()], seed=2)
    m.compile(gs.BinaryCrossEntropy(), gs.RMSprop(lr=1e-3, momentum=0.5))
    add("prelu-rmsprop", m, (X[:, :1] > 0).astype(np.float32))
    m = gs.Sequential([gs.Maxout(6, 5, pieces=2), gs.ELU(), gs.Dense(5, 3)], dtype="float64", seed=3)
    add("maxout-uncompiled-f64", m, labels, fit=False)
    m = gs.Sequential([gs.Dense(6, 8), gs.LeakyReLU(0.1), gs.Dense(8, 2)], seed=4)
    m.compile(gs.BinaryCrossEntropy(from_logits=True), gs.AdamW(lr=1e-3))
    add("logits-adamw", m, np.stack([X[:, 0] > 0, X[:, 1] > 0], 1).astype(np.float32), prep=True)
    # Convolutions, pooling and spatial BatchNorm on 1x6x6 images (the op core's layers).
    images = rng.standard_normal((64, 1, 6, 6)).astype(np.float32)
    m = gs.Sequential([gs.Conv2D(1, 3, 3, padding=1), gs.BatchNorm(3), gs.ReLU(), gs.MaxPool2D(2),
                       gs.Flatten(), gs.Dense(27, 3)], seed=5)
    m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    m.fit(images, labels, epochs=1, batch_size=16, verbose=0, seed=1)
    out.append(("conv2d-bn-pool", gs.io.to_bytes(m), images, labels))
    return out


# ---- tampering --------------------------------------------------------------------------------------

WEIRD_VALUES = [10**6, 10**12, 10**30, -1, -(10**9), 0, 1.5, float("nan"), float("inf"), "x", None,
                True, [], {}, [[[[1]]]], 2**64, 2**63 - 1, -0.0, 1e308, "float16", "NaN"]


def split(data: bytes) -> tuple[dict, bytes] | None:
    if len(data) < 8:
        return None
    n = int.from_bytes(data[:8], "little")
    try:
        return json.loads(data[8:8 + n]), data[8 + n:]
    except ValueError:
        return None


def join(header: dict, body: bytes) -> bytes:
    h = json.dumps(header, allow_nan=True).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + body


def leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += leaves(v, path + (i,))
    return out


def set_at(obj: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def tamper(data: bytes, rng: np.random.Generator, ops: list[str]) -> bytes:
    op = ["flip", "overwrite", "truncate", "insert_digits", "delete", "header_len", "header_json",
          "meta_json", "meta_json", "tensor_values", "tensor_values", "rename", "shape",
          "meta_shape"][int(rng.integers(14))]
    ops.append(op)
    b = bytearray(data)
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if op == "flip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if op == "overwrite":
        i = int(rng.integers(len(b)))
        k = int(rng.integers(1, 32))
        b[i:i + k] = rng.integers(0, 256, min(k, len(b) - i), dtype=np.uint8).tobytes()
        return bytes(b)
    if op == "truncate":
        return bytes(b[:int(rng.integers(len(b)))])
    if op == "insert_digits":
        i = int(rng.integers(8, 8 + max(1, n)))
        digits = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(1, 12)))).encode()
        out = bytes(b[:i]) + digits + bytes(b[i:])
        if rng.random() < 0.5:  # keep the header length consistent with the insertion
            out = (n + len(digits)).to_bytes(8, "little") + out[8:]
        return out
    if op == "delete":
        i = int(rng.integers(len(b)))
        return bytes(b[:i] + b[i + int(rng.integers(1, 64)):])
    if op == "header_len":
        v = [0, 1, n - 1, n + 1, n * 1000, 2**32, 2**63, 2**64 - 1, len(b), len(b) - 8][int(rng.integers(10))]
        return (v % 2**64).to_bytes(8, "little") + bytes(b[8:])
    parsed = split(data)
    if parsed is None:
        return bytes(b)
    header, body = parsed
    tensors = [k for k in header if k != "__metadata__"]
    if op == "header_json":
        path = leaves(header)[int(rng.integers(len(leaves(header))))]
        value = WEIRD_VALUES[int(rng.integers(len(WEIRD_VALUES)))]
        if path and path[0] == "__metadata__":
            value = value if rng.random() < 0.2 else str(value)
        header = set_at(header, path, value, delete=rng.random() < 0.15)
        ops.append(f"{path}={value!r}")
        return join(header, body) if isinstance(header, dict) else json.dumps(header).encode()
    if op in ("meta_json", "meta_shape"):
        meta = json.loads(header["__metadata__"]["gradstep"])
        if op == "meta_shape":  # a layer size claimed much larger than the tensors hold
            cands = [p for p in leaves(meta) if p and p[-1] in ("in_features", "out_features", "num_features",
                                                               "num_parameters", "pieces")]
            if not cands:
                return bytes(b)
            path = cands[int(rng.integers(len(cands)))]
            value = [10**6, 10**9, 10**12, 0, -1, 2**40][int(rng.integers(6))]
        else:
            all_leaves = leaves(meta)
            path = all_leaves[int(rng.integers(len(all_leaves)))]
            value = WEIRD_VALUES[int(rng.integers(len(WEIRD_VALUES)))]
        meta = set_at(meta, path, value, delete=op == "meta_json" and rng.random() < 0.15)
        ops.append(f"{path}={value!r}")
        header["__metadata__"]["gradstep"] = json.dumps(meta)
        return join(header, body)
    if op == "tensor_values" and tensors:
        name = tensors[int(rng.integers(len(tensors)))]
        info = header[name]
        dt = {"F32": np.float32, "F64": np.float64}.get(info["dtype"])
        lo, hi = info["data_offsets"]
        if dt is None or hi <= lo:
            return bytes(b)
        if (hi - lo) % np.dtype(dt).itemsize or hi > len(body):
            return bytes(b)
        arr = np.frombuffer(body[lo:hi], dtype=dt).copy()
        v = [np.nan, np.inf, -np.inf, 1e30, -1.0, -1e-3, 3e38, 1e-45, 1e8, -0.0][int(rng.integers(10))]
        k = int(rng.integers(1, min(4, arr.size) + 1))
        with np.errstate(over="ignore"):
            arr[rng.integers(0, arr.size, k)] = v
        ops.append(f"{name}[{k} entries]={v}")
        body = body[:lo] + arr.tobytes() + body[hi:]
        return join(header, body)
    if op == "rename" and len(tensors) >= 2:
        i, j = rng.choice(len(tensors), 2, replace=False)
        a, c = tensors[int(i)], tensors[int(j)]
        header[a], header[c] = header[c], header[a]
        ops.append(f"swap {a} {c}")
        return join(header, body)
    if op == "shape" and tensors:
        name = tensors[int(rng.integers(len(tensors)))]
        shape = header[name]["shape"]
        if shape:
            shape = list(reversed(shape)) if rng.random() < 0.5 else shape + [1]
            header[name]["shape"] = shape
        ops.append(f"{name}.shape={shape}")
        return join(header, body)
    return bytes(b)


def make_file(bases: list, seed: int, index: int) -> tuple[str, bytes, list[str]]:
    rng = np.random.default_rng([seed, index])
    name, data, _, _ = bases[index % len(bases)]
    ops: list[str] = []
    for _ in range(1 + int(rng.random() < 0.25)):
        try:
            data = tamper(data, rng, ops)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            ops.append(f"(tampering stopped: {type(e).__name__})")  # e.g. an already broken header
    return name, data, ops


# ---- the verdict ----------------------------------------------------------------------------------

def judge(gs: Any, data: bytes, X: np.ndarray, y: np.ndarray, max_seconds: float) -> tuple[str, str]:
    """("refused" | "accepted" | "finding", detail)."""
    t0 = time.time()
    try:
        model = gs.io.from_bytes(data)
    except ValueError as e:
        if time.time() - t0 > max_seconds:
            return "finding", f"took {time.time() - t0:.1f} s to refuse"
        return "refused", str(e)[:200]
    except Exception as e:  # noqa: BLE001 - any other type is a finding
        return "finding", f"load raised {type(e).__name__}: {e}"[:500]
    if time.time() - t0 > max_seconds:
        return "finding", f"took {time.time() - t0:.1f} s to load"
    try:
        Xm = X.astype(model.dtype)
        if model.input_shape != X.shape[1:]:
            return "finding", f"loaded with input shape {model.input_shape} instead of {X.shape[1:]}"
        p = model.predict(Xm)
        if not np.all(np.isfinite(p)):
            return "finding", "loaded, but predicts non-finite values"
        if model.loss is not None:
            h = model.fit(Xm, y, epochs=1, batch_size=16, verbose=0)
            if not np.isfinite(h.history["loss"][-1]) or not np.all(np.isfinite(model.predict(Xm))):
                return "finding", f"loaded, but training gives non-finite values ({model.optimizer!r})"
    except ValueError as e:
        return "finding", f"loaded, but using it raised ValueError: {e}"[:500]
    except Exception as e:  # noqa: BLE001
        return "finding", f"loaded, but using it raised {type(e).__name__}: {e}"[:500]
    return "accepted", ""


def worker_main(seed: int, start: int, stop: int, status_path: str, summary_path: str,
                max_seconds: float, max_mb: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import gradstep as gs
    gs.set_num_threads(1)
    bases = base_models(gs)
    for name, data, _, _ in bases:
        gs.io.from_bytes(data)  # an untampered file must load (else every verdict is meaningless)
    fd = os.open(status_path, os.O_WRONLY)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = {"refused": 0, "accepted": 0, "finding": 0}
    findings, done = [], 0
    memory_flagged = False
    for index in range(start, stop):
        name, data, ops = make_file(bases, seed, index)
        text = json.dumps({"index": index, "calls": done, "unit": {"base": name, "ops": ops}}).encode()
        os.pwrite(fd, len(text).to_bytes(8, "little") + text, 0)
        _, _, X, y = bases[index % len(bases)]
        verdict, detail = judge(gs, data, X, y, max_seconds)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if peak - baseline > max_mb and not memory_flagged:
            memory_flagged = True
            verdict, detail = "finding", f"peak memory {peak - baseline:.0f} MB above the baseline"
        counts[verdict] += 1
        if verdict == "finding" and len(findings) < 200:
            findings.append({"index": index, "base": name, "ops": ops, "detail": detail})
        done += 1
    with open(summary_path, "w") as f:
        json.dump({"files": done, "counts": counts, "findings": findings, "next_index": stop}, f)


def run(files: int, seed: int, hang_seconds: float, max_seconds: float, max_mb: float, chunk: int = 2000,
        log=print) -> dict:
    report = {"files": 0, "counts": {"refused": 0, "accepted": 0, "finding": 0}, "crashes": [],
              "hangs": [], "findings": [], "workers": 0, "seconds": 0.0}
    t0 = time.time()
    index = 0
    with tempfile.TemporaryDirectory() as d:
        while index < files:
            status_path, summary_path = os.path.join(d, "status"), os.path.join(d, "summary.json")
            with open(status_path, "wb") as f:
                f.write(b"\0" * 8)
            if os.path.exists(summary_path):
                os.unlink(summary_path)
            stop = min(files, index + chunk)
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed),
                   "--start", str(index), "--stop", str(stop), "--status", status_path,
                   "--summary", summary_path, "--max-seconds", str(max_seconds), "--max-mb", str(max_mb)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            err_path = os.path.join(d, "stderr")
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, env=env, stderr=err)
            report["workers"] += 1
            last, last_change = None, time.time()
            while proc.poll() is None:
                time.sleep(0.2)
                st = read_status(status_path)
                key = None if st is None else st["index"]
                if key != last:
                    last, last_change = key, time.time()
                elif time.time() - last_change > hang_seconds:
                    proc.kill()
                    proc.wait()
                    break
            if proc.returncode == 0 and os.path.exists(summary_path):
                with open(summary_path) as f:
                    s = json.load(f)
                report["files"] += s["files"]
                for k, v in s["counts"].items():
                    report["counts"][k] += v
                report["findings"].extend(s["findings"][:200 - len(report["findings"])])
                index = stop
                continue
            st = read_status(status_path)
            if st is None:
                with open(err_path, "rb") as f:
                    raise RuntimeError(f"the worker failed before its first file: {f.read()[-3000:].decode(errors='replace')}")
            rc = proc.returncode
            hung = rc == -signal.SIGKILL and time.time() - last_change > hang_seconds
            with open(err_path, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            entry = {"index": st["index"], "returncode": rc, "unit": st["unit"], "stderr": tail,
                     "signal": signal.Signals(-rc).name if rc is not None and rc < 0 else None}
            (report["hangs"] if hung else report["crashes"]).append(entry)
            log(f"fuzz_files: {'HANG' if hung else 'CRASH'} at file {st['index']} {st['unit']}, status {rc}")
            report["files"] += st["calls"] + 1
            index = st["index"] + 1
    report["seconds"] = round(time.time() - t0, 1)
    return report


def replay(seed: int, index: int) -> None:
    import gradstep as gs
    bases = base_models(gs)
    name, data, ops = make_file(bases, seed, index)
    print(f"file {index} of seed {seed}: base {name}, tampering {ops}")
    _, _, X, y = bases[index % len(bases)]
    print(judge(gs, data, X, y, 1e9))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--hang-seconds", type=float, default=60.0)
    p.add_argument("--max-seconds", type=float, default=5.0, help="a slower load or refusal is a finding")
    p.add_argument("--max-mb", type=float, default=200.0, help="a higher peak memory is a finding")
    p.add_argument("--replay", nargs=2, type=int, metavar=("SEED", "INDEX"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--status", help=argparse.SUPPRESS)
    p.add_argument("--summary", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main(a.seed, a.start, a.stop, a.status, a.summary, a.max_seconds, a.max_mb)
        return 0
    if a.replay:
        replay(*a.replay)
        return 0
    report = run(a.files, a.seed, a.hang_seconds, a.max_seconds, a.max_mb)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print(f"fuzz_files: {report['files']} tampered files in {report['seconds']} s: {report['counts']}, "
          f"{len(report['crashes'])} crashes, {len(report['hangs'])} hangs")
    for x in (report["crashes"] + report["hangs"])[:5]:
        print(json.dumps(x)[:1500])
    for x in report["findings"][:15]:
        print(json.dumps(x)[:600])
    return 1 if report["crashes"] or report["hangs"] or report["counts"]["finding"] else 0


if __name__ == "__main__":
    sys.exit(main())
