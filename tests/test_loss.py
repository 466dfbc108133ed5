from __future__ import annotations

import json

import numpy as np
import pytest

import gradstep as gs
from conftest import TOL_BACKWARD
from gradcheck_util import numeric_grad, rel_error
from reference import loss as ref

KINDS = ["mse", "bce", "bce_logits", "sce_labels", "sce_soft", "nll"]

# Forwards compute every term in double from the (float32-rounded) inputs and sum in double, so
# even in float32 the value differs from the float64 reference by summation order only.
TOL_VALUE = dict(rtol=1e-12, atol=1e-12)
# A float32 gradient is the double result rounded once to float32 (the softmax ones twice: probs
# are stored as float32): a few float32 ulps of the gradient's scale.
TOL_GRAD = {
    "float64": TOL_BACKWARD["float64"],
    "float32": dict(rtol=1e-6, atol=1e-8),
}


def _softmax_rows(rng, N, K, scale=2.0):
    z = scale * rng.standard_normal((N, K))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_case(kind, rng, N=13, K=5):
    """(loss, pred (float64), target, reference function) for one kind of loss."""
    if kind == "mse":
        return gs.MSE(), rng.standard_normal((N, K)), rng.standard_normal((N, K)), ref.mse
    if kind == "bce":
        return (gs.BinaryCrossEntropy(), rng.uniform(0.02, 0.98, (N, K)), rng.uniform(0, 1, (N, K)),
                ref.bce)
    if kind == "bce_logits":
        return (gs.BinaryCrossEntropy(from_logits=True), 3 * rng.standard_normal((N, K)),
                rng.uniform(0, 1, (N, K)), ref.bce_logits)
    if kind == "sce_labels":
        return (gs.SoftmaxCrossEntropy(), 2 * rng.standard_normal((N, K)), rng.integers(0, K, N),
                ref.softmax_xent)
    if kind == "sce_soft":
        return (gs.SoftmaxCrossEntropy(), 2 * rng.standard_normal((N, K)), _softmax_rows(rng, N, K),
                ref.softmax_xent_soft)
    if kind == "nll":
        return gs.NLL(), _softmax_rows(rng, N, K, 1.0), rng.integers(0, K, N), ref.nll
    raise AssertionError(kind)


def _cast_target(target, dtype):
    return target if target.dtype.kind == "i" else target.astype(dtype)


# ---- against the float64 reference --------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1, 1), (13, 5), (64, 33), (3, 600)])  # 600 > kRowBuf
def test_matches_reference(kind, shape, dtype, rng):
    loss, pred, target, fn = make_case(kind, rng, *shape)
    p, t = pred.astype(dtype), _cast_target(target, dtype)
    value = loss.forward(p, t)
    grad = loss.backward()
    assert isinstance(value, float)
    assert grad.dtype == np.dtype(dtype) and grad.shape == p.shape
    rvalue, rgrad = fn(p, t)
    np.testing.assert_allclose(value, rvalue, **TOL_VALUE)
    np.testing.assert_allclose(grad, rgrad, **TOL_GRAD[dtype])


def test_mse_any_shape(dtype, rng):
    for shape in [(7,), (2, 3, 4), ()]:
        p, t = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
        loss = gs.MSE()
        value = loss.forward(p, t)
        grad = loss.backward()
        rvalue, rgrad = ref.mse(p, t)
        np.testing.assert_allclose(value, rvalue, **TOL_VALUE)
        np.testing.assert_allclose(grad, rgrad, **TOL_GRAD[dtype])
        assert grad.shape == np.shape(p)


def test_bce_hard_targets_and_integer_targets(dtype, rng):
    p = rng.uniform(0.01, 0.99, (20, 3)).astype(dtype)
    t = rng.integers(0, 2, (20, 3))
    loss = gs.BinaryCrossEntropy()
    value = loss.forward(p, t)
    assert value == loss.forward(p, t.astype(dtype))
    np.testing.assert_allclose(value, ref.bce(p, t)[0], **TOL_VALUE)


