// im2col / col2im for conv2d: x (C,H,W) <-> col (C*R*S, P*Q) for one image (layout in conv_im2col.h).
// Each col row (c, r, s) is P runs of Q outputs; along a run the input column is iw = q*sw - pl + s*dw,
// so the in-image part is one interval [q_lo, q_hi) (a contiguous copy when sw == 1) with zero padding
// on either side, and a whole run is zero when its input row ih = p*sh - pt + r*dh is outside the image.
#include "kernels/conv_im2col.h"

#include <cstring>

namespace cnnkern {

void im2col(const float* x, const ConvGeom& g, int64_t c0, int64_t c1, float* col, int64_t ld,
            bool zero_tail) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q, sw = g.sw;
  for (int64_t c = c0; c < c1; ++c) {
    const float* xc = x + c * H * W;
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        float* row = col + ((c * g.R + r) * g.S + s) * ld;
        if (zero_tail)
          for (int64_t j = P * Q; j < ld; ++j) row[j] = 0.0f;
        int64_t q_lo, q_hi;
        g.valid_q(s, &q_lo, &q_hi);
        const int64_t iw0 = q_lo * sw + s * g.dw - g.pl;
        for (int64_t p = 0; p < P; ++p) {
          float* d = row + p * Q;
          const int64_t ih = p * g.sh - g.pt + r * g.dh;
          if (ih < 0 || ih >= H) {
            std::memset(d, 0, sizeof(float) * Q);
            continue;
          }
          const float* src = xc + ih * W + iw0;
          for (int64_t q = 0; q < q_lo; ++q) d[q] = 0.0f;
          if (sw == 1)
            std::memcpy(d + q_lo, src, sizeof(float) * (q_hi - q_lo));
          else
            for (int64_t q = q_lo; q < q_hi; ++q) d[q] = src[(q - q_lo) * sw];
          for (int64_t q = q_hi; q < Q; ++q) d[q] = 0.0f;
        }
      }
    }
  }
}

void col2im_add(const float* col, const ConvGeom& g, int64_t c0, int64_t c1, float* dx, int64_t ld) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q, sw = g.sw;
  for (int64_t c = c0; c < c1; ++c) {
    float* xc = dx + c * H * W;
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const float* row = col + ((c * g.R + r) * g.S + s) * ld;
        int64_t q_lo, q_hi;
        g.valid_q(s, &q_lo, &q_hi);
        const int64_t iw0 = q_lo * sw + s * g.dw - g.pl;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t ih = p * g.sh - g.pt + r * g.dh;
          if (ih < 0 || ih >= H) continue;
          const float* d = row + p * Q;
          float* dst = xc + ih * W + iw0;
          if (sw == 1)
            for (int64_t q = q_lo; q < q_hi; ++q) dst[q - q_lo] += d[q];
          else
            for (int64_t q = q_lo; q < q_hi; ++q) dst[(q - q_lo) * sw] += d[q];
        }
      }
    }
  }
}

}  // namespace cnnkern
