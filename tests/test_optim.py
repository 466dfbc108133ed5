from __future__ import annotations

import json

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core
from gradstep._arena import Arena, Parameter
from conftest import TOL
from reference.optim import RULES

# (class name, kwargs): every option combination of every optimizer.
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.2, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.02, alpha=0.8, eps=1e-6, momentum=0.5, weight_decay=0.1)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, betas=(0.3, 0.9))),  # lerp weight 0.7 >= 0.5: torch's other branch
    ("Adam", dict(lr=0.05, betas=(0.0, 0.5), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05, betas=(0.3, 0.9), weight_decay=0.2)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS]
SHAPES = [(37, 5), (7,), (3, 2, 3)]  # odd sizes: SIMD tails and padding between slots


def make_arena(shapes, dtype, rng) -> Arena:
    arena = Arena([(f"p{i}", s) for i, s in enumerate(shapes)], dtype)
    for name, (_, shape) in arena.slots.items():
        arena.view(name)[...] = rng.standard_normal(shape)
    return arena


def params_of(arena: Arena) -> list[Parameter]:
    return [arena.parameter(name) for name in arena.slots]


def set_grads(arena: Arena, grads) -> None:
    for name, g in zip(arena.slots, grads):
        arena.view(name, "grads")[...] = g


def draw_grads(shapes, steps, rng):
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def build(name, kw):
    return getattr(gs, name)(**kw)


def padding_mask(arena: Arena) -> np.ndarray:
    mask = np.ones(arena.size, bool)
    for offset, shape in arena.slots.values():
        mask[offset:offset + int(np.prod(shape))] = False
    return mask


# ---- update rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
def test_matches_reference(name, kw, dtype, rng):
    arena = make_arena(SHAPES, dtype, rng)
    ref_w = [arena.view(n).astype(np.float64) for n in arena.slots]
    ref_state = [{} for _ in SHAPES]
    opt = build(name, kw)
    for t, grads in enumerate(draw_grads(SHAPES, 6, rng), 1):
        grads = [g.astype(dtype) for g in grads]  # the reference sees the gradients the kernel sees
        set_grads(arena, grads)
        opt.step(params_of(arena))
        ref_w = [RULES[name](w, g, s, t, **kw) for w, g, s in zip(ref_w, grads, ref_state)]
        for n, w in zip(arena.slots, ref_w):
            np.testing.assert_allclose(arena.view(n), w, **TOL[dtype])


def test_hand_worked_steps():
    w = np.array([1.0])
    p = Parameter("w", w, np.array([0.5]))
    opt = gs.SGD(lr=0.1, momentum=0.9)
    opt.step([p])  # buf = 0.5, w = 1 - 0.05
    assert w[0] == pytest.approx(0.95, abs=1e-15)
    opt.step([p])  # buf = 0.9*0.5 + 0.5 = 0.95, w = 0.95 - 0.095
    assert w[0] == pytest.approx(0.855, abs=1e-15)
    # Adam's first step moves each weight by lr against the gradient's sign (m̂ = g, v̂ = g²).
    w = np.array([1.0, -2.0])
    p = Parameter("w", w, np.array([3.0, -0.25]))
    gs.Adam(lr=0.01, eps=0.0).step([p])
    np.testing.assert_allclose(w, [0.99, -1.99], rtol=0, atol=1e-15)


def test_adam_zero_gradients_change_nothing(dtype, rng):
    for opt in (gs.Adam(), gs.AdamW(weight_decay=0.0), gs.RMSprop(), gs.RMSprop(momentum=0.9),
                gs.SGD(momentum=0.9)):
        arena = make_arena(SHAPES, dtype, rng)
        before = arena.params.copy()
        for _ in range(3):
            opt.step(params_of(arena))
        np.testing.assert_array_equal(arena.params, before)
        state = opt.state_dict()["state"]
        for entry in state.values():
            for k, v in entry.items():
                if k != "step":
                    assert np.all(np.isfinite(v)) and not v.any(), (opt, k)
    # With weight decay the weights do move, and stay finite.
    arena = make_arena(SHAPES, dtype, rng)
    before = arena.params.copy()
    gs.Adam(weight_decay=0.1).step(params_of(arena))
    assert np.all(np.isfinite(arena.params)) and not np.array_equal(arena.params, before)


