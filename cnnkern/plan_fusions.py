"""The fused groups of the plan (:mod:`cnnkern.plan`): which layers run together as one step, and how such a
step runs forward and backward.

A group is a chain of layers, each reading only the one before, whose output nothing else reads (so the
intermediate values need not exist for anyone else), all in the model's own layout (channels_last):

* ``conv_pool``: Conv2D + MaxPooling2D, one kernel each way (ops.conv2d_act_maxpool_*);
* ``bn_act``: BatchNormalization + an activation layer (Activation / ReLU / LeakyReLU of a kind the kernels
  apply): ops.batchnorm2d_act_forward; backward the activation's gradient (from its output), then
  batchnorm2d_backward;
* ``add_act``: Add + an activation layer: the sum (array arithmetic: there is no add kernel), then
  activation_forward on it; backward the activation's gradient, handed to every input;
* ``conv_act``: a Conv2D (or DepthwiseConv2D) without activation + an activation layer of a kind the kernels
  apply: ONE conv2d_bias_act_forward with that activation, in training too (the conv keeps its input, the
  activation its output for its backward, or to hand to a max pool after it);
* ``conv_bn`` / ``conv_bn_act``: a Conv2D (or DepthwiseConv2D) without activation + BatchNormalization (+ an
  activation layer). Inference runs ONE conv2d_bias_act_forward with the batch norm folded into the kernel
  and bias (compress.fold._folded): folded once and kept until the weights change by the inference path
  (:mod:`cnnkern.plan_infer`), folded at each call by :func:`forward` here (the checked path it falls back
  to, or that ``Plan.fast_inference = False`` selects); training runs the conv,
  then the batch norm (+ activation) as ``bn_act``, since batch statistics cannot be folded;
* ``bn_act_pool`` / ``conv_bn_act_pool``: either of the two with an activation, + MaxPooling2D. Training runs
  the batch norm, activation and pool as ONE kernel pair (ops.batchnorm2d_act_maxpool_forward / _backward:
  the activation's output is pooled where it is computed and never stored); inference runs the step
  without the pool, then the pool (for ``conv_bn_act_pool``: the folded conv with the pool in its kernel,
  as plan_infer does for a pool after ``conv_bn_act``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ops
from ._typing import BackendArray
from .layers import Activation, Add, BatchNormalization, Conv2D, Layer, MaxPooling2D, to_numpy

FUSIONS = ("fuse_conv_pool", "bn_act", "add_act", "fold_bn", "conv_act", "bn_pool")


def _own_layout(layer: Layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _kernel_act(layer: Layer) -> bool:
    """An activation layer whose kind the fused kernels apply (relu, leaky_relu, sigmoid, tanh)."""
    return isinstance(layer, Activation) and layer._fused_kind() is not None


def _links(prev: Layer, layer: Layer, on: dict[str, bool]) -> bool:
    """Whether ``layer``, the only reader of ``prev``, joins ``prev``'s step."""
    if not (_own_layout(prev) and _own_layout(layer)):
        return False
    if isinstance(layer, MaxPooling2D):
        return on["fuse_conv_pool"] and isinstance(prev, Conv2D) and prev.can_fuse_pool()
    if _kernel_act(layer):
        return (
            (on["bn_act"] and isinstance(prev, BatchNormalization))
            or (on["add_act"] and isinstance(prev, Add))
            or (on["conv_act"] and isinstance(prev, Conv2D) and prev.activation == "linear")
        )
    return (
        on["fold_bn"]
        and isinstance(layer, BatchNormalization)
        and isinstance(prev, Conv2D)
        and prev.activation == "linear"
    )


def _pools_bn_act(
    layers: Sequence[Layer], joined_to: dict[int, int], j: int, layer: Layer, on: dict[str, bool]
) -> bool:
    """Whether ``layer`` is a max pool joining activation j, itself joined to a batch norm's step."""
    bn = joined_to.get(j)
    return (
        on["bn_pool"]
        and type(layer) is MaxPooling2D
        and _own_layout(layer)
        and _kernel_act(layers[j])
        and bn is not None
        and isinstance(layers[bn], BatchNormalization)
    )


