"""Gradient averaging in buckets, started during the backward pass (as PyTorch DDP does).

The trainable parameters are cut, in backward order, into buckets of about ``bucket_cap_mb`` that end on a
layer boundary. Each model layer's ``backward`` is wrapped for the duration of ``fit``: when the layer that
closes a bucket returns, its gradients (and those of the layers after it) are scaled by their rows' share of
the global batch, packed into the bucket's buffer and sent with a nonblocking collective, while the
backward pass goes on with the earlier layers; the requests are tested after every layer (MPI progresses
them only when called). :meth:`GradientReducer.finish` waits for them all before the optimizer update.

Deterministic mode (default): each bucket is gathered (``Iallgatherv``) and summed row by row in order on
every rank: the same additions in the same order everywhere, so every rank gets the same bits and a run
with N ranks repeats bitwise. A row is one rank's shard, or, with ``reduction_block`` K, one block of K
rows of the global batch (a rank computes each of its blocks separately): the rows and their order are
then those of the global batch whatever the number of ranks, so N ranks give the bits of one rank.
Otherwise ``Iallreduce(SUM)``: less traffic at many ranks, with MPI's own summation order (Open MPI gives
every rank the same result; repeatability is not promised by MPI).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._typing import BackendArray
from ..layers import Dropout, Layer
from ._link import Link


def block_shares(rows: int, block: int, ranks: int) -> list[tuple[int, int]]:
    """Each rank's blocks ``[first, end)`` of a global batch of ``rows`` rows cut into blocks of ``block``
    rows (the last one shorter): contiguous near-equal runs of whole blocks, in rank order."""
    n = -(-rows // block)
    return [(n * r // ranks, n * (r + 1) // ranks) for r in range(ranks)]


def fold_rows(recv: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` = the sum of the rows of ``recv`` (rows, n), added in row order: ((r0 + r1) + r2) + ..."""
    if recv.shape[0] == 1:
        out[...] = recv[0]
        return out
    np.add(recv[0], recv[1], out=out)
    for r in range(2, recv.shape[0]):
        np.add(out, recv[r], out=out)
    return out


