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

// The int8 inference kernels (kernels/quant.h; the specification is cnnkern/backends/reference/quant.py):
// the shared checks, the SIMD choice and the packed-layer cache (quant_impl.h), the dense layer and its
// accumulators (the float logits' source), max pooling on uint8 codes, and the bindings; the convolution
// is quant_conv.cpp. The Python side (cnnkern/backends/cpp_quant.py) checks dtypes; the shapes and value
// ranges are checked here, since a wrong one would read out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/quant.h"
#include "kernels/quant_impl.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

void q8_igemm_scalar(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc) {
  const int64_t wblock = g.ntaps * g.csteps * 64;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t blk = 0; blk < g.nblocks; ++blk) {
      int32_t acc[16] = {};
      for (int64_t t = 0; t < g.ntaps; ++t) {
        const uint8_t* a = rows[i] + g.toff[t];
        const int8_t* wb = g.w + blk * wblock + t * g.csteps * 64;
        for (int64_t s = 0; s < g.csteps; ++s)
          for (int64_t j = 0; j < 16; ++j)
            for (int64_t u = 0; u < 4; ++u) acc[j] += int32_t(a[4 * s + u]) * int32_t(wb[s * 64 + 4 * j + u]);
      }
      std::copy(acc, acc + 16, c + i * ldc + blk * 16);
    }
}

void q8_conv_c1_scalar(const uint8_t* const* pix, int64_t m, const Q8C1& g, int32_t* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    int32_t* out = c + i * ldc;
    std::fill(out, out + g.kp, 0);
    for (int64_t p = 0; p < g.npairs; ++p) {
      const int32_t a0 = pix[i][g.toff[2 * p]], a1 = pix[i][g.toff[2 * p + 1]];
      const int16_t* w = g.w + p * g.kp * 2;
      for (int64_t k = 0; k < g.kp; ++k) out[k] += a0 * w[2 * k] + a1 * w[2 * k + 1];
    }
  }
}

void q8_requant_scalar(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                       uint8_t* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = requant_max(sum, ld, count, q, k);
}

namespace q8 {

Kernels pick() {
  const Simd level = simd_level();
#if defined(CNNKERN_X86) && (defined(__GNUC__) || defined(__clang__))
  if (level == Simd::avx512 && __builtin_cpu_supports("avx512vnni"))
    return {q8_igemm_vnni, nullptr, q8_conv_fused_vnni, q8_conv_requant_vnni, q8_requant_avx512, "vnni"};
  if (level == Simd::avx512) return {q8_igemm_avx2, nullptr, nullptr, nullptr, q8_requant_avx512, "avx2"};
  if (level == Simd::avx2) return {q8_igemm_avx2, nullptr, nullptr, nullptr, q8_requant_avx2, "avx2"};
#endif
  (void)level;
  return {q8_igemm_scalar, q8_conv_c1_scalar, nullptr, nullptr, q8_requant_scalar, "scalar"};
}

void invalid(const std::string& message) { throw std::invalid_argument(message); }

// The format's value ranges (the reference's checks, same messages), checked here so that the Python side
// need not scan the arrays again on every call; the weights and bias only when a layer is packed (a cached
// packing holds arrays of the same contents, checked then).
void check_format(const carray<uint8_t>& x, int64_t x_zero, int64_t reduction) {
  // the largest code, over chunks on the threads (a serial scan costs a batch's layer a few percent)
  const uint8_t* xp = x.data();
  const int64_t n = x.size(), chunk = int64_t{1} << 16, chunks = (n + chunk - 1) / chunk;
  std::vector<uint8_t> tops(static_cast<size_t>(std::max<int64_t>(chunks, 1)), 0);
  const auto scan = [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      uint8_t t = 0;
      for (int64_t i = c * chunk, e = std::min(n, i + chunk); i < e; ++i) t = std::max(t, xp[i]);
      tops[static_cast<size_t>(c)] = t;
    }
  };
  if (chunks > 1) {
    py::gil_scoped_release release;
    parallel_for(chunks, scan);
  } else {
    scan(0, chunks);
  }
  const uint8_t top = *std::max_element(tops.begin(), tops.end());
  if (top > 127) invalid("x holds " + std::to_string(top) + ": activations are 7-bit codes in [0, 127]");
  if (x_zero < 0 || x_zero > 127) invalid("x_zero must be in [0, 127], got " + std::to_string(x_zero));
  if (reduction > (int64_t{1} << 16))
    invalid("the reduction length " + std::to_string(reduction) + " exceeds 65536");
}