def test_backward_can_be_repeated_and_forward_replaces_it(rng):
    for kind in KINDS:
        loss, pred, target, _ = make_case(kind, rng)
        loss.forward(pred, target)
        g1 = loss.backward()
        np.testing.assert_array_equal(loss.backward(), g1)
        loss.forward(pred * 0.5, target)
        assert not np.array_equal(loss.backward(), g1), kind


# ---- gradient checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind, rng):
    loss, pred, target, _ = make_case(kind, rng, N=6, K=4)
    pred = np.ascontiguousarray(pred)
    loss.forward(pred, target)
    analytic = loss.backward()
    numeric = numeric_grad(lambda: loss.forward(pred, target), pred)
    assert rel_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("kind", ["bce_logits", "sce_labels", "sce_soft"])
def test_gradcheck_fused_against_composition(kind, rng):
    """The fused losses' logit gradient also equals the finite differences of the unfused
    composition (sigmoid then BCE on probabilities, softmax then the probability loss)."""
    loss, x, target, _ = make_case(kind, rng, N=5, K=3)
    loss.forward(x, target)
    analytic = loss.backward()
    if kind == "bce_logits":
        def f():
            return gs.BinaryCrossEntropy().forward(1 / (1 + np.exp(-x)), target)
    elif kind == "sce_labels":
        def f():
            return gs.NLL().forward(ref.softmax(x), target)
    else:
        def f():
            return -np.sum(target * np.log(ref.softmax(x))) / x.shape[0]
    assert rel_error(analytic, numeric_grad(f, x)) < 1e-6


# ---- PyTorch parity -----------------------------------------------------------------------------

def _torch_value_grad(kind, pred, target):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tp = torch.tensor(pred, requires_grad=True)
    tt = torch.tensor(target)
    if kind == "mse":
        out = F.mse_loss(tp, tt)
    elif kind == "bce":
        out = F.binary_cross_entropy(tp, tt)
    elif kind == "bce_logits":
        out = F.binary_cross_entropy_with_logits(tp, tt)
    elif kind in ("sce_labels", "sce_soft"):
        out = F.cross_entropy(tp, tt)
    elif kind == "nll":
        out = F.nll_loss(torch.log(tp), tt)
    else:
        raise AssertionError(kind)
    out.backward()
    return out.item(), tp.grad.numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind, dtype, rng):
    loss, pred, target, _ = make_case(kind, rng, N=17, K=6)
    p, t = pred.astype(dtype), _cast_target(target, dtype)
    value = loss.forward(p, t)
    grad = loss.backward()
    tvalue, tgrad = _torch_value_grad(kind, p, t)
    assert tgrad.dtype == grad.dtype
    if dtype == "float64":
        np.testing.assert_allclose(value, tvalue, **TOL_BACKWARD[dtype])
        np.testing.assert_allclose(grad, tgrad, **TOL_BACKWARD[dtype])
    else:
        # torch computes in float32 (float logs, exps and sums), this library in double rounded
        # once: they agree to ~2e-7 of the gradient's scale; 1e-6 stated.
        np.testing.assert_allclose(value, tvalue, rtol=1e-6)
        np.testing.assert_allclose(grad, tgrad, rtol=1e-5, atol=1e-6 * np.abs(tgrad).max())


# ---- numerical edge cases -----------------------------------------------------------------------

