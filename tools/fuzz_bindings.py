"""Fuzz every name in `gradstep._core` in a separate process, so that a crash is a finding, not
the end of the run.

    python tools/fuzz_bindings.py --calls 1000000 [--seed 0] [--json report.json]
    python tools/fuzz_bindings.py --replay crash.json     # re-run one recorded call unit, in-process

How it works. The names are enumerated from `_core` itself (functions, and classes with their
methods), and each one's parameters are read from the signature pybind11 writes into its
docstring, so a new binding is fuzzed without touching this file. A *call unit* is one call of a
function, or one object of a class (constructor, then a few method calls, sometimes with the
arrays it holds made read-only in between). Arguments are described by small JSON-able specs
(shape, dtype, layout, read-only, contents, aliasing, None, junk) that are turned into Python
objects right before the call. Generation mixes three sources:
  - fresh random specs whose array dimensions come from a small per-unit pool, then repaired
    from the binding's own error messages ("x must have shape (*, 4)", "must have dtype int64",
    "must be C-contiguous"), so most units reach the kernels and not only the validation;
  - mutations of units that ran cleanly (wrong dtype, stride, rank, size 0 or huge, None, NaN,
    inf, aliasing between arguments, read-only outputs, extreme scalars);
  - recipes for constructors whose arguments must fit together (the whole-step `Network`).

The worker writes "index + description" of the unit it is about to run into a status file
before every call (one pwrite); if it dies (signal, abort) or stops advancing (hang), the parent
records that unit and starts a new worker after it. Beside crashes it records exceptions outside
TypeError/ValueError/IndexError/MemoryError, and any read-only array a call changed.
Exit status: 0 when nothing was found, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import numpy as np

ALLOWED = (TypeError, ValueError, IndexError, MemoryError)
MEMORY_LIMIT = 3 << 30  # bytes of address space for a worker: huge allocations fail, not the machine
MAX_ELEMENTS = 1 << 20  # no materialized array above this (huge sizes come from broadcasting)

# ---- signatures -----------------------------------------------------------------------------------


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def signatures(name: str, doc: str | None) -> list[list[dict]]:
    """The parameter lists of `name` from a pybind11 docstring (one per overload)."""
    out = []
    for line in (doc or "").splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s*)?{re.escape(name)}\((.*)\)\s*->", line)
        if not m or m.group(1) == "*args, **kwargs":
            continue
        params, kwonly = [], False
        for part in split_top(m.group(1)):
            if part == "*":
                kwonly = True
                continue
            pname, _, rest = part.partition(":")
            ann, _, default = rest.partition("=")
            pname = pname.strip()
            if pname == "self":
                continue
            params.append({"name": pname, "ann": ann.strip(), "default": bool(default.strip()),
                           "kwonly": kwonly})
        out.append(params)
    return out


def targets(core: Any) -> dict[str, dict]:
    """Every public name in `_core`: {"kind": "function"|"class", "sigs": ..., "methods": ...}."""
    found = {}
    for name in sorted(dir(core)):
        if name.startswith("_"):
            continue
        obj = getattr(core, name)
        if isinstance(obj, type):
            methods = {}
            for m in sorted(dir(obj)):
                if m.startswith("_"):
                    continue
                attr = getattr(obj, m)
                if isinstance(attr, property):
                    methods[m] = {"property": True, "sigs": [[]]}
                elif callable(attr):
                    methods[m] = {"property": False, "sigs": signatures(m, attr.__doc__) or [[]]}
            found[name] = {"kind": "class", "sigs": signatures("__init__", obj.__init__.__doc__),
                           "methods": methods}
        elif callable(obj):
            found[name] = {"kind": "function", "sigs": signatures(name, obj.__doc__) or [[]]}
    return found


# ---- specs: JSON-able descriptions of arguments -------------------------------------------------

DIM_POOL = [0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 8, 16, 33]
BIG_DIMS = [64, 200, 600, 1000]  # 64 x 600 passes the kernels' 32k-element parallel threshold
FLOATS = ["0.0", "1.0", "0.5", "0.1", "0.9", "0.999", "1e-8", "-1.0", "2.0", "nan", "inf", "-inf",
          "1e308", "-1e-30", "1e30", "5e-324"]
INTS = [0, 1, 2, 3, 1, 2, -1, 7, 100, 2**31 - 1, 2**31, 2**63 - 1, -2**63, 2**64, 10**6, -7]
BAD_DTYPES = ["int64", "int32", "float16", "complex64", "bool", "object", "void0", ">f4", "<f8",
              "uint8", "longdouble", "datetime64[s]", "U3"]
FILLS = ["normal", "normal", "normal", "normal", "uniform", "int", "zero", "nan", "inf", "big",
         "tiny", "negative"]


def kind_of(ann: str) -> str:
    a = ann.replace("typing.", "").replace("collections.abc.", "")
    if "numpy.ndarray" in a or "NDArray" in a or "ArrayLike" in a or "numpy.typing" in a:
        return "array"
    if a.startswith(("Sequence", "list", "Iterable")):
        return "list"
    if a.startswith("tuple"):
        return "tuple"
    if "SupportsFloat" in a or a == "float":
        return "float"
    if "SupportsInt" in a or a == "int":
        return "int"
    if a == "bool":
        return "bool"
    if a == "str":
        return "str"
    if a == "dict" or a.startswith("dict"):
        return "junk"
    if a == "object":
        return "object"
    return "object"


def inner_types(ann: str) -> list[str]:
    m = re.match(r"^[\w.]+\[(.*)\]$", ann.strip())
    return split_top(m.group(1)) if m else []


class Gen:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def dims(self) -> list[int]:
        pool = [self.pick(DIM_POOL) for _ in range(3)]
        if self.chance(0.1):
            pool[int(self.rng.integers(3))] = self.pick(BIG_DIMS)
        return pool

    def array(self, pool: list[int], dtype: str | None = None) -> dict:
        rank = self.pick([1, 2, 2, 2, 3, 0])
        shape = [self.pick(pool) for _ in range(rank)]
        while int(np.prod(shape)) > MAX_ELEMENTS:
            shape[int(np.argmax(shape))] //= 4
        spec = {"k": "arr", "shape": shape, "dtype": dtype or self.pick(["float32", "float64"]),
                "layout": "c", "ro": False, "fill": "normal", "seed": int(self.rng.integers(2**31))}
        if self.chance(0.1):
            spec["fill"] = self.pick(FILLS)
        return spec

    def scalar(self, kind: str) -> dict:
        if kind == "float":
            return {"k": "float", "v": self.pick(FLOATS[:9]) if self.chance(0.8) else self.pick(FLOATS)}
        if kind == "int":
            return {"k": "int", "v": self.pick(INTS[:5]) if self.chance(0.8) else self.pick(INTS)}
        if kind == "bool":
            return {"k": "bool", "v": self.chance(0.5)}
        if kind == "str":
            return {"k": "str", "v": self.pick(["float32", "float64", "", "x" * 100])}
        return self.junk()

    def junk(self) -> dict:
        return self.pick([{"k": "none"}, {"k": "junk", "v": "object"}, {"k": "junk", "v": "str"},
                          {"k": "junk", "v": "list"}, {"k": "junk", "v": "dict"},
                          {"k": "int", "v": 3}, {"k": "float", "v": "nan"},
                          {"k": "dtype", "v": "float32"}, {"k": "dtype", "v": "void0"}])

    def value(self, ann: str, pool: list[int], depth: int = 0) -> dict:
        kind = kind_of(ann)
        if kind == "array":
            return self.array(pool)
        if kind == "object":
            r = self.rng.random()
            if r < 0.6:
                return self.array(pool)
            if r < 0.85:
                return {"k": "none"}
            return self.pick([{"k": "dtype", "v": "float32"}, {"k": "dtype", "v": "float64"},
                              self.junk(), self.scalar("int")])
        if kind in ("list", "tuple") and depth < 3:
            inner = inner_types(ann)
            if kind == "tuple" and inner and inner[-1] != "...":
                items = [self.value(t, pool, depth + 1) for t in inner]
            else:
                t = inner[0] if inner else self.pick(["float", "int"])
                items = [self.value(t, pool, depth + 1) for _ in range(self.pick([0, 1, 2, 3, 5]))]
            return {"k": kind, "items": items}
        return self.scalar(kind)

    def call(self, sig: list[dict], pool: list[int]) -> list[dict]:
        args = []
        for p in sig:
            if p["default"] and self.chance(0.3):
                continue  # leave it to its default
            args.append({"name": p["name"], "kw": p["kwonly"] or bool(args and args[-1]["kw"]),
                         "spec": self.value(p["ann"], pool)})
        return args

    # ---- mutations ----------------------------------------------------------------------------
    def mutate(self, args: list[dict], pool: list[int]) -> list[dict]:
        args = json.loads(json.dumps(args))
        if not args:
            return args
        for _ in range(1 + int(self.chance(0.3))):
            i = int(self.rng.integers(len(args)))
            spec = args[i]["spec"]
            op = self.rng.random()
            if spec["k"] == "arr":
                self.mutate_array(spec, pool)
            elif spec["k"] in ("list", "tuple") and spec["items"] and op < 0.8:
                j = int(self.rng.integers(len(spec["items"])))
                item = spec["items"][j]
                if item["k"] == "arr":
                    self.mutate_array(item, pool)
                elif item["k"] in ("int", "float"):
                    spec["items"][j] = self.scalar(item["k"]) if self.chance(0.5) else (
                        {"k": item["k"], "v": self.pick(INTS if item["k"] == "int" else FLOATS)})
                elif item["k"] in ("list", "tuple") and item["items"]:
                    k = int(self.rng.integers(len(item["items"])))
                    sub = item["items"][k]
                    item["items"][k] = ({"k": "int", "v": self.pick(INTS)} if sub["k"] == "int" else
                                        {"k": "float", "v": self.pick(FLOATS)} if sub["k"] == "float"
                                        else self.junk())
                else:
                    spec["items"][j] = self.junk()
            elif spec["k"] in ("int", "float"):
                spec["v"] = self.pick(INTS if spec["k"] == "int" else FLOATS)
            elif op < 0.5:
                args[i]["spec"] = self.junk()
            # aliasing: one argument becomes another one (or a view overlapping it)
            if self.chance(0.12) and len(args) > 1:
                j = int(self.rng.integers(len(args)))
                if j != i and args[j]["spec"]["k"] == "arr":
                    args[i]["spec"] = {"k": self.pick(["alias", "view"]), "i": j}
            if self.chance(0.05):
                args[i]["spec"] = self.junk()
        return args

    def mutate_array(self, spec: dict, pool: list[int]) -> None:
        op = int(self.rng.integers(9))
        if op == 0:
            spec["dtype"] = self.pick(BAD_DTYPES + ["float32", "float64"])
        elif op == 1:
            spec["layout"] = self.pick(["f", "strided", "neg", "bcast", "huge", "unaligned"])
        elif op == 2:
            spec["ro"] = True
        elif op == 3 and spec["shape"]:
            a = int(self.rng.integers(len(spec["shape"])))
            spec["shape"][a] = self.pick([0, 1, spec["shape"][a] + 1, max(0, spec["shape"][a] - 1),
                                          self.pick(pool)])
        elif op == 4:
            if spec["shape"] and self.chance(0.5):
                spec["shape"].pop(int(self.rng.integers(len(spec["shape"]))))
            else:
                spec["shape"].insert(int(self.rng.integers(len(spec["shape"]) + 1)), self.pick([1, 2, 3]))
        elif op == 5:
            spec["fill"] = self.pick(FILLS)
        elif op == 6:
            spec["shape"] = [0 if self.chance(0.5) else s for s in spec["shape"]]
        else:
            spec["fill"] = self.pick(["nan", "inf", "big", "negative"])


# ---- materialization ------------------------------------------------------------------------------


def make_dtype(name: str) -> np.dtype:
    return np.dtype([]) if name == "void0" else np.dtype(name)


def make_array(spec: dict) -> np.ndarray:
    dt = make_dtype(spec["dtype"])
    shape = tuple(spec["shape"])
    r = np.random.default_rng(spec["seed"])
    n = int(np.prod(shape)) if shape else 1
    fill = spec["fill"]
    if dt.kind in "fc":
        base = {"normal": lambda: r.standard_normal(n), "uniform": lambda: r.random(n),
                "int": lambda: r.integers(-3, 4, n).astype(float), "zero": lambda: np.zeros(n),
                "nan": lambda: np.where(r.random(n) < 0.3, np.nan, r.standard_normal(n)),
                "inf": lambda: np.where(r.random(n) < 0.3, np.inf * r.choice([-1, 1], n), 0.5),
                "big": lambda: r.standard_normal(n) * 1e30, "tiny": lambda: r.standard_normal(n) * 1e-40,
                "negative": lambda: -r.random(n)}[fill]()
        with np.errstate(all="ignore"):
            data = base.astype(dt)
    elif dt.kind in "iub":
        lo = -3 if fill == "negative" else 0
        with np.errstate(all="ignore"):
            data = r.integers(lo, 5 if fill != "big" else 2**31 - 1, n).astype(dt)
    elif dt.kind == "O":
        data = np.array([None] * n, dtype=object)
    else:
        data = np.zeros(n, dtype=dt)
    layout = spec["layout"]
    if layout == "huge":
        # A huge shape at no memory cost: broadcasting (stride 0, read-only).
        one = np.zeros((), dtype=dt) if n == 0 else data[:1].reshape(())
        return np.broadcast_to(one, (2**31 + 5,) + shape[1:] if shape else (2**31 + 5,))
    a = data.reshape(shape)
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], dtype=dt)
        big[::2] = a
        a = big[::2]
    elif layout == "neg" and a.ndim:
        a = a[::-1]
    elif layout == "bcast" and a.ndim:
        a = np.broadcast_to(a[:1], a.shape)
    elif layout == "unaligned" and dt.itemsize > 1 and dt.kind != "O":
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        a2 = raw[1:].view(dt).reshape(a.shape) if a.nbytes else a
        if a.nbytes:
            a2[...] = a
        a = a2
    if spec["ro"] and a.flags.writeable:
        a.flags.writeable = False
    return a


JUNK = {"object": object, "str": lambda: "not an array", "list": lambda: [1, "a", None],
        "dict": lambda: {"a": 1}}


def materialize(spec: dict, made: list) -> Any:
    k = spec["k"]
    if k == "arr":
        return make_array(spec)
    if k in ("alias", "view"):
        src = made[spec["i"]] if spec["i"] < len(made) else None
        if k == "view" and isinstance(src, np.ndarray) and src.ndim:
            return src[:]  # a second array object over the same memory
        return src
    if k == "none":
        return None
    if k == "float":
        return float(spec["v"])
    if k in ("int", "bool", "str"):
        return spec["v"]
    if k == "dtype":
        return make_dtype(spec["v"])
    if k == "junk":
        return JUNK[spec["v"]]()
    if k in ("list", "tuple"):
        items = [materialize(s, made) for s in spec["items"]]
        return items if k == "list" else tuple(items)
    if k == "dict":
        return {key: materialize(v, made) for key, v in spec["items"].items()}
    raise ValueError(f"unknown spec {spec}")


def build_args(args: list[dict]) -> tuple[list, dict, list]:
    made: list = []
    pos, kw = [], {}
    for a in args:
        v = materialize(a["spec"], made)
        made.append(v)
        if a["kw"]:
            kw[a["name"]] = v
        else:
            pos.append(v)
    return pos, kw, made


def arrays_in(objs: list) -> list[np.ndarray]:
    out = []
    for o in objs:
        if isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            out.extend(arrays_in(list(o)))
    return out


def readonly_snapshot(objs: list) -> list[tuple[np.ndarray, bytes]]:
    """Copies of the read-only arrays (with their own memory) among `objs`."""
    snap = []
    for a in arrays_in(objs):
        if (not a.flags.writeable and a.dtype.kind != "O" and a.size <= 100_000
                and all(s != 0 for s in a.strides) and a.dtype.itemsize):
            snap.append((a, a.tobytes()))
    return snap


# ---- recipes: constructor arguments that fit together -------------------------------------------


def to_spec(value: Any, seed: int = 0) -> dict:
    """A spec that materializes to `value` (arrays: same shape and dtype, fresh contents)."""
    if isinstance(value, np.ndarray):
        fill = "uniform" if value.dtype.kind == "f" else "int"
        return {"k": "arr", "shape": list(value.shape), "dtype": value.dtype.name, "layout": "c",
                "ro": False, "fill": fill, "seed": seed}
    if isinstance(value, (bool, np.bool_)):
        return {"k": "bool", "v": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"k": "int", "v": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"k": "float", "v": repr(float(value))}
    if isinstance(value, str):
        return {"k": "str", "v": value}
    if isinstance(value, dict):
        return {"k": "dict", "items": {str(k): to_spec(v, seed + i) for i, (k, v) in enumerate(value.items())}}
    if isinstance(value, (list, tuple)):
        return {"k": "list" if isinstance(value, list) else "tuple",
                "items": [to_spec(v, seed + i + 1) for i, v in enumerate(value)]}
    if value is None:
        return {"k": "none"}
    if isinstance(value, np.dtype):
        return {"k": "dtype", "v": value.name}
    raise TypeError(f"to_spec: {type(value).__name__}")


def random_model(g: Gen) -> Any:
    """A small built gs.Sequential over the op core's layers (dense, conv, pooling, norms)."""
    import gradstep as gs
    dtype = g.pick(["float32", "float64"])
    act = g.pick([gs.ReLU, gs.Tanh, gs.Sigmoid, gs.ELU, gs.LeakyReLU, gs.Identity])
    kind = g.pick(["dense", "dense", "conv2d", "conv1d", "maxout"])
    k, width = g.pick([1, 2, 3]), g.pick([1, 2, 3, 4])
    if kind == "dense":
        layers = [gs.Dense(width, 5), act(), gs.Dropout(g.pick([0.0, 0.5])), gs.BatchNorm(5),
                  gs.Dense(5, 3), g.pick([gs.Identity, gs.Softmax])()]
        shape = (width,)
    elif kind == "maxout":
        layers = [gs.Maxout(width, 4, pieces=g.pick([1, 2, 3])), gs.PReLU(g.pick([1, 4])), gs.Dense(4, 2)]
        shape = (width,)
    elif kind == "conv2d":
        side = g.pick([3, 4, 6, 7])
        pool = g.pick([gs.MaxPool2D, gs.AvgPool2D])(g.pick([1, 2]))
        layers = [gs.Conv2D(width, 3, k, stride=g.pick([1, 2]), padding=g.pick([0, 1]),
                            dilation=g.pick([1, 2])), gs.BatchNorm(3), act(), pool,
                  g.pick([gs.Flatten, gs.GlobalAvgPool])()]
        shape = (width, side, side)
    else:
        side = g.pick([3, 5, 8])
        pool = g.pick([gs.MaxPool1D, gs.AvgPool1D])(g.pick([1, 2]))
        layers = [gs.Conv1D(width, 2, k, padding=g.pick([0, 1])), act(), pool, gs.GlobalAvgPool()]
        shape = (width, side)
    try:
        return gs.Sequential(layers, dtype=dtype, seed=int(g.rng.integers(1000)), input_shape=shape)
    except ValueError:
        return gs.Sequential([gs.Dense(width, 2)], dtype=dtype, seed=0, input_shape=(width,))