namespace {

void check_weights(const carray<int8_t>& w, const carray<int32_t>& bias) {
  const int8_t* wp = w.data();
  int8_t low = 0;
  for (int64_t i = 0, n = w.size(); i < n; ++i) low = std::min(low, wp[i]);
  if (low < -127) invalid("w holds -128: weights are in [-127, 127]");
  for (int64_t i = 0; i < bias.size(); ++i)
    if (bias.data()[i] > (1 << 30) || bias.data()[i] < -(1 << 30)) invalid("|bias| must be <= 2**30");
}

}  // namespace

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

namespace {

// Requant16's narrow clamp of one channel: v(a) = (a * m + 2**(s-1)) >> s is nondecreasing in a, 0 at 0, and
// the result is zero + v clamped to [L, H] (L <= 0 <= H): lo the least int32 a with v(a) >= L, hi the
// greatest with v(a) <= H; exact when the clamp of a loses nothing (v(lo) = L unless lo is INT32_MIN, and
// v(hi) = H unless hi is INT32_MAX).
struct Narrow {
  int32_t lo, hi;
  bool exact;
};
Narrow narrow_clamp(int64_t m, int64_t s, int64_t L, int64_t H) {
  const auto v = [&](int64_t a) { return (a * m + (int64_t{1} << (s - 1))) >> s; };
  int64_t a = INT32_MIN, b = 0;  // v(b) >= L: the least such a in [a, b]
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    if (v(mid) >= L)
      b = mid;
    else
      a = mid + 1;
  }
  const int64_t lo = a;
  a = 0, b = INT32_MAX;  // v(a) <= H: the greatest such in [a, b]
  while (a < b) {
    const int64_t mid = a + (b - a + 1) / 2;
    if (v(mid) <= H)
      a = mid;
    else
      b = mid - 1;
  }
  const int64_t hi = a;
  const bool exact = (lo == INT32_MIN || v(lo) == L) && (hi == INT32_MAX || v(hi) == H);
  return {static_cast<int32_t>(lo), static_cast<int32_t>(hi), exact};
}

std::shared_ptr<const Packed> build(const int8_t* w, const std::array<int64_t, 4>& shape, const int32_t* bias,
                                    const Epilogue& e, int64_t groups, Layout layout) {
  const auto [K, CG, R, S] = shape;
  const int64_t KG = K / groups;
  auto p = std::make_shared<Packed>();
  p->groups = groups;
  if (layout == Layout::implicit) {  // groups == 1: taps (i, j), each over the channels padded to 4
    p->ntaps = R * S;
    p->csteps = round4(CG) / 4;
  } else if (layout == Layout::runs) {  // groups == 1: taps i, each over (j, c)
    p->ntaps = R;
    p->csteps = round4(S * CG) / 4;
  } else if (layout == Layout::c1) {  // CG == 1, groups == 1: pairs of taps (i, j)
    p->ntaps = R * S;
  } else {
    p->csteps = round4(CG * R * S) / 4;
  }
  p->nblocks = (KG + 15) / 16;
  const int64_t wblock = p->ntaps * p->csteps * 64;
  const int64_t kp = p->nblocks * 16;
  if (layout == Layout::c1)
    p->w16.assign(static_cast<size_t>((R * S + 1) / 2 * kp * 2), 0);
  else
    p->w.assign(static_cast<size_t>(groups * p->nblocks * wblock), 0);
  p->wsum.assign(static_cast<size_t>(K), 0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t g = k / KG, kk = k % KG;
    for (int64_t c = 0; c < CG; ++c)
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < S; ++j) {
          const int8_t v = w[((k * CG + c) * R + i) * S + j];
          p->wsum[static_cast<size_t>(k)] += v;
          if (layout == Layout::c1) {
            const int64_t t = i * S + j;
            p->w16[static_cast<size_t>((t / 2) * kp * 2 + k * 2 + t % 2)] = v;
            continue;
          }
          int8_t* dst = p->w.data() + g * p->nblocks * wblock + (kk / 16) * wblock + (kk % 16) * 4;
          // tap index and reduction index within the tap
          const int64_t t = layout == Layout::implicit ? i * S + j : layout == Layout::runs ? i : 0;
          const int64_t u = layout == Layout::implicit ? c
                            : layout == Layout::runs   ? j * CG + c
                                                       : (i * S + j) * CG + c;
          dst[t * p->csteps * 64 + (u / 4) * 64 + u % 4] = v;
        }
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t wsum = p->wsum[static_cast<size_t>(k)];
    p->base.push_back(static_cast<int32_t>(static_cast<uint32_t>(bias[k] - e.x_zero * wsum)));  // wraps
    if (!e.multiplier) continue;
    const int64_t s = e.shift->data()[k];
    p->mult.push_back(e.multiplier->data()[k]);
    p->round.push_back(int64_t{1} << (s - 1));
    p->shift.push_back(s);
    p->lo.push_back(e.relu ? e.y_zero : 0);
  }
  p->zero = e.y_zero;
  if (e.multiplier) {  // the AVX-512 form; lanes past a group's channels: zeros (defined, never stored)
    p->blocks.assign(static_cast<size_t>(groups * p->nblocks), Requant16{});
    p->narrow.assign(static_cast<size_t>(groups), 1);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = k / KG, kk = k % KG, lane = kk % 16, eo = (lane % 2) * 8 + lane / 2;
      Requant16& b = p->blocks[static_cast<size_t>(g * p->nblocks + kk / 16)];
      const size_t ks = static_cast<size_t>(k);
      b.round[eo] = p->round[ks];
      b.shift[eo] = p->shift[ks];
      b.lo[eo] = p->lo[ks] - p->zero;
      b.shift1[eo] = p->shift[ks] - 1;
      b.base[lane] = p->base[ks];
      b.mult[lane] = p->mult[ks];
      if (lane % 2) b.mult_odd[lane - 1] = p->mult[ks];
      const Narrow nr = narrow_clamp(p->mult[ks], p->shift[ks], p->lo[ks] - p->zero, 127 - p->zero);
      b.acc_lo[lane] = nr.lo;
      b.acc_hi[lane] = nr.hi;
      if (!nr.exact) p->narrow[static_cast<size_t>(g)] = 0;
    }
  }
  return p;
}

