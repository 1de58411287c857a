"""The C++ SIMD backend: thin wrapper over the compiled extension :mod:`cnnkern._cpp`.

Every ``_cpp`` function has exactly the signature of the :class:`~cnnkern.backends.base.Backend` method of
the same name (same positional arrays, same keywords, tuples for stride/padding/...), so each method here
is a direct call. The extension releases the GIL around computation and picks its SIMD path at import
(``CNNKERN_SIMD=scalar|avx2|avx512`` forces one).

A kernel of the table that the extension lacks (a build older than the Python sources) does not make the
whole backend unavailable: that kernel's method raises NotImplementedError naming it and the fix, and
``cnnkern info`` lists it under ``missing``; every other kernel runs. A fused kernel the extension lacks is
Backend's composition of the unfused ones, by design (not every fused kernel has C++ of its own).
"""

from ..kernels import BASIC, FUSED, forwarder, install, method
from .base import Backend

_IMPORT_ERROR = None
try:
    from .. import _cpp
except Exception as exc:  # ImportError, or RuntimeError from a bad CNNKERN_SIMD
    _cpp = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def probe():
    if _cpp is None and "CNNKERN_SIMD" in _IMPORT_ERROR:
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


def _forward(kernel):
    """The method calling ``_cpp.<kernel>``, with the table's signature (so help() shows the contract)."""
    return forwarder(kernel, f"_cpp.{kernel.name}", {"_cpp": _cpp}, keywords=True)


def _unbound(kernel):
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
    dtypes = ("float32",)
    array_module = "numpy"
    checks_argmax = True  # csrc/pool.cpp raises ValueError for an index outside the plane

    def info(self):
        info = {
            "simd": _cpp.simd(),
            "supported": ",".join(_cpp.supported_simd()),
            "threads": _cpp.num_threads(),
        }
        missing = missing_kernels()
        if missing:
            info["missing"] = ",".join(missing) + " (stale build: rebuild cnnkern._cpp)"
        return info

    @staticmethod
    def simd():
        return _cpp.simd()

    @staticmethod
    def set_simd(path):
        """Switch the SIMD path at run time ('scalar', 'avx2', 'avx512'); the CPU must support it."""
        _cpp.set_simd(path)

    @staticmethod
    def supported_simd():
        return list(_cpp.supported_simd())


for _kernel in BASIC:
    _bound = _cpp is not None and hasattr(_cpp, _kernel.name)
    install(CppBackend, _forward(_kernel) if _bound else _unbound(_kernel))
# fused kernels the extension implements; the others keep Backend's composition of the unfused ones
for _kernel in FUSED:
    if _cpp is not None and hasattr(_cpp, _kernel.name):
        install(CppBackend, _forward(_kernel))


def create():
    return CppBackend()
