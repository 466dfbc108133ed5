"""Optimizers: SGD (momentum, Nesterov), RMSprop, Adam and AdamW, with torch.optim's semantics.

    opt = gs.Adam(lr=1e-3)
    opt.step(model.parameters())     # updates the parameters in place from their .grad

Defaults, first-step rules, bias corrections and the order of the floating-point operations are
those of torch.optim's single-tensor (foreach=False) path, so a trajectory matches torch's step
for step: bit for bit for SGD, and for RMSprop and Adam to the last bit of torch's sqrt (torch's
CPU sqrt may be off by one ulp; with a correctly rounded one the match is exact).

State is kept per parameter *storage*, not per Parameter object (`layer.parameters()` makes new
objects on every call): for a parameter that lives in an `Arena` (every layer's does) the state is
a set of flat buffers the size of the arena, allocated once, and when `step` gets exactly all the
parameters of an arena (a model's usual call) the update is one C++ call over the whole flat
buffer, padding included (zero gradient, zero weight: every rule keeps it zero). Otherwise each
parameter is updated on its own, with the same arithmetic and therefore the same bits.

Gradient clipping: every optimizer takes `clipnorm=None` and `clipvalue=None` (each > 0 or None),
applied to the gradients in place before the update, as torch's clip functions are:

- `clipvalue=v`: every gradient element clamped to [-v, v] (torch.nn.utils.clip_grad_value_).
- `clipnorm=c`: the *global* L2 norm over all the gradients of the step (one vector of every
  parameter's gradient), scaled by min(1, c / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_,
  and Keras's `global_clipnorm`; Keras's own `clipnorm` clips each variable on its own instead: one
  global norm keeps the direction of the whole update, and is what PyTorch and Lightning do).
- both: the values first, then the norm of the clamped gradients.

The clipping runs in C++ (core/clip.hpp): the norm is summed in double in a fixed order, so the
result is the same for any thread count, and a fused training step and `opt.step(params)` give
the same bits.

`state_dict()` is plain data that a model file can store:

    {"type": "Adam",                                  # the optimizer's class name
     "hyper": {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.0},
     "step": 120,                                     # step() calls so far (informational)
     "state": {"0.weight": {"step": 120,              # updates this parameter has had
                            "exp_avg": ndarray, "exp_avg_sq": ndarray},   # copies, param shape
               ...}}

Parameters are keyed by their `name` ("0.weight" in a Sequential). State entries per optimizer
(torch's names): SGD "momentum_buffer" (when momentum != 0); RMSprop "square_avg" and
"momentum_buffer" (when momentum > 0); Adam/AdamW "exp_avg" and "exp_avg_sq".
`load_state_dict(d)` restores hyperparameters and state; each entry is attached to the parameter
of that name at the next `step` (or at once when `params` is passed), so training continues
exactly as if it had never stopped.
"""
from __future__ import annotations

import numbers
import weakref
from typing import Any, Iterable

import numpy as np

from . import _checks, _core
from ._arena import Arena, Parameter

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW"]

_Key = tuple[int, tuple[int, ...]]  # (offset in the block, shape) of one parameter's storage


class _Block:
    """Optimizer state for one run of storage: an arena's flat buffers, or one loose array."""

    __slots__ = ("size", "dtype", "keys", "buffers", "steps", "names", "owner")

    def __init__(self, size: int, dtype: np.dtype, keys: frozenset, owner: Any = None) -> None:
        self.size = size
        self.dtype = dtype
        self.keys = keys                          # every parameter slot of the storage
        self.buffers: dict[str, np.ndarray] = {}  # allocated on first use, never replaced
        self.steps: dict[_Key, int] = {}          # updates each slot has had
        self.names: dict[_Key, str] = {}          # the name each slot was last stepped under
        self.owner = owner                        # a loose block keeps its array (address) alive

    def buffer(self, name: str) -> np.ndarray:
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = _core.alloc_zeros(self.size, self.dtype)
        return buf

    def view(self, name: str, key: _Key) -> np.ndarray:
        offset, shape = key
        n = int(np.prod(shape, dtype=np.int64))
        return self.buffer(name)[offset:offset + n].reshape(shape)

    def reset(self) -> None:
        for buf in self.buffers.values():
            buf[...] = 0  # in place: a fused training step may hold these very arrays
        self.steps.clear()
        self.names.clear()


