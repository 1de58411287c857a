// conv2d forward and backward on the packed SGEMM (gemm.h) through im2col (conv_im2col.h).
//   conv2d_forward:  x (N,C,H,W), w (K,C/G,R,S), b (K,) | None -> y (N,K,P,Q)
//   conv2d_backward: dy (N,K,P,Q), x, w -> (dx (N,C,H,W) | None, dw (K,C/G,R,S) | None, db (K,) | None)
// Per image n and group g, with Kg = K/G filter rows and CgRS = C/G*R*S col rows:
//   y[n,g]    (Kg, PQ)   = w[g] (Kg, CgRS) · col[n,g] (CgRS, PQ) + b     (w[g] packed once per call)
//   dcol[n,g] (CgRS, PQ) = w[g]^T · dy[n,g] (Kg, PQ),  dx[n] = col2im(dcol[n])
//   dw[g]     (Kg, CgRS) = Σ_n dy[n,g] · col[n,g]^T
//   db[k]                = Σ_{n,p,q} dy[n,k,p,q]
// On the SIMD path two geometries leave this GEMM-through-im2col scheme (each decided in one predicate):
// 1-4 input channel 3x3 (conv_c1_applies: direct kernels, conv_c1.cpp), and every other stride-1 conv
// without padding or dilation in one group (conv_igemm_applies: indirect GEMMs that read x and dy in place,
// conv_igemm.cpp; padded ones over a padded copy of x (dw only below 8 channels), strided ones' forward and
// dw, grouped ones with 8+ channels per group, group by group: conv_igemm_padded.cpp); depthwise convs
// (groups == C == K) run direct kernels on every path (conv_direct.cpp); a pointwise conv's dw runs dot
// products on dy and x in place (conv_pointwise.cpp); the scalar path and all other geometries run the code
// below. Threads (docs/threads.md): the forward splits images, or each image's output
// columns; the backward sums dw over chunks of images that depend on the problem alone (reduction_chunks), so
// no bit of any result depends on the thread count or on timing (conv_backward_impl).
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv.h"

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/checked.h"
#include "runtime/common.h"
#include "kernels/conv_direct.h"
#include "kernels/conv_igemm.h"
#include "kernels/conv_pointwise.h"
#include "kernels/conv_winograd.h"
#include "kernels/conv_im2col.h"
#include "kernels/gemm.h"

namespace cnnkern {

namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

}  // namespace

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

namespace {

std::string quad_str(const Quad& s) {
  return "(" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) + ", " +
         std::to_string(s[3]) + ")";
}

}  // namespace

// Checks what a direct call could get wrong (the front door already did) and derives the geometry.
ConvGeom conv_geom(const carray<float>& x, const carray<float>& w, Pair stride, Quad padding, Pair dilation,
                   int64_t groups) {
  if (x.ndim() != 4) throw std::invalid_argument("x must be 4-D (N, C, H, W), got shape " + shape_str(x));
  if (w.ndim() != 4)
    throw std::invalid_argument("w must be 4-D (K, C/groups, R, S), got shape " + shape_str(w));
  return conv_geom_shapes({x.shape(0), x.shape(1), x.shape(2), x.shape(3)},
                          {w.shape(0), w.shape(1), w.shape(2), w.shape(3)}, stride, padding, dilation,
                          groups);
}

