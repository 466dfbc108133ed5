"""The layer protocol shared by every layer.

- `forward(x, training=True) -> y` keeps what `backward` needs;
- `backward(grad_y) -> grad_x` for the last forward; it overwrites the parameter gradients;
- `params` / `grads`: live views into the layer's `Arena` (flat C++-owned storage);
- `buffers`: live views of state that is not trained (BatchNorm's running statistics);
- `parameters()`: `gs.Parameter` objects over the same views;
- `get_config()`: the constructor arguments, for the architecture JSON in model files.

Subclasses with parameters declare them in `_param_shapes()` and fill initial values in
`_initial_values(rng)`; `_allocate` lays them out in a fresh arena.

Built-in layers are handles on a C++ op (`gs._core.op_kinds()` lists them): the class names its
op in `op_kind`, gives the op's attributes in `_op_attrs()` and validates arguments and inputs;
`forward`/`backward` here run the op (through `_core.OpRunner`), the same code a `Sequential`'s
fused training step runs, so both give the same bits. The op also holds the shape rule
(`output_shape`). A user's own subclass leaves `op_kind` None and defines `forward`/`backward`
in Python; a model holding one trains layer by layer.

Subclasses with buffers declare their shapes in `_buffer_shapes()`. Inside `shapes_only()`
(what `gs.load` uses) constructors validate their arguments but allocate and draw nothing: the
layer knows its shapes, and gets zero storage when a Sequential lays it out in its arena. A model
file's shapes are checked against those before any memory is spent, and initial values that the
file would overwrite are never drawn.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import numpy as np

from .. import _checks, _core
from .._arena import Arena, Parameter

LAYER_REGISTRY: dict[str, type["Layer"]] = {}
# The layer class of each C++ op kind, filled by `register`; gradstep/__init__ checks that it
# covers exactly `_core.op_kinds()`.
OP_LAYERS: dict[str, type["Layer"]] = {}
_NO_PARAMS = {np.dtype(np.float32): np.zeros(0, np.float32), np.dtype(np.float64): np.zeros(0, np.float64)}

_SHAPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("gradstep_shapes_only", default=False)


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Layers built inside allocate nothing and draw no initial values (see the module docstring)."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def building_shapes_only() -> bool:
    return _SHAPES_ONLY.get()


def register(cls: type["Layer"]) -> type["Layer"]:
    """Class decorator: make a layer rebuildable from its name (model files, CLI)."""
    LAYER_REGISTRY[cls.__name__] = cls
    kind = cls.__dict__.get("op_kind")
    if kind is not None:
        if kind in OP_LAYERS:
            raise ValueError(f"op kind {kind!r} has two layer classes: {OP_LAYERS[kind].__name__} "
                             f"and {cls.__name__}")
        OP_LAYERS[kind] = cls
    return cls


class Layer:
    """Base class of every layer (see the module docstring for the protocol)."""

    has_params = False
    op_kind: str | None = None  # the C++ op this class is a handle on (None: defined in Python)

    def __init__(self) -> None:
        self.dtype: np.dtype | None = None
        self._arena: Arena | None = None
        self._prefix = ""
        self._p: dict[str, np.ndarray] = {}
        self._g: dict[str, np.ndarray] = {}
        self._saved: Any = None        # what backward needs, set by forward
        self._out_shape: tuple | None = None
        self._out_dtype: np.dtype | None = None
        self._runner_key: tuple | None = None
        self._runner: Any = None
        self._last_x: np.ndarray | None = None  # the last forward's input and output
        self._last_y: np.ndarray | None = None

    # ---- parameters -------------------------------------------------------------------------
    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def _initial_values(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def _buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of `buffers` (known without allocating them)."""
        return {}

    def _allocate(self, dtype: Any, rng: np.random.Generator) -> None:
        """Give the layer an arena of its own, filled with initial values."""
        self.dtype = _checks.as_dtype(dtype, f"{type(self).__name__}: dtype")
        if building_shapes_only():
            return  # storage comes from the Sequential's arena, values from the model file
        values = self._initial_values(rng)
        arena = Arena(self._param_shapes().items(), self.dtype)
        for name in self._param_shapes():
            arena.view(name)[...] = values[name]
        self._bind(arena, "")

    def _bind(self, arena: Arena, prefix: str) -> None:
        self._arena, self._prefix = arena, prefix
        self._p = {n: arena.view(prefix + n, "params") for n in self._param_shapes()}
        self._g = {n: arena.view(prefix + n, "grads") for n in self._param_shapes()}

    def _move_to(self, arena: Arena, prefix: str) -> None:
        """Copy the current values (cast to the arena's dtype) into `arena` and use it from now on."""
        old = {n: v.copy() for n, v in self._p.items()}
        self.dtype = arena.dtype
        self._bind(arena, prefix)
        for n, v in old.items():
            self._p[n][...] = v
        self._cast_buffers(arena.dtype)
        self._saved = None

    def _cast_buffers(self, dtype: np.dtype) -> None:
        """Layers with buffers recast them here when a model changes their dtype."""

    @property
    def params(self) -> dict[str, np.ndarray]:
        return dict(self._p)

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return dict(self._g)

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {}

    def parameters(self) -> list[Parameter]:
        if self._arena is None:
            return []
        return [self._arena.parameter(self._prefix + n) for n in self._param_shapes()]

    def penalty(self) -> float:
        """The regularization term this layer adds to the loss (Dense's L2), as its op computes it."""
        return self._penalty_for(self._runner_key[0] if self._runner_key else self.input_shape_hint())

    def _after_backward(self) -> None:
        """Called by `Sequential.backward` once every layer's `backward` has run. A layer that
        shares another layer's parameter (TiedDense) adds its part of that gradient here, after
        the owner has written (overwritten) its own."""

    def _penalty_for(self, in_shape: tuple[int, ...] | None) -> float:
        """The op's penalty, with the op built for `in_shape` (the term depends on the parameters
        only, but an op exists for a given input shape)."""
        if self.op_kind is None or self._arena is None or in_shape is None:
            return 0.0
        return self._op_runner(tuple(in_shape), self.dtype).penalty(self._arena.params)

    # ---- the op ------------------------------------------------------------------------------
    def _op_attrs(self) -> dict[str, Any]:
        """The C++ op's attributes (numbers or tuples of numbers)."""
        return {}

    def _op_buffers(self) -> list[np.ndarray]:
        """The op's buffers, in its order (the same arrays as `buffers`)."""
        return list(self.buffers.values())

    def _op_slots(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """(name, offset in the arena, shape) of each parameter, in the op's order."""
        if self._arena is None:
            return []
        return [(n, self._arena.slots[self._prefix + n][0], tuple(shape))
                for n, shape in self._param_shapes().items()]

    def _build_for(self, in_shape: tuple[int, ...]) -> None:
        """Layers whose sizes follow their input (e.g. `Dense(out_features)`) settle them here."""

    def _flat(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        if self._arena is None:
            return _NO_PARAMS[dtype], _NO_PARAMS[dtype]
        return self._arena.params, self._arena.grads

    def _op_runner(self, in_shape: tuple[int, ...], dtype: np.dtype) -> Any:
        attrs = self._op_attrs()
        key = (in_shape, dtype, id(self._arena), self._prefix, tuple(sorted(attrs.items())))
        if self._runner_key != key:
            self._runner = _core.OpRunner(self.op_kind, attrs, in_shape, dtype, self._op_slots())
            self._runner_key = key
        return self._runner

    def _check_input(self, x: Any) -> np.ndarray:
        """Validate and convert a forward input; layers with stricter rules override this."""
        a = _checks.numeric_array(x, f"{type(self).__name__}.forward: x")
        if a.ndim < 2:
            raise ValueError(f"{type(self).__name__}.forward: x must be a batch (N, ...) with at "
                             f"least 2 dimensions, got shape {a.shape}")
        return self._input(a, ndim=None)

    # ---- forward / backward -----------------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> np.ndarray:
        """Run the layer's C++ op on the batch x (N, ...); keeps what `backward` needs."""
        if self.op_kind is None:
            raise NotImplementedError(f"{type(self).__name__} must define forward (or op_kind)")
        return self._op_forward(self._check_input(x), training)

    def backward(self, grad_y: Any) -> np.ndarray:
        """The input gradient for the last forward; overwrites the parameter gradients."""
        if self.op_kind is None:
            raise NotImplementedError(f"{type(self).__name__} must define backward (or op_kind)")
        return self._op_backward(self._grad_output(grad_y))

    def _op_forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """The op's forward on a checked, converted batch."""
        self._saved = None  # a forward that raises leaves nothing stale for backward
        in_shape = tuple(int(d) for d in x.shape[1:])
        self._build_for(in_shape)
        try:
            runner = self._op_runner(in_shape, x.dtype)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}.forward: x of shape {x.shape}: {e}") from None
        seed = self._next_seed() if training and runner.needs_seed else 0
        params, grads = self._flat(x.dtype)
        y = runner.forward(x, params, grads, self._op_buffers(), bool(training), seed)
        self._saved = runner
        self._last_x, self._last_y = x, y
        self._remember_output(y)
        return y

    def _op_backward(self, dy: np.ndarray) -> np.ndarray:
        params, grads = self._flat(dy.dtype)
        return self._saved.backward(dy, params, grads, self._op_buffers())

    def _next_seed(self) -> int:
        raise NotImplementedError  # only ops that draw random numbers (Dropout) need one

    def runs_as_op(self) -> bool:
        """Whether this layer is exactly its C++ op (a subclass that redefines forward or backward
        in Python is not, and runs layer by layer)."""
        cls = type(self)
        return (self.op_kind is not None and cls.forward.__module__.startswith("gradstep.")
                and cls.backward.__module__.startswith("gradstep."))

    def _input(self, x: Any, ndim: int | None = 2, features: int | None = None,
               name: str = "x") -> np.ndarray:
        """Validate and convert a forward input (to the layer's dtype, or its own float dtype)."""
        cls = type(self).__name__
        a = _checks.numeric_array(x, f"{cls}.forward: {name}")
        if ndim is not None and a.ndim != ndim:
            want = f"(N, {features})" if features is not None and ndim == 2 else f"{ndim}-D"
            raise ValueError(f"{cls}.forward: {name} must be a {ndim}-D array {want}, "
                             f"got a {a.ndim}-D array of shape {a.shape}")
        if features is not None and a.shape[-1] != features:
            raise ValueError(f"{cls}.forward: {name} must have {features} features (shape (N, {features})), "
                             f"got shape {a.shape}")
        if a.ndim >= 1 and a.shape[0] < 1:
            raise ValueError(f"{cls}.forward: {name} must have at least one row, got shape {a.shape}")
        dt = self.dtype if self.dtype is not None else _checks.float_dtype_of(a)
        return np.ascontiguousarray(a, dtype=dt)

    def _remember_output(self, y: np.ndarray) -> None:
        self._out_shape, self._out_dtype = y.shape, y.dtype

    def _grad_output(self, grad_y: Any) -> np.ndarray:
        """Validate the gradient given to backward against the last forward's output."""
        cls = type(self).__name__
        if self._saved is None or self._out_shape is None:
            raise ValueError(f"{cls}.backward: call forward before backward")
        g = _checks.numeric_array(grad_y, f"{cls}.backward: grad_y")
        if g.shape != self._out_shape:
            raise ValueError(f"{cls}.backward: grad_y must have the shape of the last forward's "
                             f"output {self._out_shape}, got {g.shape}")
        return np.ascontiguousarray(g, dtype=self._out_dtype)

    # ---- description ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {}

    def output_features(self, in_features: int) -> int:
        """Features out for `in_features` in (for layers on (N, F) batches)."""
        out = self.output_shape((in_features,))
        return in_features if out is None else int(np.prod(out))

    def input_features(self) -> int | None:
        """The feature count this layer requires, or None when it takes any."""
        return None

    def input_shape_hint(self) -> tuple[int, ...] | None:
        """The per-sample input shape this layer fixes on its own, if it fixes one."""
        f = self.input_features()
        return None if f is None else (f,)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The per-sample output shape for input `in_shape` (ValueError when the layer cannot take
        it); None when unknown (a Python-defined layer that does not say)."""
        if self.op_kind is None:
            return None
        self._build_for(tuple(in_shape))
        return tuple(_core.op_info(self.op_kind, self._op_attrs(), tuple(in_shape))["out_shape"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Elementwise(Layer):
    """Shared plumbing of the parameter-free layers that act on each element (activations,
    Dropout): any input of ndim >= 1, and the output keeps its shape."""

    def _check_input(self, x: Any) -> np.ndarray:
        a = _checks.numeric_array(x, f"{type(self).__name__}.forward: x")
        if a.ndim < 1:
            raise ValueError(f"{type(self).__name__}.forward: x must be an array with at least "
                             f"1 dimension, got a 0-D array")
        return self._input(a, ndim=None)

    # The op runs on (N, everything else) (the same elements in the same order, so the same bits
    # as on any other view of them); the result takes the input's shape again.
    def forward(self, x: Any, training: bool = True) -> np.ndarray:
        a = self._check_input(x)
        y = self._op_forward(a if a.ndim == 2 else a.reshape(a.shape[0], -1), training)
        if a.ndim != 2:
            y = y.reshape(a.shape)
            self._out_shape = y.shape
        return y

    def backward(self, grad_y: Any) -> np.ndarray:
        dy = self._grad_output(grad_y)
        if dy.ndim == 2:
            return self._op_backward(dy)
        return self._op_backward(dy.reshape(dy.shape[0], -1)).reshape(dy.shape)
