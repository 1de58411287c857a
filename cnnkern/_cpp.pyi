"""Type stub of the compiled extension ``cnnkern._cpp`` (csrc/*.cpp), the C++ SIMD backend.

Every kernel has exactly the signature of the :class:`cnnkern.backends.base.Backend` method of the same
name, in the canonical forms the front door (:mod:`cnnkern.ops`) passes: float32 C-contiguous arrays (a
float64 array is refused with ``TypeError``), ``(h, w)`` tuples for stride / dilation / kernel_size, conv
padding as ``(top, bottom, left, right)``, pool padding as ``(ph, pw)``. Outputs are new arrays; only the
optimizer updates and batch norm's running statistics write in place. The GIL is released while a kernel
computes.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# --- run-time settings (module.cpp) -------------------------------------------------------------------

def simd() -> str:
    """The SIMD path in use: 'scalar', 'avx2' or 'avx512' (CNNKERN_SIMD forces one at import)."""

def set_simd(path: str) -> None:
    """Switch the SIMD path; RuntimeError if this CPU cannot run it, ValueError for an unknown name."""

def supported_simd() -> list[str]:
    """The SIMD paths this CPU can run, from 'scalar' up."""

def num_threads() -> int:
    """Threads of the kernel thread pool, the calling thread included (CNNKERN_NUM_THREADS, default: the CPUs
    this process may use). The pool starts at its first use."""

def max_threads() -> int:
    """The largest pool set_num_threads accepts: 4 x usable_cpus()."""

def usable_cpus() -> int:
    """CPUs in this process's affinity mask."""

def env_threads() -> int:
    """CNNKERN_NUM_THREADS as parsed at import (0 if unset or empty); a value that is not an integer from 1 to
    max_threads() makes the import fail with its message."""

def set_num_threads(n: int) -> None:
    """Resize the pool to ``n`` threads after the job in flight ends. ``TypeError`` unless ``n`` is an int,
    ``ValueError`` outside [1, max_threads()] (before any thread starts), ``RuntimeError`` if a thread cannot
    start: the ones started are joined and the previous size is kept. Results do not depend on the size
    (docs/threads.md)."""

def output_cache(release: bool = False) -> int:
    """Bytes of idle output blocks kept for reuse (csrc/runtime/alloc.h: outputs of 256 KiB or more come
    from a cache of recycled blocks, at most 256 MiB idle, so a training loop does not page-fault fresh
    memory every step); ``release=True`` frees them."""

# --- conv (conv.cpp: im2col + packed SGEMM; conv_direct.cpp: depthwise forward;
#     conv_c1_avx2.cpp: 1-channel 3x3)

