"""The kernel interface every backend implements (DESIGN.md §2).

A backend is a subclass of :class:`Backend` with one method per kernel. The front door
(:mod:`cnnkern.ops`) validates and normalises every argument before calling a method, so a kernel may
assume:

* arrays are of the backend's kind (``self.array_module``: ``"numpy"`` or ``"cupy"``; the base class itself,
  never a subclass or a masked array), C-contiguous, aligned to their itemsize, in native byte order, of
  one dtype from ``self.dtypes`` shared by all floating arguments; ``labels`` and ``argmax`` are int64;
* ``stride``/``dilation``/``kernel_size`` are ``(h, w)`` tuples of ints >= 1, and every size-like integer
  (these, paddings, groups, shapes) is below 2**31; the call's outputs fit the memory limit;
* every dimension is >= 1, the batch included: the front door answers an empty batch itself;
* hyperparameters are finite; leaky_relu's ``alpha`` is >= 0, so every activation's backward can read the
  branch from the OUTPUT y (a negative slope would map x < 0 to y > 0);
* conv ``padding`` is ``(top, bottom, left, right)`` (asymmetric after ``'same'``), pool ``padding``
  is ``(ph, pw)`` with ``p <= k // 2``;
* every output dimension is >= 1, ``groups`` divides both channel counts, labels are in range;
* ``b`` (conv, dense) may be ``None``; in the optimizers ``velocity`` is ``None`` iff ``momentum == 0``.

Outputs are new arrays (backward writes, never accumulates into caller buffers); the optimizer updates
and batch norm's running statistics are the only in-place writes. Output sizes come from
:mod:`cnnkern.shapes`. ``softmax_cross_entropy_forward`` returns the loss as a 0-d array of the logits'
dtype (``float(loss)`` gives the number).

Methods not overridden raise ``NotImplementedError`` naming the backend and the kernel: a kernel a backend
lacks is an error, never a detour to another backend.
"""

from .. import shapes

KERNELS = (
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "batchnorm2d_forward",
    "batchnorm2d_backward",
    "dense_forward",
    "dense_backward",
    "activation_forward",
    "activation_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "sgd_update",
    "adam_update",
)

# Fused kernels (DESIGN.md §2: welcome as extra kernels; the unfused pairs stay the reference path). The base
# class composes them from the same backend's own unfused kernels, so every backend has them; a backend
# overrides them with a real fused kernel where that pays.
FUSED_KERNELS = (
    "conv2d_bias_act_forward",
    "dense_bias_act_forward",
    "maxpool2d_act_backward",
    "maxpool2d_values_forward",
    "conv2d_act_maxpool_forward",
    "conv2d_act_maxpool_backward",
    "adam_update_multi",
)

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")


