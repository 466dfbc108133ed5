from __future__ import annotations

import math

import numpy as np
import pytest

import gradstep as gs
from gradstep.schedules import CosineDecay, ExponentialDecay, StepDecay


def test_step_decay_values():
    s = StepDecay(0.1, drop=0.5, every=3)
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
    np.testing.assert_allclose([s(e) for e in range(10)], expected, rtol=1e-15)
    assert s(100) == 0.1 * 0.5 ** 33
    d = StepDecay(1.0)  # defaults: halve every 10 epochs
    assert [d(0), d(9), d(10), d(19), d(20)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_exponential_decay_values():
    s = ExponentialDecay(0.2, rate=0.9)
    for e in range(20):
        assert s(e) == pytest.approx(0.2 * 0.9 ** e, rel=1e-15)
    assert s(0) == 0.2
    assert ExponentialDecay(1.0)(2) == pytest.approx(0.96 ** 2, rel=1e-15)
    assert ExponentialDecay(1.0, rate=1.0)(50) == 1.0


def test_cosine_decay_values():
    s = CosineDecay(0.1, epochs=10, min_lr=0.001)
    for e in range(15):
        t = min(e, 10) / 10
        assert s(e) == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * t)) / 2, rel=1e-14)
    assert s(0) == 0.1
    assert s(5) == pytest.approx(0.0505, rel=1e-14)  # half way: the mean of both ends
    assert s(10) == pytest.approx(0.001, rel=1e-14) and s(30) == s(10)  # held at min_lr after
    lrs = [s(e) for e in range(11)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert CosineDecay(1.0, 4)(4) == pytest.approx(0.0, abs=1e-16)


@pytest.mark.parametrize("make,arg", [
    (lambda v: StepDecay(v), "initial_lr"),
    (lambda v: StepDecay(0.1, drop=v), "drop"),
    (lambda v: ExponentialDecay(v), "initial_lr"),
    (lambda v: ExponentialDecay(0.1, rate=v), "rate"),
    (lambda v: CosineDecay(v, 10), "initial_lr"),
    (lambda v: CosineDecay(0.1, 10, min_lr=v), "min_lr"),
])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1.5])
def test_float_argument_validation(make, arg, bad):
    if bad == 1.5 and arg == "initial_lr":
        make(bad)  # rates above 1 are fine as a starting point
        return
    if bad == 0.0 and arg == "min_lr":
        make(bad)  # decaying to zero is allowed
        return
    with pytest.raises(ValueError, match=arg):
        make(bad)


def test_other_argument_validation():
    with pytest.raises(TypeError, match="StepDecay: every"):
        StepDecay(0.1, every=2.5)
    with pytest.raises(ValueError, match="StepDecay: every"):
        StepDecay(0.1, every=0)
    with pytest.raises(TypeError, match="initial_lr"):
        StepDecay("0.1")
    with pytest.raises(TypeError, match="CosineDecay: epochs"):
        CosineDecay(0.1, epochs=None)
    with pytest.raises(ValueError, match="CosineDecay: epochs"):
        CosineDecay(0.1, epochs=0)
    with pytest.raises(ValueError, match="min_lr must be <= initial_lr"):
        CosineDecay(0.1, 10, min_lr=0.2)
    s = StepDecay(0.1)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        s(-1)
    with pytest.raises(TypeError, match="epoch must be an int"):
        s(1.0)
    with pytest.raises(TypeError, match="epoch must be an int"):
        s(True)
    assert s(np.int64(10)) == 0.05


def test_reprs():
    assert repr(StepDecay(0.1, 0.5, 3)) == "StepDecay(initial_lr=0.1, drop=0.5, every=3)"
    assert repr(ExponentialDecay(0.1)) == "ExponentialDecay(initial_lr=0.1, rate=0.96)"
    assert repr(CosineDecay(0.1, 5, 0.01)) == "CosineDecay(initial_lr=0.1, epochs=5, min_lr=0.01)"


def test_schedules_are_callbacks():
    s = StepDecay(0.1, every=2)
    assert isinstance(s, gs.callbacks.Callback)
    with pytest.raises(RuntimeError, match="set_model"):
        s.on_epoch_begin(0)


def test_linear_warmup_then_a_decay():
    from gradstep.schedules import LinearWarmup

    decay = CosineDecay(0.1, epochs=10)
    w = LinearWarmup(decay, epochs=4, start_factor=0.1)
    lrs = [w(e) for e in range(16)]
    # PyTorch's LinearLR: base * (start + (1 - start) * e / epochs) during the warm-up
    np.testing.assert_allclose(lrs[:4], [0.1 * (0.1 + 0.9 * e / 4) for e in range(4)])
    np.testing.assert_allclose(lrs[4:], [decay(e) for e in range(12)])  # then the decay from its epoch 0
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:5]))
    fixed = LinearWarmup(0.01, epochs=2, start_factor=0.5)
    assert [fixed(e) for e in range(4)] == pytest.approx([0.005, 0.0075, 0.01, 0.01])
    # a callback in fit like the others: the optimizer follows it epoch by epoch
    X = np.random.default_rng(0).standard_normal((64, 3))
    model = gs.Sequential([gs.Dense(3, 1)], seed=0).compile(gs.MSE(), gs.SGD(1.0))
    h = model.fit(X, X[:, :1], epochs=6, verbose=0, callbacks=[w])
    assert h.history["lr"] == pytest.approx(lrs[:6])
    with pytest.raises(TypeError, match="then"):
        LinearWarmup("fast", 3)
    with pytest.raises(ValueError, match="epochs"):
        LinearWarmup(decay, 0)