def _op_parts(model: Any) -> list[tuple]:
    return [(layer.op_kind, layer._op_attrs(), layer._op_slots(), layer._op_buffers())
            for layer in model.layers]


def network_recipe(g: Gen) -> list[dict]:
    """`_core.Network(ops, in_shape, loss, opt, params, grads, state0, state1)` from a real model."""
    model = random_model(g)
    P = model.arena.size
    opt = g.pick(["sgd", "rmsprop", "adam"])
    flat = lambda fill, seed: {"k": "arr", "shape": [P], "dtype": model.dtype.name, "layout": "c",  # noqa: E731
                               "ro": False, "fill": fill, "seed": seed}
    args = [("ops", to_spec([tuple(op) for op in _op_parts(model)], 1)),
            ("in_shape", to_spec(list(model.input_shape))),
            ("loss", {"k": "str", "v": g.pick(["mse", "softmax_xent", "bce", "bce_logits", "nll",
                                               "softmax_xent_soft", "bogus"])}),
            ("opt", {"k": "str", "v": opt}), ("params", flat("normal", 2)), ("grads", flat("zero", 3)),
            ("state0", flat("zero", 4) if opt != "sgd" or g.chance(0.5) else {"k": "none"}),
            ("state1", flat("uniform", 5) if opt == "adam" or g.chance(0.3) else {"k": "none"})]
    return [{"name": n, "kw": False, "spec": sp} for n, sp in args]


