#pragma GCC target("avx2,fma")
// AVX2 requantization (kernels/quant.h; the GEMM is quant_avx2_gemm.cpp).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/quant.h"

namespace cnnkern {

// 8 channels per step: 64-bit products of the low dwords (vpmuldq), an arithmetic 64-bit shift built from
// the logical one (x >> s == ~(~x >>> s) for x < 0), the clamp by compare + blend, then packing to bytes.
void q8_requant_avx2(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                     uint8_t* out) {
  const __m256i zero = _mm256_set1_epi64x(q.zero), top = _mm256_set1_epi64x(127),
                nil = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256i top_sum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sum + k));
    for (int64_t i = 1; i < count; ++i)
      top_sum =
          _mm256_max_epi32(top_sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sum + i * ld + k)));
    const __m256i acc =
        _mm256_add_epi32(top_sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.base + k)));
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
  for (; k < n; ++k) out[k] = requant_max(sum, ld, count, q, k);
}

}  // namespace cnnkern
