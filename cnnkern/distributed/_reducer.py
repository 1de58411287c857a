"""Gradient averaging in buckets, started during the backward pass (as PyTorch DDP does).

The trainable parameters are cut, in backward order, into buckets of about ``bucket_cap_mb`` that end on a
layer boundary. Each model layer's ``backward`` is wrapped for the duration of ``fit``: when the layer that
closes a bucket returns, its gradients (and those of the layers after it) are scaled by this rank's share of
the global batch, packed into the bucket's buffer and sent with a nonblocking collective, while the
backward pass goes on with the earlier layers; the requests are tested after every layer (MPI progresses
them only when called). :meth:`GradientReducer.finish` waits for them all before the optimizer update.

Deterministic mode (default): each bucket is gathered (``Iallgather``) and summed in rank order 0, 1, ...
on every rank: the same additions in the same order everywhere, so every rank gets the same bits and a run
with N ranks repeats bitwise. Otherwise ``Iallreduce(SUM)``: less traffic at many ranks, with MPI's own
summation order (Open MPI gives every rank the same result; repeatability is not promised by MPI).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._typing import BackendArray
from ..layers import Dropout, Layer
from ._link import Link


class GradientReducer:
    """Averages the gradients (and sums the step statistics) of one model across the ranks of ``link``."""

    def __init__(self, link: Link, layers: Sequence[Layer], deterministic: bool, cap_bytes: int) -> None:
        self.link, self.layers, self.deterministic = link, list(layers), deterministic
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
        size = link.size
        self.send: list[np.ndarray] = []
        self.recv: list[np.ndarray] = []
        self.out: list[np.ndarray] = []
        for bucket in self.buckets:
            n = sum(int(self.layers[i].params[k].size) for i, k in bucket)
            dtype = self.layers[bucket[0][0]].params[bucket[0][1]].dtype
            self.send.append(np.empty(n, dtype))
            self.recv.append(np.empty((size, n) if deterministic else n, dtype))
            self.out.append(np.empty(n, dtype))
        self.requests: list[Any] = [None] * len(self.buckets)
        self.scale = 1.0
        self.offset, self.local, self.global_n = 0, 0, 0
        self._restore: list[tuple[Layer, str, Any]] = []  # (layer, attribute, its own value or None)

    # --- per step ------------------------------------------------------------------------------------------
    def begin_step(self, offset: int, local: int, global_n: int) -> None:
        """This rank trains rows [offset, offset + local) of a global batch of ``global_n`` rows."""
        self.link.check_usable()
        self.offset, self.local, self.global_n = offset, local, global_n
        self.scale = local / global_n
        self.requests = [None] * len(self.buckets)

    def _post(self, b: int) -> None:
        send, off = self.send[b], 0
        for i, k in self.buckets[b]:
            g = self.layers[i].grads[k].reshape(-1)
            np.multiply(g, send.dtype.type(self.scale), out=send[off : off + g.size])
            off += g.size
        if self.deterministic:
            self.requests[b] = self.link.comm.Iallgather(send, self.recv[b])
        else:
            self.requests[b] = self.link.comm.Iallreduce(send, self.recv[b], op=self.mpi.SUM)

    def _progress(self) -> None:
        for r in self.requests:
            if r is not None:
                r.Test()
        self.link.poll_notice()

    def finish(self, loss: BackendArray, probs: BackendArray, yb: BackendArray) -> tuple[float, float]:
        """Wait for every bucket, leave the averaged gradients in the layers' ``grads``, average the
        layers' ``state`` (batch-norm running statistics) and return the global batch's mean loss and
        number of correct predictions."""
        for b, r in enumerate(self.requests):
            if r is None:  # a bucket whose closing layer's backward did not run through the hook
                self._post(b)
        states = [(layer, k) for layer in self.layers for k in layer.state]
        stats = np.zeros(2 + sum(int(layer.state[k].size) for layer, k in states), np.float64)
        if self.local:
            stats[0] = float(loss) * self.local
            stats[1] = float((probs.argmax(axis=1) == yb).sum())
            off = 2
            for layer, k in states:
                a = layer.state[k].reshape(-1)
                stats[off : off + a.size] = a * self.scale
                off += a.size
        stats_out = self._sum(stats, "the step statistics")
        self.link.wait([r for r in self.requests if r is not None], "the gradient allreduce")
        for b, bucket in enumerate(self.buckets):
            out = self._reduce_into(self.recv[b], self.out[b])
            off = 0
            for i, k in bucket:
                layer = self.layers[i]
                shape, n = layer.params[k].shape, int(layer.params[k].size)
                layer.grads[k] = out[off : off + n].reshape(shape)
                off += n
        off = 2
        for layer, k in states:
            a = layer.state[k]
            a[...] = stats_out[off : off + a.size].reshape(a.shape)
            off += a.size
        return float(stats_out[0]) / self.global_n, float(stats_out[1])

    def _reduce_into(self, recv: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The sum over ranks of a gathered (size, n) buffer, in rank order (deterministic mode)."""
        if not self.deterministic:
            return recv
        if recv.shape[0] == 1:
            out[...] = recv[0]
            return out
        np.add(recv[0], recv[1], out=out)
        for r in range(2, recv.shape[0]):
            np.add(out, recv[r], out=out)
        return out

    def _sum(self, a: np.ndarray, what: str) -> np.ndarray:
        """Blocking (with the link's deadline) sum of ``a`` over the ranks, in rank order when
        deterministic."""
        if self.deterministic:
            recv = np.empty((self.link.size, a.size), a.dtype)
            self.link.wait([self.link.comm.Iallgather(a, recv)], what)
            return self._reduce_into(recv, np.empty_like(a))
        out = np.empty_like(a)
        self.link.wait([self.link.comm.Iallreduce(a, out, op=self.mpi.SUM)], what)
        return out

    # --- hooks -----------------------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the layers' ``backward`` (start the buckets) and Dropout's ``forward`` (masks drawn for
        the global batch, this rank's rows kept: the generator stays in step on every rank and the masks
        are those of a 1-rank run)."""
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
            full = layer._ctx.rng.random((self.global_n,) + tuple(x.shape[1:]))
            keep = full[self.offset : self.offset + x.shape[0]] >= layer.rate
            layer._mask = layer._ctx.asarray(keep / (1.0 - layer.rate))
            return x * layer._mask

        return forward
