// dense (fully connected) forward and backward on the packed SGEMM (gemm.h); w is (out, in) as in PyTorch.
//   dense_forward:  x (N,in), w (out,in), b (out,) | None -> y (N,out) = x · w^T + b
//   dense_backward: dy (N,out), x, w -> (dx (N,in) = dy · w | None,  dw (out,in) = dy^T · x,
//                                        db (out,) = Σ_n dy[n] | None)
// The transposes are strided views (MatView) that the GEMM's packing reads directly; each GEMM splits its
// output tiles over the threads.
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"
#include "kernels/gemm.h"

namespace cnnkern {
namespace {

void check_2d(const py::array& a, const char* name, int64_t rows, int64_t cols) {
  if (a.ndim() != 2 || (rows >= 0 && a.shape(0) != rows) || (cols >= 0 && a.shape(1) != cols))
    throw std::invalid_argument(
        std::string(name) + " must be 2-D" +
        (rows >= 0 ? " with shape (" + std::to_string(rows) + ", " + std::to_string(cols) + ")"
                   : std::string()) +
        ", got ndim " + std::to_string(a.ndim()));
}

// y[o] = w[o, :] · x for o in [o0, o1): the portable matrix-vector product (four partial sums over k, added
// in a fixed order), or the AVX2 one (gemv_avx2.cpp; the AVX-512 path uses it too). Each row's value depends
// on the SIMD path only, never on how the rows were cut between threads.
void sgemv_rows(const float* w, int64_t in, const float* x, int64_t o0, int64_t o1, float* y) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return sgemv_rows_avx2(w, in, x, in, o0, o1, y);
#endif
  for (int64_t o = o0; o < o1; ++o) {
    const float* r = w + o * in;
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    int64_t k = 0;
    for (; k + 4 <= in; k += 4)
      for (int j = 0; j < 4; ++j) s[j] += r[k + j] * x[k + j];
    float t = (s[0] + s[1]) + (s[2] + s[3]);
    for (; k < in; ++k) t += r[k] * x[k];
    y[o] = t;
  }
}

// Batch 1: the GEMM would pack all of w (out x in) to multiply one row, so w is streamed once instead, its
// rows split over the threads (blocks of 16 rows) once it is large enough to pay for waking them.
constexpr int64_t kGemvSerialBelow = int64_t{1} << 15, kGemvGrain = 16;
// From 64 rows of x and 256 outputs, the packed GEMM (w^T packed once, the register-blocked micro-kernel);
// below, sgemm_nt's dot products on x and w in place. Measured on the 2-core Zen 4 VM, interleaved, 1 and 2
// threads: packed 0.74-1.01x sgemm_nt's time at batch 64-256 with 256-1024 outputs and 256-4096 inputs (one
// 1.06), 1.05-1.23x at batch 32, 1.2-5.5x with 10 or 64 outputs.
constexpr int64_t kPackedFrom = 64, kPackedOut = 256;

// y = act(x · w^T + b); act None is the plain dense_forward.
carray<float> dense_bias_act_forward(const carray<float>& x, const carray<float>& w,
                                     const std::optional<carray<float>>& b,
                                     const std::optional<std::string>& activation, double alpha) {
  const Act act = parse_act(activation);
  check_2d(x, "x", -1, -1);
  const int64_t N = x.shape(0), in = x.shape(1);
  check_2d(w, "w", -1, in);
  const int64_t out = w.shape(0);
  if (b && (b->ndim() != 1 || b->shape(0) != out))
    throw std::invalid_argument("b must have shape (" + std::to_string(out) + ",)");
  carray<float> y = new_array<float>({N, out});
  const float *xp = x.data(), *wp = w.data(), *bp = b ? b->data() : nullptr;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (N == 1 && out * in < kGemvSerialBelow)
      sgemv_rows(wp, in, xp, 0, out, yp);
    else if (N == 1)
      parallel_for_dynamic(out, kGemvGrain,
                           [&](int64_t o0, int64_t o1) { sgemv_rows(wp, in, xp, o0, o1, yp); });
    else if (N >= kPackedFrom && out >= kPackedOut)
      sgemm(N, out, in, MatView{xp, in, 1}, MatView{wp, 1, in}, yp, out, false);
    else
      sgemm_nt(N, out, in, xp, in, wp, in, yp, out);
    if (bp)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < out; ++o) yp[n * out + o] += bp[o];
    activation_inplace(act, yp, N * out, static_cast<float>(alpha));
  }
  return y;
}

carray<float> dense_forward(const carray<float>& x, const carray<float>& w,
                            const std::optional<carray<float>>& b) {
  return dense_bias_act_forward(x, w, b, std::nullopt, 0.0);
}

py::tuple dense_backward(const carray<float>& dy, const carray<float>& x, const carray<float>& w,
                         bool need_dx, bool need_db) {
  check_2d(x, "x", -1, -1);
  const int64_t N = x.shape(0), in = x.shape(1);
  check_2d(w, "w", -1, in);
  const int64_t out = w.shape(0);
  check_2d(dy, "dy", N, out);
  py::object dx_obj = py::none(), db_obj = py::none();
  float *dxp = nullptr, *dbp = nullptr;
  if (need_dx) {
    carray<float> a = new_array<float>({N, in});
    dxp = a.mutable_data();
    dx_obj = a;
  }
  if (need_db) {
    carray<float> a = new_array<float>({out});
    dbp = a.mutable_data();
    db_obj = a;
  }
  carray<float> dw = new_array<float>({out, in});
  const float *dyp = dy.data(), *xp = x.data(), *wp = w.data();
  float* dwp = dw.mutable_data();
  {
    py::gil_scoped_release nogil;
    sgemm(out, in, N, MatView{dyp, 1, out}, MatView{xp, in, 1}, dwp, in, false);
    if (dxp) sgemm(N, in, out, MatView{dyp, out, 1}, MatView{wp, in, 1}, dxp, in, false);
    if (dbp) {  // column sums of dy, row by row in double
      thread_local std::vector<double> s;
      s.assign(static_cast<size_t>(out), 0.0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < out; ++o) s[o] += dyp[n * out + o];
      for (int64_t o = 0; o < out; ++o) dbp[o] = static_cast<float>(s[o]);
    }
  }
  return py::make_tuple(dx_obj, dw, db_obj);
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        "x (N,in), w (out,in), b (out,) | None -> y (N,out) = x w^T + b.");
  m.def("dense_bias_act_forward", &dense_bias_act_forward, py::arg("x"), py::arg("w"),
        py::arg("b") = py::none(), py::kw_only(), py::arg("activation") = py::none(), py::arg("alpha") = 0.01,
        "y = act(x w^T + b); activation None, 'relu', 'leaky_relu', 'sigmoid' or 'tanh'.");
  m.def("dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::kw_only(),
        py::arg("need_dx"), py::arg("need_db"), "dy (N,out), x, w -> (dx | None, dw, db | None).");
}

}  // namespace cnnkern
