// AVX2 row kernels of the direct depthwise conv (conv_direct.h): eight output columns per step, the last
// fewer than eight with masked loads and partial stores (no access past Q). Taps outermost in the dw row, so
// each element receives its terms in the scalar path's order; the stride-2 (de)interleaves of the frame and
// of dx rows. Only intrinsics and fixed-width integers here.
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <stdint.h>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {

void dwconv_fwd_row(int64_t Q, int64_t T, const float* const* src, const float* wt, float bias, float* y) {
  int64_t q = 0;
  for (; q + 16 <= Q; q += 16) {  // two independent accumulators per step
    __m256 a0 = _mm256_set1_ps(bias), a1 = a0;
    for (int64_t t = 0; t < T; ++t) {
      const __m256 wv = _mm256_set1_ps(wt[t]);
      a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src[t] + q), a0);
      a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src[t] + q + 8), a1);
    }
    _mm256_storeu_ps(y + q, a0);
    _mm256_storeu_ps(y + q + 8, a1);
  }
  for (; q < Q; q += 8) {
    const __m256i m = tail_mask(Q - q);
    __m256 a = _mm256_set1_ps(bias);
    for (int64_t t = 0; t < T; ++t)
      a = _mm256_fmadd_ps(_mm256_set1_ps(wt[t]), _mm256_maskload_ps(src[t] + q, m), a);
    store_first(y + q, a, Q - q);
  }
}

namespace {
template <int T>
void fwd_plane(int64_t P, int64_t Q, const float* fr, const int64_t* tap, int64_t rs, const float* wt,
               float bias, float* y, int64_t ldy) {
  __m256 wv[T];
  for (int t = 0; t < T; ++t) wv[t] = _mm256_set1_ps(wt[t]);
  for (int64_t p = 0; p < P; ++p, fr += rs, y += ldy) {
    int64_t q = 0;
    for (; q + 16 <= Q; q += 16) {  // dwconv_fwd_row's steps, the weights broadcast once per plane
      __m256 a0 = _mm256_set1_ps(bias), a1 = a0;
      for (int t = 0; t < T; ++t) {
        a0 = _mm256_fmadd_ps(wv[t], _mm256_loadu_ps(fr + tap[t] + q), a0);
        a1 = _mm256_fmadd_ps(wv[t], _mm256_loadu_ps(fr + tap[t] + q + 8), a1);
      }
      _mm256_storeu_ps(y + q, a0);
      _mm256_storeu_ps(y + q + 8, a1);
    }
    for (; q < Q; q += 8) {
      const __m256i m = tail_mask(Q - q);
      __m256 a = _mm256_set1_ps(bias);
      for (int t = 0; t < T; ++t) a = _mm256_fmadd_ps(wv[t], _mm256_maskload_ps(fr + tap[t] + q, m), a);
      store_first(y + q, a, Q - q);
    }
  }
}
}  // namespace

void dwconv_fwd_plane(int64_t T, int64_t P, int64_t Q, const float* fr, const int64_t* tap, int64_t rs,
                      const float* wt, float bias, float* y, int64_t ldy) {
  switch (T) {
    case 1:
      return fwd_plane<1>(P, Q, fr, tap, rs, wt, bias, y, ldy);
    case 2:
      return fwd_plane<2>(P, Q, fr, tap, rs, wt, bias, y, ldy);
    case 3:
      return fwd_plane<3>(P, Q, fr, tap, rs, wt, bias, y, ldy);
    case 4:
      return fwd_plane<4>(P, Q, fr, tap, rs, wt, bias, y, ldy);
    case 6:
      return fwd_plane<6>(P, Q, fr, tap, rs, wt, bias, y, ldy);
    default:
      return fwd_plane<9>(P, Q, fr, tap, rs, wt, bias, y, ldy);
  }
}

void dwconv_dw_row(int64_t Q, int64_t T, const float* const* src, const float* dy, float* acc) {
  for (int64_t t = 0; t < T; ++t) {
    const float* s = src[t];
    float* a = acc + t * Q;
    int64_t q = 0;
    for (; q + 8 <= Q; q += 8)
      _mm256_storeu_ps(
          a + q, _mm256_fmadd_ps(_mm256_loadu_ps(dy + q), _mm256_loadu_ps(s + q), _mm256_loadu_ps(a + q)));
    if (q < Q) {
      const __m256i m = tail_mask(Q - q);
      store_first(a + q,
                  _mm256_fmadd_ps(_mm256_maskload_ps(dy + q, m), _mm256_maskload_ps(s + q, m),
                                  _mm256_maskload_ps(a + q, m)),
                  Q - q);
    }
  }
}

namespace {
// Output columns [q, q+8) (Masked: the first Q - q of them) of every row: the 9 taps' sums in registers.
template <bool Masked>
void dw_columns9(int64_t P, int64_t Q, int64_t q, const float* fr, const int64_t* tap, int64_t rs,
                 const float* dy, float* acc) {
  const __m256i m = tail_mask(Masked ? Q - q : 8);
  const auto load = [&](const float* p) { return Masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p); };
  __m256 a[9];
  for (int t = 0; t < 9; ++t) a[t] = load(acc + t * Q + q);
  for (int64_t p = 0; p < P; ++p) {
    const __m256 d = load(dy + p * Q + q);
    const float* row = fr + p * rs + q;
    for (int t = 0; t < 9; ++t) a[t] = _mm256_fmadd_ps(d, load(row + tap[t]), a[t]);
  }
  for (int t = 0; t < 9; ++t) {
    if (Masked)
      store_first(acc + t * Q + q, a[t], Q - q);
    else
      _mm256_storeu_ps(acc + t * Q + q, a[t]);
  }
}
}  // namespace

void dwconv_dw_plane9(int64_t P, int64_t Q, const float* fr, const int64_t* tap, int64_t rs, const float* dy,
                      float* acc) {
  int64_t q = 0;
  for (; q + 8 <= Q; q += 8) dw_columns9<false>(P, Q, q, fr, tap, rs, dy, acc);
  if (q < Q) dw_columns9<true>(P, Q, q, fr, tap, rs, dy, acc);
}

}  // namespace avx2
}  // namespace cnnkern

namespace cnnkern {
namespace avx2 {

void take_even(const float* s, int64_t n, int64_t avail, float* d) {
  int64_t j = 0;
  for (; 2 * j + 16 <= avail && j + 8 <= n; j += 8) {
    const __m256 a = _mm256_loadu_ps(s + 2 * j), b = _mm256_loadu_ps(s + 2 * j + 8);
    const __m256 ev = _mm256_shuffle_ps(a, b, 0x88);  // a0 a2 b0 b2 | a4 a6 b4 b6
    _mm256_storeu_ps(d + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
  }
  for (; j < n; ++j) d[j] = s[2 * j];
}

void interleave2(const float* e, int64_t ne, const float* o, int64_t no, float* d) {
  int64_t j = 0;
  for (; j + 8 <= no; j += 8) {
    const __m256 ev = _mm256_loadu_ps(e + j), od = _mm256_loadu_ps(o + j);
    const __m256 lo = _mm256_unpacklo_ps(ev, od), hi = _mm256_unpackhi_ps(ev, od);
    _mm256_storeu_ps(d + 2 * j, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(d + 2 * j + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  for (; j < no; ++j) d[2 * j] = e[j], d[2 * j + 1] = o[j];
  if (ne > no) d[2 * no] = e[no];
}

}  // namespace avx2
}  // namespace cnnkern