def groups(
    layers: Sequence[Layer], inputs_of: Sequence[Sequence[int]], on: dict[str, bool]
) -> dict[int, list[int]]:
    """{head index: the indices of its chain, head first} for every chain of two or more layers; a layer
    joins the one it reads when that one has no other reader and is not the model's output."""
    out = len(layers) - 1
    readers = [0] * len(layers)
    for ins in inputs_of:
        for j in ins:
            readers[j] += 1
    joins: dict[int, int] = {}  # j -> the layer that joins j's step
    joined_to: dict[int, int] = {}  # the inverse: i -> the layer whose step i joins
    for i, layer in enumerate(layers):
        if len(inputs_of[i]) == 1:
            j = inputs_of[i][0]
            if readers[j] != 1 or j == out:
                continue
            if _links(layers[j], layer, on) or _pools_bn_act(layers, joined_to, j, layer, on):
                joins[j], joined_to[i] = i, j
    chains: dict[int, list[int]] = {}
    for head in sorted(set(joins) - set(joins.values())):
        chain = [head]
        while chain[-1] in joins:
            chain.append(joins[chain[-1]])
        chains[head] = chain
    return chains


def kind_of(layers: tuple[Layer, ...]) -> str:
    """The group's kind (see the module docstring); ``layer`` for a step of one layer."""
    if len(layers) == 1:
        return "layer"
    if isinstance(layers[-1], MaxPooling2D):
        if len(layers) == 2:
            return "conv_pool"
        return "bn_act_pool" if isinstance(layers[0], BatchNormalization) else "conv_bn_act_pool"
    if isinstance(layers[0], Add):
        return "add_act"
    if isinstance(layers[0], BatchNormalization):
        return "bn_act"
    if isinstance(layers[1], Activation):
        return "conv_act"
    return "conv_bn_act" if len(layers) == 3 else "conv_bn"


# the kernels each kind calls, forward and backward, for the plan's summary ({act}: the activation's
# backward, left out where a max pool after the step applies it)
KERNELS = {
    "conv_pool": ("conv2d_act_maxpool_forward", "conv2d_act_maxpool_backward"),
    "bn_act": ("batchnorm2d_act_forward", "{act}batchnorm2d_backward"),
    "add_act": ("array + (no add kernel), activation_forward", "{act}(dy to each input)"),
    "conv_act": (
        "conv2d_bias_act_forward (activation fused)",
        "{act}conv2d_backward",
    ),
    "conv_bn": (
        "conv2d_bias_act_forward, batchnorm2d_forward (infer: one conv, bn folded)",
        "batchnorm2d_backward, conv2d_backward",
    ),
    "conv_bn_act": (
        "conv2d_bias_act_forward, batchnorm2d_act_forward (infer: one conv, bn folded)",
        "{act}batchnorm2d_backward, conv2d_backward",
    ),
    "bn_act_pool": (
        "batchnorm2d_act_maxpool_forward (infer: batchnorm2d_act_forward, maxpool2d_forward)",
        "batchnorm2d_act_maxpool_backward",
    ),
    "conv_bn_act_pool": (
        "conv2d_bias_act_forward, batchnorm2d_act_maxpool_forward (infer: conv2d_act_maxpool_forward, bn "
        "folded)",
        "batchnorm2d_act_maxpool_backward, conv2d_backward",
    ),
}


