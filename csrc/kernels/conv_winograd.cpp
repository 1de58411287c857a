// Winograd F(2x2, 3x3) convolution (docs/winograd.md): a 3x3, stride-1 conv computes each 2x2 output tile
// from a 4x4 input tile with 16 multiplications per (input, output) channel pair instead of 36. The filters
// are transformed (U = G g G^T), the input tiles too (V = B^T d B); the 16 positions xi of the 4x4 transform
// domain are then 16 independent GEMMs, M[xi] (K, tiles) = U[xi] (K, C) . V[xi] (C, tiles), on the packed
// SGEMM with its SIMD micro-kernels; the output tiles come back as Y = A^T M A, then bias and activation.
// Arithmetic is 2.25x smaller; the transforms add a few passes over the data, and the rounding is a little
// larger than a direct conv's (the conformance tolerance holds; tests/test_conformance_conv.py).
//
// The dx of a stride-1 conv is the same kind of conv: dy convolved with the filters flipped and their
// channel roles swapped, padded by 2 - pad; conv_winograd_dx runs it through the same code.
//
// Work items are runs of tile rows of the batch (an item may span images), about 96 tiles each, split over
// the threads; every result is computed by one item in a fixed order, so it depends neither on the thread
// count nor on timing.
#include "kernels/conv_winograd.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/activation.h"
#include "kernels/conv_winograd_tiles.h"
#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {
namespace {

constexpr int64_t kTilesPerItem = 96;

// One Winograd conv: input (N, Cin, H, W), 16 packed filter matrices (Kout x Cin), output (N, Kout, P, Q),
// the input's top-left padding (may be negative: a crop).
struct Problem {
  const float* in;
  int64_t N, Cin, H, W;
  int64_t Kout, P, Q;
  int64_t pt, pl;
  std::vector<PackedA> u;  // 16
  int64_t TH() const { return (P + 1) / 2; }
  int64_t TW() const { return (Q + 1) / 2; }
};

// U[xi] (Kout x Cin) of the 3x3 filter g(o, c) as `tap` returns it: U = G g G^T, G = [1 0 0; .5 .5 .5;
// .5 -.5 .5; 0 0 1], in double, rounded once.
template <typename Tap>
void transform_filters(int64_t Kout, int64_t Cin, const Tap& tap, float* u) {
  for (int64_t o = 0; o < Kout; ++o)
    for (int64_t c = 0; c < Cin; ++c) {
      double g[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) g[r][s] = tap(o, c, r, s);
      for (int s = 0; s < 3; ++s) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5 * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5 * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
      }
      for (int i = 0; i < 4; ++i) {
        const double v[4] = {t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]),
                             0.5 * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) u[((i * 4 + j) * Kout + o) * Cin + c] = static_cast<float>(v[j]);
      }
    }
}

// The row loops of conv_winograd_tiles.h: their AVX2 build on the SIMD paths, else the portable one.
struct RowLoops {
  bool simd = false;
  void input_rows(float* d0, float* d1, float* d2, float* d3, int64_t width) const {
#ifdef CNNKERN_X86
    if (simd) return winograd_input_rows_avx2(d0, d1, d2, d3, width);
#endif
    winograd_input_rows(d0, d1, d2, d3, width);
  }
  void input_cols(const float* t, int64_t TW, float* v0, float* v1, float* v2, float* v3) const {
#ifdef CNNKERN_X86
    if (simd) return winograd_input_cols_avx2(t, TW, v0, v1, v2, v3);
#endif
    winograd_input_cols(t, TW, v0, v1, v2, v3);
  }
  void output_row(const float* const m[16], int64_t TW, float bias, float* r0, float* r1) const {
#ifdef CNNKERN_X86
    if (simd) return winograd_output_row_avx2(m, TW, bias, r0, r1);
#endif
    winograd_output_row(m, TW, bias, r0, r1);
  }
};