def test_softmax_xent_huge_logits(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 1e4]], dtype)
    y = np.array([0, 0, 1, 2])
    loss = gs.SoftmaxCrossEntropy()
    value = loss.forward(x, y)
    grad = loss.backward()
    # per row: 0, 2e4, log 2, 0
    assert value == pytest.approx((2e4 + np.log(2)) / 4, rel=1e-12)
    assert np.all(np.isfinite(grad))
    expected = np.array([[0, 0, 0], [-1, 0, 1], [0.5, -0.5, 0], [0, 0, 0]]) / 4
    np.testing.assert_allclose(grad, expected, atol=1e-12)
    tx = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.cross_entropy(tx, torch.tensor(y))
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-6)
    np.testing.assert_allclose(grad, tx.grad.numpy(), atol=1e-7)
    # soft labels too
    t = np.array([[0.5, 0.5, 0.0], [0.2, 0.0, 0.8], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype)
    value = loss.forward(x, t)
    grad = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    rvalue, rgrad = ref.softmax_xent_soft(x, t)
    np.testing.assert_allclose(value, rvalue, rtol=1e-12)
    np.testing.assert_allclose(grad, rgrad, **TOL_GRAD[dtype])


def test_bce_logits_at_1000(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([1000.0, -1000.0, 1000.0, -1000.0, 1000.0], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.25], dtype)
    loss = gs.BinaryCrossEntropy(from_logits=True)
    value = loss.forward(x, t)
    grad = loss.backward()
    assert value == (0 + 0 + 1000 + 1000 + 750) / 5
    np.testing.assert_array_equal(grad, np.array([0, 0, 0.2, -0.2, 0.15], dtype))
    tx = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(t))
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-7)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-7)


@pytest.mark.parametrize("from_sigmoid", [True, False])
def test_bce_probabilities_exactly_0_and_1(dtype, from_sigmoid):
    """p = sigmoid(±1000) is exactly 1 or 0: the clamps give a finite loss (100 per wrong sample)
    and a finite gradient (p - t) / max(p(1-p), float(1e-12)) / n, as torch's."""
    torch = pytest.importorskip("torch")
    if from_sigmoid:
        x = np.array([1000.0, -1000.0, 1000.0, -1000.0, 1000.0, -1000.0], dtype)
        p = torch.sigmoid(torch.tensor(x)).numpy()
    else:
        p = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.3], dtype)
    assert set(p.tolist()) == {0.0, 1.0}
    loss = gs.BinaryCrossEntropy()
    value = loss.forward(p, t)
    grad = loss.backward()
    assert value == pytest.approx((0 + 0 + 100 + 100 + 70 + 30) / 6, rel=1e-12)
    assert np.all(np.isfinite(grad))
    eps = float(np.dtype(dtype).type(1e-12))
    np.testing.assert_allclose(grad, ref.bce(p, t, eps=eps)[1], rtol=1e-7)
    tp = torch.tensor(p, requires_grad=True)
    out = torch.nn.functional.binary_cross_entropy(tp, torch.tensor(t))
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-6)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-6)


def test_one_class(dtype):
    x = np.array([[3.0], [-2.0], [1e4]], dtype)
    loss = gs.SoftmaxCrossEntropy()
    assert loss.forward(x, np.zeros(3, np.int64)) == 0.0
    np.testing.assert_array_equal(loss.backward(), np.zeros((3, 1), dtype))
    assert loss.forward(x, np.ones((3, 1))) == 0.0
    np.testing.assert_array_equal(loss.backward(), np.zeros((3, 1), dtype))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\)"):
        loss.forward(x, np.array([0, 1, 0]))
    nll = gs.NLL()
    assert nll.forward(np.ones((3, 1), dtype), np.zeros(3, np.int64)) == 0.0
    np.testing.assert_allclose(nll.backward(), np.full((3, 1), -1 / 3), rtol=1e-7)


def test_nll_zero_probability_is_finite(dtype):
    """log p is clamped at -100 (100 per sample at p = 0); the gradient is the derivative of that
    clamped loss: -1/(N p) where the clamp is inactive, 0 where it is (torch gives 0·inf = NaN
    at p = 0 exactly)."""
    torch = pytest.importorskip("torch")
    p = np.array([[0.0, 1.0], [0.25, 0.75], [1.0, 0.0]], dtype)
    y = np.array([0, 1, 0])
    loss = gs.NLL()
    value = loss.forward(p, y)
    grad = loss.backward()
    assert value == pytest.approx((100 - np.log(0.75)) / 3, rel=1e-12)
    np.testing.assert_allclose(grad, [[0, 0], [0, -1 / (3 * 0.75)], [-1 / 3, 0]], rtol=1e-7)
    tp = torch.tensor(p, requires_grad=True)
    out = torch.nn.functional.nll_loss(torch.log(tp).clamp(min=-100), torch.tensor(y))
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-6)
    tgrad = tp.grad.numpy()
    assert np.isnan(tgrad[0, 0])  # torch's composition at p = 0
    ok = ~np.isnan(tgrad)
    np.testing.assert_allclose(grad[ok], tgrad[ok], rtol=1e-6)


