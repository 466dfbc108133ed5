"""The one op interface: every layer kind is a C++ op that a lone layer and the fused step share.

Checks that the C++ op registry and the Python layer classes pair up exactly, that the fused step
(every op, Maxout/PReLU/Softmax/Flatten included) gives the bits of the layer-by-layer path, that
the split step (forward_backward, update) equals train_step, shape inference and its errors, and
that the network binding refuses what it cannot run safely.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core
from gradstep.layers import OP_LAYERS


def test_every_op_kind_has_one_layer_class_and_back():
    assert set(_core.op_kinds()) == set(OP_LAYERS)
    for kind, cls in OP_LAYERS.items():
        assert cls.op_kind == kind


def test_the_pairing_check_names_what_is_unpaired(monkeypatch):
    from gradstep import layers
    monkeypatch.delitem(OP_LAYERS, "Softmax")
    with pytest.raises(ImportError, match=r"C\+\+ ops without a layer class: \['Softmax'\]"):
        layers.check_op_pairing()


# Models that together use every registered op; test_models_cover_every_op checks that.
def _models():
    return {
        "dense_bn_dropout": (lambda: [gs.Dense(6, 8, l2=1e-2), gs.BatchNorm(8), gs.ReLU(), gs.Dropout(0.3),
                                      gs.Dense(8, 4)], (6,), "labels"),
        "maxout_prelu": (lambda: [gs.Dense(6, 8), gs.PReLU(8), gs.Maxout(8, 5, pieces=3), gs.PReLU(),
                                  gs.Dense(5, 4)], (6,), "labels"),
        "softmax_nll": (lambda: [gs.Dense(6, 7), gs.Tanh(), gs.Dense(7, 4), gs.Softmax()], (6,), "nll"),
        "flatten_nd": (lambda: [gs.Sigmoid(), gs.Dropout(0.2), gs.Flatten(), gs.Dense(12, 5), gs.ELU(0.5),
                                gs.LeakyReLU(0.2), gs.Identity(), gs.Dense(5, 2)], (2, 3, 2), "mse"),
        "conv2d": (lambda: [gs.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), l2=1e-2),
                            gs.BatchNorm(3), gs.ReLU(), gs.MaxPool2D(2, stride=1, padding=1),
                            gs.Conv2D(3, 4, 1, bias=False), gs.Dropout(0.2), gs.AvgPool2D(2, stride=1),
                            gs.Flatten(), gs.Dense(4)], (2, 7, 6), "labels"),
        "conv1d": (lambda: [gs.Conv1D(2, 3, 3, padding="same"), gs.Tanh(), gs.MaxPool1D(2),
                            gs.Conv1D(3, 4, 2, stride=2), gs.BatchNorm(4), gs.AvgPool1D(2, stride=1, padding=1),
                            gs.GlobalAvgPool(), gs.Dense(4, 4)], (2, 11), "labels"),
    }


def test_models_cover_every_op():
    used = {layer.op_kind for build, _, _ in _models().values() for layer in build()}
    assert used == set(_core.op_kinds())


def _data(rng, shape, kind, n=24):
    X = rng.standard_normal((n, *shape))
    if kind == "mse":
        return X, gs.MSE(), rng.standard_normal((n, 2))
    loss = gs.NLL() if kind == "nll" else gs.SoftmaxCrossEntropy()
    return X, loss, rng.integers(0, 4, n)


@pytest.mark.parametrize("name", sorted(_models()))
@pytest.mark.parametrize("opt", [lambda: gs.Adam(lr=1e-2), lambda: gs.SGD(lr=0.05, momentum=0.9)])
def test_fused_step_gives_the_bits_of_the_layer_path(dtype, name, opt, rng):
    build, shape, kind = _models()[name]
    X, loss, y = _data(rng, shape, kind)
    fused, plain = gs.Sequential(build(), dtype=dtype, seed=4), gs.Sequential(build(), dtype=dtype, seed=4)
    for m in (fused, plain):
        m.compile(type(loss)(), opt())
    plain.use_engine = False
    for s in range(3):
        xb, yb = X[s * 8:(s + 1) * 8], y[s * 8:(s + 1) * 8]
        assert fused.train_step(xb, yb) == plain.train_step(xb, yb)
    assert fused._engine, "the fused step should run every built-in op"
    assert plain._engine is not None and not plain.use_engine
    for key, v in fused.state_dict().items():
        np.testing.assert_array_equal(v, plain.state_dict()[key], err_msg=key)
    np.testing.assert_array_equal(fused.predict(X), plain.predict(X))


@pytest.mark.parametrize("name", sorted(_models()))
def test_fused_step_bit_identical_for_1_and_2_threads(name, rng):
    build, shape, kind = _models()[name]
    X, loss, y = _data(rng, shape, kind, n=64)
    X = np.repeat(X, 40, axis=0)  # big enough for the kernels' parallel paths
    y = np.repeat(y, 40, axis=0)
    results = []
    try:
        for threads in (1, 2):
            gs.set_num_threads(threads)
            m = gs.Sequential(build(), seed=2)
            m.compile(type(loss)(), gs.Adam(lr=1e-2))
            losses = [m.train_step(X[i::3], y[i::3]) for i in range(3)]
            results.append((losses, m.state_dict()))
    finally:
        gs.set_num_threads(1)
    assert results[0][0] == results[1][0]
    for k in results[0][1]:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


@pytest.mark.parametrize("use_engine", [True, False])
def test_forward_backward_then_update_is_train_step(use_engine, rng):
    build, shape, kind = _models()["maxout_prelu"]
    X, loss, y = _data(rng, shape, kind)
    whole, halves = gs.Sequential(build(), seed=1), gs.Sequential(build(), seed=1)
    for m in (whole, halves):
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
        m.use_engine = use_engine
    for s in range(3):
        xb, yb = X[s * 8:(s + 1) * 8], y[s * 8:(s + 1) * 8]
        a = whole.train_step(xb, yb)
        b = halves.forward_backward(xb, yb)
        np.testing.assert_array_equal(halves.arena.grads, whole.arena.grads)  # the same gradients
        halves.update()
        assert a == b
    np.testing.assert_array_equal(halves.arena.params, whole.arena.params)
    assert halves.optimizer.iterations == whole.optimizer.iterations == 3


def test_update_uses_the_gradient_buffer_as_it_is_then(rng):
    # What data parallelism does: two replicas compute gradients on their own halves of a batch,
    # average the flat buffers, and each updates; both then hold the same parameters.
    X, y = rng.standard_normal((16, 6)), rng.integers(0, 4, 16)
    a, b = (gs.Sequential([gs.Dense(6, 8), gs.ReLU(), gs.Dense(8, 4)], dtype="float64", seed=0) for _ in range(2))
    for m in (a, b):
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    a.forward_backward(X[:8], y[:8])
    b.forward_backward(X[8:], y[8:])
    mean = (a.arena.grads + b.arena.grads) / 2
    before = a.arena.params.copy()
    a.arena.grads[...] = mean
    b.arena.grads[...] = mean
    a.update()
    b.update()
    np.testing.assert_array_equal(a.arena.params, b.arena.params)
    np.testing.assert_allclose(a.arena.params, before - 0.1 * mean, rtol=0, atol=1e-15)


def test_shape_inference_builds_lazy_layers_and_summary(rng):
    model = gs.Sequential([gs.Flatten(), gs.Dense(10), gs.ReLU(), gs.Dense(3)], input_shape=(2, 3, 4), seed=0)
    assert model.layers[1].in_features == 24
    assert model.layers[1].params["weight"].shape == (24, 10)
    s = model.summary()
    assert "(N, 24)" in s and "(N, 10)" in s and "(N, 3)" in s and "input: (N, 2, 3, 4)" in s
    assert "Total parameters: 283" in s  # 24·10 + 10 + 10·3 + 3
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    X, y = rng.standard_normal((40, 2, 3, 4)), rng.integers(0, 3, 40)
    h = model.fit(X, y, epochs=20, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert model.predict(X).shape == (40, 3)
    with pytest.raises(ValueError, match=r"per-sample shape \(2, 3, 4\)"):
        model.predict(rng.standard_normal((4, 2, 4, 3)))
    with pytest.raises(ValueError, match="4-D"):
        model.predict(rng.standard_normal((4, 24)))


def test_input_shape_from_the_first_batch(rng):
    model = gs.Sequential([gs.Flatten(), gs.Dense(5), gs.Tanh(), gs.Dense(2)], seed=0)
    assert model.input_shape is None and "(N, ?)" in model.summary()
    model.compile(gs.MSE(), gs.SGD(lr=0.01))
    model.fit(rng.standard_normal((12, 3, 2)), rng.standard_normal((12, 2)), epochs=1, verbose=0)
    assert model.input_shape == (3, 2) and model.layers[1].in_features == 6
    assert model._engine


def test_a_mismatch_raises_at_build_naming_both_layers_and_the_right_number():
    with pytest.raises(ValueError) as info:
        gs.Sequential([gs.Flatten(), gs.Dense(100, 10)], input_shape=(2, 3, 4))
    msg = str(info.value)
    assert "layer 1 (Dense" in msg and "layer 0 (Flatten" in msg and "(N, 24)" in msg
    assert "expects 100 input features, got 24" in msg
    with pytest.raises(ValueError, match=r"Dense: input must be \(features,\).*Flatten"):
        gs.Sequential([gs.Dense(5)], input_shape=(2, 3))
    model = gs.Sequential([gs.Dense(4, 6), gs.ReLU()])
    with pytest.raises(ValueError, match=r"layer 2 \(Maxout.*layer 0 \(Dense.*expects 5 input features, got 6"):
        model.add(gs.Maxout(5, 2))
    assert len(model.layers) == 2  # the failed add left the model as it was
    model.add(gs.Dense(6, 2))
    assert model.out_features == 2 and len(model.parameters()) == 4


def test_sequential_add_equals_the_list_constructor(rng):
    a = gs.Sequential([gs.Dense(4, 6), gs.ReLU(), gs.Dense(6, 2)], seed=3)
    b = gs.Sequential(seed=3)
    for layer in (gs.Dense(4, 6), gs.ReLU(), gs.Dense(6, 2)):
        b.add(layer)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_a_lone_lazy_dense_builds_on_its_first_input(rng):
    layer = gs.Dense(3, dtype="float64", seed=0)
    assert layer.params == {} and layer.in_features is None
    x = rng.standard_normal((5, 7))
    y = layer.forward(x)
    assert layer.params["weight"].shape == (7, 3) and y.shape == (5, 3)
    np.testing.assert_allclose(y, x @ layer.params["weight"] + layer.params["bias"], rtol=1e-12)


def _ops(kind, attrs, slots=(), bufs=()):
    return [(kind, attrs, list(slots), list(bufs))]


def test_network_binding_refuses_what_it_cannot_run():
    p = _core.alloc_zeros(64, np.float32)
    g = _core.alloc_zeros(64, np.float32)
    args = dict(in_shape=(4,), loss="mse", opt="sgd", params=p, grads=g, state0=None, state1=None)
    with pytest.raises(ValueError, match="unknown op kind 'Conv9D'"):
        _core.Network(_ops("Conv9D", {}), **args)
    with pytest.raises(ValueError, match="expects 5 input features, got 4"):
        _core.Network(_ops("Dense", {"in_features": 5, "out_features": 2}, [("weight", 0, (5, 2))]), **args)
    with pytest.raises(ValueError, match="'weight' of shape \\(4, 2\\)"):
        _core.Network(_ops("Dense", {"in_features": 4, "out_features": 2, "bias": False},
                           [("weight", 0, (2, 4))]), **args)
    with pytest.raises(ValueError, match="outside the parameter buffer"):
        _core.Network(_ops("Dense", {"in_features": 4, "out_features": 20, "bias": False},
                           [("weight", 0, (4, 20))]), **args)
    with pytest.raises(ValueError, match="missing attribute 'p'"):
        _core.Network(_ops("Dropout", {}), **args)
    with pytest.raises(ValueError, match="Dropout: p must be in"):
        _core.Network(_ops("Dropout", {"p": 1.5}), **args)
    with pytest.raises(ValueError, match="1 to 3 axes"):
        _core.Network(_ops("ReLU", {}), **{**args, "in_shape": (1, 2, 3, 4)})
    bn = _ops("BatchNorm", {"num_features": 4, "momentum": 0.1, "eps": 1e-5},
              [("gamma", 0, (4,)), ("beta", 16, (4,))], [np.zeros(4, np.float32), np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"running_var must have shape \(4,\)"):
        _core.Network(bn, **args)
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    bn[0][3][1] = frozen
    with pytest.raises(ValueError, match="writable"):
        _core.Network(bn, **args)
    with pytest.raises(TypeError, match="attribute 'p' must be a number"):
        _core.Network(_ops("Dropout", {"p": "half"}), **args)


def test_running_statistics_made_read_only_after_construction_refuse_the_step(rng):
    model = gs.Sequential([gs.Dense(4, 6), gs.BatchNorm(6), gs.Dense(6, 2)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 2, 8)
    model.train_step(X, y)
    rm = model.layers[1].buffers["running_mean"]
    before = rm.copy()
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        model.train_step(X, y)
    np.testing.assert_array_equal(rm, before)  # nothing written through the read-only array
    with pytest.raises(ValueError, match="running_mean must be writable"):
        model.layers[1].forward(rng.standard_normal((8, 6)), training=True)


def test_lone_op_runner_checks_everything(rng):
    r = _core.OpRunner("Dense", {"in_features": 3, "out_features": 2}, (3,), "float64",
                       [("weight", 0, (3, 2)), ("bias", 8, (2,))])
    p, g = np.zeros(16), np.zeros(16)
    with pytest.raises(ValueError, match="call forward before backward"):
        r.backward(np.zeros((2, 2)), p, g, [])
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\)"):
        r.forward(np.zeros((2, 4)), p, g, [], True)
    with pytest.raises(ValueError, match="outside params"):
        r.forward(np.zeros((2, 3)), np.zeros(9), np.zeros(9), [], True)
    with pytest.raises(TypeError, match="float64"):
        r.forward(np.zeros((2, 3), np.float32), p, g, [], True)
    y = r.forward(np.ones((2, 3)), p, g, [], True)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 2\)"):
        r.backward(np.zeros((3, 2)), p, g, [])
    assert y.shape == (2, 2)


def test_a_failed_allocation_keeps_the_last_batch_outputs():
    # Under an address-space limit, a batch whose workspace cannot be allocated raises MemoryError;
    # the network keeps its old workspace, so output() still describes the last completed batch.
    code = textwrap.dedent("""
        import resource, numpy as np, gradstep as gs
        model = gs.Sequential([gs.Dense(1, 4000), gs.ReLU(), gs.Dense(4000, 1)], seed=0)
        model.compile(gs.MSE(), gs.SGD(lr=0.0))
        x = np.ones((3, 1), np.float32)
        model.train_step(x, np.zeros((3, 1), np.float32))
        net = model._engine.nets["mse"]
        out = net.output()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), hard))
        big = np.ones((200_000, 1), np.float32)   # 200k x 4000 floats of activations: 3.2 GB
        try:
            model.train_step(big, np.zeros((200_000, 1), np.float32))
        except MemoryError:
            print("MemoryError")
        assert net.last_batch == 3, net.last_batch
        assert np.array_equal(net.output(), out)
        assert net.layer_stats(1)["mean"] >= 0
        print("ok")
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MemoryError", "ok"]


