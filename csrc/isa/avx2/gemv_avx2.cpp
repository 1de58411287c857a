#pragma GCC target("avx2,fma")
// AVX2+FMA matrix-vector product for dense layers at batch 1: y[o] = sum_k w[o*ld + k] * x[k] for rows
// [o0, o1). Four rows at a time share each load of x; every row's sum is formed by the same sequence of
// operations whether it is one of four or a single leftover row (two 8-lane accumulators over k in steps of
// 16, one more 8-wide step, the lanes added in a fixed tree, then the scalar tail in k order), so a row's
// value never depends on how the caller cut [0, out) between threads.
#include <immintrin.h>

#include <cstdint>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace {

using avx2::hsum;

template <int R>
inline void rows(const float* w, int64_t ld, const float* x, int64_t in, float* y) {
  __m256 a[R], b[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) a[r] = b[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= in; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ld + k), x0, a[r]);
      b[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ld + k + 8), x1, b[r]);
    }
  }
  if (k + 8 <= in) {
    const __m256 x0 = _mm256_loadu_ps(x + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ld + k), x0, a[r]);
    k += 8;
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(a[r], b[r]));
    for (int64_t j = k; j < in; ++j) s += w[r * ld + j] * x[j];
    y[r] = s;
  }
}

}  // namespace

void sgemv_rows_avx2(const float* w, int64_t ld, const float* x, int64_t in, int64_t o0, int64_t o1,
                     float* y) {
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) rows<4>(w + o * ld, ld, x, in, y + o);
  for (; o < o1; ++o) rows<1>(w + o * ld, ld, x, in, y + o);
}

}  // namespace cnnkern