class _Item:
    """One parameter of a step() call, resolved to its storage."""

    __slots__ = ("name", "value", "grad", "block", "key", "arena", "restore")

    def __init__(self, name: str, value: np.ndarray, grad: np.ndarray, block: _Block, key: _Key,
                 arena: Arena | None) -> None:
        self.name, self.value, self.grad = name, value, grad
        self.block, self.key, self.arena = block, key, arena
        self.restore: dict[str, Any] | None = None  # a loaded state entry to attach first


class _Hyper(dict):
    """An optimizer's hyperparameters: a dict whose every write bumps `version`, so that the
    kernel arguments cached from it (Optimizer._kernel_args) are rebuilt after any change."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def __ior__(self, other: Any) -> "_Hyper":
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = super().setdefault(key, default)
        self._changed()
        return value

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        self._changed()
        return value

    def popitem(self) -> tuple:
        item = super().popitem()
        self._changed()
        return item

    def clear(self) -> None:
        super().clear()
        self._changed()


class Optimizer:
    """Base class: per-storage state, the flat fast path, state_dict and validation.

    Subclasses define `_buffer_names()`, `_update(w, buffers, g, step)` (one `_core` call) and
    their hyperparameters in `self._hyper` (the constructor's keyword arguments).
    """

    kernel = ""  # the C++ step family: "sgd", "rmsprop" or "adam"
    # State buffers that are running averages of squares: a negative entry would make the
    # update's square root NaN, so load_state_dict refuses one.
    _nonnegative_buffers: tuple[str, ...] = ()

    def __init__(self, lr: float, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        self._hyper: dict[str, Any] = _Hyper(lr=self._check_rate("lr", lr),
                                              clipnorm=self._check_clip("clipnorm", clipnorm),
                                              clipvalue=self._check_clip("clipvalue", clipvalue))
        # id(arena) -> (weak reference, state): the state dies with its arena.
        self._arenas: dict[int, tuple[weakref.ref, _Block]] = {}
        self._loose: dict[tuple, _Block] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._iterations = 0
        self._args_cache: tuple | None = None  # see _kernel_args

    # ---- hyperparameters ------------------------------------------------------------------------
    def _check_rate(self, name: str, value: Any) -> float:
        return _checks.check_float(value, f"{type(self).__name__}: {name}", 0.0)

    def _check_clip(self, name: str, value: Any) -> float | None:
        if value is None:
            return None
        v = _checks.check_float(value, f"{type(self).__name__}: {name}")
        if not (v > 0.0 and np.isfinite(v)):
            raise ValueError(f"{type(self).__name__}: {name} must be a finite number > 0 or None, "
                             f"got {value!r}")
        return v

    clipnorm = property(lambda self: self._hyper["clipnorm"])
    clipvalue = property(lambda self: self._hyper["clipvalue"])

    def clip_args(self) -> tuple[float, float]:
        """(clipnorm, clipvalue) for the C++ step, 0 for off."""
        return (self._hyper["clipnorm"] or 0.0, self._hyper["clipvalue"] or 0.0)

    def _clip(self, grads: list[np.ndarray]) -> None:
        """Clip `grads` (every gradient of this step, in order) in place: values, then the global
        norm, with the C++ kernels the fused step uses."""
        norm, value = self.clip_args()
        if value:
            for g in grads:
                _core.clip_grad_value(g, value)
        if norm:
            sq = 0.0
            for g in grads:
                sq += _core.grad_sq_sum(g)
            for g in grads:
                _core.clip_scale(g, sq, norm)

    @property
    def lr(self) -> float:
        """The learning rate; assign to change it (schedules do): it applies from the next step."""
        return self._hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self._hyper["lr"] = self._check_rate("lr", value)

    def _kernel_args(self) -> tuple[list[float], tuple[float, float]]:
        """(kernel_hyper(), clip_args()) for a fused step, rebuilt only after a hyperparameter
        changed (a schedule or a user assigning `lr`, scikit-learn's wrapper writing eps, or
        `load_state_dict` replacing them all): every write to `_hyper` counts (see _Hyper), and
        the cache holds the dict it was built from (so its id cannot be reused by a new one)."""
        h = self._hyper
        cached = self._args_cache
        version = getattr(h, "version", None)
        if version is not None and cached is not None and cached[0] is h and cached[1] == version:
            return cached[2]
        args = (self.kernel_hyper(), self.clip_args())
        self._args_cache = (h, version, args)
        return args

    @property
    def iterations(self) -> int:
        """How many times `step` has run (restored by `load_state_dict`)."""
        return self._iterations

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments: `type(opt)(**opt.get_config())` is a fresh copy.
        clipnorm / clipvalue appear only when set (None is their default)."""
        clip = ("clipnorm", "clipvalue")
        cfg = {k: v for k, v in self._hyper.items() if k not in clip}
        cfg.update((k, self._hyper[k]) for k in clip if self._hyper[k] is not None)
        return cfg

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ---- what subclasses provide ----------------------------------------------------------------
    def _buffer_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _update(self, w: np.ndarray, buffers: list[np.ndarray], g: np.ndarray, step: int) -> None:
        raise NotImplementedError

    def _flat_ok(self) -> bool:
        """Whether a pass over an arena's padding keeps it zero (RMSprop/Adam need eps > 0)."""
        return True

    def kernel_hyper(self) -> list[float]:
        """Hyperparameters in the order of the C++ `<kernel>_step`'s hyper struct (fused steps)."""
        raise NotImplementedError

    # ---- step -----------------------------------------------------------------------------------
    def step(self, params: Any) -> None:
        """Update `params` (a list of gs.Parameter, e.g. `model.parameters()`) in place from their
        `.grad`. Everything is validated before anything is written."""
        items = self._resolve(params, "step", self._pending)
        if not items:
            return
        self._attach(items)
        groups: dict[int, list[_Item]] = {}
        for it in items:
            groups.setdefault(id(it.block), []).append(it)
        names = self._buffer_names()
        covered = [self._covers_arena(group) for group in groups.values()]
        if self.clip_args() != (0.0, 0.0):
            grads = []
            for group, whole in zip(groups.values(), covered):
                grads += [group[0].arena.grads] if whole else [it.grad for it in group]
            self._clip(grads)
        for group, whole in zip(groups.values(), covered):
            block = group[0].block
            if whole:
                t = block.steps.get(group[0].key, 0) + 1
                arena = group[0].arena
                self._update(arena.params, [block.buffer(n) for n in names], arena.grads, t)
                for it in group:
                    block.steps[it.key] = t
                    block.names[it.key] = it.name
            else:
                for it in group:
                    t = block.steps.get(it.key, 0) + 1
                    self._update(it.value, [block.view(n, it.key) for n in names], it.grad, t)
                    block.steps[it.key] = t
                    block.names[it.key] = it.name
        self._iterations += 1

    def _covers_arena(self, group: list[_Item]) -> bool:
        """One call over the flat buffers: the group is exactly all the slots of one arena, all at
        the same step count, and the rule keeps the padding at zero."""
        block = group[0].block
        if group[0].arena is None or not self._flat_ok() or len(group) != len(block.keys):
            return False
        if {it.key for it in group} != block.keys:
            return False
        first = block.steps.get(group[0].key, 0)
        return all(block.steps.get(it.key, 0) == first for it in group)

    def _resolve(self, params: Any, fn: str, pending: dict[str, dict[str, Any]],
                 replace: bool = False) -> list[_Item]:
        """Validate `params` and find each one's storage; nothing is modified except that empty
        state blocks may be created. Entries of `pending` are matched by name to parameters that
        have no state yet (to every parameter when `replace`) and checked against their shapes."""
        where = f"{type(self).__name__}.{fn}"
        if isinstance(params, Parameter) or not isinstance(params, (list, tuple)):
            raise TypeError(f"{where}: params must be a list of gs.Parameter (e.g. "
                            f"model.parameters()), got {type(params).__name__}")
        items: list[_Item] = []
        seen: dict[tuple[int, _Key], str] = {}
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{where}: params[{i}] must be a gs.Parameter, "
                                f"got {type(p).__name__}")
            it = self._locate(p, f"{where}: params[{i}] ({p.name!r})")
            ident = (id(it.block), it.key)
            if ident in seen:
                raise ValueError(f"{where}: params[{i}] ({p.name!r}) is the same storage as "
                                 f"{seen[ident]!r}; pass each parameter once")
            seen[ident] = p.name
            if (replace or it.block.steps.get(it.key, 0) == 0) and it.name in pending:
                entry = pending[it.name]
                for bname, arr in entry.items():
                    if bname != "step" and arr.shape != it.value.shape:
                        raise ValueError(f"{where}: loaded state {it.name!r}[{bname!r}] has "
                                         f"shape {arr.shape}, but the parameter has shape "
                                         f"{it.value.shape}")
                it.restore = entry
            items.append(it)
        return items

    def _arena_block(self, arena: Arena) -> _Block:
        entry = self._arenas.get(id(arena))
        if entry is not None and entry[0]() is arena:
            return entry[1]
        key, table = id(arena), self._arenas
        ref = weakref.ref(arena, lambda _, key=key, table=table: table.pop(key, None))
        block = _Block(arena.size, arena.dtype,
                       frozenset((off, tuple(shape)) for off, shape in arena.slots.values()))
        self._arenas[key] = (ref, block)
        return block

    def _locate(self, p: Parameter, what: str) -> _Item:
        value, grad, arena = p.value, p.grad, p._arena
        if (isinstance(arena, Arena) and isinstance(value, np.ndarray)
                and isinstance(grad, np.ndarray)
                and _core.arena_offset(value, grad, arena.params, arena.grads) == p._offset):
            # A view of one of the arena's own slots (a layer's parameter): the flat path.
            block = self._arena_block(arena)
            key = (p._offset, value.shape)
            if key in block.keys and grad.shape == value.shape:
                return _Item(p.name, value, grad, block, key, arena)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{what}: value must be a numpy array, got {type(value).__name__}")
        if value.dtype not in _checks.FLOAT_DTYPES:
            raise TypeError(f"{what}: value must have dtype float32 or float64, got {value.dtype}")
        if grad is None or not isinstance(grad, np.ndarray):
            raise TypeError(f"{what}: grad must be a numpy array, got {type(grad).__name__}")
        if grad.shape != value.shape:
            raise ValueError(f"{what}: grad must have the value's shape {value.shape}, "
                             f"got {grad.shape}")
        # A parameter outside any arena: its own block, keyed by its memory.
        if not value.flags.c_contiguous or not value.flags.writeable:
            raise ValueError(f"{what}: value must be a writable C-contiguous array (the update is "
                             f"written into it)")
        g = _checks.numeric_array(grad, f"{what}: grad")
        g = np.ascontiguousarray(g, dtype=value.dtype)
        ident = (value.__array_interface__["data"][0], value.shape, value.dtype.str)
        block = self._loose.get(ident)
        if block is None:
            block = self._loose[ident] = _Block(value.size, value.dtype,
                                                frozenset([(0, value.shape)]), owner=value)
        return _Item(p.name, value, g, block, (0, value.shape), None)

    def _attach(self, items: list[_Item]) -> None:
        """Copy loaded state entries into the blocks of the parameters they belong to."""
        for it in items:
            if it.restore is None:
                continue
            for bname, arr in it.restore.items():
                if bname != "step":
                    it.block.view(bname, it.key)[...] = arr
            it.block.steps[it.key] = it.restore["step"]
            it.block.names[it.key] = it.name
            self._pending.pop(it.name, None)
            it.restore = None

    # ---- fused training steps -------------------------------------------------------------------
    def fused_state(self, params: Any) -> tuple[list[np.ndarray | None], int]:
        """For a whole-network C++ step over one arena: `params` must be exactly all the
        parameters of one arena. Returns the two flat state buffers in the C++ step's argument
        order (SGD: [momentum_buffer or None, None]; RMSprop: [square_avg, momentum_buffer or
        None]; Adam: [exp_avg, exp_avg_sq]; allocated once, stable across calls) and the step
        number the next update uses. Call `fused_stepped(params)` after each fused update."""
        items = self._resolve(params, "fused_state", self._pending)
        self._attach(items)
        if not items or len({id(it.block) for it in items}) != 1 or not self._covers_arena(items):
            raise ValueError(f"{type(self).__name__}.fused_state: params must be exactly all the "
                             f"parameters of one arena, at the same step count (and eps > 0)")
        block = items[0].block
        bufs: list[np.ndarray | None] = [block.buffer(n) for n in self._buffer_names()]
        if self.kernel == "sgd":
            bufs = (bufs or [None]) + [None]
        elif self.kernel == "rmsprop":
            bufs = bufs + [None] * (2 - len(bufs))
        return bufs, block.steps.get(items[0].key, 0) + 1

    def fused_stepped(self, params: Any) -> None:
        """Record that a fused C++ step updated `params` (see `fused_state`)."""
        items = self._resolve(params, "fused_stepped", {})
        for it in items:
            it.block.steps[it.key] = it.block.steps.get(it.key, 0) + 1
            it.block.names[it.key] = it.name
        self._iterations += 1

    # ---- state ----------------------------------------------------------------------------------
    def _blocks(self) -> Iterable[_Block]:
        yield from [block for _, block in list(self._arenas.values())]
        yield from list(self._loose.values())

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state as plain numbers and numpy arrays (copies);
        the format is in the module docstring."""
        state: dict[str, dict[str, Any]] = {}
        names = self._buffer_names()
        for block in self._blocks():
            for key, t in sorted(block.steps.items()):
                if t < 1:
                    continue
                name = block.names[key]
                if name in state:
                    raise ValueError(f"{type(self).__name__}.state_dict: two parameters are named "
                                     f"{name!r}; give them distinct names (e.g. put the layers in "
                                     f"one Sequential)")
                entry: dict[str, Any] = {"step": int(t)}
                for n in names:
                    entry[n] = block.view(n, key).copy()
                state[name] = entry
        for name, entry in self._pending.items():
            if name not in state:
                state[name] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                               for k, v in entry.items()}
        return {"type": type(self).__name__, "hyper": self.get_config(),
                "step": int(self._iterations), "state": state}

    def load_state_dict(self, state: Any, params: Any = None) -> None:
        """Restore what `state_dict()` returned: hyperparameters, step count and per-parameter
        state, attached by parameter name at the next `step` (or now, when `params` is given).
        Everything is validated before anything changes."""
        cls = type(self).__name__
        where = f"{cls}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{where}: state must be a dict (from state_dict()), "
                            f"got {type(state).__name__}")
        missing = [k for k in ("type", "hyper", "state") if k not in state]
        if missing:
            raise ValueError(f"{where}: state is missing the keys {missing}")
        if state["type"] != cls:
            raise ValueError(f"{where}: state is for a {state['type']!r} optimizer, not {cls!r}")
        hyper = state["hyper"]
        if not isinstance(hyper, dict):
            raise TypeError(f"{where}: state['hyper'] must be a dict, got {type(hyper).__name__}")
        unknown = sorted(set(hyper) - set(self._hyper))
        if unknown:
            raise ValueError(f"{where}: state['hyper'] has unknown keys {unknown}; "
                             f"{cls} takes {sorted(self._hyper)}")
        fresh = type(self)(**{**self._hyper, **hyper})  # validates every value
        iterations = _checks.check_int(state.get("step", 0), f"{where}: state['step']", 0)
        entries = state["state"]
        if not isinstance(entries, dict):
            raise TypeError(f"{where}: state['state'] must be a dict, got {type(entries).__name__}")
        want = set(fresh._buffer_names())
        pending: dict[str, dict[str, Any]] = {}
        for name, entry in entries.items():
            what = f"{where}: state['state'][{name!r}]"
            if not isinstance(entry, dict):
                raise TypeError(f"{what} must be a dict, got {type(entry).__name__}")
            got = set(entry) - {"step"}
            if "step" not in entry or got != want:
                raise ValueError(f"{what} must hold 'step' and {sorted(want)}, got {sorted(entry)}")
            clean: dict[str, Any] = {"step": _checks.check_int(entry["step"], f"{what}['step']", 1)}
            for bname in sorted(want):
                arr = _checks.numeric_array(entry[bname], f"{what}[{bname!r}]")
                _checks.check_finite(arr, f"{what}[{bname!r}]")
                if bname in self._nonnegative_buffers and arr.size and np.min(arr) < 0:
                    raise ValueError(f"{what}[{bname!r}] holds negative values (a running "
                                     f"average of squares is >= 0), first at flat index "
                                     f"{int(np.argmax(arr.reshape(-1) < 0))}")
                dt = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
                clean[bname] = np.array(arr, dtype=dt)  # a copy: the caller's dict may change
            pending[str(name)] = clean
        items = [] if params is None else self._resolve(params, "load_state_dict", pending,
                                                        replace=True)
        # Validated: commit.
        self._hyper = fresh._hyper
        self._iterations = iterations
        for block in self._blocks():
            block.reset()
        self._pending = pending
        self._attach(items)


def _betas(value: Any, cls: str) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(b, bool) or not isinstance(b, numbers.Real) for b in value)):
        raise TypeError(f"{cls}: betas must be a pair of numbers (beta1, beta2), got {value!r}")
    return tuple(_checks.check_float(b, f"{cls}: betas[{i}]", 0.0, 1.0, max_inclusive=False)
                 for i, b in enumerate(value))  # type: ignore[return-value]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    As torch.optim.SGD: g ← g + weight_decay·w; with momentum μ the buffer starts as b = g and
    then b ← μ·b + (1 − dampening)·g; the step uses g + μ·b (Nesterov) or b; w ← w − lr·(that).
    `dampening=momentum` gives the exponentially weighted form b = μb + (1 − μ)g.
    """

    kernel = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, clipnorm, clipvalue)
        cls = type(self).__name__
        momentum = self._check_rate("momentum", momentum)
        dampening = _checks.check_float(dampening, f"{cls}: dampening")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"{cls}: nesterov must be a bool, "
                            f"got {type(nesterov).__name__} {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"{cls}: nesterov=True requires momentum > 0 and dampening == 0, got "
                             f"momentum={momentum}, dampening={dampening}")
        self._hyper.update(momentum=momentum, dampening=dampening, nesterov=bool(nesterov),
                           weight_decay=self._check_rate("weight_decay", weight_decay))

    momentum = property(lambda self: self._hyper["momentum"])
    dampening = property(lambda self: self._hyper["dampening"])
    nesterov = property(lambda self: self._hyper["nesterov"])
    weight_decay = property(lambda self: self._hyper["weight_decay"])

    def _buffer_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self._hyper["momentum"] != 0 else ()

    def kernel_hyper(self) -> list[float]:
        h = self._hyper
        return [h["lr"], h["momentum"], h["dampening"], h["weight_decay"], float(h["nesterov"])]

    def _update(self, w: np.ndarray, buffers: list[np.ndarray], g: np.ndarray, step: int) -> None:
        h = self._hyper
        _core.sgd_step(w, buffers[0] if buffers else None, g, h["lr"], h["momentum"],
                       h["dampening"], h["weight_decay"], h["nesterov"], step)