def test_nan_predictions_propagate():
    """A NaN prediction is a training condition (TerminateOnNaN reports it), not an input error."""
    p = np.array([[0.5, np.nan], [0.2, 0.3]])
    assert np.isnan(gs.MSE().forward(p, np.zeros((2, 2))))
    assert np.isnan(gs.BinaryCrossEntropy().forward(p, np.zeros((2, 2))))
    assert np.isnan(gs.BinaryCrossEntropy(from_logits=True).forward(p, np.zeros((2, 2))))
    loss = gs.SoftmaxCrossEntropy()
    assert np.isnan(loss.forward(p, np.array([0, 1])))
    assert np.isnan(loss.forward(p[::-1].copy(), np.array([0, 1])))  # NaN not in the first column
    nll = gs.NLL()
    assert np.isnan(nll.forward(p, np.array([1, 0])))
    assert np.isnan(nll.backward()[0, 1])


# ---- other dtypes and layouts -------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_other_layouts_give_same_result(kind, rng):
    loss, pred, target, _ = make_case(kind, rng, N=8, K=6)
    big = np.zeros((8, 12))
    big[:, ::2] = pred
    strided = big[:, ::2]
    base_p = np.ascontiguousarray(strided, np.float32)
    base_t = _cast_target(target, np.float32)
    value = loss.forward(base_p, base_t)
    grad = loss.backward()
    for p in (strided, np.asfortranarray(strided)):
        assert loss.forward(p.astype(np.float32), base_t) == value
        np.testing.assert_array_equal(loss.backward(), grad)
    # float16 is converted once to float32
    p16 = pred.astype(np.float16)
    v16 = loss.forward(p16, target)
    g16 = loss.backward()
    assert g16.dtype == np.float32
    assert v16 == loss.forward(p16.astype(np.float32), target)
    np.testing.assert_array_equal(g16, loss.backward())
    # a target in another dtype or layout
    if target.dtype.kind == "f":
        tf = np.asfortranarray(target)
        tc = np.ascontiguousarray(target, np.float32)
        assert loss.forward(base_p, tf) == loss.forward(base_p, tc)


def test_integer_predictions_compute_in_float32(rng):
    p = rng.integers(-3, 3, (4, 3))
    loss = gs.MSE()
    value = loss.forward(p, np.zeros((4, 3)))
    assert loss.backward().dtype == np.float32
    assert value == loss.forward(p.astype(np.float32), np.zeros((4, 3)))
    sce = gs.SoftmaxCrossEntropy()
    assert sce.forward(p, [0, 1, 2, 0]) == sce.forward(p.astype(np.float32), np.array([0, 1, 2, 0]))


def test_labels_in_other_forms_give_same_result(rng):
    x = rng.standard_normal((6, 4))
    y = np.array([0, 3, 1, 2, 3, 0])
    loss = gs.SoftmaxCrossEntropy()
    value = loss.forward(x, y)
    grad = loss.backward()
    for yy in (y.astype(np.int32), y.astype(np.uint8), y.astype(np.float64), y.tolist(),
               np.repeat(y, 2)[::2]):
        assert loss.forward(x, yy) == value
        np.testing.assert_array_equal(loss.backward(), grad)
    # one-hot probabilities give the same loss as the labels
    onehot = np.eye(4)[y]
    assert loss.forward(x, onehot) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), grad, rtol=1e-14, atol=1e-16)


# ---- threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_threads_bit_identical(kind, rng):
    loss, pred, target, fn = make_case(kind, rng, N=4099, K=17)  # 69683 elements > kParallelMin
    p = pred.astype(np.float32)
    t = _cast_target(target, np.float32)
    results = []
    for n in (1, 2):
        gs.set_num_threads(n)
        results.append((loss.forward(p, t), loss.backward()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], fn(p, t)[0], rtol=1e-12)


