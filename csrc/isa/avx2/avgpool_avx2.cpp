// AVX2 window sums of the average pool (pool.cpp), four windows per step, one per double lane: each lane adds
// its window's floats (converted to double) in the scalar path's order, rows then columns, starting from 0,
// so the sums, and the pooled values, are bitwise those of the scalar loop. Contiguous loads and shuffles,
// no gathers (measured no faster than the scalar loop). Only intrinsics and fixed-width integers here.
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <stdint.h>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {

// Width-2, stride-2 windows: window l covers x0[h*W + 2l], x0[h*W + 2l + 1] for h < rows, l < count.
// y[l] = float(its sum in double / div), as the scalar loop rounds it; the last group of fewer than four
// windows reads and writes only its own floats.
void avgpool_2wide_avg(const float* x0, int64_t W, int64_t rows, int64_t count, double div, float* y) {
  const __m256d d = _mm256_set1_pd(div);
  for (int64_t l = 0; l < count; l += 4) {
    const int64_t m = count - l < 4 ? count - l : 4;
    const __m256i mask = tail_mask(2 * m);
    __m256d acc = _mm256_setzero_pd();  // lanes: windows l, l+2, l+1, l+3
    for (int64_t h = 0; h < rows; ++h) {
      const float* p = x0 + h * W + 2 * l;
      const __m256 v = m == 4 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      acc = _mm256_add_pd(acc, _mm256_unpacklo_pd(lo, hi));  // the windows' first column
      acc = _mm256_add_pd(acc, _mm256_unpackhi_pd(lo, hi));  // their second
    }
    const __m128 out = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_permute4x64_pd(acc, _MM_SHUFFLE(3, 1, 2, 0)), d));
    if (m == 4) {
      _mm_storeu_ps(y + l, out);
    } else {
      alignas(16) float t[4];
      _mm_store_ps(t, out);
      for (int64_t i = 0; i < m; ++i) y[l + i] = t[i];
    }
  }
}

// The 2x2 / stride-2 backward of one pooled row: d0[2j] = d0[2j+1] = d1[2j] = d1[2j+1] = 0 + dy[j] / div for
// j < Q, the scalar loop's operations (a share added to the zeroed dx) eight windows at a time.
void avgpool_2x2_spread(const float* dy, int64_t Q, float div, float* d0, float* d1) {
  const __m256 dv = _mm256_set1_ps(div), zero = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= Q; j += 8) {
    const __m256 s = _mm256_add_ps(zero, _mm256_div_ps(_mm256_loadu_ps(dy + j), dv));
    const __m256 lo = _mm256_unpacklo_ps(s, s), hi = _mm256_unpackhi_ps(s, s);  // s0 s0 s1 s1 | s4 s4 s5 s5
    const __m256 a = _mm256_permute2f128_ps(lo, hi, 0x20), b = _mm256_permute2f128_ps(lo, hi, 0x31);
    _mm256_storeu_ps(d0 + 2 * j, a);
    _mm256_storeu_ps(d0 + 2 * j + 8, b);
    _mm256_storeu_ps(d1 + 2 * j, a);
    _mm256_storeu_ps(d1 + 2 * j + 8, b);
  }
  for (; j < Q; ++j) {
    const float v = 0.0f + dy[j] / div;
    d0[2 * j] = d0[2 * j + 1] = d1[2 * j] = d1[2 * j + 1] = v;
  }
}

// Whole planes (global pooling): sums[l] = the sum of plane l's n floats in order, planes n floats apart,
// count a multiple of 4. Four planes' next four floats are loaded and transposed, one plane per lane.
void avgpool_plane_sums(const float* x, int64_t n, int64_t count, double* sums) {
  for (int64_t l = 0; l + 4 <= count; l += 4) {
    const float *p0 = x + l * n, *p1 = p0 + n, *p2 = p1 + n, *p3 = p2 + n;
    __m256d acc = _mm256_setzero_pd();
    int64_t e = 0;
    for (; e + 4 <= n; e += 4) {
      const __m256d r0 = _mm256_cvtps_pd(_mm_loadu_ps(p0 + e)), r1 = _mm256_cvtps_pd(_mm_loadu_ps(p1 + e));
      const __m256d r2 = _mm256_cvtps_pd(_mm_loadu_ps(p2 + e)), r3 = _mm256_cvtps_pd(_mm_loadu_ps(p3 + e));
      const __m256d u0 = _mm256_unpacklo_pd(r0, r1), u1 = _mm256_unpackhi_pd(r0, r1);
      const __m256d u2 = _mm256_unpacklo_pd(r2, r3), u3 = _mm256_unpackhi_pd(r2, r3);
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(u0, u2, 0x20));  // element e of the four planes
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(u1, u3, 0x20));  // e + 1
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(u0, u2, 0x31));  // e + 2
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(u1, u3, 0x31));  // e + 3
    }
    for (; e < n; ++e) acc = _mm256_add_pd(acc, _mm256_setr_pd(p0[e], p1[e], p2[e], p3[e]));
    _mm256_storeu_pd(sums + l, acc);
  }
}

}  // namespace avx2
}  // namespace cnnkern
