// Helpers shared by the AVX2 translation units. Included only by files compiled under
// #pragma GCC target("avx2,fma"); everything here has internal linkage, so no AVX2 code can be merged into
// (and silently replace) a portable definition at link time.
#pragma once
#include <immintrin.h>
#include <stdint.h>

namespace cnnkern {
namespace avx2 {
namespace {

// Lanes [0, n) of a load/store mask, n >= 0 (8 and more: every lane, for a loop whose first masked step
// may be a whole vector).
inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Stores lanes [0, n) of v at p, n in [0, 8], by plain 128/64/32-bit stores: a masked store (vmaskmovps) is
// microcoded on AMD Zen, and in a transposing pack it cost 3.5x the rest of the pack (gemm_pack_avx2.cpp).
inline void store_first(float* p, __m256 v, int64_t n) {
  if (n >= 8) return _mm256_storeu_ps(p, v);
  __m128 h = _mm256_castps256_ps128(v);
  if (n >= 4) _mm_storeu_ps(p, h), p += 4, n -= 4, h = _mm256_extractf128_ps(v, 1);
  if (n >= 2) _mm_storel_pi(reinterpret_cast<__m64*>(p), h), p += 2, n -= 2, h = _mm_movehl_ps(h, h);
  if (n >= 1) _mm_store_ss(p, h);
}

// The sum of the 8 lanes in one fixed order: (l0+l4) + (l2+l6), then + ((l1+l5) + (l3+l7)).
inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

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

// act: 0 none, 1 relu (x < 0 ? 0 : x, NaN kept), 2 leaky_relu (x > 0 ? x : alpha*x): the scalar forms'
// operations, so the vector and scalar paths give the same bits.
inline __m256 activate(__m256 v, int act, __m256 alpha) {
  if (act == 1)
    return _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  if (act == 2)
    return _mm256_blendv_ps(_mm256_mul_ps(v, alpha), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
  return v;
}

}  // namespace
}  // namespace avx2
}  // namespace cnnkern
