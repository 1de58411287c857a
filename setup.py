"""Build of cnnkern's C++ extension ``cnnkern._cpp``.

Portable code only: the AVX2 and AVX-512 micro-kernels live in their own translation units
(``csrc/isa/avx2/``, ``csrc/isa/avx512/``) that enable those instruction sets with ``#pragma GCC target``
and are only called after a run-time CPU check, so the wheel runs on any x86-64 (and builds elsewhere
with the scalar path alone). No native-CPU tuning and no fast-math flags: IEEE NaN semantics are part
of the kernel contract.

The extension is optional: if it fails to build, ``pip install`` still installs the pure-Python
package and the ``cpp`` backend's probe reports why it cannot load.
"""

import glob
import os
import platform

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext, naive_recompile
from setuptools import setup

# Compile in parallel (CNNKERN_BUILD_JOBS, default: every core) and, on a rebuild in place, only the objects
# older than their source (naive_recompile: headers are not tracked, so touch the .cpp after editing a .h).
ParallelCompile("CNNKERN_BUILD_JOBS", needs_recompile=naive_recompile).install()

# csrc/runtime: module, bindings, thread pool, allocator, SIMD detection; csrc/kernels: one file per kernel
# family (the same stems as cnnkern/backends/<name>/); csrc/isa/<isa>: the micro-kernels of one
# instruction set.
sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
is_x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
if not is_x86:
    sources = [s for s in sources if not s.startswith(os.path.join("csrc", "isa", ""))]

args = ["-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall", "-Wno-unknown-pragmas"]
link_args = ["-pthread"]
macros = [("CNNKERN_X86", "1")] if is_x86 else []
# CNNKERN_DEBUG_BUILD=1: AddressSanitizer + UndefinedBehaviorSanitizer (scripts/sanitize.sh builds it into a
# separate folder and runs the cpp conformance suite under it). Every UBSan report is fatal
# (-fno-sanitize-recover=all), misaligned accesses included (-fsanitize=alignment, named explicitly), and
# libstdc++'s own bounds checks are on; -fno-wrapv undoes the -fwrapv of Python's CFLAGS so that signed
# overflow is checked. Same sources and the same #pragma GCC target files: the run-time SIMD dispatch still
# picks scalar / AVX2 / AVX-512. The interpreter is not sanitized, so libasan must be
# LD_PRELOADed (g++ -print-file-name=libasan.so) with ASAN_OPTIONS=detect_leaks=0.
if os.environ.get("CNNKERN_DEBUG_BUILD"):
    sanitize = ["-fsanitize=address,undefined,alignment", "-fno-sanitize-recover=all"]
    debug = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", "-D_GLIBCXX_ASSERTIONS"]
    args = debug + sanitize + args[1:]
    link_args += sanitize

ext = Pybind11Extension(
    "cnnkern._cpp",
    sources,
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=args,
    extra_link_args=link_args,
    define_macros=macros,
    optional=not os.environ.get("CNNKERN_REQUIRE_CPP"),
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
