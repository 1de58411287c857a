"""Launchers of optim.cu: SGD, Adam / AdamW (one tensor or a list of them in one launch) and RMSprop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._typing import BackendArray
from .launch import Launchers, _f, _floats, _grid_1d, _i

# adam_update_multi's cached device tables: ((address, size) of every array) -> (pointers, offsets)
_AdamTables = dict[tuple[tuple[int, int], ...], tuple[BackendArray, BackendArray]]


def _decay(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """(the L2 weight decay added to the gradient, the factor param is scaled by first): (wd, 1) for Adam,
    (0, 1 - lr*wd) for AdamW (computed in double)."""
    return (0.0, 1.0 - lr * weight_decay) if decoupled else (weight_decay, 1.0)


class OptimKernels(Launchers):
    """The optim kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``optim.cu``."""

    _adam_tables: _AdamTables  # set by CudaBackend.__init__

    def sgd_update(
        self,
        param: BackendArray,
        grad: BackendArray,
        velocity: BackendArray | None,
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
    ) -> None:
        v = velocity if velocity is not None else param  # never touched when momentum == 0
        args = (param, grad, v, _i(param.size), _f(lr), _f(momentum), _i(bool(nesterov)), _f(weight_decay))
        self._launch("optim", "sgd_update", _grid_1d(param.size), args)

    @staticmethod
    def _adam_scalars(
        step: int, lr: float, beta1: float, beta2: float, eps_mode: str
    ) -> tuple[float, float, int]:
        """(step_size, sqrt(1 - beta2^t), keras flag), computed in double."""
        if eps_mode not in ("torch", "keras"):
            raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
        c1 = 1.0 - beta1**step
        sqrt_c2 = math.sqrt(1.0 - beta2**step)
        if eps_mode == "torch":
            return lr / c1, sqrt_c2, 0
        return lr * sqrt_c2 / c1, sqrt_c2, 1

    def adam_update(
        self,
        param: BackendArray,
        grad: BackendArray,
        m: BackendArray,
        v: BackendArray,
        *,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        eps_mode: str,
        decoupled_weight_decay: bool = False,
    ) -> None:
        step_size, sqrt_c2, keras = self._adam_scalars(step, lr, beta1, beta2, eps_mode)
        wd, decay = _decay(lr, weight_decay, decoupled_weight_decay)
        scalars = _floats(beta1, beta2, eps, wd, step_size, sqrt_c2)
        args = (param, grad, m, v, _i(param.size), *scalars, _i(keras), _f(decay))
        self._launch("optim", "adam_update", _grid_1d(param.size), args)

    def adam_update_multi(
        self,
        params: Sequence[BackendArray],
        grads: Sequence[BackendArray],
        ms: Sequence[BackendArray],
        vs: Sequence[BackendArray],
        *,
        step: Any,  # an int >= 1, or a 0-d int64 device array (below)
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        eps_mode: str,
        decoupled_weight_decay: bool = False,
    ) -> None:
        """adam_update over every (param, grad, m, v) quadruple of the lists in one launch.

        ``step``: an int >= 1, or a 0-d int64 array on the device holding it, read when the kernel runs.
        Use the latter under CUDA-graph capture, where host scalars are frozen into the graph: the captured
        step increments the counter (``step += 1``) and every replay then uses the next value.

        Not behind the front door, so it checks its own arguments: four lists of the same length of
        float32 C-contiguous arrays, each quadruple of one size. The device table of pointers is cached by
        the arrays' addresses, so a training loop over the same parameters uploads it once (a CUDA-graph
        capture must be preceded by an eager call, which :class:`.graph.CapturedStep` makes)."""
        cp = self._cp
        lists = {"params": params, "grads": grads, "ms": ms, "vs": vs}
        for name, seq in lists.items():
            if not isinstance(seq, (list, tuple)):
                raise TypeError(f"{name} must be a list of arrays, got {type(seq).__name__}")
            if len(seq) != len(params):
                raise ValueError(f"{name} has {len(seq)} arrays but params has {len(params)}")
            for j, a in enumerate(seq):
                if not isinstance(a, cp.ndarray):
                    raise TypeError(
                        f"{name}[{j}] must be a {cp.ndarray.__module__}.ndarray, got {type(a).__name__}"
                    )
                if a.dtype != np.float32:
                    raise TypeError(f"{name}[{j}] must be float32, got {a.dtype.name}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{name}[{j}] must be C-contiguous")
                if a.size != params[j].size:
                    raise ValueError(
                        f"{name}[{j}] has {a.size} elements but params[{j}] has {params[j].size}"
                    )
        if eps_mode not in ("torch", "keras"):
            raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
        device_step = isinstance(step, cp.ndarray)
        if device_step:
            if step.shape != () or step.dtype != np.int64:
                raise ValueError(f"step as an array must be 0-d int64, got shape {step.shape} {step.dtype}")
        elif isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be an integer >= 1 or a 0-d int64 device array, got {step!r}")
        quads = [(p, g, m, v) for p, g, m, v in zip(params, grads, ms, vs) if p.size > 0]
        if not quads:
            return
        table, offsets = self._adam_table(quads)
        total = sum(q[0].size for q in quads)
        keras = _i(eps_mode == "keras")
        wd, decay = _decay(lr, weight_decay, decoupled_weight_decay)
        if device_step:
            args: tuple[Any, ...] = (
                table,
                offsets,
                _i(len(quads)),
                step,
                *map(np.float64, (lr, beta1, beta2)),
            )
            args += (*_floats(eps, wd), keras, _f(decay))
            self._launch("optim", "adam_update_multi_device_step", _grid_1d(total), args)
        else:
            step_size, sqrt_c2, _ = self._adam_scalars(step, lr, beta1, beta2, eps_mode)
            scalars = _floats(beta1, beta2, eps, wd, step_size, sqrt_c2)
            self._launch(
                "optim",
                "adam_update_multi",
                _grid_1d(total),
                (table, offsets, _i(len(quads)), *scalars, keras, _f(decay)),
            )

    def rmsprop_update(
        self,
        param: BackendArray,
        grad: BackendArray,
        square_avg: BackendArray,
        momentum_buffer: BackendArray | None,
        grad_avg: BackendArray | None,
        *,
        lr: float,
        rho: float,
        eps: float,
        weight_decay: float,
        momentum: float,
        centered: bool,
    ) -> None:
        # a buffer that is off is never touched: square_avg stands in for its pointer
        buf = momentum_buffer if momentum_buffer is not None else square_avg
        gavg = grad_avg if grad_avg is not None else square_avg
        scalars = _floats(lr, rho, 1.0 - rho, eps, weight_decay, momentum)
        flags = (_i(momentum_buffer is not None), _i(grad_avg is not None))
        args = (param, grad, square_avg, buf, gavg, _i(param.size), *scalars, *flags)
        self._launch("optim", "rmsprop_update", _grid_1d(param.size), args)

    def _adam_table(
        self, quads: Sequence[tuple[BackendArray, BackendArray, BackendArray, BackendArray]]
    ) -> tuple[BackendArray, BackendArray]:
        key = tuple((self._address(a), a.size) for q in quads for a in q)
        hit = self._adam_tables.get(key)
        if hit is None:
            ptrs = np.array([[self._address(q[r]) for q in quads] for r in range(4)], dtype=np.uint64)
            sizes = np.array([0] + [q[0].size for q in quads], dtype=np.int64)
            hit = (self._upload(ptrs), self._upload(np.cumsum(sizes)))
            if len(self._adam_tables) >= 16:  # a few parameter sets at most; drop the oldest
                self._adam_tables.pop(next(iter(self._adam_tables)))
            self._adam_tables[key] = hit
        return hit
