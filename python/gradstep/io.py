"""Model files: one `.safetensors` file holding the weights, the buffers, the optimizer state and
the architecture (JSON in the file's metadata). No pickle anywhere: loading a file never runs code.

Tensor names: "model.<i>.<name>" (parameters and buffers, as in `state_dict`), and
"optim.<param>.<key>" (optimizer state), "prep.<key>" (input standardization, when set). Metadata key "gradstep" holds a JSON document:
{"format": 1, "model": Sequential.get_config(), "compile": {...} or null, "epochs_done": int,
 "fit_seed": int or null, "optimizer": {hyper, step, ...} without its arrays,
 "classes": null or {"kind": "int"|"float"|"bool"|"str", "values": [...]} (model.classes_),
 "feature_names": null or [str, ...] (model.feature_names_in_), "metadata": {...} (model.metadata)}.
The last three keys are optional (files written before they existed load with their defaults).

Files are written atomically (a temporary file renamed over the target) with the permissions an
ordinary `open(path, "w")` would give: those of the file replaced, else 0666 minus the umask.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import CustomMetric

FORMAT_VERSION = 1
_MAGIC_KEY = "gradstep"


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Separate an optimizer state_dict into JSON-able metadata and named arrays."""
    arrays: dict[str, np.ndarray] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, np.ndarray):
            arrays[path] = np.ascontiguousarray(obj)
            return {"__array__": path}
        if isinstance(obj, dict):
            return {str(k): walk(v, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, (np.integer,)):
            return int(obj)
        if isinstance(obj, (np.floating,)):
            return float(obj)
        return obj

    return walk(state, ""), arrays


def _join_optimizer_state(meta: Any, arrays: dict[str, np.ndarray], used: set[str]) -> Any:
    if isinstance(meta, dict):
        if set(meta) == {"__array__"}:
            used.add(meta["__array__"])
            return arrays[meta["__array__"]]
        return {k: _join_optimizer_state(v, arrays, used) for k, v in meta.items()}
    if isinstance(meta, list):
        return [_join_optimizer_state(v, arrays, used) for v in meta]
    return meta


def save(model: Any, path: Any) -> None:
    """Write `model` to `path` atomically: a crash mid-write leaves any earlier file intact."""
    from safetensors.numpy import save_file

    path = Path(os.fspath(path))
    tensors = {f"model.{k}": np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    if model.preprocessing is not None:
        for k, v in model.preprocessing.state().items():
            tensors[f"prep.{k}"] = np.ascontiguousarray(v, dtype=np.float64)
    compiled = None
    optimizer_meta = None
    if model.loss is not None and model.optimizer is not None:
        compiled = {
            "loss": {"class": type(model.loss).__name__, "config": model.loss.get_config()},
            "optimizer": {"class": type(model.optimizer).__name__, "config": model.optimizer.get_config()},
            # a callable metric (metrics.CustomMetric) is code, not data: the file keeps the built-in ones
            "metrics": [str(m) for m in model.metrics if not isinstance(m, CustomMetric)],
        }
        optimizer_meta, arrays = _split_optimizer_state(model.optimizer.state_dict())
        tensors.update({f"optim.{k}": v for k, v in arrays.items()})
    meta = {"format": FORMAT_VERSION, "model": model.get_config(), "compile": compiled,
            "optimizer": optimizer_meta, "epochs_done": int(model.epochs_done),
            "fit_seed": model._fit_seed, **_data_meta(model)}
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"save: directory {str(directory)!r} does not exist")
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_MAGIC_KEY: json.dumps(meta)})
        os.chmod(tmp, mode)  # mkstemp made it 0600; the model file gets an ordinary file's mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    try:  # Linux states it without changing it (no window in which another thread sees umask 0)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """What `open(path, "w")` would leave: the replaced file's permissions, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _data_meta(model: Any) -> dict[str, Any]:
    """classes_, feature_names_in_ and metadata as JSON (checked: a bad value fails the save)."""
    from .preprocessing import check_classes

    out: dict[str, Any] = {"classes": None, "feature_names": None, "metadata": {}}
    if getattr(model, "classes_", None) is not None:
        c = check_classes(model.classes_, "save: model.classes_")
        kind = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str"}[c.dtype.kind]
        out["classes"] = {"kind": kind, "values": c.tolist()}
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        if model.in_features is not None and len(names) != model.in_features:
            raise ValueError(f"save: model.feature_names_in_ names {len(names)} features, the model takes "
                             f"{model.in_features}")
        out["feature_names"] = names
    metadata = getattr(model, "metadata", None) or {}
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: model.metadata must be JSON-serializable: {e}") from None
    out["metadata"] = metadata
    return out