// V[xi][c][col0 + tx] for the tile row ty of channel c: the 4 input rows 2*ty - pt + i, zero outside the
// image, as rows of 2*TW + 2 values starting at column -pl; B^T d over the rows, then d B over each tile's
// 4 columns.
void input_tile_row(const Problem& pr, const RowLoops& loops, const float* xc, int64_t ty, float* v,
                    int64_t ldv, int64_t col0, float* rows) {
  const int64_t TW = pr.TW(), width = 2 * TW + 2;
  float* d[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  const int64_t lo = std::max<int64_t>(0, pr.pl), hi = std::min<int64_t>(width, pr.W + pr.pl);  // in-image
  for (int i = 0; i < 4; ++i) {
    const int64_t y = 2 * ty - pr.pt + i;
    std::fill(d[i], d[i] + width, 0.0f);
    if (y >= 0 && y < pr.H && lo < hi) std::memcpy(d[i] + lo, xc + y * pr.W + (lo - pr.pl), (hi - lo) * 4);
  }
  loops.input_rows(d[0], d[1], d[2], d[3], width);
  const int64_t plane = pr.Cin * ldv;
  for (int k = 0; k < 4; ++k) {
    float* v0 = v + (k * 4) * plane + col0;
    loops.input_cols(d[k], TW, v0, v0 + plane, v0 + 2 * plane, v0 + 3 * plane);
  }
}

// Channel o of the item's tile rows [r0, r1) (row r: image r / TH, tile row r % TH) from the GEMMs' m (16
// planes of Kout rows of ldm tile values): the output transform over all the item's tiles in one pass (so it
// vectorises however few tiles a row has), then each tile row's two output rows copied out, bias added
// before, the activation after; r: 4 * ldm floats of scratch.
void output_channel(const Problem& pr, const RowLoops& loops, const float* m, int64_t ldm, int64_t o,
                    int64_t r0, int64_t r1, float bias, float* out, float* r, Act act, float alpha) {
  const int64_t TW = pr.TW(), TH = pr.TH(), plane = pr.Kout * ldm, PQ = pr.P * pr.Q;
  const float* mt[16];
  for (int xi = 0; xi < 16; ++xi) mt[xi] = m + xi * plane + o * ldm;
  float *even = r, *odd = r + 2 * ldm;  // the tiles' top and bottom output rows, 2 values per tile
  loops.output_row(mt, (r1 - r0) * TW, bias, even, odd);
  for (int64_t row = r0; row < r1; ++row) {
    float* yo = out + (row / TH * pr.Kout + o) * PQ;
    const int64_t p = 2 * (row % TH), n = std::min<int64_t>(2, pr.P - p), at = 2 * (row - r0) * TW;
    std::memcpy(yo + p * pr.Q, even + at, pr.Q * 4);
    if (n == 2) std::memcpy(yo + (p + 1) * pr.Q, odd + at, pr.Q * 4);
    activation_inplace(act, yo + p * pr.Q, n * pr.Q, alpha);
  }
}

// Items are runs of `band` tile rows of the whole batch (row n*TH + ty), so that small images (a 3 x 3
// output: 4 tiles) still give the GEMMs about kTilesPerItem columns: an item may span several images.
void run(const Problem& pr, const float* bias, float* out, Act act, float alpha) {
  const int64_t TH = pr.TH(), TW = pr.TW(), nr = pr.u[0].uk.nr, rows_all = pr.N * TH;
  const int64_t band = std::max<int64_t>(1, std::min(rows_all, (kTilesPerItem + TW - 1) / TW));
  const int64_t items = (rows_all + band - 1) / band, HW = pr.H * pr.W;
  RowLoops loops;
#ifdef CNNKERN_X86
  loops.simd = simd_level() != Simd::scalar;
#endif
  const auto work = [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> vbuf, mbuf, rowbuf;
    const int64_t maxcols = band * TW, ldv = (maxcols + nr - 1) / nr * nr;
    float* v = grow(vbuf, 16 * pr.Cin * ldv);
    float* m = grow(mbuf, 16 * pr.Kout * maxcols);
    float* rows = grow(rowbuf, std::max(4 * (2 * TW + 2), 4 * maxcols));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t r0 = item * band, r1 = std::min(rows_all, r0 + band), ncols = (r1 - r0) * TW;
      for (int64_t c = 0; c < pr.Cin; ++c) {
        for (int64_t r = r0; r < r1; ++r)
          input_tile_row(pr, loops, pr.in + (r / TH * pr.Cin + c) * HW, r % TH, v + c * ldv, ldv,
                         (r - r0) * TW, rows);
        for (int64_t xi = 0; xi < 16; ++xi)  // the padding columns the micro-kernel reads: zeros
          std::fill(v + (xi * pr.Cin + c) * ldv + ncols, v + (xi * pr.Cin + c) * ldv + ldv, 0.0f);
      }
      for (int64_t xi = 0; xi < 16; ++xi)
        sgemm_padded_b_serial(pr.u[xi], v + xi * pr.Cin * ldv, ldv, 0, ncols, m + xi * pr.Kout * ncols, ncols,
                              false);
      for (int64_t o = 0; o < pr.Kout; ++o)
        output_channel(pr, loops, m, ncols, o, r0, r1, bias ? bias[o] : 0.0f, out, rows, act, alpha);
    }
  };
  if (num_threads() == 1 || items == 1)
    work(0, items);
  else
    parallel_for(items, work);
}

// Transforms the filters with `tap`, packs the 16 matrices for the micro-kernel and runs the conv.
template <typename Tap>
void transform_and_run(Problem pr, const Tap& tap, const float* bias, float* out, Act act, float alpha) {
  const UKernel& uk = ukernel();
  thread_local std::vector<float> ubuf, packbuf;
  float* u = grow(ubuf, 16 * pr.Kout * pr.Cin);
  transform_filters(pr.Kout, pr.Cin, tap, u);
  const int64_t per = packed_a_floats(pr.Kout, pr.Cin, uk);
  float* packed = grow(packbuf, 16 * per);
  for (int64_t xi = 0; xi < 16; ++xi)
    pr.u.push_back(
        pack_a(pr.Kout, pr.Cin, MatView{u + xi * pr.Kout * pr.Cin, pr.Cin, 1}, uk, packed + xi * per));
  run(pr, bias, out, act, alpha);
}

}  // namespace

bool conv_winograd_applies(const ConvGeom& g) {
  return g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.G == 1 && g.C > 0 &&
         g.K > 0 && g.P > 0 && g.Q > 0;
}

void conv_winograd_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                           Act act, float alpha) {
  if (g.N == 0) return;
  const Problem pr{x, g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.pt, g.pl, {}};
  const auto tap = [&](int64_t o, int64_t c, int r, int s) { return w[((o * g.C + c) * 3 + r) * 3 + s]; };
  transform_and_run(pr, tap, b, y, act, alpha);
}

void conv_winograd_dx(const float* dy, const float* w, float* dx, const ConvGeom& g) {
  if (g.N == 0) return;
  // dx (N, C, H, W) = dy (N, K, P, Q) convolved with w'[c][k][r][s] = w[k][c][2-r][2-s], padded by 2 - pad.
  const Problem pr{dy, g.N, g.K, g.P, g.Q, g.C, g.H, g.W, 2 - g.pt, 2 - g.pl, {}};
  const auto tap = [&](int64_t c, int64_t k, int r, int s) {
    return w[((k * g.C + c) * 3 + (2 - r)) * 3 + (2 - s)];
  };
  transform_and_run(pr, tap, nullptr, dx, Act::none, 0.0f);
}

}  // namespace cnnkern
