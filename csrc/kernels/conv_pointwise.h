// The pointwise (1x1, stride 1, unpadded, one group) conv backward's dw without im2col or packing, and db.
// x (N,C,P*Q) and dy (N,K,P*Q) are already the GEMM's operands with the pixels contiguous, so
//   dw[k][c] = sum_{n,p} dy[n][k][p] * x[n][c][p]
// is K*C dot products read in place (conv_pointwise_avx2.cpp); the im2col path packed dy (K x P*Q per
// image) for a K x C output, which took most of the time (numbers in the commit).
#pragma once

#include "kernels/conv_im2col.h"

namespace cnnkern {

// A pointwise conv in one group on a SIMD path: conv_pointwise_dw applies.
bool conv_pointwise_dw_applies(const ConvGeom& g);
// dw (K, C) over the batch: a partial per chunk of images (reduction_chunks, from the problem alone), the
// partials added in chunk order, so no bit depends on the thread count.
void conv_pointwise_dw(const float* dy, const float* x, float* dw, const ConvGeom& g);
// db[k] = sum_{n,p} dy[n][k][p], per channel in double in 8 interleaved partial sums (pixel p in sum p % 8,
// image by image), combined in a fixed order: the same bits on every path and at any thread count.
void conv_bias_grad(const float* dy, float* db, const ConvGeom& g);

namespace avx2 {  // conv_pointwise_avx2.cpp
// c[i*ldc + j] = sum_{n < nimg, p < len} a[n*a_img + i*a_row + p] * b[n*b_img + j*b_row + p] for i < ma,
// j < mb: 8 lanes of FMAs per element, then the lanes added in a fixed order.
void pw_dot_rows(int64_t nimg, int64_t len, const float* a, int64_t a_img, int64_t a_row, int64_t ma,
                 const float* b, int64_t b_img, int64_t b_row, int64_t mb, float* c, int64_t ldc);
// *out = sum_{n < nimg, p < len} a[n*a_img + p] in conv_bias_grad's order.
void row_sums_f64(int64_t nimg, int64_t len, const float* a, int64_t a_img, double* out);
}  // namespace avx2

}  // namespace cnnkern
