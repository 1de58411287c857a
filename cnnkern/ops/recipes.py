"""The front doors generated from the kernel table: one per kernel whose entry names a ``recipe``
(:data:`cnnkern.kernels.RECIPES`), so a kernel with standard checks needs no hand-written function in
``ops/<stem>.py``. The functions have the table's front-door signature (``help()`` shows it) and the
kernel's docstring.

``elementwise``: every positional argument is a floating array the backend runs, of the first one's shape
and dtype (its dimension 0, the batch, may be 0: the result is then empty without a kernel call); every
keyword argument is a finite real number. Errors name the argument and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends import resolve
from ..kernel_methods import function
from ..kernels import TABLE, Kernel
from . import check


def _elementwise(kernel: Kernel, backend: check.BackendLike, arrays: tuple[Any, ...], **kw: Any) -> Any:
    be = resolve(backend)
    settings = {name: check.number(name, value, finite=True) for name, value in kw.items()}
    names = [arg.name for arg in kernel.args if arg.positional]
    first = check.array(names[0], arrays[0], be, batch=True)
    checked = [first]
    for name, a in zip(names[1:], arrays[1:]):
        a = check.array(name, a, be, dtype=first.dtype, batch=True)
        check.shape_is(name, a, first.shape, f"the shape of {names[0]}")
        checked.append(a)
    if first.size == 0:
        return __import__(be.array_module).empty(first.shape, first.dtype)
    return getattr(be, kernel.name)(*checked, **settings)


_RECIPES = {"elementwise": _elementwise}


def front_door(kernel: Kernel) -> Callable[..., Any]:
    """The generated front door of ``kernel``: checks by its recipe, then ``be.<kernel>(...)``."""
    if kernel.recipe not in _RECIPES:
        raise ValueError(f"{kernel.name}: unknown front-door recipe {kernel.recipe!r}")
    sig = kernel.front_signature()
    positional = [arg.name for arg in kernel.args if arg.positional]
    keywords = [f"{arg.name}={arg.name}" for arg in kernel.args if not arg.positional]
    body = f"return _recipe(_kernel, backend, ({', '.join(positional)},), {', '.join(keywords)})"
    fn = function(kernel.name, sig, body, {"_recipe": _RECIPES[kernel.recipe], "_kernel": kernel})
    fn.__doc__ = kernel.docstring()
    fn.__module__ = __name__
    return fn


GENERATED: dict[str, Callable[..., Any]] = {
    kernel.name: front_door(kernel) for kernel in TABLE.values() if kernel.recipe is not None
}