ConvGeom conv_geom_shapes(Quad xs, Quad ws, Pair stride, Quad padding, Pair dilation, int64_t groups) {
  if (groups < 1) throw std::invalid_argument("groups must be >= 1, got " + std::to_string(groups));
  for (int64_t v : stride)
    if (v < 1) throw std::invalid_argument("stride must be >= 1");
  for (int64_t v : dilation)
    if (v < 1) throw std::invalid_argument("dilation must be >= 1");
  for (int64_t v : padding)
    if (v < 0) throw std::invalid_argument("padding must be >= 0");
  ConvGeom g{};
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.K = ws[0], g.R = ws[2], g.S = ws[3];
  g.sh = stride[0], g.sw = stride[1], g.pt = padding[0], g.pl = padding[2];
  g.dh = dilation[0], g.dw = dilation[1], g.G = groups;
  if (g.C % groups || g.K % groups || ws[1] != g.C / groups)
    throw std::invalid_argument("w of shape " + quad_str(ws) + " does not fit x of shape " + quad_str(xs) +
                                " with groups=" + std::to_string(groups));
  // Padded input and dilated kernel extents, overflow-checked: padding=2**62 wrapped past the check below
  // (signed overflow, found by the UBSan build).
  const char* what = "the padded input or the dilated kernel extent";
  const int64_t Hp = checked_add(checked_add(g.H, padding[0], what), padding[1], what);
  const int64_t Wp = checked_add(checked_add(g.W, padding[2], what), padding[3], what);
  const int64_t Rd = checked_add(checked_mul(g.dh, g.R - 1, what), 1, what);
  const int64_t Sd = checked_add(checked_mul(g.dw, g.S - 1, what), 1, what);
  if (Hp < Rd || Wp < Sd) throw std::invalid_argument("the (dilated) kernel is larger than the padded input");
  g.P = checked_sub(Hp, Rd, what) / g.sh + 1;
  g.Q = checked_sub(Wp, Sd, what) / g.sw + 1;
  return g;
}