# ---- torch parity ---------------------------------------------------------------------------------

def _torch_trajectory(torch, name, kw, w0s, grads, exact_sqrt, monkeypatch):
    if exact_sqrt:
        monkeypatch.setattr(torch.Tensor, "sqrt",
                            lambda self: torch.from_numpy(np.sqrt(self.detach().numpy())))
    tparams = [torch.tensor(w.copy(), requires_grad=True) for w in w0s]
    kw = dict(kw)
    cls = getattr(torch.optim, name)
    opt = cls(tparams, foreach=False, **kw)
    out = []
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.tensor(g)
        opt.step()
        out.append([tp.detach().numpy().copy() for tp in tparams])
    monkeypatch.undo()
    return out


def _exact_fma_build(torch) -> bool:
    # torch's CPU kernels fuse add(alpha=), addcmul and lerp into FMAs in their AVX2/AVX512 builds;
    # the bit-for-bit comparison assumes that build.
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
def test_matches_torch(name, kw, dtype, rng, monkeypatch):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    arena = make_arena(SHAPES, dtype, rng)
    w0s = [arena.view(n).copy() for n in arena.slots]
    grads = [[g.astype(dtype) for g in step] for step in draw_grads(SHAPES, 12, rng)]
    ours = []
    opt = build(name, kw)
    for step_grads in grads:
        set_grads(arena, step_grads)
        opt.step(params_of(arena))
        ours.append([arena.view(n).copy() for n in arena.slots])
    stock = _torch_trajectory(torch, name, kw, w0s, grads, False, monkeypatch)
    exact = _torch_trajectory(torch, name, kw, w0s, grads, True, monkeypatch)
    for t in range(len(grads)):
        for a, b, c in zip(ours[t], stock[t], exact[t]):
            if _exact_fma_build(torch):
                # Same operations in the same order: identical bits once torch's sqrt is the
                # correctly rounded one (SGD has no sqrt, so it is identical to stock torch too).
                np.testing.assert_array_equal(a, c)
                if name == "SGD":
                    np.testing.assert_array_equal(a, b)
            # Stock torch's sqrt (MKL) may be one ulp off; after 12 steps that stays at rounding
            # level: float64 to 1e-12 relative, float32 to a few ulps of the weights.
            tol = dict(rtol=1e-12, atol=1e-14) if dtype == "float64" else dict(rtol=2e-6, atol=1e-6)
            np.testing.assert_allclose(a, b, **tol)


# ---- kernels: SIMD vs serial reference, threads -----------------------------------------------------

def _run_kernel(fn, name, kw, w, g, state, step):
    if name == "SGD":
        fn(w, state[0], g, kw["lr"], kw.get("momentum", 0.0), kw.get("dampening", 0.0),
           kw.get("weight_decay", 0.0), kw.get("nesterov", False), step)
    elif name == "RMSprop":
        fn(w, state[0], state[1], g, kw["lr"], kw.get("alpha", 0.99), kw.get("eps", 1e-8),
           kw.get("momentum", 0.0), kw.get("weight_decay", 0.0), step)
    else:
        b1, b2 = kw.get("betas", (0.9, 0.999))
        fn(w, state[0], state[1], g, kw["lr"], b1, b2, kw.get("eps", 1e-8),
           kw.get("weight_decay", 0.0 if name == "Adam" else 0.01), name == "AdamW", step)


KERNEL = {"SGD": "sgd_step", "RMSprop": "rmsprop_step", "Adam": "adam_step", "AdamW": "adam_step"}


@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
def test_simd_kernel_matches_serial_reference(name, kw, dtype, rng):
    for n in (1, 7, 8, 37, 4096 + 5):
        w = rng.standard_normal(n).astype(dtype)
        s = [np.zeros(n, dtype), np.zeros(n, dtype)]
        w2, s2 = w.copy(), [a.copy() for a in s]
        for t in range(1, 4):
            g = rng.standard_normal(n).astype(dtype)
            _run_kernel(getattr(_core, KERNEL[name]), name, kw, w, g, s, t)
            _run_kernel(getattr(_core, KERNEL[name] + "_ref"), name, kw, w2, g, s2, t)
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(s[0], s2[0])
        np.testing.assert_array_equal(s[1], s2[1])


