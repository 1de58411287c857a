#pragma GCC target("avx2,fma")
// AVX2 int8 GEMM (kernels/quant.h): 4 rows x 16 channels per tile, 8 int32 accumulators (2 ymm per row).
// Each 4-tap step broadcasts a row's 4 codes and multiplies them by 16 channels' 4 taps: vpmaddubsw (u8 x s8
// pairs -> int16, exact for 7-bit codes) then vpmaddwd by ones (pairs of int16 -> int32).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace cnnkern {

void q8_gemm_avx2(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                  int32_t* c, int64_t ldc) {
  constexpr int64_t MR = 4;
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t steps = kp / 4;
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    const int64_t mr = m - i0 < MR ? m - i0 : MR;
    const uint8_t* rows[MR];
    for (int64_t r = 0; r < MR; ++r) rows[r] = a + (i0 + (r < mr ? r : mr - 1)) * lda;  // tail: repeat
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int8_t* wb = w + blk * kp * 16;
      __m256i acc[MR][2];
      for (int64_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
      for (int64_t t = 0; t < steps; ++t) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + t * 64));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + t * 64 + 32));
#pragma GCC unroll 4
        for (int64_t r = 0; r < MR; ++r) {
          int32_t four;
          std::memcpy(&four, rows[r] + 4 * t, 4);
          const __m256i av = _mm256_set1_epi32(four);
          acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones));
          acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones));
        }
      }
      for (int64_t r = 0; r < mr; ++r) {
        int32_t* cr = c + (i0 + r) * ldc + blk * 16;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cr), acc[r][0]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cr + 8), acc[r][1]);
      }
    }
  }
}

}  // namespace cnnkern