def op_runner_recipe(g: Gen) -> list[dict]:
    """`_core.OpRunner(kind, attrs, in_shape, dtype, slots)` for one layer of a real model."""
    model = random_model(g)
    i = int(g.rng.integers(len(model.layers)))
    layer = model.layers[i]
    g.op_context = {"P": model.arena.size, "dtype": model.dtype.name, "in_shape": list(model._in_shapes[i]),
                    "buffers": [list(b.shape) for b in layer._op_buffers()]}
    args = [("kind", {"k": "str", "v": layer.op_kind}), ("attrs", to_spec(layer._op_attrs())),
            ("in_shape", to_spec(list(model._in_shapes[i]))), ("dtype", {"k": "dtype", "v": model.dtype.name}),
            ("slots", to_spec([tuple(s) for s in layer._op_slots()]))]
    return [{"name": n, "kw": False, "spec": sp} for n, sp in args]


def op_runner_call_recipe(method: str):
    def make(g: Gen, ctor: list[dict]) -> list[dict] | None:
        ctx = getattr(g, "op_context", None)
        if ctx is None:
            return None
        N = g.pick([1, 2, 3, 5])
        arr = lambda shape, fill="normal": {"k": "arr", "shape": shape, "dtype": ctx["dtype"],  # noqa: E731
                                            "layout": "c", "ro": False, "fill": fill,
                                            "seed": int(g.rng.integers(2**31))}
        buffers = {"k": "list", "items": [arr(b, "uniform") for b in ctx["buffers"]]}
        first = [N] + ctx["in_shape"]
        args = [("x" if method == "forward" else "dy", arr(first)), ("params", arr([ctx["P"]])),
                ("grads", arr([ctx["P"]], "zero")), ("buffers", buffers)]
        if method == "forward":
            args += [("training", {"k": "bool", "v": g.chance(0.5)}), ("seed", {"k": "int", "v": 3})]
        out = [{"name": n, "kw": False, "spec": sp} for n, sp in args]
        return g.mutate(out, [N] + ctx["in_shape"]) if g.chance(0.3) else out
    return make