@pytest.mark.parametrize("name, kw", [CONFIGS[6], CONFIGS[11], CONFIGS[13], CONFIGS[18]],
                         ids=[IDS[6], IDS[11], IDS[13], IDS[18]])
def test_one_and_two_threads_bit_identical(name, kw, dtype, rng):
    shapes = [(300, 129), (129,)]  # > kParallelMin = 32768 elements in one flat buffer
    arena0 = make_arena(shapes, dtype, rng)
    grads = draw_grads(shapes, 3, rng)
    results = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        arena = Arena([(n, s) for n, (_, s) in arena0.slots.items()], dtype)
        arena.params[...] = arena0.params
        opt = build(name, kw)
        for step_grads in grads:
            set_grads(arena, step_grads)
            opt.step(params_of(arena))
        results.append(arena.params.copy())
    assert arena.size >= 32768
    np.testing.assert_array_equal(results[0], results[1])


# ---- flat buffers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
def test_flat_path_is_one_call_and_padding_stays_zero(name, kw, dtype, rng, monkeypatch):
    arena = make_arena(SHAPES, dtype, rng)
    pad = padding_mask(arena)
    assert pad.any()
    calls = []
    kernel = getattr(_core, KERNEL[name])
    monkeypatch.setattr(_core, KERNEL[name], lambda *a: (calls.append(a[0].size), kernel(*a)))
    opt = build(name, kw)
    for step_grads in draw_grads(SHAPES, 4, rng):
        set_grads(arena, step_grads)
        opt.step(params_of(arena))
    assert calls == [arena.size] * 4  # one pass over the whole flat buffer per step
    assert not arena.params[pad].any() and not arena.grads[pad].any()
    block = opt._arena_block(arena)
    for buf in block.buffers.values():
        assert buf.size == arena.size and not buf[pad].any()


def test_eps_zero_avoids_the_flat_path(dtype, rng):
    # With eps = 0 the padding would compute 0/0: such steps go parameter by parameter.
    arena = make_arena(SHAPES, dtype, rng)
    pad = padding_mask(arena)
    for opt in (gs.Adam(eps=0.0), gs.RMSprop(eps=0.0, momentum=0.5)):
        for step_grads in draw_grads(SHAPES, 2, rng):
            set_grads(arena, step_grads)
            opt.step(params_of(arena))
        assert np.all(np.isfinite(arena.params)) and not arena.params[pad].any()


@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
def test_flat_path_equals_per_parameter_path(name, kw, dtype, rng):
    arenas = [make_arena(SHAPES, dtype, np.random.default_rng(5)) for _ in range(3)]
    loose = [Parameter(n, arenas[2].view(n).copy(), np.zeros(s, dtype)) for n, (_, s) in
             arenas[2].slots.items()]
    opts = [build(name, kw) for _ in range(3)]
    for step_grads in draw_grads(SHAPES, 5, rng):
        for arena in arenas:
            set_grads(arena, step_grads)
        for p, g in zip(loose, step_grads):
            p.grad[...] = g
        opts[0].step(params_of(arenas[0]))           # flat: one call
        for p in params_of(arenas[1]):               # a subset each time: per parameter
            opts[1].step([p])
        opts[2].step(loose)                          # parameters outside any arena
    for n in arenas[0].slots:
        np.testing.assert_array_equal(arenas[0].view(n), arenas[1].view(n))
    for n, p in zip(arenas[0].slots, loose):
        np.testing.assert_array_equal(arenas[0].view(n), p.value)
    sd = [o.state_dict()["state"] for o in opts]
    for n in arenas[0].slots:
        for k in sd[0][n]:
            np.testing.assert_array_equal(sd[0][n][k], sd[1][n][k])
            np.testing.assert_array_equal(sd[0][n][k], sd[2][n][k])


def test_state_is_kept_per_storage_not_per_parameter_object(rng):
    layer = gs.Dense(4, 3, dtype="float64", seed=0)
    w0 = {k: v.copy() for k, v in layer.params.items()}
    ref_w, ref_state = dict(w0), {k: {} for k in w0}
    opt = gs.Adam(lr=0.1)
    for t in range(1, 5):
        for k in layer.grads:
            layer.grads[k][...] = rng.standard_normal(layer.grads[k].shape)
            ref_w[k] = RULES["Adam"](ref_w[k], layer.grads[k], ref_state[k], t, lr=0.1)
        opt.step(layer.parameters())  # new Parameter objects every call
    assert len(opt._arenas) == 1 and not opt._loose
    state = opt.state_dict()["state"]
    assert sorted(state) == ["bias", "weight"] and state["weight"]["step"] == 4
    for k in w0:
        np.testing.assert_allclose(layer.params[k], ref_w[k], **TOL["float64"])


