"""Data-parallel training over MPI: one model, trained synchronously by K processes.

    mpiexec -n 4 python train.py          # train.py calls model.fit(X, y, ...) as usual
    mpiexec -n 4 gradstep train --data digits

`fit(..., distributed="auto")` (the default) notices that it runs under an MPI launcher (mpiexec,
mpirun, srun) with more than one process and mpi4py installed (`pip install gradstep[mpi]`), and
then trains data-parallel; otherwise it trains on one process as before. `distributed="mpi"`
insists on MPI, `distributed=None` never uses it.

How a step runs on K ranks
- Every rank holds the whole data set and draws the same seeded permutation, so a global batch
  is the one a single process would train on; rank r takes its contiguous share of it (sizes
  differing by at most one row).
- Each rank runs forward and backward in C++ on its share, scales its flat gradient buffer
  (`model.arena.grads`) by its share of the global batch, n_r / B (the loss kernels take the mean
  over the local rows), and the buffer is summed in place across ranks with one
  `Allreduce(IN_PLACE)`: every rank then holds the gradient of the global batch and applies the
  same update. The weights stay bit-identical on every rank (checked after every epoch); without
  Dropout and BatchNorm the run equals single-process training on the same global batches up to
  the order of the sums.
- BatchNorm normalizes with its own rank's batch statistics. Its running statistics are averaged
  over the ranks at the end of every epoch (before validation): the running-average update is
  linear, so this equals running averages of the rank-averaged batch statistics, identical on
  every rank.
- Dropout draws different masks on every rank (its generators are seeded with the rank).
- The loss and metrics of each epoch, the validation (each rank evaluates a share of the
  validation data) and so `History` are global: identical on every rank. Callbacks run on every
  rank with these global logs, so EarlyStopping and TerminateOnNaN stop every rank together;
  `model.stop_training` set by any rank stops all of them. Callbacks that write files
  (`main_process_only = True`: ModelCheckpoint, CSVLogger, TensorBoard) run on rank 0 only, and only
  rank 0 shows progress bars.
- Each rank runs as many kernel threads as it owns cores: the cores it may run on, shared with the
  other ranks on the same machine (never more than `gs.get_num_threads()` was).
- At the start of `fit`, rank 0's weights, optimizer state and fit seed are sent to every rank, and
  the data is checked to be the same on every rank.
- If a rank fails (an exception, an MPI error), it prints what happened and aborts the whole job
  (`MPI_Abort`); if a rank dies, the launcher ends the others.

`rank()`, `world_size()` and `is_main()` describe this process's place in the job (0, 1, True
outside MPI); scripts use `if gs.distributed.is_main():` around their own prints and saves.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
import warnings
import zlib
from typing import Any

import numpy as np

__all__ = ["MODES", "is_main", "rank", "world_size"]

MODES = ("auto", "mpi", None)

# What MPI launchers put in each process's environment: (world size, rank) variable names.
_LAUNCHER_ENV = (("PMI_SIZE", "PMI_RANK"),                              # MPICH / Intel MPI hydra, srun --mpi=pmi2
                 ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),      # Open MPI
                 ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))        # MVAPICH

_world: Any = None   # mpi4py's COMM_WORLD once this process has joined the job
_threads_set = False


def _launched() -> tuple[int, int] | None:
    """(world size, rank) when an MPI launcher started this very process, else None. A process
    that another Python process started (joblib/multiprocessing workers inherit the launcher's
    environment) is not one of the job's ranks."""
    if multiprocessing.parent_process() is not None:
        return None
    for size_var, rank_var in _LAUNCHER_ENV:
        size = os.environ.get(size_var)
        if size is not None:
            try:
                return int(size), int(os.environ.get(rank_var, "0"))
            except ValueError:
                return None
    return None


def _import_mpi(why: str) -> Any:
    try:
        import mpi4py
    except ImportError:
        raise ImportError(f"{why} needs mpi4py and an MPI library: pip install 'gradstep[mpi]' "
                          f"(mpi4py and the mpich wheel)") from None
    if "mpi4py.MPI" not in sys.modules:
        mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI
    from mpi4py import MPI
    return MPI


