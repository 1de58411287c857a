// The int8 inference kernels (kernels/quant.h; the specification is cnnkern/backends/reference/quant.py):
// quantized conv2d and dense with the requantization epilogue fused, the dense accumulators (the float
// logits' source), and max pooling on uint8 codes. The Python side (cnnkern/backends/cpp_quant.py) checks
// dtypes and value ranges; the shapes are checked here as well, since a wrong one would read out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/quant.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

void q8_gemm_scalar(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                    int32_t* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    const uint8_t* ai = a + i * lda;
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      int32_t acc[16] = {};
      const int8_t* wb = w + blk * kp * 16;
      for (int64_t t = 0; t < kp / 4; ++t)
        for (int64_t j = 0; j < 16; ++j)
          for (int64_t u = 0; u < 4; ++u) acc[j] += int32_t(ai[4 * t + u]) * int32_t(wb[t * 64 + 4 * j + u]);
      std::copy(acc, acc + 16, c + i * ldc + blk * 16);
    }
  }
}

namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;
constexpr int64_t kTile = 64;  // rows (output pixels or samples) per work item

void invalid(const std::string& message) { throw std::invalid_argument(message); }

// The GEMM of the SIMD path in use: VNNI needs the avx512 path AND the CPU's AVX512_VNNI (without it the
// avx512 path runs the AVX2 kernel, whose results are the same integers).
using Gemm = void (*)(const uint8_t*, int64_t, int64_t, const int8_t*, int64_t, int64_t, int32_t*, int64_t);
struct GemmPath {
  Gemm fn;
  const char* name;
};
GemmPath pick_gemm() {
  const Simd level = simd_level();
#if defined(CNNKERN_X86) && (defined(__GNUC__) || defined(__clang__))
  if (level == Simd::avx512 && __builtin_cpu_supports("avx512vnni")) return {q8_gemm_vnni, "vnni"};
  if (level != Simd::scalar) return {q8_gemm_avx2, "avx2"};
#endif
  (void)level;
  return {q8_gemm_scalar, "scalar"};
}

// The weights of output channels [k0, k0 + kn), each `taps` long, packed (quant.h) with kp >= taps; and
// each channel's sum of weights (for the input zero point).
struct Packed {
  std::vector<int8_t> w;
  std::vector<int64_t> wsum;
  int64_t kp, nblocks;
};

Packed pack(const int8_t* w, int64_t kn, int64_t taps) {
  Packed p;
  p.kp = (taps + 3) / 4 * 4;
  p.nblocks = (kn + 15) / 16;
  p.w.assign(static_cast<size_t>(p.nblocks * p.kp * 16), 0);
  p.wsum.assign(static_cast<size_t>(kn), 0);
  for (int64_t k = 0; k < kn; ++k)
    for (int64_t t = 0; t < taps; ++t) {
      const int8_t v = w[k * taps + t];
      p.w[static_cast<size_t>((k / 16) * p.kp * 16 + (t / 4) * 64 + (k % 16) * 4 + t % 4)] = v;
      p.wsum[static_cast<size_t>(k)] += v;
    }
  return p;
}

struct Requant {
  const int32_t* bias;
  const int32_t* multiplier;
  const int32_t* shift;
  int64_t x_zero, y_zero;
  bool relu;
};

}  // namespace

void q8_requant_scalar(const int32_t* sum, int64_t n, const RequantRow& q, uint8_t* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = requant_one(sum[k], q, k);
}

