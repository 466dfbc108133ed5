"""Model files: one `.safetensors` file holding the weights, the buffers, the optimizer state and
the architecture (JSON in the file's metadata). No pickle anywhere: loading a file never runs code.

Tensor names: "model.<i>.<name>" (parameters and buffers, as in `state_dict`), and
"optim.<param>.<key>" (optimizer state), "prep.<key>" (input standardization, when set). Metadata key "gradstep" holds a JSON document:
{"format": 1, "model": Sequential.get_config(), "compile": {...} or null, "epochs_done": int,
 "fit_seed": int or null, "optimizer": {hyper, step, ...} without its arrays,
 "classes": null or {"kind": "int"|"float"|"bool"|"str", "values": [...]} (model.classes_),
 "feature_names": null or [str, ...] (model.feature_names_in_), "metadata": {...} (model.metadata)}.
The last three keys are optional (files written before they existed load with their defaults).

Loading is a pipeline that spends no memory on a file before it has been checked:
  1. the safetensors header: its length against the file's size, every tensor's dtype, shape and
     byte range against the data that is really there (`_read_safetensors`);
  2. the gradstep metadata, and layers built *shapes only* (no storage, no initial values drawn);
  3. the validation pass, `_VALIDATIONS`: one function per concern (tensor names, weights and
     buffers, preprocessing, optimizer state, counters), each raising ValueError. A new kind of
     content in the file gets its own function in that list;
  4. building the model (zero storage, then the file's values), then a probe: a model that
     loads predicts finite numbers on a standard-normal batch, with a finite loss.

Saving writes a temporary file beside the target, named after it and after the writing process
("<name>.gradstep-tmp.<pid>.<random>"), then renames it over the target: a crash mid-write leaves
any earlier file intact. The file gets the permissions an ordinary `open(path, "w")` would give:
those of the file replaced, else 0666 minus the umask. A later save or load of the same target removes the temporaries whose
writing process no longer exists (and only those: never another process's file in progress).
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .metrics import CustomMetric

FORMAT_VERSION = 1
_MAGIC_KEY = "gradstep"
_TMP_INFIX = ".gradstep-tmp."
_MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
# safetensors dtype names -> numpy dtypes this reader accepts (the others are refused).
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
           "I32": np.dtype("<i4"), "F16": np.dtype("<f2"), "U8": np.dtype("u1"),
           "I8": np.dtype("i1"), "BOOL": np.dtype("?")}
_MAX_COUNTER = 2**53  # epochs and steps: any real run is far below; JSON floats stay exact
_MAX_SEED = 2**64


# ---- saving ---------------------------------------------------------------------------------------

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
            key = meta["__array__"]
            if not isinstance(key, str) or key not in arrays:
                raise ValueError(f"the optimizer state refers to a missing tensor {key!r}")
            used.add(key)
            return arrays[key]
        return {k: _join_optimizer_state(v, arrays, used) for k, v in meta.items()}
    if isinstance(meta, list):
        return [_join_optimizer_state(v, arrays, used) for v in meta]
    return meta


def _contents(model: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and the metadata of `model`'s file."""
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
    return tensors, {_MAGIC_KEY: json.dumps(meta)}


def to_bytes(model: Any) -> bytes:
    """The model file's bytes (what `save` writes): how a Sequential pickles."""
    from safetensors.numpy import save as _serialize

    tensors, metadata = _contents(model)
    return _serialize(tensors, metadata=metadata)


def save(model: Any, path: Any) -> None:
    """Write `model` to `path` atomically: a crash mid-write leaves any earlier file intact."""
    from safetensors.numpy import save_file

    path = Path(os.fspath(path))
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"save: directory {str(directory)!r} does not exist")
    tensors, metadata = _contents(model)
    mode = _new_file_mode(path)
    _remove_stale_temporaries(path)
    tmp = directory / f"{path.name}{_TMP_INFIX}{os.getpid()}.{secrets.token_hex(4)}"
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


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


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or an unreadable number): leave its file alone
    return True


