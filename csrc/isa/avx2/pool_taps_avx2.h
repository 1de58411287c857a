// The tap scan of the AVX2 2x2 / stride 2 max pool, shared by the pool micro-kernels (pool_avx2.cpp) and the
// fused first-layer conv + pool kernel (conv_c1_avx2.cpp), so that both pick the same maximum and index.
// Include only from a file compiled for AVX2 (#pragma GCC target("avx2,fma") before <immintrin.h>); the
// functions are in an unnamed namespace, one copy per including file.
#pragma once

#include <immintrin.h>

namespace cnnkern {
namespace avx2 {
namespace {

// Even and odd elements of the 16 floats a, b (a first), each in order.
inline void split_even_odd(__m256 a, __m256 b, __m256* even, __m256* odd) {
  // shuffle_ps works per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; permute the 64-bit pairs to order them.
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// The four taps of eight windows, in order: the maximum and which tap (0-3) holds it, taking a tap when it is
// greater than the best so far or NaN (ties keep the first maximum, the last NaN wins).
inline void max_of_taps(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256* best_out, __m256i* tap_out) {
  __m256 best = v0;
  __m256i tap = _mm256_setzero_si256();
  const auto take = [&](__m256 v, int t) {
    const __m256 m = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    best = _mm256_blendv_ps(best, v, m);
    tap = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(tap), _mm256_castsi256_ps(_mm256_set1_epi32(t)), m));
  };
  take(v1, 1);
  take(v2, 2);
  take(v3, 3);
  *best_out = best;
  *tap_out = tap;
}

// The same for the 16 floats at p.
inline void split_even_odd(const float* p, __m256* even, __m256* odd) {
  split_even_odd(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), even, odd);
}

}  // namespace
}  // namespace avx2
}  // namespace cnnkern
