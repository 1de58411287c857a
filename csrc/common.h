// Shared declarations of the cnnkern C++ backend: SIMD level, the thread pool, array helpers.
// Every index is int64_t; kernels assume the front door (cnnkern.ops) validated shapes and contiguity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace cnnkern {

// The SIMD path in use, chosen once at import from the CPU's features, or forced with
// CNNKERN_SIMD=scalar|avx2|avx512 (forcing a path the CPU lacks is an error at import).
enum class Simd : int { scalar = 0, avx2 = 1, avx512 = 2 };
Simd simd_level();
void set_simd_level(Simd level);  // throws std::runtime_error if the CPU cannot run it
const char* simd_name(Simd level);
bool cpu_has(Simd level);

// A small persistent thread pool (CNNKERN_NUM_THREADS, default: the CPUs this process may use).
// parallel_for splits [0, n) into contiguous chunks, one per worker, and runs fn(begin, end) on each;
// the calling thread takes a chunk itself. Nested calls run serially in the caller.
int num_threads();
void set_num_threads(int n);
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
// Same, with chunks of `grain` items handed out dynamically (for uneven work).
void parallel_for_dynamic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cnnkern
