"""Kernel workloads: one kernel on one named layer shape (:mod:`.shapes`), runnable on any cnnkern backend
(through the front door, :mod:`cnnkern.ops`, as a user calls it) and on PyTorch, with the reference
backend's float64 answer for the check before timing.

A workload's inputs are drawn once from a seeded generator; each binding (:meth:`Workload.bind`,
:meth:`Workload.bind_torch`) gets its own copies, so in-place kernels (Adam, batch norm's running
statistics) never disturb another candidate. The first call of a fresh binding is the one checked.

The check is a guard against timing a broken kernel, not the conformance suite: values must agree with the
reference within ``rtol`` of the largest reference magnitude, argmax exactly.
"""

import numpy as np

from .. import backends, ops
from . import shapes as S


def to_numpy(a):
    """A backend or torch array as NumPy (None stays None)."""
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    if hasattr(a, "get") and not isinstance(a, np.ndarray):  # cupy
        return a.get()
    return np.asarray(a)


def _copy_to(a, backend):
    """A copy of NumPy ``a`` (or of each array in a list) as the backend's array kind."""
    if isinstance(a, list):
        return [_copy_to(v, backend) for v in a]
    if not isinstance(a, np.ndarray):
        return a
    if backend.array_module == "cupy":
        import cupy

        return cupy.asarray(a)
    return a.copy()


def _as64(a):
    if isinstance(a, list):
        return [_as64(v) for v in a]
    if isinstance(a, np.ndarray) and a.dtype == np.float32:
        return a.astype(np.float64)
    return a


