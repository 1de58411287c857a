// Output arrays backed by a cache of recycled memory blocks.
//
// A kernel's output of a few MB (conv1's activations at batch 128 are 11 MB) allocated fresh each call is
// mmap'ed by the C library and page-faulted in on first write, 4 KiB at a time, and unmapped again when
// NumPy frees it: in a training loop that repeats the same shapes every step this cost as much as the
// elementwise kernels themselves (benchmarks/NOTES.md). new_array hands out blocks of at least
// kCacheMinBytes from a cache keyed by exact size; the NumPy array owns its block through a capsule whose
// destructor returns it to the cache (under the GIL, like every allocation here). The cache holds at most
// kCacheMaxBytes of idle blocks; a block returned beyond that is freed. Smaller arrays take NumPy's own
// allocator. Contents of a new array are uninitialised, as with numpy.empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/bindings.h"
#include "runtime/checked.h"

namespace cnnkern {

constexpr size_t kCacheMinBytes = size_t(1) << 18;  // 256 KiB: below this malloc reuses its heap anyway
constexpr size_t kCacheMaxBytes = size_t(1) << 28;  // 256 MiB of idle blocks at most

// A 64-byte aligned block of `bytes` from the cache (or freshly allocated), and its return.
void* cache_take(size_t bytes);
void cache_give(void* p);
// Idle bytes held by the cache; frees them all when `release` is true. Bound as _cpp.output_cache.
size_t cache_idle_bytes(bool release);

template <typename T>
carray<T> new_array(const std::vector<py::ssize_t>& shape) {
  // Sizes overflow-checked: a shape whose byte count wraps int64 (maxpool2d_backward with
  // x_shape=(2, 3, 2**31, 2**31)) was signed overflow in pybind11's strides (found by the UBSan build) and
  // a wrapped, small allocation here.
  int64_t n = 1;
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("negative dimension in an output shape");
    n = checked_mul(n, d, "the output array's size");
  }
  const size_t bytes = static_cast<size_t>(checked_mul(n, int64_t(sizeof(T)), "the output array's bytes"));
  if (bytes < kCacheMinBytes) return carray<T>(shape);
  void* p = cache_take(bytes);
  py::capsule owner(p, [](void* q) { cache_give(q); });
  return carray<T>(shape, static_cast<T*>(p), owner);
}

}  // namespace cnnkern
