// Geometry of a 2-D convolution and the im2col / col2im transforms that turn it into GEMMs.
//   x (N,C,H,W), w (K,C/G,R,S) -> y (N,K,P,Q);  col (C*R*S, P*Q) per image,
//   col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh - pt + r*dh][q*sw - pl + s*dw]  (0 outside the image).
// Group g owns the contiguous col rows [g*Cg*R*S, (g+1)*Cg*R*S).
#pragma once

#include <cstdint>

namespace cnnkern {

struct ConvGeom {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // filters
  int64_t P, Q;        // output
  int64_t sh, sw, pt, pl, dh, dw, G;
  int64_t Cg() const { return C / G; }
  int64_t Kg() const { return K / G; }
  int64_t CgRS() const { return C / G * R * S; }
  int64_t PQ() const { return P * Q; }
  // A 1x1, stride-1, unpadded conv needs no im2col: the image (C, H*W) is already col.
  bool pointwise() const {
    return R == 1 && S == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && P == H && Q == W;
  }

  // [q_lo, q_hi): the output columns whose input column q*sw - pl + s*dw lies in [0, W) for tap column s.
  void valid_q(int64_t s, int64_t* q_lo, int64_t* q_hi) const {
    const int64_t off = s * dw - pl;  // input column of q = 0
    const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
    const int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
    *q_lo = lo < Q ? lo : Q;
    *q_hi = hi < *q_lo ? *q_lo : (hi < Q ? hi : Q);
  }
};

// Writes col rows of channels [c0, c1) of one image x (C,H,W) into columns [0, P*Q) of rows ld >= P*Q floats
// apart; with zero_tail the columns [P*Q, ld) are set to zero. Without it several images can share the rows
// (image i at col + i*P*Q, ld >= count*P*Q): the batched conv of images with few output columns.
void im2col(const float* x, const ConvGeom& g, int64_t c0, int64_t c1, float* col, int64_t ld,
            bool zero_tail = true);
// Adds the col rows (ld floats apart, ld >= P*Q) of channels [c0, c1) back into their image positions:
// dx[c] += ..., the adjoint of im2col. Channels are independent, so disjoint channel ranges may run on
// different threads.
void col2im_add(const float* col, const ConvGeom& g, int64_t c0, int64_t c1, float* dx, int64_t ld);

}  // namespace cnnkern
