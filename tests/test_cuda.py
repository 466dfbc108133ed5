"""The CUDA backend (gradstep.cuda, gradstep._cuda).

Everywhere: the error path (no backend, no driver, no device: gs.CudaError, and the CPU keeps
working) and the device argument. With a GPU: every op, loss and optimizer against the CPU path
(float64 to 1e-10 relative to the array's scale, float32 to 1e-4), whole fits, device moves,
graph replay against plain launches, determinism, device-resident data, out of memory.
The per-element math the GPU shares with the CPU (core/math/*.hpp) is tested on every machine
through the CPU kernels that use it (test_activation, test_loss, test_optim, test_dropout).
"""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs

GPU = gs.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason=f"needs a CUDA GPU: {gs.cuda.unavailable_reason()}")

I, H, K = 12, 16, 5


# ---- everywhere ---------------------------------------------------------------------------------

def test_availability_is_reported_without_raising():
    assert isinstance(gs.cuda.is_available(), bool)
    n = gs.cuda.device_count()
    assert isinstance(n, int) and n >= 0
    assert gs.cuda.is_available() == (n > 0)
    assert (gs.cuda.unavailable_reason() == "") == (n > 0)
    assert issubclass(gs.CudaError, RuntimeError)


def test_device_argument_is_checked():
    model = gs.Sequential([gs.Dense(3, 2)], seed=0)
    for bad in ("tpu", "cuda:x", "gpu", 3):
        with pytest.raises(ValueError, match="device must be"):
            model.to(bad)
    assert model.device == "cpu"
    assert model.to("cpu") is model


