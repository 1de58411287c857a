// AVX2 batch-norm reductions (see batchnorm.cpp): the eight double partial sums of a block, lanes 0-3 and
// 4-7 in two registers, float inputs widened four at a time. Lane j sums elements j, j+8, j+16, ... exactly
// as the portable loops do, with the same operations, so both paths give the same bits.
#pragma GCC target("avx2,fma")
// GCC would otherwise fuse the multiply-adds below into FMAs, which round once instead of twice.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>
#include <stdint.h>

namespace cnnkern {
namespace avx2 {

// lane[j] += Σ_k x[8k + j] over the n8 (a multiple of 8) floats at x.
void bn_sum_lanes(const float* x, int64_t n8, double* lane) {
  __m256d lo = _mm256_loadu_pd(lane), hi = _mm256_loadu_pd(lane + 4);
  for (int64_t i = 0; i < n8; i += 8) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  _mm256_storeu_pd(lane, lo);
  _mm256_storeu_pd(lane + 4, hi);
}

// lane[j] += Σ_k (x[8k + j] - mean)²
void bn_sq_dev_lanes(const float* x, int64_t n8, double mean, double* lane) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d lo = _mm256_loadu_pd(lane), hi = _mm256_loadu_pd(lane + 4);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m);
    const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), m);
    lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
    hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
  }
  _mm256_storeu_pd(lane, lo);
  _mm256_storeu_pd(lane + 4, hi);
}

// ls[j] += Σ_k dy[8k + j];  ld[j] += Σ_k dy[8k + j]·(x[8k + j] - mean)
void bn_dy_lanes(const float* dy, const float* x, int64_t n8, double mean, double* ls, double* ld) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d slo = _mm256_loadu_pd(ls), shi = _mm256_loadu_pd(ls + 4);
  __m256d dlo = _mm256_loadu_pd(ld), dhi = _mm256_loadu_pd(ld + 4);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256d g0 = _mm256_cvtps_pd(_mm_loadu_ps(dy + i)), g1 = _mm256_cvtps_pd(_mm_loadu_ps(dy + i + 4));
    const __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m);
    const __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), m);
    slo = _mm256_add_pd(slo, g0);
    shi = _mm256_add_pd(shi, g1);
    dlo = _mm256_add_pd(dlo, _mm256_mul_pd(g0, x0));
    dhi = _mm256_add_pd(dhi, _mm256_mul_pd(g1, x1));
  }
  _mm256_storeu_pd(ls, slo);
  _mm256_storeu_pd(ls + 4, shi);
  _mm256_storeu_pd(ld, dlo);
  _mm256_storeu_pd(ld + 4, dhi);
}

}  // namespace avx2
}  // namespace cnnkern
