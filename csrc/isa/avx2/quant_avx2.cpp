#pragma GCC target("avx2,fma")
// AVX2 int8 GEMM (kernels/quant.h): 4 rows x 16 channels per tile, 8 int32 accumulators (2 ymm per row).
// Each 4-tap step broadcasts a row's 4 codes and multiplies them by 16 channels' 4 taps: vpmaddubsw (u8 x s8
// pairs -> int16, exact for 7-bit codes) then vpmaddwd by ones (pairs of int16 -> int32).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/quant.h"

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

namespace cnnkern {

// 8 channels per step: 64-bit products of the low dwords (vpmuldq), an arithmetic 64-bit shift built from
// the logical one (x >> s == ~(~x >>> s) for x < 0), the clamp by compare + blend, then packing to bytes.
void q8_requant_avx2(const int32_t* sum, int64_t n, const RequantRow& q, uint8_t* out) {
  const __m256i zero = _mm256_set1_epi64x(q.zero), top = _mm256_set1_epi64x(127),
                nil = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256i acc = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sum + k)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.base + k)));
    const __m256i mult = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.mult + k));
    __m128i packed[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i a =
          _mm256_cvtepi32_epi64(h ? _mm256_extracti128_si256(acc, 1) : _mm256_castsi256_si128(acc));
      const __m256i m =
          _mm256_cvtepu32_epi64(h ? _mm256_extracti128_si256(mult, 1) : _mm256_castsi256_si128(mult));
      const int64_t o = k + 4 * h;
      __m256i v = _mm256_add_epi64(_mm256_mul_epi32(a, m),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.round + o)));
      const __m256i sign = _mm256_cmpgt_epi64(nil, v);
      const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.shift + o));
      v = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(v, sign), s), sign);
      v = _mm256_add_epi64(v, zero);
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.lo + o));
      v = _mm256_blendv_epi8(v, lo, _mm256_cmpgt_epi64(lo, v));
      v = _mm256_blendv_epi8(v, top, _mm256_cmpgt_epi64(v, top));
      // the low dword of each lane (values in [0, 127]) into the low 128 bits
      const __m256i d = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
      packed[h] = _mm256_castsi256_si128(d);
    }
    const __m128i w16 = _mm_packs_epi32(packed[0], packed[1]);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + k), _mm_packus_epi16(w16, w16));
  }
  for (; k < n; ++k) out[k] = requant_one(sum[k], q, k);
}

}  // namespace cnnkern