class RMSprop(Optimizer):
    """RMSprop (centered=False), as torch.optim.RMSprop: g ← g + weight_decay·w;
    s ← α·s + (1 − α)·g²; a = √s + eps; w ← w − lr·g/a, or with momentum μ: b ← μ·b + g/a,
    w ← w − lr·b."""

    kernel = "rmsprop"
    _nonnegative_buffers = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, clipnorm, clipvalue)
        # alpha > 1 would make square_avg = alpha*s + (1 - alpha)*g^2 negative, and the update NaN
        # (torch accepts it; here it is refused).
        alpha = self._check_rate("alpha", alpha)
        if alpha > 1.0:
            raise ValueError(f"{type(self).__name__}: alpha must be <= 1, got {alpha}")
        self._hyper.update(alpha=alpha, eps=self._check_rate("eps", eps),
                           momentum=self._check_rate("momentum", momentum),
                           weight_decay=self._check_rate("weight_decay", weight_decay))

    alpha = property(lambda self: self._hyper["alpha"])
    eps = property(lambda self: self._hyper["eps"])
    momentum = property(lambda self: self._hyper["momentum"])
    weight_decay = property(lambda self: self._hyper["weight_decay"])

    def _buffer_names(self) -> tuple[str, ...]:
        return ("square_avg", "momentum_buffer") if self._hyper["momentum"] > 0 else ("square_avg",)

    def _flat_ok(self) -> bool:
        return self._hyper["eps"] > 0

    def kernel_hyper(self) -> list[float]:
        h = self._hyper
        return [h["lr"], h["alpha"], h["eps"], h["momentum"], h["weight_decay"]]

    def _update(self, w: np.ndarray, buffers: list[np.ndarray], g: np.ndarray, step: int) -> None:
        h = self._hyper
        _core.rmsprop_step(w, buffers[0], buffers[1] if len(buffers) > 1 else None, g, h["lr"],
                           h["alpha"], h["eps"], h["momentum"], h["weight_decay"], step)


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (amsgrad=False): g ← g + weight_decay·w; m ← lerp(m, g, 1 − β₁);
    v ← β₂·v + (1 − β₂)·g²; w ← w − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + eps)."""

    kernel = "adam"
    _decoupled = False
    _nonnegative_buffers = ("exp_avg_sq",)

    def __init__(self, lr: float = 1e-3, betas: Any = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, clipnorm, clipvalue)
        self._hyper.update(betas=_betas(betas, type(self).__name__),
                           eps=self._check_rate("eps", eps),
                           weight_decay=self._check_rate("weight_decay", weight_decay))

    betas = property(lambda self: self._hyper["betas"])
    eps = property(lambda self: self._hyper["eps"])
    weight_decay = property(lambda self: self._hyper["weight_decay"])

    def _buffer_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _flat_ok(self) -> bool:
        return self._hyper["eps"] > 0

    def kernel_hyper(self) -> list[float]:
        h = self._hyper
        return [h["lr"], h["betas"][0], h["betas"][1], h["eps"], h["weight_decay"],
                float(self._decoupled)]

    def _update(self, w: np.ndarray, buffers: list[np.ndarray], g: np.ndarray, step: int) -> None:
        h = self._hyper
        _core.adam_step(w, buffers[0], buffers[1], g, h["lr"], h["betas"][0], h["betas"][1],
                        h["eps"], h["weight_decay"], self._decoupled, step)


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay, w ← w·(1 − lr·weight_decay)
    before the Adam update (the decay never enters m and v)."""

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: Any = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, clipnorm, clipvalue)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam,
                                          "adamw": AdamW}
