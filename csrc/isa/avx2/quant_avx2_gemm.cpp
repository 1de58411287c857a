#pragma GCC target("avx2,fma")
// AVX2 int8 implicit GEMM (kernels/quant.h): register tiles of 6 rows x 16 channels or 3 rows x 32
// channels, 12 ymm accumulators. Each 4-step of the reduction broadcasts a row's 4 codes and multiplies
// them by the channels' 4 taps: vpmaddubsw (u8 x s8 pairs -> int16, exact for 7-bit codes), vpmaddwd by
// ones (pairs of int16 -> int32), vpaddd; the weights are vpmaddubsw's memory operand.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/quant.h"

namespace cnnkern {

namespace {

template <int MR, int NB>
void tile(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, const int8_t* w, int32_t* c, int64_t ldc) {
  const int64_t wblock = g.ntaps * g.csteps * 64, cs = g.csteps;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][2 * NB];
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < 2 * NB; ++b) acc[r][b] = _mm256_setzero_si256();
  for (int64_t t = 0; t < g.ntaps; ++t) {
    const uint8_t* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = rows[r < m ? r : m - 1] + g.toff[t];  // tail rows repeat the last
    const int8_t* wt = w + t * cs * 64;
    for (int64_t s = 0; s < cs; ++s) {
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        int32_t four;
        std::memcpy(&four, a[r] + 4 * s, 4);
        const __m256i av = _mm256_set1_epi32(four);
        for (int b = 0; b < 2 * NB; ++b) {
          const __m256i wv = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(wt + (b / 2) * wblock + s * 64 + (b % 2) * 32));
          acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(_mm256_maddubs_epi16(av, wv), ones));
        }
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    if (r < m)
      for (int b = 0; b < 2 * NB; ++b)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + b * 8), acc[r][b]);
}

template <int MR, int NB>
void rows_of(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int64_t b0, int32_t* c, int64_t ldc) {
  const int8_t* w = g.w + b0 * g.ntaps * g.csteps * 64;
  for (int64_t i0 = 0; i0 < m; i0 += MR)
    tile<MR, NB>(rows + i0, m - i0 < MR ? m - i0 : MR, g, w, c + i0 * ldc + b0 * 16, ldc);
}

}  // namespace

void q8_igemm_avx2(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc) {
  int64_t b0 = 0;
  for (; b0 + 2 <= g.nblocks; b0 += 2) rows_of<3, 2>(rows, m, g, b0, c, ldc);
  if (b0 < g.nblocks) rows_of<6, 1>(rows, m, g, b0, c, ldc);
}

}  // namespace cnnkern
