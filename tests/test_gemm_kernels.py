"""gradstep's own GEMM kernels (src/core/gemm_kernels.*) against a numpy reference in higher precision
(float64 for float32, long double for float64).

Every C[i, j] is one FMA chain over k = 0..K-1, so the kernels give the same bits whatever the
tile, the edge, the thread count, the row's position in the batch and the instruction set: these
tests check the values (with a tolerance) and those identities (bit for bit).
"""
import numpy as np
import pytest

import gradstep as gs
from gradstep import _core

ISA = _core._gemm_kernel_isa()
KERNELS = {"none": [], "avx2": ["avx2"], "avx512": ["avx2", "avx512"]}[ISA]
needs_kernel = pytest.mark.skipif(not KERNELS, reason=f"this CPU runs no gradstep GEMM kernel ({ISA})")
EDGE = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 40, 47, 48, 49, 63, 64, 65, 127, 129]


def _stored(rng, rows, cols, pad, dtype=np.float32):
    """A (rows, cols) view whose rows are `pad` values apart beyond cols (a strided view)."""
    big = rng.standard_normal((rows, cols + pad)).astype(dtype)
    return big[:, :cols]


def _operands(rng, ta, tb, M, N, K, pad=(0, 0, 0), dtype=np.float32):
    A = _stored(rng, K, M, pad[0], dtype) if ta else _stored(rng, M, K, pad[0], dtype)
    B = _stored(rng, N, K, pad[1], dtype) if tb else _stored(rng, K, N, pad[1], dtype)
    C = _stored(rng, M, N, pad[2], dtype)
    return A, B, C


def _reference(A, B, C, ta, tb, alpha, beta):
    wide = np.float64 if A.dtype == np.float32 else np.longdouble
    a = A.astype(wide).T if ta else A.astype(wide)
    b = B.astype(wide).T if tb else B.astype(wide)
    ref = alpha * (a @ b)
    bound = abs(alpha) * (np.abs(a) @ np.abs(b))  # Σ|a·b|: the scale of the rounding error
    if beta != 0:
        ref = ref + beta * C.astype(wide)
        bound = bound + abs(beta * C.astype(wide))
    return ref, bound


def _check(A, B, C, ta, tb, alpha, beta, kernel):
    ref, bound = _reference(A, B, C, ta, tb, alpha, beta)
    if beta == 0:
        C[...] = np.nan  # beta = 0 must not read C
    used = _core._gemm_for_tests(A, B, C, ta, tb, alpha, beta, kernel)
    K = A.shape[0] if ta else A.shape[1]
    tol = (K + 2) * float(np.finfo(A.dtype).eps) * bound + 1e-300
    assert np.all(np.isfinite(C)), f"{kernel} left NaN in C"
    err = np.abs(C - ref)
    assert np.all(err <= tol), f"{kernel} {ta=} {tb=} shape {C.shape} K={K}: max error {err.max()}"
    return used


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)])
def test_kernels_match_reference(kernel, ta, tb, dtype):
    rng = np.random.default_rng([KERNELS.index(kernel), ta, tb, dtype == np.float64])
    shapes = [(m, n, k) for m, n, k in zip(EDGE, EDGE[::-1], EDGE[3:] + EDGE[:3])]
    shapes += [(1, 1, 1), (1, 1, 0), (5, 3, 0), (33, 10, 784), (129, 65, 63), (64, 784, 10)]
    shapes += [tuple(int(v) for v in rng.integers(1, 41, 3)) for _ in range(12)]
    for i, (M, N, K) in enumerate(shapes):
        pad = tuple(int(p) for p in rng.integers(0, 5, 3)) if i % 2 else (0, 0, 0)
        for alpha, beta in [(1.0, 0.0), (1.0, 1.0), (0.5, 0.0), (-1.5, 2.0)]:
            A, B, C = _operands(rng, ta, tb, M, N, K, pad, dtype)
            assert _check(A, B, C, ta, tb, alpha, beta, kernel) == kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_as_chosen_matches_reference(ta, tb, dtype):
    # What every op runs: the kernels where small_gemm_wins says so, else OpenBLAS (and always for
    # trans_a with trans_b).
    rng = np.random.default_rng(7)
    for M, N, K in [(32, 256, 784), (784, 256, 32), (17, 10, 129), (512, 128, 10), (3, 1, 5)]:
        for beta in (0.0, 1.0):
            A, B, C = _operands(rng, ta, tb, M, N, K, (1, 2, 3), dtype)
            used = _check(A, B, C, ta, tb, 1.0, beta, "auto")
            expect = ISA if _core._gemm_uses_kernels(ta, tb, M, N, K) else "blas"
            assert used == expect
    A, B, C = _operands(rng, ta, tb, 9, 11, 13, (0, 0, 0), dtype)
    assert _check(A, B, C, ta, tb, 0.5, 0.0, "blas") == "blas"


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instruction_sets_give_the_same_bits(dtype):
    if len(KERNELS) < 2:
        pytest.skip("this CPU runs only one of the kernels")
    rng = np.random.default_rng(3)
    for ta, tb in [(False, False), (False, True), (True, False)]:
        for M, N, K in [(37, 129, 65), (8, 48, 784), (65, 10, 33)]:
            A, B, C = _operands(rng, ta, tb, M, N, K, (3, 1, 2), dtype)
            C2 = C.copy()
            _core._gemm_for_tests(A, B, C, ta, tb, 1.0, 1.0, "avx2")
            _core._gemm_for_tests(A, B, C2, ta, tb, 1.0, 1.0, "avx512")
            np.testing.assert_array_equal(C, C2)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", KERNELS)
