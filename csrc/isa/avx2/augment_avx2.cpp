// AVX2 loops of augment.cpp, each with the scalar loop's operations in its order (bitwise the same results,
// but for the plane sum's order): the bilinear affine plane eight output columns at a time (the four taps
// as masked gathers, fill where a tap lies outside), the plane sum in four double lanes, and the contrast /
// brightness / clip in eight float lanes; tails through masked loads and stores.
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=off")  // the scalar loop rounds each multiply and add separately
#include <immintrin.h>
#include <stdint.h>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {

// One (H, W) plane with H * W < 2**31 (32-bit gather indices); t = theta's six values for its image.
void affine_plane(const float* src, float* dst, int64_t H, int64_t W, const float* t, float fill) {
  const __m256 t0 = _mm256_set1_ps(t[0]), t1 = _mm256_set1_ps(t[1]), t2 = _mm256_set1_ps(t[2]);
  const __m256 t3 = _mm256_set1_ps(t[3]), t4 = _mm256_set1_ps(t[4]), t5 = _mm256_set1_ps(t[5]);
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), vfill = _mm256_set1_ps(fill);
  const __m256 hmax = _mm256_set1_ps(static_cast<float>(H - 1)),
               wmax = _mm256_set1_ps(static_cast<float>(W - 1));
  const __m256i width = _mm256_set1_epi32(static_cast<int32_t>(W));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // the value of tap (ty, tx) in each lane: a gather where it is inside (ordered compares: NaN is outside)
  auto tap = [&](__m256 ty, __m256 tx) {
    const __m256 in = _mm256_and_ps(
        _mm256_and_ps(_mm256_cmp_ps(ty, zero, _CMP_GE_OQ), _mm256_cmp_ps(ty, hmax, _CMP_LE_OQ)),
        _mm256_and_ps(_mm256_cmp_ps(tx, zero, _CMP_GE_OQ), _mm256_cmp_ps(tx, wmax, _CMP_LE_OQ)));
    const __m256 sy = _mm256_and_ps(ty, in),
                 sx = _mm256_and_ps(tx, in);  // outside lanes: index 0, not loaded
    const __m256i idx =
        _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(sy), width), _mm256_cvttps_epi32(sx));
    return _mm256_mask_i32gather_ps(vfill, src, idx, in, 4);
  };
  for (int64_t i = 0; i < H; ++i) {
    const __m256 fi = _mm256_set1_ps(static_cast<float>(i));
    for (int64_t j = 0; j < W; j += 8) {
      const __m256 fj =
          _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(j)), lane));
      const __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(t0, fj), _mm256_mul_ps(t1, fi)), t2);
      const __m256 sy = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(t3, fj), _mm256_mul_ps(t4, fi)), t5);
      const __m256 x0 = _mm256_floor_ps(sx), y0 = _mm256_floor_ps(sy);
      const __m256 fx = _mm256_sub_ps(sx, x0), fy = _mm256_sub_ps(sy, y0);
      const __m256 wx0 = _mm256_sub_ps(one, fx), wy0 = _mm256_sub_ps(one, fy);
      const __m256 x1 = _mm256_add_ps(x0, one), y1 = _mm256_add_ps(y0, one);
      __m256 acc = zero;
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(wy0, wx0), tap(y0, x0)));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(wy0, fx), tap(y0, x1)));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(fy, wx0), tap(y1, x0)));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(fy, fx), tap(y1, x1)));
      if (j + 8 <= W)
        _mm256_storeu_ps(dst + i * W + j, acc);
      else
        store_first(dst + i * W + j, acc, W - j);
    }
  }
}

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
    store_first(y + i, step(_mm256_maskload_ps(x + i, mask)), n - i);
  }
}

}  // namespace avx2
}  // namespace cnnkern
