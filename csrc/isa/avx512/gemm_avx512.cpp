#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// AVX-512 SGEMM micro-kernel, 14 x 32: a packed A sliver (kc x 14) times a B sliver (kc x 32, rows ldb
// apart). 28 zmm accumulators (14 rows x 2 vectors of 16 columns) + 2 B vectors + 1 broadcast A value = 31 of
// the 32 registers; each k step is 2 loads, 14 broadcasts and 28 FMAs. Edge tiles store through column masks.
// Only <immintrin.h> and fixed-width headers are included (ODR safety, see gemm_avx2.cpp).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace cnnkern {
namespace {
constexpr int64_t MR = 14, NR = 32;
}  // namespace

void sgemm_ukernel_avx512_14x32(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                                int64_t ldc, int64_t m, int64_t n, bool accumulate) {
  __m512 acc[MR][2];
#pragma GCC unroll 14
  for (int64_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += ldb) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
    for (int64_t i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  // Column masks for the two 16-wide halves: all ones for a full tile, the first n columns otherwise.
  const __mmask16 k0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
  const __mmask16 k1 = n >= 32   ? __mmask16(0xFFFF)
                       : n <= 16 ? __mmask16(0)
                                 : __mmask16((1u << (n - 16)) - 1u);
#pragma GCC unroll 14
  for (int64_t i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, ci), acc[i][0]);
      acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, ci + 16), acc[i][1]);
    }
    _mm512_mask_storeu_ps(ci, k0, acc[i][0]);
    _mm512_mask_storeu_ps(ci + 16, k1, acc[i][1]);
  }
}

}  // namespace cnnkern
