#pragma GCC target("avx2,fma")
// The Winograd transforms' row loops (kernels/conv_winograd_tiles.h) compiled for AVX2: the compiler turns
// them into 8-tile vector code (strided loads and stores by shuffles). Same operations in the same order as
// the portable copy: the same bits.
#include <immintrin.h>
#include <stdint.h>

#include "kernels/conv_winograd_tiles.h"

namespace cnnkern {

void winograd_input_cols_avx2(const float* t, int64_t TW, float* v0, float* v1, float* v2, float* v3) {
  winograd_input_cols(t, TW, v0, v1, v2, v3);
}

void winograd_input_rows_avx2(float* d0, float* d1, float* d2, float* d3, int64_t width) {
  winograd_input_rows(d0, d1, d2, d3, width);
}

// The output transform in intrinsics (GCC leaves the 16-stream loop scalar), 8 tiles a step: the same
// additions in the same order as winograd_output_row, which also takes the tail.
void winograd_output_row_avx2(const float* const m[16], int64_t TW, float bias, float* r0, float* r1) {
  const __m256 vb = _mm256_set1_ps(bias);
  int64_t tx = 0;
  for (; tx + 8 <= TW; tx += 8) {
    __m256 s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 a = _mm256_loadu_ps(m[j] + tx), b = _mm256_loadu_ps(m[4 + j] + tx);
      const __m256 c = _mm256_loadu_ps(m[8 + j] + tx), e = _mm256_loadu_ps(m[12 + j] + tx);
      s0[j] = _mm256_add_ps(_mm256_add_ps(a, b), c);
      s1[j] = _mm256_sub_ps(_mm256_sub_ps(b, c), e);
    }
    const __m256 s[2][4] = {{s0[0], s0[1], s0[2], s0[3]}, {s1[0], s1[1], s1[2], s1[3]}};
    float* rows[2] = {r0, r1};
    for (int h = 0; h < 2; ++h) {
      const __m256 even = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[h][0], s[h][1]), s[h][2]), vb);
      const __m256 odd = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[h][1], s[h][2]), s[h][3]), vb);
      const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
      _mm256_storeu_ps(rows[h] + 2 * tx, _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_storeu_ps(rows[h] + 2 * tx + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
  }
  if (tx < TW) {
    const float* rest[16];
    for (int i = 0; i < 16; ++i) rest[i] = m[i] + tx;
    winograd_output_row(rest, TW - tx, bias, r0 + 2 * tx, r1 + 2 * tx);
  }
}

}  // namespace cnnkern
