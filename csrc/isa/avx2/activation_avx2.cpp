// AVX2 activation kernels (see activation.cpp for the contract): eight floats per step, the tail through
// masked loads and stores. relu, leaky_relu and every backward perform the same IEEE operations as the
// scalar loops, so both paths agree bit for bit; sigmoid and tanh forward use a vector e^x (act_math_avx2.h)
// instead of the C library's (within about 2 ulp of the exact value, like expf/tanhf, but not bit-equal to
// them). Only intrinsics and fixed-width integers here: nothing this file compiles may be shared with (and
// silently replace) the portable code's instantiations.
#pragma GCC target("avx2,fma")
// GCC would otherwise fuse the multiply-adds below into FMAs, which round once instead of twice.
#pragma GCC optimize("fp-contract=off")
#define CNNKERN_FP_CONTRACT_OFF
#include <immintrin.h>
#include <stdint.h>
#include "isa/avx2/act_math_avx2.h"
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

}  // namespace

// sigmoid_ps / tanh_ps (act_math_avx2.h) on every block, tail included.
void sigmoid_forward(const float* x, float* y, int64_t n, float) { map1(x, y, n, sigmoid_ps); }

void tanh_forward(const float* x, float* y, int64_t n, float) { map1(x, y, n, tanh_ps); }

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