namespace {

// Packs every group's weight block w[g] (Kg, CgRS), or its transpose, for the current micro-kernel into
// buf, and lists the packed blocks in out (both grow-only scratch of the caller).
void pack_weights(const float* w, const ConvGeom& g, bool transpose, std::vector<float>& buf,
                  std::vector<PackedA>& out) {
  const UKernel& uk = ukernel();
  const int64_t Kg = g.Kg(), CgRS = g.CgRS();
  const int64_t rows = transpose ? CgRS : Kg, cols = transpose ? Kg : CgRS;
  const int64_t per = packed_a_floats(rows, cols, uk);
  float* dst = grow(buf, per * g.G);
  out.clear();
  for (int64_t gi = 0; gi < g.G; ++gi) {
    const float* wg = w + gi * Kg * CgRS;
    const MatView v = transpose ? MatView{wg, 1, CgRS} : MatView{wg, CgRS, 1};
    out.push_back(pack_a(rows, cols, v, uk, dst + gi * per));
  }
}

float* col_scratch(int64_t n) {
  thread_local std::vector<float> buf;
  return grow(buf, n);
}

// col (C*R*S, P*Q) of image xn for the dw GEMM: the image itself for a pointwise conv, else im2col into
// `col` (split over threads by channel when `parallel`).
const float* backward_col(const float* xn, const ConvGeom& g, float* col, bool parallel) {
  if (g.pointwise()) return xn;
  if (parallel)
    parallel_for(g.C, [&](int64_t c0, int64_t c1) { im2col(xn, g, c0, c1, col, g.PQ()); });
  else
    im2col(xn, g, 0, g.C, col, g.PQ());
  return col;
}

// Images with few output columns (P*Q below kBatchBelowForward / kBatchBelowBackward: conv3's 3x3
// outputs, conv2's 11x11) make thin per-image GEMMs: 9 columns fill 9 of a 16-wide sliver, and the dw
// GEMM sums over only 9 terms per pass over its output; 121 columns leave 7 of 128 idle. Such convs put
// `nb` images side by side instead: col (C*R*S, nb*P*Q), image i in columns [i*PQ, (i+1)*PQ) (and dy
// likewise gathered to (K, nb*P*Q)), so one GEMM covers nb images. Blocks of about kBatchCols columns: in
// the forward their count a multiple of the thread count so every thread gets the same number (the
// forward's sums run within one column, so the blocking changes no bit); in the backward, where dw sums
// over the images, blocks within the chunks of reduction_chunks, from the problem alone. Measured on the
// classic CNN at batch 128 (noisy VM): conv2's forward (121 columns) gained ~15% batched, its backward
// lost ~25% at 2 threads (a 3-image dcol, 288 x 363 floats, no longer stays in L2 for col2im), so the
// backward batches only below 64 columns; conv3 (9 columns) gains in both.
constexpr int64_t kBatchBelowForward = 128, kBatchBelowBackward = 64, kBatchCols = 256;

// Images per block of the batched forward.
int64_t batch_images(const ConvGeom& g, int64_t below) {
  if (g.pointwise() || g.PQ() >= below || g.N < 2) return 1;
  const int64_t nt = num_threads();
  const int64_t per_thread = std::max<int64_t>(1, (g.N * g.PQ() + nt * kBatchCols - 1) / (nt * kBatchCols));
  return (g.N + nt * per_thread - 1) / (nt * per_thread);
}

// col (C*R*S, ld) of images [n0, n0+cnt) side by side; the columns [cnt*PQ, ld) zeroed.
void im2col_images(const float* x, const ConvGeom& g, int64_t n0, int64_t cnt, float* col, int64_t ld) {
  const int64_t PQ = g.PQ(), CHW = g.C * g.H * g.W, CRS = g.C * g.R * g.S;
  for (int64_t i = 0; i < cnt; ++i) im2col(x + (n0 + i) * CHW, g, 0, g.C, col + i * PQ, ld, false);
  if (ld > cnt * PQ)
    for (int64_t r = 0; r < CRS; ++r) std::fill(col + r * ld + cnt * PQ, col + (r + 1) * ld, 0.0f);
}

// Batched forward: per block of nb images, y-block (K, cnt*PQ) = w · col-block, then scattered to the
// images' (K, PQ) planes with the bias and activation.
void conv_forward_batched(const float* x, const float* b, float* y, const ConvGeom& g,
                          const std::vector<PackedA>& wp, int64_t nb, Act act, float alpha) {
  const int64_t PQ = g.PQ(), CgRS = g.CgRS(), Kg = g.Kg(), CRS = g.C * g.R * g.S;
  const int64_t nr = wp[0].uk.nr, blocks = (g.N + nb - 1) / nb;
  parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> outbuf;
    for (int64_t bi = b0; bi < b1; ++bi) {
      const int64_t n0 = bi * nb, cnt = std::min(nb, g.N - n0), cols = cnt * PQ,
                    ld = (cols + nr - 1) / nr * nr;
      float* col = col_scratch(CRS * ld);
      im2col_images(x, g, n0, cnt, col, ld);
      float* out = grow(outbuf, g.K * cols);
      for (int64_t gi = 0; gi < g.G; ++gi)
        sgemm_padded_b_serial(wp[gi], col + gi * CgRS * ld, ld, 0, cols, out + gi * Kg * cols, cols, false);
      for (int64_t i = 0; i < cnt; ++i)
        for (int64_t k = 0; k < g.K; ++k) {
          float* yk = y + ((n0 + i) * g.K + k) * PQ;
          const float* o = out + k * cols + i * PQ;
          const float bias = b ? b[k] : 0.0f;
          if (b)
            for (int64_t j = 0; j < PQ; ++j) yk[j] = o[j] + bias;
          else
            std::copy(o, o + PQ, yk);
          activation_inplace(act, yk, PQ, alpha);
        }
    }
  });
}

