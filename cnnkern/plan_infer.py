"""The plan's inference path (:mod:`cnnkern.plan`, ``training=False``): each conv / dense step runs from
weights prepared once and from arguments compiled once per input shape.

* Prepared weights: a step's kernel and bias, checked by the front door (dtype, layout) and, for
  ``conv_bn`` / ``conv_bn_act`` / ``conv_bn_act_pool``, with the batch norm folded in (float64,
  ``cnnkern.compress.fold._folded``).
  They are kept with the arrays they came from and :func:`cnnkern.layers.base.weights_epoch`, and rebuilt
  when an array was replaced (set_weights, assign, load_weights, to_backend) or the counter moved (an
  optimizer update, a training forward through batch norm, set_weights): never stale.
* Compiled calls: the first call for an input shape runs the front door's checks and geometry (strides,
  'same' padding, groups, the pool's window, the memory budget) through the ops helpers; later calls with
  that shape go straight to the backend's kernel. What the compiled call still checks per call is what
  the shape does not fix: that x is C-contiguous in the model's dtype (else the step takes the checked
  path), and that the batch is not empty (the front door answers those without a kernel).

A max pool that alone reads a conv step runs in that step's call (:func:`pools_after`: the folded
weights, the activation, then the pool, in one conv2d_act_maxpool_forward), and so does the pool of a
``conv_bn_act_pool`` step (:mod:`cnnkern.plan_fusions`). Max / average pools of their
own get compiled calls too. Steps of other kinds (activations, batch norm alone, merges,
global pools, a user's own layer) run their layers' checked forward as in training.
``Plan.fast_inference = False`` turns this module off (the tests compare both ways).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Layer,
    MaxPooling2D,
    to_numpy,
)
from .layers.base import weights_epoch
from .ops import check
from .ops import conv as conv_ops
from .ops import dense as dense_ops
from .ops import pool as pool_ops

if TYPE_CHECKING:
    from ._typing import BackendArray
    from .plan import Step

Run = Callable[[Any, bool], Any]  # (x, logits) -> y

_MAX_SHAPES = 64  # compiled calls kept per step
_CONVS = (Conv2D, DepthwiseConv2D)  # exactly these classes: a subclass may run its own forward


class Prepared:
    """A step's weights as its kernel takes them, with what they were made from."""

    __slots__ = ("sources", "epoch", "w", "b")

    def __init__(self, sources: tuple[Any, ...], epoch: int, w: BackendArray, b: BackendArray | None) -> None:
        self.sources, self.epoch, self.w, self.b = sources, epoch, w, b


def _sources(layers: tuple[Layer, ...]) -> tuple[Any, ...]:
    """The arrays a step's prepared weights are made from (the layer's kernel and bias, the batch norm's
    parameters and running statistics)."""
    first = layers[0]
    key = first._kernel_name if isinstance(first, Conv2D) else "kernel"
    out: tuple[Any, ...] = (first.params[key], first.params.get("bias"))
    if len(layers) > 1 and isinstance(layers[1], BatchNormalization):
        bn = layers[1]
        out += (
            bn.params.get("gamma"),
            bn.params.get("beta"),
            bn.state["moving_mean"],
            bn.state["moving_variance"],
        )
    return out


def weights(step: Step) -> tuple[BackendArray, BackendArray | None]:
    """(w, b) of a conv, dense, conv_pool, conv_act or conv_bn(_act) step: kept while the sources are the
    same arrays and no weights changed since; otherwise checked (and folded) again."""
    layers = step.layers
    sources = _sources(layers)
    epoch = weights_epoch()
    p = step.prepared
    if p is not None and p.epoch == epoch and all(a is b for a, b in zip(p.sources, sources)):
        return p.w, p.b
    first = layers[0]
    ctx = first._ctx
    w, b = sources[0], sources[1]
    if len(layers) > 1 and isinstance(layers[1], BatchNormalization):
        from .compress.fold import _folded

        w64, b64 = _folded(to_numpy(w), None if b is None else to_numpy(b), layers[1])
        w, b = ctx.asarray(w64), ctx.asarray(b64)
    be = ctx.backend
    w = check.array("w", w, be, ndim=w.ndim)
    b = None if b is None else check.array("b", b, be, ndim=1, dtype=w.dtype)
    step.prepared = Prepared(sources, epoch, w, b)
    return w, b


def pools_after(step: Step) -> bool:
    """Whether a max pool that alone reads this step's output can run in the step's conv kernel in
    inference (ops.conv2d_act_maxpool_forward with the step's prepared weights): a conv step of these
    exact classes whose activation (its own, or the fused activation layer's) the kernel applies."""
    first = step.layers[0]
    if type(first) not in _CONVS or step.kind not in ("layer", "conv_act", "conv_bn", "conv_bn_act"):
        return False
    return step.kind != "layer" or cast(Conv2D, first).can_fuse_pool()


def compile_step(step: Step, x: Any, pool: MaxPooling2D | None = None) -> Run | None:
    """The compiled call of ``step`` (followed by ``pool``, see :func:`pools_after`) for inputs of x's
    shape, or None where the step takes its checked path (kinds without one, channels_first layers, an
    empty batch)."""
    layers = step.layers if pool is None else (*step.layers, pool)
    if x.shape[0] == 0 or not all(l.data_format == "channels_last" for l in layers):
        return None
    if pool is not None:
        return _conv(step, step.layers[0], x, pool)  # type: ignore[arg-type]
    kind, first = step.kind, step.layers[0]
    if kind == "layer" and type(first) is Dense:
        return _dense(step, first, x)
    if kind == "layer" and type(first) in (MaxPooling2D, AveragePooling2D):
        return _pool(first, x)
    conv_kinds = ("layer", "conv_act", "conv_bn", "conv_bn_act", "conv_pool", "conv_bn_act_pool")
    if kind not in conv_kinds or type(first) not in _CONVS:
        return None
    return _conv(step, first, x)  # type: ignore[arg-type]


