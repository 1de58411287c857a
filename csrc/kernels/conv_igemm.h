// Indirect (implicit) GEMM convolutions for stride 1, no padding or dilation, one group, on the SIMD path:
// the GEMMs of conv.cpp without the im2col / col2im buffers; x and dy are read in place through per-row
// base pointers and a table of offsets (conv_igemm_avx2.cpp's 6 x 16 micro-kernel).
//   forward: x (N,C,H,W), w (K,C,R,S), b (K,) | None -> y (N,K,P,Q), P = H-R+1, Q = W-S+1 (or fewer: the
//            conv cropped to the rows and columns a pool reads, conv_pool.cpp)
//   backward: dy (N,K,P,Q), x, w -> dx (N,C,H,W) | None, dw (K,C,R,S) | None; db (K,) along with dw
#pragma once

#include "kernels/activation.h"
#include "kernels/conv_im2col.h"

namespace cnnkern {

// The one place that decides whether a conv takes these kernels.
bool conv_igemm_applies(const ConvGeom& g);
// Image n is read at x + n * x_image_stride and written at y + n * y_image_stride (0: dense, C*H*W and
// K*P*Q); a grouped conv passes its group's channel slices of the whole arrays. With framed_from, x is the
// unpadded input of that geometry and g its zero frame's (conv_igemm_padded.cpp's unpadded()): each image is
// padded into a per-thread frame just before its tiles read it (dense images only).
void conv_igemm_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                        float alpha, int64_t x_image_stride = 0, int64_t y_image_stride = 0,
                        const ConvGeom* framed_from = nullptr);
// Planes [0, planes) of x (of geometry g, H*W floats apart) into the interior of frames (of geometry u,
// u.H*u.W floats apart) at (g.pt, g.pl), the border zero (conv_igemm_padded.cpp).
void pad_planes(const float* x, int64_t planes, const ConvGeom& g, const ConvGeom& u, float* xp);
// db, when given with dw, is summed during dw's pass over dy (without dw, db is left to the caller). Images
// of x and dx at n * x_image_stride, of dy at n * dy_image_stride (0: dense), as in the forward.
void conv_igemm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                         const ConvGeom& g, int64_t x_image_stride = 0, int64_t dy_image_stride = 0);

// Padded stride-1 convs through a zero-padded copy of x (conv_igemm_padded.cpp); the same contract.
bool conv_igemm_padded_applies(const ConvGeom& g);
// Their dw (+ db) alone, for any channel count (conv_igemm_padded_applies asks for 8+, for dx's sake).
bool conv_igemm_padded_dw_applies(const ConvGeom& g);
void conv_igemm_padded_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g);
void conv_igemm_padded_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                               Act act, float alpha);
void conv_igemm_padded_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                                float* db, const ConvGeom& g);

// Strided convs (sh or sw > 1, no dilation, one group) on the same kernels (conv_igemm_padded.cpp): the
// forward, and dw (db, when given, summed with it); dx is left to the caller.
bool conv_igemm_strided_applies(const ConvGeom& g);
void conv_igemm_strided_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                                Act act, float alpha);
void conv_igemm_strided_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g);

// Grouped convs (G > 1, 8+ channels per group) whose per-group conv takes the kernels above, group by group
// (conv_igemm_padded.cpp); the same contract.
bool conv_igemm_grouped_applies(const ConvGeom& g);
void conv_igemm_grouped_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                                Act act, float alpha);
void conv_igemm_grouped_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                                 float* db, const ConvGeom& g);

}  // namespace cnnkern