// Forward: per image, im2col into rows padded to whole slivers, 64-byte aligned, which the micro-kernel
// reads in place (no B packing); then per group y[n,g] = w[g] · col[g] with the packed w[g], and the bias
// added while the output is in cache. A pointwise conv multiplies the image itself (packed, as its rows
// are not padded). With fewer images than threads, the threads split each image's output columns.
void conv_forward_impl(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                       float alpha) {
  const int64_t PQ = g.PQ(), CgRS = g.CgRS(), Kg = g.Kg(), CHW = g.C * g.H * g.W;
  thread_local std::vector<float> wbuf;
  thread_local std::vector<PackedA> wp_scratch;
  pack_weights(w, g, false, wbuf, wp_scratch);
  const std::vector<PackedA>& wp = wp_scratch;  // a local name, so the worker threads see the caller's
  const int64_t nr = wp[0].uk.nr, ld = (PQ + nr - 1) / nr * nr, slivers = ld / nr;
  if (const int64_t nb = batch_images(g, kBatchBelowForward); nb > 1)
    return conv_forward_batched(x, b, y, g, wp, nb, act, alpha);
  const bool pointwise = g.pointwise();
  auto make_col = [&](int64_t n, bool parallel) -> const float* {
    if (pointwise) return x + n * CHW;
    float* col = col_scratch(g.C * g.R * g.S * ld);
    auto rows = [&](int64_t c0, int64_t c1) { im2col(x + n * CHW, g, c0, c1, col, ld); };
    if (parallel)
      parallel_for(g.C, rows);
    else
      rows(0, g.C);
    return col;
  };
  // The epilogue while the outputs are in cache: bias, then the fused activation, over rows [k0, k1) (all
  // groups' filters) x columns [j0, j1) of image yn, row segment by row segment.
  auto bias_act = [&](float* yn, int64_t k0, int64_t k1, int64_t j0, int64_t j1) {
    for (int64_t k = k0; k < k1; ++k) {
      float* yk = yn + k * PQ;
      if (b)
        for (int64_t j = j0; j < j1; ++j) yk[j] += b[k];
      activation_inplace(act, yk + j0, j1 - j0, alpha);
    }
  };
  // Output columns [s0*nr, s1*nr) of image n from its col.
  auto columns = [&](const float* col, int64_t n, int64_t s0, int64_t s1) {
    const int64_t j0 = s0 * nr, j1 = std::min(PQ, s1 * nr);
    float* yn = y + n * g.K * PQ;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      float* C = yn + gi * Kg * PQ;
      if (pointwise)
        sgemm_packed_rows_serial(wp[gi], 0, Kg, j0, j1, MatView{col + gi * CgRS * PQ, PQ, 1}, C, PQ, false);
      else
        sgemm_padded_b_serial(wp[gi], col + gi * CgRS * ld, ld, j0, j1, C, PQ, false);
    }
    bias_act(yn, 0, g.K, j0, j1);
  };
  const int64_t mr = wp[0].uk.mr, panels = (Kg + mr - 1) / mr;
  if (g.N >= num_threads()) {
    parallel_for(g.N, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) columns(make_col(n, false), n, 0, slivers);
    });
  } else if (pointwise && g.G * panels > 1 && g.K * g.CgRS() > CHW) {
    // A pointwise conv whose weights outweigh the image (batch-1 latency): the threads split the filters'
    // row panels, each thread writing whole rows of y; split by columns, both threads read all the packed
    // weights and write the same rows (measured, 64 -> 64 channels at 8x8, 2 threads: 36 us against 13.5 us
    // on one thread).
    for (int64_t n = 0; n < g.N; ++n)
      parallel_for(g.G * panels, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1;) {  // the run of panels [i, e) within group gi
          const int64_t gi = i / panels, e = std::min(i1, (gi + 1) * panels);
          const int64_t k0 = (i - gi * panels) * mr, k1 = std::min(Kg, (e - gi * panels) * mr);
          float* yn = y + n * g.K * PQ;
          sgemm_packed_rows_serial(wp[gi], k0, k1, 0, PQ, MatView{x + n * CHW + gi * CgRS * PQ, PQ, 1},
                                   yn + gi * Kg * PQ, PQ, false);
          bias_act(yn, gi * Kg + k0, gi * Kg + k1, 0, PQ);
          i = e;
        }
      });
  } else {
    for (int64_t n = 0; n < g.N; ++n) {
      const float* col = make_col(n, true);
      parallel_for(slivers, [&](int64_t s0, int64_t s1) { columns(col, n, s0, s1); });
    }
  }
}

}  // namespace

