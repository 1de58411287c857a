"""Two ways into one op: the registered ``torch.ops.cnnkern`` custom op, which torch.compile, opcheck,
FakeTensor and every dispatch mode see, and in plain eager mode a ``torch.autograd.Function`` over the same
Python implementation, setup_context and backward.

Why: a custom op call passes torch's dispatcher and the custom-op layer in Python (schema defaults, alias
checks, the autograd wrapper), about 80 us a forward and 200 us a forward + backward on the 2-core VM
(2026-12-07); the Function costs a fraction of that. In a small model's training step that overhead was
10-15% of the step. Both paths run the same functions, so results are bitwise the same
(tests/test_torch_eager.py).

The eager path is taken only when nothing could observe the difference: not while torch.compile / jit
traces, no torch-function or dispatch mode active (FakeTensorMode, meta device contexts, profilers' modes),
no functorch transform (vmap, grad) active, and every tensor argument a plain ``torch.Tensor``
or ``nn.Parameter`` (no other subclass).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ._bridge import device_scope

Impl = Callable[..., Any]

_impls: dict[object, Impl] = {}  # op -> its Python implementation
_names: dict[object, str] = {}  # op -> its name in the cnnkern namespace
_functions: dict[object, type[torch.autograd.Function]] = {}  # op -> the eager autograd Function
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_function_mode = getattr(torch._C, "_is_torch_function_mode_enabled", None)
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # Parameter: a subclass that disables __torch_function__
_local = threading.local()  # .dispatcher: set while a backward must go through the dispatcher


def define(qualname: str, *, schema: str) -> Callable[[Impl], Any]:
    """``torch.library.custom_op(qualname, mutates_args=(), schema=schema)`` that also keeps the function,
    for :func:`call`'s eager path."""

    def register(fn: Impl) -> Any:
        @functools.wraps(fn)
        def run(*args: Any) -> Any:
            # a CUDA tensor's op runs on its device and PyTorch's current stream there
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is None or first.device.type != "cuda":
                return fn(*args)
            with device_scope(first):
                return fn(*args)

        op = torch.library.custom_op(qualname, mutates_args=(), schema=schema)(run)
        _impls[op] = run
        _names[op] = qualname.split("::")[-1]
        return op

    return register


def register_autograd(op: Any, backward: Impl, *, setup_context: Impl) -> None:
    """``op.register_autograd`` and the eager Function built from the same two functions."""
    op.register_autograd(backward, setup_context=setup_context)
    impl = _impls[op]

    # Old-style (forward takes ctx): Function.apply binds a new-style forward's defaults with
    # inspect.signature on every call, which alone cost more than the kernel of a small layer.
    def forward(ctx: Any, *args: Any) -> Any:
        output = impl(*args)
        setup_context(ctx, args, output)
        # no zero tensor made for an output without a gradient (an argmax, say): filling one the size of
        # the output each step costs time and, in torch's parallel fill, wakes its OpenMP workers, which
        # then spin on the cores cnnkern's kernels need; a float output left without one gets its zeros in
        # run_backward
        ctx.set_materialize_grads(False)
        outputs = output if isinstance(output, tuple) else (output,)
        ctx.float_outputs = [(o.shape, o.dtype) if o.is_floating_point() else None for o in outputs]
        return output

    def run_backward(ctx: Any, *grads: Any) -> Any:
        grads = tuple(
            torch.zeros(meta[0], dtype=meta[1]) if g is None and meta is not None else g
            for g, meta in zip(grads, ctx.float_outputs)
        )
        if not torch.is_grad_enabled():
            return backward(ctx, *grads)
        # create_graph=True: the backward ops through the dispatcher, whose outputs raise a clear error
        # ("no autograd formula") if differentiated again, where the eager ones would pass as constants
        _local.dispatcher = True
        try:
            return backward(ctx, *grads)
        finally:
            _local.dispatcher = False

    body = {"forward": staticmethod(forward), "backward": staticmethod(run_backward)}
    _functions[op] = type(f"{_names[op]}_eager", (torch.autograd.Function,), body)


def eager(args: tuple[Any, ...]) -> bool:
    """Whether :func:`call` may bypass the dispatcher for these arguments (see the module docstring)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or getattr(_local, "dispatcher", False):
        return False
    if _function_mode is None or _transforms_active is None or _function_mode() or _transforms_active():
        return False  # (a torch without these checks: always the dispatcher)
    if _get_current_dispatch_mode() is not None:
        return False
    return all(type(a) in _PLAIN for a in args if isinstance(a, torch.Tensor))


def call(op: Any, *args: Any) -> Any:
    """``op(*args)``: through the eager Function (or, for a backward op, its implementation) when
    :func:`eager` allows, else through the dispatcher."""
    if eager(args):
        fn = _functions.get(op)
        return fn.apply(*args) if fn is not None else _impls[op](*args)
    return op(*args)
