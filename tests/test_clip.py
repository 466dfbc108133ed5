"""Gradient clipping (clipnorm, clipvalue) on every optimizer: against torch's
clip_grad_norm_ / clip_grad_value_ followed by the torch optimizer's step, the fused step against
the layer path bit for bit, 1 and 2 threads bit for bit, and the argument checks."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core
from gradstep._arena import Parameter

torch = pytest.importorskip("torch", reason="torch is the reference for clipping + optimizer steps")

# (gs optimizer, torch optimizer) with equal hyperparameters
PAIRS = {
    "sgd_momentum": (lambda **c: gs.SGD(lr=0.1, momentum=0.9, **c),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False)),
    "rmsprop": (lambda **c: gs.RMSprop(lr=0.01, momentum=0.5, **c),
                lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, foreach=False)),
    "adam": (lambda **c: gs.Adam(lr=0.01, weight_decay=1e-3, **c),
             lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3, foreach=False)),
    "adamw": (lambda **c: gs.AdamW(lr=0.01, **c),
              lambda p: torch.optim.AdamW(p, lr=0.01, foreach=False)),
}
SHAPES = [(7, 5), (5,), (3, 4, 2)]


def _loose_params(rng, dtype):
    return [Parameter(f"p{i}", rng.standard_normal(s).astype(dtype), np.zeros(s, dtype))
            for i, s in enumerate(SHAPES)]


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("clip", [dict(clipnorm=0.5), dict(clipvalue=0.3), dict(clipnorm=100.0)])
def test_clipped_steps_follow_torch(name, clip, dtype, rng):
    make_gs, make_torch = PAIRS[name]
    params = _loose_params(rng, dtype)
    tparams = [torch.tensor(p.value.copy(), requires_grad=True) for p in params]
    opt, topt = make_gs(**clip), make_torch(tparams)
    for step in range(5):
        for p, tp in zip(params, tparams):
            g = (rng.standard_normal(p.value.shape) * 2.0).astype(dtype)
            p.grad[...] = g
            tp.grad = torch.tensor(g.copy())
        if "clipnorm" in clip:
            torch.nn.utils.clip_grad_norm_(tparams, clip["clipnorm"], foreach=False)
        else:
            torch.nn.utils.clip_grad_value_(tparams, clip["clipvalue"], foreach=False)
        opt.step(params)
        topt.step()
        # the gradients are clipped in place, as torch's are
        for p, tp in zip(params, tparams):
            if "clipvalue" in clip:  # a clamp is exact: the same bits
                np.testing.assert_array_equal(p.grad, tp.grad.numpy())
            else:  # the norm agrees to rounding (torch takes the norm of per-tensor norms)
                np.testing.assert_allclose(p.grad, tp.grad.numpy(),
                                           **(dict(rtol=1e-6) if dtype == "float32" else dict(rtol=1e-14)))
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.value, tp.detach().numpy(), **tol)


def test_clipnorm_is_global_and_matches_a_float64_reference(rng):
    gs_params = _loose_params(rng, "float64")
    grads = [rng.standard_normal(p.value.shape) * 3 for p in gs_params]
    for p, g in zip(gs_params, grads):
        p.grad[...] = g
    before = [p.value.copy() for p in gs_params]
    gs.SGD(lr=1.0, clipnorm=1.0).step(gs_params)
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    coef = min(1.0, 1.0 / (norm + 1e-6))
    assert coef < 0.5  # the clip is active
    for p, g, b in zip(gs_params, grads, before):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-15)
        np.testing.assert_allclose(b - p.value, g * coef, rtol=1e-13)
    total = np.sqrt(sum(float(np.sum(p.grad ** 2)) for p in gs_params))
    assert abs(total - 1.0) < 1e-6  # one global norm, not one per parameter
    # and the same as torch's global clip_grad_norm_
    tg = [torch.tensor(g) for g in grads]
    tp = [torch.zeros_like(g, requires_grad=True) for g in tg]
    for t, g in zip(tp, tg):
        t.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(tp, 1.0)
    for p, t in zip(gs_params, tp):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-15)


def test_a_small_norm_is_left_alone_and_value_then_norm(rng):
    p = [Parameter("w", np.zeros(4), np.array([0.1, -0.2, 0.05, 0.0]))]
    g0 = p[0].grad.copy()
    gs.SGD(lr=1.0, clipnorm=10.0).step(p)
    np.testing.assert_array_equal(p[0].value, -g0)  # coefficient clamped at 1: untouched
    q = [Parameter("w", np.zeros(3), np.array([3.0, -4.0, 0.5]))]
    gs.SGD(lr=1.0, clipvalue=1.0, clipnorm=1.0).step(q)
    v = np.array([1.0, -1.0, 0.5])  # clamped first, then scaled to norm 1
    np.testing.assert_allclose(q[0].grad, v / (np.linalg.norm(v) + 1e-6), rtol=1e-15)


def _model(dtype, seed=5, width=16):
    return gs.Sequential([gs.Dense(12, width), gs.BatchNorm(width), gs.ReLU(), gs.Dropout(0.2),
                          gs.Dense(width, 4)], dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("clip", [dict(clipnorm=0.05), dict(clipvalue=0.01),
                                  dict(clipnorm=0.05, clipvalue=0.01)])
def test_fused_step_gives_the_bits_of_the_layer_path(name, clip, dtype, rng):
    X = rng.standard_normal((96, 12))
    y = rng.integers(0, 4, 96)
    fused, plain, split = _model(dtype), _model(dtype), _model(dtype)
    for m in (fused, plain, split):
        m.compile(gs.SoftmaxCrossEntropy(), PAIRS[name][0](**clip))
    plain.use_engine = False
    for s in range(4):
        xb, yb = X[s * 24:(s + 1) * 24], y[s * 24:(s + 1) * 24]
        a, b = fused.train_step(xb, yb), plain.train_step(xb, yb)
        c = split.forward_backward(xb, yb)
        split.update()
        assert a == b == c
    assert fused._engine, "the engine should cover this model"
    for key, v in fused.state_dict().items():
        np.testing.assert_array_equal(v, plain.state_dict()[key], err_msg=key)
        np.testing.assert_array_equal(v, split.state_dict()[key], err_msg=key)
    np.testing.assert_array_equal(fused.arena.grads, plain.arena.grads)  # clipped in place alike


def test_clipping_changes_the_update(rng):
    X = rng.standard_normal((64, 12))
    y = rng.integers(0, 4, 64)
    runs = []
    for clip in ({}, dict(clipnorm=1e-3)):
        m = _model("float64")
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.5, **clip))
        m.train_step(X, y)
        runs.append(m.state_dict()["0.weight"])
    assert not np.allclose(runs[0], runs[1])
    m = _model("float64")
    m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.5, clipnorm=1e-3))
    m.forward_backward(X, y)
    m.update()
    assert np.sqrt(np.sum(m.arena.grads.astype(np.float64) ** 2)) == pytest.approx(1e-3, rel=1e-6)


def test_clipping_bit_identical_for_1_and_2_threads(rng):
    # > 2^15 parameters and gradients, so the norm's chunks and the scaling run on threads
    X = rng.standard_normal((128, 256)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    states = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        m = gs.Sequential([gs.Dense(256, 256), gs.ReLU(), gs.Dense(256, 10)], seed=1)
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3, clipnorm=0.1, clipvalue=0.05))
        losses = [m.train_step(X[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]) for i in range(4)]
        states.append((losses, m.state_dict(), _core.grad_sq_sum(m.arena.grads)))
    assert states[0][0] == states[1][0]
    assert states[0][2] == states[1][2]
    for k in states[0][1]:
        np.testing.assert_array_equal(states[0][1][k], states[1][1][k])


def test_grad_sq_sum_is_the_double_sum(rng):
    g = rng.standard_normal(100_003).astype(np.float32)
    assert _core.grad_sq_sum(g) == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)), rel=1e-13)


@pytest.mark.parametrize("cls", [gs.SGD, gs.RMSprop, gs.Adam, gs.AdamW])
def test_clip_arguments_are_checked(cls):
    for arg in ("clipnorm", "clipvalue"):
        for bad in (0, 0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=arg):
                cls(**{arg: bad})
        with pytest.raises(TypeError, match=arg):
            cls(**{arg: "1"})
        opt = cls(**{arg: 2})
        assert getattr(opt, arg) == 2.0 and opt.get_config()[arg] == 2.0
        assert type(opt)(**opt.get_config()).get_config() == opt.get_config()
    assert "clipnorm" not in cls().get_config()  # unset: the config is as before


def test_clipnorm_survives_save_and_load(tmp_path, rng):
    m = _model("float32")
    m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2, clipnorm=0.25))
    X = rng.standard_normal((32, 12)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    m.train_step(X, y)
    m.save(tmp_path / "m.safetensors")
    back = gs.load(tmp_path / "m.safetensors")
    assert back.optimizer.clipnorm == 0.25 and back.optimizer.clipvalue is None


@pytest.mark.parametrize("max_norm", [0.3, 1.7, 1e3])
def test_given_the_same_norm_the_clip_is_torchs_bit_for_bit(max_norm, dtype, rng):
    # torch's clip_grad_norm_ = (total norm) then clip_grads_with_norm_; with the norm we compute
    # (the double sum, rounded once to the dtype) the scaling is torch's to the last bit
    params = _loose_params(rng, dtype)
    for p in params:
        p.grad[...] = rng.standard_normal(p.value.shape).astype(dtype)
    tparams = [torch.zeros(p.value.shape, dtype=getattr(torch, dtype), requires_grad=True)
               for p in params]
    for p, tp in zip(params, tparams):
        tp.grad = torch.tensor(p.grad.copy())
    norm = np.sqrt(sum(_core.grad_sq_sum(p.grad) for p in params)).astype(dtype)
    torch.nn.utils.clip_grads_with_norm_(tparams, max_norm, torch.tensor(norm))
    gs.SGD(lr=0.0, clipnorm=max_norm).step(params)
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(p.grad, tp.grad.numpy())
