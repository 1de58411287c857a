#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// AVX-512 VNNI int8 GEMM (kernels/quant.h): 8 rows x 16 channels per tile, one zmm accumulator per row;
// each 4-tap step is one weight load, then per row one broadcast of its 4 codes and one vpdpbusd (4 u8 x s8
// products summed into each int32 lane, no intermediate saturation). Called only where the CPU has
// AVX512_VNNI (quant.cpp checks).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace cnnkern {

void q8_gemm_vnni(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                  int32_t* c, int64_t ldc) {
  constexpr int64_t MR = 8;
  const int64_t steps = kp / 4;
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    const int64_t mr = m - i0 < MR ? m - i0 : MR;
    const uint8_t* rows[MR];
    for (int64_t r = 0; r < MR; ++r) rows[r] = a + (i0 + (r < mr ? r : mr - 1)) * lda;  // tail: repeat
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int8_t* wb = w + blk * kp * 16;
      __m512i acc[MR];
      for (int64_t r = 0; r < MR; ++r) acc[r] = _mm512_setzero_si512();
      for (int64_t t = 0; t < steps; ++t) {
        const __m512i wv = _mm512_loadu_si512(wb + t * 64);
#pragma GCC unroll 8
        for (int64_t r = 0; r < MR; ++r) {
          int32_t four;
          std::memcpy(&four, rows[r] + 4 * t, 4);
          acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(four), wv);
        }
      }
      for (int64_t r = 0; r < mr; ++r) _mm512_storeu_si512(c + (i0 + r) * ldc + blk * 16, acc[r]);
    }
  }
}

}  // namespace cnnkern
