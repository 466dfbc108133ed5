from __future__ import annotations

import json

import numpy as np
import pytest

import gradstep as gs
from gradstep import _core, _random
from reference.dropout import dropout_mask, uniforms


def test_reference_generator_is_splitmix64():
    # The published SplitMix64 outputs for seed 1234567 (Vigna's splitmix64.c): the reference
    # implements the generator the kernel promises.
    from reference.dropout import splitmix64
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423]
    assert splitmix64(1234567, 3).tolist() == expected
    u = uniforms(0, 1000)
    assert u.min() >= 0.0 and u.max() < 1.0


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_mask_matches_reference_exactly(dtype, p, rng):
    x = rng.standard_normal((37, 29)).astype(dtype)
    seed = 2**62 + 12345
    y, mask = _core.dropout_forward(x, p, seed)
    ref = dropout_mask(x.shape, p, seed, dtype)
    assert mask.dtype == y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mask, ref)
    np.testing.assert_array_equal(y, x * ref)
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(_core.dropout_backward(dy, mask), dy * ref)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_statistics_of_the_mask(dtype, p):
    n = 400_000
    layer = gs.Dropout(p, seed=3)
    x = np.full(n, 2.0, dtype=dtype)
    y = layer.forward(x)
    kept = y != 0
    # The kept count is Binomial(n, 1-p): allow 5 standard deviations.
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    scale = np.dtype(dtype).type(1.0 / (1.0 - float(np.dtype(dtype).type(p))))
    np.testing.assert_array_equal(y[kept], x[kept] * scale)  # kept values scaled by 1/(1-p)
    # E[y] = x: the sample mean of y is within 5 standard errors of 2.
    se = 2.0 * np.sqrt(p / (1 - p) / n)
    assert abs(y.astype(np.float64).mean() - 2.0) < 5 * se
    # Masks of different elements are independent: neighbours agree as often as chance says.
    both = np.mean(kept[1:] & kept[:-1])
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 / n)


def test_kept_scale_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    for p in (0.1, 0.3, 0.5, 0.75):
        ours = gs.Dropout(p, seed=0).forward(np.ones(1000, dtype=dtype))
        theirs = torch.nn.functional.dropout(torch.ones(1000, dtype=getattr(torch, dtype)), p,
                                             training=True).numpy()
        assert np.unique(ours[ours != 0]).tolist() == np.unique(theirs[theirs != 0]).tolist()
        # Identity in evaluation, as torch's.
        x = np.arange(6.0, dtype=dtype)
        np.testing.assert_array_equal(gs.Dropout(p).forward(x, training=False),
                                      torch.nn.functional.dropout(torch.tensor(x), p,
                                                                  training=False).numpy())


def test_same_seed_same_masks_different_seed_different(rng):
    x = rng.standard_normal((50, 40))
    a, b, c = gs.Dropout(0.5, seed=7), gs.Dropout(0.5, seed=7), gs.Dropout(0.5, seed=8)
    ya = [a.forward(x) for _ in range(3)]
    yb = [b.forward(x) for _ in range(3)]
    yc = [c.forward(x) for _ in range(3)]
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(ya[0], ya[1])  # a fresh mask every call
    assert all(not np.array_equal(u, w) for u, w in zip(ya, yc))


def test_next_seed_is_the_per_call_seed(rng):
    """A whole-network step that calls `_next_seed()` and the kernel itself reproduces the
    layer's own masks, and the sequence stays in step."""
    x = rng.standard_normal((20, 30))
    layer, twin = gs.Dropout(0.3, seed=11), gs.Dropout(0.3, seed=11)
    y0 = layer.forward(x)
    y1, _ = _core.dropout_forward(x, 0.3, twin._next_seed())
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(layer.forward(x), twin.forward(x))
    assert _random.draw_seed(np.random.default_rng(11)) == gs.Dropout(0.3, seed=11)._next_seed()
    layer._reseed(11)
    np.testing.assert_array_equal(layer.forward(x), y0)


def test_library_seed_makes_unseeded_layers_reproducible(rng):
    x = rng.standard_normal((10, 10))
    layer = gs.Dropout(0.5)
    gs.seed(42)
    first = layer.forward(x)
    gs.seed(42)
    np.testing.assert_array_equal(layer.forward(x), first)
    gs.seed(43)
    assert not np.array_equal(layer.forward(x), first)


def test_mask_depends_only_on_flat_index(rng):
    x = rng.standard_normal((6, 5, 4))
    y3 = gs.Dropout(0.4, seed=1).forward(x)
    y1 = gs.Dropout(0.4, seed=1).forward(x.reshape(-1))
    assert y3.shape == (6, 5, 4)
    np.testing.assert_array_equal(y3.reshape(-1), y1)


