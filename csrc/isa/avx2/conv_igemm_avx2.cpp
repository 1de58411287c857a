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

// dst[c*ldd + r] = act(src[r*lds + c] (+ b[c])) for r < rows, c < cols: the forward's write-out (staged
// pixel-major tiles into filter planes), 8 x 8 blocks transposed in registers and the edges one value at a
// time, the bias and activation on the way (plain transposes: pack_transposed_avx2). The same IEEE
// operations as the scalar forms (the bias added only when given: s + 0.0f would turn -0.0f into +0.0f).
void transpose_bias_act(const float* src, int64_t lds, int64_t rows, int64_t cols, const float* b, int act,
                        float alpha, float* dst, int64_t ldd) {
  const __m256 va = _mm256_set1_ps(alpha);
  const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t c0 = 0; c0 < c8; c0 += 8) {
    for (int64_t r0 = 0; r0 < r8; r0 += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) v[i] = _mm256_loadu_ps(src + (r0 + i) * lds + c0);
      transpose8(v);
      for (int c = 0; c < 8; ++c) {
        if (b) v[c] = _mm256_add_ps(v[c], _mm256_set1_ps(b[c0 + c]));
        _mm256_storeu_ps(dst + (c0 + c) * ldd + r0, activate(v[c], act, va));
      }
    }
  }
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = c < c8 ? r8 : 0; r < rows; ++r) {
      const float v = b ? src[r * lds + c] + b[c] : src[r * lds + c];
      dst[c * ldd + r] = _mm256_cvtss_f32(activate(_mm256_set1_ps(v), act, va));
    }
}

}  // namespace avx2
}  // namespace cnnkern