def test_row_result_does_not_depend_on_its_batch(kernel, dtype):
    # C's row i, computed in a batch of M rows (any tile, any edge), is the same bits as that row
    # computed alone; likewise a column of C computed alone.
    rng = np.random.default_rng(11)
    for ta, tb in [(False, False), (False, True), (True, False)]:
        M, N, K = 45, 70, 129
        A, B, C = _operands(rng, ta, tb, M, N, K, (2, 0, 1), dtype)
        C[...] = 0
        _core._gemm_for_tests(A, B, C, ta, tb, 1.0, 0.0, kernel)
        for i in (0, 7, 8, 23, 44):
            a = A[:, i:i + 1] if ta else A[i:i + 1]
            row = np.empty((1, N), dtype)
            _core._gemm_for_tests(a, B, row, ta, tb, 1.0, 0.0, kernel)
            np.testing.assert_array_equal(row[0], C[i])
        for j in (0, 15, 16, 47, 48, 69):
            b = B[j:j + 1] if tb else B[:, j:j + 1]
            col = np.empty((M, 1), dtype)
            _core._gemm_for_tests(A, b, col, ta, tb, 1.0, 0.0, kernel)
            np.testing.assert_array_equal(col[:, 0], C[:, j])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_row_alone_matches_batch(dtype):
    # Through the Dense op: a sample's output does not depend on the batch it came in (where the
    # product runs on the kernels; OpenBLAS's blocking gives no such promise).
    rng = np.random.default_rng(5)
    layer = gs.Dense(64, 128, dtype=dtype)
    x = rng.standard_normal((32, 64)).astype(dtype)
    if not _core._gemm_uses_kernels(False, False, 32, 128, 64):
        pytest.skip(f"(32,64)x(64,128) runs on OpenBLAS on this CPU ({ISA})")
    y = layer.forward(x)
    for i in (0, 5, 31):
        np.testing.assert_array_equal(layer.forward(x[i:i + 1])[0], y[i])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,batch", [([64, 128, 64, 10], 32), ([784, 256, 10], 96)])
def test_train_step_bit_identical_across_threads(sizes, batch, dtype):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    results = []
    for threads in (1, 2, 3):
        gs.set_num_threads(threads)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(gs.Dense(a, b))
            if i < len(sizes) - 2:
                layers.append(gs.ReLU())
        model = gs.Sequential(layers, seed=3, dtype=dtype)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        losses = [model.train_step(X, y) for _ in range(3)]
        results.append((losses, {k: v.copy() for k, v in model.state_dict().items()}))
    for losses, weights in results[1:]:
        assert losses == results[0][0]
        assert weights.keys() == results[0][1].keys()
        for k in weights:
            np.testing.assert_array_equal(weights[k], results[0][1][k], err_msg=k)