namespace {

// The requantization constants of channels [0, K) as RequantRow's arrays (kept alive by this object).
struct Epilogue {
  std::vector<int32_t> base, mult;
  std::vector<int64_t> round, shift, lo;
  int64_t zero = 0;
  // channel k = the packed channel kk of p
  void add(const Requant& q, int64_t k, int64_t wsum) {
    const int64_t s = q.shift[k];
    base.push_back(static_cast<int32_t>(static_cast<uint32_t>(q.bias[k] - q.x_zero * wsum)));  // wraps
    mult.push_back(q.multiplier[k]);
    round.push_back(int64_t{1} << (s - 1));
    shift.push_back(s);
    lo.push_back(q.relu ? q.y_zero : 0);
    zero = q.y_zero;
  }
  RequantRow row(int64_t k0) const {
    const size_t o = static_cast<size_t>(k0);
    return {base.data() + o, mult.data() + o, round.data() + o, shift.data() + o, lo.data() + o, zero};
  }
};

using RequantFn = void (*)(const int32_t*, int64_t, const RequantRow&, uint8_t*);
RequantFn pick_requant() {
#if defined(CNNKERN_X86) && (defined(__GNUC__) || defined(__clang__))
  if (simd_level() == Simd::avx512) return q8_requant_avx512;
  if (simd_level() == Simd::avx2) return q8_requant_avx2;
#endif
  return q8_requant_scalar;
}

// The format's value ranges (the reference's checks, same messages), checked here so that the Python side
// need not scan the arrays again on every call.
void check_format(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
                  int64_t x_zero, int64_t reduction) {
  const uint8_t* xp = x.data();
  uint8_t top = 0;
  for (int64_t i = 0, n = x.size(); i < n; ++i) top = std::max(top, xp[i]);
  if (top > 127) invalid("x holds " + std::to_string(top) + ": activations are 7-bit codes in [0, 127]");
  const int8_t* wp = w.data();
  int8_t low = 0;
  for (int64_t i = 0, n = w.size(); i < n; ++i) low = std::min(low, wp[i]);
  if (low < -127) invalid("w holds -128: weights are in [-127, 127]");
  for (int64_t i = 0; i < bias.size(); ++i)
    if (bias.data()[i] > (1 << 30) || bias.data()[i] < -(1 << 30)) invalid("|bias| must be <= 2**30");
  if (x_zero < 0 || x_zero > 127) invalid("x_zero must be in [0, 127], got " + std::to_string(x_zero));
  if (reduction > (int64_t{1} << 16))
    invalid("the reduction length " + std::to_string(reduction) + " exceeds 65536");
}

void check_requant(const carray<int32_t>& multiplier, const carray<int32_t>& shift, int64_t y_zero) {
  for (int64_t i = 0; i < multiplier.size(); ++i) {
    const int64_t m = multiplier.data()[i], sh = shift.data()[i];
    if ((m != 0 && m < (int64_t{1} << 30)) || m < 0 || sh < 1 || sh > 62)
      invalid("multiplier must be 0 or in [2**30, 2**31), shift in [1, 62]");
  }
  if (y_zero < 0 || y_zero > 127) invalid("y_zero must be in [0, 127], got " + std::to_string(y_zero));
}

void check_vec(const carray<int32_t>& a, int64_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    invalid(std::string(name) + " must have shape (" + std::to_string(n) + ",)");
}

// x (N,H,W,C) channels-last, w (K,C/groups,R,S) -> y (N,P,Q,K). Work items: tiles of kTile output pixels
// of one image; each builds its im2col rows (taps in (i, j, c) order: whole runs of a pixel's channels),
// runs the GEMM, and requantizes the tile's rows, which are contiguous runs of y.
carray<uint8_t> conv2d_q8_forward(const carray<uint8_t>& x, const carray<int8_t>& w,
                                  const carray<int32_t>& bias, const carray<int32_t>& multiplier,
                                  const carray<int32_t>& shift, int64_t x_zero, int64_t y_zero, bool relu,
                                  Pair stride, Quad padding, Pair dilation, int64_t groups) {
  if (x.ndim() != 4 || w.ndim() != 4) invalid("x must be (N,H,W,C) and w (K,C/groups,R,S)");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  const int64_t K = w.shape(0), CG = w.shape(1), R = w.shape(2), S = w.shape(3);
  if (groups < 1 || C != CG * groups || K % groups) invalid("x and w do not match groups");
  for (auto* a : {&bias, &multiplier, &shift}) check_vec(*a, K, "bias, multiplier and shift");
  check_format(x, w, bias, x_zero, CG * R * S);
  check_requant(multiplier, shift, y_zero);
  const int64_t P = (H + padding[0] + padding[1] - (dilation[0] * (R - 1) + 1)) / stride[0] + 1;
  const int64_t Q = (W + padding[2] + padding[3] - (dilation[1] * (S - 1) + 1)) / stride[1] + 1;
  if (P < 1 || Q < 1) invalid("the kernel does not fit the padded input");
  carray<uint8_t> y = new_array<uint8_t>({N, P, Q, K});
  const uint8_t* xp = x.data();
  uint8_t* yp = y.mutable_data();
  const int64_t KG = K / groups, taps = CG * R * S, PQ = P * Q, tiles = (PQ + kTile - 1) / kTile;
  const Requant q{bias.data(), multiplier.data(), shift.data(), x_zero, y_zero, relu};
  {
    py::gil_scoped_release release;
    std::vector<Packed> packed;
    Epilogue epi;
    std::vector<int8_t> hwc(static_cast<size_t>(KG * taps));
    for (int64_t g = 0; g < groups; ++g) {
      const int8_t* wg = w.data() + g * KG * taps;
      for (int64_t k = 0; k < KG; ++k)  // (c, i, j) -> (i, j, c), the im2col rows' order
        for (int64_t c = 0; c < CG; ++c)
          for (int64_t ij = 0; ij < R * S; ++ij)
            hwc[static_cast<size_t>(k * taps + ij * CG + c)] = wg[(k * CG + c) * R * S + ij];
      packed.push_back(pack(hwc.data(), KG, taps));
      for (int64_t k = 0; k < KG; ++k) epi.add(q, g * KG + k, packed.back().wsum[static_cast<size_t>(k)]);
    }
    const Gemm gemm = pick_gemm().fn;
    const RequantFn requant = pick_requant();
    const uint8_t fill = static_cast<uint8_t>(x_zero);
    const bool contiguous = groups == 1 && dilation[1] == 1;  // a kernel row's taps are adjacent pixels
    const int64_t run = S * C;
    parallel_for(N * tiles, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> cols;
      std::vector<int32_t> acc;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t n = item / tiles, r0 = (item % tiles) * kTile, rows = std::min(kTile, PQ - r0);
        for (int64_t g = 0; g < groups; ++g) {
          const Packed& p = packed[static_cast<size_t>(g)];
          cols.assign(static_cast<size_t>(rows * p.kp), 0);
          acc.resize(static_cast<size_t>(rows * p.nblocks * 16));
          // im2col: a padded cell holds x_zero (it then adds nothing)
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t pix = r0 + r, oh = pix / Q, ow = pix % Q;
            uint8_t* row = cols.data() + r * p.kp;
            const int64_t w0 = ow * stride[1] - padding[2];
            for (int64_t i = 0; i < R; ++i) {
              const int64_t hh = oh * stride[0] - padding[0] + i * dilation[0];
              if (contiguous && hh >= 0 && hh < H && w0 >= 0 && w0 + S <= W) {
                // the S taps of this kernel row are one run of S * C bytes of x
                const uint8_t* src = xp + ((n * H + hh) * W + w0) * C;
                if (run >= 64)
                  std::memcpy(row, src, static_cast<size_t>(run));
                else
                  for (int64_t c = 0; c < run; ++c) row[c] = src[c];
                row += run;
                continue;
              }
              for (int64_t j = 0; j < S; ++j, row += CG) {
                const int64_t ww = ow * stride[1] - padding[2] + j * dilation[1];
                // plain loops, not memcpy: a run is often a handful of bytes (1 for a grayscale input)
                if (hh >= 0 && hh < H && ww >= 0 && ww < W) {
                  const uint8_t* src = xp + ((n * H + hh) * W + ww) * C + g * CG;
                  for (int64_t c = 0; c < CG; ++c) row[c] = src[c];
                } else {
                  for (int64_t c = 0; c < CG; ++c) row[c] = fill;
                }
              }
            }
          }
          const int64_t ldc = p.nblocks * 16;
          gemm(cols.data(), p.kp, rows, p.w.data(), p.kp, p.nblocks, acc.data(), ldc);
          const RequantRow rq = epi.row(g * KG);
          for (int64_t r = 0; r < rows; ++r)
            requant(acc.data() + r * ldc, KG, rq, yp + (n * PQ + r0 + r) * K + g * KG);
        }
      }
    });
  }
  return y;
}

