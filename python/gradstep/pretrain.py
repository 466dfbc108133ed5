"""Greedy layer-wise pre-training with autoencoders (Hinton & Salakhutdinov 2006, Bengio et al.
2007; denoising: Vincent et al. 2008).

    model = gs.Sequential([gs.Dense(64, 100, init="normal"), gs.Sigmoid(), ..., gs.Dense(100, 10)])
    result = gs.pretrain.autoencoders(model, X, epochs=10, noise=0.2)
    print(result.table())
    model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer="adam"); model.fit(X, y, ...)

For each hidden Dense layer in order (every Dense but the last, the output layer), an autoencoder
is trained whose encoder is that layer with the layers that follow it up to the next Dense (its
activation, a Dropout...) and whose decoder maps back to that layer's input (a new Dense, or the
transposed weight when `tied`). Its training data is the output of the layers before it, in
evaluation mode, with the weights they have then (already pre-trained when they were selected).
The encoder's trained parameters are written back into the model, in place.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _checks
from . import optim as _optim
from .autoencoder import Autoencoder, check_noise, eval_forward, reconstruction_loss
from .layers.base import LAYER_REGISTRY, Layer
from .layers.dense import Dense
from .model import Sequential

__all__ = ["autoencoders", "PretrainResult"]


class PretrainResult:
    """What `autoencoders` returns.

    `layers`: the model indices of the pre-trained Dense layers, in training order;
    `losses`: per layer, the mean training reconstruction loss of each epoch;
    `final_losses`: per layer, the reconstruction loss on the clean data after training;
    `loss_names`: per layer, "mse" or "binary_crossentropy"; `shapes`: per layer (in, out);
    `autoencoders`: the trained `Autoencoder` of each layer (its encoder holds copies of the
    layers written back into the model)."""

    def __init__(self) -> None:
        self.layers: list[int] = []
        self.losses: list[list[float]] = []
        self.final_losses: list[float] = []
        self.loss_names: list[str] = []
        self.shapes: list[tuple[int, int]] = []
        self.autoencoders: list[Autoencoder] = []
        self.params: dict[str, Any] = {}

    def table(self) -> str:
        rows = [("layer", "shape", "loss", "first epoch", "last epoch", "clean")]
        for i, layer in enumerate(self.layers):
            curve = self.losses[i]
            rows.append((str(layer), f"{self.shapes[i][0]} -> {self.shapes[i][1]}", self.loss_names[i],
                         f"{curve[0]:.4g}", f"{curve[-1]:.4g}", f"{self.final_losses[i]:.4g}"))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(r[c].ljust(widths[c]) for c in range(len(r))).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PretrainResult(layers={self.layers}, epochs={[len(c) for c in self.losses]})"


def _clone(layer: Layer, dtype: np.dtype) -> Layer:
    """A new layer of the same class and configuration (its values are copied in afterwards)."""
    cls = LAYER_REGISTRY.get(type(layer).__name__)
    if cls is not type(layer):
        raise ValueError(f"autoencoders: model holds a {type(layer).__name__} layer, which cannot be "
                         "rebuilt from its configuration (a layer of your own must be registered)")
    config = dict(layer.get_config())
    if "dtype" in config:
        config["dtype"] = dtype.name
    return cls(**config)


def _check_layers(layers: Any, hidden: list[int], n: int) -> list[int]:
    if layers is None:
        return hidden
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    try:
        chosen = [int(_checks.check_int(i, "autoencoders: layers[...]")) for i in layers]
    except TypeError:
        raise TypeError(f"autoencoders: layers must be None or a list of layer indices, got {layers!r}") from None
    if not chosen:
        raise ValueError("autoencoders: layers must name at least one hidden Dense layer (or be None)")
    out = []
    for i in chosen:
        j = i + n if i < 0 else i
        if j not in hidden:
            raise ValueError(f"autoencoders: layers must be indices of hidden Dense layers {hidden} (every "
                             f"Dense but the output layer), got {i}")
        if j in out:
            raise ValueError(f"autoencoders: layers names layer {i} twice")
        out.append(j)
    return sorted(out)


def _optimizer_factory(optimizer: Any):
    """A fresh optimizer per autoencoder (each has its own parameters and state). The default,
    Adam with lr 1e-2, is 10x Adam's usual rate: a one-layer autoencoder takes it well, and with
    the default 10 epochs Adam 1e-3 left 4-layer sigmoid nets of width 32 on the digits at chance
    after fine-tuning, 1e-2 at 96-97% (2 seeds; width 100: 87-88% against 98%)."""
    if optimizer is None:
        return lambda: _optim.Adam(lr=1e-2)
    first = _optim.get(optimizer)  # validates names and types now
    return lambda: type(first)(**first.get_config())


def autoencoders(model: Sequential, X: Any, *, epochs: int = 10, batch_size: int = 32, optimizer: Any = None,
                 noise: float = 0.0, noise_kind: str = "mask", tied: bool = False, layers: Any = None,
                 seed: int | None = None, verbose: int = 1, callbacks: Any = None,
                 loss: Any = None) -> PretrainResult:
    """Greedy layer-wise autoencoder pre-training of `model`'s hidden Dense layers, in place.

    `noise` corrupts each autoencoder's input in training (a denoising autoencoder): with
    noise_kind="mask" each input is set to 0 with probability `noise` (in [0, 1)); with
    "gaussian" N(0, noise²) is added. `optimizer` (None: Adam(lr=1e-2); a name or an instance,
    copied fresh for each layer), `epochs` and `batch_size` apply to every layer. `loss`: None
    (MSE, or binary cross-entropy where the layer's input lies in [0, 1]), "mse" or
    "binary_crossentropy". `layers` selects hidden Dense layers by model index (default: all).
    X is data as `fit` takes it: a model's `preprocessing` is applied first.
    `seed` makes the run reproducible (default: the model's seed). `callbacks` go to every
    autoencoder's fit (their `model` is that autoencoder's Sequential).
    """
    fn = "autoencoders"
    if not isinstance(model, Sequential):
        raise TypeError(f"{fn}: model must be a gs.Sequential, got {type(model).__name__}")
    epochs = _checks.check_int(epochs, f"{fn}: epochs", 1)
    batch_size = _checks.check_int(batch_size, f"{fn}: batch_size", 1)
    verbose = _checks.check_int(verbose, f"{fn}: verbose", 0)
    noise, noise_kind = check_noise(noise, noise_kind, fn)
    if not isinstance(tied, (bool, np.bool_)):
        raise TypeError(f"{fn}: tied must be a bool, got {type(tied).__name__}")
    if loss is not None:
        reconstruction_loss(loss, np.zeros((1, 1)), False, fn)
    dense = [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]
    hidden = dense[:-1]
    if not hidden:
        raise ValueError(f"{fn}: model has no hidden Dense layer to pre-train: it needs at least two Dense "
                         f"layers (hidden ones and the output layer), it has {len(dense)}")
    chosen = _check_layers(layers, hidden, len(model.layers))
    new_optimizer = _optimizer_factory(optimizer)
    if seed is None:
        seed = model.seed
    rng = np.random.default_rng(None if seed is None else _checks.check_int(seed, f"{fn}: seed", 0))
    X = model._check_X(X, fn)
    bad = _checks.first_nonfinite(X)
    if bad is not None:
        raise ValueError(f"{fn}: X holds NaN or inf (first at row {bad[0]}, column {bad[1]})")
    h = model._network_input(X)  # as fit sees it: the model's preprocessing (Standardize) applied

    result = PretrainResult()
    result.params = {"epochs": epochs, "batch_size": batch_size, "noise": noise, "noise_kind": noise_kind,
                     "tied": bool(tied)}
    done = 0  # model.layers[:done] have been applied to h
    for index in chosen:
        h = _forward(model.layers[done:index], h)
        done = index
        end = next(i for i in dense if i > index)  # the block: the Dense and what follows it up to the next Dense
        block = model.layers[index:end]
        encoder = [_clone(layer, model.dtype) for layer in block]
        # The decoder's initial weights and the training's shuffles and noise all come from `seed`.
        ae = Autoencoder(encoder, tied=bool(tied), dtype=model.dtype, seed=int(rng.integers(0, 2**63 - 1)))
        ae.model.load_state_dict({f"{j}.{k}": v for j, layer in enumerate(block)
                                  for k, v in {**layer.params, **layer.buffers}.items()}, strict=False)
        ae.compile(loss=loss, optimizer=new_optimizer())
        if verbose:
            print(f"pre-training layer {index} ({model.layers[index]!r}) as an autoencoder", file=sys.stderr)
        history = ae.fit(h, epochs=epochs, batch_size=batch_size, noise=noise, noise_kind=noise_kind,
                         callbacks=callbacks, verbose=verbose, seed=int(rng.integers(0, 2**63 - 1)))
        # Keep the encoder: write its trained parameters and buffers back into the model.
        for j, layer in enumerate(block):
            trained = ae.model.layers[j]
            for k, v in {**layer.params, **layer.buffers}.items():
                v[...] = {**trained.params, **trained.buffers}[k]
        result.layers.append(index)
        result.losses.append(list(history.history["loss"]))
        result.final_losses.append(ae.reconstruction_error(h))
        result.loss_names.append(ae.loss.name)
        result.shapes.append((model.layers[index].in_features, model.layers[index].out_features))
        result.autoencoders.append(ae)
    if verbose:
        print(result.table(), flush=True)
    return result


def _forward(layers: list[Layer], h: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The layers' evaluation-mode output for h, in batches."""
    if not layers:
        return h
    return np.ascontiguousarray(eval_forward(layers, h, batch_size))
