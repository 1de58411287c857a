// conv2d + bias + activation followed by max pooling, as one kernel pair (docs/design.md §2, fused kernels).
//   conv2d_act_maxpool_forward:  x (N,C,H,W), w, b -> y (N,K,P',Q') = maxpool(act(conv(x, w) + b)),
//                                argmax (N,K,P',Q') int64, a flat index into the P*Q plane of the conv output
//   conv2d_act_maxpool_backward: dy (N,K,P',Q'), y, argmax, x, w -> (dx | None, dw | None, db | None):
//                                dz = maxpool2d_backward(activation_backward(dy, y, act), argmax), then
//                                conv2d_backward(dz, x, w). The activation's gradient is taken from the
//                                pooled values y: every position argmax points at holds a = act(z) = y.
// The first layer of an image CNN (1-4 input channels, conv_c1_applies) runs image by image, so the N*K*P*Q
// activations (11 MB for the classic CNN at batch 128) never go to memory: the forward with the 2x2 / stride
// 2 pool and relu, leaky_relu or no activation pools in the registers (conv_c1_3x3_pool2), any other pool or
// activation pools the image's conv output (K,P,Q) from a per-thread buffer that stays in L2, and the weight
// gradient rebuilds dz there.
// Results equal the composition of the unfused cpp kernels bit for bit (same operations in the same order;
// the dw partials follow conv_c1_dw's fixed split of images over threads). Every other geometry, and dx
// (never needed for a first layer), runs that composition here, through one temporary of N*K*P*Q.
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"
#include "kernels/conv.h"
#include "kernels/conv_igemm.h"
#include "kernels/gemm.h"
#include "kernels/pool.h"

namespace cnnkern {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

template <typename T>
void require_shape(const carray<T>& a, const char* name, const std::array<int64_t, 4>& want) {
  bool ok = a.ndim() == 4;
  for (int i = 0; ok && i < 4; ++i) ok = a.shape(i) == want[i];
  if (!ok)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(want[0]) + ", " +
                          std::to_string(want[1]) + ", " + std::to_string(want[2]) + ", " +
                          std::to_string(want[3]) + ") (the pooled conv output), got " + shape_str(a));
}

// Whether the conv of g can be cropped to fewer output rows and columns (forward: to those the pool reads;
// backward: to those with a non-zero gradient): the indirect GEMM computes every output alone.
bool croppable(const ConvGeom& g, ConvAlgo algo) {
  return algo == ConvAlgo::igemm && conv_igemm_applies(g) && g.N > 0 && g.K > 0;
}

// The conv output rows (or columns) [0, extent) a pool of `out` windows reads, of L.
int64_t extent_read(int64_t L, int64_t out, int64_t k, int64_t s, int64_t p, int64_t d) {
  return std::min(L, (out - 1) * s - p + (k - 1) * d + 1);
}

