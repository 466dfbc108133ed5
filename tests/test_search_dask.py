"""Search trials on a Dask cluster (a LocalCluster on this machine): the same trials as n_jobs=1."""
from __future__ import annotations

import os

import numpy as np
import pytest

import gradstep as gs
from gradstep import search

distributed = pytest.importorskip("distributed", reason="search on a cluster needs dask.distributed (the dask extra)")


def make_build(marker: str | None = None):
    """build(params); with `marker`, the first trial with lr > 0.01 kills its worker process once
    (a closure: cloudpickle sends it to the workers by value)."""
    def build(params):
        if marker is not None and params["lr"] > 0.01 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker dies in the middle of the trial
        model = gs.Sequential([gs.Dense(64, 16), gs.ReLU(), gs.Dense(16, 10)])
        return model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(lr=params["lr"]), metrics=["accuracy"])
    return build


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = gs.datasets.load_digits()
    return X[:300], y[:300]


def same_trials(a, b):
    assert [t.index for t in a.trials] == [t.index for t in b.trials]
    for ta, tb in zip(a.trials, b.trials):
        assert ta.params == tb.params and ta.score == tb.score and ta.seed == tb.seed
        assert ta.history.history == tb.history.history


SPACE = {"lr": search.LogUniform(1e-3, 1e-1)}


def test_random_search_on_a_cluster_equals_serial(cluster, digits):
    X, y = digits
    serial = search.random_search(make_build(), SPACE, X, y, trials=6, epochs=2, seed=0)
    remote = search.random_search(make_build(), SPACE, X, y, trials=6, epochs=2, seed=0,
                                  scheduler=cluster.scheduler_address)
    same_trials(serial, remote)
    assert len({t.score for t in serial.trials}) > 1  # the trials differ from each other
    assert np.array_equal(serial.best_model.arena.params, remote.best_model.arena.params)


def test_coarse_to_fine_on_a_cluster_equals_serial(cluster, digits):
    X, y = digits
    kwargs = dict(stages=[(4, 1), (2, 2)], seed=1, refit=False)
    serial = search.coarse_to_fine(make_build(), SPACE, X, y, **kwargs)
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        remote = search.coarse_to_fine(make_build(), SPACE, X, y, scheduler=client, **kwargs)
        assert client.status == "running"  # a Client the caller gave stays open
    same_trials(serial, remote)
    assert serial.spaces == remote.spaces


def test_a_killed_workers_trials_are_recomputed(cluster, digits, tmp_path):
    X, y = digits
    marker = str(tmp_path / "killed")
    open(marker, "w").close()  # no kill in the serial run
    serial = search.random_search(make_build(marker), SPACE, X, y, trials=6, epochs=1, seed=0, refit=False)
    os.unlink(marker)
    remote = search.random_search(make_build(marker), SPACE, X, y, trials=6, epochs=1, seed=0, refit=False,
                                  scheduler=cluster.scheduler_address)
    assert os.path.exists(marker)  # a worker did die
    same_trials(serial, remote)


def test_bad_scheduler(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(search, "_CONNECT_TIMEOUT", "1s")
    with pytest.raises(TypeError, match="scheduler must be a Dask scheduler address"):
        search.random_search(make_build(), SPACE, X, y, trials=1, scheduler=8786)
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        search.random_search(make_build(), SPACE, X, y, trials=1, epochs=1,
                             scheduler="tcp://127.0.0.1:9")


def test_cli_search_scheduler_flag(cluster, capsys):
    from gradstep import cli

    def run(*extra):
        code = cli.main(["search", "--trials", "3", "--epochs", "1", "--layers", "16", "--threads", "1",
                         "--quiet", *extra])
        assert code == 0
        return capsys.readouterr().out

    serial, remote = run(), run("--scheduler", cluster.scheduler_address)
    assert "val_accuracy" in serial and "best model retrained" in serial
    assert remote == serial
