"""The CUDA backend: hand-written kernels in ``*.cu`` files, compiled at run time by NVRTC through CuPy.

Arrays are CuPy arrays (``array_module = "cupy"``), float32, C-contiguous, as :mod:`cnnkern.ops` delivers
them. Each method computes output shapes, allocates outputs and launches kernels from :mod:`.loader`; all
kernels are queued on CuPy's current stream (nothing here synchronises), so a sequence of calls can be
captured into a CUDA graph (:mod:`.graph`). Integer kernel arguments are passed as ``numpy.int64``, float
ones as ``numpy.float32`` (``numpy.float64`` for the one ``double``), matching the kernels' parameters.

Beyond the :class:`~cnnkern.backends.base.Backend` kernels, fused variants that save launches:

* ``conv2d_bias_act_forward`` / ``dense_bias_act_forward``: bias and activation applied in the GEMM's
  epilogue (``activation`` None or one of ``ACTIVATIONS``), equal to ``activation_forward`` of the unfused
  output;
* ``batchnorm2d_act_forward``: the activation applied in batch norm's normalising pass;
* ``adam_update_multi``: one Adam step over lists of parameters in a single launch; the step count may be
  a device array, so that a captured training step advances it on every replay.

Reductions (bias and weight gradients, batch-norm statistics, the mean loss) are split into a fixed number
of chunks summed in a fixed order, never with float atomics: results are bitwise reproducible, and the split
counts do not depend on the GPU model.
"""

import importlib.util
import math

import numpy as np

from ... import shapes
from ..base import ACTIVATIONS, Backend
from . import loader

_ACT = {None: 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}  # ACT_* in common.cuh
_BLOCK = 256  # threads per block everywhere (GEMM_THREADS in gemm.cuh)
_TILE = 64  # GEMM_BM == GEMM_BN
_DEPTH = 16  # GEMM_BK
_MAX_BLOCKS = 4096  # grid of the grid-stride kernels
_SPLIT_TARGET = 1024  # blocks a split reduction aims for (fixed: results must not depend on the device)
_MAX_DIM = 2**31 - 1  # GEMM sizes are int inside the kernels
_MAX_GRID_YZ = 65535


