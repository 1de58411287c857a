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
namespace {

// Transposes the 8x8 block r[0..7] in place: afterwards r[k] holds element k of each input row.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

}  // namespace

// dst[k*ld + i] = src[i*rs + k] for k < kc and i < width, where rows i >= rows read as zero (the packing's
// zero padding). width is the packed run (mr or nr); rows <= width.
void pack_transposed_avx2(const float* src, int64_t rs, int64_t rows, int64_t kc, int64_t width, float* dst,
                          int64_t ld) {
  for (int64_t i0 = 0; i0 < width; i0 += 8) {
    const int64_t g = width - i0 < 8 ? width - i0 : 8;   // lanes stored: the run's width left
    const int64_t live = rows - i0 < g ? rows - i0 : g;  // of them read from the source (< 0: none)
    const __m256i store = avx2::tail_mask(g);
    int64_t k = 0;
    if (live > 0) {
      const float* s = src + i0 * rs;
      for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int64_t i = 0; i < 8; ++i)
          r[i] = i < live ? _mm256_loadu_ps(s + i * rs + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int64_t j = 0; j < 8; ++j) _mm256_maskstore_ps(dst + (k + j) * ld + i0, store, r[j]);
      }
    }
    for (; k < kc; ++k)  // the k tail, and whole padding groups
      for (int64_t i = 0; i < g; ++i) dst[k * ld + i0 + i] = i < live ? src[(i0 + i) * rs + k] : 0.0f;
  }
}

}  // namespace cnnkern
