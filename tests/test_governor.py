"""The contention governor (src/core/common.hpp): parallel regions drop to one thread for a while
when the second thread costs more waiting than it saves, and the results never depend on it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core

US = 1_000
MS = 1_000_000


def test_waits_shorter_than_the_work_never_back_off():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    for k in range(1000):
        g.region(own_ns=2 * MS, wait_ns=1 * MS, now_ns=t + k * 3 * MS)  # paid: waited < own share
    assert g.stalls == 0
    assert g.team(2, t + 3000 * MS) == 2
    assert g.regions == 1000 and g.waited_ns == 1000 * MS


def test_one_short_wait_is_tolerated_a_run_of_them_is_not():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    g.region(own_ns=10 * US, wait_ns=150 * US, now_ns=t)  # a wake-up: costs 140 us, below the debt
    assert g.stalls == 0 and g.team(2, t + 1) == 2
    g.region(own_ns=10 * US, wait_ns=150 * US, now_ns=t + MS)  # again: the losses add up
    assert g.stalls == 1
    assert g.team(2, t + 2 * MS) == 1


def test_gains_are_capped_so_new_contention_is_seen_soon():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    for k in range(10_000):  # a long quiet stretch: 10 s of gains
        g.region(own_ns=1 * MS, wait_ns=1 * US, now_ns=t + k * MS)
    t += 10_000 * MS
    g.region(own_ns=20 * US, wait_ns=3 * MS, now_ns=t)  # one stall of 3 ms is enough
    assert g.stalls == 1 and g.team(2, t + 1) == 1


def test_backoff_doubles_while_contention_stays_and_starts_over_after_it_paid_off():
    g = _core._ContentionGovernor()
    t = 10_000 * MS
    g.region(own_ns=20 * US, wait_ns=3 * MS, now_ns=t)
    assert g.stalls == 1
    first = g.backoff_ns
    assert first > 0
    assert g.team(2, t + 1) == 1
    assert g.team(8, t + first - 1) == 1
    assert g.team(8, t + first) == 8  # back-off over: threads again
    # Stalling again on the retry: twice as long, however much time passed, up to the cap.
    t += first + 5_000 * MS
    g.region(own_ns=20 * US, wait_ns=3 * MS, now_ns=t)
    assert g.backoff_ns == 2 * first
    assert g.team(2, t + 2 * first - 1) == 1
    for _ in range(40):
        t += g.backoff_ns + MS
        g.region(own_ns=20 * US, wait_ns=3 * MS, now_ns=t)
    cap = g.backoff_ns
    assert 2 * first < cap <= 1_000 * MS
    # The threads pay off again for a while; the next stall starts over at the first back-off.
    t += cap + MS
    for k in range(100):
        g.region(own_ns=1 * MS, wait_ns=1 * US, now_ns=t + k * MS)
    t += 100 * MS
    g.region(own_ns=20 * US, wait_ns=3 * MS, now_ns=t)
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
