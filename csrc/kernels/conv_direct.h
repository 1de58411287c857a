// Direct conv2d forward for a depthwise conv (groups == C == K: one input and one output channel per
// group), where im2col + GEMM would be G products of a single row by an R*S-deep reduction.
//   x (N,C,H,W), w (C,1,R,S), b (C,) | None -> y (N,C,P,Q),  y[n,c] = x[n,c] (*) w[c] + b[c]
// Measured (1 thread, Zen3, AVX2): depthwise 3x3 on 16x64x28x28 3.9 ms direct vs 5.1 ms by GEMM; a single
// input channel feeding many filters (the first layer, 1 -> 32) was 4x faster by GEMM than this per-plane
// loop; its 3x3 case now has its own register-blocked SIMD kernel (conv_c1_avx2.cpp, 4 filters at a time).
#pragma once

#include "kernels/conv_im2col.h"

namespace cnnkern {

bool conv_direct_applies(const ConvGeom& g);
void conv_direct_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g);

}  // namespace cnnkern