def forward(kind: str, layers: tuple[Layer, ...], x: Any, training: bool, logits: bool) -> BackendArray:
    """One fused step forward (``kind`` not ``layer``)."""
    if kind == "conv_pool":
        conv, pool = layers
        return conv.forward_pooled(x, training, pool)  # type: ignore[attr-defined]
    if kind == "conv_act":
        cv, ac = layers
        assert isinstance(cv, Conv2D) and isinstance(ac, Activation)
        # one kernel: the conv's epilogue applies the activation layer's kind
        args = cv._conv_args(activation=False)
        w, b = cv.params[cv._kernel_name], cv.params.get("bias")
        y = ops.conv2d_bias_act_forward(x, w, b, **args, activation=ac._fused_kind(), alpha=ac.alpha)
        if not training:
            return y
        # what each layer's own training forward keeps: the conv its input (its activation is linear), the
        # activation its output, which its backward (or a max pool's after it) takes the gradient from
        cv._x = x
        cv._act_fused(y, True, False)
        return ac._act_fused(y, True, logits)
    if kind in ("bn_act_pool", "conv_bn_act_pool"):
        return _bn_pool_forward(layers, x, training)
    if kind in ("conv_bn", "conv_bn_act"):
        conv, bn = layers[0], layers[1]
        act = layers[2] if len(layers) == 3 else None
        if not training:
            return _folded_forward(conv, bn, act, x)  # type: ignore[arg-type]
        x = conv.forward(x, training=True)
        if act is None:
            return bn.forward(x, training=True)
        layers = (bn, act)
    act = layers[-1]
    assert isinstance(act, Activation)
    if isinstance(layers[0], Add):
        return act.forward(layers[0].forward(x, training=training), training=training, logits=logits)
    bn = layers[0]
    assert isinstance(bn, BatchNormalization)
    y = bn.forward_act(x, training, act.activation, act.alpha)
    return act._act_fused(y, training, logits)  # keeps y for the activation's backward


def backward(kind: str, layers: tuple[Layer, ...], dy: BackendArray, need_dx: bool) -> Any:
    """One fused step backward: the layers' own backward passes in reverse (the pair conv + pool: the
    conv's, which runs the fused kernel)."""
    if kind == "conv_pool":
        return layers[0].backward(dy, need_dx=need_dx)
    if kind in ("bn_act_pool", "conv_bn_act_pool"):
        bn = layers[-3]
        assert isinstance(bn, BatchNormalization)
        dz = bn.backward_pooled(dy, need_dx=need_dx or len(layers) == 4)
        return dz if len(layers) == 3 else layers[0].backward(dz, need_dx=need_dx)
    for k in range(len(layers) - 1, -1, -1):
        dy = layers[k].backward(dy, need_dx=need_dx or k > 0)
    return dy


def _folded_forward(conv: Conv2D, bn: BatchNormalization, act: Activation | None, x: BackendArray) -> Any:
    """Inference: bn(conv(x)) (then act) as one conv2d_bias_act_forward with the folded kernel and bias."""
    from .compress.fold import _folded

    bias = conv.params.get("bias")
    w, b = _folded(to_numpy(conv.params[conv._kernel_name]), None if bias is None else to_numpy(bias), bn)
    ctx = conv._ctx
    args = conv._conv_args(activation=False)
    kind, alpha = (None, 0.01) if act is None else (act._fused_kind(), act.alpha)
    return ops.conv2d_bias_act_forward(
        x, ctx.asarray(w), ctx.asarray(b), **args, activation=kind, alpha=alpha
    )


def _bn_pool_forward(layers: tuple[Layer, ...], x: Any, training: bool) -> Any:
    """bn_act_pool / conv_bn_act_pool forward (see the module docstring)."""
    *head, bn, act, pool = layers
    assert isinstance(bn, BatchNormalization) and isinstance(act, Activation)
    assert isinstance(pool, MaxPooling2D)
    if not training:
        if head:
            y = _folded_forward(head[0], bn, act, x)  # type: ignore[arg-type]
        else:
            y = act._act_fused(bn.forward_act(x, False, act.activation, act.alpha), False, False)
        return pool.forward(y, training=False)
    if head:
        x = head[0].forward(x, training=True)
    return bn.forward_act_pool(x, act._fused_kind(), act.alpha, pool.fused_geometry())  # type: ignore[arg-type]
