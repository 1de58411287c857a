// Max and average pooling of NCHW float32 planes, forward and backward (docs/design.md §3).
//   maxpool2d_forward:  x (N,C,H,W) -> y (N,C,P,Q), argmax int64 (N,C,P,Q): flat index into the H*W plane
//   maxpool2d_values_forward: the same y without the argmax (inference)
//   maxpool2d_backward: dy (N,C,P,Q), argmax (N,C,P,Q) -> dx (N,C,H,W)
//   maxpool2d_act_backward: the same, then through an activation's gradient (fused, see maxpool_scatter)
//   avgpool2d_forward:  x (N,C,H,W) -> y (N,C,P,Q)
//   avgpool2d_backward: dy (N,C,P,Q) -> dx (N,C,H,W)
// P and Q follow PyTorch's rule (cnnkern/shapes.py pool_out). Forward work is split over output rows
// (N*C*P of them, each reading a few input rows of one plane); backward over planes, since windows may
// overlap within a plane (a scatter-add) but never across planes.
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/pool.h"

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/checked.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // pool_avx2.cpp
int64_t maxpool_2x2_row(const float* r0, const float* r1, int64_t oh, int64_t W, int64_t count, float* y,
                        int64_t* arg);
void maxpool_2x2_rows(const float* xp, int64_t W, int64_t oh0, int64_t oh1, int64_t count, int64_t Q,
                      float* y, int64_t* arg);
void maxpool_2x2_plane_gather(const float* xp, int64_t W, int64_t PQ, const int32_t* off, float* y,
                              int64_t* arg);
// avgpool_avx2.cpp: window sums in double, four windows at a time, bitwise the scalar loop's
void avgpool_2wide_avg(const float* x0, int64_t W, int64_t rows, int64_t count, double div, float* y);
void avgpool_plane_sums(const float* x, int64_t n, int64_t count, double* sums);
void avgpool_2x2_spread(const float* dy, int64_t Q, float div, float* d0, float* d1);
}  // namespace avx2
#endif

namespace {

using Pair = std::array<int64_t, 2>;
using Shape4 = std::array<int64_t, 4>;
using Geom = PoolGeom;

// out = floor((L + 2p - d(k-1) - 1 + (ceil_mode ? s-1 : 0)) / s) + 1, minus one if the last window would
// start inside the right padding.
int64_t pool_out(int64_t L, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode, const char* dim) {
  // Overflow-checked, as conv_geom: signed overflow is undefined behaviour and wraps past the check below.
  const char* what = "the padded input or the dilated window extent";
  const int64_t span = checked_add(checked_mul(d, k - 1, what), 1, what);
  int64_t num = checked_sub(checked_add(L, checked_mul(2, p, what), what), span, what);
  if (ceil_mode) num = checked_add(num, s - 1, what);
  if (num < 0) throw py::value_error(std::string("pool window larger than the padded input along ") + dim);
  int64_t out = num / s + 1;
  if (ceil_mode && (out - 1) * s >= L + p) --out;
  return out;
}

}  // namespace

PoolGeom pool_geom(const Shape4& x_shape, Pair k, Pair s, Pair p, Pair d, bool ceil_mode) {
  Geom g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], 0,    0,    k[0],
         k[1],       s[0],       s[1],       p[0],       p[1], d[0], d[1]};
  g.P = pool_out(g.H, g.kh, g.sh, g.ph, g.dh, ceil_mode, "H");
  g.Q = pool_out(g.W, g.kw, g.sw, g.pw, g.dw, ceil_mode, "W");
  return g;
}

