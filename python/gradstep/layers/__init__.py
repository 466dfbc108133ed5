"""Layers: every one follows the protocol in `gradstep.layers.base`."""
from __future__ import annotations

from .base import LAYER_REGISTRY, OP_LAYERS, Layer, register
from . import activation, batchnorm, conv, dense, dropout, maxout, pool, tied
from .activation import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .maxout import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .tied import *  # noqa: F401,F403

__all__ = ["Layer", "LAYER_REGISTRY", "register"]
__all__ += dense.__all__ + activation.__all__ + maxout.__all__ + batchnorm.__all__ + dropout.__all__
__all__ += conv.__all__ + pool.__all__ + tied.__all__


def check_op_pairing() -> None:
    """Every C++ op kind has exactly one layer class and every layer class names a C++ op: the
    pairing is derived from the two registries (C++ GS_REGISTER_OP, Python `op_kind`), never
    kept by hand. Raises ImportError naming what is unpaired."""
    from .. import _core
    ops, classes = set(_core.op_kinds()), set(OP_LAYERS)
    if ops != classes:
        raise ImportError(f"gradstep: C++ ops without a layer class: {sorted(ops - classes)}; layer "
                          f"classes naming no C++ op: {sorted(classes - ops)}")