def network_step_recipe(g: Gen, ctor: list[dict]) -> list[dict] | None:
    """train_step arguments that fit the constructor's ops (often; mutated sometimes)."""
    try:
        in_shape = [s["v"] for s in ctor[1]["spec"]["items"]]
        dtype = ctor[4]["spec"]["dtype"]
        loss, opt = ctor[2]["spec"]["v"], ctor[3]["spec"]["v"]
    except (KeyError, IndexError, TypeError):
        return None
    N = g.pick([1, 2, 3, 4, 7, 16])
    K = g.pick([1, 2, 3, 5])
    x = {"k": "arr", "shape": [N] + in_shape, "dtype": dtype, "layout": "c", "ro": g.chance(0.1),
         "fill": "normal" if g.chance(0.9) else g.pick(FILLS), "seed": int(g.rng.integers(2**31))}
    labels = {"k": "arr", "shape": [N], "dtype": "int64", "layout": "c", "ro": False, "fill": "int",
              "seed": int(g.rng.integers(2**31))}
    target = {"k": "arr", "shape": [N, K], "dtype": dtype, "layout": "c", "ro": False,
              "fill": "uniform", "seed": int(g.rng.integers(2**31))}
    if loss in ("softmax_xent", "nll"):
        target = {"k": "none"}
    else:
        labels = {"k": "none"}
    seeds = {"k": "list", "items": [{"k": "int", "v": int(g.rng.integers(2**63))} for _ in range(g.pick([0, 1, 2]))]}
    hyper = {"k": "list", "items": [{"k": "float", "v": v} for v in
                                    (["0.01", "0.9", "0.0", "0.0", "0.0"] if opt == "sgd" else
                                     ["0.01", "0.99", "1e-8", "0.9", "0.0"] if opt == "rmsprop" else
                                     ["0.001", "0.9", "0.999", "1e-8", "0.0", "0.0"])]}
    args = [{"name": "x", "kw": False, "spec": x}, {"name": "labels", "kw": False, "spec": labels},
            {"name": "target", "kw": False, "spec": target},
            {"name": "dropout_seeds", "kw": False, "spec": seeds},
            {"name": "hyper", "kw": False, "spec": hyper},
            {"name": "step", "kw": False, "spec": {"k": "int", "v": g.pick([1, 1, 2, 10])}}]
    return g.mutate(args, [N, K] + in_shape) if g.chance(0.3) else args


