// The per-row loops of the Winograd F(2x2, 3x3) transforms (conv_winograd.cpp), written once and compiled
// twice: portably (conv_winograd.cpp) and under #pragma GCC target("avx2,fma")
// (csrc/isa/avx2/conv_winograd_avx2.cpp), where the compiler vectorises the input loops 8 tiles at a time
// (there the output loop is written in intrinsics, with this one taking its tail). Plain loops over
// fixed-width types only, with internal linkage, so neither copy can replace the other at link time.
#pragma once

#include <stdint.h>

namespace cnnkern {
namespace {

// d B of one row t (2*TW + 2 values) of B^T d, for its TW tiles: v_j[tx] (B^T = [1 0 -1 0; 0 1 1 0;
// 0 -1 1 0; 0 1 0 -1]).
inline void winograd_input_cols(const float* __restrict t, int64_t TW, float* __restrict v0,
                                float* __restrict v1, float* __restrict v2, float* __restrict v3) {
  for (int64_t tx = 0; tx < TW; ++tx) {
    const float a = t[2 * tx], b = t[2 * tx + 1], c = t[2 * tx + 2], e = t[2 * tx + 3];
    v0[tx] = a - c;
    v1[tx] = b + c;
    v2[tx] = c - b;
    v3[tx] = b - e;
  }
}

// B^T d of the 4 rows d0..d3 (width values each), in place: d0 - d2, d1 + d2, d2 - d1, d1 - d3.
inline void winograd_input_rows(float* d0, float* d1, float* d2, float* d3, int64_t width) {
  for (int64_t u = 0; u < width; ++u) {
    const float a = d0[u], b = d1[u], c = d2[u], e = d3[u];
    d0[u] = a - c;
    d3[u] = b - e;
    d1[u] = b + c;
    d2[u] = c - b;
  }
}

// A^T M A (A^T = [1 1 1 0; 0 1 -1 -1]) of one row of TW tiles: m[i*4 + j] points at the row's TW values of
// transform position (i, j). Writes the two output rows, 2*TW values each, bias added, to r0 and r1.
inline void winograd_output_row(const float* const m[16], int64_t TW, float bias, float* __restrict r0,
                                float* __restrict r1) {
  for (int64_t tx = 0; tx < TW; ++tx) {
    float s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
      const float* __restrict a = m[j];
      const float* __restrict b = m[4 + j];
      const float* __restrict c = m[8 + j];
      const float* __restrict e = m[12 + j];
      s0[j] = (a[tx] + b[tx]) + c[tx];
      s1[j] = (b[tx] - c[tx]) - e[tx];
    }
    r0[2 * tx] = ((s0[0] + s0[1]) + s0[2]) + bias;
    r0[2 * tx + 1] = ((s0[1] - s0[2]) - s0[3]) + bias;
    r1[2 * tx] = ((s1[0] + s1[1]) + s1[2]) + bias;
    r1[2 * tx + 1] = ((s1[1] - s1[2]) - s1[3]) + bias;
  }
}

}  // namespace
}  // namespace cnnkern