namespace {

Shape4 shape4(const carray<float>& x, const char* name) {
  if (x.ndim() != 4) throw py::value_error(std::string(name) + " must be 4-d (N,C,H,W)");
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
}

// Rows (or columns) of one window that lie inside the input: start, start+d, ... < end.
struct Span {
  int64_t begin, end;
};

Span dilated_span(int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, int64_t L) {
  int64_t b = o * s - p;
  const int64_t e = std::min(b + (k - 1) * d + 1, L);
  if (b < 0) b += ((-b + d - 1) / d) * d;  // first tap at or past 0
  return {b, e};
}

// ---- max pool --------------------------------------------------------------------------------------

// One window, PyTorch's rule: scan taps row-major from max = -inf, taking a value when
// `v > max || isnan(v)`, so ties keep the first maximum and the last NaN wins; the index starts at the first
// in-bounds tap (kept when every value is -inf). A window with no in-bounds tap (possible only with
// dilation) gives -inf and -1. Computed branch-free as two independent scans, which is the same thing:
// the strict-greater scan over the numbers (NaN never compares greater) and the position of the last NaN,
// which wins if there is one.
inline void max_window(const float* xp, int64_t W, Span hs, Span ws, int64_t dh, int64_t dw, float* y,
                       int64_t* arg) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t at = (hs.begin < hs.end && ws.begin < ws.end) ? hs.begin * W + ws.begin : -1, nan_at = -1;
  for (int64_t h = hs.begin; h < hs.end; h += dh)
    for (int64_t w = ws.begin; w < ws.end; w += dw) {
      const int64_t i = h * W + w;
      const float v = xp[i];
      at = v > best ? i : at;
      best = v > best ? v : best;
      nan_at = std::isnan(v) ? i : nan_at;
    }
  if (nan_at >= 0) {
    best = xp[nan_at];
    at = nan_at;
  }
  *y = best;
  *arg = at;
}

// Output row oh of one plane, any geometry.
void max_row(const float* xp, const Geom& g, int64_t oh, float* y, int64_t* arg) {
  const Span hs = dilated_span(oh, g.kh, g.sh, g.ph, g.dh, g.H);
  for (int64_t ow = 0; ow < g.Q; ++ow)
    max_window(xp, g.W, hs, dilated_span(ow, g.kw, g.sw, g.pw, g.dw, g.W), g.dh, g.dw, y + ow, arg + ow);
}

// Output row oh for the 2x2 / stride 2 / no padding pool: window (oh, ow) reads x[2oh..2oh+1, 2ow..2ow+1].
// Whole windows take the unrolled four-way scan (same rule as max_window; the first tap is taken
// unconditionally, which equals starting from -inf), eight at a time on the AVX2 path (pool_avx2.cpp);
// a window cut by the ceil_mode overhang takes the general path.
void max_row_2x2(const float* xp, const Geom& g, int64_t oh, float* y, int64_t* arg) {
  if (2 * oh + 1 >= g.H) return max_row(xp, g, oh, y, arg);
  const float* r0 = xp + 2 * oh * g.W;
  const float* r1 = r0 + g.W;
  const int64_t whole = std::min(g.Q, g.W / 2);
  int64_t ow = 0;
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) ow = avx2::maxpool_2x2_row(r0, r1, oh, g.W, whole, y, arg);
#endif
  for (; ow < whole; ++ow) {
    const int64_t c = 2 * ow;
    float best = r0[c];
    int64_t at = 0;  // tap 0..3 = (0,0), (0,1), (1,0), (1,1)
    const auto take = [&](float v, int64_t tap) {
      const bool t = (v > best) | std::isnan(v);
      best = t ? v : best;
      at = t ? tap : at;
    };
    take(r0[c + 1], 1);
    take(r1[c], 2);
    take(r1[c + 1], 3);
    y[ow] = best;
    arg[ow] = (2 * oh + (at >> 1)) * g.W + c + (at & 1);
  }
  const Span hs{2 * oh, 2 * oh + 2};
  for (ow = whole; ow < g.Q; ++ow)
    max_window(xp, g.W, hs, dilated_span(ow, 2, 2, 0, 1, g.W), 1, 1, y + ow, arg + ow);
}

bool classic_2x2(const Geom& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1;
}

// The AVX2 2x2 path takes whole runs of rows of a plane per call (when every window of a row is whole).
bool rows_in_runs(const Geom& g) {
#ifdef CNNKERN_X86
  return classic_2x2(g) && simd_level() != Simd::scalar && g.Q <= g.W / 2;
#else
  (void)g;
  return false;
#endif
}

// Output rows [oh, last) of the plane at xpl; y and arg receive those rows (row oh first).
void max_rows(const float* xpl, const Geom& g, bool runs, int64_t oh, int64_t last, float* y, int64_t* arg) {
#ifdef CNNKERN_X86
  if (runs) {
    const int64_t full = std::min(last, g.H / 2);
    if (full > oh) avx2::maxpool_2x2_rows(xpl, g.W, oh, full, g.Q, g.Q, y, arg);
    for (int64_t o = std::max(oh, full); o < last; ++o)  // a last row cut by the ceil_mode overhang
      max_row(xpl, g, o, y + (o - oh) * g.Q, arg + (o - oh) * g.Q);
    return;
  }
#endif
  const auto row = classic_2x2(g) ? max_row_2x2 : max_row;
  for (int64_t o = oh; o < last; ++o) row(xpl, g, o, y + (o - oh) * g.Q, arg + (o - oh) * g.Q);
}

}  // namespace