struct Entry {
  std::vector<int64_t> key;
  std::vector<int8_t> w;
  std::vector<int32_t> ints;
  std::shared_ptr<const Packed> packed;
};
constexpr size_t kCacheEntries = 64;  // a few models' layers; the oldest is dropped beyond this

}  // namespace

std::shared_ptr<const Packed> packed(const carray<int8_t>& w, const carray<int32_t>& bias, const Epilogue& e,
                                     int64_t groups, Layout layout) {
  static std::mutex mu;
  static std::list<Entry> cache;
  std::array<int64_t, 4> shape{w.shape(0), w.shape(1), 1, 1};
  if (w.ndim() == 4) shape = {w.shape(0), w.shape(1), w.shape(2), w.shape(3)};
  Entry probe;
  probe.key = {shape[0], shape[1],
               shape[2], shape[3],
               groups,   static_cast<int64_t>(layout),
               e.x_zero, e.y_zero,
               e.relu,   e.multiplier != nullptr};
  probe.ints.assign(bias.data(), bias.data() + bias.size());
  if (e.multiplier) {
    probe.ints.insert(probe.ints.end(), e.multiplier->data(), e.multiplier->data() + e.multiplier->size());
    probe.ints.insert(probe.ints.end(), e.shift->data(), e.shift->data() + e.shift->size());
  }
  const size_t wbytes = static_cast<size_t>(w.size());
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = cache.begin(); it != cache.end(); ++it)
      if (it->key == probe.key && it->ints == probe.ints && it->w.size() == wbytes &&
          std::memcmp(it->w.data(), w.data(), wbytes) == 0) {
        cache.splice(cache.begin(), cache, it);  // most recently used first
        return cache.front().packed;
      }
  }
  check_weights(w, bias);
  probe.packed = build(w.data(), shape, bias.data(), e, groups, layout);
  probe.w.assign(w.data(), w.data() + wbytes);
  std::shared_ptr<const Packed> result = probe.packed;
  std::lock_guard<std::mutex> lock(mu);
  cache.push_front(std::move(probe));
  if (cache.size() > kCacheEntries) cache.pop_back();
  return result;
}

}  // namespace q8

