"""`gs.cuda`: the optional CUDA backend.

    import gradstep as gs
    if gs.cuda.is_available():
        model.to("cuda")            # parameters, optimizer state and BatchNorm statistics move
        model.fit(X, y, epochs=5)   # each step: one CUDA graph replay (captured once per batch size)
        model.to("cpu")             # and back

The backend is the compiled module `gradstep._cuda` (built with `GRADSTEP_CUDA=ON pip install .`,
with the `cuda` extra for the runtime libraries). It is imported on first use, never by
`import gradstep`, so a machine without CUDA only sees `is_available() == False` and a clear
`gs.CudaError` from anything that needs a GPU.

On the device, a model trains through `Engine`: the model's layers become a list of op
descriptors (the op kind, i.e. the layer's class name, its feature counts, its parameter offsets
in the model's flat buffer and the numbers of its config), the same ops the CPU core runs. The
flat parameter buffer, the gradients, the optimizer state and BatchNorm's running statistics stay
on the device between steps; reading the model from the host (predict, evaluate, state_dict, save,
`model.to("cpu")`) copies them back first. Values written on the host while the model is on the
device (load_state_dict, a loaded optimizer state) are sent before the next step. Numpy views of a
layer's parameters taken while the model is on the device are refreshed by those same calls.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

__all__ = ["CudaError", "is_available", "device_count", "unavailable_reason", "get_device_name",
           "to_device", "parse_device"]


class CudaError(RuntimeError):
    """A CUDA failure: no device or driver, a driver too old, out of device memory, a failed kernel.
    The process keeps working; the CPU path is unaffected."""


_module: Any = None
_import_error: str | None = None


def _preload_wheel_libraries() -> None:
    """Load cuBLAS from the nvidia-cublas wheel by its versioned name, so that `_cuda` finds it in
    any layout (an installed wheel has an $ORIGIN RPATH; an in-tree build does not)."""
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return
    for root in list(getattr(nvidia, "__path__", [])):
        lib = os.path.join(root, "cu13", "lib")
        if os.path.isdir(lib):
            for name in ("libcublasLt.so.13", "libcublas.so.13"):
                path = os.path.join(lib, name)
                if os.path.exists(path):
                    try:
                        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    except OSError:
                        pass
            return


def _load() -> Any:
    """The `_cuda` module, or None (the reason in `_import_error`)."""
    global _module, _import_error
    if _module is None and _import_error is None:
        _preload_wheel_libraries()
        try:
            from . import _cuda
            _module = _cuda
        except ImportError as e:
            _import_error = (f"gradstep was built without its CUDA backend or its CUDA libraries are "
                             f"missing ({e}); build it with GRADSTEP_CUDA=ON pip install '.[cuda]'")
    return _module


def unavailable_reason() -> str:
    """Why `is_available()` is False ("" when it is True)."""
    m = _load()
    if m is None:
        return _import_error or ""
    if m.device_count() > 0:
        return ""
    return f"no usable CUDA device ({m.device_error()})"


def device_count() -> int:
    """Visible CUDA devices; 0 without the backend, a driver or a device (never raises)."""
    m = _load()
    return 0 if m is None else int(m.device_count())


def is_available() -> bool:
    return device_count() > 0


def _require() -> Any:
    """The `_cuda` module with at least one device, else CudaError with the reason."""
    m = _load()
    if m is None:
        raise CudaError(_import_error)
    if m.device_count() == 0:
        raise CudaError(f"gradstep CUDA: no usable CUDA device ({m.device_error()})")
    return m


def get_device_name(device: int = 0) -> str:
    return str(_require().device_name(int(device)))


def parse_device(device: Any) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", index) from "cpu", "cuda", "cuda:1"; ValueError otherwise."""
    if isinstance(device, str):
        d = device.strip().lower()
        if d == "cpu":
            return "cpu", 0
        if d == "cuda":
            return "cuda", 0
        if d.startswith("cuda:") and d[5:].isdigit():
            return "cuda", int(d[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


def to_device(array: Any, device: int = 0) -> Any:
    """A copy of `array` (float32, float64 or int64, C-contiguous) in device memory: pass it to
    `model.train_step` to train on data that is already on the GPU. `.numpy()` copies it back."""
    m = _require()
    a = np.ascontiguousarray(array)
    if a.dtype.kind in "iu" and a.dtype != np.int64:
        a = a.astype(np.int64)
    return m.DeviceArray(a, int(device))


# ---- the training engine on the device ----------------------------------------------------------

# Ops that act on each value alone run on any per-sample shape (the batch seen as rows of values);
# the others need (N, F) input, as the MLP kernels here are written for it.
_ANY_SHAPE = {"Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "Identity", "Dropout", "Flatten"}
# The pools take (C, L), (C, H, W) or (C, ...) input; their geometry goes to the backend as attrs.
_POOLS = {"MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool"}
_CONVS = {"Conv1D", "Conv2D"}


def _conv_attrs(op_attrs: dict, in_shape: tuple, out_shape: tuple) -> dict[str, float]:
    """The conv's geometry in the backend's terms (src/cuda/ops.cuh ConvShape): a 1-D conv is a
    2-D one of height 1; padding comes (top, left, bottom, right), as the C++ ops take it."""
    k, st, d, p = (tuple(int(v) for v in op_attrs[key]) for key in ("kernel", "stride", "dilation", "padding"))
    if len(in_shape) == 2:
        geo = (in_shape[0], 1, in_shape[1], out_shape[0], 1, k[0], 1, st[0], 1, d[0], 0, p[0], 0, p[1])
    else:
        geo = (in_shape[0], in_shape[1], in_shape[2], out_shape[0], k[0], k[1], st[0], st[1], d[0], d[1],
               p[0], p[1], p[2], p[3])
    names = ("C", "H", "W", "O", "KH", "KW", "SH", "SW", "DH", "DW", "PT", "PL", "PB", "PR")
    return {f"conv_{n}": float(v) for n, v in zip(names, geo)}


def _pool_attrs(kind: str, op_attrs: dict, in_shape: tuple) -> dict[str, float]:
    """The pool's geometry in the backend's terms (src/cuda/ops.cuh PoolShape): a 1-D pool is a
    2-D one of height 1; padding comes (top, left, bottom, right), as the C++ ops take it."""
    if kind == "GlobalAvgPool":
        return {"pool_C": float(in_shape[0])}
    k, st, p = (tuple(int(v) for v in op_attrs[key]) for key in ("kernel", "stride", "padding"))
    if kind.endswith("1D"):
        geo = (in_shape[0], 1, in_shape[1], 1, k[0], 1, st[0], 0, p[0], 0, p[1])
    else:
        geo = (in_shape[0], in_shape[1], in_shape[2], k[0], k[1], st[0], st[1], p[0], p[1], p[2], p[3])
    names = ("C", "H", "W", "KH", "KW", "SH", "SW", "PT", "PL", "PB", "PR")
    return {f"pool_{n}": float(v) for n, v in zip(names, geo)}


def _check_layers(model: Any) -> set:
    """The backend's op kinds; ValueError naming the first layer it cannot run."""
    kinds = set(_require().op_kinds())
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        # A layer that is not exactly its C++ op (a user's forward/backward) cannot run here.
        if not layer.runs_as_op() or layer.op_kind not in kinds:
            raise ValueError(f"to('cuda'): layer {i} ({name}) has no CUDA kernel; the CUDA "
                             f"backend runs the ops {sorted(kinds)}")
    return kinds


def _layer_specs(model: Any) -> list[tuple]:
    """One (kind, values in, values out, slot offsets, attrs) per layer: the layer's op kind, its
    per-sample sizes, its parameters' offsets in the flat buffer in the op's slot order, and the
    numbers among its op attributes (the op descriptors the C++ network takes)."""
    _check_layers(model)
    shapes = list(model._in_shapes) + [model.out_shape]
    specs = []
    for i, layer in enumerate(model.layers):
        kind, in_shape, out_shape = layer.op_kind, shapes[i], shapes[i + 1]
        if in_shape is None or out_shape is None:
            raise ValueError("to('cuda'): the model's shapes are not known yet (give input_shape)")
        if kind not in _ANY_SHAPE and kind not in _POOLS and kind not in _CONVS and len(in_shape) != 1:
            raise ValueError(f"to('cuda'): layer {i} ({type(layer).__name__}) on input of shape "
                             f"(N, {', '.join(map(str, in_shape))}): the CUDA backend runs it on "
                             f"(N, features) input only")
        offsets = [off for _, off, _ in layer._op_slots()]
        if kind in ("Dense", "Maxout", "Conv1D", "Conv2D") and len(offsets) == 1:
            offsets.append(-1)  # no bias
        op_attrs = layer._op_attrs()
        attrs = {k: float(v) for k, v in op_attrs.items()
                 if isinstance(v, (int, float, bool, np.integer, np.floating))}
        if kind in _POOLS:
            attrs.update(_pool_attrs(kind, op_attrs, tuple(int(d) for d in in_shape)))
        if kind in _CONVS:
            attrs.update(_conv_attrs(op_attrs, tuple(int(d) for d in in_shape),
                                     tuple(int(d) for d in out_shape)))
        specs.append((kind, int(np.prod(in_shape)), int(np.prod(out_shape)), offsets, attrs))
    return specs


def check_model(model: Any, device: int) -> None:
    """CudaError without a usable device `device`, ValueError for a layer without a CUDA kernel."""
    m = _require()
    if not 0 <= device < m.device_count():
        raise CudaError(f"gradstep CUDA: device cuda:{device} does not exist ({m.device_count()} visible)")
    _check_layers(model)


class Engine:
    """A model's training step on one GPU (see the module docstring)."""

    def __init__(self, model: Any, device: int) -> None:
        from . import _engine
        from . import losses as _losses
        m = _require()
        self.model = model
        self.device = device
        self.optimizer = opt = model.optimizer
        loss = model.loss
        kinds = loss.fused_kinds() if type(loss).__module__ == _losses.__name__ else (None, None)
        if kinds == (None, None) or type(opt) not in _engine._builtin_optimizers() or not opt._flat_ok():
            raise ValueError(f"to('cuda'): the CUDA backend runs the built-in losses and optimizers "
                             f"only, got {type(loss).__name__} and {type(opt).__name__}")
        if opt.clip_args() != (0.0, 0.0):
            raise ValueError("to('cuda'): gradient clipping (clipnorm, clipvalue) runs on the CPU "
                             "only; train this model on the CPU or without clipping")
        self.kinds = kinds
        specs = _layer_specs(model)
        self.in_shape = tuple(model.input_shape)
        self.dropouts = [l for l in model.layers if l.op_kind == "Dropout"]
        # Layers with buffers (BatchNorm's running statistics), in the C++ network's order.
        self.buffered = [l._op_buffers() for l in model.layers if l.op_kind == "BatchNorm"]
        cls = m.Network32 if model.dtype == np.float32 else m.Network64
        self.net = cls(specs, model.arena.size, device)
        self.params = model.parameters()
        self.push()
        self.last_n = 0

    # -- host <-> device ------------------------------------------------------------------------
    def _attach_state(self) -> None:
        opt = self.optimizer
        (self.state0, self.state1), _ = opt.fused_state(self.params)
        self.block = opt._arena_block(self.model.arena)
        self.keys = [(off, tuple(shape)) for off, shape in self.model.arena.slots.values()]
        for name, (off, shape) in self.model.arena.slots.items():
            self.block.names[(off, tuple(shape))] = name

    def push(self) -> None:
        """Host -> device: parameters, optimizer state, BatchNorm statistics."""
        self._attach_state()
        arena = self.model.arena
        self.net.upload(0, arena.params)
        self.net.upload(1, arena.grads)
        for which, s in ((2, self.state0), (3, self.state1)):
            if s is not None:
                self.net.upload(which, s)
        for j, bufs in enumerate(self.buffered):
            for which, b in enumerate(bufs):
                self.net.upload_bn(j, which, b)

    def pull(self) -> None:
        """Device -> host: the same, into the model's own arrays."""
        arena = self.model.arena
        self.net.download(0, arena.params)
        self.net.download(1, arena.grads)
        for which, s in ((2, self.state0), (3, self.state1)):
            if s is not None:
                self.net.download(which, s)
        for j, bufs in enumerate(self.buffered):
            for which, b in enumerate(bufs):
                self.net.download_bn(j, which, b)

    def usable(self) -> bool:
        return self.model.optimizer is self.optimizer and self.optimizer._flat_ok()

    # -- steps ------------------------------------------------------------------------------------
    def _kind(self, y: Any) -> str:
        label_kind, array_kind = self.kinds
        is_labels = np.dtype(y.dtype) == np.int64 and len(y.shape) == 1
        kind = label_kind if is_labels else array_kind
        if kind is None:
            loss = type(self.model.loss).__name__
            if is_labels:
                raise ValueError(f"train_step: {loss} needs targets of shape (N, {self.model.out_features}), got class labels")
            raise ValueError(f"train_step: {loss} needs integer class labels (N,)")
        return kind

    def _run(self, x: Any, y: Any, kind: str, idx: Any = None) -> float:
        if self.optimizer._pending:  # a loaded optimizer state waits to be attached: send it,
            self.model._sync_host()  # after fetching the device's newer parameters
            self.push()
        seeds = [d._next_seed() for d in self.dropouts]
        step = self.block.steps.get(self.keys[0], 0) + 1
        value = self.net.train_step(x, y, kind, seeds, self.optimizer.kernel, self.optimizer.kernel_hyper(),
                                    step, idx)
        for k in self.keys:
            self.block.steps[k] = step
        self.optimizer._iterations += 1
        return value

    def step(self, xb: Any, yb: Any) -> float:
        """One step on a batch in host memory (checked as the CPU engine checks it) or on the device."""
        m = _load()
        if isinstance(xb, m.DeviceArray):
            n = len(xb)
            self._check_batch(n)
            value = self._run(xb, yb, self._kind(yb))
        else:
            from . import _checks
            x = _checks.float_array(xb, "train_step: xb", self.model.dtype)
            n = x.shape[0] if x.ndim else 0
            if x.shape[1:] != self.in_shape:
                if len(self.in_shape) == 1 and x.ndim == 2:
                    raise ValueError(f"train_step: xb must have {self.in_shape[0]} features, got {x.shape[1]}")
                raise ValueError(f"train_step: xb must have shape (N, {', '.join(map(str, self.in_shape))}), "
                                 f"got {x.shape}")
            self._check_batch(n)
            y = self._host_targets(yb, n)
            value = self._run(x, y, self._kind(y))
        self.last_n = n
        return value

    def step_indices(self, data: tuple, idx: np.ndarray) -> float:
        """One step on rows `idx` of a dataset uploaded by `upload(X, y)` (gathered on the device)."""
        X, Y, kind = data
        n = int(idx.shape[0])
        self._check_batch(n)
        value = self._run(X, Y, kind, idx)
        self.last_n = n
        return value

    def upload(self, X: np.ndarray, y: np.ndarray) -> tuple:
        """A checked dataset (as fit checks it) copied to the device once, for step_indices."""
        y = y if y.dtype == np.int64 else np.ascontiguousarray(y, self.model.dtype)
        kind = self._kind(y)
        return to_device(X, self.device), to_device(y, self.device), kind

    def _check_batch(self, n: int) -> None:
        if n < 1:
            raise ValueError("train_step: xb must have at least one row")
        if self.buffered and n < 2:
            raise ValueError("train_step: BatchNorm needs more than 1 sample per batch in training "
                             "(Expected more than 1 value per channel), got a batch of 1")

    def _host_targets(self, yb: Any, n: int) -> np.ndarray:
        """Labels (N,) int64 or targets (N, K), read as the CPU engine reads them."""
        from ._engine import parse_targets
        label_kind, _ = self.kinds
        k = self.model.out_features
        labels, target = parse_targets(yb, label_kind, k, n, self.model.dtype)
        if labels is None:
            if target.shape != (n, k):
                raise ValueError(f"train_step: yb must have shape ({n}, {k}), got {target.shape}")
            return np.ascontiguousarray(target)
        if labels.shape[0] != n:
            raise ValueError(f"train_step: xb and yb must have the same number of samples, got {n} "
                             f"and {labels.shape[0]}")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"train_step: yb must lie in [0, {k}), got label "
                             f"{int(labels.min()) if labels.min() < 0 else int(labels.max())}")
        return labels

    def output(self) -> np.ndarray:
        return self.net.output(self.last_n)