void conv_backward_impl(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                        const ConvGeom& g, ConvAlgo algo) {
  if (g.N == 0) {  // no image: zero dw and db (the kernels below assume one; the im2col path left dw unset)
    if (dw) std::fill(dw, dw + g.K * g.CgRS(), 0.0f);
    if (db) std::fill(db, db + g.K, 0.0f);
    return;
  }
  algo = resolve_conv_algo(g, true, algo);
  if (algo == ConvAlgo::direct) return conv_direct_backward(dy, x, w, dx, dw, db, g);  // depthwise
  if (algo == ConvAlgo::winograd) {  // dx by Winograd; dw and db by the heuristics' backward choice
    if (dx) conv_winograd_dx(dy, w, dx, g);
    if (dw || db) conv_backward_impl(dy, x, w, nullptr, dw, db, g, conv_dw_algo_beside_winograd(g));
    return;
  }
  const int64_t PQ = g.PQ(), CgRS = g.CgRS(), Kg = g.Kg(), CRS = g.C * g.R * g.S, HW = g.H * g.W;
  // igemm: dx on the indirect GEMM where one applies (stride 1, 8+ channels when padded), else below; dw
  // always on it. c1: dw on the single-channel kernel, dx on the indirect GEMM. Both sum db during dw's pass
  // over dy. im2col: everything below.
  const bool ig = algo == ConvAlgo::igemm || algo == ConvAlgo::c1;
  const bool padded = ig && conv_igemm_padded_applies(g), grouped = ig && conv_igemm_grouped_applies(g),
             igemm = padded || grouped || (ig && conv_igemm_applies(g)), c1 = dw && algo == ConvAlgo::c1,
             strided = dw && algo == ConvAlgo::igemm && conv_igemm_strided_applies(g),
             padded_dw = dw && algo == ConvAlgo::igemm && !igemm && conv_igemm_padded_dw_applies(g),
             db_with_dw = (igemm || c1 || strided || padded_dw) && dw && db;
  if (db && !db_with_dw) conv_bias_grad(dy, db, g);
#ifdef CNNKERN_X86
  if (c1) {
    conv_c1_dw(dy, x, dw, db, g);
    dw = nullptr;
  }
#endif
  if (strided || padded_dw) {  // dw (and db) on the indirect GEMM; dx below
    (strided ? conv_igemm_strided_dw : conv_igemm_padded_dw)(dy, x, dw, db_with_dw ? db : nullptr, g);
    dw = nullptr;
  }
  if (dw && !igemm && conv_pointwise_dw_applies(g)) {  // dot products on dy and x in place
    conv_pointwise_dw(dy, x, dw, g);
    dw = nullptr;
  }
  if (!dx && !dw) return;
  if (igemm) {
    float* dbw = db_with_dw && !c1 ? db : nullptr;
    if (grouped) return conv_igemm_grouped_backward(dy, x, w, dx, dw, dbw, g);
    if (padded) return conv_igemm_padded_backward(dy, x, w, dx, dw, dbw, g);
    return conv_igemm_backward(dy, x, w, dx, dw, dbw, g);
  }
  thread_local std::vector<float> wtbuf;
  thread_local std::vector<PackedA> wtp_scratch;
  if (dx) pack_weights(w, g, true, wtbuf, wtp_scratch);
  const std::vector<PackedA>& wtp = wtp_scratch;  // a local name, so the worker threads see the caller's

  // dst (K, CgRS) (=|+=) dy[n] · col[n]^T, group by group.
  auto dw_image = [&](int64_t n, float* dst, bool acc, bool parallel) {
    const float* col = backward_col(x + n * g.C * HW, g, col_scratch(CRS * PQ), parallel);
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const MatView A{dy + (n * g.K + gi * Kg) * PQ, PQ, 1}, B{col + gi * CgRS * PQ, 1, PQ};
      float* C = dst + gi * Kg * CgRS;
      if (parallel)
        sgemm(Kg, CgRS, PQ, A, B, C, CgRS, acc);
      else
        sgemm_serial(Kg, CgRS, PQ, A, B, C, CgRS, acc);
    }
  };
  // dx[n] = col2im(w^T · dy[n]); a pointwise conv writes w^T · dy[n] straight into dx[n].
  auto dx_image = [&](int64_t n, bool parallel) {
    float* dxn = dx + n * g.C * HW;
    thread_local std::vector<float> dcolbuf;
    float* dcol = g.pointwise() ? dxn : grow(dcolbuf, CRS * PQ);
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const MatView B{dy + (n * g.K + gi * Kg) * PQ, PQ, 1};
      float* C = dcol + gi * CgRS * PQ;
      if (parallel)
        sgemm_packed(wtp[gi], PQ, B, C, PQ, false);
      else
        sgemm_packed_serial(wtp[gi], 0, PQ, B, C, PQ, false);
    }
    if (g.pointwise()) return;
    auto scatter = [&](int64_t c0, int64_t c1) {
      std::memset(dxn + c0 * HW, 0, sizeof(float) * (c1 - c0) * HW);
      col2im_add(dcol, g, c0, c1, dxn, PQ);
    };
    if (parallel)
      parallel_for(g.C, scatter);
    else
      scatter(0, g.C);
  };

  // dw: a partial per chunk of images (reduction_chunks, from the problem alone), the chunk's images summed
  // in order into it (GEMM accumulation), the partials added in chunk order; dx: image by image. At least as
  // many chunks as threads: the threads take chunks. Fewer: the chunks run one after another, each GEMM,
  // im2col and col2im split over the threads (the same bits: those split output elements, never a sum).
  // Few output pixels (PQ below kBatchBelowBackward): a chunk's images go side by side, blocks of about
  // kBatchCols columns, one GEMM per block (the blocks too depend on the problem alone).
  const int64_t dw_size = g.K * CgRS, nt = num_threads();
  const int64_t chunks = reduction_chunks(g.N, PQ, dw ? dw_size : 0);
  const bool batched = !g.pointwise() && PQ < kBatchBelowBackward && g.N > 1;
  thread_local std::vector<float> partbuf;
  float* parts = dw && chunks > 1 ? grow(partbuf, (chunks - 1) * dw_size) : nullptr;
  auto block = [&](int64_t b0, int64_t m, float* part, bool acc, bool parallel) {
    thread_local std::vector<float> dybuf, dcolbuf;
    const int64_t cols = m * PQ;
    float* dyb = grow(dybuf, g.K * cols);  // dy of the block's images, (K, cols)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < g.K; ++k) {
        const float* src = dy + ((b0 + i) * g.K + k) * PQ;
        std::copy(src, src + PQ, dyb + k * cols + i * PQ);
      }
    auto each_image = [&](const std::function<void(int64_t)>& fn) {
      if (parallel)
        parallel_for(m, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) fn(i);
        });
      else
        for (int64_t i = 0; i < m; ++i) fn(i);
    };
    if (part) {
      float* col = col_scratch(CRS * cols);
      each_image([&](int64_t i) { im2col(x + (b0 + i) * g.C * HW, g, 0, g.C, col + i * PQ, cols, false); });
      for (int64_t gi = 0; gi < g.G; ++gi) {
        const MatView A{dyb + gi * Kg * cols, cols, 1}, B{col + gi * CgRS * cols, 1, cols};
        if (parallel)
          sgemm(Kg, CgRS, cols, A, B, part + gi * Kg * CgRS, CgRS, acc);
        else
          sgemm_serial(Kg, CgRS, cols, A, B, part + gi * Kg * CgRS, CgRS, acc);
      }
    }
    if (dx) {
      float* dcol = grow(dcolbuf, CRS * cols);
      for (int64_t gi = 0; gi < g.G; ++gi) {
        const MatView B{dyb + gi * Kg * cols, cols, 1};
        if (parallel)
          sgemm_packed(wtp[gi], cols, B, dcol + gi * CgRS * cols, cols, false);
        else
          sgemm_packed_serial(wtp[gi], 0, cols, B, dcol + gi * CgRS * cols, cols, false);
      }
      each_image([&](int64_t i) {
        float* dxn = dx + (b0 + i) * g.C * HW;
        std::memset(dxn, 0, sizeof(float) * g.C * HW);
        col2im_add(dcol + i * PQ, g, 0, g.C, dxn, cols);
      });
    }
  };
  auto chunk = [&](int64_t c, bool parallel) {
    const int64_t n0 = g.N * c / chunks, n1 = g.N * (c + 1) / chunks, cnt = n1 - n0;
    float* part = dw ? (c == 0 ? dw : parts + (c - 1) * dw_size) : nullptr;
    if (batched) {
      const int64_t blocks = (cnt * PQ + kBatchCols - 1) / kBatchCols;
      for (int64_t j = 0; j < blocks; ++j) {
        const int64_t b0 = n0 + cnt * j / blocks, b1 = n0 + cnt * (j + 1) / blocks;
        block(b0, b1 - b0, part, j > 0, parallel);
      }
      return;
    }
    for (int64_t n = n0; n < n1; ++n) {
      if (part) dw_image(n, part, n > n0, parallel);
      if (dx) dx_image(n, parallel);
    }
  };
  if (chunks >= nt)
    parallel_chunks(chunks, [&](int64_t c) { chunk(c, false); });
  else
    for (int64_t c = 0; c < chunks; ++c) chunk(c, true);
  if (parts)
    parallel_for(dw_size, [&](int64_t i0, int64_t i1) {
      for (int64_t c = 1; c < chunks; ++c) {
        const float* part = parts + (c - 1) * dw_size;
        for (int64_t i = i0; i < i1; ++i) dw[i] += part[i];
      }
    });
}

