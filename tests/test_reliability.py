"""Issue 10: no input crashes the process, no model file lies, nothing is left behind.

Each test here failed on the code before the fix. Anything that used to crash runs in a
subprocess (`run_isolated`), so a regression is a failing test, not a dead test runner.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gradstep as gs
from conftest import subprocess_env


def run_isolated(code: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (gradstep importable as here)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(**(env or {})))


def assert_clean(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 0, (f"the subprocess died (status {proc.returncode}, a negative "
                                  f"status is a signal):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    for text in expected:
        assert text in proc.stdout, proc.stdout


# ---- 1. the bindings ------------------------------------------------------------------------------

@pytest.mark.parametrize("tamper", ["slot outside", "slot shape", "input shape", "op kind"])
def test_network_refuses_ops_that_do_not_fit_its_buffers(tamper):
    """The whole-step binding gets (kind, attrs, slots, buffers) per op from the engine; ops whose
    parameter slots or shapes do not fit (once: elementwise layers of another width) must be
    refused at construction, not read out of bounds in a step."""
    proc = run_isolated(f"""
        import numpy as np
        import gradstep as gs
        from gradstep import _core
        model = gs.Sequential([gs.Dense(2, 4), gs.BatchNorm(4), gs.ReLU(), gs.Dense(4, 3)], seed=0)
        model.compile(gs.MSE(), gs.SGD(lr=0.1))
        model.train_step(np.ones((8, 2), np.float32), np.ones((8, 3), np.float32))
        eng = model._engine
        ops = [list(op) for op in eng.ops]
        in_shape = list(eng.in_shape)
        tamper = {tamper!r}
        if tamper == "slot outside":
            name, off, shape = ops[3][2][0]
            ops[3][2][0] = (name, model.arena.size - 2, shape)
        elif tamper == "slot shape":
            name, off, shape = ops[3][2][0]
            ops[3][2][0] = (name, off, (40, 3))
        elif tamper == "input shape":
            in_shape = [40]
        else:
            ops[2][0] = "NoSuchOp"
        try:
            net = _core.Network([tuple(op) for op in ops], in_shape, "mse", "sgd", model.arena.params,
                                model.arena.grads, None, None)
            net.train_step(np.ones((64, in_shape[0]), np.float32), None, np.ones((64, 3), np.float32),
                           [], [0.1, 0.0, 0.0, 0.0, 0.0], 1)
            print("accepted")
        except ValueError as e:
            print("ValueError:", e)
    """)
    assert_clean(proc, "ValueError: Network")


def test_network_workspace_bytes_before_any_step():
    # Found by tools/fuzz_bindings.py on the op core: the workspace has no per-op vectors before
    # the first step, and workspace_bytes indexed them per op (a segfault).
    proc = run_isolated("""
        import numpy as np
        import gradstep as gs
        from gradstep import _core
        model = gs.Sequential([gs.Dense(2, 4), gs.ReLU(), gs.Dense(4, 3)], seed=0)
        model.compile(gs.MSE(), gs.SGD(lr=0.1))
        model.train_step(np.ones((8, 2), np.float32), np.ones((8, 3), np.float32))
        eng = model._engine
        net = _core.Network(eng.ops, eng.in_shape, "mse", "sgd", model.arena.params, model.arena.grads,
                            None, None)
        print("bytes", net.workspace_bytes)
    """)
    assert_clean(proc, "bytes 0")


def test_network_state_stays_readable_after_a_memory_error():
    # A batch whose workspace cannot be allocated (2**20 rows x 2**20 outputs: 4 TiB) raises
    # MemoryError; the outputs of the last good batch stay readable, and training goes on.
    proc = run_isolated("""
        import numpy as np
        import gradstep as gs
        K = 2**20
        model = gs.Sequential([gs.Dense(1, K)], seed=0)
        model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.01))
        model.train_step(np.ones((4, 1), np.float32), np.zeros(4, np.int64))
        try:
            model.train_step(np.ones((K, 1), np.float32), np.zeros(K, np.int64))
        except MemoryError:
            print("MemoryError")
        net = model._engine.nets[model._engine.last_code]
        print("output", net.output().shape)
        print("stats", sorted(net.layer_stats(0)))
        model.train_step(np.ones((3, 1), np.float32), np.zeros(3, np.int64))
        print("after", model._train_output().shape)
    """)
    assert_clean(proc, "MemoryError", f"output (4, {2**20})", "stats ['dead_units'",
                 f"after (3, {2**20})")


def test_a_failed_step_leaves_training_as_if_it_never_happened():
    """Through the public API: a MemoryError in train_step changes nothing."""
    K = 2**20
    X, y = np.ones((4, 1), np.float32), np.arange(4)
    models = [gs.Sequential([gs.Dense(1, K)], seed=0) for _ in range(2)]
    for m in models:
        m.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1, momentum=0.9))
        m.train_step(X, y)
    with pytest.raises(MemoryError):
        models[0].train_step(np.ones((K, 1), np.float32), np.zeros(K, np.int64))
    for m in models:
        m.train_step(X, y)
    np.testing.assert_array_equal(models[0].layers[0].params["weight"], models[1].layers[0].params["weight"])


def test_arena_offset_with_a_zero_size_item():
    proc = run_isolated("""
        import numpy as np
        from gradstep import _core
        a = np.zeros(3, dtype=np.dtype([]))   # a structured dtype with no fields: itemsize 0
        print("offset", _core.arena_offset(a, a, a, a))
    """)
    assert_clean(proc, "offset -1")


@pytest.mark.parametrize("n", [100_000, 2**31 - 1])
def test_set_num_threads_is_bounded(n):
    proc = run_isolated(f"""
        import numpy as np
        import gradstep as gs
        try:
            gs.set_num_threads({n})
        except ValueError as e:
            print("ValueError:", e)
        try:
            gs._core.set_num_threads({n})
        except (ValueError, TypeError) as e:
            print("core refused")
        print(gs.Dense(3, 4, seed=0).forward(np.ones((70000, 3), np.float32)).shape)
    """)
    limit = 8 * os.cpu_count()
    assert_clean(proc, "ValueError: set_num_threads: n must be <= ", "core refused", "(70000, 4)")
    assert f"<= {gs._core.max_threads()}" in proc.stdout
    assert gs._core.max_threads() <= limit


def test_huge_omp_num_threads_is_clamped():
    proc = run_isolated("""
        import numpy as np
        import gradstep as gs
        print("threads", gs.get_num_threads() <= gs._core.max_threads())
        print(gs.ReLU().forward(np.ones((70000, 3), np.float32)).shape)
    """, env={"OMP_NUM_THREADS": "100000"})
    assert_clean(proc, "threads True", "(70000, 3)")


def test_cli_train_with_absurd_threads_is_a_user_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gradstep", "train", "--threads", "100000",
                           "--epochs", "1", "--quiet"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=subprocess_env())
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "set_num_threads: n must be <=" in proc.stderr


@pytest.mark.parametrize("use_engine", [True, False])
def test_read_only_running_statistics_are_never_written(use_engine):
    model = gs.Sequential([gs.Dense(4, 6), gs.BatchNorm(6), gs.ReLU(), gs.Dense(6, 3)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.1))
    model.use_engine = use_engine
    X, y = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), np.arange(8) % 3
    model.train_step(X, y)  # the engine (when used) now holds the buffers
    stats = model.layers[1].buffers
    before = {k: v.copy() for k, v in stats.items()}
    for v in stats.values():
        v.flags.writeable = False
    with pytest.raises(ValueError, match="writable|read-only"):
        model.train_step(X, y)
    for k, v in stats.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# ---- 2. NaN in prediction ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = gs.Sequential([gs.Dense(3, 8), gs.ReLU(), gs.Dense(8, 2)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    model.fit(X, y, epochs=2, verbose=0)
    return model, X, y


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predict_refuses_nan_and_inf_naming_row_and_column(trained, bad):
    model, X, y = trained
    X = X.copy()
    X[5, 2] = bad
    for call in (model.predict, model.predict_classes):
        with pytest.raises(ValueError, match=r"predict: X holds NaN or inf \(first at row 5, column 2\)"):
            call(X)


def test_predict_refuses_values_beyond_the_model_dtype(trained):
    model, X, _ = trained
    X = X.astype(np.float64)
    X[2, 1] = 1e39  # finite in float64, inf in the model's float32
    with pytest.raises(ValueError, match=r"predict: X \(standardized, as float32\) holds NaN or inf "
                                         r"\(first at row 2, column 1\)"):
        model.predict(X)


@pytest.mark.parametrize("use_engine", [True, False])
def test_train_step_refuses_nan_inputs_and_targets(trained, use_engine):
    model, X, y = trained
    model.use_engine = use_engine
    before = model.state_dict()
    Xb = X[:8].copy()
    Xb[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"train_step: xb holds NaN or inf \(first at row 3, column 1\)"):
        model.train_step(Xb, y[:8])
    reg = gs.Sequential([gs.Dense(3, 1)], seed=0).compile(gs.MSE(), gs.SGD())
    yb = np.ones((8, 1), np.float32)
    yb[6, 0] = np.inf
    with pytest.raises(ValueError, match=r"train_step: yb holds NaN or inf \(first at row 6, column 0\)"):
        reg.train_step(X[:8], yb)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    model.use_engine = True


def test_cli_predict_refuses_nan_input(tmp_path, trained):
    model, X, _ = trained
    model.save(tmp_path / "m.safetensors")
    X = X.copy()
    X[7, 0] = np.nan
    np.savez(tmp_path / "d.npz", X=X)
    proc = subprocess.run([sys.executable, "-m", "gradstep", "predict", "--model", "m.safetensors",
                           "--data", "d.npz"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=subprocess_env())
    assert proc.returncode == 2, proc.stdout[-500:]
    assert "row 7, column 0" in proc.stderr


# ---- 3. model files that load but are not valid --------------------------------------------------------

def header_of(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def with_header(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + body


def edit_meta(raw: bytes, edit) -> bytes:
    header, body = header_of(raw)
    meta = json.loads(header["__metadata__"]["gradstep"])
    edit(meta)
    header["__metadata__"]["gradstep"] = json.dumps(meta)
    return with_header(header, body)


def edit_tensor(raw: bytes, name: str, edit) -> bytes:
    header, body = header_of(raw)
    info = header[name]
    lo, hi = info["data_offsets"]
    arr = np.frombuffer(body[lo:hi], dtype={"F32": np.float32, "F64": np.float64}[info["dtype"]]).copy()
    edit(arr)
    return with_header(header, body[:lo] + arr.tobytes() + body[hi:])


@pytest.fixture(scope="module")
def saved():
    """Model file bytes: BatchNorm, Adam state after 3 steps, stored preprocessing."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    model = gs.Sequential([gs.Dense(4, 6), gs.BatchNorm(6), gs.ReLU(), gs.Dense(6, 2)], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-2))
    model.fit(X, (X[:, 0] > 0).astype(np.int64), epochs=1, batch_size=10, verbose=0)
    model.preprocessing = gs.preprocessing.Standardize(np.zeros(4), np.ones(4))
    return gs.io.to_bytes(model)