def test_subset_steps_keep_their_own_counts(rng):
    arena = make_arena(SHAPES, "float64", rng)
    opt = gs.Adam()
    ps = params_of(arena)
    opt.step(ps[:1])
    opt.step(ps)  # slot 0 is at step 2, the others at step 1: per parameter, correct bias corrections
    state = opt.state_dict()["state"]
    assert [state[n]["step"] for n in arena.slots] == [2, 1, 1]
    assert opt.iterations == 2


def test_other_grad_layouts_give_the_same_result(rng):
    value = rng.standard_normal((6, 5)).astype(np.float32)
    grad = rng.standard_normal((5, 6)).T  # float64, Fortran order
    a = Parameter("w", value.copy(), grad)
    b = Parameter("w", value.copy(), np.ascontiguousarray(grad, dtype=np.float32))
    for p in (a, b):
        gs.Adam(lr=0.1).step([p])
    np.testing.assert_array_equal(a.value, b.value)


# ---- state_dict / load_state_dict -----------------------------------------------------------------

def _to_json_and_back(sd):
    """What a model file does: arrays stored apart, the rest through JSON."""
    arrays = {}

    def strip(o, path):
        if isinstance(o, np.ndarray):
            arrays[path] = o.copy()
            return {"__array__": path}
        if isinstance(o, dict):
            return {k: strip(v, f"{path}.{k}") for k, v in o.items()}
        return o

    def join(o):
        if isinstance(o, dict):
            return arrays[o["__array__"]] if set(o) == {"__array__"} else {k: join(v) for k, v in o.items()}
        return o

    return join(json.loads(json.dumps(strip(sd, ""))))


@pytest.mark.parametrize("name, kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("bind_now", [False, True])
def test_state_dict_round_trip_continues_exactly(name, kw, bind_now, dtype, rng):
    grads = draw_grads(SHAPES, 8, rng)
    arena = make_arena(SHAPES, dtype, rng)
    opt = build(name, kw)
    for step_grads in grads[:4]:
        set_grads(arena, step_grads)
        opt.step(params_of(arena))
    sd = _to_json_and_back(opt.state_dict())
    # A second model with the same weights and a fresh optimizer of default settings.
    arena2 = Arena([(n, s) for n, (_, s) in arena.slots.items()], dtype)
    arena2.params[...] = arena.params
    opt2 = getattr(gs, name)()
    if bind_now:
        opt2.load_state_dict(sd, params_of(arena2))
    else:
        opt2.load_state_dict(sd)
        assert _same_state(opt2.state_dict(), opt.state_dict())  # pending entries are reported
    assert opt2.get_config() == opt.get_config() and opt2.iterations == 4
    for step_grads in grads[4:]:
        for a in (arena, arena2):
            set_grads(a, step_grads)
        opt.step(params_of(arena))
        opt2.step(params_of(arena2))
    np.testing.assert_array_equal(arena2.params, arena.params)
    assert _same_state(opt2.state_dict(), opt.state_dict())


def _same_state(a, b) -> bool:
    if a.keys() != b.keys() or a["hyper"] != b["hyper"] or a["step"] != b["step"]:
        return False
    for n, entry in a["state"].items():
        other = b["state"][n]
        if entry.keys() != other.keys():
            return False
        for k, v in entry.items():
            if not np.array_equal(v, other[k]):
                return False
    return True


def test_state_dict_is_plain_data_and_copies(rng):
    arena = make_arena(SHAPES, "float32", rng)
    opt = gs.Adam()
    set_grads(arena, draw_grads(SHAPES, 1, rng)[0])
    opt.step(params_of(arena))
    sd = opt.state_dict()
    assert sd["type"] == "Adam" and sd["step"] == 1
    json.dumps({k: v for k, v in sd.items() if k != "state"})
    entry = sd["state"]["p0"]
    assert entry["step"] == 1 and entry["exp_avg"].shape == SHAPES[0]
    entry["exp_avg"][...] = 7.0
    assert not np.any(opt.state_dict()["state"]["p0"]["exp_avg"] == 7.0)


def test_load_state_dict_resets_existing_state(rng):
    arena = make_arena(SHAPES, "float64", rng)
    opt = gs.SGD(momentum=0.9)
    set_grads(arena, draw_grads(SHAPES, 1, rng)[0])
    opt.step(params_of(arena))
    empty = gs.SGD(momentum=0.5).state_dict()
    opt.load_state_dict(empty)
    assert opt.momentum == 0.5 and opt.state_dict()["state"] == {} and opt.iterations == 0
    before = arena.params.copy()
    opt.step(params_of(arena))  # step 1 again: the buffer starts as the gradient
    np.testing.assert_allclose(arena.params, before - 0.01 * arena.grads, rtol=1e-15)


def test_lr_change_takes_effect(dtype, rng):
    arena = make_arena(SHAPES, dtype, rng)
    grads = draw_grads(SHAPES, 3, rng)
    opt = gs.SGD(lr=0.1)
    set_grads(arena, grads[0])
    opt.step(params_of(arena))
    before = arena.params.copy()
    opt.lr = 0.0
    assert opt.lr == 0.0 and opt.get_config()["lr"] == 0.0
    set_grads(arena, grads[1])
    opt.step(params_of(arena))
    np.testing.assert_array_equal(arena.params, before)
    opt.lr = 0.5
    opt.step(params_of(arena))
    np.testing.assert_allclose(arena.params, before - 0.5 * arena.grads, **TOL[dtype])
    adam = gs.Adam(lr=0.1)
    adam.lr = 1e-4
    assert adam.state_dict()["hyper"]["lr"] == 1e-4


# ---- fused training steps -------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", [CONFIGS[1], CONFIGS[3], CONFIGS[9], CONFIGS[12], CONFIGS[17]],
                         ids=[IDS[1], IDS[3], IDS[9], IDS[12], IDS[17]])
