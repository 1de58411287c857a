// Direct depthwise conv2d (groups == C == K: one input and one output channel per group), where
// im2col + GEMM would be G products of a single row by an R*S-deep reduction.
//   forward:  x (N,C,H,W), w (C,1,R,S), b (C,) | None -> y (N,C,P,Q),  y[n,c] = x[n,c] (*) w[c] + b[c]
//   backward: dy (N,C,P,Q), x, w -> dx | None, dw (C,1,R,S) | None, db (C,) | None
// Any stride, padding and dilation: each plane is first copied into a zero-padded frame split into sw column
// phases (conv_direct.cpp), so every tap reads a contiguous run of Q floats: rows vectorised over the output
// width (conv_direct_avx2.cpp on the SIMD paths, plain loops on the scalar path). dx gathers from a framed dy
// plane, phase by phase (conv_direct_dx.cpp), on the same row kernel.
#pragma once

#include "kernels/conv_im2col.h"

namespace cnnkern {

bool conv_direct_applies(const ConvGeom& g);
void conv_direct_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g);
// Planes split over the threads for the forward and dx; channels for dw and db, each channel's sums taken
// over the images in order, so no bit depends on the thread count.
void conv_direct_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                          const ConvGeom& g);

// dx alone, by gathering (conv_direct_dx.cpp): planes split over the threads.
void conv_direct_dx(const float* dy, const float* w, float* dx, const ConvGeom& g);
// Rows p < P of a plane: y[p*ldy + q] = bias + sum_t wt[t] * fr[p*rs + tap[t] + q], q < Q, on the current
// SIMD path (in one call for the tap counts of 3x3, 2x2, 1x3... and of stride 2's phases; else row by row).
void dwconv_plane(int64_t P, int64_t Q, int64_t T, const float* fr, const int64_t* tap, int64_t rs,
                  const float* wt, float bias, float* y, int64_t ldy);
// One such row with the taps' pointers src[t]: the forward's row kernel.
void dwconv_row(int64_t Q, int64_t T, const float* const* src, const float* wt, float bias, float* y);

namespace avx2 {  // conv_direct_avx2.cpp: the row kernels below, eight output columns at a time
// y[q] = bias + sum_t wt[t] * src[t][q], q in [0, Q)
void dwconv_fwd_row(int64_t Q, int64_t T, const float* const* src, const float* wt, float bias, float* y);
// dwconv_plane for T in {1, 2, 3, 4, 6, 9} taps (kFwdPlaneTaps), the same bits as row by row (the weights
// broadcast once per plane, in registers)
void dwconv_fwd_plane(int64_t T, int64_t P, int64_t Q, const float* fr, const int64_t* tap, int64_t rs,
                      const float* wt, float bias, float* y, int64_t ldy);
constexpr bool kFwdPlaneTaps(int64_t T) { return T == 1 || T == 2 || T == 3 || T == 4 || T == 6 || T == 9; }
// acc[t*Q + q] += dy[q] * src[t][q]
void dwconv_dw_row(int64_t Q, int64_t T, const float* const* src, const float* dy, float* acc);
// dwconv_dw_row over the P rows of a plane with 9 taps (3x3), row p's tap t at fr + p*rs + tap[t]: each
// column block's 9 sums stay in registers down the plane (the row kernel stored them after every row). The
// same terms in the same order, so the same bits.
void dwconv_dw_plane9(int64_t P, int64_t Q, const float* fr, const int64_t* tap, int64_t rs, const float* dy,
                      float* acc);
// d[j] = s[2j], j < n, with s readable for avail >= 2n - 1 floats: a stride-2 frame's column phase
void take_even(const float* s, int64_t n, int64_t avail, float* d);
// d[2j] = e[j] (j < ne), d[2j+1] = o[j] (j < no), ne == no or no + 1: a stride-2 dx row from its two phases
void interleave2(const float* e, int64_t ne, const float* o, int64_t no, float* d);
}  // namespace avx2

}  // namespace cnnkern
