"""The layer protocol shared by every layer.

- `forward(x, training=True) -> y` keeps what `backward` needs;
- `backward(grad_y) -> grad_x` for the last forward; it overwrites the parameter gradients;
- `params` / `grads`: live views into the layer's `Arena` (flat C++-owned storage);
- `buffers`: live views of state that is not trained (BatchNorm's running statistics);
- `parameters()`: `gs.Parameter` objects over the same views;
- `get_config()`: the constructor arguments, for the architecture JSON in model files.

Subclasses with parameters declare them in `_param_shapes()` and fill initial values in
`_initial_values(rng)`; `_allocate` lays them out in a fresh arena. Subclasses with buffers
declare their shapes in `_buffer_shapes()`.

Inside `shapes_only()` (what `gs.load` uses) constructors validate their arguments but allocate
and draw nothing: the layer knows its shapes, and gets zero storage when a Sequential lays it out
in its arena. A model file's shapes are checked against those before any memory is spent, and
initial values that the file would overwrite are never drawn.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import numpy as np

from .. import _checks
from .._arena import Arena, Parameter

LAYER_REGISTRY: dict[str, type["Layer"]] = {}

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
    return cls


class Layer:
    """Base class of every layer (see the module docstring for the protocol)."""

    has_params = False

    def __init__(self) -> None:
        self.dtype: np.dtype | None = None
        self._arena: Arena | None = None
        self._prefix = ""
        self._p: dict[str, np.ndarray] = {}
        self._g: dict[str, np.ndarray] = {}
        self._saved: Any = None        # what backward needs, set by forward
        self._out_shape: tuple | None = None
        self._out_dtype: np.dtype | None = None

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
        """The regularization term this layer adds to the loss (Dense's L2); 0 by default."""
        return 0.0

    # ---- forward / backward helpers ---------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_y: Any) -> np.ndarray:
        raise NotImplementedError

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
        """Features out for `in_features` in (used by Sequential to check and describe shapes)."""
        return in_features

    def input_features(self) -> int | None:
        """The feature count this layer requires, or None when it takes any."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
