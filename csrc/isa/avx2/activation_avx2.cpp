// AVX2 activation kernels (see activation.cpp for the contract): eight floats per step, the tail through
// masked loads and stores. relu, leaky_relu and every backward perform the same IEEE operations as the
// scalar loops, so both paths agree bit for bit; sigmoid and tanh forward use the vector e^x below instead of
// the C library's (within about 2 ulp of the exact value, like expf/tanhf, but not bit-equal to them).
// Only intrinsics and fixed-width integers here: nothing this file compiles may be shared with (and
// silently replace) the portable code's instantiations.
#pragma GCC target("avx2,fma")
// GCC would otherwise fuse the multiply-adds below into FMAs, which round once instead of twice.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>
#include <stdint.h>
#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {
namespace {

// Applies op to every 8-float block of one input stream, tail included.
template <typename Op>
inline void map1(const float* x, float* y, int64_t n, Op op) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    store_first(y + i, op(_mm256_maskload_ps(x + i, m)), n - i);
  }
}

template <typename Op>
inline void map2(const float* a, const float* b, float* y, int64_t n, Op op) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    store_first(y + i, op(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)), n - i);
  }
}

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

}  // namespace

// With e = e^-|x| (never overflows): x >= 0 ? 1/(1+e) : e/(1+e). About 2 ulp.
void sigmoid_forward(const float* x, float* y, int64_t n, float) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  map1(x, y, n, [&](__m256 v) {
    const __m256 e = exp_nonpositive(_mm256_or_ps(v, sign));  // -|x|
    const __m256 num = _mm256_blendv_ps(one, e, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    return keep_nan(_mm256_div_ps(num, _mm256_add_ps(one, e)), v);
  });
}

// tanh|x| = |x| + |x|·z·R(z), z = x², below 0.625 (R a degree-4 fit of (tanh(x)/x - 1)/z, relative error
// 4e-9), else (1 - e)/(1 + e) with e = e^-2|x| (no cancellation there: e < 0.29); the sign of x is then
// copied on. About 2 ulp; tanh(±inf) = ±1, tanh(-0) = -0.
void tanh_forward(const float* x, float* y, int64_t n, float) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), cut = _mm256_set1_ps(0.625f);
  map1(x, y, n, [&](__m256 v) {
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
  });
}

// x < 0 ? 0 : x. max_ps(a, b) returns b unless a > b, so max_ps(0, x) passes NaN through.
void relu_forward(const float* x, float* y, int64_t n, float) {
  const __m256 zero = _mm256_setzero_ps();
  map1(x, y, n, [&](__m256 v) { return _mm256_max_ps(zero, v); });
}

// x > 0 ? x : alpha*x
void leaky_relu_forward(const float* x, float* y, int64_t n, float alpha) {
  const __m256 zero = _mm256_setzero_ps(), a = _mm256_set1_ps(alpha);
  map1(x, y, n, [&](__m256 v) {
    return _mm256_blendv_ps(_mm256_mul_ps(v, a), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
  });
}

// y <= 0 ? 0 : dy (NLE_UQ is true for NaN, so a NaN y passes dy as PyTorch does)
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  const __m256 zero = _mm256_setzero_ps();
  map2(dy, y, dx, n,
       [&](__m256 g, __m256 v) { return _mm256_and_ps(g, _mm256_cmp_ps(v, zero, _CMP_NLE_UQ)); });
}

// y > 0 ? dy : alpha*dy
void leaky_relu_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha) {
  const __m256 zero = _mm256_setzero_ps(), a = _mm256_set1_ps(alpha);
  map2(dy, y, dx, n, [&](__m256 g, __m256 v) {
    return _mm256_blendv_ps(_mm256_mul_ps(g, a), g, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
  });
}

// dy*(1-y)*y
void sigmoid_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  const __m256 one = _mm256_set1_ps(1.0f);
  map2(dy, y, dx, n,
       [&](__m256 g, __m256 v) { return _mm256_mul_ps(_mm256_mul_ps(g, _mm256_sub_ps(one, v)), v); });
}

// dy*(1-y*y)
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  const __m256 one = _mm256_set1_ps(1.0f);
  map2(dy, y, dx, n,
       [&](__m256 g, __m256 v) { return _mm256_mul_ps(g, _mm256_sub_ps(one, _mm256_mul_ps(v, v))); });
}

// x > 0 ? x : alpha*(e^x - 1). e^x - 1 is expm1_reduced(x) above -ln2/2 (relative accuracy near 0, where
// e^x - 1 would cancel), else exp_nonpositive(x) - 1 (|e^x - 1| > 0.29 there). NaN stays NaN.
void elu_forward(const float* x, float* y, int64_t n, float alpha) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), a = _mm256_set1_ps(alpha);
  const __m256 cut = _mm256_set1_ps(-0.34657359f);
  map1(x, y, n, [&](__m256 v) {
    const __m256 neg = _mm256_min_ps(v, zero);  // NaN lanes become 0; keep_nan restores them
    const __m256 big = _mm256_sub_ps(exp_nonpositive(neg), one);
    const __m256 em1 = _mm256_blendv_ps(expm1_reduced(neg), big, _mm256_cmp_ps(neg, cut, _CMP_LT_OQ));
    return keep_nan(_mm256_blendv_ps(_mm256_mul_ps(a, em1), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)), v);
  });
}

// x > 0 ? dy : dy*alpha*e^x (from the input x; NaN where x is NaN), the scalar loop's operation order
void elu_backward(const float* dy, const float* x, float* dx, int64_t n, float alpha) {
  const __m256 zero = _mm256_setzero_ps(), a = _mm256_set1_ps(alpha);
  map2(dy, x, dx, n, [&](__m256 g, __m256 v) {
    const __m256 e = exp_nonpositive(_mm256_min_ps(v, zero));
    const __m256 d =
        _mm256_blendv_ps(_mm256_mul_ps(_mm256_mul_ps(g, a), e), g, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
    return keep_nan(d, v);
  });
}

}  // namespace avx2
}  // namespace cnnkern