def _dense(step: Step, layer: Dense, x: Any) -> Run:
    be = layer._ctx.backend
    w, b = weights(step)
    dense_ops._forward_args(be, x, w, b)  # checked once for this shape; w, b keep their shapes
    kind = layer._fused_kind()
    alpha = check.activation_kind(kind, layer.alpha)
    kernel = be.dense_bias_act_forward

    def run(x: Any, logits: bool) -> Any:
        w, b = weights(step)
        return layer._act_fused(kernel(x, w, b, activation=kind, alpha=alpha), False, logits)

    return run


def _pool(layer: Layer, x: Any) -> Run:
    """A max pool (values only: no argmax in inference) or an average pool, as the layer calls ops."""
    be, g = layer._ctx.backend, layer._geom  # type: ignore[attr-defined]
    is_max = isinstance(layer, MaxPooling2D)
    k, s, p, d, ceil_mode, out = pool_ops._geometry(
        x.shape, g["kernel_size"], g["stride"], g["padding"], 1, g["ceil_mode"]
    )
    what = lambda: f"{layer.name} on x {x.shape}"  # noqa: E731
    pool_ops._budget(x.shape, x.dtype, p, out, what, argmax=False)
    kw: dict[str, Any] = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    if is_max:
        kernel = be.maxpool2d_values_forward
        kw["dilation"] = d
    else:
        kernel = be.avgpool2d_forward
        kw["count_include_pad"] = check.flag("count_include_pad", g.get("count_include_pad", True))
    return lambda x, logits: kernel(x, **kw)


def _conv(step: Step, conv: Conv2D, x: Any, pool_layer: MaxPooling2D | None = None) -> Run:
    be = conv._ctx.backend
    w, b = weights(step)
    _, _, _, stride, pad, dilation, groups, pq = conv_ops._forward_args(
        be, x, w, b, conv.strides, conv.padding, conv.dilation_rate, conv.groups
    )
    geom: dict[str, Any] = dict(stride=stride, padding=pad, dilation=dilation, groups=groups)
    if step.kind in ("conv_act", "conv_bn", "conv_bn_act", "conv_bn_act_pool"):
        # the conv applies the kind of the step's activation layer (conv_bn has none)
        act = next((layer for layer in step.layers if isinstance(layer, Activation)), None)
        kind, alpha = (None, 0.01) if act is None else (act._fused_kind(), act.alpha)
    else:
        kind, alpha = conv._fused_kind(), conv.alpha
    alpha = check.activation_kind(kind, alpha)
    if step.kind in ("conv_pool", "conv_bn_act_pool"):
        pool_layer = step.layers[-1]  # type: ignore[assignment]
    if pool_layer is not None:
        g = pool_layer.fused_geometry()
        z_shape = (x.shape[0], w.shape[0]) + pq
        k, s, p, d, ceil_mode, out = pool_ops._geometry(
            z_shape, g["pool_size"], g["pool_stride"], g["pool_padding"], 1, g["ceil_mode"]
        )
        what = lambda: f"the fused pool on the conv output {z_shape}"  # noqa: E731
        pool_ops._budget(z_shape, x.dtype, p, out, what, argmax=False)
        pooled = be.conv2d_act_maxpool_forward
        pool: dict[str, Any] = dict(
            pool_kernel=k, pool_stride=s, pool_padding=p, pool_dilation=d, pool_ceil_mode=ceil_mode
        )

        def run_pooled(x: Any, logits: bool) -> Any:
            w, b = weights(step)
            return pooled(x, w, b, **geom, activation=kind, alpha=alpha, **pool, need_argmax=False)[0]

        return run_pooled
    fused = be.conv2d_bias_act_forward
    if step.kind != "layer":  # conv_act, conv_bn(_act): the conv's output is the step's (as plan_fusions)

        def run_folded(x: Any, logits: bool) -> Any:
            w, b = weights(step)
            return fused(x, w, b, **geom, activation=kind, alpha=alpha)

        return run_folded

    def run(x: Any, logits: bool) -> Any:
        w, b = weights(step)
        return conv._act_fused(fused(x, w, b, **geom, activation=kind, alpha=alpha), False, logits)

    return run


def run_step(step: Step, x: Any, logits: bool, pool: MaxPooling2D | None = None) -> Any | None:
    """The step's output (with ``pool``: that pool's output, the pool run in the step's kernel) through its
    compiled call for x's shape (compiled now if new), or None where it has none (the caller runs the
    checked path). The calls are kept per model context, since a compiled call holds its backend's kernel
    (to_backend gives the layers a new context)."""
    ctx = step.layers[0]._ctx
    key = (x.shape, ctx, pool)
    calls = step.compiled
    run = calls.get(key, False)
    if run is False:
        if len(calls) >= _MAX_SHAPES:  # many batch sizes (or backends): start over rather than grow
            calls.clear()
        run = calls[key] = compile_step(step, x, pool)
    if run is None or not x.flags.c_contiguous or x.dtype != ctx.dtype:
        return None
    return run(x, logits)