def test_fused_state_drives_the_kernel_like_step(name, kw, rng):
    grads = draw_grads(SHAPES, 3, rng)
    a, b = (make_arena(SHAPES, "float32", np.random.default_rng(1)) for _ in range(2))
    opt_a, opt_b = build(name, kw), build(name, kw)
    kernel = getattr(_core, KERNEL[name])
    for step_grads in grads:
        set_grads(a, step_grads)
        set_grads(b, step_grads)
        opt_a.step(params_of(a))
        bufs, step = opt_b.fused_state(params_of(b))
        again, _ = opt_b.fused_state(params_of(b))
        assert all(x is y for x, y in zip(bufs, again)) and len(bufs) == 2
        h = opt_b.kernel_hyper()
        if name == "SGD":
            kernel(b.params, bufs[0], b.grads, *h[:4], bool(h[4]), step)
        elif name == "RMSprop":
            kernel(b.params, bufs[0], bufs[1], b.grads, *h, step)
        else:
            kernel(b.params, bufs[0], bufs[1], b.grads, *h[:5], bool(h[5]), step)
        opt_b.fused_stepped(params_of(b))
    np.testing.assert_array_equal(a.params, b.params)
    assert _same_state(opt_a.state_dict(), opt_b.state_dict())
    with pytest.raises(ValueError, match="exactly all the parameters of one arena"):
        opt_b.fused_state(params_of(b)[:1])


# ---- configuration, registry ----------------------------------------------------------------------

def test_defaults_config_repr_and_registry():
    assert gs.SGD().get_config() == dict(lr=0.01, momentum=0.0, dampening=0.0, nesterov=False,
                                         weight_decay=0.0)
    assert gs.RMSprop().get_config() == dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0,
                                             weight_decay=0.0)
    assert gs.Adam().get_config() == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    assert gs.AdamW().get_config() == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for name, kw in CONFIGS:
        opt = build(name, kw)
        cfg = json.loads(json.dumps(opt.get_config()))
        assert type(opt)(**cfg).get_config() == opt.get_config()
        assert repr(opt).startswith(f"{name}(lr=")
    assert set(gs.optim.OPTIMIZERS) == {"sgd", "rmsprop", "adam", "adamw"}
    assert isinstance(gs.optim.get("AdamW", lr=0.5), gs.AdamW) and gs.optim.get("adamw", lr=0.5).lr == 0.5
    assert type(gs.optim.get("sgd")) is gs.SGD and type(gs.optim.get()) is gs.Adam
    opt = gs.RMSprop()
    assert gs.optim.get(opt) is opt
    assert isinstance(gs.optim.get(gs.SGD, momentum=0.5), gs.SGD)
    assert gs.optim.OPTIMIZERS_BY_CLASS["RMSprop"] is gs.RMSprop
    assert {"SGD", "RMSprop", "Adam", "AdamW", "Optimizer"} <= set(gs.__all__)


