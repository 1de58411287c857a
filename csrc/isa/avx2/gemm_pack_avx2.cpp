#pragma GCC target("avx2,fma")
// AVX2 transposing pack for the SGEMM (gemm.cpp): the packed layouts want, for each k, a run of mr (A) or nr
// (B) values that lie in mr / nr different rows of the source, one float apart along k. The portable loop
// gathers them one float at a time (dense forward's w^T: 1.4 ns a float, 2.2 ms of a 1568x1024 layer's
// 6 ms at batch 128); here 8 source rows x 8 k are loaded as 8 vectors and transposed in registers. Pure
// copies: the packed values are the same bits as the portable pack's.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
// dst[k*ld + i] = src[i*rs + k] for k < kc and i < width, where rows i >= rows read as zero (the packing's
// zero padding). width is the packed run (mr or nr); rows <= width.
void pack_transposed_avx2(const float* src, int64_t rs, int64_t rows, int64_t kc, int64_t width, float* dst,
                          int64_t ld) {
  for (int64_t i0 = 0; i0 < width; i0 += 8) {
    const int64_t g = width - i0 < 8 ? width - i0 : 8;   // lanes stored: the run's width left
    const int64_t live = rows - i0 < g ? rows - i0 : g;  // of them read from the source (< 0: none)
    int64_t k = 0;
    if (live > 0) {
      const float* s = src + i0 * rs;
      for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int64_t i = 0; i < 8; ++i)
          r[i] = i < live ? _mm256_loadu_ps(s + i * rs + k) : _mm256_setzero_ps();
        avx2::transpose8(r);
        for (int64_t j = 0; j < 8; ++j) avx2::store_first(dst + (k + j) * ld + i0, r[j], g);
      }
    }
    for (; k < kc; ++k)  // the k tail, and whole padding groups
      for (int64_t i = 0; i < g; ++i) dst[k * ld + i0 + i] = i < live ? src[(i0 + i) * rs + k] : 0.0f;
  }
}

}  // namespace cnnkern