# ---- registry, config, classes ------------------------------------------------------------------

def test_registry_and_get():
    assert set(gs.losses.LOSSES) == {"mse", "binary_crossentropy", "softmax_crossentropy", "nll"}
    for name, cls in gs.losses.LOSSES.items():
        assert cls.name == name
        loss = gs.losses.get(name)
        assert type(loss) is cls
        again = cls(**json.loads(json.dumps(loss.get_config())))
        assert repr(again) == repr(loss)
    inst = gs.BinaryCrossEntropy(from_logits=True)
    assert gs.losses.get(inst) is inst
    assert type(gs.losses.get(gs.NLL)) is gs.NLL
    assert inst.get_config() == {"from_logits": True}
    assert repr(inst) == "BinaryCrossEntropy(from_logits=True)"
    assert repr(gs.MSE()) == "MSE()" and repr(gs.SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()"
    names = "'mse', 'binary_crossentropy', 'softmax_crossentropy', 'nll'"
    with pytest.raises(ValueError, match=names):
        gs.losses.get("hinge")
    with pytest.raises(TypeError, match="loss must be one of 'mse'"):
        gs.losses.get(3)
    for name in ("MSE", "BinaryCrossEntropy", "SoftmaxCrossEntropy", "NLL"):
        assert name in gs.losses.__all__ and getattr(gs, name) is getattr(gs.losses, name)


def test_predicted_and_target_classes():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    sce = gs.SoftmaxCrossEntropy()
    np.testing.assert_array_equal(sce.predicted_classes(logits), [1, 0])
    np.testing.assert_array_equal(sce.target_classes(np.array([1, 2])), [1, 2])
    np.testing.assert_array_equal(sce.target_classes(np.eye(3)[[2, 0]]), [2, 0])
    assert sce.accuracy(logits, [1, 2]) == 0.5
    assert gs.NLL().accuracy(np.array([[0.2, 0.8], [0.6, 0.4]]), [1, 0]) == 1.0
    bce = gs.BinaryCrossEntropy()
    np.testing.assert_array_equal(bce.predicted_classes(np.array([[0.7], [0.2]])), [1, 0])
    np.testing.assert_array_equal(bce.target_classes(np.array([[1.0], [1.0]])), [1, 1])
    assert bce.accuracy(np.array([[0.7], [0.2]]), np.array([[1.0], [1.0]])) == 0.5
    logit_bce = gs.BinaryCrossEntropy(from_logits=True)
    np.testing.assert_array_equal(logit_bce.predicted_classes(np.array([0.3, -0.1])), [1, 0])
    np.testing.assert_array_equal(gs.MSE().predicted_classes(np.array([[0.7], [0.2]])), [1, 0])
    np.testing.assert_array_equal(gs.MSE().predicted_classes(np.array([[0.1, 0.7]])), [1])


# ---- errors -------------------------------------------------------------------------------------

LABEL_LOSSES = [gs.SoftmaxCrossEntropy, gs.NLL]


@pytest.mark.parametrize("make", [gs.MSE, gs.BinaryCrossEntropy, gs.SoftmaxCrossEntropy, gs.NLL,
                                  lambda: gs.BinaryCrossEntropy(from_logits=True)])
def test_non_numeric_input(make):
    loss = make()
    good_p = np.full((2, 2), 0.5)
    good_t = np.zeros(2, np.int64) if isinstance(loss, tuple(LABEL_LOSSES)) else np.zeros((2, 2))
    with pytest.raises(TypeError, match="pred must be a numeric array"):
        loss.forward(np.array([["a", "b"], ["c", "d"]]), good_t)
    with pytest.raises(TypeError, match="pred must be a numeric array"):
        loss.forward("hello", good_t)
    with pytest.raises(TypeError, match="target must be a numeric array"):
        loss.forward(good_p, np.array(["x", "y"]) if good_t.ndim == 1 else np.full((2, 2), "z"))
    with pytest.raises(TypeError, match="target must be a numeric array"):
        loss.forward(good_p, {"a": 1})


@pytest.mark.parametrize("make", [gs.MSE, gs.BinaryCrossEntropy,
                                  lambda: gs.BinaryCrossEntropy(from_logits=True)])
def test_shape_mismatch(make):
    with pytest.raises(ValueError, match=r"target must have the shape of pred \(3, 2\), got \(3,"):
        make().forward(np.full((3, 2), 0.5), np.zeros(3))
    with pytest.raises(ValueError, match=r"target must have the shape of pred \(3, 1\), got \(3,"):
        make().forward(np.full((3, 1), 0.5), np.zeros(3))


@pytest.mark.parametrize("make", LABEL_LOSSES)
@pytest.mark.parametrize("labels, exc, words", [
    ([0, 3, 1], ValueError, r"target must lie in \[0, 3\), got label 3"),
    ([0, -1, 1], ValueError, r"target must lie in \[0, 3\), got label -1"),
    ([0, 1.5, 1], ValueError, "target must hold integer class labels"),
    ([0, np.nan, 1], ValueError, "target must hold integer class labels"),
    ([True, False, True], TypeError, "target must hold integer class labels"),
    ([0, 1], ValueError, "target must have 3 labels"),
])
def test_bad_labels(make, labels, exc, words):
    p = np.full((3, 3), 1 / 3)
    with pytest.raises(exc, match=words):
        make().forward(p, np.array(labels))


def test_nll_rejects_probability_targets():
    with pytest.raises(ValueError, match="target must be 1-D integer class labels"):
        gs.NLL().forward(np.full((2, 2), 0.5), np.full((2, 2), 0.5))


@pytest.mark.parametrize("target, words", [
    (np.full((3, 2), 1.5), r"target must hold values in \[0, 1\], got values in \[1.5, 1.5\]"),
    (np.full((3, 2), -0.1), r"target must hold values in \[0, 1\]"),
    (np.array([[0.5, np.nan]] * 3), r"target must hold values in \[0, 1\], got .*NaN"),
])
def test_bce_targets_outside_unit_interval(target, words):
    for loss in (gs.BinaryCrossEntropy(), gs.BinaryCrossEntropy(from_logits=True)):
        with pytest.raises(ValueError, match=words):
            loss.forward(np.full((3, 2), 0.5), target)


def test_probabilities_outside_unit_interval():
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\] .*from_logits"):
        gs.BinaryCrossEntropy().forward(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    gs.BinaryCrossEntropy(from_logits=True).forward(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\]"):
        gs.NLL().forward(np.array([[-0.5, 1.5]]), np.array([1]))


@pytest.mark.parametrize("target, words", [
    (np.full((3, 4), 0.25),
     r"target must be integer labels \(3,\) or class probabilities \(3, 3\), got shape \(3, 4\)"),
    (np.full((2, 3), 0.25), r"got shape \(2, 3\)"),
    (np.full((3, 3, 1), 0.25), r"got shape \(3, 3, 1\)"),
    (np.full((3, 3), 2.0), r"target must hold class probabilities in \[0, 1\]"),
])
def test_soft_targets_of_wrong_shape_or_range(target, words):
    with pytest.raises(ValueError, match=words):
        gs.SoftmaxCrossEntropy().forward(np.zeros((3, 3)), target)


@pytest.mark.parametrize("make", LABEL_LOSSES)
@pytest.mark.parametrize("pred, words", [
    (np.zeros(3), r"pred must be a 2-D array of .* \(N, K\), got a 1-D array of shape \(3,\)"),
    (np.zeros((3, 3, 1)), r"pred must be a 2-D array"),
    (np.zeros((0, 3)), "pred must have at least one row and one class"),
    (np.zeros((3, 0)), "pred must have at least one row and one class"),
])
def test_bad_pred_shape_for_class_losses(make, pred, words):
    with pytest.raises(ValueError, match=words):
        make().forward(pred, np.zeros(3, np.int64))


def test_empty_pred_for_elementwise_losses():
    for loss in (gs.MSE(), gs.BinaryCrossEntropy(), gs.BinaryCrossEntropy(from_logits=True)):
        with pytest.raises(ValueError, match="pred must have at least one element"):
            loss.forward(np.zeros((0, 2)), np.zeros((0, 2)))


@pytest.mark.parametrize("make", [gs.MSE, gs.BinaryCrossEntropy, gs.SoftmaxCrossEntropy, gs.NLL])
def test_backward_before_forward(make):
    with pytest.raises(ValueError, match=rf"{make.__name__}.backward: call forward before"):
        make().backward()


def test_failed_forward_keeps_no_stale_state():
    loss = gs.MSE()
    loss.forward(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError):
        loss.forward(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="call forward before backward"):
        loss.backward()


def test_bad_constructor_argument():
    with pytest.raises(TypeError, match="from_logits must be a bool"):
        gs.BinaryCrossEntropy(from_logits="yes")


# ---- the bindings on their own ------------------------------------------------------------------

def test_core_rejects_bad_arrays_directly():
    from gradstep import _core
    x = np.zeros((3, 2), np.float32)
    lab = np.array([0, 1, 1], np.int64)
    with pytest.raises(IndexError, match=r"labels\[1\] = 2 is out of range \[0, 2\)"):
        _core.softmax_xent_forward(x, np.array([0, 2, 1], np.int64))
    with pytest.raises(IndexError, match=r"labels\[0\] = -1"):
        _core.nll_forward(x, np.array([-1, 0, 1], np.int64))
    with pytest.raises(IndexError, match="labels"):
        _core.nll_backward(x, np.array([0, 0, 5], np.int64))
    with pytest.raises(IndexError, match="labels"):
        _core.softmax_xent_backward(x, np.array([0, 0, 5], np.int64))
    with pytest.raises(TypeError, match="labels must have dtype int64"):
        _core.softmax_xent_forward(x, lab.astype(np.int32))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got \(2,\)"):
        _core.softmax_xent_forward(x, lab[:2])
    with pytest.raises(ValueError, match="labels must be C-contiguous"):
        _core.nll_forward(x, np.array([0, 9, 1, 9, 1, 9], np.int64)[::2])
    with pytest.raises(ValueError, match="logits must have at least one element"):
        _core.softmax_xent_forward(np.zeros((3, 0), np.float32), lab)
    with pytest.raises(ValueError, match=r"logits must have shape \(\*, \*\)"):
        _core.softmax_xent_forward(np.zeros(3, np.float32), lab)
    with pytest.raises(TypeError, match="target must have dtype float32"):
        _core.mse_forward(x, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"target must have shape \(3, 2\), got \(2, 3\)"):
        _core.bce_forward(x, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"target must have shape \(3, 2\)"):
        _core.softmax_xent_soft_forward(x, np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="pred must be float32 or float64"):
        _core.mse_backward(np.zeros(3, np.int32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="pred must have at least one element"):
        _core.mse_forward(np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="pred must be C-contiguous"):
        _core.mse_forward(np.zeros((4, 4), np.float32)[:, ::2], np.zeros((4, 2), np.float32))
    ro = np.zeros((3, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        _core.softmax_xent_backward(x, lab, ro)


def test_core_softmax_backward_in_place(dtype, rng):
    from gradstep import _core
    x = rng.standard_normal((5, 4)).astype(dtype)
    y = np.array([0, 3, 2, 1, 1], np.int64)
    _, probs = _core.softmax_xent_forward(x, y)
    expected = _core.softmax_xent_backward(probs, y)
    out = _core.softmax_xent_backward(probs, y, probs)
    assert out is probs
    np.testing.assert_array_equal(probs, expected)
    t = ref.softmax(x).astype(dtype)
    _, probs = _core.softmax_xent_soft_forward(x, t)
    expected = _core.softmax_xent_soft_backward(probs, t)
    _core.softmax_xent_soft_backward(probs, t, probs)
    np.testing.assert_array_equal(probs, expected)
    np.testing.assert_allclose(expected, ref.softmax_xent_soft(x, t)[1], **TOL_GRAD[dtype])