def spatial_recipe(name: str):
    """conv_*/maxpool_*/avgpool_* kernels: x (N, C, *S) with one stride/padding/dilation per
    spatial axis, weights and gradients that fit (then mutated sometimes)."""
    def make(g: Gen) -> list[dict]:
        dims = g.pick([1, 2])
        dtype = g.pick(["float32", "float64"])
        N, C, O, k = g.pick([1, 2, 3]), g.pick([1, 2, 3]), g.pick([1, 2, 4]), g.pick([1, 2, 3])
        S = [g.pick([3, 4, 5, 7]) for _ in range(dims)]
        stride, pad, dil = [g.pick([1, 2])] * dims, [g.pick([0, 1])] * dims, [g.pick([1, 2])] * dims
        if not name.startswith("conv"):
            pad = [min(p, k // 2) for p in pad]
            dil = [1] * dims
        out = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, st in zip(S, pad, dil, stride)]
        if min(out) < 1:
            out, S = [1] * dims, [k * d for d in dil]
            pad = [0] * dims
        arr = lambda shape, fill="normal": {"k": "arr", "shape": shape, "dtype": dtype, "layout": "c",  # noqa: E731
                                            "ro": False, "fill": fill, "seed": int(g.rng.integers(2**31))}
        ints = lambda v: {"k": "list", "items": [{"k": "int", "v": x} for x in v]}  # noqa: E731
        pad2 = [p for p in pad for _ in range(2)]  # before and after, per spatial axis
        x, w, b = arr([N, C] + S), arr([O, C] + [k] * dims), arr([O])
        if name == "conv_forward" or name == "conv_forward_ref":
            args = [("x", x), ("w", w), ("b", b), ("stride", ints(stride)), ("padding", ints(pad2)),
                    ("dilation", ints(dil))]
        elif name == "conv_workspace_elems":
            args = [("x", x), ("w", w), ("stride", ints(stride)), ("padding", ints(pad2)),
                    ("dilation", ints(dil))]
        elif name == "conv_backward_ref":
            args = [("dy", arr([N, O] + out)), ("x", x), ("w", w), ("stride", ints(stride)),
                    ("padding", ints(pad2)), ("dilation", ints(dil))]
        elif name.startswith("conv_backward"):
            args = [("dy", arr([N, O] + out)), ("x", x), ("w", w), ("dw", arr([O, C] + [k] * dims, "zero")),
                    ("db", arr([O], "zero")), ("stride", ints(stride)), ("padding", ints(pad2)),
                    ("dilation", ints(dil))]
        elif name.endswith("_forward"):
            args = [("x", x), ("kernel_size", ints([k] * dims)), ("stride", ints(stride)), ("padding", ints(pad2))]
        elif name == "maxpool_backward":
            idx = {"k": "arr", "shape": [N, C] + out, "dtype": "int32", "layout": "c", "ro": False,
                   "fill": "int", "seed": int(g.rng.integers(2**31))}
            args = [("dy", arr([N, C] + out)), ("argmax", idx), ("input_shape", ints([N, C] + S)),
                    ("kernel_size", ints([k] * dims)), ("stride", ints(stride)), ("padding", ints(pad2))]
        else:
            args = [("dy", arr([N, C] + out)), ("input_shape", ints([N, C] + S)),
                    ("kernel_size", ints([k] * dims)), ("stride", ints(stride)), ("padding", ints(pad2))]
        spec = [{"name": n, "kw": False, "spec": sp} for n, sp in args]
        return g.mutate(spec, [N, C, O] + S) if g.chance(0.4) else spec
    return make


def op_info_recipe(g: Gen) -> list[dict]:
    model = random_model(g)
    i = int(g.rng.integers(len(model.layers)))
    layer = model.layers[i]
    spec = [{"name": "kind", "kw": False, "spec": {"k": "str", "v": layer.op_kind}},
            {"name": "attrs", "kw": False, "spec": to_spec(layer._op_attrs())},
            {"name": "in_shape", "kw": False, "spec": to_spec(list(model._in_shapes[i]))}]
    return g.mutate(spec, [1, 2, 3]) if g.chance(0.4) else spec


FUNCTION_RECIPES = {name: spatial_recipe(name) for name in (
    "conv_forward", "conv_forward_ref", "conv_backward", "conv_backward_ref", "conv_workspace_elems", "maxpool_forward",
    "maxpool_backward", "avgpool_forward", "avgpool_backward")}
FUNCTION_RECIPES["op_info"] = op_info_recipe


def _forward_backward_recipe(g: Gen, ctor: list[dict]) -> list[dict] | None:
    args = network_step_recipe(g, ctor)
    return None if args is None else args[:4]


RECIPES = {"Network": network_recipe, "OpRunner": op_runner_recipe}
METHOD_RECIPES = {("Network", "train_step"): network_step_recipe,
                  ("Network", "forward_backward"): _forward_backward_recipe,
                  ("OpRunner", "forward"): op_runner_call_recipe("forward"),
                  ("OpRunner", "backward"): op_runner_call_recipe("backward")}

# ---- repair from error messages ---------------------------------------------------------------------

SHAPE_RE = re.compile(r"(\w+) must have shape \(([^)]*)\)")
DTYPE_RE = re.compile(r"(\w+) must have dtype (\w+)")
FLOAT_RE = re.compile(r"(\w+) must be float32 or float64")
CONTIG_RE = re.compile(r"(\w+) must be C-contiguous")
WRITABLE_RE = re.compile(r"(\w+) must be writable")


def find_arg(args: list[dict], name: str) -> dict | None:
    for a in args:
        if a["name"] == name and a["spec"]["k"] == "arr":
            return a["spec"]
    for a in args:  # e.g. "Network.train_step: x" where the message names a parameter
        if a["name"] == name:
            return None
    return None


def repair(args: list[dict], message: str, g: Gen, pool: list[int]) -> bool:
    """Adjust `args` after the binding refused them; True when something was changed."""
    m = SHAPE_RE.search(message)
    if m:
        spec = find_arg(args, m.group(1))
        if spec is None:
            return False
        want = [s.strip() for s in m.group(2).split(",") if s.strip()]
        new = []
        for axis, w in enumerate(want):
            if w == "*":
                new.append(spec["shape"][axis] if axis < len(spec["shape"]) else g.pick(pool))
            else:
                new.append(int(w))
        if new == spec["shape"] or int(np.prod(new)) > MAX_ELEMENTS:
            return False
        spec["shape"] = new
        return True
    for rx, fix in ((DTYPE_RE, lambda s, m: s.update(dtype=m.group(2))),
                    (FLOAT_RE, lambda s, m: s.update(dtype="float32")),
                    (CONTIG_RE, lambda s, m: s.update(layout="c")),
                    (WRITABLE_RE, lambda s, m: s.update(ro=False))):
        m = rx.search(message)
        if m:
            spec = find_arg(args, m.group(1))
            if spec is None:
                return False
            before = dict(spec)
            fix(spec, m)
            if spec["dtype"] not in ("float32", "float64", "int64", "int32"):
                spec["dtype"] = "float32"
            return spec != before
    if "incompatible function arguments" in message:
        changed = False
        for a in args:
            if a["spec"]["k"] in ("junk", "dtype") or (a["spec"]["k"] == "int" and abs(a["spec"]["v"]) > 2**31):
                a["spec"] = g.scalar("int") if a["spec"]["k"] == "int" else g.array(pool)
                changed = True
        return changed
    return False


# ---- the worker -----------------------------------------------------------------------------------


class Worker:
    def __init__(self, seed: int, status_fd: int) -> None:
        from gradstep import _core
        self.core = _core
        self.targets = targets(_core)
        self.names = sorted(self.targets)
        self.seed = seed
        self.status_fd = status_fd
        self.corpus: dict[str, list] = {}
        self.calls = 0
        self.counts: dict[str, list[int]] = {}  # name -> [calls, clean returns]
        self.exceptions: dict[str, int] = {}
        self.findings: list[dict] = []
        self.last_made: list = []

    def mark(self, index: int, unit: dict) -> None:
        if self.status_fd < 0:
            return
        text = json.dumps({"index": index, "calls": self.calls, "unit": unit}).encode()
        os.pwrite(self.status_fd, len(text).to_bytes(8, "little") + text, 0)

    def invoke(self, qualname: str, fn: Any, args: list[dict], index: int, unit: dict) -> Any:
        """One binding call; returns ("ok", result) or ("error", exception)."""
        try:
            pos, kw, made = build_args(args)
        except (TypeError, ValueError, OverflowError, MemoryError):
            return ("skip", None)  # a spec numpy itself cannot make (e.g. a view of object arrays)
        self.last_made = made
        snap = readonly_snapshot(made)
        unit["last"] = {"name": qualname, "args": args}
        self.mark(index, unit)
        self.calls += 1
        c = self.counts.setdefault(qualname, [0, 0])
        c[0] += 1
        try:
            result = fn(*pos, **kw)
            outcome = ("ok", result)
            c[1] += 1
        except ALLOWED as e:
            self.exceptions[type(e).__name__] = self.exceptions.get(type(e).__name__, 0) + 1
            outcome = ("error", e)
        except Exception as e:  # noqa: BLE001 - any other type is a finding
            self.findings.append({"kind": "unexpected exception", "name": qualname,
                                  "error": f"{type(e).__name__}: {e}"[:500], "args": args})
            outcome = ("error", e)
        for a, before in snap:
            if a.tobytes() != before:
                self.findings.append({"kind": "wrote a read-only array", "name": qualname, "args": args})
        if qualname == "set_num_threads" and outcome[0] == "ok":
            self.core.set_num_threads(1)
        return outcome

    def fresh_or_mutant(self, key: str, sig: list[dict], g: Gen, pool: list[int]) -> tuple[list, bool]:
        corpus = self.corpus.get(key)
        if corpus and g.chance(0.6):
            return g.mutate(g.pick(corpus), pool), False
        return g.call(sig, pool), True

    def remember(self, key: str, args: list[dict], g: Gen) -> None:
        corpus = self.corpus.setdefault(key, [])
        if len(corpus) < 40:
            corpus.append(json.loads(json.dumps(args)))
        else:
            corpus[int(g.rng.integers(len(corpus)))] = json.loads(json.dumps(args))

    def call_with_repair(self, key: str, fn: Any, sig: list[dict], g: Gen, pool: list[int],
                         index: int, unit: dict, args: list | None = None) -> tuple:
        fresh = args is None
        if args is None:
            args, fresh = self.fresh_or_mutant(key, sig, g, pool)
        outcome = ("error", None)
        for _ in range(8 if fresh else 1):
            outcome = self.invoke(key, fn, args, index, unit)
            if outcome[0] == "ok":
                self.remember(key, args, g)
                break
            if not repair(args, str(outcome[1]), g, pool):
                break
        return outcome, args

    def run_unit(self, index: int) -> None:
        g = Gen(np.random.default_rng([self.seed, index]))
        name = self.names[index % len(self.names)] if g.chance(0.5) else g.pick(self.names)
        t = self.targets[name]
        pool = g.dims()
        unit: dict = {"name": name, "steps": []}
        if t["kind"] == "function":
            fn = getattr(self.core, name)
            sig = g.pick(t["sigs"])
            recipe = FUNCTION_RECIPES.get(name)
            args = recipe(g) if recipe is not None and g.chance(0.6) else None
            self.call_with_repair(name, fn, sig, g, pool, index, unit, args)
            return
        cls = getattr(self.core, name)
        recipe = RECIPES.get(name)
        if recipe is not None and g.chance(0.8):
            ctor = recipe(g)
            if g.chance(0.15):
                ctor = g.mutate(ctor, pool)
            (status, obj), ctor = self.call_with_repair(name, cls, [], g, pool, index, unit, ctor)
        else:
            sig = g.pick(t["sigs"]) if t["sigs"] else []
            (status, obj), ctor = self.call_with_repair(name, cls, sig, g, pool, index, unit)
        unit["ctor"] = ctor
        if status != "ok":
            return
        # The constructor's own argument objects, to make one read-only behind the object's back.
        ctor_objects = [a for a in arrays_in(self.last_made) if a.flags.writeable]
        methods = t["methods"]
        for _ in range(int(g.rng.integers(1, 7))):
            mname = g.pick(sorted(methods))
            qual = f"{name}.{mname}"
            meta = methods[mname]
            unit["steps"].append(mname)
            if meta["property"]:
                self.invoke(qual, lambda: getattr(obj, mname), [], index, unit)
                continue
            bound = getattr(obj, mname)
            mrec = METHOD_RECIPES.get((name, mname))
            args = mrec(g, ctor) if mrec is not None and g.chance(0.8) else None
            self.call_with_repair(qual, bound, g.pick(meta["sigs"]), g, pool, index, unit, args)
            if g.chance(0.1) and ctor_objects:
                victim = g.pick(ctor_objects)
                victim.flags.writeable = False
                unit["steps"].append("made a constructor array read-only")
        del ctor_objects

    def summary(self) -> dict:
        return {"calls": self.calls, "counts": self.counts, "exceptions": self.exceptions,
                "findings": self.findings[:200], "n_findings": len(self.findings)}


def worker_main(seed: int, start: int, stop: int, status_path: str, summary_path: str,
                max_calls: int) -> None:
    import resource
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan reserves terabytes of shadow
        try:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        except (ValueError, OSError):
            pass
    fd = os.open(status_path, os.O_WRONLY)
    w = Worker(seed, fd)
    w.core.set_num_threads(1)
    index = start
    while index < stop and w.calls < max_calls:
        w.run_unit(index)
        index += 1
    result = w.summary()
    result["next_index"] = index
    with open(summary_path, "w") as f:
        json.dump(result, f)


# ---- the parent -----------------------------------------------------------------------------------


def read_status(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        n = int.from_bytes(raw[:8], "little")
        return json.loads(raw[8:8 + n]) if n else None
    except (OSError, ValueError):
        return None


ASAN_EXIT = 86


def asan_env(path: str) -> dict:
    """Worker environment for an AddressSanitizer build in `path` (tools/asan_build.sh)."""
    def lib(name: str) -> str:
        return subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                              text=True).stdout.strip()
    # libstdc++ preloaded too: ASan's __cxa_throw interceptor needs it at start-up (Python itself
    # does not link it), else the first C++ exception stops the process.
    return {"PYTHONPATH": os.path.abspath(path), "LD_PRELOAD": f"{lib('libasan.so')} {lib('libstdc++.so')}",
            "ASAN_OPTIONS": f"detect_leaks=0:allocator_may_return_null=1:exitcode={ASAN_EXIT}:"
                            f"max_allocation_size_mb={MEMORY_LIMIT >> 20}"}


def run(calls: int, seed: int, hang_seconds: float, log=print, asan: str | None = None) -> dict:
    report = {"calls": 0, "units": 0, "crashes": [], "hangs": [], "findings": [], "counts": {},
              "exceptions": {}, "workers": 0, "seconds": 0.0}
    t0 = time.time()
    index = 0
    with tempfile.TemporaryDirectory() as d:
        while report["calls"] < calls:
            status_path = os.path.join(d, "status")
            summary_path = os.path.join(d, "summary.json")
            with open(status_path, "wb") as f:
                f.write(b"\0" * 8)
            if os.path.exists(summary_path):
                os.unlink(summary_path)
            left = calls - report["calls"]
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed),
                   "--start", str(index), "--stop", str(index + 10 * left + 100),
                   "--max-calls", str(left), "--status", status_path, "--summary", summary_path]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            if asan:
                env.update(asan_env(asan))
            stderr_path = os.path.join(d, "stderr")
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(cmd, env=env, stderr=err)
            report["workers"] += 1
            last, last_change = None, time.time()
            while proc.poll() is None:
                time.sleep(0.2)
                st = read_status(status_path)
                key = None if st is None else (st["index"], st["calls"])
                if key != last:
                    last, last_change = key, time.time()
                elif time.time() - last_change > hang_seconds:
                    proc.kill()
                    proc.wait()
                    break
            st = read_status(status_path)
            rc = proc.returncode
            if rc == 0 and os.path.exists(summary_path):
                with open(summary_path) as f:
                    s = json.load(f)
                merge(report, s)
                index = s["next_index"]
                continue
            # Died or hung: record the unit it was in, count the calls it made, go on after it.
            if st is None:
                raise RuntimeError(f"the fuzz worker failed before its first call (status {rc})")
            with open(stderr_path, "rb") as f:
                tail = f.read()[-6000:].decode(errors="replace")
            entry = {"index": st["index"], "returncode": rc,
                     "signal": signal.Signals(-rc).name if rc is not None and rc < 0 else None,
                     "asan": rc == ASAN_EXIT, "stderr": tail, "unit": st["unit"]}
            hung = rc == -signal.SIGKILL and time.time() - last_change > hang_seconds
            (report["hangs"] if hung else report["crashes"]).append(entry)
            log(f"fuzz_bindings: {'HANG' if hung else 'CRASH'} at unit {st['index']} "
                f"({st['unit'].get('last', {}).get('name')}), status {rc}")
            report["calls"] += st["calls"]
            index = st["index"] + 1
    report["seconds"] = round(time.time() - t0, 1)
    return report


