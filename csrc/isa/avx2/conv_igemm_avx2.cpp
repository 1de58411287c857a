#pragma GCC target("avx2,fma")
// AVX2+FMA micro-kernel of the indirect (implicit) GEMM convolutions (conv_igemm.h): a 6 x 16 tile
//   t[i][v] (=|+=) sum_{j < kc} a[aoff_j + v] * b_i[boff[j]],   i < 6, v < 16,
// where aoff_j = aoff[j] when a table is given, else j*lda. The 16 columns are a vector operand read from
// a (a packed weight sliver, or dy transposed), the 6 rows are scalars broadcast from six independent base
// pointers b_i (output pixels in x or dy, or taps of x), each at the same offset boff[j]: this is how the
// convolutions read x and dy in place, without an im2col buffer. 12 ymm accumulators + 2 vectors of a + 1
// broadcast; each step is one offset load (two with an a table), 2 vector loads, 6 broadcasts, 12 FMAs.
// Only <immintrin.h> and fixed-width headers are included (ODR safety, see gemm_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {
namespace {

template <bool kTable>
inline void igemm_6x16_impl(int64_t kc, const float* a, const int64_t* aoff, int64_t lda,
                            const float* const* b, const int64_t* boff, float* t, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3], *b4 = b[4], *b5 = b[5];
  for (int64_t j = 0; j < kc; ++j) {
    const float* ap = kTable ? a + aoff[j] : a + j * lda;
    const __m256 a0 = _mm256_loadu_ps(ap), a1 = _mm256_loadu_ps(ap + 8);
    const int64_t o = boff[j];
    __m256 s = _mm256_broadcast_ss(b0 + o);
    c00 = _mm256_fmadd_ps(s, a0, c00);
    c01 = _mm256_fmadd_ps(s, a1, c01);
    s = _mm256_broadcast_ss(b1 + o);
    c10 = _mm256_fmadd_ps(s, a0, c10);
    c11 = _mm256_fmadd_ps(s, a1, c11);
    s = _mm256_broadcast_ss(b2 + o);
    c20 = _mm256_fmadd_ps(s, a0, c20);
    c21 = _mm256_fmadd_ps(s, a1, c21);
    s = _mm256_broadcast_ss(b3 + o);
    c30 = _mm256_fmadd_ps(s, a0, c30);
    c31 = _mm256_fmadd_ps(s, a1, c31);
    s = _mm256_broadcast_ss(b4 + o);
    c40 = _mm256_fmadd_ps(s, a0, c40);
    c41 = _mm256_fmadd_ps(s, a1, c41);
    s = _mm256_broadcast_ss(b5 + o);
    c50 = _mm256_fmadd_ps(s, a0, c50);
    c51 = _mm256_fmadd_ps(s, a1, c51);
  }
  if (accumulate) {
    c00 = _mm256_add_ps(_mm256_loadu_ps(t + 0), c00);
    c01 = _mm256_add_ps(_mm256_loadu_ps(t + 8), c01);
    c10 = _mm256_add_ps(_mm256_loadu_ps(t + 16), c10);
    c11 = _mm256_add_ps(_mm256_loadu_ps(t + 24), c11);
    c20 = _mm256_add_ps(_mm256_loadu_ps(t + 32), c20);
    c21 = _mm256_add_ps(_mm256_loadu_ps(t + 40), c21);
    c30 = _mm256_add_ps(_mm256_loadu_ps(t + 48), c30);
    c31 = _mm256_add_ps(_mm256_loadu_ps(t + 56), c31);
    c40 = _mm256_add_ps(_mm256_loadu_ps(t + 64), c40);
    c41 = _mm256_add_ps(_mm256_loadu_ps(t + 72), c41);
    c50 = _mm256_add_ps(_mm256_loadu_ps(t + 80), c50);
    c51 = _mm256_add_ps(_mm256_loadu_ps(t + 88), c51);
  }
  _mm256_storeu_ps(t + 0, c00);
  _mm256_storeu_ps(t + 8, c01);
  _mm256_storeu_ps(t + 16, c10);
  _mm256_storeu_ps(t + 24, c11);
  _mm256_storeu_ps(t + 32, c20);
  _mm256_storeu_ps(t + 40, c21);
  _mm256_storeu_ps(t + 48, c30);
  _mm256_storeu_ps(t + 56, c31);
  _mm256_storeu_ps(t + 64, c40);
  _mm256_storeu_ps(t + 72, c41);
  _mm256_storeu_ps(t + 80, c50);
  _mm256_storeu_ps(t + 88, c51);
}

}  // namespace

void igemm_6x16(int64_t kc, const float* a, const int64_t* aoff, int64_t lda, const float* const* b,
                const int64_t* boff, float* t, bool accumulate) {
  if (aoff)
    igemm_6x16_impl<true>(kc, a, aoff, lda, b, boff, t, accumulate);
  else
    igemm_6x16_impl<false>(kc, a, aoff, lda, b, boff, t, accumulate);
}

namespace {

// rows[k] <- column k of the 8 x 8 block rows[0..7] (row i, lane k).
inline void transpose8(__m256* rows) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    rows[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    rows[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

}  // namespace

// y[k*ldy + i] = act(st[i*ldst + k] (+ b[k])) for i < m, k < K: the staged pixel-major tile outputs written
// filter plane by plane, 8 x 8 blocks transposed in registers, the tails one value at a time; the same IEEE
// operations as the scalar form (the bias added only when given: s + 0.0f would turn -0.0f into +0.0f).
void igemm_store_planes(const float* st, int64_t ldst, int64_t m, int64_t K, const float* b, int act,
                        float alpha, float* y, int64_t ldy) {
  const __m256 va = _mm256_set1_ps(alpha);
  const int64_t m8 = m / 8 * 8, K8 = K / 8 * 8;
  for (int64_t k0 = 0; k0 < K8; k0 += 8) {
    for (int64_t i0 = 0; i0 < m8; i0 += 8) {
      __m256 rows[8];
      for (int i = 0; i < 8; ++i) rows[i] = _mm256_loadu_ps(st + (i0 + i) * ldst + k0);
      transpose8(rows);
      for (int k = 0; k < 8; ++k) {
        __m256 v = b ? _mm256_add_ps(rows[k], _mm256_set1_ps(b[k0 + k])) : rows[k];
        _mm256_storeu_ps(y + (k0 + k) * ldy + i0, activate(v, act, va));
      }
    }
  }
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = k < K8 ? m8 : 0; i < m; ++i) {
      const __m256 v = _mm256_set1_ps(b ? st[i * ldst + k] + b[k] : st[i * ldst + k]);
      y[k * ldy + i] = _mm256_cvtss_f32(activate(v, act, va));
    }
}

}  // namespace avx2
}  // namespace cnnkern