def _uniform(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _eighths(rng, shape):
    """Multiples of 1/8 in [-1, 1]: a conv of them is exact in float32 (its products are multiples of 1/64
    and its sums stay far below 2^24/64), so the argmax of a pool after it is the same on every backend."""
    return (rng.integers(-8, 9, size=shape) / 8).astype(np.float32)


class Workload:
    """One kernel (``kernel``, a :mod:`cnnkern.ops` name) on one shape ``spec``."""

    kernel = ""
    backward = False  # which of the spec's counts apply
    rtol = 1e-3
    torch_only = ()  # input names only the PyTorch peer uses
    torch_formats = ("nchw",)

    def __init__(self, spec, seed=0):
        self.spec = spec
        self.seed = seed
        self._inputs = None
        self._expected = None

    @property
    def label(self):
        return self.spec.label

    @property
    def flops(self):
        return self.spec.backward_flops() if self.backward else self.spec.forward_flops()

    @property
    def bytes(self):
        return self.spec.backward_bytes() if self.backward else self.spec.forward_bytes()

    def inputs(self):
        if self._inputs is None:
            self._inputs = self._make(np.random.default_rng(self.seed))
        return self._inputs

    def bind(self, backend):
        """A no-argument callable running the kernel once on ``backend`` (a Backend) and returning its
        outputs; CuPy work is synchronised before it returns."""
        a = {k: _copy_to(v, backend) for k, v in self.inputs().items() if k not in self.torch_only}
        if backend.array_module == "cupy":

            def run():
                out = self._call(backend, a)
                backend.synchronize()
                return out

            return run
        return lambda: self._call(backend, a)

    def bind_torch(self, memory_format="nchw"):
        """The same for the PyTorch peer (inputs as contiguous CPU tensors; kernels run NCHW only)."""
        import torch

        t = {
            k: [torch.from_numpy(x.copy()) for x in v] if isinstance(v, list) else torch.from_numpy(v.copy())
            for k, v in self.inputs().items()
        }
        return lambda: self._torch_call(t)

    def expected(self):
        """The reference backend's outputs on float64 copies of the inputs."""
        if self._expected is None:
            ref = backends.get("reference")
            a = {k: _as64(v) for k, v in self.inputs().items() if k not in self.torch_only}
            a = {k: [x.copy() for x in v] if isinstance(v, list) else v.copy() for k, v in a.items()}
            self._expected = tuple(_host(o) for o in self._call(ref, a))
        return self._expected

    def verify(self, fn):
        """Run a fresh binding's ``fn`` once and :meth:`check` what it returns."""
        return self.check(fn())

    def check(self, outputs):
        """None if ``outputs`` (a tuple aligned with the kernel's outputs, None where a peer has no such
        output) agree with :meth:`expected`, else what differs."""
        expected = self.expected()
        if len(outputs) != len(expected):
            return f"{len(outputs)} outputs, expected {len(expected)}"
        pairs = []
        for i, (out, ref) in enumerate(zip(outputs, expected)):
            if out is None or ref is None:
                continue
            if isinstance(out, (list, tuple)):  # the optimizers: one array per parameter
                pairs += [(f"output {i}[{j}]", o, r) for j, (o, r) in enumerate(zip(out, ref))]
            else:
                pairs.append((f"output {i}", out, ref))
        if not pairs:
            return "no output to compare"
        return next((m for m in (_compare(what, o, r, self.rtol) for what, o, r in pairs) if m), None)

    def _make(self, rng):
        raise NotImplementedError

    def _call(self, be, a):
        raise NotImplementedError

    def _torch_call(self, t):
        raise NotImplementedError


def _host(o):
    """An output (or list of outputs) as NumPy; None stays None."""
    if isinstance(o, (list, tuple)):
        return [_host(v) for v in o]
    return to_numpy(o)


def _compare(what, out, ref, rtol):
    """None if ``out`` matches ``ref``: integers exactly, floats within ``rtol`` x (max |ref| + |ref|)."""
    out = to_numpy(out)
    ref = np.asarray(ref)
    if out.shape != ref.shape:
        return f"{what}: shape {out.shape}, expected {ref.shape}"
    if ref.dtype.kind in "iu":
        bad = np.count_nonzero(out != ref)
        return f"{what}: {bad} of {ref.size} indices differ" if bad else None
    out = out.astype(np.float64)
    nans = np.count_nonzero(np.isnan(out))
    if nans:
        return f"{what}: {nans} NaN values"
    scale = float(np.max(np.abs(ref)))
    err = np.abs(out - ref)
    excess = err - rtol * (scale + np.abs(ref))
    if np.any(excess > 0):
        worst = int(np.argmax(excess))
        return (
            f"{what}: max |error| {float(err.max()):.3g} (tolerance {rtol:g} x {scale:.3g}); worst value "
            f"{out.flat[worst]!r} vs {ref.flat[worst]!r}"
        )
    return None


# ---- conv ----


class ConvForward(Workload):
    kernel = "conv2d_forward"

    def _make(self, rng):
        c = self.spec
        return {
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
            "b": _uniform(rng, (c.k,)),
        }

    def _call(self, be, a):
        return (ops.conv2d_forward(a["x"], a["w"], a["b"], padding=self.spec.pad, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.conv2d_forward(t["x"], t["w"], t["b"], stride=(1, 1), padding=(self.spec.pad,) * 2)


class ConvBackward(Workload):
    kernel = "conv2d_backward"
    backward = True

    def _make(self, rng):
        c = self.spec
        return {
            "dy": _uniform(rng, (c.n, c.k, c.p, c.q)),
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
        }

    def _call(self, be, a):
        return ops.conv2d_backward(
            a["dy"], a["x"], a["w"], padding=self.spec.pad, need_dx=not self.spec.first, backend=be
        )

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.conv2d_backward(
            t["dy"], t["x"], t["w"], stride=(1, 1), padding=(self.spec.pad,) * 2, need_dx=not self.spec.first
        )


# ---- max pool ----


class MaxPoolForward(Workload):
    kernel = "maxpool2d_forward"

    def _make(self, rng):
        p = self.spec
        return {"x": _uniform(rng, (p.n, p.c, p.h, p.w))}

    def _call(self, be, a):
        return ops.maxpool2d_forward(a["x"], kernel_size=self.spec.k, backend=be)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.maxpool2d_forward(t["x"], kernel_size=(self.spec.k,) * 2)


class MaxPoolBackward(Workload):
    kernel = "maxpool2d_backward"
    backward = True

    def _make(self, rng):
        p = self.spec
        x = _uniform(rng, (p.n, p.c, p.h, p.w))
        _, argmax = ops.maxpool2d_forward(x, kernel_size=p.k, backend="reference")
        return {"x": x, "argmax": argmax, "dy": _uniform(rng, (p.n, p.c, p.p, p.q))}

    def _call(self, be, a):
        return (ops.maxpool2d_backward(a["dy"], a["argmax"], a["x"].shape, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.maxpool2d_backward(t["dy"], t["x"], t["argmax"], kernel_size=(self.spec.k,) * 2)


class MaxPoolReluBackward(Workload):
    """The pool's backward with the preceding ReLU's gradient folded in (what the model layer runs for
    Conv2D(relu) > MaxPooling2D); PyTorch's peer is the two ATen ops autograd runs for it."""

    kernel = "maxpool2d_act_backward"
    backward = True

    @property
    def label(self):
        return self.spec.label + " +relu"

    @property
    def bytes(self):  # the pool backward's traffic plus reading the ReLU's output once
        p = self.spec
        return p.backward_bytes() + p.n * p.c * p.h * p.w * S.F32

    def _make(self, rng):
        p = self.spec
        a = np.maximum(_uniform(rng, (p.n, p.c, p.h, p.w), -1.0, 1.0), 0)  # a ReLU output: zeros, ties
        _, argmax = ops.maxpool2d_forward(a, kernel_size=p.k, backend="reference")
        return {"a": a, "argmax": argmax, "dy": _uniform(rng, (p.n, p.c, p.p, p.q))}

    def _call(self, be, a):
        return (ops.maxpool2d_act_backward(a["dy"], a["argmax"], a["a"], "relu", backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        (dx,) = torch_ref.maxpool2d_backward(t["dy"], t["a"], t["argmax"], kernel_size=(self.spec.k,) * 2)
        return torch_ref.activation_backward(dx, t["a"], "relu")


# ---- conv + ReLU + max pool, one kernel pair (the model layer's Conv2D(relu) > MaxPooling2D) ----


class ConvPoolForward(Workload):
    """ops.conv2d_act_maxpool_forward with ReLU and the 2x2 pool; PyTorch's peer runs conv2d, relu and
    max_pool2d_with_indices. Inputs in eighths (:func:`_eighths`): the argmax check is exact."""

    kernel = "conv2d_act_maxpool_forward"

    def _make(self, rng):
        c = self.spec.conv
        return {
            "x": _eighths(rng, (c.n, c.c, c.h, c.w)),
            "w": _eighths(rng, (c.k, c.c, c.r, c.s)),
            "b": _eighths(rng, (c.k,)),
        }

    def _call(self, be, a):
        s = self.spec
        return ops.conv2d_act_maxpool_forward(
            a["x"], a["w"], a["b"], padding=s.conv.pad, activation="relu", pool_size=s.pool.k, backend=be
        )

    def _torch_call(self, t):
        from .. import torch_ref

        s = self.spec
        return torch_ref.conv2d_relu_maxpool_forward(
            t["x"], t["w"], t["b"], padding=(s.conv.pad,) * 2, kernel_size=(s.pool.k,) * 2
        )


class ConvPoolBackward(Workload):
    """ops.conv2d_act_maxpool_backward from the forward's pooled output and argmax (dw and db only for the
    first layer); PyTorch's peer runs the pool's scatter, ReLU's and the conv's backward, which need the
    full-resolution ReLU output (``a``, kept by PyTorch's autograd)."""

    kernel = "conv2d_act_maxpool_backward"
    backward = True
    torch_only = ("a",)

    def _make(self, rng):
        c, p = self.spec.conv, self.spec.pool
        x, w, b = (
            _eighths(rng, (c.n, c.c, c.h, c.w)),
            _eighths(rng, (c.k, c.c, c.r, c.s)),
            _eighths(rng, (c.k,)),
        )
        a = ops.conv2d_bias_act_forward(x, w, b, padding=c.pad, activation="relu", backend="reference")
        y, argmax = ops.maxpool2d_forward(a, kernel_size=p.k, backend="reference")
        return {"dy": _uniform(rng, y.shape), "y": y, "argmax": argmax, "x": x, "w": w, "a": a}

    def _call(self, be, a):
        c = self.spec.conv
        return ops.conv2d_act_maxpool_backward(
            a["dy"],
            a["y"],
            a["argmax"],
            a["x"],
            a["w"],
            padding=c.pad,
            activation="relu",
            need_dx=not c.first,
            backend=be,
        )

    def _torch_call(self, t):
        from .. import torch_ref

        s = self.spec
        return torch_ref.conv2d_relu_maxpool_backward(
            t["dy"],
            t["a"],
            t["argmax"],
            t["x"],
            t["w"],
            padding=(s.conv.pad,) * 2,
            kernel_size=(s.pool.k,) * 2,
            need_dx=not s.conv.first,
        )


# ---- batch norm (training mode) ----


class BatchNormForward(Workload):
    kernel = "batchnorm2d_forward"

    def _make(self, rng):
        b = self.spec
        return {
            "x": _uniform(rng, (b.n, b.c, b.h, b.w)),
            "gamma": _uniform(rng, (b.c,), 0.5, 1.5),
            "beta": _uniform(rng, (b.c,)),
            "running_mean": np.zeros(b.c, np.float32),
            "running_var": np.ones(b.c, np.float32),
        }

    def _call(self, be, a):
        return ops.batchnorm2d_forward(
            a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"], training=True, backend=be
        )

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.batchnorm2d_forward(
            t["x"], t["gamma"], t["beta"], t["running_mean"], t["running_var"]
        )


class BatchNormBackward(Workload):
    kernel = "batchnorm2d_backward"
    backward = True

    def _make(self, rng):
        b = self.spec
        x = _uniform(rng, (b.n, b.c, b.h, b.w))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=(0, 2, 3))
        invstd = 1.0 / np.sqrt(((x64 - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3)) + 1e-5)
        return {
            "dy": _uniform(rng, x.shape),
            "x": x,
            "gamma": _uniform(rng, (b.c,), 0.5, 1.5),
            "mean": mean.astype(np.float32),
            "invstd": invstd.astype(np.float32),
        }

    def _call(self, be, a):
        return ops.batchnorm2d_backward(
            a["dy"], a["x"], a["gamma"], a["mean"], a["invstd"], training=True, backend=be
        )

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.batchnorm2d_backward(t["dy"], t["x"], t["gamma"], t["mean"], t["invstd"])


# ---- dense ----


class DenseForward(Workload):
    kernel = "dense_forward"

    def _make(self, rng):
        d = self.spec
        return {
            "x": _uniform(rng, (d.n, d.fin)),
            "w": _uniform(rng, (d.fout, d.fin)),
            "b": _uniform(rng, (d.fout,)),
        }

    def _call(self, be, a):
        return (ops.dense_forward(a["x"], a["w"], a["b"], backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.dense_forward(t["x"], t["w"], t["b"])


class DenseBackward(Workload):
    kernel = "dense_backward"
    backward = True

    def _make(self, rng):
        d = self.spec
        return {
            "dy": _uniform(rng, (d.n, d.fout)),
            "x": _uniform(rng, (d.n, d.fin)),
            "w": _uniform(rng, (d.fout, d.fin)),
        }

    def _call(self, be, a):
        return ops.dense_backward(a["dy"], a["x"], a["w"], need_dx=self.spec.need_dx, backend=be)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.dense_backward(t["dy"], t["x"], t["w"], need_dx=self.spec.need_dx)


# ---- activations ----


class ActivationForward(Workload):
    kernel = "activation_forward"
    rtol = 1e-5

    def _make(self, rng):
        return {"x": _uniform(rng, self.spec.shape, -3.0, 3.0)}

    def _call(self, be, a):
        return (ops.activation_forward(a["x"], self.spec.kind, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.activation_forward(t["x"], self.spec.kind)


class ActivationBackward(Workload):
    kernel = "activation_backward"
    backward = True
    rtol = 1e-5

    def _make(self, rng):
        x = _uniform(rng, self.spec.shape, -3.0, 3.0)
        y = ops.activation_forward(x, self.spec.kind, backend="reference")
        return {"dy": _uniform(rng, x.shape), "y": y}

    def _call(self, be, a):
        return (ops.activation_backward(a["dy"], a["y"], self.spec.kind, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.activation_backward(t["dy"], t["y"], self.spec.kind)


# ---- loss ----


class LossForward(Workload):
    kernel = "softmax_cross_entropy_forward"

    def _make(self, rng):
        s = self.spec
        return {
            "logits": _uniform(rng, (s.n, s.classes), -5.0, 5.0),
            "labels": rng.integers(0, s.classes, size=s.n).astype(np.int64),
        }

    def _call(self, be, a):
        return ops.softmax_cross_entropy_forward(a["logits"], a["labels"], backend=be)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.softmax_cross_entropy_forward(t["logits"], t["labels"])


class LossBackward(Workload):
    kernel = "softmax_cross_entropy_backward"
    backward = True
    torch_only = ("logp",)

    def _make(self, rng):
        s = self.spec
        logits = rng.uniform(-5.0, 5.0, size=(s.n, s.classes))
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return {
            "probs": np.exp(logp).astype(np.float32),
            "logp": logp.astype(np.float32),
            "labels": rng.integers(0, s.classes, size=s.n).astype(np.int64),
        }

    def _call(self, be, a):
        return (ops.softmax_cross_entropy_backward(a["probs"], a["labels"], backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.softmax_cross_entropy_backward(t["logp"], t["labels"])


# ---- optimizers ----


class AdamStep(Workload):
    """One Adam step (PyTorch's form, lr 1e-3) over every parameter of ``spec`` (a :class:`.shapes.Params`):
    one ``adam_update`` call per parameter, the step count advancing per call of the workload."""

    kernel = "adam_update"

    def _make(self, rng):
        shapes = self.spec.shapes
        return {
            "params": [_uniform(rng, s) for s in shapes],
            "grads": [_uniform(rng, s, -0.1, 0.1) for s in shapes],
            "m": [np.zeros(s, np.float32) for s in shapes],
            "v": [np.zeros(s, np.float32) for s in shapes],
        }

    def _call(self, be, a):
        a["step"] = a.get("step", 0) + 1
        for p, g, m, v in zip(a["params"], a["grads"], a["m"], a["v"]):
            ops.adam_update(p, g, m, v, step=a["step"], lr=1e-3, backend=be)
        return (a["params"],)

    def bind_torch(self, memory_format="nchw"):
        from .. import torch_ref

        step = torch_ref.OptimizerStep(self.inputs()["params"], self.inputs()["grads"], "adam", lr=1e-3)
        return lambda: (list(step()),)


class SgdStep(Workload):
    """One SGD step with momentum 0.9 (PyTorch's form, lr 0.01) over every parameter of ``spec``."""

    kernel = "sgd_update"

    @property
    def flops(self):
        return 4 * self.spec.count  # v = m·v + g; p −= lr·v

    @property
    def bytes(self):
        return 5 * S.F32 * self.spec.count  # read param, grad, velocity; write param, velocity

    def _make(self, rng):
        shapes = self.spec.shapes
        return {
            "params": [_uniform(rng, s) for s in shapes],
            "grads": [_uniform(rng, s, -0.1, 0.1) for s in shapes],
            "velocity": [np.zeros(s, np.float32) for s in shapes],
        }

    def _call(self, be, a):
        for p, g, v in zip(a["params"], a["grads"], a["velocity"]):
            ops.sgd_update(p, g, v, lr=0.01, momentum=0.9, backend=be)
        return (a["params"],)

    def bind_torch(self, memory_format="nchw"):
        from .. import torch_ref

        step = torch_ref.OptimizerStep(
            self.inputs()["params"], self.inputs()["grads"], "sgd", lr=0.01, momentum=0.9
        )
        return lambda: (list(step()),)


# ---- named sets ----

FAMILIES = {
    "conv": (ConvForward, ConvBackward),
    "pool": (MaxPoolForward, MaxPoolBackward, MaxPoolReluBackward),
    "batchnorm": (BatchNormForward, BatchNormBackward),
    "dense": (DenseForward, DenseBackward),
    "activation": (ActivationForward, ActivationBackward),
    "loss": (LossForward, LossBackward),
    "optim": (AdamStep,),
}
_SPEC_FAMILY = {
    S.Conv: "conv",
    S.Pool: "pool",
    S.BatchNorm: "batchnorm",
    S.Dense: "dense",
    S.Elementwise: "activation",
    S.Loss: "loss",
    S.Params: "optim",
}


def workloads_for(spec, seed=0):
    """The forward and backward workloads of one layer spec (Adam: the one update)."""
    return [cls(spec, seed) for cls in FAMILIES[_SPEC_FAMILY[type(spec)]]]


def classic_workloads(batch, seed=0):
    """Every kernel of the classic CNN's training step at ``batch``, in network order, each conv + ReLU +
    pool pair also as the fused kernel pair the model layer runs for it (after the pool's kernels)."""
    pairs = {pair.pool.name: pair for pair in S.conv_pool_pairs(batch).values()}
    out = []
    for spec in S.classic_layers(batch).values():
        out += workloads_for(spec, seed)
        if spec.name in pairs:
            out += [ConvPoolForward(pairs[spec.name], seed), ConvPoolBackward(pairs[spec.name], seed)]
    return out


def resnet_workloads(seed=0):
    return [w for spec in S.resnet_convs().values() for w in workloads_for(spec, seed)]
