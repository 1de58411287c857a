// AVX2 max pool micro-kernel for the classic 2x2 / stride 2 / no padding window (see pool.cpp).
// Eight outputs per step: rows r0 and r1 of the window strip are loaded 16 floats at a time and split into
// even and odd columns, giving the four taps (r0 even, r0 odd, r1 even, r1 odd) of eight windows in four
// registers; the scan then follows the scalar rule with blends instead of branches. Only intrinsics and
// fixed-width integers here.
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <stdint.h>

#include "isa/avx2/pool_taps_avx2.h"

namespace cnnkern {
namespace avx2 {

// Windows ow in [0, count) of output row oh, eight at a time (the last fewer than eight with masked loads):
// r0 = x row 2·oh, r1 = the next row, W the row length. y[ow] = max of the window, arg[ow] = its flat index
// in the plane: the first maximum in the order (r0,2ow) (r0,2ow+1) (r1,2ow) (r1,2ow+1), except that a NaN is
// taken whenever seen. Returns the number of windows done (all of them); the caller finishes windows cut by
// the edge.
namespace {
inline __attribute__((always_inline)) int64_t row_2x2(const float* r0, const float* r1, int64_t oh, int64_t W,
                                                      int64_t count, float* y, int64_t* arg) {
  const __m256i lane2 = _mm256_setr_epi64x(0, 2, 4, 6), one = _mm256_set1_epi64x(1);
  const __m256i width = _mm256_set1_epi64x(W), zero = _mm256_setzero_si256();
  const __m256i iota32 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t row = 2 * oh * W;
  // windows ow .. ow+lanes-1 (lanes <= 8; fewer than 8: masked loads, stores via a buffer, no access past
  // them)
  const auto step = [&](int64_t ow, int64_t lanes) {
    __m256 v0, v1, v2, v3;
    if (lanes == 8) {
      split_even_odd(r0 + 2 * ow, &v0, &v1);
      split_even_odd(r1 + 2 * ow, &v2, &v3);
    } else {  // 2·lanes floats per row: lanes 0-7 of the first half, then of the second
      const __m256i m_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(2 * lanes)), iota32);
      const __m256i m_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(2 * lanes - 8)), iota32);
      alignas(32) float buf[2][16];
      _mm256_store_ps(buf[0], _mm256_maskload_ps(r0 + 2 * ow, m_lo));
      _mm256_store_ps(buf[0] + 8, _mm256_maskload_ps(r0 + 2 * ow + 8, m_hi));
      _mm256_store_ps(buf[1], _mm256_maskload_ps(r1 + 2 * ow, m_lo));
      _mm256_store_ps(buf[1] + 8, _mm256_maskload_ps(r1 + 2 * ow + 8, m_hi));
      split_even_odd(buf[0], &v0, &v1);
      split_even_odd(buf[1], &v2, &v3);
    }
    __m256 best;
    __m256i tap;
    max_of_taps(v0, v1, v2, v3, &best, &tap);
    // a partial step goes through a stack buffer (masked stores are slow on some AMD cores)
    alignas(32) float ybuf[8];
    alignas(32) int64_t abuf[8];
    float* yd = lanes == 8 ? y + ow : ybuf;
    int64_t* ad = lanes == 8 ? arg + ow : abuf;
    _mm256_storeu_ps(yd, best);
    // index = 2·oh·W + 2·ow + (tap & 1) + (tap >> 1)·W, in int64, four lanes at a time
    for (int half = 0; half < 2; ++half) {
      const __m256i t =
          _mm256_cvtepi32_epi64(half ? _mm256_extracti128_si256(tap, 1) : _mm256_castsi256_si128(tap));
      const __m256i down = _mm256_and_si256(_mm256_sub_epi64(zero, _mm256_srli_epi64(t, 1)), width);
      __m256i idx = _mm256_add_epi64(_mm256_set1_epi64x(row + 2 * (ow + 4 * half)), lane2);
      idx = _mm256_add_epi64(_mm256_add_epi64(idx, _mm256_and_si256(t, one)), down);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ad + 4 * half), idx);
    }
    for (int64_t i = 0; lanes < 8 && i < lanes; ++i) {
      y[ow + i] = ybuf[i];
      arg[ow + i] = abuf[i];
    }
  };
  int64_t ow = 0;
  for (; ow + 8 <= count; ow += 8) step(ow, 8);
  if (ow < count) step(ow, count - ow);
  return count;
}
}  // namespace