namespace {

using q8::invalid;
using Pair = q8::Pair;
constexpr int64_t kTile = 48;  // rows per work item (a multiple of the GEMMs' register tiles, 6 and 8)

// The dense layer over row tiles of x: fn(tile's first row, rows, accumulators (rows x ldc), ldc). A row
// is read in place when its length is a multiple of 4, else copied into a zero-padded scratch row.
template <typename Fn>
void dense_rows(const carray<uint8_t>& x, const q8::Packed& p, const Fn& fn) {
  const int64_t N = x.shape(0), IN = x.shape(1), kp = p.csteps * 4, ldc = p.nblocks * 16;
  const q8::Kernels kern = q8::pick();
  const uint8_t* xp = x.data();
  static const int64_t zero_offset = 0;
  const Q8Gemm g{&zero_offset, 1, p.csteps, p.w.data(), p.nblocks};
  parallel_for((N + kTile - 1) / kTile, [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> padded;
    thread_local std::vector<int32_t> acc;
    thread_local std::vector<const uint8_t*> rows;
    const uint8_t** rp = q8::grow(rows, kTile);
    int32_t* ap = q8::grow(acc, kTile * ldc);
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * kTile, m = std::min(kTile, N - r0);
      if (IN == kp) {
        for (int64_t r = 0; r < m; ++r) rp[r] = xp + (r0 + r) * IN;
      } else {
        uint8_t* buf = q8::grow(padded, kTile * kp);
        for (int64_t r = 0; r < m; ++r) {
          std::copy(xp + (r0 + r) * IN, xp + (r0 + r + 1) * IN, buf + r * kp);
          std::fill(buf + r * kp + IN, buf + (r + 1) * kp, uint8_t{0});
          rp[r] = buf + r * kp;
        }
      }
      kern.gemm(rp, m, g, ap, ldc);
      fn(r0, m, ap, ldc);
    }
  });
}

void check_dense(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias) {
  if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(1))
    invalid("x (N,in) and w (out,in) must match");
  q8::check_vec(bias, w.shape(0), "bias");
}

carray<uint8_t> dense_q8_forward(const carray<uint8_t>& x, const carray<int8_t>& w,
                                 const carray<int32_t>& bias, const carray<int32_t>& multiplier,
                                 const carray<int32_t>& shift, int64_t x_zero, int64_t y_zero, bool relu) {
  check_dense(x, w, bias);
  q8::check_vec(multiplier, w.shape(0), "multiplier");
  q8::check_vec(shift, w.shape(0), "shift");
  q8::check_format(x, x_zero, w.shape(1));
  q8::check_requant(multiplier, shift, y_zero);
  const int64_t OUT = w.shape(0);
  carray<uint8_t> y = new_array<uint8_t>({x.shape(0), OUT});
  uint8_t* yp = y.mutable_data();
  const auto p = q8::packed(w, bias, {&multiplier, &shift, x_zero, y_zero, relu}, 1, q8::Layout::rows);
  py::gil_scoped_release release;
  const RequantRow rq = p->row(0);  // (one group)
  const q8::RequantFn requant = q8::pick().requant;
  dense_rows(x, *p, [&](int64_t r0, int64_t rows, const int32_t* acc, int64_t ldc) {
    for (int64_t r = 0; r < rows; ++r) requant(acc + r * ldc, ldc, 1, OUT, rq, yp + (r0 + r) * OUT);
  });
  return y;
}

carray<int32_t> dense_q8_acc(const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
                             int64_t x_zero) {
  check_dense(x, w, bias);
  q8::check_format(x, x_zero, w.shape(1));
  const int64_t OUT = w.shape(0);
  carray<int32_t> y = new_array<int32_t>({x.shape(0), OUT});
  int32_t* yp = y.mutable_data();
  const auto p = q8::packed(w, bias, {nullptr, nullptr, x_zero, 0, false}, 1, q8::Layout::rows);
  py::gil_scoped_release release;
  const int32_t* base = p->base.data();
  dense_rows(x, *p, [&](int64_t r0, int64_t rows, const int32_t* acc, int64_t ldc) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < OUT; ++k)  // the wrapped 32-bit add gives the exact accumulator
        yp[(r0 + r) * OUT + k] =
            static_cast<int32_t>(static_cast<uint32_t>(acc[r * ldc + k]) + static_cast<uint32_t>(base[k]));
  });
  return y;
}

