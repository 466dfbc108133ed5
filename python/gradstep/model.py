"""`gs.Sequential`: a stack of layers sharing one flat parameter arena, and its training loop."""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable

import numpy as np

from . import _checks, _engine, _epoch, _interrupt, _random
from . import distributed as _distributed
from . import preprocessing as _prep
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from ._arena import Arena, Parameter
from .layers.base import Elementwise, Layer, building_shapes_only

__all__ = ["Sequential", "History"]


class History:
    """What `fit` returns: `history` maps "loss", "val_loss" and each metric (with and without the
    "val_" prefix) to per-epoch lists; `epoch` lists the (0-based, cumulative) epoch numbers."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def _layer_name(i: int, layer: Layer) -> str:
    return f"layer {i} ({layer!r})"


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A per-sample shape: 1 to 3 positive ints, (F), (C, L) or (C, H, W)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not 1 <= len(shape) <= 3:
        raise ValueError(f"{what} must be a per-sample shape (F), (C, L) or (C, H, W), got {shape!r}")
    return tuple(_checks.check_int(d, f"{what}[{i}]", 1) for i, d in enumerate(shape))


class Sequential:
    """Layers applied in order; all their parameters live in one flat buffer.

        model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 10)], seed=0)
        model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=gs.Adam(lr=1e-3), metrics=["accuracy"])
        history = model.fit(X, y, epochs=20, batch_size=32, validation_split=0.2)

    `seed` makes the model reproducible: parameters of layers built without a seed of their own
    are drawn again from it, and it is the default seed of `fit`'s shuffling and dropout.
    """

    # fit runs each epoch's batches in C++ chunks when that gives the per-batch loop's bits
    # (gradstep/_epoch.py); True forces the per-batch loop. _fit_path says which the last epoch took.
    _per_batch_fit = False
    _fit_path = ""

    def __init__(self, layers: Iterable[Layer] | None = None, dtype: Any = "float32",
                 seed: int | None = None, input_shape: Any = None) -> None:
        if isinstance(layers, Layer):
            raise TypeError("Sequential: layers must be a list of layers, got a single layer; wrap it in [...]")
        empty_ok = layers is None  # Sequential() then add(layer)...
        try:
            layers = list(layers) if layers is not None else []
        except TypeError:
            raise TypeError(f"Sequential: layers must be a list of gs layers, got {type(layers).__name__}") from None
        if not layers and not empty_ok:
            raise ValueError("Sequential: layers must hold at least one layer, got an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layers[{i}] must be a gs layer, got {type(layer).__name__}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("Sequential: the same layer object appears twice in layers; build a new one")
        self.dtype = _checks.as_dtype(dtype, "Sequential: dtype")
        self.seed = None if seed is None else _checks.check_int(seed, "Sequential: seed", 0)
        self.input_shape: tuple[int, ...] | None = (
            None if input_shape is None else _check_shape(input_shape, "Sequential: input_shape"))
        self.layers: list[Layer] = layers
        self.arena: Arena | None = None
        self._in_shapes: list[tuple[int, ...] | None] = []
        self.out_shape: tuple[int, ...] | None = None
        self.out_features: int | None = None
        if layers:
            self._build()
        self.loss: Any = None
        self.optimizer: Any = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.epochs_done = 0  # cumulative over fit calls; saved in model files (resume = uninterrupted run)
        self._fit_seed: int | None = None
        # What the model does with raw data, saved in model files (see gradstep/preprocessing.py):
        # `preprocessing` (a gs.Standardize or None) is applied by fit/evaluate/predict* to X, never
        # by forward/train_step; `classes_` (None or the class values, as scikit-learn's) maps the
        # labels given to fit/evaluate to output indices and predict_classes' indices back;
        # `feature_names_in_` names the input columns; `metadata` is a JSON-able dict of the user's.
        self.preprocessing: _prep.Standardize | None = None
        self.classes_: np.ndarray | None = None
        self.feature_names_in_: list[str] | None = None
        self.metadata: dict[str, Any] = {}
        # The whole-step C++ engine (None until the first train_step; False when the model's
        # layers, loss or optimizer need the layer-by-layer path). `use_engine = False` forces
        # the layer-by-layer path, which gives the same bits, only slower.
        self.use_engine = True
        self._engine: Any = None
        self._last_output: np.ndarray | None = None
        # "cpu", or "cuda:<index>" after to("cuda"): then the CUDA engine (gradstep.cuda) holds the
        # newest parameters on the device, and _host_stale says the host arrays lag behind.
        self.device = "cpu"
        self._device_engine: Any = None
        self._host_stale = False

    # ---- construction -------------------------------------------------------------------------
    def add(self, layer: Layer) -> "Sequential":
        """Append a layer (shapes are checked again; the model must not be compiled yet)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: layer must be a gs layer, got {type(layer).__name__}")
        if any(layer is l for l in self.layers):
            raise ValueError("Sequential.add: this layer object is already in the model; build a new one")
        if self.loss is not None:
            raise ValueError("Sequential.add: add every layer before compile()")
        self.layers.append(layer)
        try:
            self._build()
        except Exception:
            self.layers.pop()
            raise
        return self

    @property
    def in_features(self) -> int | None:
        """Features per sample of a model on (N, F) input (None for other inputs or when unknown)."""
        return self.input_shape[0] if self.input_shape is not None and len(self.input_shape) == 1 else None


    def _infer_shapes(self, in_shape: tuple[int, ...] | None) -> tuple[list, tuple[int, ...] | None]:
        """Each layer's per-sample input shape and the model's output shape, walking from `in_shape`
        (or from the first layer that fixes one); a layer that cannot take its input raises,
        naming it, the layer the shape comes from, and the shape."""
        shapes: list[tuple[int, ...] | None] = []
        shape, source = in_shape, None
        if shape is None:  # the first layer that fixes its input shape, past shape-keeping ones
            for layer in self.layers:
                shape = layer.input_shape_hint()
                if shape is not None or not isinstance(layer, Elementwise):
                    break
        for i, layer in enumerate(self.layers):
            shapes.append(shape)
            if shape is None:
                continue
            try:
                out = layer.output_shape(shape)
            except ValueError as e:
                where = (f"{_layer_name(*source)}, which outputs" if source is not None
                         else "the model's input of")
                raise ValueError(f"Sequential: {_layer_name(i, layer)} cannot take {where} shape "
                                 f"(N, {', '.join(map(str, shape))}): {e}") from None
            if out != shape or source is None:
                source = (i, layer)  # the layer that last fixed the shape
            shape = out
        return shapes, shape

    def _build(self, in_shape: tuple[int, ...] | None = None) -> None:
        """Infer shapes (from `in_shape`, the model's input_shape or the first layer) and lay the
        parameters out in one arena once every layer knows its sizes."""
        start = in_shape or self.input_shape
        shapes, out = self._infer_shapes(start)
        if start is None and shapes:
            start = shapes[0]
        complete = start is not None and all(s is not None for s in shapes)
        if complete:
            self.input_shape = tuple(start)
        self._in_shapes, self.out_shape = shapes, out
        # Values per sample of the model's output (None when unknown); an attribute, not a
        # property, because every training step reads it.
        self.out_features = None if out is None else int(np.prod(out))
        unbuilt = [l for l in self.layers if l.has_params and not l._param_shapes()]
        if not unbuilt and (self.arena is None or self._arena_stale()):
            self._build_arena()
            if self.seed is not None:
                self._reinitialize(np.random.default_rng(self.seed))
            self._engine = None

    def _arena_stale(self) -> bool:
        return any(layer._arena is not self.arena for layer in self.layers if layer._param_shapes())

    def build(self, input_shape: Any) -> "Sequential":
        """Fix the per-sample input shape now (instead of at the first batch): infers the sizes of
        lazy layers, checks every layer against its input and lays out the parameters."""
        shape = _check_shape(input_shape, "Sequential.build: input_shape")
        if self.input_shape is not None and self.input_shape != shape:
            raise ValueError(f"Sequential.build: the model's input_shape is {self.input_shape}, got {shape}")
        self._build(shape)
        return self

    def _ensure_input(self, shape: tuple[int, ...]) -> None:
        """Settle the input shape from a batch's per-sample shape (first batch)."""
        if self.input_shape is None or self.arena is None:
            self._build(tuple(int(d) for d in shape))

    def _build_arena(self) -> None:
        if building_shapes_only():
            return  # gs.load checks the shapes against its file first, then calls this itself
        specs = [(f"{i}.{name}", shape) for i, layer in enumerate(self.layers)
                 for name, shape in layer._param_shapes().items()]
        self.arena = Arena(specs, self.dtype)
        for i, layer in enumerate(self.layers):
            if layer._param_shapes():
                layer._move_to(self.arena, f"{i}.")
            else:
                layer._cast_buffers(self.dtype)
            if layer.has_params or layer.dtype is not None:
                layer.dtype = self.dtype

    def _reinitialize(self, rng: np.random.Generator) -> None:
        """Draw parameters again from the model's seed for layers built without a seed of their own."""
        for layer in self.layers:
            if getattr(layer, "seed", 0) is None:
                if layer._param_shapes():
                    values = layer._initial_values(rng)
                    for name, v in values.items():
                        layer._p[name][...] = v
                if hasattr(layer, "_rng"):
                    layer._rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))

    # ---- parameters & state -------------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed "index.name" (e.g. "0.weight")."""
        return {key: value.copy() for key, value in self._state_views().items()}

    def _state_views(self) -> dict[str, np.ndarray]:
        """Live views of every parameter and buffer, keyed as in `state_dict`."""
        self._sync_host()
        return {f"{i}.{name}": value for i, layer in enumerate(self.layers)
                for name, value in {**layer.params, **layer.buffers}.items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy values into the model. Strict loading rejects missing, unexpected and wrongly shaped
        entries; non-strict loading skips missing and unexpected ones but still checks shapes."""
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: state must be a dict, got {type(state).__name__}")
        views = self._state_views()
        missing = sorted(set(views) - set(state))
        unexpected = sorted(set(state) - set(views))
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        checked = {}
        for key, view in views.items():
            if key not in state:
                continue
            value = _checks.numeric_array(state[key], f"load_state_dict: state[{key!r}]")
            if value.shape != view.shape:
                raise ValueError(f"load_state_dict: state[{key!r}] must have shape {view.shape}, got {value.shape}")
            checked[key] = value
        for key, value in checked.items():  # all checked before anything is written
            views[key][...] = value
        if self._device_engine is not None:
            self._device_engine.push()

    # ---- compile ------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any = "adam", metrics: Any = None) -> "Sequential":
        self.loss = _losses.get(loss)
        self.optimizer = _optim.get(optimizer)
        self.metrics = _metrics.check_metrics(metrics)
        self._engine = None
        self._sync_host()
        self._device_engine = None  # rebuilt for the new loss and optimizer on the next step
        return self

    # ---- devices ------------------------------------------------------------------------------
    def to(self, device: Any) -> "Sequential":
        """Move the model to "cpu", "cuda" or "cuda:<index>": parameters, optimizer state and
        BatchNorm statistics. Training then runs there; predict, evaluate, state_dict and save
        read the newest values back. Returns the model. Raises gs.CudaError without a usable GPU."""
        from . import cuda as _cuda
        kind, index = _cuda.parse_device(device)
        if kind == "cuda":
            _cuda.check_model(self, index)
        self._sync_host()
        self._device_engine = None
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        return self

    def _sync_host(self) -> None:
        """Bring the device's newest values into the host arrays (a no-op on the CPU)."""
        if self._host_stale and self._device_engine is not None:
            self._device_engine.pull()
        self._host_stale = False

    def _not_on_device(self, what: str) -> None:
        if self.device != "cpu":
            raise ValueError(f"{what}: the split step runs on the CPU (data parallelism all-reduces "
                             f"host buffers); the model is on {self.device}: model.to('cpu') first")

    def _on_device(self) -> Any:
        """The CUDA engine of a model on a GPU, built on first use."""
        from . import cuda as _cuda
        engine = self._device_engine
        if engine is None or not engine.usable():
            self._sync_host()
            engine = self._device_engine = _cuda.Engine(self, int(self.device.split(":")[1]))
        return engine

    def _require_compiled(self, what: str) -> None:
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"{what}: compile the model first (model.compile(loss=..., optimizer=...))")

    # ---- forward / backward -------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> np.ndarray:
        self._sync_host()
        self._settle(x)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad: Any) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        for layer in self.layers:
            layer._after_backward()
        return grad

    def _settle(self, x: Any) -> None:
        """Build what the first batch decides (input shape, sizes of lazy layers, the arena)."""
        if self.input_shape is None or self.arena is None:
            shape = np.shape(x)
            if len(shape) < 2:
                raise ValueError(f"Sequential: x must be a batch (N, ...) with at least 2 dimensions, "
                                 f"got shape {shape}")
            self._ensure_input(tuple(shape[1:]))

    def penalty(self) -> float:
        """Σ of the layers' regularization terms (Dense's (l2/2)·‖W‖²)."""
        if len(self._in_shapes) != len(self.layers):
            return float(sum(layer.penalty() for layer in self.layers))
        return float(sum(layer.penalty() if layer.op_kind is None else layer._penalty_for(shape)
                         for layer, shape in zip(self.layers, self._in_shapes)))

    def _get_engine(self) -> Any:
        engine = self._engine
        if engine is None or (engine is not False and not engine.usable()):
            engine = self._engine = _engine.build(self) or False
        return engine if self.use_engine else False

    def train_step(self, xb: Any, yb: Any, sample_weight: Any = None) -> float:
        """One mini-batch: forward, loss, backward, optimizer update. Returns the loss (with the L2 terms).
        `sample_weight` (N,): per-sample loss weights, Σ w_i·loss_i / N (see gs.losses).

        Runs as one C++ call when every layer, the loss and the optimizer are built-in ones (their
        C++ ops, loss and update); otherwise layer by layer (same results)."""
        self._require_compiled("train_step")
        # NaN or inf in a batch would poison the weights silently: refused as fit refuses them.
        # A built model on the CPU with an engine has the network scan the batch in its call
        # (same error, same order, nothing changed), the rest checks it here.
        if self.device == "cpu" and self.arena is not None and self.input_shape is not None:
            engine = self._get_engine()
            if engine:
                self._last_output = None
                return engine.step(xb, yb, sample_weight, check_finite=True)
        _checks.check_finite(xb, "train_step: xb")
        _checks.check_finite(yb, "train_step: yb")
        return self._step(xb, yb, sample_weight)

    def _step(self, xb: Any, yb: Any, sample_weight: Any = None) -> float:
        """`train_step` without the finiteness checks, for `fit`, which checked the whole X and y
        once before its first batch (so the hot path does not sum every batch again)."""
        self._settle(xb)
        if self.device != "cpu":
            if sample_weight is not None:
                raise ValueError("train_step: sample_weight runs on the CPU only (the model is on "
                                 f"{self.device})")
            self._last_output = None
            value = self._on_device().step(xb, yb)
            self._host_stale = True
            return value
        engine = self._get_engine()
        if engine:
            self._last_output = None
            return engine.step(xb, yb, sample_weight)
        value = self._forward_backward_layers(xb, yb, sample_weight)
        self.optimizer.step(self.parameters())
        return value

    def forward_backward(self, xb: Any, yb: Any, sample_weight: Any = None) -> float:
        """The first half of `train_step`: forward, loss and backward; returns the loss (with the L2
        terms) and leaves the gradients in the flat buffer `arena.grads` (every `layer.grads` is a
        view of it). `update()` is the second half; data parallelism all-reduces the gradient
        buffer between them."""
        self._require_compiled("forward_backward")
        self._not_on_device("forward_backward")
        self._settle(xb)
        engine = self._get_engine()
        if engine:
            self._last_output = None
            return engine.forward_backward(xb, yb, sample_weight)
        return self._forward_backward_layers(xb, yb, sample_weight)

    def update(self) -> None:
        """The second half of `train_step`: the optimizer's update from the gradients in
        `arena.grads`, as they are now."""
        self._require_compiled("update")
        self._not_on_device("update")
        if self.arena is None:
            raise ValueError("update: the model is not built yet (run forward_backward first)")
        engine = self._get_engine()
        if engine:
            engine.update()
        else:
            self.optimizer.step(self.parameters())

    def _forward_backward_layers(self, xb: Any, yb: Any, sample_weight: Any = None) -> float:
        # In the model's dtype, as the fused step takes it (a parameter-free first layer would
        # otherwise compute in the batch's own float dtype).
        xb = _checks.float_array(xb, "train_step: xb", self.dtype)
        out = self.forward(xb, training=True)
        if not self._labels_loss() and self.out_features == 1 and np.ndim(yb) == 1:
            yb = np.reshape(yb, (-1, 1))  # targets (N,) for a single-output model, as fit accepts
        if sample_weight is not None:
            sample_weight = _losses.check_sample_weight(sample_weight, out.shape[0],
                                                        "train_step: sample_weight")
        value = (self.loss.forward(out, yb) if sample_weight is None
                 else self.loss.forward(out, yb, sample_weight)) + self.penalty()
        self.backward(self.loss.backward())
        self._last_output = out
        return value

    def _train_output(self) -> np.ndarray:
        """The outputs of the last train_step's forward (for the training metrics)."""
        if self._last_output is None:
            engine = self._device_engine if self.device != "cpu" else self._engine
            self._last_output = engine.output()
        return self._last_output

    # ---- data checks --------------------------------------------------------------------------
    def _labels_loss(self) -> bool:
        return isinstance(self.loss, (_losses.SoftmaxCrossEntropy, _losses.NLL))

    def _check_X(self, X: Any, what: str, xname: str = "X") -> np.ndarray:
        """A non-empty numeric (samples, *input_shape) array, not yet converted."""
        X = _prep.select_columns(X, self.feature_names_in_, f"{what}: {xname}")
        X = _checks.numeric_array(X, f"{what}: {xname}")
        want = self.input_shape
        if want is not None and len(want) == 1 and X.ndim != 2:
            raise ValueError(f"{what}: {xname} must be a 2-D array (samples, features), got shape {X.shape}")
        if want is not None and X.ndim != len(want) + 1:
            raise ValueError(f"{what}: {xname} must be a {len(want) + 1}-D array (samples, "
                             f"{', '.join(map(str, want))}), got shape {X.shape}")
        if X.ndim < 2:
            raise ValueError(f"{what}: {xname} must be a 2-D array (samples, features), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{what}: {xname} is empty (0 samples)")
        if want is not None and X.shape[1:] != want:
            if len(want) == 1:
                raise ValueError(f"{what}: {xname} must have {want[0]} features (the first layer's "
                                 f"in_features), got {X.shape[1]}")
            raise ValueError(f"{what}: {xname} must have per-sample shape {want} (the model's "
                             f"input_shape), got {X.shape[1:]}")
        if want is None:
            self._ensure_input(tuple(int(d) for d in X.shape[1:]))
        return X

    def _check_data(self, X: Any, y: Any, what: str, xname: str = "X", yname: str = "y") -> tuple[np.ndarray, np.ndarray]:
        X = self._check_X(X, what, xname)
        _checks.check_finite(X, f"{what}: {xname}")
        if self.classes_ is not None and np.ndim(y) == 1:
            y = _prep.encode_labels(y, _prep.check_classes(self.classes_, "classes_"), f"{what}: {yname}")
        y = _checks.numeric_array(y, f"{what}: {yname}")
        if y.shape[0:1] != X.shape[0:1]:
            raise ValueError(f"{what}: {xname} and {yname} must have the same number of samples, got "
                             f"{X.shape[0]} and {y.shape[0] if y.ndim else 'a scalar'}")
        if _checks.first_nonfinite(y) is not None:
            raise ValueError(f"{what}: {yname} holds NaN or inf (first at index {_checks.first_nonfinite(y)[0]})")
        checked_X, checked_y = X, y
        if self._labels_loss() and y.ndim == 1:
            y = _checks.class_labels(y, f"{what}: {yname}", self.out_features)
        else:
            if y.ndim == 1 and self.out_features == 1:
                y = y.reshape(-1, 1)
            if self.out_features is not None and (y.ndim != 2 or y.shape[1] != self.out_features):
                raise ValueError(f"{what}: {yname} must have shape ({X.shape[0]}, {self.out_features}) to match "
                                 f"the model's outputs, got {y.shape}")
            y = np.ascontiguousarray(y, dtype=self.dtype)
        X = self._network_input(X)
        # Once per call, not per batch: a finite raw X can still overflow when standardized or cast
        # to the model's dtype (train_step, which fit's batches skip, would have caught it). An
        # array that came through unchanged (already the model's dtype) was checked above.
        if X is not checked_X:
            _checks.check_finite(X, f"{what}: {xname} (standardized, as {self.dtype.name})")
        if y is not checked_y:
            _checks.check_finite(y, f"{what}: {yname} (as the model's dtype)")
        return X, y

    def _network_input(self, X: np.ndarray) -> np.ndarray:
        """Checked raw data -> what the first layer takes: `preprocessing` applied, model dtype."""
        if self.preprocessing is not None:
            X = self.preprocessing.transform(X)
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _infer_classes(self, y: Any) -> None:
        """fit with labels that are not numbers (strings, e.g. "yes"/"no") sets classes_ from them."""
        if self.classes_ is None and self._labels_loss() and np.ndim(y) == 1:
            values = np.asarray(y)
            if values.dtype.kind not in "biuf":
                self.classes_ = _prep.check_classes(np.unique(values.astype(str)), "fit: y")

    def _sample_weights(self, y: np.ndarray, sample_weight: Any, class_weight: Any,
                        what: str) -> np.ndarray | None:
        """Per-sample loss weights (float64, (N,)) from `sample_weight` and `class_weight` (their
        product when both are given, as Keras does), for checked targets `y`; None when neither."""
        n = y.shape[0]
        w = None
        if sample_weight is not None:
            w = _losses.check_sample_weight(sample_weight, n, f"{what}: sample_weight")
        if class_weight is None:
            return w
        if not isinstance(class_weight, dict):
            raise TypeError(f"{what}: class_weight must be a dict {{class: weight}}, "
                            f"got {type(class_weight).__name__}")
        cls = self._sample_classes(y, what)
        n_classes = self.out_features if self._labels_loss() or isinstance(
            self.loss, _losses.SoftmaxCrossEntropy) else 2
        table = np.ones(max(int(n_classes), 1), dtype=np.float64)  # a class not named weighs 1
        if class_weight:
            keys = list(class_weight)
            if self.classes_ is not None:
                idx = _prep.encode_labels(np.array(keys), _prep.check_classes(self.classes_, "classes_"),
                                          f"{what}: class_weight keys")
            else:
                idx = []
                for k in keys:
                    if (isinstance(k, bool) or not isinstance(k, (int, np.integer))
                            or not 0 <= int(k) < n_classes):
                        raise ValueError(f"{what}: class_weight has the key {k!r}, which is not a "
                                         f"class of this model (integers in [0, {n_classes}))")
                    idx.append(int(k))
            vals = _losses.check_sample_weight([class_weight[k] for k in keys], len(keys),
                                               f"{what}: class_weight values")
            table[np.asarray(idx, dtype=np.int64)] = vals
        cw = table[cls]
        return cw if w is None else w * cw

    def _sample_classes(self, y: np.ndarray, what: str) -> np.ndarray:
        """The class index of each (checked) target, for class_weight."""
        if y.ndim == 1:
            return y.astype(np.int64)
        if isinstance(self.loss, _losses.SoftmaxCrossEntropy):
            return np.argmax(y, axis=1).astype(np.int64)
        if isinstance(self.loss, _losses.BinaryCrossEntropy) and y.shape[1] == 1:
            return (y[:, 0] >= 0.5).astype(np.int64)
        raise ValueError(f"{what}: class_weight needs class targets (a classification loss with one "
                         f"class per sample), got {type(self.loss).__name__} with targets of shape "
                         f"{y.shape}; pass sample_weight instead")

    # ---- training loop ------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: Any = None, verbose: int = 1,
            seed: int | None = None, initial_epoch: int | None = None, distributed: Any = "auto",
            sample_weight: Any = None, class_weight: Any = None) -> History:
        """Train for `epochs` epochs of shuffled mini-batches (the last partial batch kept).

        With `initial_epoch` (Keras's meaning) training resumes at that epoch index and runs up to
        epoch `epochs` (so `epochs - initial_epoch` epochs): epoch numbers, schedules and the
        per-epoch shuffling continue as in one uninterrupted run.

        `distributed="auto"` trains data-parallel when the process is one of several started by an
        MPI launcher (`mpiexec -n K python train.py`), "mpi" insists on MPI, None never uses it;
        see gradstep.distributed.

        `sample_weight` (N,) and `class_weight` ({class: weight}, classes as `y` names them; a
        class left out weighs 1) weight each sample's loss: the loss is Σ w_i·loss_i / N (Keras's
        convention; see gs.losses), with w the product of the two when both are given. Metrics
        stay unweighted. `validation_data` may be (X, y) or (X, y, sample_weight);
        `validation_split` splits the weights with the data.

        On the CPU, a model whose layers, loss and optimizer are built-in ones trains each epoch's
        batches in C++, a chunk of batches (about 0.1 s) per call, and gets the same numbers as
        batch by batch; a callback with `on_batch_end` (other than TerminateOnNaN), a callable
        metric, MPI data parallelism or a GPU keep the batch-by-batch loop (gradstep/_epoch.py)."""
        self._require_compiled("fit")
        run = _distributed.runner(self, distributed)
        epochs = _checks.check_int(epochs, "fit: epochs", 1)
        if initial_epoch is not None:
            initial_epoch = _checks.check_int(initial_epoch, "fit: initial_epoch", 0)
            if initial_epoch >= epochs:
                raise ValueError(f"fit: initial_epoch ({initial_epoch}) must be below epochs ({epochs}), the "
                                 "index of the epoch to stop at")
        batch_size = _checks.check_int(batch_size, "fit: batch_size", 1)
        validation_split = _checks.check_float(validation_split, "fit: validation_split", 0.0, 1.0,
                                               max_inclusive=False)
        verbose = _checks.check_int(verbose, "fit: verbose", 0)
        seed = self._resolve_seed(seed)
        self._infer_classes(y)
        X, y = self._check_data(X, y, "fit")
        weights = self._sample_weights(y, sample_weight, class_weight, "fit")
        if weights is not None and self.device != "cpu":
            raise ValueError(f"fit: sample_weight and class_weight run on the CPU only (the model is "
                             f"on {self.device})")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("fit: validation_data must be a pair (X_val, y_val) or a triple "
                                "(X_val, y_val, sample_weight_val)")
            vx, vy = self._check_data(*validation_data[:2], "fit", "validation_data X", "validation_data y")
            vw = None
            if len(validation_data) == 3 and validation_data[2] is not None:
                vw = _losses.check_sample_weight(validation_data[2], vx.shape[0],
                                                 "fit: validation_data sample_weight")
            val = (vx, vy, vw)
        elif validation_split > 0.0:
            n_val = int(math.floor(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"fit: validation_split={validation_split} leaves {n_val} of {X.shape[0]} "
                                 "samples for validation; need at least one on each side")
            val = (X[-n_val:], y[-n_val:], None if weights is None else weights[-n_val:])
            X, y = X[:-n_val], y[:-n_val]
            if weights is not None:
                weights = weights[:-n_val]
        seed = run.setup(self, X, y, val, seed)
        callbacks = run.callbacks(self._check_callbacks(callbacks))

        if initial_epoch is not None:
            self.epochs_done, epochs = initial_epoch, epochs - initial_epoch
        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": X.shape[0]}
        self.history = history
        self.stop_training = False
        self.interrupted_at: tuple[int, int, int] | None = None  # (epoch, batches done, batches) on Ctrl-C
        for cb in callbacks:
            cb.set_model(self)
        for cb in callbacks:
            cb.on_train_begin({})
        n = X.shape[0]
        n_batches = -(-n // batch_size)
        if n % batch_size == 1 and any(type(l).__name__ == "BatchNorm" for l in self.layers):
            raise ValueError(f"fit: the last batch would hold 1 sample ({n} samples, batch_size={batch_size}), "
                             "and BatchNorm needs more than 1 per batch in training; change batch_size")
        run.check_batches(n, batch_size, any(type(l).__name__ == "BatchNorm" for l in self.layers))
        # Mini-batches are gathered into buffers made once per fit: a step allocates nothing.
        xbuf = np.empty((min(batch_size, n),) + X.shape[1:], X.dtype)
        ybuf = np.empty((min(batch_size, n),) + y.shape[1:], y.dtype)
        wbuf = np.empty(min(batch_size, n), np.float64) if weights is not None else None
        # On a GPU the training set is copied to the device once and each batch gathered there.
        device_data = self._on_device().upload(X, y) if self.device != "cpu" else None
        progress = _progress_factory(verbose if run.is_main else 0)
        ended_normally = False
        sigint = _interrupt.deferred()
        interrupt = sigint.__enter__()
        try:
            for e in range(epochs):
                epoch = self.epochs_done
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {})
                rng = np.random.default_rng([seed, epoch])
                self._seed_dropout(rng)
                run.seed_dropout(self, seed, epoch)
                order = rng.permutation(n) if shuffle else None
                sums = {"loss": 0.0}
                tracker = _metrics.Tracker(self.metrics, self.loss)
                bar = progress(n_batches, f"Epoch {epoch + 1}/{self.epochs_done - e + epochs}")
                stopped_in_batch = False
                # Decided per epoch (after on_epoch_begin, which may change the model).
                fast = _epoch.plan(self, run, callbacks, y, weights, device_data is not None)
                if fast is not None:  # the epoch in C++ chunks: same bits (see gradstep/_epoch.py)
                    b, stopped_in_batch = fast.run(X, order, batch_size, sums, tracker, bar, interrupt, epoch)
                else:
                    for b in range(n_batches):
                        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                        mine, end = run.share(lo, hi)  # this process's rows of the batch (all of them on one)
                        if device_data is not None:
                            idx = order[lo:hi] if shuffle else np.arange(lo, hi)
                            yb = y[idx]
                            self._last_output = None
                            value = self._device_engine.step_indices(device_data, idx)
                            self._host_stale = True
                        else:
                            wb = None
                            if shuffle:
                                idx = order[mine:end]
                                xb, yb = xbuf[:end - mine], ybuf[:end - mine]
                                np.take(X, idx, axis=0, out=xb)
                                np.take(y, idx, axis=0, out=yb)
                                if weights is not None:
                                    wb = wbuf[:end - mine]
                                    np.take(weights, idx, out=wb)
                            else:
                                xb, yb = X[mine:end], y[mine:end]
                                wb = None if weights is None else weights[mine:end]
                            value = run.step(self, xb, yb, hi - lo, wb)
                        sums["loss"] += value * (hi - lo)
                        if self.metrics and len(yb):
                            tracker.update(self._train_output(), yb)
                        if bar is not None:
                            bar.update(1)
                            if b % 8 == 0 or b == n_batches - 1:
                                bar.set_postfix_str(f"loss={sums['loss'] / min(n, (b + 1) * batch_size):.4f}", refresh=False)
                        for cb in callbacks:
                            cb.on_batch_end(b, {"loss": value, "size": hi - lo})
                        if interrupt.requested:  # Ctrl-C: this batch is done; the epoch is not
                            if bar is not None:
                                bar.close()
                            self.interrupted_at = (epoch, b + 1, n_batches)
                            raise KeyboardInterrupt(f"fit: interrupted in epoch {epoch + 1} after batch "
                                                    f"{b + 1} of {n_batches}")
                        if run.any_stop(self.stop_training, batch=True):
                            self.stop_training = True
                            stopped_in_batch = True
                            break
                seen = n if not stopped_in_batch else min(n, (b + 1) * batch_size)
                run.end_epoch(self)
                logs = {"loss": sums["loss"] / seen, **run.results(tracker)}
                if val is not None:
                    for k, v in run.evaluate(self, val[0], val[1], max(batch_size, 256), val[2]).items():
                        logs["val_" + k] = v
                logs["lr"] = float(self.optimizer.lr)
                if bar is not None:
                    bar.set_postfix_str(" ".join(f"{k}={v:.4g}" for k, v in logs.items()), refresh=False)
                    bar.close()
                self.epochs_done += 1
                history.append(epoch, logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if run.any_stop(self.stop_training):
                    self.stop_training = True
                    break
            ended_normally = True
        except BaseException as exc:
            run.failed(exc)  # with MPI: report and end every rank's process
            raise
        finally:
            sigint.__exit__(None, None, None)
            # An exception (Ctrl-C included) still ends the callbacks (files closed), flagged so
            # that none acts as on a finished run (EarlyStopping does not roll weights back).
            for cb in callbacks:
                cb.on_train_end({} if ended_normally else {"interrupted": True})
        return history

    def _resolve_seed(self, seed: int | None) -> int:
        if seed is not None:
            return _checks.check_int(seed, "fit: seed", 0)
        if self.seed is not None:
            return self.seed
        if self._fit_seed is None:  # one seed per model, so that successive fits continue one stream
            self._fit_seed = _random.draw_seed(_random.generator())
        return self._fit_seed

    def _seed_dropout(self, rng: np.random.Generator) -> None:
        """Dropout masks of an epoch depend only on (seed, epoch): a resumed run draws the same masks."""
        for layer in self.layers:
            if hasattr(layer, "_rng"):
                layer._rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))

    @staticmethod
    def _check_callbacks(callbacks: Any) -> list:
        if callbacks is None:
            return []
        if not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        for cb in callbacks:
            if not any(hasattr(cb, h) for h in ("on_train_begin", "on_epoch_begin", "on_batch_end",
                                                "on_epoch_end", "on_train_end")):
                raise TypeError(f"fit: callbacks must be callback objects, got {type(cb).__name__}")
        return [_CallbackAdapter(cb) for cb in callbacks]

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, X: Any, y: Any, batch_size: int = 256, sample_weight: Any = None) -> dict[str, float]:
        """Loss (with the L2 terms) and metrics over (X, y), in evaluation mode. `sample_weight`
        (N,) weights the loss as in `fit` (Σ w_i·loss_i / N); the metrics stay unweighted."""
        self._require_compiled("evaluate")
        batch_size = _checks.check_int(batch_size, "evaluate: batch_size", 1)
        X, y = self._check_data(X, y, "evaluate")
        w = self._sample_weights(y, sample_weight, None, "evaluate")
        return self._evaluate_arrays(X, y, batch_size, w)

    def _evaluate_arrays(self, X: np.ndarray, y: np.ndarray, batch_size: int,
                         weights: np.ndarray | None = None) -> dict[str, float]:
        total, tracker = self._evaluate_sums(X, y, batch_size, weights)
        return {"loss": total / X.shape[0] + self.penalty(), **tracker.results()}

    def _evaluate_sums(self, X: np.ndarray, y: np.ndarray, batch_size: int,
                       weights: np.ndarray | None = None) -> tuple[float, Any]:
        """(sum of the per-row losses, each times its weight when `weights` (N,) is given, and the
        metrics tracker) over (X, y) in evaluation mode."""
        total = 0.0
        tracker = _metrics.Tracker(self.metrics, self.loss)
        # Through the whole-step engine's network when there is one (one C++ call per batch, the
        # same bits as the layers' forward), else layer by layer.
        engine = self._get_engine() if self.device == "cpu" and X.dtype == self.dtype else False
        for start in range(0, X.shape[0], batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            out = engine.infer(xb) if engine else self.forward(xb, training=False)
            if weights is None:
                total += self.loss.forward(out, yb) * xb.shape[0]
            else:
                total += self.loss.forward(out, yb, weights[start:start + batch_size]) * xb.shape[0]
            if self.metrics:
                tracker.update(out, yb)
        return total, tracker

    def __call__(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """`model(X)` is `model.predict(X)` (as Keras's)."""
        return self.predict(X, batch_size=batch_size)

    def predict(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs in evaluation mode (logits for a model trained with a fused loss)."""
        batch_size = _checks.check_int(batch_size, "predict: batch_size", 1)
        X = self._check_X(X, "predict")
        _checks.check_finite(X, "predict: X")  # as fit and evaluate: no silent NaN rows or class 0
        with np.errstate(over="ignore"):
            X = self._network_input(X)
        # A value finite in the caller's float64 can overflow the model's float32 (or its stored
        # standardization): refused too, not predicted as inf/NaN.
        _checks.check_finite(X, f"predict: X (standardized, as {self.dtype.name})")
        # Through the whole-step engine's network when there is one (one C++ call per batch, the
        # bits of the layers' forward on the same batch, as evaluate), else layer by layer.
        engine = False
        if self.device == "cpu" and self.optimizer is not None and self.loss is not None:
            self._settle(X)
            if self.input_shape is not None and X.shape[1:] == tuple(self.input_shape):
                engine = self._get_engine()
        if engine:
            outs = [engine.infer(X[s:s + batch_size]) for s in range(0, X.shape[0], batch_size)]
            if len(outs) == 1:
                return outs[0]  # a new array of its own
        else:
            outs = [self.forward(X[s:s + batch_size], training=False) for s in range(0, X.shape[0], batch_size)]
        return np.concatenate(outs, axis=0)

    def predict_classes(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Class labels as the compiled loss reads the outputs: argmax over classes, or a
        threshold per output (0.5 on probabilities, 0 on logits); argmax / 0.5 when uncompiled."""
        loss = self.loss if self.loss is not None else _losses.Loss()
        indices = loss.predicted_classes(self.predict(X, batch_size))
        if self.classes_ is None:
            return indices
        return _prep.decode_labels(indices, _prep.check_classes(self.classes_, "classes_"))

    def predict_proba(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of `classes_` (or of the outputs), for
        a model compiled with a classification loss: the softmax of SoftmaxCrossEntropy's logits,
        NLL's outputs, BinaryCrossEntropy's P(1) (two columns [P(0), P(1)] for a single output)."""
        if self.loss is None:
            raise ValueError("predict_proba: compile the model with a classification loss first")
        return self.loss.probabilities(self.predict(X, batch_size))

    # ---- description --------------------------------------------------------------------------
    def summary(self) -> str:
        rows = [("#", "layer", "output", "params")]
        total = 0
        shapes = self._in_shapes[1:] + [self.out_shape] if self._in_shapes else [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            out = shapes[i] if i < len(shapes) else None
            count = int(sum(v.size for v in layer.params.values()))
            total += count
            desc = f"(N, {', '.join(map(str, out))})" if out is not None else "(N, ?)"
            rows.append((str(i), repr(layer), desc, f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        out_lines = [line]
        if self.input_shape is not None:
            out_lines.insert(0, f"input: (N, {', '.join(map(str, self.input_shape))})")
        for j, r in enumerate(rows):
            out_lines.append("  ".join(r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c]) for c in range(4)))
            if j == 0:
                out_lines.append(line)
        out_lines += [line, f"Total parameters: {total:,} ({self.dtype.name})"]
        return "\n".join(out_lines)

    def get_config(self) -> dict[str, Any]:
        cfg = {"dtype": self.dtype.name, "seed": self.seed,
               "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]}
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        return cfg

    def save(self, path: Any) -> None:
        """Write one .safetensors file: weights, buffers, optimizer state and the architecture."""
        from . import io
        io.save(self, path)

    def __reduce__(self):
        # Pickled as its model file (weights, buffers, optimizer state, architecture): the same
        # validated format as `save`, so joblib workers and copies get an equivalent model.
        from . import io
        return (io.from_bytes, (io.to_bytes(self),))

    def __repr__(self) -> str:
        inner = ", ".join(repr(l) for l in self.layers)
        return f"Sequential([{inner}], dtype={self.dtype.name!r})"


class _CallbackAdapter:
    """Calls only the hooks a user callback defines (any object with some of them is a callback)."""

    def __init__(self, cb: Any) -> None:
        self.cb = cb

    def set_model(self, model: Sequential) -> None:
        if hasattr(self.cb, "set_model"):
            self.cb.set_model(model)
        else:
            try:
                self.cb.model = model
            except AttributeError:
                pass

    def __getattr__(self, hook: str):
        fn = getattr(self.cb, hook, None)
        return fn if fn is not None else (lambda *a, **k: None)


def _progress_factory(verbose: int):
    if verbose == 0:
        return lambda total, desc: None
    from tqdm import tqdm

    def make(total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="batch", leave=True, file=sys.stderr, dynamic_ncols=True,
                    mininterval=0.2)
    return make