def test_bad_arguments_raise_clearly():
    A = np.ones((4, 5), np.float32)
    B = np.ones((5, 6), np.float32)
    C = np.zeros((4, 6), np.float32)
    with pytest.raises(TypeError, match="A must have dtype float32"):
        _core._gemm_for_tests(A.astype(np.float64), B, C)
    with pytest.raises(ValueError, match="op\\(B\\) must be \\(5, 6\\)"):
        _core._gemm_for_tests(A, B[:4], C)
    with pytest.raises(ValueError, match="op\\(A\\) must have C's 4 rows"):
        _core._gemm_for_tests(A[:3], B, C)
    with pytest.raises(ValueError, match="B must have contiguous rows"):
        _core._gemm_for_tests(A, np.ones((5, 12), np.float32)[:, ::2], C)
    with pytest.raises(ValueError, match="C must have contiguous rows"):
        _core._gemm_for_tests(A, B, np.zeros((6, 4), np.float32).T)
    overlapping = np.lib.stride_tricks.as_strided(np.zeros(30, np.float32), (4, 6), (8, 4))
    with pytest.raises(ValueError, match="C's row stride \\(8 bytes\\)"):
        _core._gemm_for_tests(A, B, overlapping)
    with pytest.raises(ValueError, match="A must be 2-D"):
        _core._gemm_for_tests(A.ravel(), B, C)
    with pytest.raises(ValueError, match="C must be writable"):
        C.flags.writeable = False
        _core._gemm_for_tests(A, B, C)
    C = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="kernel must be"):
        _core._gemm_for_tests(A, B, C, kernel="mkl")
    with pytest.raises(ValueError, match="trans_a and trans_b together"):
        _core._gemm_for_tests(A.T.copy(), B.T.copy(), C, True, True, kernel=(KERNELS or ["avx2"])[0])
    if ISA != "avx512":
        with pytest.raises(ValueError, match="cannot run the avx512 kernel"):
            _core._gemm_for_tests(A, B, C, kernel="avx512")


_FALLBACK_SCRIPT = """
import numpy as np, gradstep as gs
from gradstep import _core
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 64)).astype(np.float32)
y = rng.integers(0, 10, 32)
model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 10)], seed=3, dtype="float32")
model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
losses = [model.train_step(X, y) for _ in range(3)]
print(_core._gemm_kernel_isa(), _core._gemm_uses_kernels(False, False, 32, 128, 64), *losses)
"""


def test_what_other_cpus_run_gives_the_same_training():
    # GRADSTEP_GEMM caps the kernels as a CPU without AVX-512 (avx2) or without AVX2 (blas) would:
    # every path trains, and agrees with the others to float32 rounding.
    import os
    import subprocess
    import sys
    runs = {}
    for setting in ("", "avx2", "blas", "misspelt"):
        env = dict(os.environ, GRADSTEP_GEMM=setting)
        out = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        runs[setting] = (out[0], out[1] == "True", [float(v) for v in out[2:]])
    best = runs[""][0]  # what this CPU runs uncapped (this process may itself be capped)
    assert best in ("avx512", "avx2", "none")
    if not os.environ.get("GRADSTEP_GEMM"):
        assert best == ISA
    assert runs["avx2"][0] == ("avx2" if best == "avx512" else best)
    assert runs["blas"][:2] == ("none", False)
    assert runs["misspelt"][:2] == ("none", False)
    for setting, (_, _, losses) in runs.items():
        assert len(losses) == 3 and losses[2] < losses[0], setting
        np.testing.assert_allclose(losses, runs["blas"][2], rtol=1e-5, err_msg=setting)
    if best == "avx512":  # the two kernels give the same bits
        assert runs["avx2"][2] == runs[""][2]