def _comm(mode: str | None) -> Any:
    """COMM_WORLD of the job this process belongs to, or None when training is single-process."""
    global _world
    if mode is None:
        return None
    if _world is not None:
        return _world
    launched = _launched()
    if mode == "auto":
        if launched is None or launched[0] <= 1:
            return None
        try:
            MPI = _import_mpi("distributed training")
        except ImportError:
            raise RuntimeError(
                f"fit: this process is rank {launched[1]} of {launched[0]} started by an MPI "
                f"launcher, but mpi4py is not installed, so the ranks cannot train together. "
                f"pip install 'gradstep[mpi]', or pass distributed=None to train each process "
                f"on its own") from None
    else:
        MPI = _import_mpi("fit(distributed='mpi')")
    _world = MPI.COMM_WORLD
    return _world


def rank() -> int:
    """This process's rank in the MPI job (0 outside one)."""
    if _world is not None:
        return _world.Get_rank()
    launched = _launched()
    return 0 if launched is None else launched[1]


def world_size() -> int:
    """How many processes the MPI job has (1 outside one)."""
    if _world is not None:
        return _world.Get_size()
    launched = _launched()
    return 1 if launched is None else launched[0]


def is_main() -> bool:
    """True on rank 0 (and outside MPI): the process that prints and writes files."""
    return rank() == 0


