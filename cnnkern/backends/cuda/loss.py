"""Launchers of loss.cu: softmax cross-entropy, with integer labels or soft targets (and sample weights)."""

from __future__ import annotations

from ..._typing import BackendArray
from .launch import _BLOCK, _MAX_BLOCKS, Launchers, _cdiv, _grid_1d, _i


class LossKernels(Launchers):
    """The loss kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``loss.cu``."""

    def softmax_cross_entropy_forward(
        self, logits: BackendArray, labels: BackendArray
    ) -> tuple[BackendArray, BackendArray]:
        n, c = logits.shape
        probs = self._empty((n, c))
        row_loss = self._empty((n,))
        loss = self._empty(())
        warps_per_block = _BLOCK // 32
        grid = (max(1, min(_cdiv(n, warps_per_block), _MAX_BLOCKS)),)
        self._launch(
            "loss", "softmax_cross_entropy_forward", grid, (logits, labels, probs, row_loss, _i(n), _i(c))
        )
        self._launch("loss", "mean_loss", (1,), (row_loss, loss, _i(n)))
        return loss, probs

    def softmax_cross_entropy_backward(self, probs: BackendArray, labels: BackendArray) -> BackendArray:
        n, c = probs.shape
        d = self._empty((n, c))
        self._launch(
            "loss", "softmax_cross_entropy_backward", _grid_1d(d.size), (probs, labels, d, _i(n), _i(c))
        )
        return d

    def softmax_cross_entropy_soft_forward(
        self, logits: BackendArray, targets: BackendArray, weights: BackendArray | None = None
    ) -> tuple[BackendArray, BackendArray]:
        n, c = logits.shape
        probs = self._empty((n, c))
        row_loss = self._empty((n,))
        loss = self._empty(())
        w = row_loss if weights is None else weights  # not read when unweighted
        warps_per_block = _BLOCK // 32
        grid = (max(1, min(_cdiv(n, warps_per_block), _MAX_BLOCKS)),)
        args = (logits, targets, w, _i(weights is not None), probs, row_loss, _i(n), _i(c))
        self._launch("loss", "softmax_cross_entropy_soft_forward", grid, args)
        self._launch("loss", "mean_loss", (1,), (row_loss, loss, _i(n)))
        return loss, probs

    def softmax_cross_entropy_soft_backward(
        self, probs: BackendArray, targets: BackendArray, weights: BackendArray | None = None
    ) -> BackendArray:
        n, c = probs.shape
        d = self._empty((n, c))
        w = d if weights is None else weights  # not read when unweighted
        args = (probs, targets, w, _i(weights is not None), d, _i(n), _i(c))
        self._launch("loss", "softmax_cross_entropy_soft_backward", _grid_1d(n), args)
        return d
