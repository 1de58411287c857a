// Shared declarations of the cnnkern C++ backend: SIMD level, the thread pool, array helpers.
// Every index is int64_t; kernels assume the front door (cnnkern.ops) validated shapes and contiguity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace cnnkern {

// The SIMD path in use, chosen once at import from the CPU's features, or forced with
// CNNKERN_SIMD=scalar|avx2|avx512 (forcing a path the CPU lacks is an error at import).
enum class Simd : int { scalar = 0, avx2 = 1, avx512 = 2 };
Simd simd_level();
void set_simd_level(Simd level);  // throws std::runtime_error if the CPU cannot run it
const char* simd_name(Simd level);
bool cpu_has(Simd level);

// The thread pool (threads.cpp; docs/threads.md). Its size is CNNKERN_NUM_THREADS, parsed at import by
// init_threads_from_env (std::invalid_argument for a bad value), else the CPUs this process may use; the pool
// starts at its first use. Sizes run from 1 to max_threads() = 4 x those CPUs.
// parallel_for splits [0, n) into contiguous chunks (up to 8 per thread) that the calling thread and the
// workers claim in order, and runs fn(begin, end) on each; nested calls run serially in the caller. Which
// thread runs a chunk, and how [0, n) is cut, depend on the thread count and on timing: fn must write
// results that do not depend on either (no sums across chunks; see reduction_chunks for those).
int usable_cpus();
int max_threads();
// "" if 1 <= n <= max_threads(), else the error message, naming `what` and the value (`shown` if not empty).
std::string check_thread_count(int64_t n, const char* what, const std::string& shown = "");
void init_threads_from_env();
int env_threads();  // CNNKERN_NUM_THREADS as parsed at import, 0 if unset
int num_threads();
bool threads_pinned();        // workers pinned one per CPU (threads.cpp; CNNKERN_PIN_THREADS=0: never)
void set_num_threads(int n);  // std::invalid_argument outside [1, max_threads()]; std::runtime_error if a
                              // worker cannot start (the pool then keeps its previous size)
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
// Same, with chunks of `grain` items.
void parallel_for_dynamic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
// fn(c) once for every c in [0, nchunks), the chunks claimed by the caller and the workers.
void parallel_chunks(int64_t nchunks, const std::function<void(int64_t)>& fn);
// Elementwise loops (activations, optimizer updates): fn(begin, end) over [0, n), on the calling thread alone
// below kElementwiseSerialBelow elements, where waking the pool costs more than the work.
constexpr int64_t kElementwiseSerialBelow = 1 << 15;
template <typename Fn>
void run_elementwise(int64_t n, const Fn& fn) {
  if (n < kElementwiseSerialBelow)
    fn(0, n);
  else
    parallel_for(n, fn);
}

// Deterministic reductions (docs/threads.md): a sum over `items` (images, rows) is cut into
// reduction_chunks(items, len_per_item, partial_floats) contiguous runs of items, item range
// [items*c/chunks, items*(c+1)/chunks) for chunk c; each chunk's partial sum is computed in item order and
// the partials are added in chunk order. The count depends on the problem alone (never on the thread count),
// so neither does any bit of the result: about one chunk per kMinChunkLen terms of the reduction (items x
// len_per_item), at most kMaxChunks, at most kChunkBudgetFloats floats of partials (partial_floats each),
// rounded down to a multiple of 4 above 4.
constexpr int64_t kMinChunkLen = 256, kMaxChunks = 16, kChunkBudgetFloats = int64_t{8} << 20;
int64_t reduction_chunks(int64_t items, int64_t len_per_item, int64_t partial_floats);

}  // namespace cnnkern