MaxPlanePool::MaxPlanePool(const PoolGeom& g) : g_(g), runs_(rows_in_runs(g)) {
#ifdef CNNKERN_X86
  // rows shorter than a vector (pool2: 11x11 -> 5x5): whole planes by gathers, the offsets shared by all
  // planes
  if (runs_ && g.Q < 8 && g.P <= g.H / 2 && g.H * g.W < (int64_t{1} << 30)) {
    const int64_t PQ = g.P * g.Q;
    gather_.assign((PQ + 7) / 8 * 8, 0);
    for (int64_t j = 0; j < PQ; ++j) gather_[j] = static_cast<int32_t>(2 * (j / g.Q) * g.W + 2 * (j % g.Q));
  }
#endif
}

void MaxPlanePool::operator()(const float* x, float* y, int64_t* arg) const {
#ifdef CNNKERN_X86
  if (gathers()) return avx2::maxpool_2x2_plane_gather(x, g_.W, g_.P * g_.Q, gather_.data(), y, arg);
#endif
  max_rows(x, g_, runs_, 0, g_.P, y, arg);
}

// y (and argmax when `ap` is not null; else each row's argmax goes to a scratch row that stays in L1).
// Planes pooled by gathers are split over the threads whole, the others by runs of output rows.
void maxpool_forward_impl(const float* xp, const PoolGeom& g, float* yp, int64_t* ap) {
  const MaxPlanePool plane(g);
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  if (plane.gathers()) {
    parallel_for(g.N * g.C, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> scratch(ap ? 0 : PQ);
      for (int64_t pl = begin; pl < end; ++pl)
        plane(xp + pl * HW, yp + pl * PQ, ap ? ap + pl * PQ : scratch.data());
    });
    return;
  }
  const bool runs = rows_in_runs(g);
  parallel_for(g.N * g.C * g.P, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> scratch(ap ? 0 : PQ);   // the argmax of up to a plane's rows, when unwanted
    int64_t pl = begin / g.P, oh = begin % g.P;  // advanced by counting, not dividing, per run
    for (int64_t r = begin; r < end;) {          // rows oh .. last of plane pl within [begin, end)
      const int64_t last = std::min(g.P, oh + (end - r));
      max_rows(xp + pl * HW, g, runs, oh, last, yp + r * g.Q, ap ? ap + r * g.Q : scratch.data());
      r += last - oh;
      oh = last;
      if (oh == g.P) oh = 0, ++pl;
    }
  });
}

// dx = 0 over `planes` planes of HW, then dx[plane][argmax] += dy for each of the PQ outputs of the plane;
// with an activation, each plane of dx is then mapped through the activation's gradient given its output a
// (the pool's input), while it is still in cache. Returns false if an index lies outside [0, HW).
bool maxpool_scatter_plane(const float* g, const int64_t* arg, int64_t PQ, int64_t HW, float* d) {
  bool inside = true;
  for (int64_t j = 0; j < PQ; ++j) {
    const int64_t i = arg[j];
    const bool ok = static_cast<uint64_t>(i) < static_cast<uint64_t>(HW);
    inside &= ok;
    d[ok ? i : 0] += ok ? g[j] : 0.0f;
  }
  return inside;
}

bool maxpool_scatter_planes(const float* dyp, const int64_t* ap, int64_t planes, int64_t PQ, int64_t HW,
                            float* dxp, Act act, const float* a, float alpha) {
  std::atomic<bool> bad{false};
  parallel_for(planes, [&](int64_t begin, int64_t end) {
    for (int64_t pl = begin; pl < end; ++pl) {
      float* d = dxp + pl * HW;
      std::fill(d, d + HW, 0.0f);
      if (!maxpool_scatter_plane(dyp + pl * PQ, ap + pl * PQ, PQ, HW, d))
        bad.store(true, std::memory_order_relaxed);
      if (act != Act::none) activation_backward_inplace(act, a + pl * HW, d, HW, alpha);
    }
  });
  return !bad.load();
}

std::string argmax_error(int64_t HW, const Shape4& x_shape, const char* name) {
  return "argmax holds an index outside the H*W plane [0, " + std::to_string(HW) + ") of " + name + " (" +
         std::to_string(x_shape[0]) + ", " + std::to_string(x_shape[1]) + ", " + std::to_string(x_shape[2]) +
         ", " + std::to_string(x_shape[3]) + ")";
}

