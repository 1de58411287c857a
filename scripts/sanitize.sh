#!/usr/bin/env bash
# The cpp backend under AddressSanitizer + UndefinedBehaviorSanitizer: builds cnnkern._cpp with
# CNNKERN_DEBUG_BUILD=1 into build/asan (never touching the -O3 extension in cnnkern/), stages a copy of the
# package and the tests there with the sanitized extension, and runs the whole cpp conformance suite (every
# SIMD path: cpp-scalar, cpp-avx2, cpp-avx512), the fused kernels, test_simd.py and the front-door /
# hostile-input tests under it. Any sanitizer report fails the run: UBSan reports are fatal
# (-fno-sanitize-recover=all), ASan halts on its first error, and the reports are also searched for afterwards
# (ASan's in build/asan/reports/, from this process or any child interpreter a test starts, so a test that
# swallowed a crashed child cannot hide one; UBSan's in the output).
#
#   scripts/sanitize.sh [extra pytest arguments]        # PYTHON=... to pick the interpreter (default: python)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python}
out=$root/build/asan
stage=$out/stage
reports=$out/reports
start=$(date +%s)

# Build (incremental: objects in build/asan/tmp are reused while newer than their source; all are rebuilt when
# a header or setup.py changed since they were built, as setup.py's rebuild rule does not track headers and
# build_ext --force does not override it).
"$py" -c "import setuptools, pybind11" 2>/dev/null || "$py" -m pip install -q "setuptools>=68" "pybind11>=2.11"
mkdir -p "$out"
stamp=$(find csrc -name '*.h' | sort | xargs cat setup.py | cksum)
if [ "$(cat "$out/tmp/headers.cksum" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$out/tmp" "$out/lib"
  mkdir -p "$out/tmp"
  echo "$stamp" >"$out/tmp/headers.cksum"
fi
CNNKERN_DEBUG_BUILD=1 CNNKERN_REQUIRE_CPP=1 "$py" setup.py -q build_ext \
  --build-lib "$out/lib" --build-temp "$out/tmp" >"$out/build.log" 2>&1 \
  || { cat "$out/build.log"; echo "sanitize: the sanitized build failed"; exit 1; }
so=$(ls "$out"/lib/cnnkern/_cpp*.so)

# Stage: real copies (not links: tests resolve cnnkern.__file__ for their child interpreters), the normal
# extension removed, the sanitized one in its place. pytest runs from the stage, so its rootdir, sys.path[0]
# and every child process import this copy, never the editable install.
rm -rf "$stage" "$reports"
mkdir -p "$stage" "$reports"
cp -r cnnkern tests pyproject.toml "$stage/"
find "$stage" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$so" "$stage/cnnkern/"

libasan=$(${CXX:-g++} -print-file-name=libasan.so)
libubsan=$(${CXX:-g++} -print-file-name=libubsan.so)
[ -f "$libasan" ] && [ -f "$libubsan" ] || { echo "sanitize: no libasan / libubsan ($libasan)"; exit 1; }

# The interpreter is not instrumented: the ASan runtime must come first (LD_PRELOAD). Python leaks by design
# (detect_leaks=0); allocator_may_return_null=1 keeps NumPy's MemoryError on absurd sizes instead of an ASan
# abort (C++ operator new still aborts under ASan instead of throwing std::bad_alloc).
export LD_PRELOAD="$libasan:$libubsan${LD_PRELOAD:+:$LD_PRELOAD}"
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1"
export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1"
export CNNKERN_REQUIRE_CPP=1 CNNKERN_TEST_REQUIRE=cpp
unset CNNKERN_BACKEND CNNKERN_SIMD

cd "$stage"
"$py" - <<'EOF'
import cnnkern, cnnkern._cpp as c
from cnnkern import backends
assert cnnkern.__file__.startswith(__import__("os").getcwd()), cnnkern.__file__
print("sanitize: extension", c.__file__, "| SIMD paths", backends.get("cpp").supported_simd())
EOF

shopt -s nullglob
files=(tests/test_conformance_*.py tests/test_fused*.py tests/test_simd.py tests/test_frontdoor*.py
       tests/test_hostile*.py)
echo "sanitize: ${files[*]}"
set +e
# -k: every cpp-* / cpp test id, and all of test_simd.py (cpp only, its ids name the SIMD path alone).
# --capture=sys: pytest's default fd capture would swallow a fatal report the dying process writes to fd 2.
"$py" -m pytest -q -p no:cacheprovider --capture=sys -k "cpp or test_simd" "${files[@]}" "$@" 2>&1 \
  | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
set -e
cd "$root"

# ASan's reports, from this process and from every child interpreter, are in $reports (its warnings too, such
# as a refused absurd allocation: those alone are no failure). UBSan's go to stderr (its log_path is not
# honoured beside ASan): the run's output is searched for them, belt and braces, as for ASan's.
pattern="runtime error:|ERROR: (Address|Leak)Sanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer"
found=$(grep -lE "$pattern" "$reports"/* "$out/pytest.log" 2>/dev/null || true)
if [ -n "$found" ]; then
  for f in $found; do echo "=== $f"; grep -E -A30 "$pattern" "$f" | head -200; done
  echo "sanitize: FAILED, sanitizer reports in: $found"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "sanitize: FAILED, pytest exited with $rc"
  exit "$rc"
fi
echo "sanitize: no sanitizer report; done in $(( $(date +%s) - start )) s"