OPTIMIZERS_BY_CLASS: dict[str, type[Optimizer]] = {cls.__name__: cls for cls in OPTIMIZERS.values()}


def get(name_or_opt: Any = "adam", **kwargs: Any) -> Optimizer:
    """An optimizer from a name in OPTIMIZERS (case-insensitive, with `kwargs` for its constructor),
    an Optimizer class, or an Optimizer instance (returned as it is)."""
    if isinstance(name_or_opt, Optimizer):
        if kwargs:
            raise TypeError(f"get: keyword arguments {sorted(kwargs)} only apply when building an "
                            f"optimizer from a name, got an instance {name_or_opt!r}")
        return name_or_opt
    if isinstance(name_or_opt, type) and issubclass(name_or_opt, Optimizer):
        return name_or_opt(**kwargs)
    if isinstance(name_or_opt, str):
        cls = OPTIMIZERS.get(name_or_opt.lower())
        if cls is None:
            raise ValueError(f"get: unknown optimizer {name_or_opt!r}; "
                             f"expected one of {sorted(OPTIMIZERS)}")
        return cls(**kwargs)
    raise TypeError(f"get: optimizer must be a name ({sorted(OPTIMIZERS)}) or a gs optimizer, "
                    f"got {type(name_or_opt).__name__}")
