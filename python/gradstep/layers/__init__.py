"""Layers: every one follows the protocol in `gradstep.layers.base`."""
from __future__ import annotations

from .base import LAYER_REGISTRY, Layer, register
from . import activation, batchnorm, conv, dense, dropout, maxout, pool
from .activation import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .maxout import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403

__all__ = ["Layer", "LAYER_REGISTRY", "register"]
__all__ += dense.__all__ + activation.__all__ + maxout.__all__ + batchnorm.__all__ + dropout.__all__
__all__ += conv.__all__ + pool.__all__
