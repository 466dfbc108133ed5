"""gradstep: train neural networks the way the classic deep-learning courses teach it, on a C++ core.

    import gradstep as gs
    model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 10)])
"""
from __future__ import annotations

import os

# libgomp reads its environment once, when it loads. gradstep runs OpenBLAS single-threaded inside
# its own OpenMP blocks (see src/core/gemm.cpp), so OpenMP is the only thread pool and the ~100x
# OpenBLAS-vs-libgomp spin contention of BUILD-NOTES.md cannot happen. What remains is how long
# an idle OpenMP worker spins before it sleeps: libgomp's default (300000 spins, about a
# millisecond) wastes a core when the machine is loaded, and no spin at all (passive) pays a
# futex wake-up per parallel region, which made a 20-layer step 1.5x slower on 2 cores. A short
# spin measured best on both counts (bench/README.md). The user's own settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

# OpenBLAS starts one server thread per core when it loads, and they spin ~0.1 s before sleeping
# (a fifth of a short run's CPU time, on the core gradstep's second thread wants). gradstep never
# uses them (OpenBLAS runs single-threaded in its blocks), so its copy loads with one thread; the
# variable is put back at once, for numpy's BLAS and the user's subprocesses.
_blas_threads = os.environ.get("OPENBLAS_NUM_THREADS")
os.environ["OPENBLAS_NUM_THREADS"] = "1"
try:
    import scipy_openblas32 as _scipy_openblas32  # noqa: E402,F401  preload the BLAS (editable layouts)

    from . import _core  # noqa: E402,F401  (fails early, with the build's own error, when unbuilt)
finally:
    if _blas_threads is None:
        del os.environ["OPENBLAS_NUM_THREADS"]
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = _blas_threads
    del _blas_threads
from ._random import seed  # noqa: E402
from ._threads import get_num_threads, set_num_threads  # noqa: E402
from ._arena import Parameter  # noqa: E402
from . import init  # noqa: E402
from . import layers  # noqa: E402

layers.check_op_pairing()
from .layers import *  # noqa: E402,F401,F403
from . import losses, optim, schedules, callbacks, datasets  # noqa: E402
from .losses import *  # noqa: E402,F401,F403
from .optim import *  # noqa: E402,F401,F403
from . import diagnostics, distributed, metrics, plot, search  # noqa: E402
from . import preprocessing  # noqa: E402
from .preprocessing import Standardize  # noqa: E402
from .model import History, Sequential  # noqa: E402
from .io import load  # noqa: E402
from . import cuda  # noqa: E402  (never imports the CUDA module itself: see gradstep.cuda)
from .cuda import CudaError  # noqa: E402
from .autoencoder import Autoencoder  # noqa: E402
from . import pretrain  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Parameter", "init", "layers", "losses", "optim", "schedules", "callbacks", "datasets",
           "diagnostics", "distributed", "metrics", "plot", "search", "sklearn",  # noqa: F405 (__getattr__)
           "Sequential", "History",
           "load", "preprocessing", "Standardize",
           "seed", "get_num_threads", "set_num_threads", "Autoencoder", "pretrain", "cuda", "CudaError"]
__all__ += layers.__all__ + losses.__all__ + optim.__all__


def __getattr__(name: str):
    # gs.sklearn is imported on first use, so that `import gradstep` does not load scikit-learn's
    # estimator machinery.
    if name == "sklearn":
        import importlib
        return importlib.import_module(".sklearn", __name__)
    raise AttributeError(f"module 'gradstep' has no attribute {name!r}")