def nan_first(a):
    a[0] = np.nan


BAD_FILES = {
    "NaN in Adam's exp_avg": (lambda r: edit_tensor(r, "optim.state.0.weight.exp_avg", nan_first), "NaN or inf"),
    "inf in exp_avg_sq": (lambda r: edit_tensor(r, "optim.state.3.bias.exp_avg_sq",
                                                lambda a: a.__setitem__(0, np.inf)), "NaN or inf"),
    "negative exp_avg_sq": (lambda r: edit_tensor(r, "optim.state.0.weight.exp_avg_sq",
                                                  lambda a: a.__setitem__(1, -0.5)), "negative"),
    "negative running_var": (lambda r: edit_tensor(r, "model.1.running_var",
                                                   lambda a: a.__setitem__(2, -1.0)), "negative variance"),
    "NaN in prep.mean": (lambda r: edit_tensor(r, "prep.mean", nan_first), "standardization"),
    "inf in prep.scale": (lambda r: edit_tensor(r, "prep.scale", lambda a: a.__setitem__(0, np.inf)),
                          "standardization"),
    "zero prep.scale": (lambda r: edit_tensor(r, "prep.scale", lambda a: a.__setitem__(0, 0.0)), "scale <= 0"),
    "a huge finite weight": (lambda r: edit_tensor(r, "model.3.weight", lambda a: a.__setitem__(0, 3e37)),
                             "magnitude"),
    "disagreeing step counts": (lambda r: edit_meta(r, lambda m: m["optimizer"]["state"]["0.bias"]
                                                    .__setitem__("step", 7)), "step counts that disagree"),
    "negative epochs_done": (lambda r: edit_meta(r, lambda m: m.__setitem__("epochs_done", -3)), "epochs_done"),
    "fractional epochs_done": (lambda r: edit_meta(r, lambda m: m.__setitem__("epochs_done", 2.5)), "epochs_done"),
    "string epochs_done": (lambda r: edit_meta(r, lambda m: m.__setitem__("epochs_done", "3")), "epochs_done"),
    "huge epochs_done": (lambda r: edit_meta(r, lambda m: m.__setitem__("epochs_done", 10**400)), "epochs_done"),
    "null epochs_done": (lambda r: edit_meta(r, lambda m: m.__setitem__("epochs_done", None)), "epochs_done"),
    "negative fit_seed": (lambda r: edit_meta(r, lambda m: m.__setitem__("fit_seed", -1)), "fit_seed"),
    "optimizer state of an unknown parameter": (
        lambda r: edit_meta(r, lambda m: m["optimizer"]["state"].__setitem__(
            "9.weight", m["optimizer"]["state"].pop("0.weight"))), "optimizer state for"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_load_refuses_files_that_are_not_valid_models(saved, case):
    gs.io.from_bytes(saved)  # the untampered file loads
    make, words = BAD_FILES[case]
    with pytest.raises(ValueError, match=words):
        gs.io.from_bytes(make(saved))


def test_a_claimed_huge_layer_is_refused_fast_and_without_allocating(tmp_path):
    """Metadata that claims a 10**6 x 10**6 Dense over a small file: refused before any storage."""
    model = gs.Sequential([gs.Dense(6, 8), gs.ReLU(), gs.Dense(8, 3)], seed=0)
    raw = gs.io.to_bytes(model)

    def claim(m):
        m["model"]["layers"][0]["config"].update(in_features=10**6, out_features=10**6)
        m["model"]["layers"][2]["config"]["in_features"] = 10**6
    (tmp_path / "huge.safetensors").write_bytes(edit_meta(raw, claim))
    # The header's length field claims far more than the file holds (digits in the header).
    header, body = header_of(raw)
    h = json.dumps(header).encode()
    (tmp_path / "digits.safetensors").write_bytes((len(h) * 10**6).to_bytes(8, "little") + h + body)
    # A tensor's shape claims millions of values that its byte range does not hold.
    header["model.0.weight"]["shape"] = [6, 8000000]
    (tmp_path / "shape.safetensors").write_bytes(with_header(header, body))
    proc = run_isolated(f"""
        import resource, time
        import gradstep as gs
        for name in ("huge", "digits", "shape"):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.time()
            try:
                gs.load({str(tmp_path)!r} + "/" + name + ".safetensors")
                print(name, "loaded")
            except ValueError as e:
                grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
                print(name, "refused", time.time() - t0 < 10.0, grew < 50_000, str(e)[:150])
    """)
    assert_clean(proc, "huge refused True True", "digits refused True True", "shape refused True True")
    assert len(raw) < 2000


def test_loaded_models_draw_no_initial_values(saved):
    state = gs._random.generator().bit_generator.state
    gs.io.from_bytes(saved)
    assert gs._random.generator().bit_generator.state == state


# ---- 4. leftovers ------------------------------------------------------------------------------------

def test_a_killed_save_leaves_a_temporary_that_the_next_save_or_load_removes(tmp_path):
    target = tmp_path / "m.safetensors"
    gs.Sequential([gs.Dense(3, 2)], seed=0).save(target)
    killed = run_isolated(f"""
        import os, signal
        import safetensors.numpy
        import gradstep as gs
        def write_half_then_die(tensors, path, metadata=None):
            with open(path, "wb") as f:
                f.write(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
        safetensors.numpy.save_file = write_half_then_die
        gs.Sequential([gs.Dense(3, 2)], seed=1).save({str(target)!r})
    """)
    assert killed.returncode == -signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(stale) == 1 and stale[0].startswith("m.safetensors.gradstep-tmp."), stale
    # Files that are not stale temporaries of this target stay: a live writer's, another
    # target's, a user's own file with a similar name.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [f"m.safetensors.gradstep-tmp.{live.pid}.abcd", f"other.safetensors.gradstep-tmp.{killed_pid(stale[0])}.ab",
                "m.safetensors.tmp", "m.safetensors.gradstep-tmp.notapid.x"]
        for name in keep:
            (tmp_path / name).write_bytes(b"keep")
        gs.load(target)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["m.safetensors"])
        (tmp_path / stale[0]).write_bytes(b"stale again")
        gs.Sequential([gs.Dense(3, 2)], seed=2).save(target)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["m.safetensors"])
    finally:
        live.kill()
        live.wait()