def test_empty_params_is_a_no_op():
    opt = gs.Adam()
    opt.step([])
    assert opt.iterations == 0 and opt.state_dict()["state"] == {}


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kw, exc, words", [
    (gs.SGD, dict(lr=-0.1), ValueError, "SGD: lr must be >= 0"),
    (gs.SGD, dict(lr="fast"), TypeError, "SGD: lr must be a number"),
    (gs.SGD, dict(lr=float("nan")), ValueError, "SGD: lr must be finite"),
    (gs.SGD, dict(momentum=-0.5), ValueError, "SGD: momentum must be >= 0"),
    (gs.SGD, dict(dampening="x"), TypeError, "SGD: dampening must be a number"),
    (gs.SGD, dict(weight_decay=-1.0), ValueError, "SGD: weight_decay must be >= 0"),
    (gs.SGD, dict(nesterov=True), ValueError, "nesterov=True requires momentum > 0 and dampening == 0"),
    (gs.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "nesterov"),
    (gs.SGD, dict(nesterov="yes"), TypeError, "SGD: nesterov must be a bool"),
    (gs.RMSprop, dict(alpha=-0.1), ValueError, "RMSprop: alpha must be >= 0"),
    (gs.RMSprop, dict(eps=-1e-8), ValueError, "RMSprop: eps must be >= 0"),
    (gs.RMSprop, dict(momentum=-1.0), ValueError, "RMSprop: momentum must be >= 0"),
    (gs.RMSprop, dict(weight_decay=-1.0), ValueError, "RMSprop: weight_decay must be >= 0"),
    (gs.Adam, dict(lr=-1e-3), ValueError, "Adam: lr must be >= 0"),
    (gs.Adam, dict(eps=-1.0), ValueError, "Adam: eps must be >= 0"),
    (gs.Adam, dict(weight_decay=-0.1), ValueError, "Adam: weight_decay must be >= 0"),
    (gs.Adam, dict(betas=(1.0, 0.999)), ValueError, r"Adam: betas\[0\] must be in \[0.0, 1.0\)"),
    (gs.Adam, dict(betas=(0.9, -0.1)), ValueError, r"Adam: betas\[1\] must be in"),
    (gs.Adam, dict(betas=0.9), TypeError, "Adam: betas must be a pair of numbers"),
    (gs.Adam, dict(betas=(0.9,)), TypeError, "betas must be a pair"),
    (gs.Adam, dict(betas=(0.9, 0.99, 0.999)), TypeError, "betas must be a pair"),
    (gs.Adam, dict(betas=("a", 0.9)), TypeError, "betas must be a pair"),
    (gs.AdamW, dict(betas=(0.9, 1.5)), ValueError, r"AdamW: betas\[1\]"),
    (gs.AdamW, dict(weight_decay=-0.01), ValueError, "AdamW: weight_decay must be >= 0"),
])
def test_bad_constructor_arguments(cls, kw, exc, words):
    with pytest.raises(exc, match=words):
        cls(**kw)


def test_bad_lr_assignment_keeps_the_old_value():
    opt = gs.Adam(lr=0.01)
    with pytest.raises(ValueError, match="Adam: lr must be >= 0"):
        opt.lr = -1.0
    with pytest.raises(TypeError, match="Adam: lr must be a number"):
        opt.lr = None
    assert opt.lr == 0.01


def _param(value, grad, name="w"):
    return Parameter(name, value, grad)


