"""Shared fixtures. Tests run on one thread by default (2-core CI machines; see BUILD-NOTES.md);
the determinism tests set 1 and 2 threads themselves."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs

DTYPES = ["float32", "float64"]

# Tolerances against the float64 numpy reference (stated once, used everywhere).
TOL = {
    "float64": dict(rtol=1e-12, atol=1e-12),
    "float32": dict(rtol=1e-5, atol=1e-6),
}
# Backward passes chain more roundings: looser in float32.
TOL_BACKWARD = {
    "float64": dict(rtol=1e-11, atol=1e-12),
    "float32": dict(rtol=1e-4, atol=1e-5),
}


@pytest.fixture(autouse=True)
def _one_thread_and_seeded():
    gs.set_num_threads(1)
    gs.seed(1234)
    yield
    gs.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


def subprocess_env(**extra: str) -> dict:
    """The environment for a test's subprocess: this one, with PYTHONPATH made absolute (a
    development run from the source tree; subprocesses may run in another directory)."""
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    return env