def probe():
    """None if the backend can run here, else why not (and the fix)."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy not installed: pip install cnnkern[cuda12] (or cnnkern[cuda13])"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, driver too old for the CUDA runtime, broken install...
        return f"no CUDA device ({type(exc).__name__}: {exc})"
    if count == 0:
        return "no CUDA device (cupy sees 0 devices)"
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        return (
            f"NVRTC, which compiles the kernels, cannot be loaded ({type(exc).__name__}: {exc}); install the "
            "CUDA toolkit or the nvidia-cuda-nvrtc wheel matching your cupy"
        )
    return None


def create():
    return CudaBackend()


def _i(v):
    return np.int64(v)


def _f(v):
    return np.float32(v)


def _ints(*values):
    """Kernel `long long` arguments."""
    return tuple(np.int64(v) for v in values)


def _floats(*values):
    """Kernel `float` arguments."""
    return tuple(np.float32(v) for v in values)


def _cdiv(a, b):
    return -(-a // b)


def _act_code(activation):
    if activation not in _ACT:
        raise ValueError(f"activation must be None or one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return _ACT[activation]


def _grid_1d(n):
    """Grid for a grid-stride loop over n items."""
    return (max(1, min(_cdiv(n, _BLOCK), _MAX_BLOCKS)),)


def _check_gemm(op, **sizes):
    for name, value in sizes.items():
        if value > _MAX_DIM:
            raise ValueError(f"{op}: {name} = {value} exceeds the CUDA kernels' limit of 2**31 - 1")


def _check_grid(op, what, value):
    if value > _MAX_GRID_YZ:
        raise ValueError(f"{op}: {what} = {value} exceeds the CUDA grid limit of {_MAX_GRID_YZ}")


def _gemm_splits(depth, tiles, cap):
    """Split a reduction of length ``depth`` over a GEMM of ``tiles`` output tiles so the grid has about
    _SPLIT_TARGET blocks, each split at least 8 k-tiles deep; returns (splits, chunk), chunk a multiple
    of 16."""
    splits = max(1, min(_SPLIT_TARGET // max(tiles, 1), _cdiv(depth, 8 * _DEPTH), cap))
    chunk = _cdiv(_cdiv(depth, splits), _DEPTH) * _DEPTH
    return _cdiv(depth, chunk), chunk


def _channel_splits(count, channels):
    """Chunks per channel for a per-channel sum of ``count`` values: about _SPLIT_TARGET blocks in all,
    each chunk at least 16 values per thread; returns (splits, chunk)."""
    splits = max(1, min(_SPLIT_TARGET // channels, _cdiv(count, 16 * _BLOCK), _MAX_GRID_YZ))
    chunk = _cdiv(count, splits)
    return _cdiv(count, chunk), chunk


class CudaBackend(Backend):
    name = "cuda"
    dtypes = ("float32",)
    array_module = "cupy"

    def __init__(self):
        import cupy

        self._cp = cupy
        self._adam_tables = {}  # pointer tables for adam_update_multi, keyed by the arrays' pointers

    # kernel lookup, launch, array addresses and uploads: the only places that touch CUDA directly (the
    # tests' CPU emulator overrides _kernel, _address and _upload)
    _kernel = staticmethod(loader.function)

    def _launch(self, stem, kernel, grid, args, block=_BLOCK):
        self._kernel(stem, kernel)(grid, (block,), args)

    @staticmethod
    def _address(a):
        return a.data.ptr

    def info(self):
        cp = self._cp
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        return {
            "device": name.decode() if isinstance(name, bytes) else name,
            "compute_capability": dev.compute_capability,
            "sms": props["multiProcessorCount"],
            "cupy": cp.__version__,
        }

    def synchronize(self):
        self._cp.cuda.Device().synchronize()

    def _empty(self, shape, dtype=np.float32):
        return self._cp.empty(shape, dtype=dtype)

    def _channel_sum(self, stem, x, out, n, k, pq):
        """out[k] = sum over (n, pq) of x (n, k, pq), two deterministic launches (reduce.cuh, which module
        ``stem`` includes)."""
        splits, chunk = _channel_splits(n * pq, k)
        partial = out if splits == 1 else self._empty(k * splits)
        self._launch(stem, "channel_partial_sum", (k, splits), (x, partial, _i(n), _i(k), _i(pq), _i(chunk)))
        if splits > 1:
            self._launch(stem, "sum_partials", _grid_1d(k), (partial, out, _i(k), _i(splits)))
        return out

    # ---- convolution -------------------------------------------------------------------------------------

    def conv2d_forward(self, x, w, b=None, *, stride, padding, dilation, groups):
        return self.conv2d_bias_act_forward(
            x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, activation=None
        )

    def conv2d_bias_act_forward(
        self, x, w, b=None, *, stride, padding, dilation, groups, activation=None, alpha=0.01
    ):
        """``activation_forward(conv2d_forward(x, w, b), activation)`` in one launch (epilogue fusion)."""
        act = _act_code(activation)
        geo = _ConvGeometry(x.shape, w.shape, stride, padding, dilation, groups)
        y = self._empty((geo.n, geo.k, geo.p, geo.q))
        _check_gemm(
            "conv2d_forward",
            pixels=geo.n * geo.p * geo.q,
            reduction=geo.cg * geo.r * geo.s,
            plane=geo.h * geo.w,
        )
        _check_grid("conv2d_forward", "groups", groups)
        grid = (_cdiv(geo.n * geo.p * geo.q, _TILE), _cdiv(geo.kg, _TILE), groups)
        has_bias = b is not None
        args = (x, w, b if has_bias else w, y, *geo.args(), _i(has_bias), _i(act), _f(alpha))
        self._launch("conv", "conv2d_forward", grid, args)
        return y

    def conv2d_backward(self, dy, x, w, *, stride, padding, dilation, groups, need_dx, need_dw, need_db):
        geo = _ConvGeometry(x.shape, w.shape, stride, padding, dilation, groups)
        _check_grid("conv2d_backward", "groups", groups)
        dx = dw = db = None
        if need_dx:
            dx = self._empty(x.shape)
            _check_gemm("conv2d_backward", pixels=geo.n * geo.h * geo.w, reduction=geo.kg * geo.r * geo.s)
            grid = (_cdiv(geo.n * geo.h * geo.w, _TILE), _cdiv(geo.cg, _TILE), groups)
            self._launch("conv", "conv2d_backward_data", grid, (dy, w, dx, *geo.args()))
        if need_dw:
            dw = self._empty(w.shape)
            depth = geo.n * geo.p * geo.q
            crs = geo.cg * geo.r * geo.s
            _check_gemm("conv2d_backward", reduction=depth, weight_columns=crs, plane=geo.h * geo.w)
            tiles = _cdiv(crs, _TILE) * _cdiv(geo.kg, _TILE) * groups
            splits, chunk = _gemm_splits(depth, tiles, _MAX_GRID_YZ // groups)
            ws = dw if splits == 1 else self._empty((splits,) + tuple(w.shape))
            grid = (_cdiv(crs, _TILE), _cdiv(geo.kg, _TILE), groups * splits)
            self._launch(
                "conv", "conv2d_backward_weight", grid, (dy, x, ws, *geo.args(), _i(splits), _i(chunk))
            )
            if splits > 1:
                self._launch("conv", "sum_splits", _grid_1d(dw.size), (ws, dw, _i(dw.size), _i(splits)))
        if need_db:
            db = self._channel_sum("conv", dy, self._empty((geo.k,)), geo.n, geo.k, geo.p * geo.q)
        return dx, dw, db

    # ---- pooling -----------------------------------------------------------------------------------------

    def maxpool2d_forward(self, x, *, kernel_size, stride, padding, dilation, ceil_mode):
        n, c, h, w = x.shape
        p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
        q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
        y = self._empty((n, c, p, q))
        argmax = self._empty((n, c, p, q), np.int64)
        sizes = _ints(n * c, h, w, p, q, *kernel_size, *stride, *padding, *dilation)
        args = (x, y, argmax, *sizes)
        self._launch("pool", "maxpool2d_forward", _grid_1d(y.size), args)
        return y, argmax

    def maxpool2d_backward(self, dy, argmax, x_shape):
        n, c, h, w = x_shape
        dx = self._cp.zeros(tuple(x_shape), dtype=np.float32)
        planes = n * c
        warps_per_block = _BLOCK // 32
        grid = (max(1, min(_cdiv(planes, warps_per_block), _MAX_BLOCKS)),)
        pq = dy.shape[2] * dy.shape[3]
        self._launch("pool", "maxpool2d_backward", grid, (dy, argmax, dx, _i(planes), _i(h * w), _i(pq)))
        return dx

    def _avg_args(self, n, c, h, w, p, q, kernel_size, stride, padding, count_include_pad):
        return _ints(n * c, h, w, p, q, *kernel_size, *stride, *padding, bool(count_include_pad))

    def avgpool2d_forward(self, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
        n, c, h, w = x.shape
        p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], 1, ceil_mode)
        q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], 1, ceil_mode)
        y = self._empty((n, c, p, q))
        args = self._avg_args(n, c, h, w, p, q, kernel_size, stride, padding, count_include_pad)
        self._launch("pool", "avgpool2d_forward", _grid_1d(y.size), (x, y, *args))
        return y

    def avgpool2d_backward(self, dy, x_shape, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
        n, c, h, w = x_shape
        p, q = dy.shape[2], dy.shape[3]
        dx = self._empty(tuple(x_shape))
        args = self._avg_args(n, c, h, w, p, q, kernel_size, stride, padding, count_include_pad)
        self._launch("pool", "avgpool2d_backward", _grid_1d(dx.size), (dy, dx, *args))
        return dx

    # ---- batch norm --------------------------------------------------------------------------------------

    def batchnorm2d_forward(self, x, gamma, beta, running_mean, running_var, *, training, momentum, eps):
        return self.batchnorm2d_act_forward(
            x, gamma, beta, running_mean, running_var, training=training, momentum=momentum, eps=eps
        )

    def batchnorm2d_act_forward(
        self,
        x,
        gamma,
        beta,
        running_mean,
        running_var,
        *,
        training,
        momentum,
        eps,
        activation=None,
        alpha=0.01,
    ):
        """batchnorm2d_forward with ``activation`` applied in the normalising pass; returns (y, mean, invstd)
        where y is the activated output."""
        act = _act_code(activation)
        n, c, h, w = x.shape
        hw = h * w
        mean = self._empty((c,))
        invstd = self._empty((c,))
        if training:
            count = n * hw
            splits, chunk = _channel_splits(count, c)
            partial = self._empty((c * splits,))
            common = (_i(n), _i(c), _i(hw), _i(chunk))
            self._launch(
                "batchnorm", "batchnorm2d_partial_moment", (c, splits), (x, x, partial, *common, _i(0))
            )
            self._launch(
                "batchnorm",
                "batchnorm2d_finish_mean",
                _grid_1d(c),
                (partial, mean, _i(c), _i(splits), _i(count)),
            )
            self._launch(
                "batchnorm", "batchnorm2d_partial_moment", (c, splits), (x, mean, partial, *common, _i(1))
            )
            args = (partial, mean, invstd, running_mean, running_var, *_ints(c, splits, count))
            args += _floats(momentum, eps)
            self._launch("batchnorm", "batchnorm2d_finish_var", _grid_1d(c), args)
        else:
            args = (running_mean, running_var, mean, invstd, _i(c), _f(eps))
            self._launch("batchnorm", "batchnorm2d_eval_stats", _grid_1d(c), args)
        y = self._empty(x.shape)
        args = (x, mean, invstd, gamma, beta, y, _i(x.size), _i(c), _i(hw), _i(act), _f(alpha))
        self._launch("batchnorm", "batchnorm2d_forward", _grid_1d(x.size), args)
        return y, mean, invstd

    def batchnorm2d_backward(self, dy, x, gamma, mean, invstd, *, training):
        n, c, h, w = x.shape
        hw = h * w
        count = n * hw
        splits, chunk = _channel_splits(count, c)
        dgamma = self._empty((c,))
        dbeta = self._empty((c,))
        if splits == 1:
            pdy, pdyx = dbeta, dgamma
        else:
            pdy, pdyx = self._empty((c * splits,)), self._empty((c * splits,))
        args = (dy, x, mean, invstd, pdy, pdyx, _i(n), _i(c), _i(hw), _i(chunk))
        self._launch("batchnorm", "batchnorm2d_partial_grad", (c, splits), args)
        if splits > 1:
            args = (pdy, pdyx, dbeta, dgamma, _i(c), _i(splits))
            self._launch("batchnorm", "batchnorm2d_finish_grad", _grid_1d(c), args)
        dx = self._empty(x.shape)
        args = (dy, x, gamma, mean, invstd, dbeta, dgamma, dx, *_ints(x.size, c, hw, count, bool(training)))
        self._launch("batchnorm", "batchnorm2d_backward", _grid_1d(x.size), args)
        return dx, dgamma, dbeta

    # ---- dense -------------------------------------------------------------------------------------------

    def dense_forward(self, x, w, b=None):
        return self.dense_bias_act_forward(x, w, b, activation=None)

    def dense_bias_act_forward(self, x, w, b=None, *, activation=None, alpha=0.01):
        """``activation_forward(dense_forward(x, w, b), activation)`` in one launch (epilogue fusion)."""
        act = _act_code(activation)
        n, i = x.shape
        o = w.shape[0]
        _check_gemm("dense_forward", batch=n, in_features=i, out_features=o)
        _check_grid("dense_forward", "batch / 64", _cdiv(n, _TILE))
        y = self._empty((n, o))
        has_bias = b is not None
        splits, chunk = _gemm_splits(i, _cdiv(o, _TILE) * _cdiv(n, _TILE), _MAX_GRID_YZ)
        ws = y if splits == 1 else self._empty((splits, n, o))
        bias = b if has_bias else w
        args = (x, w, bias, ws, *_ints(n, i, o, has_bias, act), _f(alpha), _i(chunk))
        self._launch("dense", "dense_forward", (_cdiv(o, _TILE), _cdiv(n, _TILE), splits), args)
        if splits > 1:
            args = (ws, bias, y, *_ints(y.size, o, splits, has_bias, act), _f(alpha))
            self._launch("dense", "dense_sum_splits_bias_act", _grid_1d(y.size), args)
        return y

    def dense_backward(self, dy, x, w, *, need_dx, need_db):
        n, i = x.shape
        o = w.shape[0]
        _check_gemm("dense_backward", batch=n, in_features=i, out_features=o)
        dx = db = None
        if need_dx:
            _check_grid("dense_backward", "batch / 64", _cdiv(n, _TILE))
            dx = self._empty((n, i))
            grid = (_cdiv(i, _TILE), _cdiv(n, _TILE))
            self._launch("dense", "dense_backward_data", grid, (dy, w, dx, *_ints(n, i, o)))
        _check_grid("dense_backward", "out_features / 64", _cdiv(o, _TILE))
        dw = self._empty((o, i))
        splits, chunk = _gemm_splits(n, _cdiv(i, _TILE) * _cdiv(o, _TILE), _MAX_GRID_YZ)
        ws = dw if splits == 1 else self._empty((splits, o, i))
        grid = (_cdiv(i, _TILE), _cdiv(o, _TILE), splits)
        self._launch("dense", "dense_backward_weight", grid, (dy, x, ws, *_ints(n, i, o, chunk)))
        if splits > 1:
            self._launch("dense", "sum_splits", _grid_1d(dw.size), (ws, dw, _i(dw.size), _i(splits)))
        if need_db:
            db = self._channel_sum("dense", dy, self._empty((o,)), n, o, 1)
        return dx, dw, db

    # ---- activations -------------------------------------------------------------------------------------

    def activation_forward(self, x, kind, *, alpha):
        y = self._empty(x.shape)
        args = (x, y, *_ints(x.size, _act_code(kind)), _f(alpha))
        self._launch("activation", "activation_forward", _grid_1d(x.size), args)
        return y

    def activation_backward(self, dy, y, kind, *, alpha):
        dx = self._empty(dy.shape)
        args = (dy, y, dx, *_ints(dy.size, _act_code(kind)), _f(alpha))
        self._launch("activation", "activation_backward", _grid_1d(dy.size), args)
        return dx

    # ---- loss --------------------------------------------------------------------------------------------

    def softmax_cross_entropy_forward(self, logits, labels):
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

    def softmax_cross_entropy_backward(self, probs, labels):
        n, c = probs.shape
        d = self._empty((n, c))
        self._launch(
            "loss", "softmax_cross_entropy_backward", _grid_1d(d.size), (probs, labels, d, _i(n), _i(c))
        )
        return d

    # ---- optimizers --------------------------------------------------------------------------------------

    def sgd_update(self, param, grad, velocity, *, lr, momentum, nesterov, weight_decay):
        v = velocity if velocity is not None else param  # never touched when momentum == 0
        args = (param, grad, v, _i(param.size), _f(lr), _f(momentum), _i(bool(nesterov)), _f(weight_decay))
        self._launch("optim", "sgd_update", _grid_1d(param.size), args)

    @staticmethod
    def _adam_scalars(step, lr, beta1, beta2, eps_mode):
        """(step_size, sqrt(1 - beta2^t), keras flag), computed in double."""
        if eps_mode not in ("torch", "keras"):
            raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
        c1 = 1.0 - beta1**step
        sqrt_c2 = math.sqrt(1.0 - beta2**step)
        if eps_mode == "torch":
            return lr / c1, sqrt_c2, 0
        return lr * sqrt_c2 / c1, sqrt_c2, 1

    def adam_update(self, param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, eps_mode):
        step_size, sqrt_c2, keras = self._adam_scalars(step, lr, beta1, beta2, eps_mode)
        scalars = _floats(beta1, beta2, eps, weight_decay, step_size, sqrt_c2)
        args = (param, grad, m, v, _i(param.size), *scalars, _i(keras))
        self._launch("optim", "adam_update", _grid_1d(param.size), args)

    def adam_update_multi(
        self,
        params,
        grads,
        ms,
        vs,
        *,
        step,
        lr=1e-3,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        eps_mode="torch",
    ):
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
        if device_step:
            args = (table, offsets, _i(len(quads)), step, *map(np.float64, (lr, beta1, beta2)))
            args += (*_floats(eps, weight_decay), keras)
            self._launch("optim", "adam_update_multi_device_step", _grid_1d(total), args)
        else:
            step_size, sqrt_c2, _ = self._adam_scalars(step, lr, beta1, beta2, eps_mode)
            scalars = _floats(beta1, beta2, eps, weight_decay, step_size, sqrt_c2)
            self._launch(
                "optim",
                "adam_update_multi",
                _grid_1d(total),
                (table, offsets, _i(len(quads)), *scalars, keras),
            )

    def _upload(self, host):
        """A device copy of a NumPy array from CuPy's default memory pool, so that a cached table outlives any
        private pool active at the time (graph.CapturedStep allocates from its own while it warms up)."""
        cp = self._cp
        with cp.cuda.using_allocator(cp.get_default_memory_pool().malloc):
            return cp.asarray(host)

    def _adam_table(self, quads):
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


class _ConvGeometry:
    """Sizes of one convolution and the kernel's 16 shape arguments (CONV_SHAPE_ARGS in conv.cu)."""

    def __init__(self, x_shape, w_shape, stride, padding, dilation, groups):
        self.n, self.c, self.h, self.w = x_shape
        self.k, self.cg, self.r, self.s = w_shape
        self.sh, self.sw = stride
        self.pt, self.pb, self.pl, self.pr = padding
        self.dh, self.dw = dilation
        self.groups = groups
        self.kg = self.k // groups
        self.p = shapes.conv_out(self.h, self.r, self.sh, self.pt, self.pb, self.dh)
        self.q = shapes.conv_out(self.w, self.s, self.sw, self.pl, self.pr, self.dw)

    # the order of CONV_SHAPE_ARGS
    _ARGS = ("n", "c", "h", "w", "k", "p", "q", "r", "s", "sh", "sw", "pt", "pl", "dh", "dw", "groups")

    def args(self):
        return _ints(*(getattr(self, name) for name in self._ARGS))