@pytest.mark.parametrize("params, exc, words", [
    (None, TypeError, "params must be a list of gs.Parameter"),
    (np.zeros(3), TypeError, "params must be a list of gs.Parameter"),
    (_param(np.zeros(3), np.zeros(3)), TypeError, r"params must be a list of gs.Parameter .*, got Parameter"),
    ([np.zeros(3)], TypeError, r"params\[0\] must be a gs.Parameter"),
    ([_param(np.zeros(3), np.zeros(4))], ValueError, r"params\[0\] \('w'\): grad must have the value's shape"),
    ([_param(np.zeros(3, np.int64), np.zeros(3))], TypeError, "value must have dtype float32 or float64"),
    ([_param([0.0, 1.0], np.zeros(2))], TypeError, "value must be a numpy array"),
    ([_param(np.zeros(3), None)], TypeError, "grad must be a numpy array"),
    ([_param(np.zeros(3), np.array(["a", "b", "c"]))], TypeError, "grad must be a numeric array"),
    ([_param(np.zeros((4, 4))[:, ::2], np.zeros((4, 2)))], ValueError, "value must be a writable C-contiguous"),
])
def test_bad_params(params, exc, words):
    with pytest.raises(exc, match=words):
        gs.SGD().step(params)


def test_bad_params_write_nothing(rng):
    arena = make_arena(SHAPES, "float64", rng)
    set_grads(arena, draw_grads(SHAPES, 1, rng)[0])
    before = arena.params.copy()
    ro = np.zeros(3)
    ro.flags.writeable = False
    opt = gs.Adam()
    with pytest.raises(ValueError, match=r"params\[3\] \('ro'\): value must be a writable"):
        opt.step(params_of(arena) + [_param(ro, np.zeros(3), "ro")])
    np.testing.assert_array_equal(arena.params, before)
    assert opt.iterations == 0 and opt.state_dict()["state"] == {}
    with pytest.raises(ValueError, match="same storage as 'p0'; pass each parameter once"):
        opt.step(params_of(arena) + params_of(arena)[:1])
    np.testing.assert_array_equal(arena.params, before)


def test_state_dict_rejects_duplicate_names():
    opt = gs.SGD(momentum=0.9)
    opt.step([_param(np.zeros(2), np.ones(2), "weight")])
    opt.step([_param(np.zeros(3), np.ones(3), "weight")])
    with pytest.raises(ValueError, match="two parameters are named 'weight'"):
        opt.state_dict()


def _adam_sd(**changes):
    sd = {"type": "Adam", "hyper": {"lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
          "step": 1, "state": {"w": {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}}}
    sd.update(changes)
    return sd


@pytest.mark.parametrize("sd, exc, words", [
    ([1, 2], TypeError, "Adam.load_state_dict: state must be a dict"),
    ({"type": "Adam"}, ValueError, r"state is missing the keys \['hyper', 'state'\]"),
    (_adam_sd(type="SGD"), ValueError, "state is for a 'SGD' optimizer, not 'Adam'"),
    (_adam_sd(hyper=[0.1]), TypeError, r"state\['hyper'\] must be a dict"),
    (_adam_sd(hyper={"lr": 0.1, "amsgrad": True}), ValueError, r"unknown keys \['amsgrad'\]"),
    (_adam_sd(hyper={"lr": -0.1}), ValueError, "Adam: lr must be >= 0"),
    (_adam_sd(hyper={"betas": [0.9, 1.0]}), ValueError, r"betas\[1\]"),
    (_adam_sd(step=-1), ValueError, r"state\['step'\] must be >= 0"),
    (_adam_sd(state=[1]), TypeError, r"state\['state'\] must be a dict"),
    (_adam_sd(state={"w": 3}), TypeError, r"state\['state'\]\['w'\] must be a dict"),
    (_adam_sd(state={"w": {"step": 1, "exp_avg": np.zeros(3)}}), ValueError,
     r"\['w'\] must hold 'step' and \['exp_avg', 'exp_avg_sq'\]"),
    (_adam_sd(state={"w": {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3),
                           "max_exp_avg_sq": np.zeros(3)}}), ValueError, "must hold 'step' and"),
    (_adam_sd(state={"w": {"step": 0, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}}),
     ValueError, r"\['w'\]\['step'\] must be >= 1"),
    (_adam_sd(state={"w": {"step": 1, "exp_avg": np.array(["x"] * 3), "exp_avg_sq": np.zeros(3)}}),
     TypeError, r"\['w'\]\['exp_avg'\] must be a numeric array"),
])
def test_bad_state_dicts(sd, exc, words):
    opt = gs.Adam(lr=0.5)
    with pytest.raises(exc, match=words):
        opt.load_state_dict(sd)
    assert opt.lr == 0.5 and opt.iterations == 0  # nothing changed


