"""`gs.Autoencoder`: an encoder and a decoder trained to reconstruct their input (`fit(X)`, no y).

    ae = gs.Autoencoder([gs.Dense(64, 16, init="xavier"), gs.Sigmoid()], seed=0)
    ae.compile(optimizer=gs.Adam(lr=1e-2))          # loss chosen from the data when not given
    ae.fit(X01, epochs=20, noise=0.3)               # a denoising autoencoder: 30% of inputs masked
    codes = ae.encode(X01); X_hat = ae.reconstruct(X01)

The two halves are one `Sequential` (`ae.model`), so training runs on gradstep's whole-step engine
(a decoder is just more layers); only a tied decoder (`TiedDense`, which the engine does not cover)
trains layer by layer. `pretrain.autoencoders` builds one of these per hidden layer of a model.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

import numpy as np

from . import _checks
from . import losses as _losses
from . import optim as _optim
from .layers import activation as _activation
from .layers.base import Layer
from .layers.dense import Dense
from .layers.tied import TiedDense
from .model import History, Sequential

__all__ = ["Autoencoder", "corrupt"]

NOISE_KINDS = ("mask", "gaussian")


def check_noise(noise: Any, noise_kind: Any, fn: str) -> tuple[float, str]:
    """Masking noise is a probability in [0, 1); Gaussian noise is a standard deviation >= 0."""
    if not isinstance(noise_kind, str) or noise_kind not in NOISE_KINDS:
        raise ValueError(f"{fn}: noise_kind must be one of {list(NOISE_KINDS)}, got {noise_kind!r}")
    if noise_kind == "mask":
        noise = _checks.check_float(noise, f"{fn}: noise (the masking probability)", 0.0, 1.0,
                                    max_inclusive=False)
    else:
        noise = _checks.check_float(noise, f"{fn}: noise (the Gaussian noise's standard deviation)", 0.0)
    return noise, noise_kind


def corrupt(x: np.ndarray, noise: float, noise_kind: str, rng: np.random.Generator) -> np.ndarray:
    """The denoising autoencoder's corrupted input: "mask" sets each entry to 0 with probability
    `noise` (no rescaling, as in Vincent et al. 2008); "gaussian" adds N(0, noise²) to each."""
    if noise == 0.0:
        return x
    if noise_kind == "mask":
        return np.where(rng.random(x.shape) < noise, 0, x).astype(x.dtype, copy=False)
    return (x + rng.normal(0.0, noise, size=x.shape)).astype(x.dtype, copy=False)


def _copy_activation(layer: Layer) -> Layer | None:
    """A fresh copy of an activation layer (for the mirrored decoder), None for other layers."""
    if type(layer).__name__ in _activation.__all__ and not layer.has_params:
        return type(layer)(**layer.get_config())
    return None


def mirrored_decoder(encoder_layers: list[Layer], tied: bool) -> list[Layer]:
    """The encoder's Dense layers in reverse, each mapping back to its input (a new Dense, or a
    TiedDense on its weight), with the encoder's activations between them and none at the end.

    Each Dense starts a segment that runs up to the next Dense (its activation, perhaps a Maxout
    that changes the width); the decoder of a segment maps the segment's output back to the
    Dense's input."""
    dense = [i for i, l in enumerate(encoder_layers) if isinstance(l, Dense)]
    if not dense:
        raise ValueError("Autoencoder: encoder_layers must hold at least one Dense layer to mirror "
                         "(or pass decoder_layers)")
    bounds = dense + [len(encoder_layers)]
    decoder: list[Layer] = []
    for k in range(len(dense) - 1, -1, -1):
        enc = encoder_layers[dense[k]]
        if enc.in_features is None:
            raise ValueError("Autoencoder: to mirror the encoder, its Dense layers need their in_features "
                             "(Dense(in_features, out_features)); or pass decoder_layers")
        width = enc.in_features
        for layer in encoder_layers[dense[k]:bounds[k + 1]]:
            width = layer.output_features(width)  # the segment's output width
        if tied:
            if width != enc.out_features:
                raise ValueError(f"Autoencoder: tied=True needs the layers after {enc!r} to keep its "
                                 f"{enc.out_features} outputs, but they output {width}; use tied=False")
            decoder.append(TiedDense(enc, bias=enc.bias))
        else:
            init = enc.init if isinstance(enc.init, str) else "xavier"
            decoder.append(Dense(width, enc.in_features, init=init, dtype=enc.dtype))
        if k > 0:  # the activations of the segment before, between this decoder layer and the next
            for layer in encoder_layers[dense[k - 1] + 1:dense[k]]:
                act = _copy_activation(layer)
                if act is not None:
                    decoder.append(act)
    return decoder


