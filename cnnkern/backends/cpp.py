"""The C++ SIMD backend: thin wrapper over the compiled extension :mod:`cnnkern._cpp`.

Every ``_cpp`` function has exactly the signature of the :class:`~cnnkern.backends.base.Backend` method of
the same name (same positional arrays, same keywords, tuples for stride/padding/...), so each method here
is a direct call. The extension releases the GIL around computation and picks its SIMD path at import
(``CNNKERN_SIMD=scalar|avx2|avx512`` forces one). Its thread pool (csrc/runtime/threads.cpp,
docs/threads.md) has
``CNNKERN_NUM_THREADS`` threads (default: the CPUs this process may use), at most 4 per usable CPU; a bad
value makes the import fail, and the backend unavailable, with the reason.

A kernel of the table that the extension lacks (a build older than the Python sources) does not make the
whole backend unavailable: that kernel's method raises NotImplementedError naming it and the fix, and
``cnnkern info`` lists it under ``missing``; every other kernel runs. A fused kernel the extension lacks is
Backend's composition of the unfused ones, by design (not every fused kernel has C++ of its own).
"""

from __future__ import annotations

from typing import Any, Callable

from .. import autotune
from ..kernel_methods import call_args, forwarder, install, method
from ..kernels import BASIC, FUSED, TABLE, Kernel
from .base import Backend

_IMPORT_ERROR: str | None = None
try:
    from .. import _cpp
except Exception as exc:  # ImportError, also for a bad CNNKERN_SIMD or CNNKERN_NUM_THREADS
    # typed as the module (cnnkern/_cpp.pyi) so the calls below are checked; None only when probe() says why
    _cpp = None  # type: ignore[assignment]
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def probe() -> str | None:
    refused = _IMPORT_ERROR is not None and (
        "CNNKERN_SIMD" in _IMPORT_ERROR or "CNNKERN_NUM_THREADS" in _IMPORT_ERROR
    )
    if refused:
        return f"cnnkern._cpp refused to load: {_IMPORT_ERROR}"
    if _cpp is None:
        return (
            f"cnnkern._cpp failed to import ({_IMPORT_ERROR}); reinstall with a C++17 compiler present: "
            "pip install --force-reinstall --no-deps cnnkern"
        )
    return None


def missing_kernels() -> list[str]:
    """The unfused kernels of the table that the loaded extension has no binding for."""
    return [kernel.name for kernel in BASIC if _cpp is None or not hasattr(_cpp, kernel.name)]


def _forward(kernel: Kernel) -> Callable[..., Any]:
    """The method calling ``_cpp.<kernel>``, with the table's signature (so help() shows the contract)."""
    return forwarder(kernel, f"_cpp.{kernel.name}", {"_cpp": _cpp}, keywords=True)


def _unbound(kernel: Kernel) -> Callable[..., Any]:
    """The method for a kernel the extension lacks: the table's signature, raising with the fix."""
    message = (
        f"the 'cpp' backend has no kernel {kernel.name!r}: cnnkern._cpp "
        f"({getattr(_cpp, '__file__', '?')}) was built from older sources; rebuild it "
        "(pip install --force-reinstall --no-deps cnnkern, or in a checkout: "
        "python setup.py build_ext --inplace)"
    )
    return method(kernel, f"raise NotImplementedError({message!r})")


class CppBackend(Backend):
    name = "cpp"
    dtypes: tuple[str, ...] = ("float32",)
    array_module = "numpy"
    checks_argmax = True  # csrc/kernels/pool.cpp raises ValueError for an index outside the plane

    def info(self) -> dict[str, Any]:
        info = {
            "simd": _cpp.simd(),
            "supported": ",".join(_cpp.supported_simd()),
            "threads": _cpp.num_threads(),
            "max_threads": _cpp.max_threads(),
            "threads_pinned": _cpp.threads_pinned(),  # docs/threads.md, "Placement"
        }
        if hasattr(_cpp, "conv_algos"):
            tuned = autotune.info()
            info["conv_autotune"] = tuned["autotune"]
            info["autotune_cache"] = f"{tuned['cache']} ({tuned['entries']} entries)"
        missing = missing_kernels()
        if missing:
            info["missing"] = ",".join(missing) + " (stale build: rebuild cnnkern._cpp)"
        return info

    # threads: cnnkern.set_num_threads / get_num_threads (cnnkern/threads.py)
    @staticmethod
    def num_threads() -> int:
        return _cpp.num_threads()

    @staticmethod
    def max_threads() -> int:
        """The largest pool: 4 x the CPUs in this process's affinity mask."""
        return _cpp.max_threads()

    @staticmethod
    def thread_count_error(n: int) -> str | None:
        """None if the pool can have ``n`` threads, else why not."""
        top = _cpp.max_threads()
        if n <= top:
            return None
        return (
            f"n={n} exceeds the cpp backend's limit of {top} threads (4 x the {_cpp.usable_cpus()} CPUs this "
            "process may use)"
        )

    @staticmethod
    def set_num_threads(n: int) -> None:
        """Resize the pool; ValueError outside [1, max_threads()], RuntimeError (size unchanged) if a thread
        cannot start."""
        _cpp.set_num_threads(n)

    @staticmethod
    def simd() -> str:
        return _cpp.simd()

    @staticmethod
    def set_simd(path: str) -> None:
        """Switch the SIMD path at run time ('scalar', 'avx2', 'avx512'); the CPU must support it."""
        _cpp.set_simd(path)

    @staticmethod
    def supported_simd() -> list[str]:
        return list(_cpp.supported_simd())


