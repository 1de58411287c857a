#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// AVX-512 "NT" GEMM block, gemm_nt_avx2.cpp's contract: C (=|+=) A · B^T with A (m, kc) and B (n, kc) both
// read in place along k (the dense forward's y = x · w^T at small batches). Each output is a dot product over
// k: a 4 x 4 tile keeps 16 zmm accumulators of 16 k-lanes each, fed by 4 rows of A and 4 of B (8 loads per
// 16 FMAs), 21 of the 32 registers. A result's lanes are reduced in one fixed tree once per block of k, so
// it depends on the SIMD path, never on the tiling or the thread count. On Zen 4 (512-bit FMAs issued as two
// halves) it runs within 0.87-1.07x of the AVX2 block's time, ahead on 4096-wide inputs.
// Only <immintrin.h> and fixed-width headers are included (ODR safety, see gemm_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

#include "isa/gemm_nt_walk.h"

namespace cnnkern {
namespace {

// The 16 lanes' sum in one fixed tree: halves, quarters, then pairs (GCC 12's _mm512_reduce_add_ps, and its
// cast to 256 bits, draw a -Wuninitialized false positive from its own header).
inline float reduce16(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

template <int MI, int NJ>
void tile(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc,
          bool accumulate) {
  __m512 acc[MI][NJ];
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m512 bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = _mm512_loadu_ps(b + j * ldb + k);
    for (int i = 0; i < MI; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + k);
      for (int j = 0; j < NJ; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < kc) {  // the k tail: masked loads read zeros past kc
    const __mmask16 mask = static_cast<__mmask16>((1u << (kc - k)) - 1u);
    __m512 bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = _mm512_maskz_loadu_ps(mask, b + j * ldb + k);
    for (int i = 0; i < MI; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(mask, a + i * lda + k);
      for (int j = 0; j < NJ; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j) {
      const float s = reduce16(acc[i][j]);
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + s : s;
    }
}

}  // namespace

// C[i*ldc + j] (=|+=) sum_{k < kc} a[i*lda + k] * b[j*ldb + k] for i < m, j < n.
void sgemm_nt_block_avx512(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t m, int64_t n,
                           int64_t kc, float* c, int64_t ldc, bool accumulate) {
  nt_walk<4, 4>(m, n, [&](auto mi, auto nj, int64_t i, int64_t j) {
    tile<decltype(mi)::value, decltype(nj)::value>(a + i * lda, lda, b + j * ldb, ldb, kc, c + i * ldc + j,
                                                   ldc, accumulate);
  });
}

}  // namespace cnnkern
