// Winograd F(2x2, 3x3) convolution (conv_winograd.cpp, docs/winograd.md): the "winograd" conv algorithm.
#pragma once

#include <cstdint>

#include "kernels/activation.h"
#include "kernels/conv_im2col.h"

namespace cnnkern {

// 3x3, stride 1, no dilation, one group, any padding and channel counts.
bool conv_winograd_applies(const ConvGeom& g);
// y (N,K,P,Q) = act(conv(x, w) + b), b may be null.
void conv_winograd_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                           Act act, float alpha);
// dx (N,C,H,W) of the conv g from dy (N,K,P,Q): the conv of dy with the flipped, transposed filters.
void conv_winograd_dx(const float* dy, const float* w, float* dx, const ConvGeom& g);

#ifdef CNNKERN_X86
// conv_winograd_tiles.h's loops built for AVX2 (csrc/isa/avx2/conv_winograd_avx2.cpp).
void winograd_input_rows_avx2(float* d0, float* d1, float* d2, float* d3, int64_t width);
void winograd_input_cols_avx2(const float* t, int64_t TW, float* v0, float* v1, float* v2, float* v3);
void winograd_output_row_avx2(const float* const m[16], int64_t TW, float bias, float* r0, float* r1);
#endif

}  // namespace cnnkern
