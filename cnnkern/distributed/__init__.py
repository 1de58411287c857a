"""Data-parallel training over MPI (``mpi4py``; ``pip install "cnnkern[mpi]"``), one process per rank.

``model.fit(x, y, ..., distributed=True)`` under ``mpirun -n N`` (or ``distributed=MPIStrategy(...)``):
every rank holds the whole model and the same data; each global batch of ``batch_size`` rows (drawn from
the same shuffle on every rank: the same seed gives the same permutation) is cut into N contiguous shards,
one per rank; the gradients are averaged across ranks in buckets started during the backward pass
(:mod:`._reducer`) and every rank applies the same update, so parameters, optimizer state and batch-norm
statistics are identical on every rank after every step. Loss and accuracy are summed across ranks; only
rank 0 prints progress and writes checkpoints. ``cnnkern train`` started by ``mpirun`` with more than one
rank does all this by itself (:func:`from_environment`).

Failures end the job on every rank with :class:`DistributedError`, never a hang (:mod:`._link`): a rank
that raises tells the others, a rank that waits longer than ``timeout`` seconds gives up, and ranks
started with different configurations (model, weights, seed, batch size, data, backend...) raise
:class:`DistributedConfigError` before the first step. Details and the numerical bounds against one rank:
docs/distributed.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import NonFiniteLossError
from ._link import DistributedConfigError, DistributedError, Link, import_mpi
from ._reducer import GradientReducer, block_shares, fold_rows

if TYPE_CHECKING:
    from .._typing import BackendArray
    from ..models import Model
__all__ = [
    "DistributedConfigError",
    "DistributedError",
    "MPIStrategy",
    "from_environment",
    "launched_ranks",
    "resolve",
]

_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_ranks() -> int:
    """The number of ranks ``mpirun`` / ``mpiexec`` started, read from its environment (1 otherwise);
    MPI itself is not initialised."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class MPIStrategy:
    """Data parallelism over the ranks of an MPI communicator (default: all of them).

    ``deterministic`` (default True): each gradient bucket is gathered and summed in rank order, so every
    rank computes the same bits and a run with N ranks repeats bitwise; False: ``MPI_Iallreduce``
    (less traffic at many ranks, MPI's summation order). ``bucket_cap_mb``: the gradient bucket size,
    each bucket sent while the backward pass computes the next. ``timeout``: seconds any rank waits for
    the others before ending the job (default ``CNNKERN_DIST_TIMEOUT``, else 300). ``reduction_block``
    (default ``CNNKERN_DIST_BLOCK``, else None): the gradients are summed over fixed blocks of this many
    rows of the global batch, each computed by itself, in block order, so a run gives the same bits with
    any number of ranks (one included) at the same global batch (docs/distributed.md)."""

    def __init__(
        self,
        comm: Any = None,
        *,
        deterministic: bool = True,
        bucket_cap_mb: float = 0.25,
        timeout: float | None = None,
        reduction_block: int | None = None,
    ) -> None:
        if reduction_block is None and os.environ.get("CNNKERN_DIST_BLOCK"):
            reduction_block = _positive_int("CNNKERN_DIST_BLOCK", os.environ["CNNKERN_DIST_BLOCK"], text=True)
        elif reduction_block is not None:
            reduction_block = _positive_int("reduction_block", reduction_block)
        if reduction_block is not None and not deterministic:
            raise ValueError(
                "reduction_block (or CNNKERN_DIST_BLOCK) needs deterministic=True (the blocks are summed in "
                "order; MPI_Iallreduce has its own order)"
            )
        mpi = import_mpi()
        if timeout is None:
            timeout = float(os.environ.get("CNNKERN_DIST_TIMEOUT", "300"))
        if not (isinstance(timeout, (int, float)) and np.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb >= 0):
            raise ValueError(f"bucket_cap_mb must be a number >= 0, got {bucket_cap_mb!r}")
        world = mpi.COMM_WORLD if comm is None else comm
        self.deterministic = bool(deterministic)
        self.bucket_cap_mb = float(bucket_cap_mb)
        self.timeout = float(timeout)
        self.reduction_block = reduction_block
        # private communicators: the collectives here never meet a user's; duplicated nonblocking, so a
        # rank that never gets here is a timeout, not a hang
        comm_req = world.Idup()
        self._bootstrap = Link(mpi, world, world, self.timeout)
        self._bootstrap.wait([comm_req[1]], "creating the strategy's communicator (MPIStrategy())")
        comm2, req2 = world.Idup()
        self._bootstrap.wait([req2], "creating the strategy's communicator (MPIStrategy())")
        self.link = Link(mpi, comm_req[0], comm2, self.timeout)
        self.rank, self.num_replicas = self.link.rank, self.link.size
        self.reducer: GradientReducer | None = None
        self.step_correct = 0.0

    @property
    def is_chief(self) -> bool:
        """Rank 0: the one that prints and saves."""
        return self.rank == 0

    def __repr__(self) -> str:
        return (
            f"MPIStrategy(rank={self.rank}, num_replicas={self.num_replicas}, "
            f"deterministic={self.deterministic}, bucket_cap_mb={self.bucket_cap_mb}, "
            f"timeout={self.timeout}, reduction_block={self.reduction_block})"
        )

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's rows [a, b) of the global rows [lo, hi): N contiguous near-equal parts in rank
        order (some may be empty when hi - lo < N), or with ``reduction_block`` the rows of N near-equal
        runs of whole blocks; also tells the reducer this step's share."""
        n = hi - lo
        if self.reduction_block is None:
            a, b = lo + n * self.rank // self.num_replicas, lo + n * (self.rank + 1) // self.num_replicas
        else:
            k = self.reduction_block
            first, end = block_shares(n, k, self.num_replicas)[self.rank]
            a, b = min(lo + first * k, hi), min(lo + end * k, hi)
        if self.reducer is not None:
            self.reducer.begin_step(a - lo, b - a, n)
        return a, b

    # --- used by cnnkern.training.fit ---------------------------------------------------------------------
    @contextmanager
    def training(self, model: Model) -> Iterator[None]:
        """``model`` trains through this strategy for one ``fit`` (the hooks go in at :meth:`check_start`,
        once the model is built); any error on this rank is reported to the others (except those every
        rank raises together: a configuration mismatch, a non-finite step)."""
        self.link.check_usable()
        be = model.backend
        if be.array_module != "numpy":
            raise ValueError(
                f"distributed training runs on the CPU backends (reference, cpp, numba), not {be.name!r}: "
                "NCCL for GPUs is not implemented"
            )
        model._distributed = self  # type: ignore[attr-defined]
        try:
            yield
            # leave together: rank 0's last checkpoint and saves are written before any rank goes on
            self.link.wait([self.link.comm.Ibarrier()], "the end of training")
        except (DistributedError, NonFiniteLossError):
            raise
        except BaseException as exc:
            self.link.notify(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if self.reducer is not None:
                self.reducer.remove()
                self.reducer = None
            del model._distributed  # type: ignore[attr-defined]

    def check_start(
        self,
        model: Model,
        X: BackendArray,
        Y: BackendArray,
        val: tuple[BackendArray, BackendArray] | None,
        run: tuple[Any, ...],
    ) -> None:
        """Raise DistributedConfigError on every rank unless all ranks run the same job: the model, its
        weights, generator and optimizer, the data ``X``, ``Y`` and ``val``, and ``run``: (batch size,
        epochs, shuffle, stop_on_nonfinite, epoch, step) of ``fit``."""
        from ._config import check_same, data_digest, describe

        names = ("batch_size", "epochs", "shuffle", "stop_on_nonfinite", "start epoch", "start step")
        fit_args: dict[str, Any] = dict(zip(names, run))
        fit_args["data"] = data_digest(X, Y)
        fit_args["validation data"] = "none" if val is None else data_digest(*val)
        strategy = {
            "deterministic": self.deterministic,
            "bucket_cap_mb": self.bucket_cap_mb,
            "reduction_block": self.reduction_block,
        }
        check_same(self.link, describe(model, fit_args, strategy))
        cap = int(self.bucket_cap_mb * 2**20)
        self.reducer = GradientReducer(self.link, model.layers, self.deterministic, cap, self.reduction_block)
        self.reducer.install()

    def train_gradients(
        self, model: Model, xb: BackendArray, yb: BackendArray
    ) -> tuple[np.float64, BackendArray]:
        """Forward and backward on this rank's rows ``xb`` (block by block with ``reduction_block``, each
        block starting from the step's batch-norm statistics) and the gradients averaged across ranks (left
        in the layers); returns the global batch's mean loss and the last block's probabilities, and keeps
        the global batch's number of correct predictions in ``step_correct``."""
        red = self.reducer
        assert red is not None
        if not red.blocks:  # no rows here this step: the forward still runs, so dropout draws its masks
            loss, probs = model._gradients(xb, yb)
        states = [layer.state[k] for layer, k in red.states] if len(red.blocks) > 1 else []
        saved = [(a, a.copy()) for a in states]
        for row, (start, stop) in enumerate(red.blocks):
            if row:
                for a, before in saved:
                    a[...] = before
            loss, probs = model._gradients(xb[start:stop], yb[start:stop])
            red.block_done(loss, probs, yb[start:stop])
        mean_loss, self.step_correct = red.finish()
        return np.float64(mean_loss), probs

    # --- evaluation ----------------------------------------------------------------------------------------
    def evaluate_internal(
        self, model: Model, X: BackendArray, Y: BackendArray, batch_size: int
    ) -> tuple[float, float]:
        """(mean loss, accuracy) over X, Y (internal layout) in batches of ``batch_size`` rows, each rank
        evaluating a contiguous run of whole batches; the per-batch sums are gathered and added in batch
        order, so the result has the same bits with any number of ranks."""
        n = int(X.shape[0])
        shares = block_shares(n, batch_size, self.num_replicas)
        first, end = shares[self.rank]
        rows = np.zeros((end - first, 2), np.float64)
        for i, j in enumerate(range(first, end)):
            lo, hi = j * batch_size, min((j + 1) * batch_size, n)
            loss, probs = model._loss_and_probs(X[lo:hi], Y[lo:hi], training=False)
            rows[i] = float(loss) * (hi - lo), float((probs.argmax(axis=1) == Y[lo:hi]).sum())
        recv = np.empty((shares[-1][1], 2), np.float64)
        counts = [2 * (e - f) for f, e in shares]
        self.link.wait([self.link.comm.Iallgatherv(rows, [recv, counts])], "the evaluation sums")
        total = fold_rows(recv, np.empty(2, np.float64))
        return float(total[0]) / n, float(total[1]) / n

    def evaluate(
        self, model: Model, x: ArrayLike, y: ArrayLike, batch_size: int | None = None
    ) -> float | list[float]:
        """``model.evaluate(x, y)`` with the samples shared among the ranks: ``[loss, accuracy]`` (the
        loss alone without metrics), the same on every rank."""
        model._require_compiled("evaluate")
        X = model._to_internal(x)
        if X.shape[0] == 0:
            raise ValueError("x holds no samples to evaluate")
        Y = model._labels(y, X.shape[0])
        loss, acc = self.evaluate_internal(model, X, Y, 32 if batch_size is None else int(batch_size))
        return [loss, acc] if model.metrics else loss


def _positive_int(name: str, value: Any, text: bool = False) -> int:
    """``value`` (an int, or with ``text`` the text of an environment variable) as a positive int, else
    ValueError."""
    if text and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise ValueError(f"{name} must be a positive number of rows, got {value!r}")


_DEFAULT: MPIStrategy | None = None


def resolve(distributed: bool | MPIStrategy | None) -> MPIStrategy | None:
    """``fit``'s ``distributed`` argument as a strategy: None / False: none; True: one MPIStrategy over
    all ranks (created once per process); an MPIStrategy: itself."""
    global _DEFAULT
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        if _DEFAULT is None:
            _DEFAULT = MPIStrategy()
        return _DEFAULT
    if isinstance(distributed, MPIStrategy):
        return distributed
    raise TypeError(f"distributed must be True, False, None or an MPIStrategy, got {distributed!r}")


def from_environment() -> MPIStrategy | None:
    """The default strategy when this process was started by ``mpirun`` with more than one rank, or when
    ``CNNKERN_DIST_BLOCK`` asks for rank-count-invariant sums (so that one rank runs the same computation
    as N), else None (mpi4py is then not imported)."""
    return resolve(True) if launched_ranks() > 1 or os.environ.get("CNNKERN_DIST_BLOCK") else None