def _remove_stale_temporaries(path: Path) -> list[str]:
    """Remove "<name>.gradstep-tmp.<pid>.<random>" files beside `path` whose writer is gone."""
    directory = path.parent if str(path.parent) else Path(".")
    prefix = path.name + _TMP_INFIX
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text, _, token = entry.name[len(prefix):].partition(".")
        if not pid_text.isdigit() or not token or int(pid_text) == os.getpid():
            continue  # not ours by name, or this process's own save in progress
        if not _pid_alive(int(pid_text)):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
    return removed


# ---- loading --------------------------------------------------------------------------------------

class _Invalid(ValueError):
    """A reason the file is refused (turned into `load: '<path>' <reason>`)."""


def load(path: Any):
    """Rebuild the model saved at `path` (architecture, weights, buffers, optimizer state).

    Raises FileNotFoundError for a missing file and ValueError for a file that is truncated, not a
    gradstep model file, or whose contents are not a valid model: tensors that do not match the
    architecture, NaN/inf anywhere, negative variances or squared-gradient averages, optimizer
    step counts that disagree, invalid counters or seeds (the module docstring has the pipeline)."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"load: no model file at {str(path)!r}")
    _remove_stale_temporaries(path)
    with open(path, "rb") as f:
        data = f.read()
    return _load_bytes(data, repr(str(path)))


def from_bytes(data: bytes):
    """The model whose file bytes `to_bytes` gave (validated as `load` validates a file)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"from_bytes: data must be bytes, got {type(data).__name__}")
    return _load_bytes(bytes(data), "(bytes)")


def _load_bytes(data: bytes, where: str):
    try:
        meta, tensors = _read_safetensors(data)
        plan = _plan(meta)
        for check in _VALIDATIONS:
            check(plan, tensors)
        model = _build(plan, tensors)
        _probe(model)
        if model.loss is not None:
            _probe_training(_build(_plan(meta), tensors))
    except _Invalid as e:
        raise ValueError(f"load: {where} {e}") from None
    return model


