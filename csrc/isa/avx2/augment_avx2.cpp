// AVX2 colour pass of augment.cpp: the plane sum in four double lanes, and the contrast / brightness / clip
// in eight float lanes with the scalar loop's operations in its order; the tail through masked loads.
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=off")  // the scalar loop rounds each multiply and add separately
#include <immintrin.h>
#include <stdint.h>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {

double plane_sum(const float* x, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) s += x[i];
  return s;
}

void color_plane(const float* x, float* y, int64_t n, float mean, float contrast, float brightness, float lo,
                 float hi) {
  const __m256 m = _mm256_set1_ps(mean), c = _mm256_set1_ps(contrast), b = _mm256_set1_ps(brightness);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  // max(lo, v) / min(hi, v) return v when v is NaN (the second operand), as the scalar comparisons do
  auto step = [&](__m256 v) {
    v = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, m), c), m), b);
    return _mm256_min_ps(vhi, _mm256_max_ps(vlo, v));
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, step(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i mask = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, mask, step(_mm256_maskload_ps(x + i, mask)));
  }
}

}  // namespace avx2
}  // namespace cnnkern