def cores_per_rank(comm: Any) -> tuple[int, int, int]:
    """(cores this rank owns, ranks on this machine, cores those ranks may run on). Ranks that a
    launcher bound to disjoint cores own their own; ranks that share cores split them evenly."""
    MPI = sys.modules["mpi4py.MPI"]
    own = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        sets = node.allgather(own)
    finally:
        node.Free()
    union = set().union(*map(set, sets))
    disjoint = sum(len(s) for s in sets) == len(union)
    owned = len(own) if disjoint else max(1, len(union) // len(sets))
    return owned, len(sets), len(union)


def _set_threads(comm: Any) -> None:
    """Run as many kernel threads as this rank owns cores (once per process)."""
    global _threads_set
    if _threads_set:
        return
    from ._threads import get_num_threads, set_num_threads

    owned, ranks, cores = cores_per_rank(comm)
    set_num_threads(max(1, min(get_num_threads(), owned)))
    _threads_set = True
    if ranks > cores and comm.Get_rank() == 0:
        warnings.warn(f"distributed: {ranks} ranks share {cores} cores on one machine; each rank "
                      f"runs 1 thread, but the cores are oversubscribed and training will be much "
                      f"slower than with {cores} ranks", RuntimeWarning, stacklevel=3)


# ---- the training-loop strategies ----------------------------------------------------------------
class _SingleProcess:
    """What `fit` does on one process: every hook is the identity."""

    world, rank, is_main = 1, 0, True

    def setup(self, model: Any, X: np.ndarray, y: np.ndarray, val: Any, seed: int) -> int:
        return seed

    def check_batches(self, n: int, batch_size: int, batchnorm: bool) -> None:
        pass

    def callbacks(self, callbacks: list) -> list:
        return callbacks

    def seed_dropout(self, model: Any, seed: int, epoch: int) -> None:
        pass

    def share(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi

    def step(self, model: Any, xb: np.ndarray, yb: np.ndarray, size: int,
             sample_weight: np.ndarray | None = None) -> float:
        return model._step(xb, yb, sample_weight)  # fit checked X and y once, before the first batch

    def any_stop(self, flag: bool, batch: bool = False) -> bool:
        return flag

    def results(self, tracker: Any) -> dict[str, float]:
        return tracker.results()

    def end_epoch(self, model: Any) -> None:
        pass

    def evaluate(self, model: Any, X: np.ndarray, y: np.ndarray, batch_size: int,
                 sample_weight: np.ndarray | None = None) -> dict[str, float]:
        return model._evaluate_arrays(X, y, batch_size, sample_weight)

    def failed(self, exc: BaseException) -> None:
        pass


_SINGLE = _SingleProcess()


def runner(model: Any, distributed: Any) -> Any:
    """The strategy `fit` trains with: single-process, or data-parallel over the MPI job."""
    if distributed not in MODES or isinstance(distributed, bool):
        raise ValueError(f"fit: distributed must be 'auto', 'mpi' or None, got {distributed!r}")
    comm = _comm(distributed)
    if comm is None or comm.Get_size() == 1:
        return _SINGLE
    return DataParallel(comm)


def _share(lo: int, hi: int, k: int, r: int) -> tuple[int, int]:
    """Rank r's contiguous part of rows lo..hi split over k ranks (sizes differ by at most one)."""
    n = hi - lo
    q, extra = divmod(n, k)
    start = lo + r * q + min(r, extra)
    return start, start + q + (r < extra)


def _fingerprint(a: np.ndarray) -> tuple:
    """Shape, dtype and a checksum of up to 4096 evenly spaced rows: cheap, catches different data."""
    rows = a[np.linspace(0, len(a) - 1, num=min(len(a), 4096)).astype(np.int64)] if len(a) else a
    return a.shape, a.dtype.str, zlib.crc32(np.ascontiguousarray(rows).tobytes())


class DataParallel:
    """Synchronous data parallelism over an MPI communicator (see the module's docstring)."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.world = comm.Get_size()
        self.rank = comm.Get_rank()
        self.is_main = self.rank == 0
        self.MPI = sys.modules["mpi4py.MPI"]
        self._scalar = np.zeros(1, np.float64)
        self._sync_stop = False
        _set_threads(comm)

    # ---- start of fit ------------------------------------------------------------------------
    def setup(self, model: Any, X: np.ndarray, y: np.ndarray, val: Any, seed: int) -> int:
        """Check that every rank holds the same data; give every rank rank 0's model and seed."""
        if getattr(model, "device", "cpu") != "cpu":
            raise ValueError(f"fit: data-parallel training over MPI runs on the CPU; a model on "
                             f"device={model.device!r} cannot train with MPI yet (pass distributed=None)")
        mine = [_fingerprint(X), _fingerprint(y)] + ([_fingerprint(val[0]), _fingerprint(val[1])] if val else [])
        everyone = self.comm.allgather(mine)
        for r, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                what = "X, y" if theirs[:2] != everyone[0][:2] else "the validation data"
                raise ValueError(
                    f"fit: {what} on MPI rank {r} differ from rank 0's (shapes {[t[0] for t in theirs]} vs "
                    f"{[t[0] for t in everyone[0]]}); with distributed training every rank passes the "
                    f"same whole data set and takes its share of each batch itself")
        for buf in [model.arena.params] + [b for layer in model.layers for b in layer.buffers.values()]:
            self.comm.Bcast(buf, root=0)
        # The optimizer's hyperparameters, step counts and state (also a loaded model's, not yet
        # attached), attached now on every rank.
        opt_state = self.comm.bcast(model.optimizer.state_dict() if self.is_main else None, root=0)
        try:
            model.optimizer.load_state_dict(opt_state, params=model.parameters())
            problem = None
        except (TypeError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        for r, theirs in enumerate(self.comm.allgather(problem)):  # raise on every rank, or on none
            if theirs:
                raise ValueError(f"fit: MPI rank {r} cannot take rank 0's optimizer state ({theirs}); "
                                 f"every rank must build the same model and optimizer")
        model.epochs_done = self.comm.bcast(model.epochs_done, root=0)
        return int(self.comm.bcast(seed, root=0))

    @staticmethod
    def _state_buffers(model: Any) -> list[np.ndarray]:
        """Everything that must be equal on every rank: weights, BatchNorm buffers, optimizer state."""
        bufs = [model.arena.params]
        bufs += [b for layer in model.layers for b in layer.buffers.values()]
        opt = model.optimizer
        if model.arena.slots and hasattr(opt, "_arena_block"):
            block = opt._arena_block(model.arena)
            bufs += [block.buffer(name) for name in opt._buffer_names()]
        return bufs

    def check_batches(self, n: int, batch_size: int, batchnorm: bool) -> None:
        if not batchnorm:
            return
        for size in {min(batch_size, n), n % batch_size or batch_size}:
            smallest = size // self.world
            if smallest < 2:
                raise ValueError(f"fit: a batch of {size} rows split over {self.world} MPI ranks gives a "
                                 f"rank {smallest} row(s), and BatchNorm needs more than 1 per rank in "
                                 f"training; use batch_size >= {2 * self.world} (and avoid a last batch "
                                 f"smaller than that)")

    def callbacks(self, callbacks: list) -> list:
        hooked = [cb for cb in callbacks if self.is_main or not getattr(cb.cb, "main_process_only", False)]
        from .callbacks import Callback
        # A callback's on_batch_end may stop training: then the ranks agree after every batch.
        self._sync_stop = any(getattr(type(cb.cb), "on_batch_end", Callback.on_batch_end) is not Callback.on_batch_end
                              for cb in hooked)
        return hooked

    def seed_dropout(self, model: Any, seed: int, epoch: int) -> None:
        for i, layer in enumerate(model.layers):
            if hasattr(layer, "_rng"):
                layer._rng = np.random.default_rng([seed, epoch, i, self.rank])

    # ---- every batch ---------------------------------------------------------------------------
    def share(self, lo: int, hi: int) -> tuple[int, int]:
        return _share(lo, hi, self.world, self.rank)

    def step(self, model: Any, xb: np.ndarray, yb: np.ndarray, size: int,
             sample_weight: np.ndarray | None = None) -> float:
        """Forward/backward on this rank's rows, all-reduce the gradients, the same update
        everywhere. Returns the loss over the whole global batch of `size` rows. With sample
        weights each rank's loss is Σ w·loss / n over its n rows, so the n/size scaling below gives
        Σ w·loss / size over the global batch, as on one process; clipping (in `update`) sees
        the all-reduced gradient."""
        grads = model.arena.grads
        n = xb.shape[0]
        if n:
            value = model.forward_backward(xb, yb, sample_weight)
            weight = n / size
            if weight != 1.0:
                np.multiply(grads, grads.dtype.type(weight), out=grads)
            self._scalar[0] = value * weight
        else:  # fewer rows than ranks in this batch
            grads[...] = 0
            self._scalar[0] = 0.0
        MPI = self.MPI
        request = self.comm.Iallreduce(MPI.IN_PLACE, self._scalar, op=MPI.SUM)
        self.comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        model.update()
        request.Wait()
        return float(self._scalar[0])

    def any_stop(self, flag: bool, batch: bool = False) -> bool:
        if batch and not self._sync_stop:
            return flag
        return bool(self.comm.allreduce(bool(flag), op=self.MPI.LOR))

    # ---- every epoch ---------------------------------------------------------------------------
    def results(self, tracker: Any) -> dict[str, float]:
        """The metrics over every rank's rows: the ranks' trackers merged (sums and counts added,
        confusion matrices added, AUC scores pooled), identical on every rank."""
        metrics = tracker.metrics  # in the same order on every rank (custom metrics are keys too)
        parts = self.comm.allgather(([tracker.sums[m] for m in metrics], [tracker.counts[m] for m in metrics],
                                     tracker.confusion, tracker.scores, tracker.targets))
        for i, m in enumerate(metrics):  # summed in rank order: the same bits on every rank
            tracker.sums[m] = sum(p[0][i] for p in parts)
            tracker.counts[m] = sum(p[1][i] for p in parts)
        confusions = [p[2] for p in parts if p[2] is not None]
        tracker.confusion = sum(confusions[1:], confusions[0]) if confusions else None
        tracker.scores = [a for p in parts for a in p[3]]
        tracker.targets = [a for p in parts for a in p[4]]
        return tracker.results()

    def end_epoch(self, model: Any) -> None:
        """Average BatchNorm's running statistics; make sure the weights agree bit for bit."""
        running = [b for layer in model.layers for b in layer.buffers.values()]
        if running:
            flat = np.concatenate([b.ravel() for b in running]).astype(np.float64)
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
            flat /= self.world
            at = 0
            for b in running:
                b[...] = flat[at:at + b.size].reshape(b.shape)
                at += b.size
        sums = self.comm.allgather(zlib.crc32(model.arena.params.tobytes()))
        if len(set(sums)) > 1:
            # The MPI library summed in a different order on some rank: give all rank 0's state.
            for buf in self._state_buffers(model):
                self.comm.Bcast(buf, root=0)
            if self.is_main:
                warnings.warn("distributed: the weights differed across MPI ranks (the MPI library's "
                              "all-reduce did not give every rank the same bits); rank 0's weights and "
                              "optimizer state were sent to all ranks", RuntimeWarning, stacklevel=2)

    def evaluate(self, model: Any, X: np.ndarray, y: np.ndarray, batch_size: int,
                 sample_weight: np.ndarray | None = None) -> dict[str, float]:
        """Loss and metrics over all of (X, y): each rank evaluates its share, the sums are reduced."""
        from . import metrics as _metrics

        lo, hi = _share(0, X.shape[0], self.world, self.rank)
        if hi > lo:
            w = None if sample_weight is None else sample_weight[lo:hi]
            total, tracker = model._evaluate_sums(X[lo:hi], y[lo:hi], batch_size, w)
        else:
            total, tracker = 0.0, _metrics.Tracker(model.metrics, model.loss)
        total = sum(self.comm.allgather(total))  # in rank order: the same bits on every rank
        return {"loss": total / X.shape[0] + model.penalty(), **self.results(tracker)}

    def failed(self, exc: BaseException) -> None:
        """End the whole job: the other ranks would wait forever in the next all-reduce."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"{tb}gradstep: MPI rank {self.rank} of {self.world} failed "
                         f"({type(exc).__name__}: {exc}); aborting the job on every rank\n")
        sys.stderr.flush()
        self.comm.Abort(1)
