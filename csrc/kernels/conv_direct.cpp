// Direct depthwise conv2d (see conv_direct.h). Each plane of x lives in a zero-padded frame of
// Hf = (P-1)*sh + (R-1)*dh + 1 rows, split by column into sw phases of Wf floats:
//   frame[phase][h][j] = x[h - pt][j*sw + phase - pl]  (0 outside the image)
// Tap t = (r, s) of output row p then reads phase (s*dw) % sw, row p*sh + r*dh, from column (s*dw) / sw on:
// Q contiguous floats for every stride, padding and dilation. Padding taps add w * 0 from the frame's zeros,
// as the zero-padded sum does (an inf or NaN weight gives NaN there). Input pixels past the last tap's reach
// are never read. Per output row:
//   forward: y[p][q] = b + sum_t w[t] * frame_t[q]           (row kernel dwconv_row)
//   dw:      acc[t][q] += dy[p][q] * frame_t[q] over the images and rows, then dw[t] = sum_q acc[t][q]
//   (dw_row; 3x3 on the SIMD paths: a whole plane per call, dwconv_dw_plane9)
// dx gathers on the forward's row kernel (conv_direct_dx.cpp). The SIMD paths run the AVX2 row kernels
// (conv_direct_avx2.cpp), the scalar path the loops below.
// Replaced per-group GEMMs on im2col (G products of one row by an R*S-deep reduction): numbers in the commit.
#include "kernels/conv_direct.h"

#include <algorithm>
#include <vector>

#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

namespace {

struct Frame {
  int64_t Hf, Wf, phases, T;
  std::vector<int64_t> tap_at;  // per tap: offset of its first float for output row 0 (phase, row, column)

  explicit Frame(const ConvGeom& g)
      : Hf((g.P - 1) * g.sh + (g.R - 1) * g.dh + 1), phases(g.sw), T(g.R * g.S) {
    Wf = ((g.Q - 1) * g.sw + (g.S - 1) * g.dw) / g.sw + 1;
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s)
        tap_at.push_back(((s * g.dw) % g.sw * Hf + r * g.dh) * Wf + (s * g.dw) / g.sw);
  }
  int64_t size() const { return phases * Hf * Wf; }
  int64_t row(const ConvGeom& g, int64_t p) const { return p * g.sh * Wf; }
};

// [j_lo, j_hi): the frame columns of phase ph that hold image columns (iw = j*sw + ph - pl in [0, W)).
void phase_cols(const ConvGeom& g, const Frame& f, int64_t ph, int64_t* j_lo, int64_t* j_hi) {
  const int64_t first = g.pl - ph, last = g.W - 1 + g.pl - ph;  // j*sw in [first, last]
  const int64_t lo = first <= 0 ? 0 : (first + g.sw - 1) / g.sw;
  const int64_t hi = last < 0 ? 0 : last / g.sw + 1;
  *j_lo = std::min(lo, f.Wf);
  *j_hi = std::max(*j_lo, std::min(hi, f.Wf));
}

// The frame of one plane xc (H, W).
void fill_frame(const float* xc, const ConvGeom& g, const Frame& f, float* fr) {
  for (int64_t ph = 0; ph < f.phases; ++ph) {
    int64_t j_lo, j_hi;
    phase_cols(g, f, ph, &j_lo, &j_hi);
    const int64_t iw0 = j_lo * g.sw + ph - g.pl;
    for (int64_t h = 0; h < f.Hf; ++h) {
      float* d = fr + (ph * f.Hf + h) * f.Wf;
      const int64_t ih = h - g.pt;
      if (ih < 0 || ih >= g.H) {
        std::fill(d, d + f.Wf, 0.0f);
        continue;
      }
      const float* src = xc + ih * g.W + iw0;
      std::fill(d, d + j_lo, 0.0f);
      if (g.sw == 1) std::copy(src, src + (j_hi - j_lo), d + j_lo);
#ifdef CNNKERN_X86
      else if (g.sw == 2 && simd_level() != Simd::scalar)  // scalar, this copy took ~half the forward
        avx2::take_even(src, j_hi - j_lo, g.W - iw0, d + j_lo);
#endif
      else
        for (int64_t j = j_lo; j < j_hi; ++j) d[j] = src[(j - j_lo) * g.sw];
      std::fill(d + j_hi, d + f.Wf, 0.0f);
    }
  }
}

