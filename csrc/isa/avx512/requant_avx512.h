// The AVX-512 requantization of 16 channels (kernels/quant.h's RequantRow and Requant16; lanes past the
// channels computed on defined values, never stored): their even and odd dwords as two sets of 8 int64
// lanes, vpmuldq for the exact products, vpsravq for the arithmetic shift, then one blend to dwords and
// vpmovdb to bytes; the clamp in int64 (wide) or on the int32 accumulators first (narrow). Written once for
// q8_requant_avx512 (a separate pass over stored sums) and the VNNI GEMM's fused epilogue (sums still in
// registers); include it after an AVX-512 `#pragma GCC target` (F, BW, VL).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/quant.h"

namespace cnnkern::avx512q {

inline __m512i load(const void* p) { return _mm512_load_si512(p); }

// The arithmetic as written (quant.h's requant_one), in int64 lanes.
inline __m128i requant16_wide(__m512i acc, const RequantRow& q, const Requant16& b) {
  const __m512i hi = _mm512_set1_epi64(127 - q.zero), zero = _mm512_set1_epi32(static_cast<int32_t>(q.zero));
  const __m512i mult = load(b.mult);
  __m512i even = _mm512_mul_epi32(acc, mult);  // the low (even) dwords of each qword, exact products
  __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(mult, 32));
  even = _mm512_srav_epi64(_mm512_add_epi64(even, load(b.round)), load(b.shift));
  odd = _mm512_srav_epi64(_mm512_add_epi64(odd, load(b.round + 8)), load(b.shift + 8));
  even = _mm512_min_epi64(_mm512_max_epi64(even, load(b.lo)), hi);
  odd = _mm512_min_epi64(_mm512_max_epi64(odd, load(b.lo + 8)), hi);
  // the clamped values fit a dword: even ones stay in the low dwords, odd ones move to the high ones
  const __m512i y = _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32)), zero);
  return _mm512_cvtepi32_epi8(y);
}

// Requant16's narrow form: acc clamped in int32, t = (acc * mult) >> (shift - 1) (fits a dword), then
// zero + ((t + 1) >> 1) as (t + 1 + 2 zero) >> 1 in dwords.
inline __m128i requant16_narrow(__m512i acc, const RequantRow& q, const Requant16& b) {
  acc = _mm512_min_epi32(_mm512_max_epi32(acc, load(b.acc_lo)), load(b.acc_hi));
  const __m512i even = _mm512_srav_epi64(_mm512_mul_epi32(acc, load(b.mult)), load(b.shift1));
  const __m512i odd =
      _mm512_srav_epi64(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), load(b.mult_odd)), load(b.shift1 + 8));
  const __m512i t = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  const __m512i y =
      _mm512_srai_epi32(_mm512_add_epi32(t, _mm512_set1_epi32(static_cast<int32_t>(1 + 2 * q.zero))), 1);
  return _mm512_cvtepi32_epi8(y);
}

// channels [k, k + 16) of q (k a multiple of 16), their accumulators acc = sums + base (the 32-bit add
// wraps to the exact value)
inline __m128i requant16(__m512i acc, const RequantRow& q, int64_t k) {
  const Requant16& b = q.blocks[k / 16];
  return q.narrow ? requant16_narrow(acc, q, b) : requant16_wide(acc, q, b);
}

inline __mmask16 lanes(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

}  // namespace cnnkern::avx512q