def conv2d_forward(
    x: F32,
    w: F32,
    b: F32 | None = None,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> F32:
    """x (N,C,H,W), w (K,C/groups,R,S), b (K,) | None -> y (N,K,P,Q); cross-correlation, zero padding."""

def conv2d_backward(
    dy: F32,
    x: F32,
    w: F32,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[F32 | None, F32 | None, F32 | None]:
    """dy (N,K,P,Q), x, w -> (dx (N,C,H,W), dw (K,C/groups,R,S), db (K,)), None where not needed."""

def conv2d_bias_act_forward(
    x: F32,
    w: F32,
    b: F32 | None = None,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    activation: str | None = None,
    alpha: float = 0.01,
) -> F32:
    """act(conv2d_forward(x, w, b)): bias and activation ('relu', 'leaky_relu', 'sigmoid', 'tanh' or None)
    applied in the GEMM's epilogue while the output block is in cache (in the register for the direct
    one-input-channel 3x3 kernel)."""

# --- conv + activation + max pool (conv_pool.cpp) ---------------------------------------------------------

def conv2d_act_maxpool_forward(
    x: F32,
    w: F32,
    b: F32 | None = None,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    activation: str | None = None,
    alpha: float = 0.01,
    pool_kernel: Sequence[int],
    pool_stride: Sequence[int],
    pool_padding: Sequence[int],
    pool_dilation: Sequence[int],
    pool_ceil_mode: bool,
    need_argmax: bool = True,
) -> tuple[F32, I64 | None]:
    """(y, argmax | None): y = maxpool(act(conv2d(x, w) + b)), argmax a flat index into the conv output's
    P*Q plane. One input channel 3x3 (conv_c1): each image's conv output stays in a per-thread buffer."""

def conv2d_act_maxpool_backward(
    dy: F32,
    y: F32,
    argmax: I64,
    x: F32,
    w: F32,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    activation: str | None = None,
    alpha: float = 0.01,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[F32 | None, F32 | None, F32 | None]:
    """conv2d_backward(maxpool2d_backward(activation_backward(dy, y), argmax), x, w); ValueError for an
    argmax outside the conv output's plane."""

# --- dense (dense.cpp: packed SGEMM) --------------------------------------------------------------------

def dense_forward(x: F32, w: F32, b: F32 | None = None) -> F32:
    """x (N,in), w (out,in), b (out,) | None -> y (N,out) = x w^T + b."""

def dense_backward(
    dy: F32, x: F32, w: F32, *, need_dx: bool, need_db: bool
) -> tuple[F32 | None, F32, F32 | None]:
    """dy (N,out), x, w -> (dx (N,in) | None, dw (out,in), db (out,) | None)."""

def dense_bias_act_forward(
    x: F32, w: F32, b: F32 | None = None, *, activation: str | None = None, alpha: float = 0.01
) -> F32:
    """act(x w^T + b), activation 'relu', 'leaky_relu', 'sigmoid', 'tanh' or None."""

# --- pooling (pool.cpp) ---------------------------------------------------------------------------------

def maxpool2d_forward(
    x: F32,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[F32, I64]:
    """x (N,C,H,W) -> (y (N,C,P,Q), argmax int64 (N,C,P,Q): flat index into the unpadded H*W plane)."""

def maxpool2d_values_forward(
    x: F32,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> F32:
    """x (N,C,H,W) -> y (N,C,P,Q): maxpool2d_forward's y without the argmax."""

def maxpool2d_backward(dy: F32, argmax: I64, x_shape: Sequence[int]) -> F32:
    """dy (N,C,P,Q), argmax (N,C,P,Q), x_shape (N,C,H,W) -> dx (N,C,H,W). ValueError for an index outside
    the H*W plane."""

def maxpool2d_act_backward(
    dy: F32, argmax: I64, x_shape: Sequence[int], a: F32, activation: str, *, alpha: float
) -> F32:
    """activation_backward(maxpool2d_backward(dy, argmax, x_shape), a, activation): a = act(z) (N,C,H,W)."""

def avgpool2d_forward(
    x: F32,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> F32:
    """x (N,C,H,W) -> y (N,C,P,Q)."""

def avgpool2d_backward(
    dy: F32,
    x_shape: Sequence[int],
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> F32:
    """dy (N,C,P,Q), x_shape (N,C,H,W) -> dx (N,C,H,W)."""

# --- batch norm (batchnorm.cpp) -------------------------------------------------------------------------

def batchnorm2d_forward(
    x: F32,
    gamma: F32,
    beta: F32,
    running_mean: F32,
    running_var: F32,
    *,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[F32, F32, F32]:
    """x (N,C,H,W), gamma, beta, running_mean, running_var (C,) -> (y, mean (C,), invstd (C,)).

    training: batch statistics, running_mean / running_var updated in place; eval: the running ones.
    """

def batchnorm2d_backward(
    dy: F32, x: F32, gamma: F32, mean: F32, invstd: F32, *, training: bool
) -> tuple[F32, F32, F32]:
    """dy, x (N,C,H,W), gamma, mean, invstd (C,) -> (dx, dgamma (C,), dbeta (C,))."""

# --- activations (activation.cpp) -----------------------------------------------------------------------

def activation_forward(x: F32, kind: str, *, alpha: float) -> F32:
    """y = act(x), any shape; kind: 'relu', 'leaky_relu', 'sigmoid', 'tanh'."""

def activation_backward(dy: F32, y: F32, kind: str, *, alpha: float) -> F32:
    """dx from dy and the forward OUTPUT y."""

# --- loss (loss.cpp) ------------------------------------------------------------------------------------

def softmax_cross_entropy_forward(logits: F32, labels: I64) -> tuple[F32, F32]:
    """logits (N,C), labels int64 (N,) -> (mean loss as a 0-d array, probs (N,C))."""

def softmax_cross_entropy_backward(probs: F32, labels: I64) -> F32:
    """probs (N,C), labels (N,) -> dlogits (N,C) = (probs - onehot) / N."""

# --- optimizers (optim.cpp), in place -------------------------------------------------------------------

def sgd_update(
    param: F32,
    grad: F32,
    velocity: F32 | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """param (and velocity) updated in place as PyTorch's SGD; velocity is None iff momentum == 0."""

def adam_update(
    param: F32,
    grad: F32,
    m: F32,
    v: F32,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    eps_mode: str,
) -> None:
    """param, m, v updated in place: one Adam step t = step >= 1; eps_mode 'torch' or 'keras'."""

def adam_update_multi(
    params: Sequence[F32],
    grads: Sequence[F32],
    ms: Sequence[F32],
    vs: Sequence[F32],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    eps_mode: str,
) -> None:
    """adam_update on every (param, grad, m, v) quadruple in one call, the joint range split over the pool."""

# int8 inference kernels (cnnkern.compress; the specification is cnnkern/backends/reference/quant.py)
U8 = npt.NDArray[np.uint8]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]

def conv2d_q8_forward(
    x: U8,
    w: I8,
    bias: I32,
    multiplier: I32,
    shift: I32,
    *,
    x_zero: int,
    y_zero: int,
    relu: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> U8: ...
def dense_q8_forward(
    x: U8, w: I8, bias: I32, multiplier: I32, shift: I32, *, x_zero: int, y_zero: int, relu: bool
) -> U8: ...
def dense_q8_acc(x: U8, w: I8, bias: I32, *, x_zero: int) -> I32: ...
def maxpool2d_q8_forward(
    x: U8, *, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], ceil_mode: bool
) -> U8: ...
def q8_gemm_path() -> str: ...
