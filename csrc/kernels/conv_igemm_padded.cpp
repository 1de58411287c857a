// Padded stride-1 convolutions on the indirect GEMMs (conv_igemm.h) through a zero-padded copy of x; below,
// strided ones (forward and dw) and grouped ones (group by group) on the same kernels.
//
// The indirect GEMMs read x in place and so take no padding. A 'same' conv (VGG-style, the zoo's vgg_bn and
// all_conv) otherwise goes through im2col / col2im, whose backward measured about twice the indirect GEMMs'
// time on the same arithmetic (vgg_bn's 32-channel 32x32 conv at batch 32, one thread: 120-154 ms against
// 58-68 ms for the unpadded conv of the same size). Padding x costs one pass over it:
//   forward: each image padded into a frame (C,H',W'), H' = (P-1)*sh+R, W' = (Q-1)*sw+S (at least the
//   padded image), by the thread about to read it; y = igemm_forward over the frames (same P, Q). Below two
//   images per thread, one padded copy of the batch, xp (N,C,H',W'), shared by the threads.
//   dw (+ db): igemm's dw over xp.  dx: igemm's dx over the padded geometry, then its interior is dx.
// Fewer than 8 input channels stay on im2col: dx's tiles are 16 channels wide and would be mostly empty.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/conv_igemm.h"
#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

namespace {

constexpr int64_t kMinChannels = 8;

// The geometry of the padded copy: the same conv with no padding, the frame as large as the taps reach
// ((P-1)*sh + R rows) and at least the image (a strided conv may leave its last rows unread).
ConvGeom unpadded(const ConvGeom& g) {
  ConvGeom u = g;
  u.H = std::max((g.P - 1) * g.sh + g.R, g.pt + g.H);
  u.W = std::max((g.Q - 1) * g.sw + g.S, g.pl + g.W);
  u.pt = u.pl = 0;
  return u;
}

bool needs_copy(const ConvGeom& g, const ConvGeom& u) {
  return g.pt > 0 || g.pl > 0 || u.H != g.H || u.W != g.W;
}

// Copies n floats, n small (an image row): in fixed 8-float pieces the compiler inlines, since a libc call
// per row cost more than its data (batch-1 inference pads thousands of rows of 16-32 floats per call).
inline void copy_row(float* dst, const float* src, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) std::memcpy(dst + k, src + k, 8 * sizeof(float));
  for (; k < n; ++k) dst[k] = src[k];
}

// Zeroes n floats, n small (a pad run between two rows): stores rather than a memset call.
inline void zero_run(float* dst, int64_t n) {
  if (n > 16) return (void)std::memset(dst, 0, sizeof(float) * n);
  for (int k = 0; k < 16; ++k)
    if (k < n) dst[k] = 0.0f;
}

}  // namespace

void pad_planes(const float* x, int64_t planes, const ConvGeom& g, const ConvGeom& u, float* xp) {
  // A row's right pad and the next row's left pad are one run.
  const int64_t HW = g.H * g.W, HWp = u.H * u.W, bottom = u.H - g.pt - g.H, right = u.W - g.pl - g.W;
  for (int64_t i = 0; i < planes; ++i) {
    const float* src = x + i * HW;
    float* dst = xp + i * HWp;
    std::memset(dst, 0, sizeof(float) * (g.pt * u.W + g.pl));
    dst += g.pt * u.W + g.pl;
    for (int64_t h = 0; h < g.H; ++h, dst += u.W, src += g.W) {
      copy_row(dst, src, g.W);
      zero_run(dst + g.W, h + 1 < g.H ? right + g.pl : right);
    }
    std::memset(dst - g.pl, 0, sizeof(float) * bottom * u.W);
  }
}

namespace {

// x (N,C,H,W) into the interior of xp (N,C,H',W'), all planes, over the threads.
void pad_images(const float* x, const ConvGeom& g, const ConvGeom& u, float* xp) {
  parallel_for(g.N * g.C, [&](int64_t i0, int64_t i1) {
    pad_planes(x + i0 * g.H * g.W, i1 - i0, g, u, xp + i0 * u.H * u.W);
  });
}

// dx (N,C,H,W) = the interior of dxp (N,C,H',W') at (pt, pl).
void unpad_images(const float* dxp, const ConvGeom& g, const ConvGeom& u, float* dx) {
  const int64_t HW = g.H * g.W, HWp = u.H * u.W;
  parallel_for(g.N * g.C, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t h = 0; h < g.H; ++h)
        copy_row(dx + i * HW + h * g.W, dxp + i * HWp + (h + g.pt) * u.W + g.pl, g.W);
  });
}

// The calling thread's buffer for dx over the padded frame (kept between steps).
float* padded_dx(const ConvGeom& g, const ConvGeom& u) {
  thread_local std::vector<float> buf;
  return grow(buf, g.N * g.C * u.H * u.W);
}

const float* padded_x(const float* x, const ConvGeom& g, const ConvGeom& u) {
  thread_local std::vector<float> buf;  // the calling thread's: kept between steps (no allocation per step)
  float* xp = grow(buf, g.N * g.C * u.H * u.W);
  pad_images(x, g, u, xp);
  return xp;
}

}  // namespace

bool conv_igemm_padded_dw_applies(const ConvGeom& g) {
  if (g.G != 1 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1) return false;
  if (g.R == 1 && g.S == 1) return false;
  const ConvGeom u = unpadded(g);
  return needs_copy(g, u) && conv_igemm_applies(u);
}

bool conv_igemm_padded_applies(const ConvGeom& g) {
  return g.C >= kMinChannels && conv_igemm_padded_dw_applies(g);
}

