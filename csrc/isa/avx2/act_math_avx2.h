// The AVX2 activations' vector math, shared by the elementwise kernels (activation_avx2.cpp) and the conv
// epilogues that apply an activation in registers (conv_igemm_avx2.cpp), so both give the same bits.
// Include only from a file compiled with fp-contract=off (its first lines: #pragma GCC optimize
// ("fp-contract=off"), then #define CNNKERN_FP_CONTRACT_OFF): contracted, 1 - e below would become one FMA
// and round differently in each file.
#pragma once
#ifndef CNNKERN_FP_CONTRACT_OFF
#error "act_math_avx2.h needs fp-contract=off (see its first comment)"
#endif
#include <immintrin.h>

namespace cnnkern {
namespace avx2 {
namespace {

// e^a for a <= 0 (NaN lanes are the caller's to restore). a = n·ln2 + r with n = round(a/ln2), |r| <= ln2/2,
// r computed with ln2 split in two (hi + lo) by FMAs; e^r = 1 + r + r²·Q(r) with Q a degree-4 fit of
// (e^r - 1 - r)/r² (relative error 3e-9 on the interval, far below float's 6e-8). a is clamped at -104
// (e^-104 is below half the smallest subnormal, so -inf gives 0), and 2^n, n in [-150, 0], is applied in
// two halves that are each a normal float, so subnormal results round once, at the end.
// e^r - 1 = r + r²·Q(r) for |r| <= ln2/2: exp_nonpositive's reduced step, and ELU's e^x - 1 near 0.
inline __m256 expm1_reduced(__m256 r) {
  __m256 q = _mm256_set1_ps(1.381461043e-03f);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(8.368710056e-03f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.166838899e-02f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.666652113e-01f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.999999404e-01f));
  return _mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r);
}

inline __m256 exp_nonpositive(__m256 a) {
  a = _mm256_max_ps(a, _mm256_set1_ps(-104.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-6.931471825e-01f), a);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(1.904654323e-09f), r);
  const __m256 p = _mm256_add_ps(expm1_reduced(r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

inline __m256 keep_nan(__m256 y, __m256 x) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// With e = e^-|x| (never overflows): x >= 0 ? 1/(1+e) : e/(1+e). About 2 ulp.
inline __m256 sigmoid_ps(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 e = exp_nonpositive(_mm256_or_ps(v, sign));  // -|x|
  const __m256 num = _mm256_blendv_ps(one, e, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
  return keep_nan(_mm256_div_ps(num, _mm256_add_ps(one, e)), v);
}

// tanh|x| = |x| + |x|·z·R(z), z = x², below 0.625 (R a degree-4 fit of (tanh(x)/x - 1)/z, relative error
// 4e-9), else (1 - e)/(1 + e) with e = e^-2|x| (no cancellation there: e < 0.29); the sign of x is then
// copied on. About 2 ulp; tanh(±inf) = ±1, tanh(-0) = -0.
inline __m256 tanh_ps(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), cut = _mm256_set1_ps(0.625f);
  const __m256 ax = _mm256_andnot_ps(sign, v), z = _mm256_mul_ps(ax, ax);
  __m256 q = _mm256_set1_ps(-5.704978481e-03f);
  q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(2.063907869e-02f));
  q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(-5.373971164e-02f));
  q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.333144158e-01f));
  q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(-3.333328068e-01f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(ax, z), q, ax);
  const __m256 e = exp_nonpositive(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
  const __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  const __m256 t = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, cut, _CMP_LT_OQ));
  return keep_nan(_mm256_or_ps(t, _mm256_and_ps(v, sign)), v);
}

}  // namespace
}  // namespace avx2
}  // namespace cnnkern