// The dense layer over row tiles of x: fn(tile's first row, rows, accumulators (rows x ldc), ldc, packing).
template <typename Fn>
void dense_rows(const carray<uint8_t>& x, const carray<int8_t>& w, const Fn& fn) {
  const int64_t N = x.shape(0), IN = x.shape(1), OUT = w.shape(0);
  const Packed p = pack(w.data(), OUT, IN);
  const Gemm gemm = pick_gemm().fn;
  const uint8_t* xp = x.data();
  const int64_t tiles = (N + kTile - 1) / kTile, ldc = p.nblocks * 16;
  parallel_for(tiles, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> rowsbuf;
    std::vector<int32_t> acc;
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * kTile, rows = std::min(kTile, N - r0);
      rowsbuf.assign(static_cast<size_t>(rows * p.kp), 0);
      for (int64_t r = 0; r < rows; ++r)
        std::copy(xp + (r0 + r) * IN, xp + (r0 + r + 1) * IN, &rowsbuf[r * p.kp]);
      acc.resize(static_cast<size_t>(rows * ldc));
      gemm(rowsbuf.data(), p.kp, rows, p.w.data(), p.kp, p.nblocks, acc.data(), ldc);
      fn(r0, rows, acc.data(), ldc, p);
    }
  });
}

void check_dense(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias) {
  if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(1))
    invalid("x (N,in) and w (out,in) must match");
  check_vec(bias, w.shape(0), "bias");
}

