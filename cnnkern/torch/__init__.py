"""cnnkern's kernels inside PyTorch (``pip install "cnnkern[torch]"``; imported only when asked for).

* ``torch.ops.cnnkern.*``: custom ops (torch.library.custom_op) for conv2d (with a fused activation),
  conv2d + activation + max pool, max and average pooling, batch norm, linear (with a fused activation), the
  activations and softmax cross-entropy, each with a fake implementation and an autograd formula whose
  backward calls cnnkern's backward kernels;
* :mod:`cnnkern.torch.functional`: the same with torch.nn.functional's signatures;
* modules with torch.nn's constructors and state_dict layout (:class:`Conv2d`, :class:`MaxPool2d`, ...);
* :func:`convert`: swap a model's layers for these, fusing Conv2d -> activation -> MaxPool2d;
* :mod:`cnnkern.torch.optim`: torch.optim's SGD, Adam and AdamW on cnnkern's update kernels.

CPU tensors: float32 runs on the current CPU backend (cpp, else numba; ``CNNKERN_BACKEND`` or
:func:`cnnkern.backends.set_backend` choose), float64 on the float64 reference backend. CUDA tensors
(float32): the cuda backend's kernels on CuPy arrays over the tensors' memory (DLPack, no copies), queued on
PyTorch's current stream; never run on a GPU so far (no GPU was lent to this work), its kernels tested
through these ops on the CPU emulator (tests/test_torch_cuda_emulated.py).
"""

from __future__ import annotations

try:
    import torch as _torch
except ImportError as exc:
    raise ImportError('cnnkern.torch needs PyTorch: pip install "cnnkern[torch]"') from exc

if not hasattr(_torch.library, "custom_op"):  # pragma: no cover
    raise ImportError(
        f"cnnkern.torch needs torch >= 2.4 (torch.library.custom_op), found {_torch.__version__}"
    )

from . import functional, optim
from .convert import ConversionReport, convert
from .modules import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    ConvActPool2d,
    CrossEntropyLoss,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "ConversionReport",
    "Conv2d",
    "ConvActPool2d",
    "CrossEntropyLoss",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "convert",
    "functional",
    "optim",
]
