// What quant.cpp (dense, max pool, bindings) and quant_conv.cpp (the convolution) share: the argument
// checks, the SIMD choice, the requantization constants, and the cache of packed layers.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/quant.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern::q8 {

using Gemm = void (*)(const uint8_t* const*, int64_t, const Q8Gemm&, int32_t*, int64_t);
using RequantFn = void (*)(const int32_t*, int64_t, int64_t, int64_t, const RequantRow&, uint8_t*);
using ConvC1 = void (*)(const uint8_t* const*, int64_t, const Q8C1&, int32_t*, int64_t);
struct Kernels {
  Gemm gemm;
  ConvC1 c1;  // null: one input channel runs the GEMM too
  // null: the GEMM, then requant (quant.h's q8_conv_fused_vnni; one input channel, where tiled does not run)
  void (*fused)(const uint8_t* const*, int64_t, int64_t, const Q8Gemm&, const RequantRow&, int64_t, uint8_t*);
  // null: the GEMM, then requant (quant.h's q8_conv_requant_vnni; groups 1, pool windows of 1, 2 or 4)
  bool (*tiled)(const uint8_t* const*, int64_t, int64_t, const Q8Gemm&, const RequantRow&, int64_t, uint8_t*);
  RequantFn requant;
  const char* name;
};
// The kernels of the SIMD path in use: VNNI needs the avx512 path AND the CPU's AVX512_VNNI (without it the
// avx512 path runs the AVX2 GEMM, whose results are the same integers).
Kernels pick();

[[noreturn]] void invalid(const std::string& message);
void check_format(const carray<uint8_t>& x, int64_t x_zero, int64_t reduction);
void check_requant(const carray<int32_t>& multiplier, const carray<int32_t>& shift, int64_t y_zero);
void check_vec(const carray<int32_t>& a, int64_t n, const char* name);

constexpr int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

// A layer's weights packed for q8_igemm (per group: [nblocks][ntaps][csteps][16][4], zero beyond the
// layer's channels and taps) with its requantization constants per output channel (RequantRow's arrays).
struct Packed {
  int64_t ntaps = 1, csteps = 0, nblocks = 0, groups = 1;
  std::vector<int8_t> w;
  std::vector<int16_t> w16;   // Layout::c1's weights instead (quant.h's Q8C1)
  std::vector<int64_t> wsum;  // per output channel
  std::vector<int32_t> base, mult;
  std::vector<int64_t> round, shift, lo;
  std::vector<Requant16> blocks;  // per group, per 16 channels (quant.h)
  std::vector<uint8_t> narrow;    // per group: RequantRow::narrow
  int64_t zero = 0;
  const int8_t* group_w(int64_t g) const { return w.data() + g * nblocks * ntaps * csteps * 64; }
  // group g's channels (groups of the same size)
  RequantRow row(int64_t g) const {
    const size_t o = static_cast<size_t>(g * (static_cast<int64_t>(base.size()) / groups));
    const size_t b = static_cast<size_t>(g * nblocks);
    return {base.data() + o,   mult.data() + o,
            round.data() + o,  shift.data() + o,
            lo.data() + o,     zero,
            blocks.data() + b, narrow.empty() ? false : narrow[g] != 0};
  }
};
// How a packing lays out the reduction: conv kernel rows i each over the run of S * C input bytes they
// cover, padded to a multiple of 4 ("runs": read in place from the input; stride-1 columns, no groups);
// conv taps (i, j) each over the padded channels ("implicit":
// read in place from the input), or one run of (i, j, c) per group ("rows": im2col / dense rows); "c1":
// one input channel, groups 1, the taps in 16-bit pairs for q8_conv_c1 (w16, not w).
enum class Layout : int64_t { implicit = 0, rows = 1, runs = 2, c1 = 3 };
struct Epilogue {
  const carray<int32_t>* multiplier;  // null: accumulators only (dense_q8_acc)
  const carray<int32_t>* shift;
  int64_t x_zero, y_zero;
  bool relu;
};
// The packing of w (K, C/groups, R, S) (dense: (out, in) as (out, in, 1, 1)) with bias and the epilogue,
// from a small cache keyed by the arrays' CONTENTS (compared byte for byte) and the scalars, so a model's
// layers are packed once, not per call; a changed array is a different key. w and bias are checked against
// the format when packed (std::invalid_argument, the reference's messages).
std::shared_ptr<const Packed> packed(const carray<int8_t>& w, const carray<int32_t>& bias, const Epilogue& e,
                                     int64_t groups, Layout layout);

// Per-thread scratch that only grows (no allocation per call once warm).
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace cnnkern::q8

namespace cnnkern::q8 {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;
// x (N,H,W,C) channels-last, w (K,C/groups,R,S) -> y (N,P,Q,K), or with pool = (ph, pw) != (1, 1) the
// max pool of that window and stride (floor mode, no padding) fused: y (N,P/ph,Q/pw,K). quant_conv.cpp.
carray<uint8_t> conv2d_forward(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
                               const carray<int32_t>& multiplier, const carray<int32_t>& shift,
                               int64_t x_zero, int64_t y_zero, bool relu, Pair stride, Quad padding,
                               Pair dilation, int64_t groups, Pair pool);

}  // namespace cnnkern::q8