carray<uint8_t> dense_q8_forward(const carray<uint8_t>& x, const carray<int8_t>& w,
                                 const carray<int32_t>& bias, const carray<int32_t>& multiplier,
                                 const carray<int32_t>& shift, int64_t x_zero, int64_t y_zero, bool relu) {
  check_dense(x, w, bias);
  check_vec(multiplier, w.shape(0), "multiplier");
  check_vec(shift, w.shape(0), "shift");
  check_format(x, w, bias, x_zero, w.shape(1));
  check_requant(multiplier, shift, y_zero);
  const int64_t OUT = w.shape(0);
  carray<uint8_t> y = new_array<uint8_t>({x.shape(0), OUT});
  uint8_t* yp = y.mutable_data();
  const Requant q{bias.data(), multiplier.data(), shift.data(), x_zero, y_zero, relu};
  py::gil_scoped_release release;
  Epilogue epi;
  const int8_t* wp = w.data();
  const int64_t IN = w.shape(1);
  for (int64_t k = 0; k < OUT; ++k) {
    int64_t wsum = 0;
    for (int64_t t = 0; t < IN; ++t) wsum += wp[k * IN + t];
    epi.add(q, k, wsum);
  }
  const RequantRow rq = epi.row(0);
  const RequantFn requant = pick_requant();
  dense_rows(x, w, [&](int64_t r0, int64_t rows, const int32_t* acc, int64_t ldc, const Packed&) {
    for (int64_t r = 0; r < rows; ++r) requant(acc + r * ldc, OUT, rq, yp + (r0 + r) * OUT);
  });
  return y;
}

carray<int32_t> dense_q8_acc(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
                             int64_t x_zero) {
  check_dense(x, w, bias);
  check_format(x, w, bias, x_zero, w.shape(1));
  const int64_t OUT = w.shape(0);
  carray<int32_t> y = new_array<int32_t>({x.shape(0), OUT});
  int32_t* yp = y.mutable_data();
  const int32_t* b = bias.data();
  py::gil_scoped_release release;
  dense_rows(x, w, [&](int64_t r0, int64_t rows, const int32_t* acc, int64_t ldc, const Packed& p) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < OUT; ++k)
        yp[(r0 + r) * OUT + k] =
            static_cast<int32_t>(acc[r * ldc + k] + b[k] - x_zero * p.wsum[static_cast<size_t>(k)]);
  });
  return y;
}

