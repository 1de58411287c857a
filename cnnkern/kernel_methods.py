"""Functions and Backend methods generated from the kernel table (:mod:`cnnkern.kernels`): each with a
table entry's exact signature and docstring, compiled once, so a call costs no argument binding. The
backends install them (:func:`install`): Backend's defaults, the numba and cpp forwarders, the CUDA
launchers; :mod:`cnnkern.ops.recipes` builds the generated front doors with :func:`function`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .kernels import REQUIRED, Kernel


def _source(name: str, sig: inspect.Signature, body: str) -> str:
    """``def <name>(<parameters>): <body>``, each default spelled as the name ``_default_<parameter>``."""
    parts, star = [], False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.default is REQUIRED else f"{p.name}=_default_{p.name}")
    return f"def {name}({', '.join(parts)}):\n    {body}\n"


def function(
    name: str, sig: inspect.Signature, body: str, namespace: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """A real function with signature ``sig`` (no per-call binding cost) running ``body``; ``body`` sees
    the parameters and ``namespace``."""
    scope = {f"_default_{p.name}": p.default for p in sig.parameters.values() if p.default is not REQUIRED}
    scope.update(namespace or {})
    exec(compile(_source(name, sig, body), f"<cnnkern.kernel_methods: {name}>", "exec"), scope)  # noqa: S102
    fn: Callable[..., Any] = scope[name]
    return fn


def method(kernel: Kernel, body: str, namespace: dict[str, Any] | None = None) -> Callable[..., Any]:
    """A method with the kernel's Backend signature and docstring running ``body``."""
    fn = function(kernel.name, kernel.signature(), body, namespace)
    fn.__doc__ = kernel.docstring()
    return fn


def missing_method(kernel: Kernel) -> Callable[..., Any]:
    """Backend's method for a kernel without a default: raises NotImplementedError naming the kernel."""
    return method(kernel, f"self._missing({kernel.name!r})", {})


def call_args(kernel: Kernel, *, keywords: bool = False) -> str:
    """The source of a call's arguments passing the kernel's parameters on, in table order: positionally,
    or with ``keywords`` the keyword-only ones by name (the C++ bindings' convention)."""
    return ", ".join(
        arg.name if arg.positional or not keywords else f"{arg.name}={arg.name}" for arg in kernel.args
    )


def forwarder(
    kernel: Kernel, target: str, namespace: dict[str, Any] | None = None, *, keywords: bool = False
) -> Callable[..., Any]:
    """A method that returns ``<target>(...)`` with every argument (:func:`call_args`). ``target`` is an
    expression over ``self``, ``kernel`` (the :class:`Kernel`) and ``namespace``, e.g.
    ``self._k['conv'].conv2d_forward``."""
    body = f"return {target}({call_args(kernel, keywords=keywords)})"
    return method(kernel, body, {"kernel": kernel, **(namespace or {})})


def install(cls: type, fn: Callable[..., Any]) -> None:
    """Set a generated method on ``cls`` under its kernel's name, named as if written there."""
    fn.__module__ = cls.__module__
    fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    setattr(cls, fn.__name__, fn)
