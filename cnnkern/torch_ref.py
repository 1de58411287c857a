"""PyTorch peers for the benchmarks: the classic CNN and its training step (NCHW and channels_last), and one
PyTorch call per cnnkern kernel, computing the same thing the same way PyTorch's autograd would.

The classic CNN is Keras's Fashion-MNIST example, in PyTorch's layout::

    x (N,1,28,28) -> Conv 1->32 3x3, ReLU -> MaxPool 2 -> Conv 32->64 3x3, ReLU -> MaxPool 2
        -> Conv 64->64 3x3, ReLU -> Flatten (C,H,W order, 576) -> Dense 576->64, ReLU -> Dense 64->10

Its parameters in order (:data:`CLASSIC_PARAM_SHAPES`) are the canonical cnnkern shapes, conv ``(K,C,R,S)``
and dense ``(out,in)``, so weights copy across unchanged (cnnkern's Flatten also uses C,H,W order).

Needs ``torch`` (``pip install "cnnkern[torch]"``); :func:`require_torch` says so when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .bench.shapes import CLASSIC_PARAM_SHAPES

if TYPE_CHECKING:  # torch is optional and not followed by the type checker: these are Any to it
    import torch as _torch
    from torch import Tensor, nn

__all__ = [
    "CLASSIC_PARAM_SHAPES",
    "Inference",
    "OptimizerStep",
    "TrainStep",
    "classic_cnn",
    "require_torch",
    "set_threads",
]

MEMORY_FORMATS = ("nchw", "channels_last")


def require_torch() -> Any:
    """Import torch or raise ImportError with the install command."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            'PyTorch is needed for the comparisons: pip install "cnnkern[torch]" '
            "(CPU build: pip install torch==2.13.0)"
        ) from exc
    return torch


def torch_version() -> str | None:
    """The installed torch version, or None."""
    try:
        return require_torch().__version__
    except ImportError:
        return None


def set_threads(n: int) -> None:
    """Intra-op threads for PyTorch's CPU kernels."""
    require_torch().set_num_threads(int(n))


def _memory_format(torch: Any, memory_format: str) -> _torch.memory_format:
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    return torch.channels_last if memory_format == "channels_last" else torch.contiguous_format