def killed_pid(name: str) -> str:
    return name.split(".gradstep-tmp.")[1].split(".")[0]


def test_save_leaves_no_temporary_and_a_loadable_file(tmp_path):
    model = gs.Sequential([gs.Dense(3, 2)], seed=0)
    for _ in range(3):
        model.save(tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    np.testing.assert_array_equal(gs.load(tmp_path / "m.safetensors").predict(np.ones((1, 3))),
                                  model.predict(np.ones((1, 3))))


# ---- Ctrl-C -----------------------------------------------------------------------------------------

def test_ctrl_c_during_fit_leaves_a_model_that_saves_loads_and_continues(tmp_path):
    """SIGINT mid-fit: KeyboardInterrupt reaches the caller between two whole steps (a step is
    one C++ call, never half applied); the model saves, loads and trains on from where it was."""
    path = tmp_path / "after_ctrl_c.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import numpy as np, sys
        import gradstep as gs
        X = np.random.default_rng(0).standard_normal((20000, 32)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        model = gs.Sequential([gs.Dense(32, 64), gs.ReLU(), gs.Dense(64, 2)], seed=0)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=1e-3))
        class Ready(gs.callbacks.Callback):
            def on_batch_end(self, batch, logs=None):
                if batch == 5:
                    print("ready", flush=True)
        try:
            model.fit(X, y, epochs=1000, batch_size=32, verbose=0, callbacks=[Ready()])
        except KeyboardInterrupt:
            steps = model.optimizer.iterations
            model.save({str(path)!r})
            loaded = gs.load({str(path)!r})
            same = all(np.array_equal(a, loaded.state_dict()[k]) for k, a in model.state_dict().items())
            loaded.fit(X[:64], y[:64], epochs=1, verbose=0)
            print("interrupted", steps > 0, same, loaded.optimizer.iterations == steps + 2,
                  bool(np.isfinite(loaded.predict(X[:10])).all()), flush=True)
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted True True True True" in out, out + err[-2000:]