def test_eval_is_identity_and_passes_gradient(dtype, rng):
    layer = gs.Dropout(0.5, seed=0)
    x = rng.standard_normal((4, 6)).astype(dtype)
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(y, x)
    assert y.dtype == np.dtype(dtype)
    dy = rng.standard_normal((4, 6))
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy.astype(dtype))
    assert dx.dtype == np.dtype(dtype)


def test_p_zero_is_identity_in_training(dtype, rng):
    layer = gs.Dropout(0.0, seed=0)
    x = rng.standard_normal((100, 50)).astype(dtype)
    np.testing.assert_array_equal(layer.forward(x), x)
    dy = rng.standard_normal((100, 50)).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_backward_uses_the_last_mask(dtype, rng):
    layer = gs.Dropout(0.5, seed=0)
    x = np.ones((30, 20), dtype=dtype)
    y = layer.forward(x)
    dy = rng.standard_normal((30, 20))
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy.astype(dtype) * y)  # y is the mask for x = 1
    assert dx.dtype == np.dtype(dtype)


def test_dtypes_and_layouts(rng):
    layer = gs.Dropout(0.5, seed=0)
    assert layer.forward(np.ones((3, 3), np.int64)).dtype == np.float32
    assert layer.forward(np.ones((3, 3), np.float16)).dtype == np.float32
    assert layer.forward(np.ones((3, 3))).dtype == np.float64
    x = rng.standard_normal((8, 12))
    strided = x[:, ::2]
    a, b, c = (gs.Dropout(0.5, seed=4) for _ in range(3))
    ref = a.forward(np.ascontiguousarray(strided))
    np.testing.assert_array_equal(b.forward(strided), ref)
    np.testing.assert_array_equal(c.forward(np.asfortranarray(strided)), ref)


def test_dropout_threads_bit_identical(dtype, rng):
    x = rng.standard_normal((300, 200)).astype(dtype)  # 60000 elements > kParallelMin
    dy = rng.standard_normal((300, 200)).astype(dtype)
    out = []
    for threads in (1, 2):
        gs.set_num_threads(threads)
        layer = gs.Dropout(0.3, seed=9)
        y = layer.forward(x)
        out.append((y, layer.backward(dy)))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0][0], x * dropout_mask(x.shape, 0.3,
                                                              gs.Dropout(0.3, seed=9)._next_seed(),
                                                              dtype))


def test_dropout_describes_itself():
    layer = gs.Dropout(0.25, seed=3)
    assert layer.get_config() == {"p": 0.25, "seed": 3}
    json.dumps(layer.get_config())
    assert repr(layer) == "Dropout(p=0.25, seed=3)"
    assert repr(gs.Dropout()) == "Dropout(p=0.5, seed=None)"
    assert layer.params == {} and layer.grads == {} and layer.buffers == {}
    assert layer.parameters() == []
    assert layer.output_features(7) == 7 and layer.input_features() is None
    assert gs.layers.LAYER_REGISTRY["Dropout"] is gs.Dropout
    assert "Dropout" in gs.__all__


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(p=1.0), ValueError, "p must be in"),
    (dict(p=-0.1), ValueError, "p must be in"),
    (dict(p=float("nan")), ValueError, "p must be finite"),
    (dict(p="0.5"), TypeError, "p must be a number"),
    (dict(p=True), TypeError, "p must be a number"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
])
def test_dropout_bad_constructor(kwargs, exc, words):
    with pytest.raises(exc, match=words) as info:
        gs.Dropout(**kwargs)
    assert str(info.value).startswith("Dropout: ")


def test_dropout_bad_input_and_backward_errors():
    layer = gs.Dropout(0.5)
    with pytest.raises(TypeError, match="Dropout.forward: x must be a numeric array"):
        layer.forward(np.full(3, "a"))
    with pytest.raises(ValueError, match="Dropout.forward: x must have at least one row"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="Dropout.backward: call forward before backward"):
        layer.backward(np.zeros(3))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(2, 3\)"):
        layer.backward(np.zeros(6))
    layer.forward(np.zeros((2, 3)), training=False)
    with pytest.raises(ValueError, match=r"grad_y must have the shape .*\(2, 3\)"):
        layer.backward(np.zeros((3, 2)))


def test_dropout_core_rejects_bad_arrays():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _core.dropout_forward(x.astype(np.int32), 0.5, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        _core.dropout_forward(x, 1.0, 0)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        _core.dropout_forward(np.zeros((4, 6), np.float32)[:, ::2], 0.5, 0)
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 3\)"):
        _core.dropout_backward(x, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="mask must have dtype float32"):
        _core.dropout_backward(x, np.zeros((4, 3)))
    with pytest.raises(TypeError):
        _core.dropout_forward(x, 0.5, -1)  # the seed is an unsigned 64-bit integer
