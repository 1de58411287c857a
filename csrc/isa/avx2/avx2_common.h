// Helpers shared by the AVX2 translation units. Included only by files compiled under
// #pragma GCC target("avx2,fma"); everything here has internal linkage, so no AVX2 code can be merged into
// (and silently replace) a portable definition at link time.
#pragma once
#include <immintrin.h>
#include <stdint.h>

namespace cnnkern {
namespace avx2 {
namespace {

// Lanes [0, n) of a load/store mask, n in [0, 8].
inline __m256i tail_mask(int64_t n) {
  alignas(32) static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - n));
}

}  // namespace
}  // namespace avx2
}  // namespace cnnkern