namespace {

py::tuple maxpool2d_forward(const carray<float>& x, Pair kernel_size, Pair stride, Pair padding,
                            Pair dilation, bool ceil_mode) {
  const Geom g = pool_geom(shape4(x, "x"), kernel_size, stride, padding, dilation, ceil_mode);
  carray<float> y = new_array<float>({g.N, g.C, g.P, g.Q});
  carray<int64_t> argmax = new_array<int64_t>({g.N, g.C, g.P, g.Q});
  {
    py::gil_scoped_release release;
    maxpool_forward_impl(x.data(), g, y.mutable_data(), argmax.mutable_data());
  }
  return py::make_tuple(y, argmax);
}

// maxpool2d_forward without the argmax (inference): a third of the output traffic less.
carray<float> maxpool2d_values_forward(const carray<float>& x, Pair kernel_size, Pair stride, Pair padding,
                                       Pair dilation, bool ceil_mode) {
  const Geom g = pool_geom(shape4(x, "x"), kernel_size, stride, padding, dilation, ceil_mode);
  carray<float> y = new_array<float>({g.N, g.C, g.P, g.Q});
  {
    py::gil_scoped_release release;
    maxpool_forward_impl(x.data(), g, y.mutable_data(), nullptr);
  }
  return y;
}

// maxpool_scatter_planes over the whole batch. An index outside the plane (-1 included: the front door
// refuses windows with no input element) is a ValueError, raised after the loop; the front door relies on
// this check (CppBackend.checks_argmax) instead of scanning argmax in Python. With an activation
// (maxpool2d_act_backward): the same operations, in the same order, as activation_backward(
// maxpool2d_backward(dy, argmax), a), without the round trip of dx through memory.
carray<float> maxpool_scatter(const carray<float>& dy, const carray<int64_t>& argmax, Shape4 x_shape, Act act,
                              const float* a, float alpha) {
  const Shape4 ds = shape4(dy, "dy");
  if (argmax.ndim() != 4 || argmax.size() != dy.size())
    throw py::value_error("argmax must have the shape of dy");
  if (x_shape[0] != ds[0] || x_shape[1] != ds[1]) throw py::value_error("x_shape must share N and C with dy");
  // dx first: new_array refuses a shape whose size overflows, before H * W could (UBSan: x_shape=2**40).
  carray<float> dx = new_array<float>({x_shape[0], x_shape[1], x_shape[2], x_shape[3]});
  const int64_t planes = ds[0] * ds[1], PQ = ds[2] * ds[3], HW = x_shape[2] * x_shape[3];
  bool ok;
  {
    py::gil_scoped_release release;
    ok = maxpool_scatter_planes(dy.data(), argmax.data(), planes, PQ, HW, dx.mutable_data(), act, a, alpha);
  }
  if (!ok) throw py::value_error(argmax_error(HW, x_shape, "x_shape"));
  return dx;
}

carray<float> maxpool2d_backward(const carray<float>& dy, const carray<int64_t>& argmax, Shape4 x_shape) {
  return maxpool_scatter(dy, argmax, x_shape, Act::none, nullptr, 0.0f);
}

// activation_backward(maxpool2d_backward(dy, argmax, x_shape), a, activation): the gradient with respect to
// z of maxpool(act(z)), given a = act(z) of shape x_shape.
carray<float> maxpool2d_act_backward(const carray<float>& dy, const carray<int64_t>& argmax, Shape4 x_shape,
                                     const carray<float>& a, const std::string& activation, double alpha) {
  const Act act = parse_act(activation);
  if (a.ndim() != 4 || a.shape(0) != x_shape[0] || a.shape(1) != x_shape[1] || a.shape(2) != x_shape[2] ||
      a.shape(3) != x_shape[3])
    throw py::value_error("a must have the shape x_shape");
  return maxpool_scatter(dy, argmax, x_shape, act, a.data(), static_cast<float>(alpha));
}

// ---- average pool ----------------------------------------------------------------------------------

// Window [b, e) along one dim and its divisor share: PyTorch clips the end to L + p first (size counted
// with padding, never the ceil_mode overhang), then clips both ends to [0, L) (the real elements).
struct AvgSpan {
  int64_t begin, end, padded;
};

AvgSpan avg_span(int64_t o, int64_t k, int64_t s, int64_t p, int64_t L) {
  const int64_t b = o * s - p, e = std::min(b + k, L + p);
  return {std::max<int64_t>(b, 0), std::min(e, L), e - b};
}

inline int64_t divisor(const AvgSpan& h, const AvgSpan& w, bool count_include_pad) {
  return count_include_pad ? h.padded * w.padded : (h.end - h.begin) * (w.end - w.begin);
}

// y = Σ window / divisor, summed in double; an empty window (no real element) gives 0 as in PyTorch.
carray<float> avgpool2d_forward(const carray<float>& x, Pair kernel_size, Pair stride, Pair padding,
                                bool ceil_mode, bool count_include_pad) {
  const Geom g = pool_geom(shape4(x, "x"), kernel_size, stride, padding, {1, 1}, ceil_mode);
  carray<float> y = new_array<float>({g.N, g.C, g.P, g.Q});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    const int64_t HW = g.H * g.W;
    // SIMD: four windows at a time (avgpool_avx2.cpp), bitwise the scalar sums: whole planes when the one
    // window is the plane (global pooling), else a row's width-2 stride-2 windows that no edge clips.
    bool simd = false, global = false;
#ifdef CNNKERN_X86
    const AvgSpan h0 = avg_span(0, g.kh, g.sh, g.ph, g.H), w0 = avg_span(0, g.kw, g.sw, g.pw, g.W);
    global = simd_level() != Simd::scalar && g.P == 1 && g.Q == 1 && h0.begin == 0 && h0.end == g.H &&
             w0.begin == 0 && w0.end == g.W;
    simd = simd_level() != Simd::scalar && g.kw == 2 && g.sw == 2;
#endif
    // the unclipped windows of a row: [ow_lo, ow_hi)
    const int64_t ow_lo = std::min(g.Q, (g.pw + g.sw - 1) / g.sw);
    const int64_t ow_hi =
        std::max(ow_lo, std::min(g.Q, g.W + g.pw - g.kw < 0 ? 0 : (g.W + g.pw - g.kw) / g.sw + 1));
    parallel_for(g.N * g.C * g.P, [&](int64_t begin, int64_t end) {
      thread_local std::vector<double> sums;  // the global path's plane sums
      sums.resize(end - begin);
      auto put = [&](int64_t r, int64_t ow, const AvgSpan& hs, double sum) {
        const AvgSpan ws = avg_span(ow, g.kw, g.sw, g.pw, g.W);
        const bool empty = hs.begin >= hs.end || ws.begin >= ws.end;
        yp[r * g.Q + ow] = empty ? 0.0f : static_cast<float>(sum / divisor(hs, ws, count_include_pad));
      };
#ifdef CNNKERN_X86
      if (global) {
        const int64_t count = (end - begin) / 4 * 4;
        avx2::avgpool_plane_sums(xp + begin * HW, HW, count, sums.data());
        for (int64_t i = 0; i < count; ++i) put(begin + i, 0, avg_span(0, g.kh, g.sh, g.ph, g.H), sums[i]);
        begin += count;
      }
#endif
      for (int64_t r = begin; r < end; ++r) {
        const int64_t plane = r / g.P, oh = r % g.P;
        const float* xpl = xp + plane * HW;
        const AvgSpan hs = avg_span(oh, g.kh, g.sh, g.ph, g.H);
        int64_t v0 = 0, v1 = 0;  // the windows [v0, v1) summed by SIMD
#ifdef CNNKERN_X86
        if (simd && hs.begin < hs.end && ow_hi > ow_lo) {
          v0 = ow_lo, v1 = ow_hi;
          const AvgSpan whole{0, 2, 2};  // an unclipped window's columns
          avx2::avgpool_2wide_avg(xpl + hs.begin * g.W + ow_lo * g.sw - g.pw, g.W, hs.end - hs.begin, v1 - v0,
                                  static_cast<double>(divisor(hs, whole, count_include_pad)),
                                  yp + r * g.Q + v0);
        }
#endif
        for (int64_t ow = 0; ow < g.Q; ++ow) {
          if (ow == v0 && v1 > v0) ow = v1;
          if (ow >= g.Q) break;
          const AvgSpan ws = avg_span(ow, g.kw, g.sw, g.pw, g.W);
          double sum = 0.0;
          for (int64_t h = hs.begin; h < hs.end; ++h)
            for (int64_t w = ws.begin; w < ws.end; ++w) sum += xpl[h * g.W + w];
          put(r, ow, hs, sum);
        }
      }
    });
  }
  return y;
}

