"""Data-parallel fit over MPI (gradstep.distributed): 2 ranks on localhost against one process."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradstep as gs
from gradstep import distributed
from conftest import subprocess_env

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import mpi_cases  # noqa: E402

_LAUNCHER_VARS = [v for pair in distributed._LAUNCHER_ENV for v in pair]


def mpiexec() -> str:
    """The mpiexec of the MPI that mpi4py uses: the mpich wheel puts it beside the interpreter."""
    pytest.importorskip("mpi4py", reason="data-parallel training needs mpi4py (the mpi extra)")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec: install the mpich wheel (pip install mpich)")
    return found


def launch(args: list[str], cwd: Path, n: int = 2) -> subprocess.CompletedProcess:
    env = subprocess_env()
    for v in _LAUNCHER_VARS:  # this test process may itself run under a launcher
        env.pop(v, None)
    env.pop("OMP_NUM_THREADS")  # let each rank choose its threads
    return subprocess.run([mpiexec(), "-n", str(n), sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    proc = launch([str(HERE / "mpi_cases.py"), str(out)], cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "results.pkl", "rb") as f:
        return pickle.load(f), proc, out


def single_process(name: str):
    model, X, y, kwargs = mpi_cases.CASES[name]()
    history = model.fit(X, y, verbose=0, distributed=None, **kwargs)
    return mpi_cases.state(model), history.history


@pytest.mark.parametrize("name", ["float64-adam", "float64-rmsprop", "float64-sgd-regression",
                                  "float64-epoch-metrics"])
def test_two_ranks_equal_one_process_float64(mpi_run, name):
    results, _, _ = mpi_run
    ranks = results[name]
    assert len(ranks) == 2
    assert np.array_equal(ranks[0]["state"], ranks[1]["state"])  # bit-identical across ranks
    assert ranks[0]["history"] == ranks[1]["history"]
    state, history = single_process(name)
    assert not np.array_equal(state, mpi_cases.CASES[name]()[0].arena.params)  # it trained
    np.testing.assert_allclose(ranks[0]["state"], state, rtol=1e-10, atol=1e-12)
    assert ranks[0]["history"].keys() == history.keys()
    for key, values in history.items():
        np.testing.assert_allclose(ranks[0]["history"][key], values, rtol=1e-10, atol=1e-12, err_msg=key)


def test_two_ranks_equal_one_process_float32(mpi_run):
    ranks = mpi_run[0]["float32-adam"]
    assert np.array_equal(ranks[0]["state"], ranks[1]["state"])
    state, history = single_process("float32-adam")
    np.testing.assert_allclose(ranks[0]["state"], state, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ranks[0]["history"]["loss"], history["loss"], rtol=1e-5)


def test_batchnorm_dropout_identical_across_ranks(mpi_run):
    ranks = mpi_run[0]["batchnorm-dropout"]
    # Weights and BatchNorm running statistics (averaged over the ranks) are the same bits.
    assert np.array_equal(ranks[0]["state"], ranks[1]["state"])
    assert ranks[0]["history"] == ranks[1]["history"]
    # Dropout masks differ per rank, so this is not the single-process run, but it trains.
    state, _ = single_process("batchnorm-dropout")
    assert not np.array_equal(ranks[0]["state"], state)
    assert ranks[0]["history"]["loss"][-1] < ranks[0]["history"]["loss"][0]


def test_each_rank_owns_one_of_two_cores(mpi_run):
    threads = [r["threads"] for r in mpi_run[0]["float64-adam"]]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads == [max(1, cores // 2)] * 2


def test_files_and_output_from_rank_0_only(mpi_run):
    results, proc, out = mpi_run
    files = results["files"]
    assert [f["rank"] for f in files] == [0, 1] and [f["size"] for f in files] == [2, 2]
    assert [f["main"] for f in files] == [True, False]
    # rank 1 stopped after epoch 2 (0-based 1): every rank stopped there together
    assert [f["epochs"] for f in files] == [2, 2]
    assert files[1]["saved"] == []
    assert [Path(p).name for p in files[0]["saved"]] == ["ckpt-1.safetensors", "ckpt-2.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["ckpt-1.safetensors", "ckpt-2.safetensors",
                                                    "log.csv", "results.pkl"]
    assert len((out / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs, written once
    assert proc.stdout.count("rank 0 done") == 1
    # one progress bar per epoch (tqdm draws it at 0% and at 100%)
    assert proc.stderr.count("Epoch 1/4: 100%") == 1 and proc.stderr.count("Epoch 2/4: 100%") == 1
    assert "Epoch 3/4" not in proc.stderr


def test_resume_from_rank_0s_checkpoint(mpi_run):
    results, _, out = mpi_run
    ranks = results["resume"]
    assert np.array_equal(ranks[0]["state"], ranks[1]["state"])
    assert ranks[0]["epoch"] == ranks[1]["epoch"] == [2]  # continues after the checkpoint's 2 epochs
    model, X, y, kwargs = mpi_cases.classification("float64", "adam")
    model = gs.load(out / "ckpt-2.safetensors")
    history = model.fit(X, y, verbose=0, distributed=None, **{**kwargs, "epochs": 1})
    np.testing.assert_allclose(ranks[0]["state"], mpi_cases.state(model), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ranks[0]["history"]["loss"], history.history["loss"], rtol=1e-10)


def test_cli_train_under_mpiexec(tmp_path):
    pytest.importorskip("sklearn")
    proc = launch(["-m", "gradstep", "train", "--epochs", "2", "--layers", "16", "--quiet",
                   "--out", "m.safetensors", "--plot", ""], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy:") == 1
    assert proc.stdout.count("model saved to m.safetensors") == 1
    assert gs.load(tmp_path / "m.safetensors").out_features == 10


def test_a_failing_rank_ends_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import numpy as np, gradstep as gs\n"
        "class Fail(gs.callbacks.Callback):\n"
        "    def on_epoch_end(self, epoch, logs=None):\n"
        "        if gs.distributed.rank() == 1: raise RuntimeError('disk full on rank 1')\n"
        "m = gs.Sequential([gs.Dense(4, 2)], seed=0).compile('mse', 'sgd')\n"
        "X = np.ones((8, 4)); m.fit(X, np.ones((8, 2)), epochs=50, verbose=0, callbacks=[Fail()])\n")
    proc = launch([str(script)], cwd=tmp_path)
    assert proc.returncode != 0
    assert "gradstep: MPI rank 1 of 2 failed (RuntimeError: disk full on rank 1)" in proc.stderr


def test_ranks_with_different_optimizers_all_raise(tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(
        "import numpy as np, gradstep as gs\n"
        "opt = 'adam' if gs.distributed.rank() == 0 else 'sgd'\n"
        "m = gs.Sequential([gs.Dense(4, 2)], seed=0).compile('mse', opt)\n"
        "try:\n"
        "    m.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)\n"
        "except ValueError as e:\n"
        "    print(f'rank {gs.distributed.rank()}: {e}')\n")
    proc = launch([str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for r in (0, 1):
        assert f"rank {r}: fit: MPI rank 1 cannot take rank 0's optimizer state" in proc.stdout


# ---- without MPI ------------------------------------------------------------------------------------
@pytest.fixture
def no_mpi(monkeypatch):
    """An environment without mpi4py and without a launcher."""
    for v in _LAUNCHER_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` raises ImportError
    monkeypatch.setattr(distributed, "_world", None)


def _tiny():
    X = np.random.default_rng(0).normal(size=(40, 3))
    model = gs.Sequential([gs.Dense(3, 2)], dtype="float64", seed=0).compile("mse", "sgd")
    return model, X, X[:, :2] * 2


def test_auto_without_mpi_trains_on_one_process(no_mpi, capsys):
    model, X, y = _tiny()
    history = model.fit(X, y, epochs=2, verbose=0)  # distributed="auto" by default
    ref, _, _ = _tiny()
    ref_history = ref.fit(X, y, epochs=2, verbose=0, distributed=None)
    assert np.array_equal(model.arena.params, ref.arena.params)
    assert history.history == ref_history.history
    assert capsys.readouterr() == ("", "")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


def test_launched_without_mpi4py_says_so(no_mpi, monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (1, 2, False)
    model, X, y = _tiny()
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 .* mpi4py is not installed"):
        model.fit(X, y, verbose=0)
    model.fit(X, y, verbose=0, distributed=None)  # each process on its own, on request


def test_mpi_mode_without_mpi4py_raises(no_mpi):
    model, X, y = _tiny()
    with pytest.raises(ImportError, match=r"pip install 'gradstep\[mpi\]'"):
        model.fit(X, y, verbose=0, distributed="mpi")


def test_bad_distributed_value(no_mpi):
    model, X, y = _tiny()
    for bad in ("yes", True, 2):
        with pytest.raises(ValueError, match="distributed must be 'auto', 'mpi' or None"):
            model.fit(X, y, verbose=0, distributed=bad)


def test_worker_processes_of_a_rank_are_not_ranks(monkeypatch):
    """joblib/multiprocessing workers inherit the launcher's environment but are not ranks."""
    import multiprocessing

    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(distributed._launched) is None
    assert distributed._launched() == (2, 0)


def test_share_splits_every_batch_exactly():
    for lo, hi, k in [(0, 32, 2), (32, 35, 2), (10, 11, 2), (0, 7, 3), (5, 5, 2)]:
        parts = [distributed._share(lo, hi, k, r) for r in range(k)]
        assert parts[0][0] == lo and parts[-1][1] == hi
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [e - s for s, e in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
