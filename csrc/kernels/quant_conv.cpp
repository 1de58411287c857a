// The quantized convolution (kernels/quant.h, quant_impl.h; the specification is
// cnnkern/backends/reference/quant.py): an implicit GEMM over the input padded once per call (cells
// x_zero, so a padded tap adds nothing), each output pixel's taps read in place: a kernel row covers S * C
// contiguous input bytes (read as a multiple of 4, the extra bytes meeting zero weights); grouped
// convolutions build im2col rows per group. One input channel (a grey image's first layer): the scalar
// path runs the direct kernel q8_conv_c1. Work items are tiles of output pixels of one image, so batch 1
// also spreads over the threads. The epilogue requantizes the tile's int32 accumulators (bias, zero points,
// ReLU) and, when a max pool follows, takes the pool's max on the accumulators first (the requantization
// is monotone) so that the conv's full-size output is never written. On the VNNI path (groups 1) the
// accumulators never leave the GEMM's registers: q8_conv_requant_vnni for no pool or a 1x2, 2x1 or 2x2
// window, q8_conv_fused_vnni for one input channel under any other window (quant.h).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/quant.h"
#include "kernels/quant_impl.h"
#include "runtime/alloc.h"
#include "runtime/common.h"

namespace cnnkern::q8 {

namespace {

// GEMM rows per work item (a multiple of the register tiles, 4, 6 and 8): a batch's layer in larger items
// (less set-up per row), a few images' in smaller ones (enough items for the threads)
constexpr int64_t kTileRows = 48, kBatchTileRows = 96;
constexpr int64_t kSlack = 64;  // bytes past the end of a scratch buffer that a read may touch

// len bytes in 8-byte pieces: reads and writes up to 7 bytes past len (into the slack, or into what the
// caller writes next). A run is often a handful of bytes (a group's few channels).
inline void copy_run(uint8_t* dst, const uint8_t* src, int64_t len) {
  for (int64_t o = 0; o < len; o += 8) std::memcpy(dst + o, src + o, 8);
}

// x (N,H,W,C) into dst (N,Hp,Wp,Cp): the padded cells and the channels past C hold x_zero.
void pad_input(const uint8_t* x, int64_t N, int64_t H, int64_t W, int64_t C, const Quad& pad, int64_t Cp,
               uint8_t fill, uint8_t* dst) {
  const int64_t Hp = H + pad[0] + pad[1], Wp = W + pad[2] + pad[3];
  parallel_for(N * Hp, [&](int64_t begin, int64_t end) {
    for (int64_t nh = begin; nh < end; ++nh) {
      const int64_t n = nh / Hp, hh = nh % Hp - pad[0];
      uint8_t* row = dst + nh * Wp * Cp;
      if (hh < 0 || hh >= H) {
        std::memset(row, fill, static_cast<size_t>(Wp * Cp));
        continue;
      }
      std::memset(row, fill, static_cast<size_t>(pad[2] * Cp));
      const uint8_t* src = x + (n * H + hh) * W * C;
      uint8_t* mid = row + pad[2] * Cp;
      if (Cp == C) {
        std::memcpy(mid, src, static_cast<size_t>(W * C));
      } else {
        for (int64_t w = 0; w < W; ++w) {
          std::memcpy(mid + w * Cp, src + w * C, static_cast<size_t>(C));
          std::memset(mid + w * Cp + C, fill, static_cast<size_t>(Cp - C));
        }
      }
      std::memset(mid + W * Cp, fill, static_cast<size_t>(pad[3] * Cp));
    }
  });
}

}  // namespace

carray<uint8_t> conv2d_forward(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
                               const carray<int32_t>& multiplier, const carray<int32_t>& shift,
                               int64_t x_zero, int64_t y_zero, bool relu, Pair stride, Quad padding,
                               Pair dilation, int64_t groups, Pair pool) {
  if (x.ndim() != 4 || w.ndim() != 4) invalid("x must be (N,H,W,C) and w (K,C/groups,R,S)");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  const int64_t K = w.shape(0), CG = w.shape(1), R = w.shape(2), S = w.shape(3);
  if (groups < 1 || C != CG * groups || K % groups) invalid("x and w do not match groups");
  for (auto* a : {&bias, &multiplier, &shift}) check_vec(*a, K, "bias, multiplier and shift");
  check_format(x, x_zero, CG * R * S);
  check_requant(multiplier, shift, y_zero);
  for (int64_t v : {stride[0], stride[1], dilation[0], dilation[1], pool[0], pool[1]})
    if (v < 1) invalid("stride, dilation and pool must be >= 1");
  for (int64_t v : padding)
    if (v < 0) invalid("padding must be >= 0");
  const int64_t P = (H + padding[0] + padding[1] - (dilation[0] * (R - 1) + 1)) / stride[0] + 1;
  const int64_t Q = (W + padding[2] + padding[3] - (dilation[1] * (S - 1) + 1)) / stride[1] + 1;
  if (P < 1 || Q < 1) invalid("the kernel does not fit the padded input");
  const int64_t ph = pool[0], pw = pool[1], PP = P / ph, QQ = Q / pw;
  if (PP < 1 || QQ < 1) invalid("the pool window does not fit the convolution's output");
  carray<uint8_t> y = new_array<uint8_t>({N, PP, QQ, K});
  uint8_t* yp = y.mutable_data();
  // groups == 1: the taps read in place (kernel rows over S * C contiguous bytes, or with a column dilation
  // taps (i, j) over the channels); grouped: im2col rows per group
  // one input channel on the scalar path: the direct kernel (quant.h's Q8C1), taps read byte by byte
  const Kernels kern = pick();
  const Layout layout = groups > 1          ? Layout::rows
                        : C == 1 && kern.c1 ? Layout::c1
                        : dilation[1] == 1  ? Layout::runs
                                            : Layout::implicit;
  const auto packing = packed(w, bias, {&multiplier, &shift, x_zero, y_zero, relu}, groups, layout);
  const Packed& p = *packing;
  py::gil_scoped_release release;
  const bool implicit = layout == Layout::implicit, rows_layout = layout == Layout::rows;
  const int64_t Cp = implicit ? round4(C) : C, Hp = H + padding[0] + padding[1];
  const int64_t Wp = W + padding[2] + padding[3];
  const bool padded = padding[0] || padding[1] || padding[2] || padding[3];
  const uint8_t* src = x.data();
  thread_local std::vector<uint8_t> padbuf;
  // copied with slack when a read may pass the end of x: runs of S * C bytes read as a multiple of 4 (the
  // extra bytes meet zero weights), im2col in 8-byte pieces
  if (padded || Cp != C || rows_layout || (layout == Layout::runs && S * C % 4)) {
    uint8_t* dst = grow(padbuf, N * Hp * Wp * Cp + kSlack);
    pad_input(src, N, H, W, C, padding, Cp, static_cast<uint8_t>(x_zero), dst);
    src = dst;
  }
  std::vector<int64_t> toff;
  const bool c1 = layout == Layout::c1, fused = C == 1 && groups == 1 && K <= 256 && kern.fused;
  // the sums requantized in the GEMM's registers (VNNI; groups 1, pool windows of 1, 2 or 4)
  const bool tiled = kern.tiled && groups == 1 && !c1;
  for (int64_t i = 0; i < R; ++i)
    if (layout == Layout::runs)
      toff.push_back(i * dilation[0] * Wp * C);
    else if (implicit || c1)
      for (int64_t j = 0; j < S; ++j) toff.push_back((i * dilation[0] * Wp + j * dilation[1]) * Cp);
  if (rows_layout) toff.push_back(0);
  if (c1 && toff.size() % 2) toff.push_back(0);  // the last pair's second tap: a zero weight
  // the tiled kernel's taps: one 4-step each (quant.h's q8_conv_requant_vnni), made once per call
  std::vector<int64_t> steps;
  if (tiled)
    for (int64_t t = 0; t < p.ntaps; ++t)
      for (int64_t s = 0; s < p.csteps; ++s) steps.push_back(toff[static_cast<size_t>(t)] + 4 * s);
  const int64_t KG = K / groups, nb16 = p.nblocks * 16, ldc = groups * nb16, kp = p.csteps * 4;
  const int64_t win = ph * pw, cells = PP * QQ;
  const int64_t tc = std::max<int64_t>(1, (N >= 4 ? kBatchTileRows : kTileRows) / win);
  const int64_t tiles = (cells + tc - 1) / tc, rows_per_tile = tc * win;
  const int64_t sh = stride[0], sw = stride[1];
  std::vector<int64_t> woff;  // a pool window's conv pixels from its first, in window order
  for (int64_t a = 0; a < ph; ++a)
    for (int64_t b = 0; b < pw; ++b) woff.push_back((a * sh * Wp + b * sw) * Cp);
  parallel_for(N * tiles, [&](int64_t begin, int64_t end) {
    thread_local std::vector<const uint8_t*> rows_buf, pix_buf;
    thread_local std::vector<uint8_t> cols_buf;
    thread_local std::vector<int32_t> acc_buf;
    const uint8_t** pix = grow(pix_buf, rows_per_tile);
    const uint8_t** rows = rows_layout ? grow(rows_buf, rows_per_tile) : pix;
    int32_t* acc = grow(acc_buf, rows_per_tile * ldc);
    uint8_t* cols = rows_layout ? grow(cols_buf, rows_per_tile * kp + kSlack) : nullptr;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles, cell0 = (item % tiles) * tc, ncell = std::min(tc, cells - cell0);
      const int64_t m = ncell * win;
      int64_t cp = cell0 / QQ, cq = cell0 % QQ;  // the cell's position in the (pooled) output
      const uint8_t* corner = src + ((n * Hp + cp * ph * sh) * Wp + cq * pw * sw) * Cp;
      for (int64_t ci = 0, r = 0; ci < ncell; ++ci) {  // the conv pixels of each cell, in window order
        for (int64_t j = 0; j < win; ++j) pix[r++] = corner + woff[j];
        corner += pw * sw * Cp;
        if (++cq == QQ) cq = 0, ++cp, corner = src + ((n * Hp + cp * ph * sh) * Wp) * Cp;
      }
      for (int64_t g = 0; g < groups; ++g) {
        if (rows_layout) {  // im2col rows of group g in (i, j, c) order (else the pixels' own rows)
          for (int64_t r = 0; r < m; ++r) {
            uint8_t* row = cols + r * kp;
            rows[r] = row;
            for (int64_t i = 0; i < R; ++i)
              for (int64_t j = 0; j < S; ++j, row += CG)
                copy_run(row, pix[r] + (i * dilation[0] * Wp + j * dilation[1]) * C + g * CG, CG);
          }
        }
        if (tiled) {
          const Q8Gemm gemm{steps.data(), p.ntaps * p.csteps, 1, p.group_w(0), p.nblocks};
          if (kern.tiled(rows, m, win, gemm, p.row(0), K, yp + (n * cells + cell0) * K)) continue;
        }
        if (fused) {
          const Q8Gemm gemm{toff.data(), p.ntaps, p.csteps, p.group_w(0), p.nblocks};
          kern.fused(pix, ncell, win, gemm, p.row(0), K, yp + (n * cells + cell0) * K);
          continue;
        }
        if (c1) {
          kern.c1(rows, m, Q8C1{toff.data(), (p.ntaps + 1) / 2, p.w16.data(), nb16}, acc, ldc);
        } else {
          const Q8Gemm gemm{toff.data(), p.ntaps, p.csteps, p.group_w(g), p.nblocks};
          kern.gemm(rows, m, gemm, acc + g * nb16, ldc);
        }
        const RequantRow rq = p.row(g);
        for (int64_t ci = 0; ci < ncell; ++ci) {
          const int32_t* sums = acc + ci * win * ldc + g * nb16;
          kern.requant(sums, ldc, win, KG, rq, yp + (n * cells + cell0 + ci) * K + g * KG);
        }
      }
    }
  });
  return y;
}

}  // namespace cnnkern::q8
