"""`gs.Sequential`: a stack of layers sharing one flat parameter arena, and its training loop."""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable

import numpy as np

from . import _checks, _engine, _random
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from ._arena import Arena, Parameter
from .layers.base import Layer

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


class Sequential:
    """Layers applied in order; all their parameters live in one flat buffer.

        model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 10)], seed=0)
        model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=gs.Adam(lr=1e-3), metrics=["accuracy"])
        history = model.fit(X, y, epochs=20, batch_size=32, validation_split=0.2)

    `seed` makes the model reproducible: parameters of layers built without a seed of their own
    are drawn again from it, and it is the default seed of `fit`'s shuffling and dropout.
    """

    def __init__(self, layers: Iterable[Layer], dtype: Any = "float32", seed: int | None = None) -> None:
        if isinstance(layers, Layer):
            raise TypeError("Sequential: layers must be a list of layers, got a single layer; wrap it in [...]")
        try:
            layers = list(layers)
        except TypeError:
            raise TypeError(f"Sequential: layers must be a list of gs layers, got {type(layers).__name__}") from None
        if not layers:
            raise ValueError("Sequential: layers must hold at least one layer, got an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layers[{i}] must be a gs layer, got {type(layer).__name__}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("Sequential: the same layer object appears twice in layers; build a new one")
        self.dtype = _checks.as_dtype(dtype, "Sequential: dtype")
        self.seed = None if seed is None else _checks.check_int(seed, "Sequential: seed", 0)
        self.layers: list[Layer] = layers
        self._check_sizes()
        self._build_arena()
        if self.seed is not None:
            self._reinitialize(np.random.default_rng(self.seed))
        self.loss: Any = None
        self.optimizer: Any = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.epochs_done = 0  # cumulative over fit calls; saved in model files (resume = uninterrupted run)
        self._fit_seed: int | None = None
        # Optional input standardization the model was trained with ({"mean", "scale"} arrays),
        # saved in model files so `gradstep predict` can apply it to raw data.
        self.preprocessing: dict[str, np.ndarray] | None = None
        # The whole-step C++ engine (None until the first train_step; False when the model's
        # layers, loss or optimizer need the layer-by-layer path). `use_engine = False` forces
        # the layer-by-layer path, which gives the same bits, only slower.
        self.use_engine = True
        self._engine: Any = None
        self._last_output: np.ndarray | None = None

    # ---- construction -------------------------------------------------------------------------
    def _check_sizes(self) -> None:
        """Walk the feature counts through the layers; name the two layers that disagree."""
        features, source = None, None
        for i, layer in enumerate(self.layers):
            need = layer.input_features()
            if need is not None:
                if features is not None and need != features:
                    raise ValueError(
                        f"Sequential: {_layer_name(i, layer)} expects {need} input features, but "
                        f"{_layer_name(*source)} outputs {features}")
                features = need
            features = layer.output_features(features)
            if need is not None or source is None:
                source = (i, layer)  # the layer that last fixed the feature count
        self.in_features = next((l.input_features() for l in self.layers if l.input_features() is not None), None)
        self.out_features = features

    def _build_arena(self) -> None:
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

    # ---- compile ------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any = "adam", metrics: Any = None) -> "Sequential":
        self.loss = _losses.get(loss)
        self.optimizer = _optim.get(optimizer)
        self.metrics = _metrics.check_metrics(metrics)
        self._engine = None
        return self

    def _require_compiled(self, what: str) -> None:
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"{what}: compile the model first (model.compile(loss=..., optimizer=...))")

    # ---- forward / backward -------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad: Any) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def penalty(self) -> float:
        """Σ of the layers' regularization terms (Dense's (l2/2)·‖W‖²)."""
        return float(sum(layer.penalty() for layer in self.layers))

    def _get_engine(self) -> Any:
        engine = self._engine
        if engine is None or (engine is not False and not engine.usable()):
            engine = self._engine = _engine.build(self) or False
        return engine if self.use_engine else False

    def train_step(self, xb: Any, yb: Any) -> float:
        """One mini-batch: forward, loss, backward, optimizer update. Returns the loss (with the L2 terms).

        Runs as one C++ call when every layer, the loss and the optimizer are built-in ones the
        engine covers; otherwise layer by layer (same results)."""
        self._require_compiled("train_step")
        # NaN or inf in a batch would poison the weights silently: refused as fit refuses them.
        _checks.check_finite(xb, "train_step: xb")
        _checks.check_finite(yb, "train_step: yb")
        engine = self._get_engine()
        if engine:
            self._last_output = None
            return engine.step(xb, yb)
        out = self.forward(xb, training=True)
        if not self._labels_loss() and self.out_features == 1 and np.ndim(yb) == 1:
            yb = np.reshape(yb, (-1, 1))  # targets (N,) for a single-output model, as fit accepts
        value = self.loss.forward(out, yb) + self.penalty()
        self.backward(self.loss.backward())
        self.optimizer.step(self.parameters())
        self._last_output = out
        return value

    def _train_output(self) -> np.ndarray:
        """The outputs of the last train_step's forward (for the training metrics)."""
        if self._last_output is None:
            self._last_output = self._engine.output()
        return self._last_output

    # ---- data checks --------------------------------------------------------------------------
    def _labels_loss(self) -> bool:
        return isinstance(self.loss, (_losses.SoftmaxCrossEntropy, _losses.NLL))

    def _check_X(self, X: Any, what: str, xname: str = "X") -> np.ndarray:
        """A non-empty numeric (samples, in_features) array, not yet converted."""
        X = _checks.numeric_array(X, f"{what}: {xname}")
        if X.ndim != 2:
            raise ValueError(f"{what}: {xname} must be a 2-D array (samples, features), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{what}: {xname} is empty (0 samples)")
        if self.in_features is not None and X.shape[1] != self.in_features:
            raise ValueError(f"{what}: {xname} must have {self.in_features} features (the first layer's "
                             f"in_features), got {X.shape[1]}")
        return X

    def _check_data(self, X: Any, y: Any, what: str, xname: str = "X", yname: str = "y") -> tuple[np.ndarray, np.ndarray]:
        X = self._check_X(X, what, xname)
        _checks.check_finite(X, f"{what}: {xname}")
        y = _checks.numeric_array(y, f"{what}: {yname}")
        if y.shape[0:1] != X.shape[0:1]:
            raise ValueError(f"{what}: {xname} and {yname} must have the same number of samples, got "
                             f"{X.shape[0]} and {y.shape[0] if y.ndim else 'a scalar'}")
        if _checks.first_nonfinite(y) is not None:
            raise ValueError(f"{what}: {yname} holds NaN or inf (first at index {_checks.first_nonfinite(y)[0]})")
        if self._labels_loss() and y.ndim == 1:
            y = _checks.class_labels(y, f"{what}: {yname}", self.out_features)
        else:
            if y.ndim == 1 and self.out_features == 1:
                y = y.reshape(-1, 1)
            if self.out_features is not None and (y.ndim != 2 or y.shape[1] != self.out_features):
                raise ValueError(f"{what}: {yname} must have shape ({X.shape[0]}, {self.out_features}) to match "
                                 f"the model's outputs, got {y.shape}")
            y = np.ascontiguousarray(y, dtype=self.dtype)
        X = np.ascontiguousarray(X, dtype=self.dtype)
        return X, y

    # ---- training loop ------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: Any = None, verbose: int = 1,
            seed: int | None = None) -> History:
        """Train for `epochs` epochs of shuffled mini-batches (the last partial batch kept)."""
        self._require_compiled("fit")
        epochs = _checks.check_int(epochs, "fit: epochs", 1)
        batch_size = _checks.check_int(batch_size, "fit: batch_size", 1)
        validation_split = _checks.check_float(validation_split, "fit: validation_split", 0.0, 1.0,
                                               max_inclusive=False)
        verbose = _checks.check_int(verbose, "fit: verbose", 0)
        seed = self._resolve_seed(seed)
        X, y = self._check_data(X, y, "fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("fit: validation_data must be a pair (X_val, y_val)")
            val = self._check_data(*validation_data, "fit", "validation_data X", "validation_data y")
        elif validation_split > 0.0:
            n_val = int(math.floor(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"fit: validation_split={validation_split} leaves {n_val} of {X.shape[0]} "
                                 "samples for validation; need at least one on each side")
            val = (X[-n_val:], y[-n_val:])
            X, y = X[:-n_val], y[:-n_val]
        callbacks = self._check_callbacks(callbacks)

        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": X.shape[0]}
        self.history = history
        self.stop_training = False
        for cb in callbacks:
            cb.set_model(self)
        for cb in callbacks:
            cb.on_train_begin({})
        n = X.shape[0]
        n_batches = -(-n // batch_size)
        if n % batch_size == 1 and any(type(l).__name__ == "BatchNorm" for l in self.layers):
            raise ValueError(f"fit: the last batch would hold 1 sample ({n} samples, batch_size={batch_size}), "
                             "and BatchNorm needs more than 1 per batch in training; change batch_size")
        # Mini-batches are gathered into buffers made once per fit: a step allocates nothing.
        xbuf = np.empty((min(batch_size, n),) + X.shape[1:], X.dtype)
        ybuf = np.empty((min(batch_size, n),) + y.shape[1:], y.dtype)
        progress = _progress_factory(verbose)
        try:
            for e in range(epochs):
                epoch = self.epochs_done
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {})
                rng = np.random.default_rng([seed, epoch])
                self._seed_dropout(rng)
                order = rng.permutation(n) if shuffle else None
                sums = {"loss": 0.0}
                counts = {m: 0 for m in self.metrics}
                msums = {m: 0.0 for m in self.metrics}
                bar = progress(n_batches, f"Epoch {epoch + 1}/{self.epochs_done - e + epochs}")
                stopped_in_batch = False
                for b in range(n_batches):
                    lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                    if shuffle:
                        idx = order[lo:hi]
                        xb, yb = xbuf[:hi - lo], ybuf[:hi - lo]
                        np.take(X, idx, axis=0, out=xb)
                        np.take(y, idx, axis=0, out=yb)
                    else:
                        xb, yb = X[lo:hi], y[lo:hi]
                    value = self.train_step(xb, yb)
                    sums["loss"] += value * xb.shape[0]
                    for m in self.metrics:
                        s, c = _metrics.batch_sums(m, self._train_output(), yb, self.loss)
                        msums[m] += s
                        counts[m] += c
                    if bar is not None:
                        bar.update(1)
                        if b % 8 == 0 or b == n_batches - 1:
                            bar.set_postfix_str(f"loss={sums['loss'] / min(n, (b + 1) * batch_size):.4f}", refresh=False)
                    for cb in callbacks:
                        cb.on_batch_end(b, {"loss": value, "size": xb.shape[0]})
                    if self.stop_training:
                        stopped_in_batch = True
                        break
                seen = n if not stopped_in_batch else min(n, (b + 1) * batch_size)
                logs = {"loss": sums["loss"] / seen}
                for m in self.metrics:
                    logs[m] = msums[m] / max(counts[m], 1)
                if val is not None:
                    for k, v in self._evaluate_arrays(*val, batch_size=max(batch_size, 256)).items():
                        logs["val_" + k] = v
                logs["lr"] = float(self.optimizer.lr)
                if bar is not None:
                    bar.set_postfix_str(" ".join(f"{k}={v:.4g}" for k, v in logs.items()), refresh=False)
                    bar.close()
                self.epochs_done += 1
                history.append(epoch, logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            for cb in callbacks:
                cb.on_train_end({})
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
    def evaluate(self, X: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
        """Loss (with the L2 terms) and metrics over (X, y), in evaluation mode."""
        self._require_compiled("evaluate")
        batch_size = _checks.check_int(batch_size, "evaluate: batch_size", 1)
        X, y = self._check_data(X, y, "evaluate")
        return self._evaluate_arrays(X, y, batch_size)

    def _evaluate_arrays(self, X: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        n = X.shape[0]
        total = 0.0
        msums = {m: 0.0 for m in self.metrics}
        counts = {m: 0 for m in self.metrics}
        for start in range(0, n, batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            out = self.forward(xb, training=False)
            total += self.loss.forward(out, yb) * xb.shape[0]
            for m in self.metrics:
                s, c = _metrics.batch_sums(m, out, yb, self.loss)
                msums[m] += s
                counts[m] += c
        result = {"loss": total / n + self.penalty()}
        for m in self.metrics:
            result[m] = msums[m] / max(counts[m], 1)
        return result

    def predict(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs in evaluation mode (logits for a model trained with a fused loss)."""
        batch_size = _checks.check_int(batch_size, "predict: batch_size", 1)
        X = self._check_X(X, "predict")
        _checks.check_finite(X, "predict: X")  # as fit and evaluate: no silent NaN rows or class 0
        X = np.ascontiguousarray(X, dtype=self.dtype)
        outs = [self.forward(X[s:s + batch_size], training=False) for s in range(0, X.shape[0], batch_size)]
        return np.concatenate(outs, axis=0)

    def predict_classes(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Class labels as the compiled loss reads the outputs: argmax over classes, or a
        threshold per output (0.5 on probabilities, 0 on logits); argmax / 0.5 when uncompiled."""
        loss = self.loss if self.loss is not None else _losses.Loss()
        return loss.predicted_classes(self.predict(X, batch_size))

    # ---- description --------------------------------------------------------------------------
    def summary(self) -> str:
        rows = [("#", "layer", "output", "params")]
        features = self.in_features
        total = 0
        for i, layer in enumerate(self.layers):
            features = layer.output_features(features)
            count = int(sum(v.size for v in layer.params.values()))
            total += count
            rows.append((str(i), repr(layer), f"(N, {features})" if features is not None else "(N, ?)", f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        out = [line]
        for j, r in enumerate(rows):
            out.append("  ".join(r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c]) for c in range(4)))
            if j == 0:
                out.append(line)
        out += [line, f"Total parameters: {total:,} ({self.dtype.name})"]
        return "\n".join(out)

    def get_config(self) -> dict[str, Any]:
        return {"dtype": self.dtype.name, "seed": self.seed,
                "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]}

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
