"""Training runs that test_distributed.py launches under `mpiexec -n 2` and repeats on one process.

    mpiexec -n 2 python tests/mpi_cases.py OUTDIR

Every rank runs every case; rank 0 writes OUTDIR/results.pkl: for each case, every rank's final
weights (with BatchNorm buffers), History and what its callbacks saw. Only rank 0 prints.
"""
from __future__ import annotations

import os
import pickle
import sys

import numpy as np

import gradstep as gs


def _data(n: int, features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, features))


def classification(dtype: str, optimizer: str):
    X = _data(203, 12, 0)
    y = ((X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)).astype(np.int64)
    model = gs.Sequential([gs.Dense(12, 16, l2=1e-3), gs.Tanh(), gs.Dense(16, 8), gs.ReLU(),
                           gs.Dense(8, 3)], dtype=dtype, seed=3)
    model.compile(gs.SoftmaxCrossEntropy(), gs.optim.get(optimizer, lr=0.05), metrics=["accuracy"])
    # 162 training rows in batches of 32: the last batch (2 rows) splits 1 + 1.
    return model, X, y, dict(epochs=3, batch_size=32, validation_split=0.2, seed=5)


def regression():
    X = _data(91, 5, 1)
    y = X @ np.arange(1.0, 6.0) / 5 + 0.1 * np.sin(X[:, 0])
    model = gs.Sequential([gs.Dense(5, 16), gs.ELU(), gs.Dense(16, 1)], dtype="float64", seed=4)
    model.compile(gs.MSE(), gs.SGD(lr=0.02, momentum=0.9, nesterov=True), metrics=["mae"])
    # batch_size 3 splits 2 + 1; the last batch (1 row) leaves rank 1 with none
    return model, X, y, dict(epochs=2, batch_size=3, validation_data=(X[:20], y[:20]), seed=6)


def batchnorm_dropout():
    X = _data(200, 12, 2)
    y = (X[:, 0] > 0).astype(np.int64)
    model = gs.Sequential([gs.Dense(12, 16), gs.BatchNorm(16), gs.ReLU(), gs.Dropout(0.3),
                           gs.Dense(16, 2)], seed=3)
    model.compile(gs.SoftmaxCrossEntropy(), "adam", metrics=["accuracy"])
    return model, X, y, dict(epochs=3, batch_size=32, validation_split=0.1, seed=7)


def epoch_metrics():
    """Metrics computed over the whole epoch (confusion matrix, AUC): merged over the ranks."""
    X = _data(150, 6, 3)
    y = (X[:, 0] - X[:, 1] + 0.3 * X[:, 2] > 0).astype(np.float64)
    model = gs.Sequential([gs.Dense(6, 8), gs.Tanh(), gs.Dense(8, 1)], dtype="float64", seed=5)
    model.compile(gs.BinaryCrossEntropy(from_logits=True), gs.SGD(lr=0.1),
                  metrics=["accuracy", "precision", "recall", "f1", "auc"])
    return model, X, y, dict(epochs=2, batch_size=25, validation_split=0.3, seed=8)


CASES = {
    "float64-epoch-metrics": epoch_metrics,
    "float64-adam": lambda: classification("float64", "adam"),
    "float64-rmsprop": lambda: classification("float64", "rmsprop"),
    "float32-adam": lambda: classification("float32", "adam"),
    "float64-sgd-regression": regression,
    "batchnorm-dropout": batchnorm_dropout,
}


class StopAtEpoch(gs.callbacks.Callback):
    """Stops training on rank 1 only: fit must stop every rank together."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1 and gs.distributed.rank() == 1:
            self.model.stop_training = True


def state(model) -> np.ndarray:
    return np.concatenate([model.arena.params.astype(np.float64)]
                          + [b.ravel().astype(np.float64) for layer in model.layers
                             for b in layer.buffers.values()])


def main(outdir: str) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    results = {}
    for name, make in CASES.items():
        model, X, y, kwargs = make()
        history = model.fit(X, y, verbose=0, **kwargs)
        results[name] = comm.gather({"state": state(model), "history": history.history,
                                     "threads": gs.get_num_threads()})
    # Files and output: a CSV log and checkpoints (rank 0 only), progress bars (rank 0 only),
    # and a stop requested by rank 1 alone.
    model, X, y, kwargs = classification("float64", "adam")
    csv = gs.callbacks.CSVLogger(os.path.join(outdir, "log.csv"))
    ckpt = gs.callbacks.ModelCheckpoint(os.path.join(outdir, "ckpt-{epoch}.safetensors"),
                                        save_best_only=False)
    history = model.fit(X, y, verbose=1, callbacks=[csv, ckpt, StopAtEpoch()],
                        **{**kwargs, "epochs": 4})
    results["files"] = comm.gather({"saved": ckpt.saved, "epochs": len(history.epoch),
                                    "rank": gs.distributed.rank(), "size": gs.distributed.world_size(),
                                    "main": gs.distributed.is_main()})
    # Resuming: rank 0 loads the checkpoint, rank 1 only builds the same architecture (other
    # weights, fresh optimizer): fit gives every rank rank 0's weights, optimizer state and epoch.
    comm.Barrier()
    if comm.Get_rank() == 0:
        model = gs.load(os.path.join(outdir, "ckpt-2.safetensors"))
    else:
        model = classification("float64", "adam")[0]
        model.arena.params[...] = 0.0
    history = model.fit(X, y, verbose=0, **{**kwargs, "epochs": 1})
    results["resume"] = comm.gather({"state": state(model), "history": history.history,
                                     "epoch": history.epoch})
    if gs.distributed.is_main():
        with open(os.path.join(outdir, "results.pkl"), "wb") as f:
            pickle.dump(results, f)
        print("rank 0 done")


if __name__ == "__main__":
    main(sys.argv[1])
