"""The table's entry types (:class:`Arg`, :class:`Kernel`) and the argument groups several entries share
(see :mod:`cnnkern.kernels`)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = inspect.Parameter.empty
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
RECIPES = ("elementwise",)  # the standard front doors a Kernel's ``recipe`` may name (cnnkern/ops/recipes.py)


@dataclass(frozen=True)
class Arg:
    """One argument. ``default`` is the Backend method's (REQUIRED: none); ``front`` is the front door's
    default for a keyword-only argument (positional arguments have the same default at both)."""

    name: str
    type: str
    positional: bool = False
    default: Any = REQUIRED
    front: Any = REQUIRED
    doc: str = ""

    @property
    def front_default(self) -> Any:
        return self.default if self.positional else self.front


def a(name: str, type: str = "F32", default: Any = REQUIRED, doc: str = "") -> Arg:
    """A positional argument (an array, a shape, an activation kind)."""
    return Arg(name, type, True, default, default, doc)


def k(name: str, type: str, default: Any = REQUIRED, front: Any = REQUIRED, doc: str = "") -> Arg:
    """A keyword-only argument; ``front`` defaults to ``default``."""
    return Arg(name, type, False, default, default if front is REQUIRED else front, doc)


@dataclass(frozen=True)
class Kernel:
    """One kernel of the interface: see the module docstring."""

    name: str
    family: str
    args: tuple[Arg, ...]
    returns: str
    doc: str
    returns_type: str = "F32"
    inplace: tuple[str, ...] = ()
    fused: str | None = None  # the composition of unfused kernels this one equals
    # the front door's arguments where they differ from `args` (renamed pool keywords, ...); None: `args`
    front_args: tuple[Arg, ...] | None = None
    has_front_door: bool = True
    # a standard front door generated from the entry (cnnkern/ops/recipes.py) instead of one written in
    # ops/<stem>.py: "elementwise" (every positional argument a floating array of the first one's shape
    # and dtype, every keyword a finite real number; empty arrays give an empty result)
    recipe: str | None = None

    def signature(self, *, self_arg: bool = True) -> inspect.Signature:
        """The Backend method's signature (with ``self``)."""
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] if self_arg else []
        return inspect.Signature(params + [_param(arg, arg.default) for arg in self.args])

    def front_signature(self) -> inspect.Signature:
        """The front door's signature (:mod:`cnnkern.ops`), ``backend=None`` last."""
        args = self.front_args if self.front_args is not None else self.args
        params = [_param(arg, arg.front_default) for arg in args]
        params.append(inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default=None))
        return inspect.Signature(params)

    def arg_names(self) -> tuple[str, ...]:
        return tuple(arg.name for arg in self.args)

    def docstring(self) -> str:
        """The contract, as Backend's method shows it in help()."""
        lines = [self.doc, ""]
        if self.fused:
            lines += [f"Equals {self.fused}; the default is that composition of this backend's kernels.", ""]
        lines.append("Arguments:")
        for arg in self.args:
            default = "" if arg.default is REQUIRED else f" = {arg.default!r}"
            lines.append(f"    {arg.name} ({arg.type}{default}){': ' + arg.doc if arg.doc else ''}")
        if self.inplace:
            lines += ["", f"Writes in place: {', '.join(self.inplace)}."]
        lines += ["", f"Returns: {self.returns}"]
        return "\n".join(lines)


def _param(arg: Arg, default: Any) -> inspect.Parameter:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if arg.positional else inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(arg.name, kind, default=default)


# shared argument groups -----------------------------------------------------------------------------------
PAIR = "Sequence[int]"
CONV = (
    k("stride", PAIR, front=1, doc="(sh, sw)"),
    k("padding", PAIR, front=0, doc="(top, bottom, left, right), asymmetric after 'same'"),
    k("dilation", PAIR, front=1, doc="(dh, dw)"),
    k("groups", "int", front=1, doc="divides both channel counts"),
)
NEED_DX_DW_DB = tuple(
    k(f"need_{g}", "bool", front=True, doc=f"compute {g} (else None)") for g in ("dx", "dw", "db")
)
ACT = (
    k("activation", "str | None", None, doc="None or one of ACTIVATIONS"),
    k("alpha", "float", 0.01, doc="leaky_relu's slope below 0"),
)
MAXPOOL = (
    k("kernel_size", PAIR, doc="(kh, kw)"),
    k("stride", PAIR, front=None, doc="(sh, sw); the front door's None means kernel_size"),
    k("padding", PAIR, front=0, doc="(ph, pw), each <= k // 2"),
    k("dilation", PAIR, front=1),
    k("ceil_mode", "bool", front=False),
)
AVGPOOL = MAXPOOL[:3] + (MAXPOOL[4], k("count_include_pad", "bool", front=True))
ADAM = (
    k("step", "int", doc="the step count t >= 1"),
    k("lr", "float", front=1e-3),
    k("beta1", "float", front=0.9),
    k("beta2", "float", front=0.999),
    k("eps", "float", front=1e-8),
    k("weight_decay", "float", front=0.0),
    k("eps_mode", "str", front="torch", doc="'torch': eps after bias correction, 'keras': before"),
    k(
        "decoupled_weight_decay",
        "bool",
        False,
        doc="AdamW: param *= 1 - lr*weight_decay before the step instead of weight_decay*param in g",
    ),
)
DXDWDB = "tuple[F32 | None, F32 | None, F32 | None]"
CONV_GRADS = "(dx (N,C,H,W) | None, dw (K,C/groups,R,S) | None, db (K,) | None)"