def test_one_model_trained_from_several_threads_errors_instead_of_crashing():
    # Found while checking the op core: two threads stepping one model with different batch
    # sizes reallocated the workspace under a running step (a segfault). Now one call at a time
    # per Network/OpRunner: the others get ValueError; the model stays finite.
    proc = run_isolated("""
        import threading
        import numpy as np
        import gradstep as gs
        for use_engine in (True, False):
            model = gs.Sequential([gs.Dense(64, 256), gs.ReLU(), gs.Dense(256, 10)], seed=0)
            model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.01))
            model.use_engine = use_engine
            model.train_step(np.ones((2, 64), np.float32), np.zeros(2, np.int64))
            errors = []
            def run(n):
                rng = np.random.default_rng(n)
                X, y = rng.standard_normal((n, 64)).astype(np.float32), rng.integers(0, 10, n)
                for _ in range(20):
                    try:
                        model.train_step(X, y)
                    except ValueError as e:
                        errors.append(str(e))
            threads = [threading.Thread(target=run, args=(n,)) for n in (8, 600, 1500, 3000)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # The fused step is one guarded call: the only refusal is "another thread". Layer by
            # layer, each op (and the loss) is guarded on its own, so another thread's forward may
            # land between this thread's forward and backward, which then refuses with a clean
            # ValueError of its own wording: the promise there is no crash and a finite model.
            if use_engine:
                assert all("another thread" in e for e in errors), sorted(set(errors))[:3]
            print("ok", use_engine, bool(np.isfinite(model.predict(np.ones((2, 64)))).all()))
    """, timeout=300)
    assert_clean(proc, "ok True True", "ok False True")
