#!/usr/bin/env bash
# The code habits CI enforces (see CONTRIBUTING.md): Python lint and format (ruff), C++/CUDA format
# (clang-format, Debian's clang-format 14: other versions format differently), and types (mypy, the config in
# pyproject.toml). Exits non-zero on the first kind of problem found, after printing every instance of it.
# `scripts/lint.sh --fix` rewrites the files instead of checking them.
set -euo pipefail
cd "$(dirname "$0")/.."
cxx_files=$(git ls-files 'csrc/*.cpp' 'csrc/*.h' 'cnnkern/backends/cuda/*.cu' 'cnnkern/backends/cuda/*.cuh' \
  'tests/*.h' 'tests/*.cpp')
if [ "${1:-}" = "--fix" ]; then
  ruff check --fix .
  ruff format .
  clang-format -i $cxx_files
  exit 0
fi
echo "lint: ruff check";          ruff check .
echo "lint: ruff format --check"; ruff format --check .
echo "lint: clang-format";        clang-format --dry-run -Werror $cxx_files
echo "lint: mypy";                mypy
echo "lint: clean"