def reconstruction_loss(loss: Any, X: np.ndarray, ends_in_sigmoid: bool, fn: str) -> _losses.Loss:
    """MSE, or binary cross-entropy when X lies in [0, 1] (on logits unless the decoder ends in a
    Sigmoid). `loss` ("mse", "binary_crossentropy"/"bce", or an MSE/BinaryCrossEntropy instance)
    overrides the choice."""
    if loss is None:
        kind = "bce" if X.size and float(X.min()) >= 0.0 and float(X.max()) <= 1.0 else "mse"
    elif isinstance(loss, str) and loss.lower() in ("mse", "bce", "binary_crossentropy"):
        kind = "mse" if loss.lower() == "mse" else "bce"
    elif type(loss) is _losses.MSE:
        kind = "mse"
    elif type(loss) is _losses.BinaryCrossEntropy:
        kind = "bce"
    else:
        raise ValueError(f"{fn}: loss must be None (MSE, or binary cross-entropy for inputs in [0, 1]), "
                         f"'mse', 'binary_crossentropy' or an MSE/BinaryCrossEntropy instance, got {loss!r}")
    if kind == "mse":
        return _losses.MSE()
    if X.size and (float(X.min()) < 0.0 or float(X.max()) > 1.0):
        raise ValueError(f"{fn}: loss binary cross-entropy needs inputs in [0, 1] (they are its targets), "
                         f"got values in [{float(X.min())}, {float(X.max())}]")
    return _losses.BinaryCrossEntropy(from_logits=not ends_in_sigmoid)


def eval_forward(layers: list[Layer], X: np.ndarray, batch_size: int) -> np.ndarray:
    """The layers' evaluation-mode output for X, run batch_size rows at a time."""
    outs = []
    for s in range(0, X.shape[0], batch_size):
        h = X[s:s + batch_size]
        for layer in layers:
            h = layer.forward(h, training=False)
        outs.append(h)
    return np.concatenate(outs, axis=0)