def classic_cnn(weights: Sequence[np.ndarray], memory_format: str = "nchw") -> nn.Sequential:
    """The classic CNN as a ``torch.nn.Sequential`` holding copies of ``weights`` (NumPy arrays in the order
    and shapes of :data:`CLASSIC_PARAM_SHAPES`), its parameters in ``memory_format``."""
    torch = require_torch()
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(576, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    params = list(model.parameters())
    if len(weights) != len(params):
        raise ValueError(f"weights must hold {len(params)} arrays (w, b per layer), got {len(weights)}")
    with torch.no_grad():
        for i, (p, a) in enumerate(zip(params, weights)):
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"weights[{i}] must have shape {tuple(p.shape)}, got {tuple(a.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
    return model.to(memory_format=_memory_format(torch, memory_format))


class TrainStep:
    """One training step of the classic CNN in PyTorch: forward, mean cross-entropy, backward, Adam
    (PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8). Call with NumPy ``images`` (N,1,28,28)
    float32 and ``labels`` (N,) int64; returns the loss tensor of that step (before the update)."""

    def __init__(self, weights: Sequence[np.ndarray], memory_format: str = "nchw", lr: float = 1e-3) -> None:
        torch = self._torch = require_torch()
        self.memory_format = memory_format
        self._format = _memory_format(torch, memory_format)
        self.model = classic_cnn(weights, memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        # ((id(images), id(labels)), x, labels, (images, labels)): the last batch converted, kept alive
        self._inputs: tuple[tuple[int, int], Tensor, Tensor, tuple[np.ndarray, np.ndarray]] | None = None

    def _tensors(self, images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
        # Convert once per distinct batch (the benchmarks reuse one): the copy to channels_last is part of
        # what a channels_last user pays once per batch, at the data loader, so it is not timed repeatedly.
        key = (id(images), id(labels))
        if self._inputs is None or self._inputs[0] != key:
            x = self._torch.from_numpy(images).contiguous(memory_format=self._format)
            self._inputs = (key, x, self._torch.from_numpy(labels), (images, labels))
        return self._inputs[1], self._inputs[2]

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> Tensor:
        x, y = self._tensors(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def weights(self) -> list[np.ndarray]:
        """The current parameters as NumPy arrays (canonical shapes, C-contiguous)."""
        return [p.detach().contiguous().numpy().copy() for p in self.model.parameters()]


class Inference:
    """The classic CNN's forward pass under ``torch.inference_mode``; returns the logits (N,10)."""

    def __init__(self, weights: Sequence[np.ndarray], memory_format: str = "nchw") -> None:
        torch = self._torch = require_torch()
        self._format = _memory_format(torch, memory_format)
        self.model = classic_cnn(weights, memory_format).eval()
        # (id(images), x, images): the last batch converted, kept alive
        self._inputs: tuple[int, Tensor, np.ndarray] | None = None

    def __call__(self, images: np.ndarray) -> Tensor:
        if self._inputs is None or self._inputs[0] != id(images):
            self._inputs = (
                id(images),
                self._torch.from_numpy(images).contiguous(memory_format=self._format),
                images,
            )
        with self._torch.inference_mode():
            return self.model(self._inputs[1])


# ---- one PyTorch call per cnnkern kernel -------------------------------------------------------------------
# Each takes torch tensors and the canonical arguments of cnnkern.backends.base (symmetric padding only), and
# returns a tuple aligned with the cnnkern kernel's outputs, None where PyTorch does not produce that output.
# They call the ATen ops that PyTorch's own autograd calls for the same layer.


def conv2d_forward(
    x: Tensor, w: Tensor, b: Tensor | None, *, stride: Sequence[int], padding: Sequence[int]
) -> tuple[Tensor]:
    torch = require_torch()
    return (torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding),)


def conv2d_backward(
    dy: Tensor, x: Tensor, w: Tensor, *, stride: Sequence[int], padding: Sequence[int], need_dx: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:
    torch = require_torch()
    dx, dw, db = torch.ops.aten.convolution_backward(
        dy, x, w, [w.shape[0]], list(stride), list(padding), [1, 1], False, [0, 0], 1, [need_dx, True, True]
    )
    return dx, dw, db


def maxpool2d_forward(x: Tensor, *, kernel_size: Sequence[int]) -> tuple[Tensor, Tensor]:
    torch = require_torch()
    y, idx = torch.ops.aten.max_pool2d_with_indices(x, list(kernel_size), list(kernel_size))
    return y, idx


def maxpool2d_backward(dy: Tensor, x: Tensor, argmax: Tensor, *, kernel_size: Sequence[int]) -> tuple[Tensor]:
    torch = require_torch()
    k = list(kernel_size)
    return (torch.ops.aten.max_pool2d_with_indices_backward(dy, x, k, k, [0, 0], [1, 1], False, argmax),)


def conv2d_relu_maxpool_forward(
    x: Tensor, w: Tensor, b: Tensor | None, *, padding: Sequence[int], kernel_size: Sequence[int]
) -> tuple[Tensor, Tensor]:
    # Conv2d, ReLU, MaxPool2d as PyTorch runs the three layers (three ATen ops).
    torch = require_torch()
    a = torch.relu(torch.nn.functional.conv2d(x, w, b, padding=padding))
    return maxpool2d_forward(a, kernel_size=kernel_size)


def conv2d_relu_maxpool_backward(
    dy: Tensor,
    a: Tensor,
    argmax: Tensor,
    x: Tensor,
    w: Tensor,
    *,
    padding: Sequence[int],
    kernel_size: Sequence[int],
    need_dx: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor]:
    # What autograd runs back through them: the pool's scatter, ReLU's threshold_backward (given the ReLU
    # output a), the conv's convolution_backward.
    (da,) = maxpool2d_backward(dy, a, argmax, kernel_size=kernel_size)
    (dz,) = activation_backward(da, a, "relu")
    return conv2d_backward(dz, x, w, stride=(1, 1), padding=padding, need_dx=need_dx)


def batchnorm2d_forward(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    *,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor, Tensor]:
    torch = require_torch()
    return torch.ops.aten.native_batch_norm(x, gamma, beta, running_mean, running_var, True, momentum, eps)


def batchnorm2d_backward(
    dy: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, invstd: Tensor, *, eps: float = 1e-5
) -> tuple[Tensor, Tensor, Tensor]:
    torch = require_torch()
    return torch.ops.aten.native_batch_norm_backward(
        dy, x, gamma, None, None, mean, invstd, True, eps, [True, True, True]
    )


def dense_forward(x: Tensor, w: Tensor, b: Tensor | None) -> tuple[Tensor]:
    torch = require_torch()
    return (torch.nn.functional.linear(x, w, b),)


def dense_backward(
    dy: Tensor, x: Tensor, w: Tensor, *, need_dx: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:
    # What autograd runs for F.linear: dx = dy·w, dw = dyᵀ·x, db = Σₙ dy.
    dx = dy.mm(w) if need_dx else None
    return dx, dy.t().mm(x), dy.sum(0)


def activation_forward(x: Tensor, kind: str, *, alpha: float = 0.01) -> tuple[Tensor]:
    torch = require_torch()
    f = torch.nn.functional
    fns = {
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "leaky_relu": lambda t: f.leaky_relu(t, alpha),
    }
    return (fns[kind](x),)


def activation_backward(dy: Tensor, y: Tensor, kind: str, *, alpha: float = 0.01) -> tuple[Tensor]:
    # From the output y, as autograd does for these four (leaky ReLU: y and x share their sign for alpha > 0).
    aten = require_torch().ops.aten
    if kind == "relu":
        return (aten.threshold_backward(dy, y, 0),)
    if kind == "leaky_relu":
        return (aten.leaky_relu_backward(dy, y, alpha, True),)
    if kind == "sigmoid":
        return (aten.sigmoid_backward(dy, y),)
    return (aten.tanh_backward(dy, y),)


def softmax_cross_entropy_forward(logits: Tensor, labels: Tensor) -> tuple[Tensor, None]:
    # F.cross_entropy = log_softmax then nll_loss; autograd keeps the log-probabilities (not probabilities).
    torch = require_torch()
    logp = torch.log_softmax(logits, 1)
    return torch.nn.functional.nll_loss(logp, labels), None


def softmax_cross_entropy_backward(logp: Tensor, labels: Tensor) -> tuple[Tensor]:
    # Autograd's two steps: nll_loss_backward (−1/N at each label) then the log_softmax backward
    # g − exp(logp)·Σg, which is (softmax − onehot)/N. Takes log-probabilities (what the forward kept).
    torch = require_torch()
    aten = torch.ops.aten
    n = logp.shape[0]
    one = torch.ones((), dtype=logp.dtype)
    g = aten.nll_loss_backward(one, logp, labels, None, 1, -100, torch.tensor(float(n), dtype=logp.dtype))
    return (aten._log_softmax_backward_data(g, logp, 1, logp.dtype),)


class OptimizerStep:
    """``torch.optim.Adam`` or ``torch.optim.SGD`` (defaults: the single-tensor loop on the CPU) over
    ``params`` with fixed ``grads``: each call is one optimizer step over all of them, like cnnkern's one
    ``adam_update``/``sgd_update`` call per parameter."""

    def __init__(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
    ) -> None:
        torch = require_torch()
        self.params = [torch.from_numpy(np.array(p, dtype=np.float32)) for p in params]
        for p, g in zip(self.params, grads):
            p.grad = torch.from_numpy(np.array(g, dtype=np.float32))
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.params, lr=lr)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")

    def __call__(self) -> tuple[Tensor, ...]:
        self.optimizer.step()
        return tuple(self.params)