def _read_safetensors(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The gradstep metadata and the tensors, after checking the header against the file: its
    length, and every tensor's dtype, shape and byte range (nothing is allocated on a claim)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as _deserialize

    bad = "is not a readable safetensors file (truncated or foreign?): "
    if len(data) < 8:
        raise _Invalid(bad + f"{len(data)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > _MAX_HEADER_BYTES:
        raise _Invalid(bad + f"its header claims {n} bytes, but the file has {len(data) - 8} after "
                             f"the length field")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError) as e:
        raise _Invalid(bad + f"the header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise _Invalid(bad + "the header is not a JSON object")
    body = len(data) - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _Invalid(bad + f"tensor {name!r} has a malformed entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise _Invalid(f"holds tensor {name!r} of dtype {dtype!r}, which no gradstep model uses")
        if (not isinstance(shape, list) or len(shape) > 8
                or any(type(s) is not int or s < 0 for s in shape)):
            raise _Invalid(bad + f"tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or any(type(o) is not int for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= body):
            raise _Invalid(bad + f"tensor {name!r} has byte range {offsets!r} outside the "
                                 f"{body}-byte data section")
        if math.prod(shape) * _DTYPES[dtype].itemsize != offsets[1] - offsets[0]:
            raise _Invalid(bad + f"tensor {name!r} of shape {shape} and dtype {dtype} does not fill "
                                 f"its byte range {offsets}")
        spans.append(tuple(offsets))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise _Invalid(bad + "two tensors share bytes")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or _MAGIC_KEY not in metadata:
        raise _Invalid("is a safetensors file but not a gradstep model file (no 'gradstep' metadata)")
    try:
        meta = json.loads(metadata[_MAGIC_KEY])
    except (TypeError, ValueError, RecursionError) as e:
        raise _Invalid(f"has corrupt gradstep metadata: {type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise _Invalid(f"has an unsupported format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                       f" (this gradstep reads format {FORMAT_VERSION})")
    try:
        tensors = _deserialize(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise _Invalid(bad + str(e)) from None
    return meta, tensors


class _Plan:
    """What the metadata describes, before any storage exists: the model with its layers built
    shapes-only (sizes inferred, no arena), and the shape every model tensor must have."""

    def __init__(self, meta: dict, model: Any) -> None:
        self.meta = meta
        self.model = model
        self.dtype = model.dtype
        layers = model.layers
        self.shapes = {f"{i}.{name}": tuple(shape) for i, layer in enumerate(layers)
                       for name, shape in {**layer._param_shapes(), **layer._buffer_shapes()}.items()}
        self.params = {f"{i}.{name}": tuple(shape) for i, layer in enumerate(layers)
                       for name, shape in layer._param_shapes().items()}
        self.input_shape = model.input_shape


_CONFIG_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError)


def _plan(meta: dict) -> _Plan:
    from .layers import LAYER_REGISTRY
    from .layers.base import shapes_only
    from .model import Sequential

    try:
        cfg = meta["model"]
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list) or not cfg["layers"]:
            raise ValueError("'model' must hold a non-empty list of layers")
        shape = cfg.get("input_shape")
        if shape is not None and (not isinstance(shape, list) or not 1 <= len(shape) <= 3 or any(
                type(d) is not int or not 1 <= d < 2**31 for d in shape)):
            raise ValueError(f"input_shape must be null or 1 to 3 sizes in [1, 2**31), got {shape!r}")
        seed = cfg.get("seed")
        if seed is not None and (type(seed) is not int or not 0 <= seed < _MAX_SEED):
            raise ValueError(f"seed must be null or an integer in [0, 2**64), got {seed!r}")
        layers = []
        with shapes_only():
            for i, spec in enumerate(cfg["layers"]):
                if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
                    raise ValueError(f"layer {i} is not a {{'class', 'config'}} object")
                cls = LAYER_REGISTRY.get(spec.get("class")) if isinstance(spec.get("class"), str) else None
                if cls is None:
                    raise ValueError(f"layer {i} has unknown class {spec.get('class')!r}")
                layers.append(cls(**spec["config"]))
            model = Sequential(layers, dtype=cfg["dtype"], seed=None, input_shape=cfg.get("input_shape"))
        if any(l.has_params and not l._param_shapes() for l in model.layers):
            raise ValueError("a layer's sizes are not determined (no input_shape)")
        model.seed = seed
    except _CONFIG_ERRORS as e:
        raise _Invalid(f"describes an invalid architecture: {e}") from None
    return _Plan(meta, model)


# ---- the validation pass: each check raises _Invalid; all run before anything is built ----------

def _check_tensor_names(plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    unknown = sorted(k for k in tensors if not k.startswith(("model.", "optim.", "prep.")))
    if unknown:
        raise _Invalid(f"holds unexpected tensors {unknown}")
    weights = {k[len("model."):] for k in tensors if k.startswith("model.")}
    missing, extra = sorted(set(plan.shapes) - weights), sorted(weights - set(plan.shapes))
    if missing or extra:
        raise _Invalid(f"does not match its architecture: missing tensors {missing}, unexpected tensors {extra}")


def _check_weights(plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    for key, shape in plan.shapes.items():
        t = tensors[f"model.{key}"]
        if t.shape != shape or t.dtype != plan.dtype:
            raise _Invalid(f"tensor {key!r} has shape {t.shape} and dtype {t.dtype}; the architecture "
                           f"needs shape {shape} and dtype {plan.dtype}")
        if not np.all(np.isfinite(t)):
            raise _Invalid(f"tensor {key!r} holds NaN or inf")
        if key.endswith(".running_var"):
            if t.size and np.min(t) < 0:
                raise _Invalid(f"tensor {key!r} holds a negative variance")
        else:
            _check_magnitude(t, f"tensor {key!r}")


def _check_magnitude(t: np.ndarray, what: str) -> None:
    """A value whose square overflows its dtype (above 1.8e19 in float32) is no trained weight
    (a flipped exponent bit makes one): the first product or update with it gives inf/NaN."""
    if t.size and t.dtype.kind == "f":
        limit = math.sqrt(float(np.finfo(t.dtype).max))
        biggest = float(np.max(np.abs(t)))
        if biggest > limit:
            raise _Invalid(f"{what} holds a value of magnitude {biggest:.3g}, beyond any trained "
                           f"model's (its square overflows {t.dtype})")


def _check_preprocessing(plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    prep = {k[len("prep."):]: v for k, v in tensors.items() if k.startswith("prep.")}
    if not prep:
        return
    if set(prep) != {"mean", "scale"} or any(v.shape != plan.input_shape for v in prep.values()):
        raise _Invalid(f"holds an invalid input standardization {sorted(prep)} (needs 'mean' and "
                       f"'scale' of shape {plan.input_shape})")
    for k, v in prep.items():
        if v.dtype.kind != "f" or not np.all(np.isfinite(v)):
            raise _Invalid(f"holds an input standardization whose {k!r} is not finite floats")
    if np.any(prep["scale"] <= 0):
        raise _Invalid("holds an input standardization with a scale <= 0")
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        _check_magnitude(prep["mean"].astype(plan.dtype), "the input standardization's mean")
        _check_magnitude((1.0 / prep["scale"]).astype(plan.dtype), "the input standardization's 1/scale")


def _counter(value: Any, what: str, minimum: int, maximum: int = _MAX_COUNTER) -> int:
    if type(value) is not int or not minimum <= value <= maximum:
        raise _Invalid(f"has an invalid {what} {value!r} (an integer in [{minimum}, {maximum}])")
    return value


def _check_counters(plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    meta = plan.meta
    _counter(meta.get("epochs_done", 0), "epochs_done", 0)
    if meta.get("fit_seed") is not None:
        _counter(meta["fit_seed"], "fit_seed", 0, _MAX_SEED - 1)


def _check_optimizer(plan: _Plan, tensors: dict[str, np.ndarray]) -> None:
    """The training configuration and the optimizer state: structure, shapes, magnitudes and step
    counts here; finite values and non-negative averages of squares in
    Optimizer.load_state_dict (which runs, before anything is written, in _build)."""
    arrays = [k for k in tensors if k.startswith("optim.")]
    if not plan.meta.get("compile"):
        if arrays or plan.meta.get("optimizer") is not None:
            raise _Invalid("holds optimizer state but no training configuration")
        return
    _, optimizer, _, state = _training_objects(plan.meta, tensors)
    if state is None:
        return
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise _Invalid("has an invalid optimizer state (no 'state' object)")
    entries = state["state"]
    if entries and set(entries) != set(plan.params):
        raise _Invalid(f"has optimizer state for {sorted(entries)}, but the model's parameters are "
                       f"{sorted(plan.params)}")
    steps = set()
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise _Invalid(f"has an invalid optimizer state entry {name!r}")
        steps.add(_counter(entry.get("step"), f"optimizer step count of {name!r}", 1))
        for bname, arr in entry.items():
            if bname == "step":
                continue
            if not isinstance(arr, np.ndarray) or arr.shape != plan.params[name]:
                raise _Invalid(f"has optimizer state {name!r}[{bname!r}] that is not an array of "
                               f"the parameter's shape {plan.params[name]}")
            if bname not in optimizer._nonnegative_buffers:
                _check_magnitude(arr, f"optimizer state {name!r}[{bname!r}]")
    # A model's parameters are updated together: one step count (the bias corrections use it).
    if len(steps) > 1:
        raise _Invalid(f"has optimizer step counts that disagree: {sorted(steps)}")
    iterations = _counter(state.get("step", 0), "optimizer step count", 0)
    if steps and iterations < max(steps):
        raise _Invalid(f"has an optimizer that made {iterations} steps but a parameter updated "
                       f"{max(steps)} times")


def _training_objects(meta: dict, tensors: dict[str, np.ndarray]) -> tuple:
    """Fresh (loss, optimizer, metrics, optimizer state or None) from a compiled model's file."""
    from . import losses as _losses
    from . import optim as _optim

    arrays = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
    comp = meta["compile"]
    try:
        if not isinstance(comp, dict):
            raise TypeError("'compile' must be an object")
        loss_classes = {cls.__name__: cls for cls in _losses.LOSSES.values()}
        loss_cls = loss_classes.get(comp["loss"]["class"])
        opt_cls = _optim.OPTIMIZERS_BY_CLASS.get(comp["optimizer"]["class"])
        if loss_cls is None or opt_cls is None:
            raise ValueError(f"unknown loss {comp['loss']['class']!r} or optimizer {comp['optimizer']['class']!r}")
        loss = loss_cls(**comp["loss"]["config"])
        optimizer = opt_cls(**comp["optimizer"]["config"])
        metrics = comp["metrics"]
        used: set[str] = set()
        state = None
        if meta.get("optimizer") is not None:
            state = _join_optimizer_state(meta["optimizer"], arrays, used)
        if set(arrays) - used:
            raise ValueError(f"unreferenced optimizer tensors {sorted(set(arrays) - used)}")
    except (*_CONFIG_ERRORS, RecursionError) as e:
        raise _Invalid(f"has an invalid training configuration or optimizer state: {e!r}") from None
    return loss, optimizer, metrics, state


_VALIDATIONS: list[Callable[[_Plan, dict], None]] = [
    _check_tensor_names, _check_weights, _check_preprocessing, _check_counters, _check_optimizer,
]


def _build(plan: _Plan, tensors: dict[str, np.ndarray]):
    """The model, from a plan the validation pass accepted: zero storage, then the file's values."""
    from .preprocessing import Standardize

    model = plan.model
    try:
        model._build_arena()
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        prep = {k[len("prep."):]: v for k, v in tensors.items() if k.startswith("prep.")}
        if prep:
            model.preprocessing = Standardize(prep["mean"], prep["scale"])
        if plan.meta.get("compile"):
            loss, optimizer, metrics, state = _training_objects(plan.meta, tensors)
            model.compile(loss=loss, optimizer=optimizer, metrics=metrics)
            if state is not None:
                model.optimizer.load_state_dict(state, model.parameters())
    except _CONFIG_ERRORS as e:
        raise _Invalid(f"has an invalid training configuration or optimizer state: {e}") from None
    try:
        _load_data_meta(model, plan.meta)
    except _CONFIG_ERRORS as e:
        raise _Invalid(f"has invalid class, feature-name or metadata entries: {e}") from None
    model.epochs_done = plan.meta.get("epochs_done", 0)
    model._fit_seed = plan.meta.get("fit_seed")
    return model


def _probe_batch(model: Any) -> np.ndarray:
    shape = tuple(model.input_shape) if model.input_shape is not None else (3,)
    X = np.random.default_rng(0).standard_normal((8,) + shape).astype(model.dtype)
    X[0] = 0.0
    return X


_PROBE_STEPS = 8  # an update that multiplies weights by >= 1e5 per step overflows float32 within them


def _probe_training(model: Any) -> None:
    """A compiled model that loads also trains: a few steps on the probe batch (on a second copy
    of the model, so the one returned is untouched) keep the loss and the weights finite."""
    X = _probe_batch(model)
    target = (np.zeros(len(X), np.int64) if model._labels_loss() else
              np.full((len(X), model.out_features or 1), 0.5, model.dtype))
    for layer in model.layers:
        if hasattr(layer, "_rng"):
            layer._rng = np.random.default_rng(0)  # the library's generator stays untouched
    with np.errstate(all="ignore"):
        try:
            for _ in range(_PROBE_STEPS):
                value = model.train_step(X, target)
                if not np.isfinite(value):
                    raise _Invalid("holds a model whose training loss on a standard-normal batch is "
                                   "not finite (weights, optimizer state or hyperparameters)")
        except (ValueError, TypeError) as e:
            if isinstance(e, _Invalid):
                raise
            return  # a loss that does not take this probe's targets: no verdict
        for key, value in model._state_views().items():
            if not np.all(np.isfinite(value)):
                raise _Invalid(f"holds a model whose training makes {key!r} non-finite within "
                               f"{_PROBE_STEPS} steps on a standard-normal batch")


def _probe(model: Any) -> None:
    """A model that loads predicts finite numbers: outputs (and the compiled loss) on a fixed
    standard-normal batch must be finite. Finite but absurd weights (a flipped exponent bit)
    overflow here instead of in the user's first prediction."""
    X = _probe_batch(model)
    with np.errstate(all="ignore"):
        out = model.predict(X)  # with the stored preprocessing, as a user's prediction
        if not np.all(np.isfinite(out)):
            raise _Invalid("holds weights that give non-finite outputs on a standard-normal input")
        if model.loss is not None:
            labels = model._labels_loss()
            target = (np.zeros(len(X), np.int64) if labels else
                      np.zeros(out.shape, model.dtype) + 0.5)
            try:
                value = model.loss.forward(out, target)
            except ValueError:
                return  # outputs this loss does not take (e.g. BCE on unbounded outputs): no verdict
            if not np.isfinite(value):
                raise _Invalid("holds weights whose loss on a standard-normal input is not finite")