class Autoencoder:
    """An encoder and a decoder trained together to reconstruct the input.

    `decoder_layers=None` mirrors the encoder: its Dense layers in reverse order, each mapping
    back to its input, with the encoder's activations between them and a linear output (logits
    under binary cross-entropy, so `decode`/`reconstruct` apply the sigmoid). `tied=True` makes
    each decoder layer a `TiedDense` on the transposed encoder weight (trained through both).
    """

    def __init__(self, encoder_layers: Iterable[Layer], decoder_layers: Iterable[Layer] | None = None,
                 tied: bool = False, dtype: Any = "float32", seed: int | None = None) -> None:
        fn = "Autoencoder"
        if isinstance(encoder_layers, Layer):
            encoder_layers = [encoder_layers]
        encoder = list(encoder_layers)
        if not encoder:
            raise ValueError(f"{fn}: encoder_layers must hold at least one layer")
        if not isinstance(tied, (bool, np.bool_)):
            raise TypeError(f"{fn}: tied must be a bool, got {type(tied).__name__}")
        if decoder_layers is None:
            decoder = mirrored_decoder(encoder, bool(tied))
        else:
            if tied:
                raise ValueError(f"{fn}: tied=True builds its own decoder (TiedDense layers); pass "
                                 "decoder_layers=None, or put TiedDense layers in decoder_layers yourself")
            decoder = [decoder_layers] if isinstance(decoder_layers, Layer) else list(decoder_layers)
            if not decoder:
                raise ValueError(f"{fn}: decoder_layers must hold at least one layer (or be None)")
        self.tied = bool(tied)
        self.model = Sequential(encoder + decoder, dtype=dtype, seed=seed)
        for i, layer in enumerate(decoder):
            enc = getattr(layer, "encoder", None)
            if isinstance(layer, TiedDense) and not any(enc is l for l in encoder):
                raise ValueError(f"{fn}: decoder_layers[{i}] is tied to a Dense layer that is not in "
                                 "encoder_layers (its weight would get gradients but no updates)")
        self.n_encoder = len(encoder)
        if self.model.out_features is not None and self.model.in_features is not None \
                and self.model.out_features != self.model.in_features:
            raise ValueError(f"{fn}: the decoder must map back to the encoder's {self.model.in_features} "
                             f"input features, but it outputs {self.model.out_features}")
        self._loss_spec: Any = None
        self.optimizer: Any = None
        self.loss: _losses.Loss | None = None

    @property
    def encoder_layers(self) -> list[Layer]:
        return self.model.layers[:self.n_encoder]

    @property
    def decoder_layers(self) -> list[Layer]:
        return self.model.layers[self.n_encoder:]

    # ---- training ----------------------------------------------------------------------------
    def compile(self, loss: Any = None, optimizer: Any = "adam") -> "Autoencoder":
        """`loss=None` picks MSE, or binary cross-entropy when the data given to `fit` lies in
        [0, 1]; "mse" or "binary_crossentropy" (or an instance of either) forces one."""
        if loss is not None:
            reconstruction_loss(loss, np.zeros((1, 1)), False, "Autoencoder.compile")  # validate now
        self._loss_spec = loss
        self.optimizer = _optim.get(optimizer)
        self.loss = None
        return self

    def fit(self, X: Any, epochs: int = 10, batch_size: int = 32, noise: float = 0.0,
            noise_kind: str = "mask", shuffle: bool = True, callbacks: Any = None, verbose: int = 1,
            seed: int | None = None) -> History:
        """Train to reconstruct X from X corrupted by `noise` (drawn afresh for every batch, in
        training only; the target is the clean X). `history.history["loss"]` holds the mean
        training reconstruction loss of each epoch (on corrupted inputs when `noise` > 0)."""
        fn = "Autoencoder.fit"
        if self.optimizer is None:
            raise ValueError(f"{fn}: compile the autoencoder first (ae.compile(optimizer=...))")
        epochs = _checks.check_int(epochs, f"{fn}: epochs", 1)
        batch_size = _checks.check_int(batch_size, f"{fn}: batch_size", 1)
        verbose = _checks.check_int(verbose, f"{fn}: verbose", 0)
        noise, noise_kind = check_noise(noise, noise_kind, fn)
        X = self._check_X(X, fn)
        if self.loss is None:
            ends_in_sigmoid = isinstance(self.model.layers[-1], _activation.Sigmoid)
            self.loss = reconstruction_loss(self._loss_spec, X, ends_in_sigmoid, fn)
            self.model.compile(loss=self.loss, optimizer=self.optimizer)
        seed = self.model._resolve_seed(seed)
        rng = np.random.default_rng(seed)
        callbacks = self.model._check_callbacks(callbacks)
        model = self.model
        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": X.shape[0],
                          "noise": noise, "noise_kind": noise_kind}
        model.history = history
        model.stop_training = False
        n = X.shape[0]
        for cb in callbacks:
            cb.set_model(model)
        for cb in callbacks:
            cb.on_train_begin({})
        try:
            for epoch in range(model.epochs_done, model.epochs_done + epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {})
                model._seed_dropout(rng)
                order = rng.permutation(n) if shuffle else np.arange(n)
                total = 0.0
                for b, start in enumerate(range(0, n, batch_size)):
                    xb = X[order[start:start + batch_size]]
                    value = model.train_step(corrupt(xb, noise, noise_kind, rng), xb)
                    total += value * xb.shape[0]
                    for cb in callbacks:
                        cb.on_batch_end(b, {"loss": value, "size": xb.shape[0]})
                logs = {"loss": total / n, "lr": float(self.optimizer.lr)}
                model.epochs_done += 1
                history.append(epoch, logs)
                if verbose:
                    print(f"epoch {epoch + 1}: reconstruction loss {logs['loss']:.5g}", file=sys.stderr)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if model.stop_training:
                    break
        finally:
            for cb in callbacks:
                cb.on_train_end({})
        return history

    def _check_X(self, X: Any, fn: str) -> np.ndarray:
        X = self.model._check_X(X, fn)
        bad = _checks.first_nonfinite(X)
        if bad is not None:
            raise ValueError(f"{fn}: X holds NaN or inf (first at row {bad[0]}, column {bad[1]})")
        return np.ascontiguousarray(X, dtype=self.model.dtype)

    # ---- use ---------------------------------------------------------------------------------
    def _run(self, layers: list[Layer], X: np.ndarray, batch_size: int) -> np.ndarray:
        return eval_forward(layers, X, batch_size)

    def encode(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """The codes: the encoder's output in evaluation mode."""
        batch_size = _checks.check_int(batch_size, "Autoencoder.encode: batch_size", 1)
        return self._run(self.encoder_layers, self._check_X(X, "Autoencoder.encode"), batch_size)

    def decode(self, H: Any, batch_size: int = 256) -> np.ndarray:
        """The reconstruction from codes H (through the sigmoid when the loss works on logits)."""
        fn = "Autoencoder.decode"
        batch_size = _checks.check_int(batch_size, f"{fn}: batch_size", 1)
        H = _checks.numeric_array(H, f"{fn}: H")
        width = self.decoder_layers[0].input_features()
        if H.ndim != 2 or H.shape[0] < 1 or (width is not None and H.shape[1] != width):
            raise ValueError(f"{fn}: H must be a non-empty 2-D array (samples, {width}), got shape {H.shape}")
        out = self._run(self.decoder_layers, np.ascontiguousarray(H, dtype=self.model.dtype), batch_size)
        if isinstance(self.loss, _losses.BinaryCrossEntropy) and self.loss.from_logits:
            out = (1.0 / (1.0 + np.exp(-out.astype(np.float64)))).astype(out.dtype)
        return out

    def reconstruct(self, X: Any, batch_size: int = 256) -> np.ndarray:
        return self.decode(self.encode(X, batch_size), batch_size)

    def reconstruction_error(self, X: Any, batch_size: int = 256) -> float:
        """The compiled reconstruction loss on clean X (evaluation mode)."""
        if self.loss is None:
            raise ValueError("Autoencoder.reconstruction_error: fit the autoencoder first (the loss is "
                             "chosen from the training data)")
        X = self._check_X(X, "Autoencoder.reconstruction_error")
        return float(self.model.evaluate(X, X, batch_size=batch_size)["loss"])

    # ---- model files -------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write one .safetensors model file (`Autoencoder.load` reads it back; `gs.load` reads it
        as the Sequential of both halves). Tied autoencoders cannot be saved yet: a TiedDense
        would have to name its encoder inside the file."""
        if any(isinstance(l, TiedDense) for l in self.model.layers):
            raise NotImplementedError("Autoencoder.save: a tied autoencoder (TiedDense) cannot be saved yet; "
                                      "save its encoder's weights (ae.encoder_layers) or use tied=False")
        meta = dict(getattr(self.model, "metadata", None) or {})
        meta["autoencoder"] = {"n_encoder": self.n_encoder}
        self.model.metadata = meta
        self.model.save(path)

    @classmethod
    def load(cls, path: Any) -> "Autoencoder":
        """An autoencoder written by `save`, with its weights, loss and optimizer state."""
        from .io import load
        model = load(path)
        info = (getattr(model, "metadata", None) or {}).get("autoencoder")
        if not isinstance(info, dict) or not isinstance(info.get("n_encoder"), int) \
                or not 1 <= info["n_encoder"] < len(model.layers):
            raise ValueError(f"Autoencoder.load: {str(path)!r} is a gradstep model file but not an "
                             "autoencoder's (no valid 'autoencoder' entry in its metadata)")
        ae = cls.__new__(cls)
        ae.model, ae.n_encoder, ae.tied = model, info["n_encoder"], False
        ae._loss_spec, ae.loss, ae.optimizer = model.loss, model.loss, model.optimizer
        return ae

    def __repr__(self) -> str:
        enc = ", ".join(repr(l) for l in self.encoder_layers)
        dec = ", ".join(repr(l) for l in self.decoder_layers)
        return f"Autoencoder(encoder=[{enc}], decoder=[{dec}])"