py::tuple conv2d_act_maxpool_forward(const carray<float>& x, const carray<float>& w,
                                     const std::optional<carray<float>>& b, Pair stride, Quad padding,
                                     Pair dilation, int64_t groups,
                                     const std::optional<std::string>& activation, double alpha,
                                     Pair pool_kernel, Pair pool_stride, Pair pool_padding,
                                     Pair pool_dilation, bool pool_ceil_mode, bool need_argmax,
                                     const std::optional<std::string>& algo_name) {
  const Act act = parse_act(activation);
  const ConvGeom g = conv_geom(x, w, stride, padding, dilation, groups);
  const ConvAlgo algo = resolve_conv_algo(g, false, parse_conv_algo(algo_name));
  const bool c1 = algo == ConvAlgo::c1;
  if (b && (b->ndim() != 1 || b->shape(0) != g.K))
    throw py::value_error("b must have shape (" + std::to_string(g.K) + ",), got " + shape_str(*b));
  const PoolGeom pg =
      pool_geom({g.N, g.K, g.P, g.Q}, pool_kernel, pool_stride, pool_padding, pool_dilation, pool_ceil_mode);
  carray<float> y = new_array<float>({pg.N, pg.C, pg.P, pg.Q});
  py::object arg_obj = py::none();
  int64_t* ap = nullptr;
  if (need_argmax) {
    carray<int64_t> a = new_array<int64_t>({pg.N, pg.C, pg.P, pg.Q});
    ap = a.mutable_data();
    arg_obj = a;
  }
  const float *xp = x.data(), *wp = w.data(), *bp = b ? b->data() : nullptr;
  float* yp = y.mutable_data();
  const float a_s = static_cast<float>(alpha);
  const bool pool2 = pg.kh == 2 && pg.kw == 2 && pg.sh == 2 && pg.sw == 2 && pg.ph == 0 && pg.pw == 0 &&
                     pg.dh == 1 && pg.dw == 1 && pg.P == g.P / 2 && pg.Q == g.Q / 2 && pg.Q >= 8;
  const int code = act == Act::relu ? 1 : act == Act::leaky_relu ? 2 : act == Act::none ? 0 : -1;
  if (c1 && pool2 && code >= 0 && g.C == 1) {
#ifdef CNNKERN_X86
    py::gil_scoped_release nogil;  // conv and pool in registers: conv_c1_avx2.cpp
    // Split over (image, pair of filters), the pairs the kernel forms itself, so that one image (batch-1
    // latency) also uses every thread and every value is computed as in one call for all K filters.
    const int64_t out = pg.C * pg.P * pg.Q, plane = pg.P * pg.Q, pairs = (g.K + 1) / 2;
    parallel_for(g.N * pairs, [&](int64_t i0, int64_t i1) {
      thread_local std::vector<float> pbuf;  // a padded image's zero-bordered plane (conv_c1_planes)
      int64_t have = -1;
      const float* xn = nullptr;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t n = i / pairs, k = i % pairs * 2, off = n * out + k * plane;
        if (n != have) xn = conv_c1_planes(xp + n * g.H * g.W, g, pbuf), have = n;
        avx2::conv_c1_3x3_pool2(xn, g.P + 2, g.Q + 2, wp + k * 9, bp ? bp + k : nullptr,
                                std::min<int64_t>(2, g.K - k), code, a_s, yp + off, ap ? ap + off : nullptr);
      }
    });
#endif
  } else if (c1) {
#ifdef CNNKERN_X86
    py::gil_scoped_release nogil;
    PoolGeom one = pg;  // the pool of one image: K planes of P x Q
    one.N = 1;
    const int64_t KPQ = g.K * g.PQ(), out = pg.C * pg.P * pg.Q;
    parallel_for(g.N, [&](int64_t n0, int64_t n1) {
      thread_local std::vector<float> zbuf;
      float* z = grow(zbuf, KPQ);
      for (int64_t n = n0; n < n1; ++n) {
        conv_c1_image(xp + n * g.C * g.H * g.W, wp, bp, z, g, act, a_s);
        maxpool_forward_impl(z, one, yp + n * out, ap ? ap + n * out : nullptr);
      }
    });
#endif
  } else {
    // A pool that never reads the conv output's last rows or columns (floor mode: a 2x2 / stride-2 pool of an
    // odd plane, the classic CNN's conv2 11x11 -> 5x5 leaves 21% of the conv unread) pools a conv cropped to
    // what it reads. The indirect GEMM computes every output alone, so the values pooled keep their bits;
    // the argmax is mapped back to the full P*Q plane.
    ConvGeom gc = g;
    PoolGeom pc = pg;
    if (croppable(g, algo)) {
      gc.P = pc.H = extent_read(g.P, pg.P, pg.kh, pg.sh, pg.ph, pg.dh);
      gc.Q = pc.W = extent_read(g.Q, pg.Q, pg.kw, pg.sw, pg.pw, pg.dw);
    }
    carray<float> z = new_array<float>({g.N, g.K, gc.P, gc.Q});
    float* zp = z.mutable_data();
    py::gil_scoped_release nogil;
    conv_forward_dispatch(xp, wp, bp, zp, gc, act, a_s, algo);
    maxpool_forward_impl(zp, pc, yp, ap);
    if (ap && gc.Q < g.Q) {                // (gc.Q == g.Q: the flat indices are the same in both planes)
      std::vector<int64_t> full(gc.PQ());  // index in the cropped plane -> index in the P*Q plane
      for (int64_t i = 0; i < gc.PQ(); ++i) full[i] = i / gc.Q * g.Q + i % gc.Q;
      parallel_for(pg.N * pg.C, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0 * pg.P * pg.Q; i < i1 * pg.P * pg.Q; ++i) ap[i] = full[ap[i]];
      });
    }
  }
  return py::make_tuple(y, arg_obj);
}