void dw_row(int64_t Q, int64_t T, const float* const* src, const float* dy, float* acc) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return avx2::dwconv_dw_row(Q, T, src, dy, acc);
#endif
  for (int64_t t = 0; t < T; ++t)
    for (int64_t q = 0; q < Q; ++q) acc[t * Q + q] += dy[q] * src[t][q];
}

// sum of a[0..n) in double, in 8 interleaved partial sums, in a fixed order
double sum_fixed(const float* a, int64_t n) {
  double s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int64_t l = 0; l < 8; ++l) s[l] += a[i + l];
  for (; i < n; ++i) s[i % 8] += a[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace

void dwconv_row(int64_t Q, int64_t T, const float* const* src, const float* wt, float bias, float* y) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return avx2::dwconv_fwd_row(Q, T, src, wt, bias, y);
#endif
  std::fill(y, y + Q, bias);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t q = 0; q < Q; ++q) y[q] += wt[t] * src[t][q];
}

void dwconv_plane(int64_t P, int64_t Q, int64_t T, const float* fr, const int64_t* tap, int64_t rs,
                  const float* wt, float bias, float* y, int64_t ldy) {
#ifdef CNNKERN_X86
  if (avx2::kFwdPlaneTaps(T) && simd_level() != Simd::scalar)
    return avx2::dwconv_fwd_plane(T, P, Q, fr, tap, rs, wt, bias, y, ldy);
#endif
  thread_local std::vector<const float*> src;
  src.resize(T);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t t = 0; t < T; ++t) src[t] = fr + p * rs + tap[t];
    dwconv_row(Q, T, src.data(), wt, bias, y + p * ldy);
  }
}

bool conv_direct_applies(const ConvGeom& g) { return g.G > 1 && g.Cg() == 1 && g.Kg() == 1; }

void conv_direct_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g) {
  const Frame f(g);
  const int64_t T = f.T, P = g.P, Q = g.Q;
  parallel_for(g.N * g.K, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> frbuf;
    float* fr = grow(frbuf, f.size());
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = i % g.K;
      fill_frame(x + i * g.H * g.W, g, f, fr);
      dwconv_plane(P, Q, T, fr, f.tap_at.data(), f.row(g, 1), w + k * T, b ? b[k] : 0.0f, y + i * P * Q, Q);
    }
  });
}

void conv_direct_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                          const ConvGeom& g) {
  if (dx) conv_direct_dx(dy, w, dx, g);
  if (!dw && !db) return;
  const Frame f(g);
  const int64_t T = f.T, P = g.P, Q = g.Q, PQ = g.PQ(), HW = g.H * g.W;
  parallel_for(g.C, [&](int64_t c0, int64_t c1) {
    thread_local std::vector<float> frbuf, accbuf;
    thread_local std::vector<float*> ptr;
    float* fr = grow(frbuf, f.size());
    float* acc = grow(accbuf, (T + 1) * Q);  // dw's T rows, then db's
    ptr.resize(T);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(acc, acc + (T + 1) * Q, 0.0f);
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t plane = n * g.C + c;
        const float* d = dy + plane * PQ;
        if (db)
          for (int64_t p = 0; p < P; ++p)
            for (int64_t q = 0; q < Q; ++q) acc[T * Q + q] += d[p * Q + q];
        if (dw) {
          fill_frame(x + plane * HW, g, f, fr);
#ifdef CNNKERN_X86
          if (T == 9 && simd_level() != Simd::scalar) {
            avx2::dwconv_dw_plane9(P, Q, fr, f.tap_at.data(), f.row(g, 1), d, acc);
            continue;  // the next image
          }
#endif
          for (int64_t p = 0; p < P; ++p) {
            for (int64_t t = 0; t < T; ++t) ptr[t] = fr + f.tap_at[t] + f.row(g, p);
            dw_row(Q, T, ptr.data(), d + p * Q, acc);
          }
        }
      }
      if (dw)
        for (int64_t t = 0; t < T; ++t) dw[c * T + t] = static_cast<float>(sum_fixed(acc + t * Q, Q));
      if (db) db[c] = static_cast<float>(sum_fixed(acc + T * Q, Q));
    }
  });
}

}  // namespace cnnkern