// dx = 0, then every element of window (oh, ow) gains dy[oh, ow] / divisor.
carray<float> avgpool2d_backward(const carray<float>& dy, Shape4 x_shape, Pair kernel_size, Pair stride,
                                 Pair padding, bool ceil_mode, bool count_include_pad) {
  const Geom g = pool_geom(x_shape, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const Shape4 ds = shape4(dy, "dy");
  if (ds[0] != g.N || ds[1] != g.C || ds[2] != g.P || ds[3] != g.Q)
    throw py::value_error("dy must have the pooled shape of x_shape");
  carray<float> dx = new_array<float>({g.N, g.C, g.H, g.W});
  const float* dyp = dy.data();
  float* dxp = dx.mutable_data();
  // 2x2 windows at stride 2, unpadded and unclipped (floor mode, or a ceil_mode that adds none): the
  // windows do not overlap, so the AVX2 path writes each share in place of the scalar loop's adds.
  [[maybe_unused]] bool spread = false;
#ifdef CNNKERN_X86
  spread = simd_level() != Simd::scalar && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 &&
           g.pw == 0 && 2 * g.P <= g.H && 2 * g.Q <= g.W;
#endif
  {
    py::gil_scoped_release release;
    parallel_for(g.N * g.C, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        float* d = dxp + pl * g.H * g.W;
        const float* gp = dyp + pl * g.P * g.Q;
#ifdef CNNKERN_X86
        // each dx element in at most one window: its share, written row pair by row pair. What no window
        // covers is zeroed first: the whole plane when some columns are uncovered (one fill per plane
        // measured faster than per-row fills on small planes), else only the rows below the last window.
        if (spread) {
          if (2 * g.Q < g.W)
            std::fill(d, d + g.H * g.W, 0.0f);
          else
            std::fill(d + 2 * g.P * g.W, d + g.H * g.W, 0.0f);
          for (int64_t oh = 0; oh < g.P; ++oh)
            avx2::avgpool_2x2_spread(gp + oh * g.Q, g.Q, 4.0f, d + 2 * oh * g.W, d + (2 * oh + 1) * g.W);
          continue;
        }
#endif
        std::fill(d, d + g.H * g.W, 0.0f);
        for (int64_t oh = 0; oh < g.P; ++oh) {
          const AvgSpan hs = avg_span(oh, g.kh, g.sh, g.ph, g.H);
          for (int64_t ow = 0; ow < g.Q; ++ow) {
            const AvgSpan ws = avg_span(ow, g.kw, g.sw, g.pw, g.W);
            if (hs.begin >= hs.end || ws.begin >= ws.end) continue;
            const float share = gp[oh * g.Q + ow] / static_cast<float>(divisor(hs, ws, count_include_pad));
            for (int64_t h = hs.begin; h < hs.end; ++h)
              for (int64_t w = ws.begin; w < ws.end; ++w) d[h * g.W + w] += share;
          }
        }
      }
    });
  }
  return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("maxpool2d_forward", &maxpool2d_forward, py::arg("x"), py::kw_only(), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        "x (N,C,H,W) -> (y (N,C,P,Q), argmax int64 (N,C,P,Q) into the H*W plane).");
  m.def("maxpool2d_values_forward", &maxpool2d_values_forward, py::arg("x"), py::kw_only(),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("ceil_mode"), "x (N,C,H,W) -> y (N,C,P,Q): maxpool2d_forward's y without the argmax.");
  m.def("maxpool2d_backward", &maxpool2d_backward, py::arg("dy"), py::arg("argmax"), py::arg("x_shape"),
        "dy (N,C,P,Q), argmax (N,C,P,Q), x_shape (N,C,H,W) -> dx (N,C,H,W).");
  m.def("maxpool2d_act_backward", &maxpool2d_act_backward, py::arg("dy"), py::arg("argmax"),
        py::arg("x_shape"), py::arg("a"), py::arg("activation"), py::kw_only(), py::arg("alpha"),
        "activation_backward(maxpool2d_backward(dy, argmax, x_shape), a, activation): a = act(z) (N,C,H,W).");
  m.def("avgpool2d_forward", &avgpool2d_forward, py::arg("x"), py::kw_only(), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        "x (N,C,H,W) -> y (N,C,P,Q).");
  m.def("avgpool2d_backward", &avgpool2d_backward, py::arg("dy"), py::arg("x_shape"), py::kw_only(),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), "dy (N,C,P,Q), x_shape (N,C,H,W) -> dx (N,C,H,W).");
}

}  // namespace cnnkern