// *Pc, *Qc: P and Q less the trailing rows and columns of dz (planes of P x Q) that are zero (+-0) in every
// plane; at least 1 each. NaN is not zero. Stops at the first non-zero value (a pool that reads the last row
// finds one in the first plane).
void zero_tail(const float* dz, int64_t planes, int64_t P, int64_t Q, int64_t* Pc, int64_t* Qc) {
  const int64_t PQ = P * Q;
  const auto zero = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < planes; ++i)
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c)
          if (dz[i * PQ + r * Q + c] != 0.0f) return false;
    return true;
  };
  int64_t pc = P, qc = Q;
  while (pc > 1 && zero(pc - 1, pc, 0, Q)) --pc;
  while (qc > 1 && zero(0, pc, qc - 1, qc)) --qc;
  *Pc = pc, *Qc = qc;
}

py::tuple conv2d_act_maxpool_backward(const carray<float>& dy, const carray<float>& y,
                                      const carray<int64_t>& argmax, const carray<float>& x,
                                      const carray<float>& w, Pair stride, Quad padding, Pair dilation,
                                      int64_t groups, const std::optional<std::string>& activation,
                                      double alpha, bool need_dx, bool need_dw, bool need_db,
                                      const std::optional<std::string>& algo_name) {
  const Act act = parse_act(activation);
  const ConvGeom g = conv_geom(x, w, stride, padding, dilation, groups);
  const ConvAlgo algo = resolve_conv_algo(g, true, parse_conv_algo(algo_name));
  if (dy.ndim() != 4 || dy.shape(0) != g.N || dy.shape(1) != g.K)
    throw py::value_error("dy must have shape (" + std::to_string(g.N) + ", " + std::to_string(g.K) +
                          ", P', Q') (the pooled conv output), got " + shape_str(dy));
  const std::array<int64_t, 4> ys{dy.shape(0), dy.shape(1), dy.shape(2), dy.shape(3)};
  require_shape(y, "y", ys);
  require_shape(argmax, "argmax", ys);
  ConvGrads out(g, need_dx, need_dw, need_db);
  float *dxp = out.dx, *dwp = out.dw, *dbp = out.db;
  const int64_t PQo = ys[2] * ys[3], KPQo = g.K * PQo, PQ = g.PQ();
  const float *dyp = dy.data(), *yp = y.data(), *xp = x.data(), *wp = w.data();
  const int64_t* ap = argmax.data();
  const float a_s = static_cast<float>(alpha);
  bool ok = true;
  if (algo == ConvAlgo::c1 && !dxp && dwp) {
#ifdef CNNKERN_X86
    // the unfused dw/db sum (conv_c1_dw_images), each image's dz rebuilt in a per-thread buffer
    py::gil_scoped_release nogil;
    std::atomic<bool> bad{false};
    conv_c1_dw_images(xp, dwp, dbp, g, [&](int64_t n) {
      thread_local std::vector<float> gbuf, zbuf;
      float *gd = grow(gbuf, KPQo), *dz = grow(zbuf, g.K * PQ);
      std::copy(dyp + n * KPQo, dyp + (n + 1) * KPQo, gd);
      activation_backward_inplace(act, yp + n * KPQo, gd, KPQo, a_s);
      if (!maxpool_scatter_planes(gd, ap + n * KPQo, g.K, PQo, PQ, dz, Act::none, nullptr, 0.0f))
        bad.store(true, std::memory_order_relaxed);
      return static_cast<const float*>(dz);
    });
    ok = !bad.load();
#endif
  } else {
    carray<float> gd_arr = new_array<float>({g.N, g.K, ys[2], ys[3]});
    carray<float> dz_arr = new_array<float>({g.N, g.K, g.P, g.Q});
    float *gd = gd_arr.mutable_data(), *dz = dz_arr.mutable_data();
    py::gil_scoped_release nogil;
    parallel_for(g.N * g.K, [&](int64_t i0, int64_t i1) {
      std::copy(dyp + i0 * PQo, dyp + i1 * PQo, gd + i0 * PQo);
      activation_backward_inplace(act, yp + i0 * PQo, gd + i0 * PQo, (i1 - i0) * PQo, a_s);
    });
    ok = maxpool_scatter_planes(gd, ap, g.N * g.K, PQo, PQ, dz, Act::none, nullptr, 0.0f);
    // Trailing conv rows and columns whose dz is zero in every plane (those a floor-mode pool never reads,
    // the classic CNN's conv2 11x11 -> 5x5, or any whose gradient is all zero) add only 0·x terms: the
    // indirect GEMM runs on the conv cropped to the rest, dz compacted in place. Skipping an exact zero term
    // leaves a sum's bits as they were, so the gradients equal the full conv's for finite x and w (an Inf or
    // NaN in input rows that only those outputs read would turn PyTorch's dw into NaN through 0·Inf; here it
    // stays out: docs/design.md, non-finite values).
    ConvGeom gc = g;
    if (ok && croppable(g, algo)) {
      zero_tail(dz, g.N * g.K, g.P, g.Q, &gc.P, &gc.Q);
      if (gc.P < g.P || gc.Q < g.Q)
        for (int64_t i = 0; i < g.N * g.K; ++i)  // forwards: each row moves to a lower address or stays
          for (int64_t r = 0; r < gc.P; ++r)
            std::memmove(dz + i * gc.PQ() + r * gc.Q, dz + i * PQ + r * g.Q, sizeof(float) * gc.Q);
    }
    if (ok) conv_backward_impl(dz, xp, wp, dxp, dwp, dbp, gc, algo);
  }
  if (!ok) throw py::value_error(argmax_error(PQ, {g.N, g.K, g.P, g.Q}, "the conv output"));
  return out.tuple();
}

}  // namespace