int64_t maxpool_2x2_row(const float* r0, const float* r1, int64_t oh, int64_t W, int64_t count, float* y,
                        int64_t* arg) {
  return row_2x2(r0, r1, oh, W, count, y, arg);
}

// Output rows oh0 .. oh1-1 of one plane xp (rows W floats apart; every 2·oh+1 inside the plane), windows
// [0, count) of each: row oh's outputs at y + (oh-oh0)·Q and arg + (oh-oh0)·Q. One call for a run of rows,
// so that small planes (5x5 outputs) do not pay a call and the constants per row.
void maxpool_2x2_rows(const float* xp, int64_t W, int64_t oh0, int64_t oh1, int64_t count, int64_t Q,
                      float* y, int64_t* arg) {
  for (int64_t oh = oh0; oh < oh1; ++oh, y += Q, arg += Q) {
    const float* r0 = xp + 2 * oh * W;
    row_2x2(r0, r0 + W, oh, W, count, y, arg);
  }
}

// Every window of one plane xp (2x2, stride 2, all windows whole), the P·Q outputs in flat order, eight at a
// time by gathers: output j reads x at off[j], off[j]+1, off[j]+W, off[j]+W+1 (off[j] = 2·(j/Q)·W + 2·(j%Q),
// int32, padded to a multiple of 8 with zeros). For planes with rows shorter than a vector (pool2's 5x5
// outputs), where the row path pays a partial step per row of five. Same tap order and rule as row_2x2.
void maxpool_2x2_plane_gather(const float* xp, int64_t W, int64_t PQ, const int32_t* off, float* y,
                              int64_t* arg) {
  const __m256i dW = _mm256_set1_epi32(static_cast<int>(W)), one32 = _mm256_set1_epi32(1);
  for (int64_t j = 0; j < PQ; j += 8) {
    const int64_t lanes = PQ - j < 8 ? PQ - j : 8;
    const __m256i o = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off + j));
    const __m256i oW = _mm256_add_epi32(o, dW);
    const __m256 v0 = _mm256_i32gather_ps(xp, o, 4);
    const __m256 v1 = _mm256_i32gather_ps(xp + 1, o, 4);
    const __m256 v2 = _mm256_i32gather_ps(xp, oW, 4);
    const __m256 v3 = _mm256_i32gather_ps(xp + 1, oW, 4);
    __m256 best;
    __m256i tap;
    max_of_taps(v0, v1, v2, v3, &best, &tap);
    // index = off + (tap & 1) + (tap >> 1)·W, fits int32 (a plane holds < 2^31 elements: the caller checks)
    const __m256i idx = _mm256_add_epi32(_mm256_add_epi32(o, _mm256_and_si256(tap, one32)),
                                         _mm256_mullo_epi32(_mm256_srli_epi32(tap, 1), dW));
    alignas(32) float ybuf[8];
    alignas(32) int64_t abuf[8];
    float* yd = lanes == 8 ? y + j : ybuf;
    int64_t* ad = lanes == 8 ? arg + j : abuf;
    _mm256_storeu_ps(yd, best);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ad), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(idx)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ad + 4),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(idx, 1)));
    for (int64_t i = 0; lanes < 8 && i < lanes; ++i) {
      y[j + i] = ybuf[i];
      arg[j + i] = abuf[i];
    }
  }
}

}  // namespace avx2
}  // namespace cnnkern