int64_t pool_out(int64_t len, int64_t k, int64_t s, int64_t pad, bool ceil_mode) {
  const int64_t num = len + 2 * pad - (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = num / s + 1;
  if (ceil_mode && (out - 1) * s >= len + pad) --out;
  return out;
}

// x (N,H,W,C) -> (N,P,Q,C): each output pixel the elementwise max of its window's channel vectors.
carray<uint8_t> maxpool2d_q8_forward(const carray<uint8_t>& x, Pair kernel_size, Pair stride, Pair padding,
                                     bool ceil_mode) {
  if (x.ndim() != 4) invalid("x must be (N,H,W,C)");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  const int64_t P = pool_out(H, kernel_size[0], stride[0], padding[0], ceil_mode);
  const int64_t Q = pool_out(W, kernel_size[1], stride[1], padding[1], ceil_mode);
  if (P < 1 || Q < 1) invalid("the pool window does not fit the input");
  carray<uint8_t> y = new_array<uint8_t>({N, P, Q, C});
  const uint8_t* xp = x.data();
  uint8_t* yp = y.mutable_data();
  py::gil_scoped_release release;
  parallel_for(N * P, [&](int64_t begin, int64_t end) {
    for (int64_t np = begin; np < end; ++np) {
      const int64_t n = np / P, p = np % P;
      const int64_t h0 = p * stride[0] - padding[0];
      const int64_t ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + kernel_size[0], H);
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = q * stride[1] - padding[1];
        const int64_t wa = std::max<int64_t>(w0, 0), wb = std::min(w0 + kernel_size[1], W);
        uint8_t* out = yp + ((n * P + p) * Q + q) * C;
        int64_t c = 0;
#if defined(__SSE2__)
        for (; c + 16 <= C; c += 16) {      // 16 channels per step (SSE2, the x86-64 baseline)
          __m128i m = _mm_setzero_si128();  // below every code, as the specification's padding
          for (int64_t h = ha; h < hb; ++h)
            for (int64_t w = wa; w < wb; ++w)
              m = _mm_max_epu8(
                  m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + ((n * H + h) * W + w) * C + c)));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), m);
        }
#endif
        for (; c < C; ++c) {
          uint8_t m = 0;
          for (int64_t h = ha; h < hb; ++h)
            for (int64_t w = wa; w < wb; ++w) m = std::max(m, xp[((n * H + h) * W + w) * C + c]);
          out[c] = m;
        }
      }
    }
  });
  return y;
}

}  // namespace

void bind_quant(py::module_& m) {
  m.def("conv2d_q8_forward", &conv2d_q8_forward, py::arg("x"), py::arg("w"), py::arg("bias"),
        py::arg("multiplier"), py::arg("shift"), py::kw_only(), py::arg("x_zero"), py::arg("y_zero"),
        py::arg("relu"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        "Quantized conv2d with the requantization epilogue (cnnkern/backends/reference/quant.py).");
  m.def("dense_q8_forward", &dense_q8_forward, py::arg("x"), py::arg("w"), py::arg("bias"),
        py::arg("multiplier"), py::arg("shift"), py::kw_only(), py::arg("x_zero"), py::arg("y_zero"),
        py::arg("relu"), "Quantized dense layer with the requantization epilogue.");
  m.def("dense_q8_acc", &dense_q8_acc, py::arg("x"), py::arg("w"), py::arg("bias"), py::kw_only(),
        py::arg("x_zero"), "The int32 accumulators of the quantized dense layer.");
  m.def("maxpool2d_q8_forward", &maxpool2d_q8_forward, py::arg("x"), py::kw_only(), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), "Max pooling of uint8 codes.");
  m.def(
      "q8_gemm_path", [] { return std::string(pick_gemm().name); },
      "The int8 GEMM the current SIMD path runs: 'scalar', 'avx2' (vpmaddubsw) or 'vnni' (vpdpbusd).");
}

}  // namespace cnnkern