def merge(report: dict, s: dict) -> None:
    report["calls"] += s["calls"]
    for k, (n, ok) in s["counts"].items():
        c = report["counts"].setdefault(k, [0, 0])
        c[0] += n
        c[1] += ok
    for k, n in s["exceptions"].items():
        report["exceptions"][k] = report["exceptions"].get(k, 0) + n
    report["findings"].extend(s["findings"][:200 - len(report["findings"])])


def replay(path: str) -> None:
    """Run the last call of a recorded unit again in this process (expect the crash here)."""
    from gradstep import _core
    with open(path) as f:
        entry = json.load(f)
    unit = entry.get("unit", entry)
    last = unit["last"]
    obj: Any = _core
    name = last["name"]
    if "." in name:  # a method: build the object from the recorded constructor first
        cls_name, mname = name.split(".")
        pos, kw, _ = build_args(unit["ctor"])
        obj = getattr(getattr(_core, cls_name)(*pos, **kw), mname)
    else:
        obj = getattr(_core, name)
    pos, kw, _ = build_args(last["args"])
    print(f"replaying {name}({', '.join(a['name'] for a in last['args'])})", flush=True)
    print(obj(*pos, **kw))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=100_000, help="binding calls to make in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--hang-seconds", type=float, default=120.0,
                   help="a call making no progress this long is a hang (ASan and a busy machine are slow)")
    p.add_argument("--asan", default=None, metavar="DIR",
                   help="run the workers on the AddressSanitizer build in DIR (tools/asan_build.sh)")
    p.add_argument("--replay", default=None, help="a crash entry (JSON) to run again in-process")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--max-calls", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--status", help=argparse.SUPPRESS)
    p.add_argument("--summary", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main(a.seed, a.start, a.stop, a.status, a.summary, a.max_calls)
        return 0
    if a.replay:
        replay(a.replay)
        return 0
    report = run(a.calls, a.seed, a.hang_seconds, asan=a.asan)
    never_clean = sorted(k for k, (n, ok) in report["counts"].items() if ok == 0)
    report["never_returned_normally"] = never_clean
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print(f"fuzz_bindings: {report['calls']} calls to {len(report['counts'])} bindings in "
          f"{report['seconds']} s ({report['workers']} worker processes): "
          f"{len(report['crashes'])} crashes, {len(report['hangs'])} hangs, "
          f"{len(report['findings'])} other findings; exceptions {report['exceptions']}")
    if never_clean:
        print(f"fuzz_bindings: never returned normally: {never_clean}")
    for c in report["crashes"][:5] + report["hangs"][:5]:
        print(json.dumps(c)[:2000])
    for fnd in report["findings"][:10]:
        print(json.dumps(fnd)[:1000])
    bad = report["crashes"] or report["hangs"] or report["findings"]
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(2)
