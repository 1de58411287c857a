// Direct depthwise conv2d forward (see conv_direct.h). Each (n, k) output plane is built row by row:
// start the row at the bias, then for each tap (r, s) add w[k,r,s] times the input row ih = p*sh - pt + r*dh
// read from column q*sw - pl + s*dw over the in-image interval of q (an axpy the compiler vectorises
// when sw == 1), and w[k,r,s] * 0 over the padding. The row stays in L1 across the R*S taps; planes are
// split over the threads.
#include "kernels/conv_direct.h"

#include "runtime/common.h"

namespace cnnkern {

bool conv_direct_applies(const ConvGeom& g) { return g.G > 1 && g.Cg() == 1 && g.Kg() == 1; }

void conv_direct_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g) {
  const int64_t P = g.P, Q = g.Q, H = g.H, W = g.W, sw = g.sw;
  parallel_for(g.N * g.K, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / g.K, k = i % g.K;
      const float* xc = x + (n * g.C + k) * H * W;
      const float* wk = w + k * g.R * g.S;
      float* yk = y + i * P * Q;
      const float bias = b ? b[k] : 0.0f;
      for (int64_t p = 0; p < P; ++p) {
        float* yr = yk + p * Q;
        for (int64_t q = 0; q < Q; ++q) yr[q] = bias;
        for (int64_t r = 0; r < g.R; ++r) {
          const int64_t ih = p * g.sh - g.pt + r * g.dh;
          const bool row_in = ih >= 0 && ih < H;
          const float* xr = xc + (row_in ? ih : 0) * W;
          for (int64_t s = 0; s < g.S; ++s) {
            const float wv = wk[r * g.S + s];
            const int64_t off = s * g.dw - g.pl;  // input column of q = 0
            int64_t q_lo, q_hi;
            g.valid_q(s, &q_lo, &q_hi);
            if (!row_in) q_lo = q_hi = Q;
            // Padding taps still add w * 0, as the zero-padded sum does: an inf or NaN weight gives NaN.
            const float zero_tap = wv * 0.0f;
            for (int64_t q = 0; q < q_lo; ++q) yr[q] += zero_tap;
            if (sw == 1)
              for (int64_t q = q_lo; q < q_hi; ++q) yr[q] += wv * xr[q + off];
            else
              for (int64_t q = q_lo; q < q_hi; ++q) yr[q] += wv * xr[q * sw + off];
            for (int64_t q = q_hi; q < Q; ++q) yr[q] += zero_tap;
          }
        }
      }
    }
  });
}

}  // namespace cnnkern