for _kernel in BASIC:
    _bound = _cpp is not None and hasattr(_cpp, _kernel.name)
    install(CppBackend, _forward(_kernel) if _bound else _unbound(_kernel))
# fused kernels the extension implements; the others keep Backend's composition of the unfused ones
for _kernel in FUSED:
    if _cpp is not None and hasattr(_cpp, _kernel.name):
        install(CppBackend, _forward(_kernel))


# The convs: each call passes the algorithm cnnkern.autotune picks for its shape (None: the heuristics), to
# the extension's *_algo entry points (the same kernels with an explicit algorithm; docs/autotune.md).
def _shape(a: Any) -> tuple[int, ...]:
    return tuple(getattr(a, "shape", ()))


def _tuned(direction: str, entry: str, xw: tuple[int, int], extra: Callable[..., tuple[Any, ...]]) -> Any:
    """A conv kernel calling the extension's ``entry`` (a ``*_algo`` entry point) with the algorithm
    cnnkern.autotune picks; the choice's key: x's and w's shapes (arguments ``xw``), the geometry and
    ``extra(arrays, rest)`` (what else changes the kernel's work: the backward's needs, the pool...)."""

    def conv(*arrays: Any, stride: Any, padding: Any, dilation: Any, groups: int, **rest: Any) -> Any:
        if autotune.off():  # the heuristics: no key to build (a batch-1 inference feels each microsecond)
            return getattr(_cpp, entry)(
                *arrays, stride=stride, padding=padding, dilation=dilation, groups=groups, algo=None, **rest
            )
        geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

        def run(algo: str | None) -> Any:
            return getattr(_cpp, entry)(*arrays, **geometry, algo=algo, **rest)

        x, w = arrays[xw[0]], arrays[xw[1]]
        key = (_shape(x), _shape(w), stride, padding, dilation, (groups,), extra(arrays, rest))
        return run(autotune.choose(direction, key, run))

    return conv


def _needs(arrays: Any, rest: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(rest.values())


# The keys as before this factory: the plain forward leaves the activation out (same conv work); the fused
# kernels are timed as themselves (the pool's geometry and activation; the pooled dy's shape backward).
conv2d_bias_act_forward = _tuned("fwd", "conv2d_bias_act_forward_algo", (0, 1), lambda arrays, rest: ())
conv2d_backward = _tuned("bwd", "conv2d_backward_algo", (1, 2), _needs)
conv2d_act_maxpool_forward = _tuned("fwd_maxpool", "conv2d_act_maxpool_forward_algo", (0, 1), _needs)
conv2d_act_maxpool_backward = _tuned(
    "bwd_maxpool",
    "conv2d_act_maxpool_backward_algo",
    (3, 4),
    lambda arrays, rest: (_shape(arrays[0]), *rest.values()),
)


def conv2d_forward(x: Any, w: Any, b: Any = None, **kw: Any) -> Any:
    return conv2d_bias_act_forward(x, w, b, activation=None, **kw)


_TUNED = {
    "conv2d_forward": conv2d_forward,
    "conv2d_bias_act_forward": conv2d_bias_act_forward,
    "conv2d_backward": conv2d_backward,
    "conv2d_act_maxpool_forward": conv2d_act_maxpool_forward,
    "conv2d_act_maxpool_backward": conv2d_act_maxpool_backward,
}
if _cpp is not None and hasattr(_cpp, "conv_algos"):
    for _name, _fn in _TUNED.items():
        _kernel = TABLE[_name]
        install(CppBackend, method(_kernel, f"return _fn({call_args(_kernel, keywords=True)})", {"_fn": _fn}))


def create() -> CppBackend:
    return CppBackend()