// The input codes of a float32 batch: clip(rint(float64(x) / scale) + zero, 0, 127), rint rounding half to
// even as numpy's (cnnkern/compress/qparams.py quantize_input, which this equals exactly): the quotient,
// held to [-2**20, 2**20] (which changes no clipped code), is rounded by adding and subtracting 1.5 * 2**52,
// where the doubles are the integers, so the default rounding mode (half to even) does it in any ISA.
carray<uint8_t> quantize_input_q8(const carray<float>& x, double scale, int64_t zero) {
  if (!(scale > 0)) invalid("scale must be > 0");
  if (zero < 0 || zero > 127) invalid("zero must be in [0, 127], got " + std::to_string(zero));
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  carray<uint8_t> y = new_array<uint8_t>(shape);
  const float* xp = x.data();
  uint8_t* yp = y.mutable_data();
  py::gil_scoped_release release;
  const bool avx512 = simd_level() == Simd::avx512;
  run_elementwise(x.size(), [&](int64_t begin, int64_t end) {
#if defined(CNNKERN_X86) && (defined(__GNUC__) || defined(__clang__))
    if (avx512) return q8_quantize_input_avx512(xp, begin, end, scale, zero, yp);
#endif
    constexpr double kRound = 6755399441055744.0, kBound = 1048576.0;
    const double z = static_cast<double>(zero);
    int64_t i = begin;
#if defined(__SSE2__)
    // two lanes per step (SSE2, the x86-64 baseline): min / max instead of the branches below
    const __m128d d = _mm_set1_pd(scale), lo = _mm_set1_pd(-kBound), hi = _mm_set1_pd(kBound),
                  rnd = _mm_set1_pd(kRound), zz = _mm_set1_pd(z), nil = _mm_setzero_pd(),
                  top = _mm_set1_pd(127);
    for (; i + 2 <= end; i += 2) {
      __m128d v = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(xp + i))));
      v = _mm_min_pd(_mm_max_pd(_mm_div_pd(v, d), lo), hi);
      v = _mm_add_pd(_mm_sub_pd(_mm_add_pd(v, rnd), rnd), zz);
      const int32_t two = _mm_cvtsi128_si32(_mm_packus_epi16(
          _mm_packs_epi32(_mm_cvttpd_epi32(_mm_min_pd(_mm_max_pd(v, nil), top)), _mm_setzero_si128()),
          _mm_setzero_si128()));
      yp[i] = static_cast<uint8_t>(two & 0xFF);
      yp[i + 1] = static_cast<uint8_t>((two >> 8) & 0xFF);
    }
#endif
    for (; i < end; ++i) {
      double v = static_cast<double>(xp[i]) / scale;
      v = v < -kBound ? -kBound : v > kBound ? kBound : v;
      v = (v + kRound) - kRound + z;
      v = v < 0 ? 0 : v > 127 ? 127 : v;
      yp[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
    }
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
  m.def(
      "conv2d_q8_forward",
      [](const carray<uint8_t>& x, const carray<int8_t>& w, const carray<int32_t>& bias,
         const carray<int32_t>& multiplier, const carray<int32_t>& shift, int64_t x_zero, int64_t y_zero,
         bool relu, Pair stride, q8::Quad padding, Pair dilation, int64_t groups) {
        return q8::conv2d_forward(x, w, bias, multiplier, shift, x_zero, y_zero, relu, stride, padding,
                                  dilation, groups, Pair{1, 1});
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("multiplier"), py::arg("shift"), py::kw_only(),
      py::arg("x_zero"), py::arg("y_zero"), py::arg("relu"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"),
      "Quantized conv2d with the requantization epilogue (cnnkern/backends/reference/quant.py).");
  m.def("conv2d_q8_pool_forward", &q8::conv2d_forward, py::arg("x"), py::arg("w"), py::arg("bias"),
        py::arg("multiplier"), py::arg("shift"), py::kw_only(), py::arg("x_zero"), py::arg("y_zero"),
        py::arg("relu"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("pool"),
        "conv2d_q8_forward followed by the max pool of window and stride pool=(ph, pw) (floor mode, no "
        "padding), fused: the max taken on the accumulators before the requantization (equal results).");
  m.def("dense_q8_forward", &dense_q8_forward, py::arg("x"), py::arg("w"), py::arg("bias"),
        py::arg("multiplier"), py::arg("shift"), py::kw_only(), py::arg("x_zero"), py::arg("y_zero"),
        py::arg("relu"), "Quantized dense layer with the requantization epilogue.");
  m.def("dense_q8_acc", &dense_q8_acc, py::arg("x"), py::arg("w"), py::arg("bias"), py::kw_only(),
        py::arg("x_zero"), "The int32 accumulators of the quantized dense layer.");
  m.def("maxpool2d_q8_forward", &maxpool2d_q8_forward, py::arg("x"), py::kw_only(), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), "Max pooling of uint8 codes.");
  m.def("quantize_input_q8", &quantize_input_q8, py::arg("x"), py::kw_only(), py::arg("scale"),
        py::arg("zero"),
        "float32 inputs -> 7-bit codes, equal to cnnkern.compress.qparams.quantize_input (finite x).");
  m.def(
      "q8_gemm_path", [] { return std::string(q8::pick().name); },
      "The int8 GEMM the current SIMD path runs: 'scalar', 'avx2' (vpmaddubsw) or 'vnni' (vpdpbusd).");
}

}  // namespace cnnkern