def _load_data_meta(model: Any, meta: dict[str, Any]) -> None:
    """The inverse of _data_meta; raises ValueError on values a file cannot hold."""
    from .preprocessing import check_classes

    classes = meta.get("classes")
    if classes is not None:
        dtype = {"bool": bool, "int": np.int64, "float": np.float64, "str": str}[classes["kind"]]
        c = check_classes(np.asarray(classes["values"], dtype=dtype), "classes")
        n_out = model.out_features
        if n_out is not None and len(c) != n_out and not (n_out == 1 and len(c) == 2):
            raise ValueError(f"{len(c)} classes for a model with {n_out} outputs")
        model.classes_ = c
    names = meta.get("feature_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or (
                model.in_features is not None and len(names) != model.in_features):
            raise ValueError(f"feature names {names!r} do not name the model's {model.in_features} inputs")
        model.feature_names_in_ = names
    metadata = meta.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    model.metadata = metadata


def _fail(path: Path, why: str) -> ValueError:
    return ValueError(f"load: {str(path)!r} {why}")


def load(path: Any):
    """Rebuild the model saved at `path` (architecture, weights, buffers, optimizer state).

    Raises FileNotFoundError for a missing file and ValueError for a file that is truncated, not a
    gradstep model file, or whose tensors do not match the architecture it describes."""
    from safetensors import SafetensorError, safe_open

    from . import losses as _losses
    from . import optim as _optim
    from .layers import LAYER_REGISTRY
    from .model import Sequential

    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"load: no model file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise _fail(path, f"is not a readable safetensors file (truncated or foreign?): {e}") from None
    if _MAGIC_KEY not in metadata:
        raise _fail(path, "is a safetensors file but not a gradstep model file (no 'gradstep' metadata)")
    try:
        meta = json.loads(metadata[_MAGIC_KEY])
    except json.JSONDecodeError as e:
        raise _fail(path, f"has corrupt gradstep metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise _fail(path, f"has an unsupported format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                          f" (this gradstep reads format {FORMAT_VERSION})")
    try:
        cfg = meta["model"]
        layers = []
        for i, spec in enumerate(cfg["layers"]):
            cls = LAYER_REGISTRY.get(spec["class"])
            if cls is None:
                raise ValueError(f"layer {i} has unknown class {spec['class']!r}")
            layers.append(cls(**spec["config"]))
        model = Sequential(layers, dtype=cfg["dtype"], seed=None, input_shape=cfg.get("input_shape"))
        model.seed = cfg.get("seed")
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(path, f"describes an invalid architecture: {e}") from None

    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model._state_views()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise _fail(path, f"does not match its architecture: missing tensors {missing}, unexpected tensors {extra}")
    for key, view in expected.items():
        t = weights[key]
        if t.shape != view.shape or t.dtype != view.dtype:
            raise _fail(path, f"tensor {key!r} has shape {t.shape} and dtype {t.dtype}; the architecture "
                              f"needs shape {view.shape} and dtype {view.dtype}")
        if not np.all(np.isfinite(t)):
            raise _fail(path, f"tensor {key!r} holds NaN or inf")
    model.load_state_dict(weights)

    optim_arrays = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
    prep = {k[len("prep."):]: v for k, v in tensors.items() if k.startswith("prep.")}
    if prep:
        if set(prep) != {"mean", "scale"} or any(v.shape != model.input_shape for v in prep.values()):
            raise _fail(path, f"holds an invalid input standardization {sorted(prep)}")
        from .preprocessing import Standardize
        try:
            model.preprocessing = Standardize(prep["mean"], prep["scale"])
        except ValueError as e:
            raise _fail(path, f"holds an invalid input standardization: {e}") from None
    unknown = sorted(k for k in tensors if not k.startswith(("model.", "optim.", "prep.")))
    if unknown:
        raise _fail(path, f"holds unexpected tensors {unknown}")
    if meta.get("compile"):
        try:
            comp = meta["compile"]
            loss_classes = {cls.__name__: cls for cls in _losses.LOSSES.values()}
            loss = loss_classes[comp["loss"]["class"]](**comp["loss"]["config"])
            opt = _optim.OPTIMIZERS_BY_CLASS[comp["optimizer"]["class"]](**comp["optimizer"]["config"])
            model.compile(loss=loss, optimizer=opt, metrics=comp["metrics"])
            if meta.get("optimizer") is not None:
                used: set[str] = set()
                opt_state = _join_optimizer_state(meta["optimizer"], optim_arrays, used)
                if set(optim_arrays) - used:
                    raise ValueError(f"unreferenced optimizer tensors {sorted(set(optim_arrays) - used)}")
                model.optimizer.load_state_dict(opt_state, model.parameters())
        except (KeyError, TypeError, ValueError) as e:
            raise _fail(path, f"has an invalid training configuration or optimizer state: {e!r}") from None
    elif optim_arrays:
        raise _fail(path, "holds optimizer tensors but no training configuration")
    try:
        _load_data_meta(model, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(path, f"has invalid class, feature-name or metadata entries: {e}") from None
    model.epochs_done = int(meta.get("epochs_done", 0))
    model._fit_seed = meta.get("fit_seed")
    return model


def to_bytes(model: Any) -> bytes:
    """The model file's bytes (what `save` writes): how a Sequential pickles."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.safetensors")
        save(model, path)
        with open(path, "rb") as f:
            return f.read()


def from_bytes(data: bytes):
    """The model whose file bytes `to_bytes` gave (validated as `load` validates a file)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"from_bytes: data must be bytes, got {type(data).__name__}")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        return load(path)
