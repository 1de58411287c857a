"""The CUDA backend's kernels run on the CPU, so their logic is tested on machines without a GPU.

Each kernel module's source, exactly as NVRTC receives it (:func:`cnnkern.backends.cuda.loader.source`), is
compiled by g++ together with ``cuda_emu.h``, which emulates the CUDA subset the kernels use: every thread
of a block is a fiber, ``__syncthreads`` and the warp intrinsics are barriers, ``__shared__`` memory is
static storage (blocks run one after another). A small C wrapper per kernel, generated from the kernel's
parameter list, unpacks an argument array and launches the grid.

:class:`EmulatedCudaBackend` is the real :class:`~cnnkern.backends.cuda.CudaBackend` with NumPy arrays and
these launches: every line of the backend's Python runs as on a GPU. Each launch also checks every argument
against the kernel's parameter type (``numpy.int64`` for ``long long``, ``numpy.float32`` for ``float``,
``numpy.float64`` for ``double``, C-contiguous arrays of the pointed-to dtype): CuPy would pass a wrong type
on silently.

What the emulation cannot show: data races (fibers switch only at barriers), timing, and the GPU's
floating-point contraction (g++ compiles without FMA contraction here; results agree within tolerance).
"""

import ctypes
import hashlib
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np

from cnnkern.backends.cuda import CudaBackend, loader

HERE = pathlib.Path(__file__).resolve().parent
SHIM = HERE / "cuda_emu.h"
_KERNEL = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)', re.S
)
_POINTEE = {
    "float": np.float32,
    "i64": np.int64,
    "unsigned long long": np.uint64,
    "unsigned char": np.uint8,
    "signed char": np.int8,
    "int": np.int32,
}


def unavailable():
    """None if the emulator can be built here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"the CUDA emulator uses glibc's ucontext fibers (Linux only), this is {sys.platform}"
    if shutil.which("g++") is None:
        return "g++ not found: the CUDA emulator compiles the kernels with a C++17 host compiler"
    return None


def _parameters(params):
    """Parameter types of one kernel, e.g. ['const float*', 'i64', 'float'] (restrict dropped)."""
    types = []
    for p in params.split(","):
        p = " ".join(p.replace("__restrict__", "").split())
        types.append(p.rsplit(" ", 1)[0].replace(" *", "*"))
    return types


def _build(stem, build_dir):
    """Compile module ``stem`` for the CPU; returns (ctypes library, {kernel: parameter types})."""
    source = loader.source(stem)
    # expand the sources' own macros (CONV_SHAPE_ARGS, GRID_STRIDE_LOOP...) to read the kernel signatures
    pre = subprocess.run(
        ["g++", "-std=c++17", "-E", "-P", "-x", "c++", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kernels, wrappers = {}, []
    for name, params in _KERNEL.findall(pre):
        types = _parameters(params)
        kernels[name] = types
        call = ", ".join(f"*({t}*)a[{i}]" for i, t in enumerate(types))
        wrappers.append(
            f'extern "C" void emu_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, void** a) '
            f"{{ emu::launch(dim3{{gx, gy, gz}}, dim3{{bx, 1, 1}}, [&] {{ {name}({call}); }}); }}"
        )
    text = '#include "cuda_emu.h"\n' + pre + "\n" + "\n".join(wrappers) + "\n"
    digest = hashlib.sha1((text + SHIM.read_text()).encode()).hexdigest()[:16]
    lib = build_dir / f"{stem}-{digest}.so"
    if not lib.exists():
        cpp = build_dir / f"{stem}-{digest}.cpp"
        cpp.write_text(text)
        # -ffp-contract=off: no FMA contraction, so the host's rounding does not depend on -march defaults
        cmd = [
            "g++",
            "-std=c++17",
            "-O1",
            "-ffp-contract=off",
            "-fPIC",
            "-shared",
            "-Wno-unknown-pragmas",
            f"-I{HERE}",
            str(cpp),
            "-o",
            str(lib),
        ]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib)), kernels


class EmulatedKernel:
    """One kernel: called like a CuPy RawKernel, ``kernel(grid, block, args)``."""

    def __init__(self, name, fn, types):
        self.name, self._fn, self.types = name, fn, types

    def _pack(self, arg, ctype):
        where = f"kernel {self.name}: argument of type {ctype!r}"
        if ctype.endswith("*"):
            want = _POINTEE[ctype.replace("const ", "")[:-1]]
            assert isinstance(arg, np.ndarray), f"{where} got {type(arg).__name__}"
            assert arg.dtype == want and arg.flags.c_contiguous, f"{where} got {arg.dtype} array"
            return ctypes.c_void_p(arg.ctypes.data)
        if ctype == "i64":
            assert type(arg) is np.int64, f"{where} got {type(arg).__name__} (pass numpy.int64)"
            return ctypes.c_longlong(int(arg))
        if ctype == "double":
            assert type(arg) is np.float64, f"{where} got {type(arg).__name__} (pass numpy.float64)"
            return ctypes.c_double(float(arg))
        assert ctype == "float", f"{where}: unsupported parameter type"
        assert type(arg) is np.float32, f"{where} got {type(arg).__name__} (pass numpy.float32)"
        return ctypes.c_float(float(arg))

    def __call__(self, grid, block, args, shared_mem=0):
        assert len(args) == len(self.types), (
            f"kernel {self.name}: {len(args)} arguments, expects {len(self.types)}"
        )
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        assert all(g >= 1 for g in grid) and grid[1] <= 65535 and grid[2] <= 65535, (
            f"{self.name}: grid {grid}"
        )
        assert len(block) == 1 and block[0] % 32 == 0 and block[0] <= 1024, f"{self.name}: block {block}"
        values = [self._pack(a, t) for a, t in zip(args, self.types)]
        argv = (ctypes.c_void_p * len(values))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        )
        self._fn(*(ctypes.c_uint(g) for g in grid), ctypes.c_uint(int(block[0])), argv)


class _NumpyAsCupy:
    """The few CuPy calls the backend makes, answered by NumPy."""

    ndarray = np.ndarray
    empty = staticmethod(np.empty)
    zeros = staticmethod(np.zeros)
    asarray = staticmethod(np.asarray)


class EmulatedCudaBackend(CudaBackend):
    """CudaBackend on NumPy arrays with its kernels run by the CPU emulator (slow: small shapes only)."""

    name = "cuda-emulated"
    array_module = "numpy"

    def __init__(self, build_dir):
        self._cp = _NumpyAsCupy
        self._adam_tables = {}
        self._build_dir = pathlib.Path(build_dir)
        self._modules = {}
        self._kernels = {}

    def _kernel(self, stem, kernel):
        key = (stem, kernel)
        if key not in self._kernels:
            if stem not in self._modules:
                self._modules[stem] = _build(stem, self._build_dir)
            lib, signatures = self._modules[stem]
            self._kernels[key] = EmulatedKernel(kernel, getattr(lib, f"emu_{kernel}"), signatures[kernel])
        return self._kernels[key]

    @staticmethod
    def _address(a):
        return a.ctypes.data

    @staticmethod
    def _upload(host):
        return np.array(host)

    def info(self):
        return {"device": "CPU emulation (tests/cuda_emu.h)"}

    def synchronize(self):
        pass