void bind_conv_pool(py::module_& m) {
  const auto forward = [](const carray<float>& x, const carray<float>& w,
                          const std::optional<carray<float>>& b, Pair stride, Quad padding, Pair dilation,
                          int64_t groups, const std::optional<std::string>& activation, double alpha,
                          Pair pool_kernel, Pair pool_stride, Pair pool_padding, Pair pool_dilation,
                          bool pool_ceil_mode, bool need_argmax) {
    return conv2d_act_maxpool_forward(x, w, b, stride, padding, dilation, groups, activation, alpha,
                                      pool_kernel, pool_stride, pool_padding, pool_dilation, pool_ceil_mode,
                                      need_argmax, std::nullopt);
  };
  m.def("conv2d_act_maxpool_forward", forward, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("activation") = py::none(), py::arg("alpha") = 0.01, py::arg("pool_kernel"),
        py::arg("pool_stride"), py::arg("pool_padding"), py::arg("pool_dilation"), py::arg("pool_ceil_mode"),
        py::arg("need_argmax") = true,
        "(y, argmax | None): y = maxpool(act(conv2d(x, w) + b)), argmax a flat index into the conv output's "
        "P*Q plane; for one input channel the conv output of each image stays in cache.");
  m.def("conv2d_act_maxpool_forward_algo", &conv2d_act_maxpool_forward, py::arg("x"), py::arg("w"),
        py::arg("b") = py::none(), py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("activation") = py::none(), py::arg("alpha") = 0.01,
        py::arg("pool_kernel"), py::arg("pool_stride"), py::arg("pool_padding"), py::arg("pool_dilation"),
        py::arg("pool_ceil_mode"), py::arg("need_argmax") = true, py::arg("algo"),
        "conv2d_act_maxpool_forward with the conv by the algorithm named (conv_algos; None or 'auto': the "
        "fixed heuristics).");
  const auto backward = [](const carray<float>& dy, const carray<float>& y, const carray<int64_t>& argmax,
                           const carray<float>& x, const carray<float>& w, Pair stride, Quad padding,
                           Pair dilation, int64_t groups, const std::optional<std::string>& activation,
                           double alpha, bool need_dx, bool need_dw, bool need_db) {
    return conv2d_act_maxpool_backward(dy, y, argmax, x, w, stride, padding, dilation, groups, activation,
                                       alpha, need_dx, need_dw, need_db, std::nullopt);
  };
  m.def("conv2d_act_maxpool_backward", backward, py::arg("dy"), py::arg("y"), py::arg("argmax"), py::arg("x"),
        py::arg("w"), py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("activation") = py::none(), py::arg("alpha") = 0.01, py::arg("need_dx"),
        py::arg("need_dw"), py::arg("need_db"),
        "(dx | None, dw | None, db | None) of conv2d_act_maxpool_forward, from dy, the pooled y and argmax.");
  m.def("conv2d_act_maxpool_backward_algo", &conv2d_act_maxpool_backward, py::arg("dy"), py::arg("y"),
        py::arg("argmax"), py::arg("x"), py::arg("w"), py::kw_only(), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("activation") = py::none(), py::arg("alpha") = 0.01,
        py::arg("need_dx"), py::arg("need_dw"), py::arg("need_db"), py::arg("algo"),
        "conv2d_act_maxpool_backward with the conv by the algorithm named (conv_algos; None or 'auto': the "
        "fixed heuristics).");
}

}  // namespace cnnkern
