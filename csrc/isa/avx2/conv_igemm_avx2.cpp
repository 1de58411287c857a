#pragma GCC target("avx2,fma")
// The epilogue's sigmoid and tanh must round as the elementwise kernels do (act_math_avx2.h); the
// micro-kernel's FMAs are explicit, so nothing else here changes.
#pragma GCC optimize("fp-contract=off")
#define CNNKERN_FP_CONTRACT_OFF
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

#include "isa/avx2/act_math_avx2.h"
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

// activate()'s codes (0 none, 1 relu, 2 leaky_relu) and the two that need e^x: 3 sigmoid, 4 tanh.
template <int Act>
inline __m256 epilogue_act(__m256 v, __m256 alpha) {
  if constexpr (Act == 3) return sigmoid_ps(v);
  if constexpr (Act == 4) return tanh_ps(v);
  return activate(v, Act, alpha);
}

// transpose_bias_act for one activation code, so the loops carry no branch on it.
template <int Act>
void transpose_bias_act_t(const float* src, int64_t lds, int64_t rows, int64_t cols, const float* b,
                          float alpha, float* dst, int64_t ldd) {
  const __m256 va = _mm256_set1_ps(alpha);
  for (int64_t c0 = 0; c0 < cols; c0 += 8) {
    const int64_t cn = cols - c0 < 8 ? cols - c0 : 8;
    for (int64_t r0 = 0; r0 < rows; r0 += 8) {
      const int64_t rn = rows - r0 < 8 ? rows - r0 : 8;
      __m256 v[8];
      for (int i = 0; i < 8; ++i)
        v[i] = i < rn ? _mm256_loadu_ps(src + (r0 + i) * lds + c0) : _mm256_setzero_ps();
      transpose8(v);
      for (int c = 0; c < cn; ++c) {
        if (b) v[c] = _mm256_add_ps(v[c], _mm256_set1_ps(b[c0 + c]));
        float* d = dst + (c0 + c) * ldd + r0;
        if (rn == 8) {
          _mm256_storeu_ps(d, epilogue_act<Act>(v[c], va));
        } else {  // a row tail: through memory, as a masked store is slow on AMD
          alignas(32) float t[8];
          _mm256_store_ps(t, epilogue_act<Act>(v[c], va));
          for (int64_t r = 0; r < rn; ++r) d[r] = t[r];
        }
      }
    }
  }
}

}  // namespace

// dst[c*ldd + r] = act(src[r*lds + c] (+ b[c])) for r < rows, c < cols: the forward's write-out (staged
// pixel-major tiles into filter planes), 8 x 8 blocks transposed in registers, the bias and activation on the
// way (plain transposes: pack_transposed_avx2). src's rows are read up to the next multiple of 8 columns
// (the staged tiles are 16 wide). The same IEEE operations as the scalar forms and the elementwise kernels
// (the bias added only when given: s + 0.0f would turn -0.0f into +0.0f).
void transpose_bias_act(const float* src, int64_t lds, int64_t rows, int64_t cols, const float* b, int act,
                        float alpha, float* dst, int64_t ldd) {
  switch (act) {
    case 1:
      return transpose_bias_act_t<1>(src, lds, rows, cols, b, alpha, dst, ldd);
    case 2:
      return transpose_bias_act_t<2>(src, lds, rows, cols, b, alpha, dst, ldd);
    case 3:
      return transpose_bias_act_t<3>(src, lds, rows, cols, b, alpha, dst, ldd);
    case 4:
      return transpose_bias_act_t<4>(src, lds, rows, cols, b, alpha, dst, ldd);
    default:
      return transpose_bias_act_t<0>(src, lds, rows, cols, b, alpha, dst, ldd);
  }
}

}  // namespace avx2
}  // namespace cnnkern