// Fewer channels: dw alone (its tiles are 6 taps by 16 filters, full whatever C is), measured 3-4x faster
// than im2col + GEMM (3 -> 32 channels 32x32 'same' at batch 32, one thread, 8.1 -> 2.3 ms, minimum of 9).
void conv_igemm_padded_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g) {
  const ConvGeom u = unpadded(g);
  conv_igemm_backward(dy, padded_x(x, g, u), nullptr, nullptr, dw, db, u);
}

// The forward of g over its frame u: with two images or more per thread, each image is padded by the thread
// about to read it, into a frame that stays in its cache, instead of a padded copy of the whole batch written
// to memory and read back (a pass that took 12-15% of a strided 32-channel 32x32 conv at batch 128). Fewer
// images (batch-1 latency) keep the whole copy, which the threads then share.
void forward_framed(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                    const ConvGeom& u, Act act, float alpha) {
  if (!needs_copy(g, u))
    conv_igemm_forward(x, w, b, y, u, act, alpha);
  else if (g.N >= 2 * num_threads())
    conv_igemm_forward(x, w, b, y, u, act, alpha, 0, 0, &g);
  else
    conv_igemm_forward(padded_x(x, g, u), w, b, y, u, act, alpha);
}

void conv_igemm_padded_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                               Act act, float alpha) {
  forward_framed(x, w, b, y, g, unpadded(g), act, alpha);
}

void conv_igemm_padded_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                                float* db, const ConvGeom& g) {
  const ConvGeom u = unpadded(g);
  if (dw) conv_igemm_backward(dy, padded_x(x, g, u), w, nullptr, dw, db, u);
  if (!dx) return;
  float* dxp = padded_dx(g, u);
  conv_igemm_backward(dy, x, w, dxp, nullptr, nullptr, u);  // x is not read without dw
  unpad_images(dxp, g, u, dx);
}

// Strided convs: the forward and dw (+ db) read the frame (or x itself when it needs no padding) at rows
// p*sh and columns q*sw; dx stays on im2col's GEMM + col2im (conv.cpp), as the dx kernel's pixel classes
// assume stride 1. Measured against im2col + GEMM: numbers in the commit.
bool conv_igemm_strided_applies(const ConvGeom& g) {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar && g.G == 1 && (g.sh > 1 || g.sw > 1) && g.dh == 1 && g.dw == 1;
#else
  (void)g;
  return false;
#endif
}

void conv_igemm_strided_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                                Act act, float alpha) {
  forward_framed(x, w, b, y, g, unpadded(g), act, alpha);
}

void conv_igemm_strided_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g) {
  const ConvGeom u = unpadded(g);
  conv_igemm_backward(dy, needs_copy(g, u) ? padded_x(x, g, u) : x, nullptr, nullptr, dw, db, u);
}

// Grouped convs with 8+ channels per group (the zoo's groups=4 conv) group by group on the same kernels,
// each group's channels read and written in place (the image strides of the whole arrays; a padded conv pads
// x, and unpads dx, for all groups at once). Gathering each group's planes into contiguous copies and
// scattering them back took a fifth of the mobile model's groups=4 conv (perf, cpu-clock).
namespace {

ConvGeom group_geom(const ConvGeom& g) {
  ConvGeom gg = g;
  gg.C = g.Cg(), gg.K = g.Kg(), gg.G = 1;
  return gg;
}

}  // namespace

bool conv_igemm_grouped_applies(const ConvGeom& g) {
  if (g.G == 1 || g.Cg() < kMinChannels) return false;
  const ConvGeom gg = group_geom(g);
  return conv_igemm_applies(gg) || conv_igemm_padded_applies(gg);
}

void conv_igemm_grouped_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                                Act act, float alpha) {
  const ConvGeom gg = group_geom(g);
  const int64_t PQ = g.PQ(), wsize = gg.K * gg.C * g.R * g.S;
  const ConvGeom u = conv_igemm_padded_applies(gg) ? unpadded(g) : g, ug = group_geom(u);
  const float* xs = needs_copy(g, u) ? padded_x(x, g, u) : x;
  const int64_t HWu = u.H * u.W;
  for (int64_t gi = 0; gi < g.G; ++gi)
    conv_igemm_forward(xs + gi * gg.C * HWu, w + gi * wsize, b ? b + gi * gg.K : nullptr, y + gi * gg.K * PQ,
                       ug, act, alpha, g.C * HWu, g.K * PQ);
}

void conv_igemm_grouped_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                                 float* db, const ConvGeom& g) {
  const ConvGeom gg = group_geom(g);
  const int64_t PQ = g.PQ(), wsize = gg.K * gg.C * g.R * g.S;
  const ConvGeom u = conv_igemm_padded_applies(gg) ? unpadded(g) : g, ug = group_geom(u);
  const bool copy = needs_copy(g, u);
  const float* xs = dw && copy ? padded_x(x, g, u) : x;  // x is not read without dw
  float* dxs = dx && copy ? padded_dx(g, u) : dx;
  const int64_t HWu = u.H * u.W;
  for (int64_t gi = 0; gi < g.G; ++gi)
    conv_igemm_backward(dy + gi * gg.K * PQ, xs ? xs + gi * gg.C * HWu : nullptr, w + gi * wsize,
                        dxs ? dxs + gi * gg.C * HWu : nullptr, dw ? dw + gi * wsize : nullptr,
                        db && dw ? db + gi * gg.K : nullptr, ug, g.C * HWu, g.K * PQ);
  if (dx && copy) unpad_images(dxs, g, u, dx);
}

}  // namespace cnnkern