@pytest.mark.skipif(GPU, reason="checks the behaviour without a usable GPU")
def test_no_gpu_gives_cuda_error_and_cpu_keeps_working():
    model = gs.Sequential([gs.Dense(4, 8), gs.ReLU(), gs.Dense(8, 3)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    with pytest.raises(gs.CudaError) as err:
        model.to("cuda")
    assert str(err.value)  # names the reason (no backend built, no driver, no device)
    assert model.device == "cpu"
    with pytest.raises(gs.CudaError):
        gs.cuda.to_device(np.zeros(3, np.float32))
    with pytest.raises(gs.CudaError):
        gs.cuda.get_device_name(0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    before = model.layers[0].params["weight"].copy()
    loss = model.train_step(x, y)
    assert np.isfinite(loss) and not np.array_equal(before, model.layers[0].params["weight"])


def test_backend_module_without_driver_reports_the_driver():
    """When the module is built but no driver is present (this kind of CI machine), the reason is
    the CUDA runtime's own: cudaErrorInsufficientDriver, or no device."""
    m = gs.cuda._load()
    if m is None:
        pytest.skip(gs.cuda._import_error)
    if GPU:
        assert m.device_error() == ""
        return
    reason = m.device_error()
    assert "cudaErrorInsufficientDriver" in reason or "cudaErrorNoDevice" in reason or "no CUDA device" in reason
    with pytest.raises(gs.CudaError, match="no usable CUDA device"):
        m.Network32([("Dense", 4, 3, [0, 12], {})], 16, 0)


# ---- with a GPU ---------------------------------------------------------------------------------

MIDDLE = {
    "relu": lambda: [gs.ReLU()],
    "sigmoid": lambda: [gs.Sigmoid()],
    "tanh": lambda: [gs.Tanh()],
    "leaky_relu": lambda: [gs.LeakyReLU(0.1)],
    "elu": lambda: [gs.ELU(0.7)],
    "identity": lambda: [gs.Identity()],
    "dropout": lambda: [gs.ReLU(), gs.Dropout(0.4, seed=7)],
    "batchnorm": lambda: [gs.BatchNorm(H), gs.ReLU()],
    "maxout": lambda: [gs.Maxout(H, H, pieces=3)],
    "prelu_shared": lambda: [gs.PReLU()],
    "prelu_per_feature": lambda: [gs.PReLU(H)],
    "softmax": lambda: [gs.Softmax()],
}


def build(middle, dtype, l2=0.0, bias=True):
    layers = [gs.Dense(I, H, l2=l2, bias=bias), *middle, gs.Dense(H, K, l2=l2)]
    return gs.Sequential(layers, dtype=dtype, seed=0)


def batches(dtype, steps=4, n=32, targets="labels", seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        x = rng.standard_normal((n, I)).astype(dtype)
        if targets == "labels":
            y = rng.integers(0, K, n)
        elif targets == "probs":
            y = rng.dirichlet(np.ones(K), n).astype(dtype)
        elif targets == "binary":
            y = (rng.random((n, K)) < 0.5).astype(dtype)
        else:
            y = rng.standard_normal((n, K)).astype(dtype)
        out.append((x, y))
    return out


def assert_close(a, b, dtype, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    err = float(np.abs(a - b).max(initial=0.0))
    assert err <= rtol * scale, f"{what}: max |cpu - gpu| = {err:.3g} (scale {scale:.3g}, rtol {rtol})"


def run_pair(make_model, make_opt, loss, data, dtype):
    """The same steps on the CPU and on the GPU; the losses and then every parameter, buffer and
    output are compared."""
    cpu, gpu = make_model(), make_model()
    cpu.compile(loss(), make_opt())
    gpu.compile(loss(), make_opt())
    gpu.to("cuda")
    for t, (x, y) in enumerate(data):
        lc, lg = cpu.train_step(x, y), gpu.train_step(x, y)
        assert_close(lc, lg, dtype, f"loss at step {t}")
    assert_close(cpu._train_output(), gpu._train_output(), dtype, "last outputs")
    sc, sg = cpu.state_dict(), gpu.state_dict()
    assert sc.keys() == sg.keys()
    for k in sc:
        assert_close(sc[k], sg[k], dtype, k)
    return cpu, gpu


DTYPES = [np.float64, np.float32]


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(MIDDLE))
def test_every_op_matches_the_cpu(op, dtype):
    run_pair(lambda: build(MIDDLE[op](), dtype), lambda: gs.SGD(lr=0.1, momentum=0.9),
             gs.SoftmaxCrossEntropy, batches(dtype), dtype)


LOSSES = {
    "softmax_labels": (gs.SoftmaxCrossEntropy, "labels", []),
    "softmax_probs": (gs.SoftmaxCrossEntropy, "probs", []),
    "mse": (gs.MSE, "real", []),
    "bce": (gs.BinaryCrossEntropy, "binary", [gs.Sigmoid()]),
    "bce_logits": (lambda: gs.BinaryCrossEntropy(from_logits=True), "binary", []),
    "nll": (gs.NLL, "labels", [gs.Softmax()]),
}


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_matches_the_cpu(name, dtype):
    loss, targets, tail = LOSSES[name]

    def make():
        return gs.Sequential([gs.Dense(I, H), gs.Tanh(), gs.Dense(H, K), *tail], dtype=dtype, seed=0)
    run_pair(make, lambda: gs.SGD(lr=0.05), loss, batches(dtype, targets=targets), dtype)


OPTIMIZERS = {
    "sgd": lambda: gs.SGD(lr=0.1),
    "sgd_nesterov_wd": lambda: gs.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": lambda: gs.RMSprop(lr=1e-3),
    "rmsprop_momentum": lambda: gs.RMSprop(lr=1e-3, momentum=0.9, weight_decay=1e-3),
    "adam": lambda: gs.Adam(lr=1e-3),
    "adamw": lambda: gs.AdamW(lr=1e-3, weight_decay=0.1),
}


@needs_gpu
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_matches_the_cpu_float64(name):
    # float64 only: an adaptive step divides by √v, so float32 gradients that differ in their
    # last bits between the two GEMM libraries can move a parameter by up to lr on the first steps.
    run_pair(lambda: build([gs.ReLU()], np.float64, l2=1e-3), OPTIMIZERS[name],
             gs.SoftmaxCrossEntropy, batches(np.float64), np.float64)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_without_bias_and_l2(dtype):
    run_pair(lambda: build([gs.ReLU()], dtype, l2=0.01, bias=False), lambda: gs.SGD(lr=0.1),
             gs.SoftmaxCrossEntropy, batches(dtype), dtype)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_of_image_input_matches_the_cpu(dtype):
    rng = np.random.default_rng(2)
    data = [(rng.standard_normal((16, 3, 2, 2)).astype(dtype), rng.integers(0, K, 16)) for _ in range(3)]

    def make():
        return gs.Sequential([gs.Flatten(), gs.Dense(I, H), gs.ReLU(), gs.Dense(H, K)], dtype=dtype,
                             seed=0, input_shape=(3, 2, 2))
    run_pair(make, lambda: gs.SGD(lr=0.1), gs.SoftmaxCrossEntropy, data, dtype)


@needs_gpu
def test_layers_without_a_cuda_kernel_are_named():
    model = gs.Sequential([gs.Conv2D(3, 4, 3), gs.Flatten(), gs.Dense(4 * 4 * 4, K)], seed=0,
                          input_shape=(3, 6, 6))
    with pytest.raises(ValueError, match="Conv2D"):
        model.to("cuda")
    assert model.device == "cpu"


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_matches_the_cpu(dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, I)).astype(dtype)
    y = (X[:, :K].argmax(1)).astype(np.int64)

    def make():
        return gs.Sequential([gs.Dense(I, H), gs.BatchNorm(H), gs.ReLU(), gs.Dropout(0.2),
                              gs.Dense(H, K)], dtype=dtype, seed=0)
    hist = {}
    for device in ("cpu", "cuda"):
        model = make()
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2) if dtype == np.float64 else gs.SGD(lr=0.1),
                      metrics=["accuracy"])
        model.to(device)
        hist[device] = model.fit(X, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0, seed=5)
        hist[device + "_pred"] = model.predict(X[:50])
    for key in ("loss", "val_loss", "accuracy"):
        assert_close(hist["cpu"][key], hist["cuda"][key], dtype, key)
    assert_close(hist["cpu_pred"], hist["cuda_pred"], dtype, "predictions")
    assert hist["cuda"]["loss"][-1] < hist["cuda"]["loss"][0]


@needs_gpu
def test_moves_save_and_load_keep_the_values(tmp_path):
    model = build([gs.BatchNorm(H), gs.ReLU()], np.float32)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    data = batches(np.float32, steps=3)
    model.to("cuda")
    assert model.device == "cuda:0"
    for x, y in data:
        model.train_step(x, y)
    model.save(tmp_path / "m.safetensors")  # reads the newest values back from the device
    on_gpu = model.state_dict()
    model.to("cpu")
    assert model.device == "cpu"
    back = model.state_dict()
    for k in on_gpu:
        np.testing.assert_array_equal(on_gpu[k], back[k])
    loaded = gs.load(tmp_path / "m.safetensors")
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(v, back[k])
    # The loaded model (optimizer state included) continues on the GPU exactly as the original
    # continues on the GPU.
    model.to("cuda")
    loaded.to("cuda")
    x, y = data[0]
    assert model.train_step(x, y) == loaded.train_step(x, y)
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(v, model.state_dict()[k])


@needs_gpu
def test_load_state_dict_on_the_device_is_used_by_the_next_step():
    a, b = build([gs.ReLU()], np.float64), build([gs.ReLU()], np.float64)
    for m in (a, b):
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    b.to("cuda")
    new = {k: v + 0.5 for k, v in a.state_dict().items()}
    a.load_state_dict(new)
    b.load_state_dict(new)
    x, y = batches(np.float64, steps=1)[0]
    assert_close(a.train_step(x, y), b.train_step(x, y), np.float64, "loss after load_state_dict")


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_replay_equals_plain_launches_and_repeats(dtype):
    results = []
    for graphs in (True, False, True):
        model = build([gs.BatchNorm(H), gs.ReLU(), gs.Dropout(0.3, seed=1)], dtype)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        model.to("cuda")
        engine = model._on_device()
        engine.net.set_use_graphs(graphs)
        losses = [model.train_step(x, y) for x, y in batches(dtype, steps=5)]
        losses += [model.train_step(x[:7], y[:7]) for x, y in batches(dtype, steps=2)]  # a 2nd size
        assert engine.net.graphs == (2 if graphs else 0)
        results.append((losses, model.state_dict()))
    for losses, state in results[1:]:
        assert losses == results[0][0]
        for k in state:
            np.testing.assert_array_equal(state[k], results[0][1][k])


@needs_gpu
def test_device_resident_batches_equal_host_batches():
    data = batches(np.float32, steps=3)
    a, b = build([gs.ReLU()], np.float32), build([gs.ReLU()], np.float32)
    for m in (a, b):
        m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        m.to("cuda")
    for x, y in data:
        la = a.train_step(x, y)
        lb = b.train_step(gs.cuda.to_device(x), gs.cuda.to_device(y))
        assert la == lb
    d = gs.cuda.to_device(data[0][0])
    assert d.shape == data[0][0].shape and d.dtype == np.float32
    np.testing.assert_array_equal(d.numpy(), data[0][0])


@needs_gpu
def test_bad_inputs_raise_before_the_device_runs():
    model = build([gs.ReLU()], np.float32)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    model.to("cuda")
    x = np.zeros((4, I), np.float32)
    with pytest.raises(ValueError, match="features"):
        model.train_step(np.zeros((4, I + 1), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model.train_step(x, np.array([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="same number"):
        model.train_step(x, np.array([0, 1]))
    with pytest.raises(IndexError, match="idx"):
        data = model._on_device().upload(x, np.zeros(4, np.int64))
        model._on_device().step_indices(data, np.array([0, 4]))
    assert np.isfinite(model.train_step(x, np.array([0, 1, 2, 3])))


@needs_gpu
def test_out_of_device_memory_is_a_cuda_error_and_the_process_goes_on():
    from gradstep import _cuda
    with pytest.raises(gs.CudaError, match="out of device memory"):
        _cuda.Network32([("Dense", 4, 3, [0, 12], {})], 1 << 42, 0)  # 16 TiB of parameters
    model = build([gs.ReLU()], np.float32)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    model.to("cuda")
    x, y = batches(np.float32, steps=1)[0]
    assert np.isfinite(model.train_step(x, y))


@needs_gpu
def test_unsupported_layers_are_named():
    class MyLayer(gs.ReLU):  # its own forward: not the C++ op any more
        def forward(self, x, training=True):
            return super().forward(x, training)
    model = gs.Sequential([gs.Dense(3, 4), MyLayer(), gs.Dense(4, 2)], seed=0)
    with pytest.raises(ValueError, match="MyLayer"):
        model.to("cuda")
    assert model.device == "cpu"