class GradientReducer:
    """Averages the gradients (and sums the step statistics) of one model across the ranks of ``link``."""

    def __init__(
        self,
        link: Link,
        layers: Sequence[Layer],
        deterministic: bool,
        cap_bytes: int,
        reduction_block: int | None = None,
    ) -> None:
        self.link, self.layers, self.deterministic = link, list(layers), deterministic
        self.block = reduction_block
        self.mpi = link.mpi
        # buckets in backward order: lists of (layer index, parameter name); closed after `cap_bytes`
        self.buckets: list[list[tuple[int, str]]] = []
        self.closes: dict[int, int] = {}  # layer index -> the bucket its backward completes
        current: list[tuple[int, str]] = []
        nbytes = 0
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if not (layer.trainable and layer.params):
                continue
            for k, p in layer.params.items():
                current.append((i, k))
                nbytes += int(p.nbytes)
            if nbytes >= cap_bytes:
                self.closes[i] = len(self.buckets)
                self.buckets.append(current)
                current, nbytes = [], 0
        if current:
            self.closes[current[-1][0]] = len(self.buckets)
            self.buckets.append(current)
        self.sizes = [sum(int(self.layers[i].params[k].size) for i, k in bucket) for bucket in self.buckets]
        self.dtypes = [self.layers[bucket[0][0]].params[bucket[0][1]].dtype for bucket in self.buckets]
        self.states = [(layer, k) for layer in self.layers for k in layer.state]
        self.nstats = 2 + sum(int(layer.state[k].size) for layer, k in self.states)
        self._buffers: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {}
        self.requests: list[Any] = [None] * len(self.buckets)
        self.offset, self.local, self.global_n = 0, 0, 0
        self.blocks: list[tuple[int, int]] = [(0, 0)]  # this rank's rows, [start, stop) of its shard
        self.counts: list[int] = [1] * link.size  # rows of the gathered buffers, per rank
        self.row = 0
        self.packed = [0] * len(self.buckets)
        self.stats = np.zeros((1, self.nstats), np.float64)
        self._masks: dict[int, BackendArray] = {}
        self._restore: list[tuple[Layer, str, Any]] = []  # (layer, attribute, its own value or None)

    # --- per step ------------------------------------------------------------------------------------------
    def begin_step(self, offset: int, local: int, global_n: int) -> None:
        """This rank trains rows [offset, offset + local) of a global batch of ``global_n`` rows (with
        ``reduction_block``: the rows of its blocks, :func:`block_shares`)."""
        self.link.check_usable()
        self.offset, self.local, self.global_n = offset, local, global_n
        if self.block is None:  # one row per rank, an empty shard's included
            self.blocks, self.counts = [(0, local)], [1] * self.link.size
        else:
            k = self.block
            self.blocks = [(s, min(s + k, local)) for s in range(0, local, k)]
            self.counts = [end - first for first, end in block_shares(global_n, k, self.link.size)]
        self.row = 0
        self.packed = [0] * len(self.buckets)
        self.requests = [None] * len(self.buckets)
        self.stats = np.zeros((len(self.blocks), self.nstats), np.float64)
        self._masks = {}
        self.send, self.recv, self.out = self._buffers_for(len(self.blocks), sum(self.counts))

    def _buffers_for(
        self, rows: int, total: int
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Each bucket's send (this rank's rows), receive (every row) and result buffers."""
        key = (rows, total)
        if key not in self._buffers:
            send = [np.empty((rows, n), dt) for n, dt in zip(self.sizes, self.dtypes)]
            recv = [
                np.empty((total, n) if self.deterministic else n, dt)
                for n, dt in zip(self.sizes, self.dtypes)
            ]
            out = [np.empty(n, dt) for n, dt in zip(self.sizes, self.dtypes)]
            self._buffers[key] = (send, recv, out)
        return self._buffers[key]

    def block_done(self, loss: BackendArray, probs: BackendArray, yb: BackendArray) -> None:
        """The current row's forward and backward are done: pack what its hooks did not and keep its
        statistics (loss x rows, correct predictions, the layers' state x its share of the batch)."""
        rows = self.blocks[self.row][1] - self.blocks[self.row][0]
        for b in range(len(self.buckets)):
            if self.packed[b] == self.row:
                self._pack(b)
        if rows:
            stats, share = self.stats[self.row], rows / self.global_n
            stats[0] = float(loss) * rows
            stats[1] = float((probs.argmax(axis=1) == yb).sum())
            off = 2
            for layer, k in self.states:
                a = layer.state[k].reshape(-1)
                stats[off : off + a.size] = a * share
                off += a.size
        self.row += 1

    def _pack(self, b: int) -> None:
        """The current row's gradients of bucket ``b``, scaled by the row's share of the global batch."""
        start, stop = self.blocks[self.row]
        send, off = self.send[b][self.row], 0
        scale = send.dtype.type((stop - start) / self.global_n)
        for i, k in self.buckets[b]:
            g = self.layers[i].grads[k].reshape(-1)
            np.multiply(g, scale, out=send[off : off + g.size])
            off += g.size
        self.packed[b] = self.row + 1

    def _post(self, b: int) -> None:
        if self.deterministic:
            self.requests[b] = self._gather(self.send[b], self.recv[b])
        else:
            self.requests[b] = self.link.comm.Iallreduce(self.send[b][0], self.recv[b], op=self.mpi.SUM)

    def _gather(self, send: np.ndarray, recv: np.ndarray) -> Any:
        """Every rank's rows of ``send`` into ``recv``, in rank order (nonblocking): ``MPI_Iallgather``
        when every rank sends one row (Open MPI's allgatherv algorithms were measured slower), else
        ``MPI_Iallgatherv``."""
        if self.block is None:
            return self.link.comm.Iallgather(send, recv)
        counts = [c * send.shape[1] for c in self.counts]
        return self.link.comm.Iallgatherv(send, [recv, counts])

    def _progress(self) -> None:
        for r in self.requests:
            if r is not None:
                r.Test()
        self.link.poll_notice()

    def finish(self) -> tuple[float, float]:
        """Wait for every bucket, leave the averaged gradients in the layers' ``grads``, average the
        layers' ``state`` (batch-norm running statistics) and return the global batch's mean loss and
        number of correct predictions."""
        for b, r in enumerate(self.requests):
            if r is None:  # its closing layer's backward did not run through the hook (or had rows left)
                self._post(b)
        stats_out = self._sum(self.stats, "the step statistics")
        self.link.wait([r for r in self.requests if r is not None], "the gradient allreduce")
        for b, bucket in enumerate(self.buckets):
            out = self._fold(self.recv[b], self.out[b])
            off = 0
            for i, k in bucket:
                layer = self.layers[i]
                shape, n = layer.params[k].shape, int(layer.params[k].size)
                layer.grads[k] = out[off : off + n].reshape(shape)
                off += n
        off = 2
        for layer, k in self.states:
            a = layer.state[k]
            a[...] = stats_out[off : off + a.size].reshape(a.shape)
            off += a.size
        return float(stats_out[0]) / self.global_n, float(stats_out[1])

    def _fold(self, recv: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The sum of a gathered (rows, n) buffer in row order (deterministic mode); MPI's sum otherwise."""
        return fold_rows(recv, out) if self.deterministic else recv

    def _sum(self, rows: np.ndarray, what: str) -> np.ndarray:
        """Blocking (with the link's deadline) sum of this rank's ``rows`` and every other rank's, in
        order when deterministic."""
        width = rows.shape[1]
        if self.deterministic:
            recv = np.empty((sum(self.counts), width), rows.dtype)
            self.link.wait([self._gather(rows, recv)], what)
            return self._fold(recv, np.empty(width, rows.dtype))
        out = np.empty(width, rows.dtype)
        self.link.wait([self.link.comm.Iallreduce(rows[0], out, op=self.mpi.SUM)], what)
        return out

    # --- hooks -----------------------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the layers' ``backward`` (start the buckets) and Dropout's ``forward`` (masks drawn once
        a step for the global batch, each row's part kept: the generator stays in step on every rank and
        the masks are those of a 1-rank run)."""
        for i, layer in enumerate(self.layers):
            if i in self.closes:
                self._wrap(layer, "backward", self._hook_backward(layer.backward, self.closes[i]))
            elif layer.params or isinstance(layer, Dropout):
                self._wrap(layer, "backward", self._hook_progress(layer.backward))
            if isinstance(layer, Dropout):
                self._wrap(layer, "forward", self._dropout_forward(layer))

    def _wrap(self, layer: Layer, name: str, fn: Callable[..., Any]) -> None:
        self._restore.append((layer, name, layer.__dict__.get(name)))
        setattr(layer, name, fn)

    def remove(self) -> None:
        """Undo :meth:`install`: the class's methods (or what the instance held before) are seen again."""
        for layer, name, own in reversed(self._restore):
            if own is None:
                delattr(layer, name)
            else:
                setattr(layer, name, own)
        self._restore = []

    def _hook_backward(self, backward: Callable[..., Any], b: int) -> Callable[..., Any]:
        def hooked(dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
            dx = backward(dy, need_dx)
            if self.row < len(self.blocks) and self.packed[b] == self.row:
                self._pack(b)
            if self.packed[b] == len(self.blocks) and self.requests[b] is None:  # its last row: send
                self._post(b)
            self._progress()
            return dx

        return hooked

    def _hook_progress(self, backward: Callable[..., Any]) -> Callable[..., Any]:
        def hooked(dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
            dx = backward(dy, need_dx)
            self._progress()
            return dx

        return hooked

    def _dropout_forward(self, layer: Dropout) -> Callable[..., BackendArray]:
        plain = layer.forward

        def forward(x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
            if not training or layer.rate == 0.0:
                return plain(x, training, logits)
            full = self._masks.get(id(layer))
            if full is None:  # the step's first forward through this layer draws for the global batch
                full = self._masks[id(layer)] = layer._ctx.rng.random((self.global_n,) + tuple(x.shape[1:]))
            start = self.offset + (self.blocks[self.row][0] if self.row < len(self.blocks) else 0)
            return layer.apply_mask(x, full[start : start + x.shape[0]])

        return forward