def test_random_calls_raise_or_compute():
    # Random (often wrong) arguments: each call either raises TypeError/ValueError or computes
    # op(A)·op(B) correctly; none may crash or write outside C.
    rng = np.random.default_rng(17)
    kernels = ["auto", "blas", "avx2", "avx512", "neon"]
    computed = refused = 0
    for _ in range(400):
        dtype = [np.float32, np.float64, np.int32][rng.integers(0, 3) if rng.random() < 0.1 else 0]
        ta, tb = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        M, N, K = (int(v) for v in rng.integers(0, 20, 3))

        def arr(rows, cols):
            kind = rng.integers(0, 6)
            if kind == 0:  # wrong shape
                rows, cols = rows + int(rng.integers(-1, 2)), cols + int(rng.integers(-1, 2))
            rows, cols = max(rows, 0), max(cols, 0)
            big = rng.standard_normal((rows + 1, 2 * cols + 3)).astype(dtype)
            if kind == 1:
                return big[:rows, ::2][:, :cols]  # strided columns
            if kind == 2:
                return big[:rows, 1:cols + 1].T.copy().T  # column-major
            if kind == 3:
                return big[:rows].ravel()[:rows * cols]  # 1-D
            return big[:rows, :cols]  # a strided view
        A = arr(K, M) if ta else arr(M, K)
        B = arr(N, K) if tb else arr(K, N)
        guard = np.full((M + 2, N + 2), 7.0, dtype=dtype)
        C = guard[1:-1, 1:-1]
        kernel = kernels[rng.integers(0, len(kernels))]
        try:
            _core._gemm_for_tests(A, B, C, ta, tb, 1.0, 0.0, kernel)
        except (TypeError, ValueError):
            refused += 1
        else:
            computed += 1
            a = A.T if ta else A
            b = B.T if tb else B
            ref = a.astype(np.float64) @ b.astype(np.float64)
            np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-4)
        border = np.ones(guard.shape, bool)
        border[1:-1, 1:-1] = False
        assert np.all(guard[border] == 7.0), "wrote outside C"
    assert computed > 20 and refused > 50


def test_predict_of_a_row_does_not_depend_on_its_batch():
    # The user-visible form: a sample's prediction is the same bits alone or in any batch.
    sizes = [64, 128, 64, 10]
    if not all(_core._gemm_uses_kernels(False, False, 100, b, a) for a, b in zip(sizes, sizes[1:])):
        pytest.skip(f"these products run on OpenBLAS on this CPU ({ISA})")
    rng = np.random.default_rng(9)
    X = rng.standard_normal((100, 64)).astype(np.float32)
    model = gs.Sequential([gs.Dense(64, 128), gs.ReLU(), gs.Dense(128, 64), gs.Tanh(),
                           gs.Dense(64, 10)], seed=4, dtype="float32")
    full = model.predict(X)
    for i in (0, 13, 99):
        np.testing.assert_array_equal(model.predict(X[i:i + 1])[0], full[i])
    np.testing.assert_array_equal(model.predict(X[40:77]), full[40:77])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_cut_per_thread_keep_their_bits(dtype):
    # gradstep's kernels cut a product into one block per thread (up to 64), not by shape alone:
    # 1, 2, 3, 5 and 8 threads cut this layer's three products five ways, with the same bits.
    rng = np.random.default_rng(11)
    layer = gs.Dense(200, 900, dtype=dtype, seed=0)
    x, dy = rng.standard_normal((600, 200)), rng.standard_normal((600, 900))
    old = gs.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3, 5, 8):
            gs.set_num_threads(threads)
            runs.append((layer.forward(x), layer.backward(dy), layer.grads["weight"].copy()))
    finally:
        gs.set_num_threads(old)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("act", ["Tanh", "ReLU", "Sigmoid"])
def test_dense_activation_chains_run_by_row_blocks_with_the_same_bits(act):
    # With more than one thread the network runs a Dense on these kernels and its activation
    # block of rows by block of rows in one region (Network::forward_ops); the rows must come out
    # as the whole batch's, so training and predicting give the bits of one thread.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4 * 67, 96)).astype(np.float32)  # 67 rows: blocks of 34 and 33
    y = rng.integers(0, 10, len(X))
    old = gs.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            gs.set_num_threads(threads)
            Act = getattr(gs, act)
            m = gs.Sequential([gs.Dense(96, 192), Act(), gs.Dense(192, 192), Act(),
                               gs.Dense(192, 10)], seed=2)
            m.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
            losses = [m.train_step(X[b * 67:(b + 1) * 67], y[b * 67:(b + 1) * 67]) for b in range(4)]
            runs.append((losses, [p.copy() for layer in m.layers for p in layer.params.values()],
                         m.predict(X, batch_size=67)))
    finally:
        gs.set_num_threads(old)
    for other in runs[1:]:
        assert other[0] == runs[0][0]
        for a, b in zip(other[1], runs[0][1]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(other[2], runs[0][2])