ConvGrads::ConvGrads(const ConvGeom& g, bool need_dx, bool need_dw, bool need_db) {
  const auto make = [](std::vector<py::ssize_t> shape, py::object* obj) {
    carray<float> a = new_array<float>(shape);
    *obj = a;
    return a.mutable_data();
  };
  if (need_dx) dx = make({g.N, g.C, g.H, g.W}, &dx_obj);
  if (need_dw) dw = make({g.K, g.Cg(), g.R, g.S}, &dw_obj);
  if (need_db) db = make({g.K}, &db_obj);
}

// y = act(conv(x, w) + b) by `algo` (auto_: the heuristics' choice; the GIL already released).
void conv_forward_dispatch(const float* xp, const float* wp, const float* bp, float* yp, const ConvGeom& g,
                           Act act, float alpha, ConvAlgo algo) {
  algo = resolve_conv_algo(g, false, algo);
  if (g.N == 0 || g.K == 0) return;  // y is empty (the indirect GEMMs' tiling assumes pixels)
  switch (algo) {
    case ConvAlgo::c1:
#ifdef CNNKERN_X86
      conv_c1_forward(xp, wp, bp, yp, g, act, alpha);
#endif
      return;
    case ConvAlgo::igemm:  // the one variant that fits g
      if (conv_igemm_applies(g))
        conv_igemm_forward(xp, wp, bp, yp, g, act, alpha);
      else if (conv_igemm_padded_dw_applies(g))  // any channel count
        conv_igemm_padded_forward(xp, wp, bp, yp, g, act, alpha);
      else if (conv_igemm_grouped_applies(g))
        conv_igemm_grouped_forward(xp, wp, bp, yp, g, act, alpha);
      else
        conv_igemm_strided_forward(xp, wp, bp, yp, g, act, alpha);
      return;
    case ConvAlgo::winograd:
      conv_winograd_forward(xp, wp, bp, yp, g, act, alpha);
      return;
    case ConvAlgo::direct:
      conv_direct_forward(xp, wp, bp, yp, g);
      if (act != Act::none)
        parallel_for(g.N * g.K, [&](int64_t i0, int64_t i1) {
          activation_inplace(act, yp + i0 * g.PQ(), (i1 - i0) * g.PQ(), alpha);
        });
      return;
    default:
      conv_forward_impl(xp, wp, bp, yp, g, act, alpha);
  }
}

