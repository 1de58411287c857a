"""Fixtures shared by the whole suite: the backend under test, parametrised over the registry.

``target`` runs a test once per backend in :data:`cnnkern.backends.NAMES`, and for the cpp backend once per
SIMD path (``cpp-scalar``, ``cpp-avx2``, ``cpp-avx512``). A backend that cannot run here skips with its
probe's reason, unless it is named in ``CNNKERN_TEST_REQUIRE`` (a comma list; CI sets
``reference,cpp,numba``), in which case the test fails: CI must never pass because a backend quietly went
missing. A SIMD path the CPU lacks always skips, with the reason. ``plain_target`` is the same without the
SIMD variants, for tests that exercise the front door rather than the arithmetic.
"""

import os
from pathlib import Path

import numpy as np
import pytest

import cnnkern
from cnnkern import backends, ops

# The suite runs the cpp convs by the fixed heuristics (the default; forced here against a CNNKERN_AUTOTUNE=1
# in the environment): a measured choice may differ between thread counts
# and runs (test_determinism compares bits across thread counts). tests/test_autotune.py turns it on and
# calls every algorithm explicitly; CNNKERN_CONV_ALGO=<name> runs the whole suite with one forced wherever it
# can run (docs/autotune.md).
os.environ["CNNKERN_AUTOTUNE"] = "0"

SIMD_PATHS = ("scalar", "avx2", "avx512")
_SIMD_LACK = {"avx2": "CPU lacks AVX2+FMA", "avx512": "CPU lacks AVX-512"}


def required_backends():
    """The backend names listed in CNNKERN_TEST_REQUIRE."""
    return [n.strip() for n in os.environ.get("CNNKERN_TEST_REQUIRE", "").split(",") if n.strip()]


def load_backend(name):
    """The backend instance, or skip (fail, if required) with the probe's reason."""
    reason = backends.probe(name)
    if reason is not None:
        if name in required_backends():
            pytest.fail(f"backend {name!r} is required by CNNKERN_TEST_REQUIRE but unavailable: {reason}")
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    return backends.get(name)


def subprocess_env(**extra):
    """Environment for a child interpreter that imports the same cnnkern as this process (and ``tests``);
    CNNKERN_BACKEND and CNNKERN_SIMD are cleared, then ``extra`` applied."""
    env = {k: v for k, v in os.environ.items() if k not in ("CNNKERN_BACKEND", "CNNKERN_SIMD")}
    roots = [str(Path(cnnkern.__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent)]
    env["PYTHONPATH"] = os.pathsep.join(roots + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra)
    return env


class Target:
    """One backend under test: moves NumPy data to the backend's array kind and back, and calls the front door
    (:mod:`cnnkern.ops`) with ``backend=`` this backend."""

    def __init__(self, backend, test_id):
        self.backend = backend
        self.name = backend.name
        self.id = test_id
        # The reference in float64 is the oracle; comparing it with itself would prove nothing.
        self.dtypes = ("float32",) if self.name == "reference" else tuple(backend.dtypes)
        self._cupy = None
        if backend.array_module == "cupy":
            import cupy

            self._cupy = cupy

    def put(self, a, dtype=None):
        """A copy of NumPy array ``a`` (cast to ``dtype`` if given) of the backend's kind; None stays None."""
        if a is None:
            return None
        a = np.array(a, dtype=dtype, copy=True)
        return self._cupy.asarray(a) if self._cupy is not None else a

    def get(self, a):
        """Backend array -> NumPy array (None stays None)."""
        if a is None:
            return None
        if self._cupy is not None and isinstance(a, self._cupy.ndarray):
            return a.get()
        return np.asarray(a)

    def call(self, kernel, *args, **kwargs):
        return getattr(ops, kernel)(*args, backend=self.backend, **kwargs)

    def __repr__(self):
        return f"Target({self.id})"


def _params(with_simd):
    out = []
    for name in backends.NAMES:
        marks = [pytest.mark.gpu] if name == "cuda" else []
        if name == "cpp" and with_simd:
            out += [pytest.param(("cpp", path), id=f"cpp-{path}", marks=marks) for path in SIMD_PATHS]
        else:
            out.append(pytest.param((name, None), id=name, marks=marks))
    return out


def _make_target(param):
    name, simd = param
    be = load_backend(name)
    if simd is None:
        yield Target(be, name)
        return
    if simd not in be.supported_simd():
        pytest.skip(_SIMD_LACK.get(simd, f"CPU cannot run the {simd} path"))
    previous = be.simd()
    be.set_simd(simd)
    try:
        yield Target(be, f"{name}-{simd}")
    finally:
        be.set_simd(previous)


@pytest.fixture(params=_params(with_simd=True))
def target(request):
    """The backend under test (cpp once per SIMD path)."""
    yield from _make_target(request.param)


@pytest.fixture(params=_params(with_simd=False))
def plain_target(request):
    """The backend under test, one per registry name (the default SIMD path for cpp)."""
    yield from _make_target(request.param)


@pytest.fixture
def reference():
    return backends.get("reference")


@pytest.fixture
def restore_default_backend():
    """Undo any cnnkern.set_backend() a test makes."""
    yield
    backends.set_backend(None)