class Backend:
    """Base of every backend: name, supported dtypes, array kind, and the kernel methods."""

    name = "base"
    dtypes = ("float32",)
    array_module = "numpy"
    # True where maxpool2d_backward / maxpool2d_act_backward raise ValueError for an argmax outside the H*W
    # plane themselves, so the front door skips its own scan over argmax (a pass over memory per call)
    checks_argmax = False

    def info(self):
        """Extra lines for ``cnnkern info`` (SIMD path, threads, devices...)."""
        return {}

    def synchronize(self):
        """Wait for queued work (a no-op on the CPU backends)."""

    def _missing(self, kernel):
        raise NotImplementedError(f"the {self.name!r} backend has no kernel {kernel!r}")

    # conv: x (N,C,H,W), w (K,C/g,R,S), b (K,) | None -> y (N,K,P,Q)
    def conv2d_forward(self, x, w, b=None, *, stride, padding, dilation, groups):
        self._missing("conv2d_forward")

    # dy (N,K,P,Q), x, w -> (dx | None, dw | None, db | None)
    def conv2d_backward(self, dy, x, w, *, stride, padding, dilation, groups, need_dx, need_dw, need_db):
        self._missing("conv2d_backward")

    # x (N,C,H,W) -> (y (N,C,P,Q), argmax int64 (N,C,P,Q) flat index into the unpadded H*W plane)
    def maxpool2d_forward(self, x, *, kernel_size, stride, padding, dilation, ceil_mode):
        self._missing("maxpool2d_forward")

    # dy (N,C,P,Q), argmax (N,C,P,Q), x_shape (N,C,H,W) -> dx (N,C,H,W)
    def maxpool2d_backward(self, dy, argmax, x_shape):
        self._missing("maxpool2d_backward")

    def avgpool2d_forward(self, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
        self._missing("avgpool2d_forward")

    def avgpool2d_backward(self, dy, x_shape, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
        self._missing("avgpool2d_backward")

    # x (N,C,H,W), gamma/beta/running_* (C,) -> (y, mean (C,), invstd (C,))
    def batchnorm2d_forward(self, x, gamma, beta, running_mean, running_var, *, training, momentum, eps):
        self._missing("batchnorm2d_forward")

    # -> (dx (N,C,H,W), dgamma (C,), dbeta (C,))
    def batchnorm2d_backward(self, dy, x, gamma, mean, invstd, *, training):
        self._missing("batchnorm2d_backward")

    # x (N,in), w (out,in), b (out,) | None -> y (N,out)
    def dense_forward(self, x, w, b=None):
        self._missing("dense_forward")

    # -> (dx (N,in) | None, dw (out,in), db (out,) | None)
    def dense_backward(self, dy, x, w, *, need_dx, need_db):
        self._missing("dense_backward")

    # any shape; kind in ACTIVATIONS
    def activation_forward(self, x, kind, *, alpha):
        self._missing("activation_forward")

    def activation_backward(self, dy, y, kind, *, alpha):
        self._missing("activation_backward")

    # logits (N,C), labels int64 (N,) -> (loss 0-d, probs (N,C))
    def softmax_cross_entropy_forward(self, logits, labels):
        self._missing("softmax_cross_entropy_forward")

    def softmax_cross_entropy_backward(self, probs, labels):
        self._missing("softmax_cross_entropy_backward")

    # in place on param (and velocity); all arrays the same shape
    def sgd_update(self, param, grad, velocity, *, lr, momentum, nesterov, weight_decay):
        self._missing("sgd_update")

    # in place on param, m, v; eps_mode 'torch' (eps after bias correction) or 'keras' (before)
    def adam_update(self, param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, eps_mode):
        self._missing("adam_update")

    # --- fused kernels: default compositions of this backend's own kernels ---

    # activation_forward(conv2d_forward(x, w, b), activation); activation None means none
    def conv2d_bias_act_forward(
        self, x, w, b=None, *, stride, padding, dilation, groups, activation=None, alpha=0.01
    ):
        y = self.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return y if activation is None else self.activation_forward(y, activation, alpha=alpha)

    def dense_bias_act_forward(self, x, w, b=None, *, activation=None, alpha=0.01):
        y = self.dense_forward(x, w, b)
        return y if activation is None else self.activation_forward(y, activation, alpha=alpha)

    # maxpool2d_forward's y alone (inference: no argmax written where the backend has a kernel for it)
    def maxpool2d_values_forward(self, x, *, kernel_size, stride, padding, dilation, ceil_mode):
        y, _ = self.maxpool2d_forward(
            x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
        )
        return y

    # activation_backward(maxpool2d_backward(dy, argmax, x_shape), a, activation): the gradient of
    # maxpool(act(z)) with respect to z, given a = act(z) (x_shape); activation in ACTIVATIONS
    def maxpool2d_act_backward(self, dy, argmax, x_shape, a, activation, *, alpha=0.01):
        dx = self.maxpool2d_backward(dy, argmax, x_shape)
        return self.activation_backward(dx, a, activation, alpha=alpha)

    # maxpool2d_forward(conv2d_bias_act_forward(x, w, b, ...)) with the pool's geometry as pool_*:
    # (y, argmax), argmax (a flat index into the conv output's P*Q plane) None unless need_argmax
    def conv2d_act_maxpool_forward(
        self,
        x,
        w,
        b=None,
        *,
        stride,
        padding,
        dilation,
        groups,
        activation=None,
        alpha=0.01,
        pool_kernel,
        pool_stride,
        pool_padding,
        pool_dilation,
        pool_ceil_mode,
        need_argmax=True,
    ):
        conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        z = self.conv2d_bias_act_forward(x, w, b, **conv, activation=activation, alpha=alpha)
        pool = dict(
            kernel_size=pool_kernel,
            stride=pool_stride,
            padding=pool_padding,
            dilation=pool_dilation,
            ceil_mode=pool_ceil_mode,
        )
        if need_argmax:
            return self.maxpool2d_forward(z, **pool)
        return self.maxpool2d_values_forward(z, **pool), None

    # The gradients of conv2d_act_maxpool_forward from dy and its outputs y, argmax (all (N,K,P',Q')):
    # conv2d_backward(maxpool2d_backward(activation_backward(dy, y, activation), argmax, z_shape), x, w). The
    # activation's gradient is taken at the pooled values: each position argmax points at holds a = y.
    def conv2d_act_maxpool_backward(
        self,
        dy,
        y,
        argmax,
        x,
        w,
        *,
        stride,
        padding,
        dilation,
        groups,
        activation=None,
        alpha=0.01,
        need_dx,
        need_dw,
        need_db,
    ):
        g = dy if activation is None else self.activation_backward(dy, y, activation, alpha=alpha)
        z_shape = (x.shape[0], w.shape[0]) + shapes.conv_out_hw(x.shape, w.shape, stride, padding, dilation)
        dz = self.maxpool2d_backward(g, argmax, z_shape)
        conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return self.conv2d_backward(dz, x, w, **conv, need_dx=need_dx, need_dw=need_dw, need_db=need_db)

    # adam_update over lists of same-shaped (param, grad, m, v) quadruples, one step for all
    def adam_update_multi(
        self, params, grads, ms, vs, *, step, lr, beta1, beta2, eps, weight_decay, eps_mode
    ):
        for p, g, m, v in zip(params, grads, ms, vs):
            self.adam_update(
                p,
                g,
                m,
                v,
                step=step,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                eps_mode=eps_mode,
            )