namespace {

// y = act(conv(x, w) + b); act None is the plain conv2d_forward.
carray<float> conv2d_bias_act_forward(const carray<float>& x, const carray<float>& w,
                                      const std::optional<carray<float>>& b, Pair stride, Quad padding,
                                      Pair dilation, int64_t groups,
                                      const std::optional<std::string>& activation, double alpha,
                                      const std::optional<std::string>& algo_name) {
  const Act act = parse_act(activation);
  const ConvGeom g = conv_geom(x, w, stride, padding, dilation, groups);
  const ConvAlgo algo = resolve_conv_algo(g, false, parse_conv_algo(algo_name));
  if (b && (b->ndim() != 1 || b->shape(0) != g.K))
    throw std::invalid_argument("b must have shape (" + std::to_string(g.K) + ",), got " + shape_str(*b));
  carray<float> y = new_array<float>({g.N, g.K, g.P, g.Q});
  const float *xp = x.data(), *wp = w.data(), *bp = b ? b->data() : nullptr;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    conv_forward_dispatch(xp, wp, bp, yp, g, act, static_cast<float>(alpha), algo);
  }
  return y;
}

carray<float> conv2d_forward(const carray<float>& x, const carray<float>& w,
                             const std::optional<carray<float>>& b, Pair stride, Quad padding, Pair dilation,
                             int64_t groups) {
  return conv2d_bias_act_forward(x, w, b, stride, padding, dilation, groups, std::nullopt, 0.0, std::nullopt);
}