def test_network_calls_with_wrong_types_raise_type_errors(rng):
    model = gs.Sequential([gs.Dense(4, 6), gs.Dropout(0.5), gs.Dense(6, 3)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    X, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    model.train_step(X, y)
    net = model._engine.nets["softmax_xent"]
    with pytest.raises(TypeError, match="dropout_seeds"):
        net.forward_backward(X, y, None, ["seed"])
    with pytest.raises(TypeError, match="labels must be a numpy array"):
        net.forward_backward(X, [0, 1, 2, 0, 1, 2, 0, 1], None, [1])
    with pytest.raises(TypeError, match="hyper"):
        net.update(["a", 0, 0, 0, 0], 2)
    with pytest.raises(TypeError, match="attribute names must be strings"):
        _core.op_info("Dense", {1: 2}, (4,))
    with pytest.raises(TypeError, match="Network: each op must be"):
        _core.Network([("ReLU", {}, [("w", "x", (1,))], [])], (4,), "mse", "sgd",
                      model.arena.params, model.arena.grads, None, None)


def test_a_network_used_from_two_threads_refuses_instead_of_racing(rng):
    import threading
    model = gs.Sequential([gs.Dense(64, 256), gs.ReLU(), gs.Dense(256, 10)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.01))
    X, y = rng.standard_normal((512, 64)).astype(np.float32), rng.integers(0, 10, 512)
    model.train_step(X[:8], y[:8])
    net = model._engine.nets["softmax_xent"]
    hyper = model.optimizer.kernel_hyper()
    errors: list[Exception] = []

    def steps():
        for i in range(30):
            try:
                net.train_step(X, y, None, [], hyper, i + 2)
            except ValueError as e:
                errors.append(e)

    t = threading.Thread(target=steps)
    t.start()
    while t.is_alive():
        for call in (net.output, lambda: net.layer_stats(1), lambda: net.forward_backward(X[:4], y[:4], None, [])):
            try:
                call()
            except ValueError as e:
                errors.append(e)
    t.join()
    assert all("another thread" in str(e) for e in errors), errors[:3]
    assert net.output().shape[1] == 10
