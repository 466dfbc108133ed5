"""The contention governor (src/core/common.hpp): parallel regions drop to one thread for a while
after a worker held one up, and the results never depend on it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core

MS = 1_000_000


def test_short_or_paying_waits_are_not_stalls():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    g.region(own_ns=10_000, wait_ns=150_000, now_ns=t)  # a futex wake-up: below the floor
    g.region(own_ns=2 * MS, wait_ns=1 * MS, now_ns=t)     # waited less than its own share: paid
    assert g.stalls == 0
    assert g.team(2, t + 1) == 2


def test_stall_means_one_thread_for_the_backoff_then_retry():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    g.region(own_ns=20_000, wait_ns=3 * MS, now_ns=t)
    assert g.stalls == 1
    first = g.backoff_ns
    assert first > 0
    assert g.team(2, t + 1) == 1
    assert g.team(8, t + first - 1) == 1
    assert g.team(8, t + first) == 8  # back-off over: threads again
    # Stalling again right after the retry: twice as long, up to the cap.
    t2 = t + first + MS
    g.region(own_ns=20_000, wait_ns=3 * MS, now_ns=t2)
    assert g.backoff_ns == 2 * first
    assert g.team(2, t2 + 2 * first - 1) == 1
    for k in range(40):
        t2 += g.backoff_ns + MS
        g.region(own_ns=20_000, wait_ns=3 * MS, now_ns=t2)
    cap = g.backoff_ns
    assert cap <= 1_000 * MS
    t2 += cap + MS
    g.region(own_ns=20_000, wait_ns=3 * MS, now_ns=t2)
    assert g.backoff_ns == cap
    # After a calm stretch a new stall starts over at the first back-off.
    t3 = t2 + 100 * cap
    g.region(own_ns=20_000, wait_ns=3 * MS, now_ns=t3)
    assert g.backoff_ns == first


def test_region_rejects_bad_times():
    g = _core._ContentionGovernor()
    for bad in [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, 2**63 - 1)]:
        with pytest.raises(ValueError, match="must be in"):
            g.region(*bad)
    with pytest.raises(ValueError, match="must be in"):
        _core._thread_governor_region(-5, 0)


def _train(threads):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((512, 300)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    gs.set_num_threads(threads)
    m = gs.Sequential([gs.Dense(300, 256), gs.ReLU(), gs.Dense(256, 256), gs.Tanh(),
                       gs.Dense(256, 10)], seed=5)
    m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
    for b in range(4):
        m.train_step(X[b * 128:(b + 1) * 128], y[b * 128:(b + 1) * 128])
    return [p.copy() for layer in m.layers for p in layer.params.values()]


def test_one_thread_after_a_stall_gives_the_same_bits():
    old = gs.get_num_threads()
    try:
        quiet = _train(2)
        _core._thread_governor_region(10_000, 50 * MS)  # as if a worker had lost its core
        state = _core._thread_governor()
        if state["enabled"]:
            assert state["team_now"] == 1
        solo = _train(2)
        one = _train(1)
    finally:
        gs.set_num_threads(old)
    for a, b, c in zip(quiet, solo, one):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_gradstep_yield_0_turns_it_off():
    code = ("from gradstep import _core; import gradstep as gs; gs.set_num_threads(2); "
            "_core._thread_governor_region(10_000, 50_000_000); s = _core._thread_governor(); "
            "print(s['enabled'], s['team_now'])")
    env = dict(os.environ, GRADSTEP_YIELD="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "2"]
    env["GRADSTEP_YIELD"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "1"]
