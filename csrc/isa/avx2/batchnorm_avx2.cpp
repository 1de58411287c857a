// AVX2 batch-norm kernels (see batchnorm.cpp). The reductions: the sixteen double partial sums of a channel
// in four registers of four lanes, over its blocks one after another, float inputs widened four at a time;
// lane j sums elements j, j+16, j+32, ... of each block exactly as the portable loops do, with the same
// operations, so both paths give the same bits (four independent chains: the additions' latency bounded the
// eight-lane version; kept in registers across blocks: reducing them per block cost as much as a 196-value
// block's sums). The per-element transforms eight floats at a time, in the portable loops' operations.
#pragma GCC target("avx2,fma")
// GCC would otherwise fuse the multiply-adds below into FMAs, which round once instead of twice.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>
#include <stdint.h>

namespace cnnkern {
namespace avx2 {

namespace {

inline __m256d widen(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }

}  // namespace

// lane[j] += Σ_b Σ_k x[b·stride + 16k + j] over the first n16 (a multiple of 16) floats of each of the
// blocks b < blocks.
void bn_sum_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double* lane) {
  __m256d s[4];
  for (int r = 0; r < 4; ++r) s[r] = _mm256_loadu_pd(lane + 4 * r);
  for (int64_t b = 0; b < blocks; ++b, x += stride)
    for (int64_t i = 0; i < n16; i += 16)
      for (int r = 0; r < 4; ++r) s[r] = _mm256_add_pd(s[r], widen(x + i + 4 * r));
  for (int r = 0; r < 4; ++r) _mm256_storeu_pd(lane + 4 * r, s[r]);
}

// lane[j] += Σ_b Σ_k (x[b·stride + 16k + j] - mean)²
void bn_sq_dev_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean, double* lane) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d s[4];
  for (int r = 0; r < 4; ++r) s[r] = _mm256_loadu_pd(lane + 4 * r);
  for (int64_t b = 0; b < blocks; ++b, x += stride)
    for (int64_t i = 0; i < n16; i += 16)
      for (int r = 0; r < 4; ++r) {
        const __m256d d = _mm256_sub_pd(widen(x + i + 4 * r), m);
        s[r] = _mm256_add_pd(s[r], _mm256_mul_pd(d, d));
      }
  for (int r = 0; r < 4; ++r) _mm256_storeu_pd(lane + 4 * r, s[r]);
}

// ls[j] += Σ_b Σ_k dy[16k + j];  ld[j] += Σ_b Σ_k dy[16k + j]·(x[16k + j] - mean)  (block b of dy at
// b·dy_stride, of x at b·x_stride)
void bn_dy_lanes(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride, int64_t blocks,
                 int64_t n16, double mean, double* ls, double* ld) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d s[4], d[4];
  for (int r = 0; r < 4; ++r) s[r] = _mm256_loadu_pd(ls + 4 * r), d[r] = _mm256_loadu_pd(ld + 4 * r);
  for (int64_t b = 0; b < blocks; ++b, dy += dy_stride, x += x_stride)
    for (int64_t i = 0; i < n16; i += 16)
      for (int r = 0; r < 4; ++r) {
        const __m256d g = widen(dy + i + 4 * r), xc = _mm256_sub_pd(widen(x + i + 4 * r), m);
        s[r] = _mm256_add_pd(s[r], g);
        d[r] = _mm256_add_pd(d[r], _mm256_mul_pd(g, xc));
      }
  for (int r = 0; r < 4; ++r) _mm256_storeu_pd(ls + 4 * r, s[r]), _mm256_storeu_pd(ld + 4 * r, d[r]);
}

// y[i] = (x[i] - m)·scale + shift for i < n
void bn_affine(const float* x, int64_t n, float m, float scale, float shift, float* y) {
  const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs), vb));
  for (; i < n; ++i) y[i] = (x[i] - m) * scale + shift;
}

// dx[i] = (dy[i] - mdy - (x[i] - m)·k)·a for i < n (the training backward's second pass)
void bn_dx(const float* dy, const float* x, int64_t n, float mdy, float m, float k, float a, float* dx) {
  const __m256 vmdy = _mm256_set1_ps(mdy), vm = _mm256_set1_ps(m), vk = _mm256_set1_ps(k),
               va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vk);
    const __m256 t = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(dy + i), vmdy), u);
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(t, va));
  }
  for (; i < n; ++i) dx[i] = (dy[i] - mdy - (x[i] - m) * k) * a;
}

}  // namespace avx2
}  // namespace cnnkern