def test_loaded_state_with_the_wrong_shape():
    opt = gs.Adam()
    p = _param(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match=r"loaded state 'w'\['exp_avg'\] has shape \(3,\), but the parameter has shape \(4,\)"):
        opt.load_state_dict(_adam_sd(), [p])
    assert opt.lr == 1e-3  # the failed load changed nothing
    opt.load_state_dict(_adam_sd())
    with pytest.raises(ValueError, match=r"Adam.step: loaded state 'w'"):
        opt.step([p])
    assert not p.value.any()


def test_get_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'; expected one of \['adam', 'adamw', 'rmsprop', 'sgd'\]"):
        gs.optim.get("adagrad")
    with pytest.raises(TypeError, match="optimizer must be a name"):
        gs.optim.get(3)
    with pytest.raises(TypeError, match="keyword arguments"):
        gs.optim.get(gs.Adam(), lr=0.1)
    with pytest.raises(ValueError, match="SGD: lr must be >= 0"):
        gs.optim.get("sgd", lr=-1.0)


def test_core_rejects_bad_arrays_directly():
    w = np.zeros(4, np.float32)
    g = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="adam_step: w must be float32 or float64"):
        _core.adam_step(np.zeros(4, np.int32), w, w, g, 0.1, 0.9, 0.99, 1e-8, 0.0, False, 1)
    with pytest.raises(TypeError, match="g must have dtype float32"):
        _core.sgd_step(w, None, g.astype(np.float64), 0.1, 0.0, 0.0, 0.0, False, 1)
    with pytest.raises(ValueError, match=r"m must have shape \(4,\), got \(5,\)"):
        _core.adam_step(w, np.zeros(5, np.float32), w.copy(), g, 0.1, 0.9, 0.99, 1e-8, 0.0, False, 1)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="rmsprop_step: w must be writable"):
        _core.rmsprop_step(ro, w, None, g, 0.1, 0.9, 1e-8, 0.0, 0.0, 1)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum != 0"):
        _core.sgd_step(w, None, g, 0.1, 0.9, 0.0, 0.0, False, 1)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum > 0"):
        _core.rmsprop_step(w, w.copy(), None, g, 0.1, 0.9, 1e-8, 0.5, 0.0, 1)
    with pytest.raises(ValueError, match="adam_step: step must be >= 1, got 0"):
        _core.adam_step(w, w.copy(), w.copy(), g, 0.1, 0.9, 0.99, 1e-8, 0.0, False, 0)
    with pytest.raises(ValueError, match="w must be C-contiguous"):
        _core.sgd_step(np.zeros((4, 4), np.float32)[:, ::2], None, np.zeros((4, 2), np.float32),
                       0.1, 0.0, 0.0, 0.0, False, 1)


def test_state_dies_with_its_arena(rng):
    import gc
    opt = gs.Adam()
    arena = make_arena(SHAPES, "float32", rng)
    opt.step(params_of(arena))
    assert len(opt._arenas) == 1
    del arena
    gc.collect()
    assert opt._arenas == {} and opt.state_dict()["state"] == {}


def test_a_parameter_that_is_not_its_arena_slot_is_updated_on_its_own(rng):
    arena = make_arena(SHAPES, "float64", rng)
    # Claims slot p1's offset but views other memory: must not be taken for the slot.
    fake = Parameter("fake", arena.params[:7], arena.grads[:7], arena, arena.slots["p1"][0])
    arena.grads[:7] = 1.0
    before = arena.params[:7].copy()
    opt = gs.SGD(lr=0.5)
    opt.step([fake])
    np.testing.assert_array_equal(arena.params[:7], before - 0.5)
    assert len(opt._loose) == 1 and not opt._arenas


def test_avx_loops_also_match_the_reference_where_avx512_is_chosen():
    # The optimizer loops are compiled for AVX and for AVX-512 and one is chosen at run time; on
    # an AVX-512 machine the test above checks the AVX-512 loops, so check the AVX ones here too.
    import os
    import subprocess
    import sys
    env = dict(os.environ, GRADSTEP_NO_AVX512="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                        "-k", "simd_kernel_matches_serial_reference"], env=env, capture_output=True,
                       text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout
