"""The execution plan of a built model: an ordered list of steps, each one kernel or one fused group of
kernels, which forward runs in order and backward in reverse with the same grouping. The layers hold
parameters and configuration; the plan decides what runs together:

* a chain of layers, each the only reader of the one before, runs as one step where a fused kernel exists
  for it (:mod:`cnnkern.plan_fusions`): Conv2D + MaxPooling2D, BatchNormalization + activation, Add +
  activation, Conv2D + BatchNormalization (+ activation) with the batch norm folded into the conv in
  inference, and Conv2D + activation (one kernel in inference);
* a MaxPooling2D after any other layer with an activation whose output only the pool reads applies that
  activation's gradient in its own backward (ops.maxpool2d_act_backward), and the layer before skips it;
* every other layer is a step of its own (conv, dense: bias and activation fused into the kernel).

In inference (``training=False``) the conv and dense steps run through :mod:`cnnkern.plan_infer`: weights
prepared (batch norm folded) once until they change, each call's checks and geometry compiled once per
input shape; a max pool that alone reads a conv step (after its batch norm and activation too) runs in
that step's kernel (ops.conv2d_act_maxpool_forward), its own step skipped.

``model.summary(plan=True)`` prints the steps and the kernels each calls. A Sequential's plan is that of its
chain, a functional model's that of its graph (:mod:`cnnkern.graph`); both run through :class:`Plan`.
A step whose output several steps read receives the sum of their gradients (array-module ``+``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from . import plan_fusions, plan_infer
from ._typing import BackendArray
from .layers import Layer, MaxPooling2D
from .layers.base import weights_changed

# forward and backward kernels of ops each layer class calls (what the plan prints); a class not listed (a
# user's own layer) is shown as its forward / backward methods
_KERNELS: dict[str, tuple[str, str]] = {
    "Conv2D": ("conv2d_bias_act_forward", "conv2d_backward"),
    "Dense": ("dense_bias_act_forward", "dense_backward"),
    "BatchNormalization": ("batchnorm2d_forward", "batchnorm2d_backward"),
    "Activation": ("activation_forward", "activation_backward"),
    "ReLU": ("activation_forward", "activation_backward"),
    "LeakyReLU": ("activation_forward", "activation_backward"),
    "MaxPooling2D": ("maxpool2d_forward", "maxpool2d_backward"),
    "AveragePooling2D": ("avgpool2d_forward", "avgpool2d_backward"),
    "GlobalAveragePooling2D": ("avgpool2d_forward", "avgpool2d_backward"),
    "GlobalMaxPooling2D": ("maxpool2d_forward", "maxpool2d_backward"),
    "Add": ("array +", "(dy to each input)"),
    "Concatenate": ("array concatenate", "array slices"),
    "Flatten": ("reshape (a view)", "reshape"),
    "Dropout": ("array * mask", "array * mask"),
    "InputLayer": ("(the model input)", "-"),
}


class Step:
    """One step: ``layers`` (one, or a fused chain: see :mod:`cnnkern.plan_fusions`; ``kind`` names it),
    ``inputs`` (the steps whose outputs it reads; empty: the model input), ``act_from`` (for a pool: the
    layer whose activation gradient its backward applies)."""

    __slots__ = (
        "layers",
        "kind",
        "inputs",
        "merge",
        "act_from",
        "needs_grad",
        "frees",
        "prepared",
        "compiled",
        "pool_after",
    )

    def __init__(self, layers: tuple[Layer, ...], inputs: list[int], merge: bool) -> None:
        self.layers = layers
        self.kind = plan_fusions.kind_of(layers)
        self.inputs = inputs
        self.merge = merge
        self.act_from: Layer | None = None
        self.needs_grad = False
        self.frees: list[int] = []
        # the inference path's prepared weights and its calls compiled per input shape (cnnkern.plan_infer)
        self.prepared: plan_infer.Prepared | None = None
        self.compiled: dict[tuple[Any, ...], Any] = {}
        self.pool_after: int | None = None  # a max pool step run in this step's kernel in inference

    def kernels(self, act_taken: bool = False) -> tuple[str, str]:
        """The (forward, backward) kernels this step calls (``act_taken``: a pool after it applies its
        activation's gradient)."""
        if self.kind != "layer":
            fwd, bwd = plan_fusions.KERNELS[self.kind]
            return fwd, bwd.format(act="" if act_taken else "activation_backward, ")
        layer = self.layers[0]
        fwd, bwd = _KERNELS.get(type(layer).__name__, (f"{type(layer).__name__}.forward", "backward"))
        own_act = getattr(layer, "activation", "linear") not in ("linear", "softmax")  # softmax: in the loss
        if own_act and not act_taken and type(layer).__name__ in ("Conv2D", "Dense"):
            bwd = f"activation_backward, {bwd}"
        if self.act_from is not None:
            bwd = f"maxpool2d_act_backward (with {self.act_from.name}'s activation)"
        return fwd, bwd


class Plan:
    """The steps of the layers ``layers`` (in an order where each comes after those it reads), where
    ``inputs_of[i]`` are the indices of the layers layer i reads (empty: the model input) and ``merge[i]``
    says it reads a list. The fusions (:data:`cnnkern.plan_fusions.FUSIONS`: ``fuse_conv_pool``,
    ``bn_act``, ``add_act``, ``fold_bn``, ``conv_act``) and ``pool_act`` can each be turned off (one kernel
    per layer; the tests compare both ways), and so can ``fast_inference``, the inference path of
    :mod:`cnnkern.plan_infer` (prepared weights, calls compiled per input shape)."""

    fast_inference = True

    def __init__(
        self,
        layers: Sequence[Layer],
        inputs_of: Sequence[Sequence[int]],
        merge: Sequence[bool],
        pool_act: bool = True,
        **fusions: bool,
    ) -> None:
        unknown = set(fusions) - set(plan_fusions.FUSIONS)
        if unknown:
            raise TypeError(f"unknown fusions {sorted(unknown)}; known: {plan_fusions.FUSIONS}")
        on = {name: fusions.get(name, True) for name in plan_fusions.FUSIONS}
        out = len(layers) - 1
        readers = [0] * len(layers)
        for ins in inputs_of:
            for j in ins:
                readers[j] += 1
        chains = plan_fusions.groups(layers, inputs_of, on)
        joined = {i for chain in chains.values() for i in chain[1:]}
        self.steps: list[Step] = []
        step_of: dict[int, int] = {}  # layer index -> the step that produces its output
        for i, layer in enumerate(layers):
            if i in joined:
                continue  # runs in its head's step, placed where the head is (it reads nothing else)
            ins = [step_of[j] for j in inputs_of[i]]
            if i in chains:
                chain = chains[i]
                step = Step(tuple(layers[k] for k in chain), ins, merge[i])
                step_of[chain[-1]] = len(self.steps)
            else:
                step = Step((layer,), ins, merge[i])
                if isinstance(layer, MaxPooling2D) and pool_act and inputs_of[i]:
                    j = inputs_of[i][0]
                    source = layers[j]
                    same_layout = layer.data_format == getattr(source, "data_format", "channels_last")
                    if (
                        readers[j] == 1
                        and j != out
                        and hasattr(source, "take_activation")
                        and same_layout
                        and layer.data_format == "channels_last"
                    ):
                        step.act_from = layers[j]
            step_of[i] = len(self.steps)
            self.steps.append(step)
        self.output = step_of[out]
        last_use = list(range(len(self.steps)))
        step_readers = [0] * len(self.steps)
        for s, step in enumerate(self.steps):
            step.needs_grad = any(l.params for l in step.layers) or any(
                self.steps[j].needs_grad for j in step.inputs
            )
            for j in step.inputs:
                last_use[j] = s
                step_readers[j] += 1
        for j, s in enumerate(last_use):
            if s != j and j != self.output:
                self.steps[s].frees.append(j)
        # In inference a max pool that alone reads a conv step runs in that step's kernel
        # (plan_infer.pools_after): the conv output is pooled where it is computed, and for a first layer
        # (1-4 channels) it is never written out at all.
        for p, step in enumerate(self.steps):
            if step.kind == "layer" and type(step.layers[0]) is MaxPooling2D and len(step.inputs) == 1:
                s = step.inputs[0]
                if step_readers[s] == 1 and s != self.output and plan_infer.pools_after(self.steps[s]):
                    self.steps[s].pool_after = p

    def forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        vals: list[Any] = [None] * len(self.steps)
        fast = self.fast_inference and not training
        if training:
            weights_changed()  # a training forward may update state in place (batch norm's statistics)
        for s, step in enumerate(self.steps):
            if vals[s] is None:  # else: a pool's output, computed in the conv step it alone reads
                ins = step.inputs
                arg = x if not ins else [vals[j] for j in ins] if step.merge else vals[ins[0]]
                then, y = step.pool_after if fast else None, None
                if then is not None:
                    y = plan_infer.run_step(step, arg, False, cast(MaxPooling2D, self.steps[then].layers[0]))
                if then is not None and y is not None:
                    vals[then] = y  # the pool's output; nothing else reads the conv's own
                else:
                    vals[s] = self._step_forward(step, arg, training, fast, logits and s == self.output)
            for j in step.frees:
                vals[j] = None
        return vals[self.output]

    @staticmethod
    def _step_forward(step: Step, arg: Any, training: bool, fast: bool, logits: bool) -> Any:
        """One step's output: its compiled inference call where it has one, else its fused group's or its
        layer's checked forward."""
        y = plan_infer.run_step(step, arg, logits) if fast and not step.merge else None
        if y is not None:
            return y
        if step.kind != "layer":
            return plan_fusions.forward(step.kind, step.layers, arg, training, logits)
        return step.layers[0].forward(arg, training=training, logits=logits)

    def backward(self, d: BackendArray) -> None:
        """Back-propagate the gradient ``d`` of the output in reverse step order; each layer's ``grads``
        filled in. Steps that neither hold parameters nor follow one that does are skipped."""
        steps = self.steps
        grads: list[Any] = [None] * len(steps)
        grads[self.output] = d
        for s in range(self.output, -1, -1):
            step = steps[s]
            if not step.needs_grad:
                continue
            dy, grads[s] = grads[s], None
            ins = step.inputs
            need_dx = any(steps[j].needs_grad for j in ins)
            layer = step.layers[0]
            if step.kind != "layer":
                dx = plan_fusions.backward(step.kind, step.layers, dy, need_dx)
            elif step.act_from is not None:
                dx = layer.backward_through(dy, step.act_from)  # type: ignore[attr-defined]
            else:
                dx = layer.backward(dy, need_dx=need_dx)
            if not need_dx:
                continue
            for j, g in zip(ins, dx if step.merge else [dx]):
                if steps[j].needs_grad:
                    grads[j] = g if grads[j] is None else grads[j] + g  # fan-out: gradients add up

    def describe(self) -> list[str]:
        """One line per step: its number, its layers, the kernels it calls forward and backward."""
        rows = []
        taken = {id(step.act_from) for step in self.steps if step.act_from is not None}
        for s, step in enumerate(self.steps):
            names = " + ".join(f"{l.name} ({type(l).__name__})" for l in step.layers)
            fwd, bwd = step.kernels(id(step.layers[-1]) in taken)
            if step.pool_after is not None:
                fwd += f" (infer with step {step.pool_after}'s max pool: conv2d_act_maxpool_forward)"
            rows.append((str(s), names, fwd, bwd))
        rows.append(("", "(loss)", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"))
        head = ("#", "Step (layers)", "Forward", "Backward")
        w = [max(len(head[k]), *(len(r[k]) for r in rows)) + 2 for k in range(3)]
        lines = [f"{a:<{w[0]}}{b:<{w[1]}}{c:<{w[2]}}{d}" for a, b, c, d in (head, *rows)]
        return lines
