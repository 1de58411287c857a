#pragma GCC target("avx2,fma")
// AVX2+FMA SGEMM micro-kernel, 6 x 16: a packed A sliver (kc x 6) times a B sliver (kc x 16, rows ldb apart).
// 12 ymm accumulators (6 rows x 2 vectors of 8 columns) + 2 B vectors + 1 broadcast A value = 15 of the 16
// registers; each k step is 2 loads, 6 broadcasts and 12 FMAs. Only <immintrin.h> and fixed-width headers
// are included, so no inline library template is instantiated with AVX enabled (ODR safety); the only
// exported symbol is the plain function below, called after the run-time CPU check.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace cnnkern {
namespace {
constexpr int64_t MR = 6, NR = 16;
}  // namespace

void sgemm_ukernel_avx2_6x16(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                             int64_t m, int64_t n, bool accumulate) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int64_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k, a += MR, b += ldb) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int64_t i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  if (m == MR && n == NR) {  // full tile: straight (or accumulating) vector stores
#pragma GCC unroll 6
    for (int64_t i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      if (accumulate) {
        acc[i][0] = _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]);
        acc[i][1] = _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]);
      }
      _mm256_storeu_ps(ci, acc[i][0]);
      _mm256_storeu_ps(ci + 8, acc[i][1]);
    }
    return;
  }
  // Edge tile: spill to a local tile and store only the m x n part that lies inside C.
  alignas(32) float t[MR * NR];
#pragma GCC unroll 6
  for (int64_t i = 0; i < MR; ++i) {
    _mm256_store_ps(t + i * NR, acc[i][0]);
    _mm256_store_ps(t + i * NR + 8, acc[i][1]);
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
}

}  // namespace cnnkern