py::tuple conv2d_backward(const carray<float>& dy, const carray<float>& x, const carray<float>& w,
                          Pair stride, Quad padding, Pair dilation, int64_t groups, bool need_dx,
                          bool need_dw, bool need_db, const std::optional<std::string>& algo_name) {
  const ConvGeom g = conv_geom(x, w, stride, padding, dilation, groups);
  const ConvAlgo algo = resolve_conv_algo(g, true, parse_conv_algo(algo_name));
  if (dy.ndim() != 4 || dy.shape(0) != g.N || dy.shape(1) != g.K || dy.shape(2) != g.P || dy.shape(3) != g.Q)
    throw std::invalid_argument("dy must have shape (" + std::to_string(g.N) + ", " + std::to_string(g.K) +
                                ", " + std::to_string(g.P) + ", " + std::to_string(g.Q) + "), got " +
                                shape_str(dy));
  ConvGrads out(g, need_dx, need_dw, need_db);
  const float *dyp = dy.data(), *xp = x.data(), *wp = w.data();
  {
    py::gil_scoped_release nogil;
    conv_backward_impl(dyp, xp, wp, out.dx, out.dw, out.db, g, algo);
  }
  return out.tuple();
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        "x (N,C,H,W), w (K,C/groups,R,S), b (K,) | None -> y (N,K,P,Q); padding (top, bottom, left, right).");
  const auto bias_act = [](const carray<float>& x, const carray<float>& w,
                           const std::optional<carray<float>>& b, Pair stride, Quad padding, Pair dilation,
                           int64_t groups, const std::optional<std::string>& activation, double alpha) {
    return conv2d_bias_act_forward(x, w, b, stride, padding, dilation, groups, activation, alpha,
                                   std::nullopt);
  };
  m.def("conv2d_bias_act_forward", bias_act, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("activation") = py::none(), py::arg("alpha") = 0.01,
        "y = act(conv2d(x, w) + b): the bias and activation applied in the GEMM's epilogue, while each block "
        "of output columns is in cache; activation None, 'relu', 'leaky_relu', 'sigmoid' or 'tanh'.");
  m.def("conv2d_bias_act_forward_algo", &conv2d_bias_act_forward, py::arg("x"), py::arg("w"),
        py::arg("b") = py::none(), py::kw_only(), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("activation") = py::none(), py::arg("alpha") = 0.01, py::arg("algo"),
        "conv2d_bias_act_forward by the algorithm named (conv_algos; None or 'auto': the fixed heuristics).");
  const auto backward = [](const carray<float>& dy, const carray<float>& x, const carray<float>& w,
                           Pair stride, Quad padding, Pair dilation, int64_t groups, bool need_dx,
                           bool need_dw, bool need_db) {
    return conv2d_backward(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw, need_db,
                           std::nullopt);
  };
  m.def("conv2d_backward", backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::kw_only(),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("need_dx"),
        py::arg("need_dw"), py::arg("need_db"),
        "dy (N,K,P,Q), x, w -> (dx | None, dw | None, db | None); writes new arrays.");
  m.def("conv2d_backward_algo", &conv2d_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::kw_only(),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("need_dx"),
        py::arg("need_dw"), py::arg("need_db"), py::arg("algo"),
        "conv2d_backward by the algorithm named (conv_algos; None or 'auto': the fixed heuristics).");
}

}  // namespace cnnkern
